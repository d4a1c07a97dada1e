//! Criterion: the keyed store, tollgate's `KeyedLimiter` next to governor's
//! `RateLimiter::dashmap_with_clock`, in the same group, at 1K, 1M and 10M
//! `u64` keys.
//!
//! * **Hit path** (`keyed_hit_*`): every key already inserted (on both
//!   sides, before the group), then keys checked in a pre-drawn order —
//!   `uniform` (each check any key, equally likely) or `zipf` (s = 1.0 over
//!   the key set: key 0 twice as often as key 1, a long tail). Both sides
//!   read the same stream of keys; the stream holds the key values, so the
//!   only random memory access is the store's own. Keys that tollgate's
//!   store could not place (`StoreFull`, a fraction of a percent at full
//!   capacity) are left out of the streams, with a note on stderr.
//! * **Batched hits** (`keyed_hit_*_batch`): the same streams, 64 keys an
//!   iteration — tollgate's `check_batch` next to governor's `check_key` on
//!   each of the 64 (governor has no batch API); criterion's throughput
//!   line gives keys per second.
//! * **Insert path** (`keyed_insert_*`): the first check of each key, keys
//!   in random order. Each side inserts fresh keys into a store built for
//!   `n` keys; once it holds all `n`, a new empty store replaces it outside
//!   the timing. A figure is therefore the mean cost of one insert while
//!   the store fills from empty to `n` keys — never a re-insert of a key
//!   already present. The few first checks near full capacity that find no
//!   slot (`StoreFull`) are timed as they come, as a user would meet them.
//!   (A first check of each key has no popularity to skew: there is no Zipf
//!   variant of it.)
//!
//! Stores are built with each library's ordinary constructor: tollgate's is
//! sized for `n` keys up front (it never grows); governor's `DashMap` grows
//! as keys arrive, and its inserts include that growth.
//!
//! Every check is allowed (10^9 per second, a burst of `u32::MAX`), time
//! stands still (a manual clock on both sides), single thread. Memory at
//! 10M keys: about 240 MB for tollgate's table, 400+ MB for governor's map;
//! each is built once per group (the hit tables once per size, for both
//! orders), never per iteration.
//!
//! `cargo bench -p tollgate-benches --bench keyed`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use governor::clock::FakeRelativeClock;
use rand::{Rng, SeedableRng};
use tollgate::Nanos;
use tollgate::keyed::KeyedLimiter;
use tollgate_benches::zipf::zipf_indices;
use tollgate_benches::{allowed, fake_clock};

const NOW: Nanos = Nanos::from_secs(1);

type GovKeyed = governor::RateLimiter<
    u64,
    governor::state::keyed::DashMapStateStore<u64>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

fn governor_store() -> GovKeyed {
    governor::RateLimiter::dashmap_with_clock(allowed().1, fake_clock())
}

/// The `n` keys: SplitMix64 of `0..n`, a bijection, so `n` distinct keys
/// spread over the whole `u64` range.
fn key_set(n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| {
            let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
        .collect()
}

/// Sizes, their labels, and the criterion settings of their groups: the
/// 10M groups take fewer, longer samples (each table costs seconds to
/// fill, and they are few per run anyway).
struct Size {
    n: usize,
    label: &'static str,
    sample_size: usize,
    measurement: Duration,
}

const SIZES: [Size; 3] = [
    Size {
        n: 1_000,
        label: "1k",
        sample_size: 50,
        measurement: Duration::from_secs(2),
    },
    Size {
        n: 1_000_000,
        label: "1m",
        sample_size: 30,
        measurement: Duration::from_secs(2),
    },
    Size {
        n: 10_000_000,
        label: "10m",
        sample_size: 10,
        measurement: Duration::from_secs(3),
    },
];

/// How many checks a hit stream holds before it wraps round. The stream is
/// read in order (the prefetcher hides it); at 1M and 10M keys one pass
/// (8 MB of keys) visits far more of the table than any cache holds, so
/// wrapping round does not make the table's lines warm.
fn stream_len(n: usize) -> usize {
    if n < 100_000 { 1 << 16 } else { 1 << 20 }
}

fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, size: &Size) {
    g.sample_size(size.sample_size)
        .measurement_time(size.measurement)
        .warm_up_time(Duration::from_secs(1));
}

/// The hit path at one size: both stores filled with all keys once, then
/// the uniform group and the Zipf group on the same two stores.
fn hit(c: &mut Criterion, size: &Size) {
    let n = size.n;
    let keys = key_set(n);
    let (tq, _) = allowed();
    let store = KeyedLimiter::new(n).expect("capacity");
    let gov = governor_store();
    // A store built for `n` keys can refuse a few of them (`StoreFull`: no
    // free slot in the key's probe window: about 0.16% of them at 1M and
    // 10M keys, seen here). Such a key
    // would take the insert path on every check, so the streams draw from
    // the keys tollgate does track only (governor holds them all; the
    // extra ones are never checked again).
    let tracked: Vec<u64> = keys
        .iter()
        .copied()
        .filter(|k| {
            assert!(gov.check_key(k).is_ok());
            store.check(k, &tq, NOW).is_allowed()
        })
        .collect();
    if tracked.len() < n {
        eprintln!(
            "keyed_hit_{}: {} of {n} keys found no slot in tollgate's store; \
             the streams use the other {}",
            size.label,
            n - tracked.len(),
            tracked.len()
        );
    }
    drop(keys);

    let len = stream_len(n);
    let m = tracked.len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let uniform: Vec<u64> = (0..len).map(|_| tracked[rng.random_range(0..m)]).collect();
    let zipf: Vec<u64> = zipf_indices(m, 1.0, len, 43)
        .into_iter()
        .map(|i| tracked[i])
        .collect();
    drop(tracked);

    for (order, stream) in [("uniform", &uniform), ("zipf", &zipf)] {
        let mut g = c.benchmark_group(format!("keyed_hit_{}_{order}", size.label));
        configure(&mut g, size);
        let mut i = 0usize;
        g.bench_function("tollgate", |b| {
            b.iter(|| {
                i = if i + 1 == len { 0 } else { i + 1 };
                store.check(black_box(&stream[i]), &tq, NOW).is_allowed()
            })
        });
        let mut j = 0usize;
        g.bench_function("governor", |b| {
            b.iter(|| {
                j = if j + 1 == len { 0 } else { j + 1 };
                gov.check_key(black_box(&stream[j])).is_ok()
            })
        });
        g.finish();

        // The same stream, `BATCH_KEYS` keys an iteration: tollgate's
        // `check_batch`, governor's `check_key` on each (it has no batch
        // API). Time per iteration is per batch; the throughput line is
        // keys per second.
        let mut g = c.benchmark_group(format!("keyed_hit_{}_{order}_batch", size.label));
        configure(&mut g, size);
        g.throughput(Throughput::Elements(BATCH_KEYS as u64));
        let batches = len / BATCH_KEYS;
        let mut i = 0usize;
        g.bench_function("tollgate", |b| {
            b.iter(|| {
                i = if i + 1 == batches { 0 } else { i + 1 };
                let mut allowed = 0u32;
                let keys = &stream[i * BATCH_KEYS..(i + 1) * BATCH_KEYS];
                store.check_batch(black_box(keys), &tq, NOW, |_, d| {
                    allowed += u32::from(d.is_allowed());
                });
                allowed
            })
        });
        let mut j = 0usize;
        g.bench_function("governor", |b| {
            b.iter(|| {
                j = if j + 1 == batches { 0 } else { j + 1 };
                let keys = &stream[j * BATCH_KEYS..(j + 1) * BATCH_KEYS];
                black_box(keys)
                    .iter()
                    .map(|k| u32::from(gov.check_key(k).is_ok()))
                    .sum::<u32>()
            })
        });
        g.finish();
    }
}

/// Keys per `check_batch` call in the `*_batch` hit groups (as in
/// `compare`'s `keyed_check_batch_*` lines).
const BATCH_KEYS: usize = 64;

/// Times first checks of `iters` keys taken in order from `keys`, going on
/// where the previous batch stopped; when the store holds all of `keys`,
/// `renew` replaces it with an empty one (not timed) and the keys start
/// over.
fn insert_batch<S>(
    iters: u64,
    keys: &[u64],
    store: &mut S,
    filled: &mut usize,
    renew: impl Fn(&mut S),
    check: impl Fn(&S, &u64) -> bool,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = usize::try_from(iters).unwrap_or(usize::MAX);
    while left > 0 {
        if *filled == keys.len() {
            renew(store);
            *filled = 0;
        }
        let chunk = left.min(keys.len() - *filled);
        let batch = &keys[*filled..*filled + chunk];
        let start = Instant::now();
        for k in batch {
            black_box(check(store, black_box(k)));
        }
        total += start.elapsed();
        *filled += chunk;
        left -= chunk;
    }
    total
}

/// The insert path at one size (see the module docs).
fn insert(c: &mut Criterion, size: &Size) {
    let n = size.n;
    let keys = key_set(n);
    let (tq, _) = allowed();
    let mut g = c.benchmark_group(format!("keyed_insert_{}", size.label));
    configure(&mut g, size);
    {
        let mut store = KeyedLimiter::new(n).expect("capacity");
        let mut filled = 0usize;
        g.bench_function("tollgate", |b| {
            b.iter_custom(|iters| {
                insert_batch(
                    iters,
                    &keys,
                    &mut store,
                    &mut filled,
                    |s| {
                        // Free the old table before the new one is built.
                        *s = KeyedLimiter::new(1).expect("capacity");
                        *s = KeyedLimiter::new(n).expect("capacity");
                    },
                    |s, k| s.check(k, &tq, NOW).is_allowed(),
                )
            })
        });
    }
    {
        let mut gov = governor_store();
        let mut filled = 0usize;
        g.bench_function("governor", |b| {
            b.iter_custom(|iters| {
                insert_batch(
                    iters,
                    &keys,
                    &mut gov,
                    &mut filled,
                    |s| *s = governor_store(),
                    |s, k| s.check_key(k).is_ok(),
                )
            })
        });
    }
    g.finish();
}

fn keyed(c: &mut Criterion) {
    for size in &SIZES {
        hit(c, size);
        insert(c, size);
    }
}

criterion_group!(benches, keyed);
criterion_main!(benches);
