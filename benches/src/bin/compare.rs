//! `compare`: tollgate and governor side by side, in one process, one run.
//!
//! ```sh
//! cargo run --release -p tollgate-benches --bin compare -- --quick
//! cargo run --release -p tollgate-benches --bin compare -- --json-out benches/results/run.jsonl
//! cargo run --release -p tollgate-benches --bin compare -- --quick --only keyed
//! cargo run --release -p tollgate-benches --features redis --bin compare -- --only redis
//! ```
//!
//! Prints one JSON object per line: `bench`, `tollgate_ns`, `peer_ns`,
//! `ratio` (= tollgate / peer; below 1 means tollgate is faster), and for
//! scaling lines `threads` and `*_mops_total`. Each figure is the median of
//! several repetitions, the two sides interleaved (A, B, A, B, ...) after a
//! warm-up of each. Same quota, same clock kind and same key order on both
//! sides. Where governor has no equivalent the peer is tollgate's own GCRA,
//! and the line says so in `peer`.

// Benchmark arithmetic: counts and nanoseconds far below 2^52.
#![allow(clippy::cast_possible_truncation)]

use std::hint::black_box;
use std::io::Write;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tollgate::keyed::KeyedLimiter;
use tollgate::{
    All, Clock, CoarseClock, FixedWindow, Gcra, MonotonicClock, Nanos, Quota, Semaphore,
    SlidingLog, SlidingWindow, TokenBucket,
};
use tollgate_benches::{CpuTicks, Line, allowed, fake_clock, nz, side_by_side};

struct Cfg {
    reps: usize,
    iters: u64,
    quick: bool,
    out: Option<std::fs::File>,
    /// `/proc/stat` when the previous scaling line was emitted (or the
    /// scaling group started): each scaling line reports the steal between
    /// it and the previous one, i.e. during its own measurements.
    ticks: Option<CpuTicks>,
}

impl Cfg {
    fn emit(&mut self, line: Line) {
        let text = line.render();
        println!("{text}");
        if let Some(f) = &mut self.out {
            let _ = writeln!(f, "{text}");
        }
    }
}

/// A value alone on its cache line(s), on the heap.
fn pad<T>(v: T) -> Box<crossbeam_utils::CachePadded<T>> {
    Box::new(crossbeam_utils::CachePadded::new(v))
}

fn gcra_single(cfg: &mut Cfg) {
    let (tq, gq) = allowed();
    let now = Nanos::from_secs(1);

    // Both limiters on their own cache lines, so neither shares one with
    // the benchmark's stack.
    let t = pad(Gcra::new(tq));
    let g = pad(governor::RateLimiter::direct_with_clock(gq, fake_clock()));
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || u64::from(t.check(black_box(now)).is_allowed()),
        || u64::from(g.check().is_ok()),
    );
    cfg.emit(Line::new("gcra_check_allowed_manual_clock").pair(a, b));

    let t = pad(Gcra::new(Quota::per_second(nz(1))));
    let g = pad(governor::RateLimiter::direct_with_clock(
        governor::Quota::per_second(nz(1)),
        fake_clock(),
    ));
    assert!(t.check(now).is_allowed() && g.check().is_ok());
    assert!(!t.check(now).is_allowed() && g.check().is_err());
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || u64::from(!t.check(black_box(now)).is_allowed()),
        || u64::from(g.check().is_err()),
    );
    cfg.emit(Line::new("gcra_check_denied_manual_clock").pair(a, b));

    let t = pad(Gcra::new(tq));
    let g = pad(governor::RateLimiter::direct_with_clock(gq, fake_clock()));
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || u64::from(t.check_n(black_box(now), 5).is_allowed()),
        || u64::from(matches!(g.check_n(nz(5)), Ok(Ok(())))),
    );
    cfg.emit(Line::new("gcra_check_n5_allowed_manual_clock").pair(a, b));

    let clock = MonotonicClock::new();
    let t = pad(Gcra::new(tq));
    let g = pad(governor::RateLimiter::direct(gq));
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || u64::from(t.check(clock.now()).is_allowed()),
        || u64::from(g.check().is_ok()),
    );
    cfg.emit(Line::new("gcra_check_allowed_real_clock").pair(a, b).str(
        "clocks",
        "MonotonicClock (quanta TSC) vs governor DefaultClock (quanta)",
    ));

    let t = pad(Gcra::new(Quota::per_hour(nz(1))));
    let g = pad(governor::RateLimiter::direct(governor::Quota::per_hour(
        nz(1),
    )));
    let _ = (t.check(clock.now()), g.check());
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || u64::from(!t.check(clock.now()).is_allowed()),
        || u64::from(g.check().is_err()),
    );
    cfg.emit(Line::new("gcra_check_denied_real_clock").pair(a, b).str(
        "clocks",
        "MonotonicClock (quanta TSC) vs governor DefaultClock (quanta)",
    ));

    // Each library's coarse clock: a background thread refreshes the time
    // every millisecond and a read is a load (tollgate's own thread and
    // word; governor's QuantaUpkeepClock, quanta's global upkeep thread).
    let coarse = CoarseClock::new(Duration::from_millis(1)).expect("coarse clock");
    let g_coarse = governor::clock::QuantaUpkeepClock::from_interval(Duration::from_millis(1))
        .expect("quanta upkeep thread");
    let note = "CoarseClock (1 ms) vs governor QuantaUpkeepClock (1 ms)";
    let t = pad(Gcra::new(tq));
    let g = pad(governor::RateLimiter::direct_with_clock(
        gq,
        g_coarse.clone(),
    ));
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || u64::from(t.check(coarse.now()).is_allowed()),
        || u64::from(g.check().is_ok()),
    );
    cfg.emit(
        Line::new("gcra_check_allowed_coarse_clock")
            .pair(a, b)
            .str("clocks", note),
    );
    let t = pad(Gcra::new(Quota::per_hour(nz(1))));
    let g = pad(governor::RateLimiter::direct_with_clock(
        governor::Quota::per_hour(nz(1)),
        g_coarse,
    ));
    let _ = (t.check(coarse.now()), g.check());
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || u64::from(!t.check(coarse.now()).is_allowed()),
        || u64::from(g.check().is_err()),
    );
    cfg.emit(
        Line::new("gcra_check_denied_coarse_clock")
            .pair(a, b)
            .str("clocks", note),
    );
}

/// Runs `f(thread_index)` `iters` times on each of `threads` threads started
/// together; returns total million operations per second over the wall time
/// from the first thread's start to the last thread's finish. (Each thread
/// timing only itself would overstate the total whenever threads do not
/// actually run at once — oversubscribed, or with another job on a core: a
/// thread that starts late and finishes fast looks like parallel work.)
///
/// `f` returns 1 when the operation had the outcome the line is about
/// (admitted for an "allowed" line, refused for a "denied" one); the second
/// figure is the share of operations that did, so a line cannot count
/// refusals as admissions.
fn mops(
    threads: usize,
    iters: u64,
    f: impl Fn(usize) -> u64 + Send + Sync + 'static,
) -> (f64, f64) {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let mut sink = 0u64;
                for _ in 0..iters {
                    sink = sink.wrapping_add(f(i));
                }
                (start, Instant::now(), black_box(sink))
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant, u64)> = handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .collect();
    let first = spans.iter().map(|s| s.0).min().expect("threads > 0");
    let last = spans.iter().map(|s| s.1).max().expect("threads > 0");
    let ops = threads as u64 * iters;
    let expected: u64 = spans.iter().map(|s| s.2).sum();
    (
        ops as f64 / last.duration_since(first).as_secs_f64() / 1e6,
        expected as f64 / ops as f64,
    )
}

fn scaling_line(
    cfg: &mut Cfg,
    bench: &str,
    threads: usize,
    t_runs: &mut [(f64, f64)],
    g_runs: &mut [(f64, f64)],
) {
    // The lowest share of intended outcomes over the reps, in percent.
    let share = |runs: &[(f64, f64)]| runs.iter().map(|r| r.1).fold(1.0, f64::min) * 100.0;
    let (t_share, g_share) = (share(t_runs), share(g_runs));
    let mut t_mops: Vec<f64> = t_runs.iter().map(|r| r.0).collect();
    let mut g_mops: Vec<f64> = g_runs.iter().map(|r| r.0).collect();
    let t = tollgate_benches::median(&mut t_mops);
    let g = tollgate_benches::median(&mut g_mops);
    let note = if threads > 2 {
        "oversubscribed: 2 cores"
    } else {
        "2-core machine"
    };
    let ticks = CpuTicks::now();
    let steal = cfg
        .ticks
        .zip(ticks)
        .and_then(|(a, b)| a.steal_percent_until(b));
    cfg.ticks = ticks;
    let mut line = Line::new(bench)
        .pair(threads as f64 * 1e3 / t, threads as f64 * 1e3 / g)
        .num("threads", threads as f64)
        .num("tollgate_mops_total", t)
        .num("peer_mops_total", g)
        .num("tollgate_intended_pct", t_share)
        .num("peer_intended_pct", g_share)
        .str("note", note);
    if let Some(steal) = steal {
        // The hypervisor's share of the machine during this line's
        // measurements: threads of a stolen vCPU did not run.
        line = line.num("steal_pct", steal);
    }
    cfg.emit(line);
}

fn scaling(cfg: &mut Cfg) {
    cfg.ticks = CpuTicks::now();
    let reps = cfg.reps.min(5);
    let iters = cfg.iters / 4;
    let now = Nanos::from_secs(1);
    for threads in [1usize, 2, 4, 8] {
        // (a) one shared key, all allowed.
        let (mut tm, mut gm) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (tq, gq) = allowed();
            let t = Arc::new(Gcra::new(tq));
            tm.push(mops(threads, iters, move |_| {
                u64::from(t.check(now).is_allowed())
            }));
            let g = Arc::new(governor::RateLimiter::direct_with_clock(gq, fake_clock()));
            gm.push(mops(threads, iters, move |_| u64::from(g.check().is_ok())));
        }
        scaling_line(cfg, "scaling_shared_key_allowed", threads, &mut tm, &mut gm);

        // (a') the same with `TokenBucket`, the limit stored as (tokens,
        // next refill) so that an admission is one fetch_sub. Same quota,
        // same fixed `now` as (a); governor measured again in the same run.
        let (mut tm, mut gm) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (tq, gq) = allowed();
            let t = Arc::new(TokenBucket::new(tq));
            tm.push(mops(threads, iters, move |_| {
                u64::from(t.check(now).is_allowed())
            }));
            let g = Arc::new(governor::RateLimiter::direct_with_clock(gq, fake_clock()));
            gm.push(mops(threads, iters, move |_| u64::from(g.check().is_ok())));
        }
        scaling_line(
            cfg,
            "scaling_shared_key_allowed_token_bucket",
            threads,
            &mut tm,
            &mut gm,
        );

        // (a'') `TokenBucket` with each library's real clock and a quota a
        // service would set for one global limit: 10^6 per second (a token
        // every µs, so refills fall due about once per 50–100 checks here),
        // bursts of u32::MAX (nothing refused in the run). Every check reads
        // the clock on both sides.
        let (mut tm, mut gm) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Arc::new(TokenBucket::new(
                Quota::per_second(nz(1_000_000)).with_burst(NonZeroU32::MAX),
            ));
            let clock = MonotonicClock::new();
            tm.push(mops(threads, iters, move |_| {
                u64::from(t.check(clock.now()).is_allowed())
            }));
            let g = Arc::new(governor::RateLimiter::direct(
                governor::Quota::per_second(nz(1_000_000)).allow_burst(NonZeroU32::MAX),
            ));
            gm.push(mops(threads, iters, move |_| u64::from(g.check().is_ok())));
        }
        scaling_line(
            cfg,
            "scaling_shared_key_allowed_token_bucket_real_clock",
            threads,
            &mut tm,
            &mut gm,
        );

        // (b) one shared key, all denied.
        let (mut tm, mut gm) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Arc::new(Gcra::new(Quota::per_hour(nz(1))));
            let _ = t.check(now);
            tm.push(mops(threads, iters, move |_| {
                u64::from(!t.check(now).is_allowed())
            }));
            let g = Arc::new(governor::RateLimiter::direct_with_clock(
                governor::Quota::per_hour(nz(1)),
                fake_clock(),
            ));
            let _ = g.check();
            gm.push(mops(threads, iters, move |_| u64::from(g.check().is_err())));
        }
        scaling_line(cfg, "scaling_shared_key_denied", threads, &mut tm, &mut gm);

        // (b') denied through `TokenBucket`: after the first refusal the
        // bucket reads before it writes, so denials stay read-only.
        let (mut tm, mut gm) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Arc::new(TokenBucket::new(Quota::per_hour(nz(1))));
            let _ = t.check(now);
            tm.push(mops(threads, iters, move |_| {
                u64::from(!t.check(now).is_allowed())
            }));
            let g = Arc::new(governor::RateLimiter::direct_with_clock(
                governor::Quota::per_hour(nz(1)),
                fake_clock(),
            ));
            let _ = g.check();
            gm.push(mops(threads, iters, move |_| u64::from(g.check().is_err())));
        }
        scaling_line(
            cfg,
            "scaling_shared_key_denied_token_bucket",
            threads,
            &mut tm,
            &mut gm,
        );

        // The machine's ceiling for (a): no limiter, one bare AtomicU64.
        // "tollgate" side: the GCRA admission reduced to its bones (load,
        // max with now, +1, compare-exchange loop); "peer" side: one
        // fetch_add per op, the fastest any read-modify-write of one word
        // can go. What (a) can reach with a CAS design is the first; a
        // fetch_add design the second.
        let (mut tm, mut gm) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let word = Arc::new(AtomicU64::new(0));
            tm.push(mops(threads, iters, move |_| {
                let now = 1_000_000_000u64;
                let mut t = word.load(Ordering::Relaxed);
                loop {
                    let next = t.max(now) + 1;
                    match word.compare_exchange_weak(t, next, Ordering::Relaxed, Ordering::Relaxed)
                    {
                        Ok(_) => return 1,
                        Err(actual) => t = actual,
                    }
                }
            }));
            let word = Arc::new(AtomicU64::new(0));
            gm.push(mops(threads, iters, move |_| {
                u64::from(word.fetch_add(1, Ordering::Relaxed) < u64::MAX)
            }));
        }
        scaling_line(
            cfg,
            "scaling_machine_one_word_cas_vs_fetch_add",
            threads,
            &mut tm,
            &mut gm,
        );

        // (c) distinct keys in one keyed store, all allowed: each thread
        // its own 1 024 keys. Twice: a store sized for exactly the keys in
        // use (every bucket holds keys of every thread, so the threads'
        // CAS share cache lines), and one sized for a service's 1M clients
        // with these 1 024 per thread active (what a deployment looks like:
        // the active keys' buckets are then private to their thread).
        // governor's store is the same `DashMap` in both (it grows with the
        // keys, it has no capacity to choose).
        for (bench, capacity) in [
            ("scaling_distinct_keys_allowed", threads * 1_024),
            ("scaling_distinct_keys_1m_store", 1 << 20),
        ] {
            let (mut tm, mut gm) = (Vec::new(), Vec::new());
            const KEYS_PER_THREAD: u64 = 1_024;
            for _ in 0..reps {
                let (tq, gq) = allowed();
                let store = Arc::new(KeyedLimiter::new(capacity).expect("capacity"));
                tm.push(mops(threads, iters, move |i| {
                    let k = (i as u64) * KEYS_PER_THREAD + fastrand_key(KEYS_PER_THREAD);
                    u64::from(store.check(&k, &tq, now).is_allowed())
                }));
                let g = Arc::new(governor::RateLimiter::dashmap_with_clock(gq, fake_clock()));
                gm.push(mops(threads, iters, move |i| {
                    let k = (i as u64) * KEYS_PER_THREAD + fastrand_key(KEYS_PER_THREAD);
                    u64::from(g.check_key(&k).is_ok())
                }));
            }
            scaling_line(cfg, bench, threads, &mut tm, &mut gm);
        }
    }
}

/// A cheap thread-local pseudo-random key in `0..n` (same generator on both
/// sides).
fn fastrand_key(n: u64) -> u64 {
    use std::cell::Cell;
    thread_local!(static S: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) });
    S.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n
    })
}

/// Keys per `check_batch` call in the `keyed_check_batch_*` lines: a
/// server's worth of requests read in one go.
const BATCH_KEYS: usize = 64;

fn keyed(cfg: &mut Cfg) {
    let now = Nanos::from_secs(1);
    let sizes: &[usize] = if cfg.quick {
        &[1_000, 1_000_000]
    } else {
        &[1_000, 1_000_000, 10_000_000]
    };
    for &n in sizes {
        let (tq, gq) = allowed();
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut keys: Vec<u64> = (0..n as u64).map(|_| rng.random()).collect();
        // Insert path: every key once, in random order. Each side's
        // resident memory is read before it is built and after its inserts
        // (the other side is built only after), so each growth is its own.
        let rss0 = rss_bytes();
        let store = KeyedLimiter::new(n).expect("capacity");
        let t0 = Instant::now();
        for k in &keys {
            black_box(store.check(k, &tq, now).is_allowed());
        }
        let t_insert = t0.elapsed().as_nanos() as f64 / n as f64;
        let rss1 = rss_bytes();
        let gov = governor::RateLimiter::dashmap_with_clock(gq, fake_clock());
        let g0 = Instant::now();
        for k in &keys {
            black_box(gov.check_key(k).is_ok());
        }
        let g_insert = g0.elapsed().as_nanos() as f64 / n as f64;
        let rss2 = rss_bytes();
        cfg.emit(
            Line::new(&format!("keyed_first_insert_{}_keys", label(n))).pair(t_insert, g_insert),
        );

        // Hit path: the two sides check the same sequence of keys, cycling.
        let iters = (cfg.iters / 2).max(n as u64);
        let reps = cfg.reps;
        let hits = |seq: &[u64]| {
            let (mut i, mut j) = (0usize, 0usize);
            side_by_side(
                reps,
                iters,
                || {
                    i = if i + 1 == seq.len() { 0 } else { i + 1 };
                    u64::from(store.check(&seq[i], &tq, now).is_allowed())
                },
                || {
                    j = if j + 1 == seq.len() { 0 } else { j + 1 };
                    u64::from(gov.check_key(&seq[j]).is_ok())
                },
            )
        };
        // Keys visited in (another) random order.
        keys.shuffle(&mut rng);
        let (a, b) = hits(&keys);
        cfg.emit(Line::new(&format!("keyed_check_{}_keys_random", label(n))).pair(a, b));
        let single = a;

        // The same order, handed over `BATCH_KEYS` keys at a time: tollgate's
        // `check_batch` next to governor's `check_key` on each key of the
        // batch (governor has no batch API). Per key.
        let batches = keys.len() / BATCH_KEYS;
        let next = |i: &mut usize| {
            *i = if *i + 1 == batches { 0 } else { *i + 1 };
            &keys[*i * BATCH_KEYS..(*i + 1) * BATCH_KEYS]
        };
        let (mut i, mut j) = (0usize, 0usize);
        let (a, b) = side_by_side(
            reps,
            iters / BATCH_KEYS as u64,
            || {
                let mut ok = 0;
                store.check_batch(next(&mut i), &tq, now, |_, d| {
                    ok += u64::from(d.is_allowed());
                });
                ok
            },
            || {
                next(&mut j)
                    .iter()
                    .map(|k| u64::from(gov.check_key(k).is_ok()))
                    .sum()
            },
        );
        let per_key = BATCH_KEYS as f64;
        cfg.emit(
            Line::new(&format!("keyed_check_batch_{}_keys", label(n)))
                .pair(a / per_key, b / per_key)
                .num("tollgate_single_ns", single)
                .num("batch_keys", per_key)
                .str(
                    "how",
                    "tollgate check_batch vs governor check_key per key, same random order as keyed_check_*_random; tollgate_single_ns: that line's check",
                ),
        );

        // Zipf-skewed (s = 1): a few hot keys, a long tail, as in API
        // traffic.
        let skewed: Vec<u64> = tollgate_benches::zipf::zipf_indices(n, 1.0, 1 << 22, 7)
            .into_iter()
            .map(|r| keys[r])
            .collect();
        let (a, b) = hits(&skewed);
        cfg.emit(Line::new(&format!("keyed_check_{}_keys_zipf1", label(n))).pair(a, b));

        if n >= 1_000_000 {
            let per_key = |bytes: Option<u64>| bytes.map_or(f64::NAN, |b| b as f64 / n as f64);
            cfg.emit(
                Line::new(&format!("keyed_bytes_per_key_{}", label(n)))
                    .num("tollgate_bytes", store.memory_bytes() as f64 / n as f64)
                    .num("tollgate_rss_bytes", per_key(rss1.zip(rss0).map(|(b, a)| b.saturating_sub(a))))
                    .num("peer_rss_bytes", per_key(rss2.zip(rss1).map(|(b, a)| b.saturating_sub(a))))
                    .str(
                        "how",
                        "tollgate_bytes: table bytes / capacity (fixed at construction); *_rss_bytes: resident-set growth over building the store and inserting every key once, / keys",
                    ),
            );
        }
    }
}

/// The process's resident set in bytes (`VmRSS` of `/proc/self/status`);
/// `None` where that file does not exist.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Clock reads: tollgate's `MonotonicClock` next to governor's default
/// (quanta) clock, and `std::time::Instant` next to `MonotonicClock`.
fn clocks(cfg: &mut Cfg) {
    use governor::clock::Clock as _;
    let t = MonotonicClock::new();
    let g = governor::clock::DefaultClock::default();
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || {
            black_box(t.now());
            1
        },
        || {
            black_box(g.now());
            1
        },
    );
    cfg.emit(Line::new("clock_now").pair(a, b).str(
        "clocks",
        "MonotonicClock::now (quanta TSC, Nanos since its epoch) vs governor DefaultClock::now (quanta Instant)",
    ));
    let start = Instant::now();
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters,
        || start.elapsed().as_nanos() as u64,
        || t.now().as_u64(),
    );
    cfg.emit(
        Line::new("clock_std_instant_elapsed")
            .pair(a, b)
            .str("peer", "tollgate MonotonicClock::now (not governor)"),
    );
}

/// Rendering the rate-limit headers of one decision (S4E style plus the
/// IETF fields): governor renders no headers, so the peer is tollgate's own
/// GCRA check, for scale.
fn headers(cfg: &mut Cfg) {
    use tollgate::headers::{HeaderStyle, RateLimitInfo};
    let quota = Quota::per_minute(nz(100));
    let style = HeaderStyle::x_ratelimit().with_ietf("minute");
    let gcra = pad(Gcra::new(quota));
    let allowed = gcra.check(Nanos::ZERO);
    let window = Nanos::from_secs(60);
    let now_unix = Nanos::from_secs(1_764_000_000);
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 10,
        || {
            let info = RateLimitInfo::new(black_box(&allowed), 100, window);
            style.render(&info, now_unix).len() as u64
        },
        || u64::from(gcra.probe(Nanos::ZERO, 1).is_allowed()),
    );
    cfg.emit(
        Line::new("headers_render_allowed_x_ratelimit_ietf")
            .pair(a, b)
            .str("peer", "tollgate GCRA probe (governor renders no headers)"),
    );
}

/// What the keyed store's slot width costs on this machine: a load and a
/// compare-and-swap of one random slot in a table of the 1M-key store's
/// size (23 MB), slots visited in a fixed random order as in
/// `keyed_check_1m_keys_random`; 16-byte slots (tollgate's `(fingerprint,
/// state)` word, `lock cmpxchg16b`) next to 8-byte ones (`lock cmpxchg`).
fn slot_width(cfg: &mut Cfg) {
    use portable_atomic::AtomicU128;
    use std::sync::atomic::{AtomicU64, Ordering};
    const BYTES: usize = 23_036_000;
    let t16: Vec<AtomicU128> = (0..BYTES / 16).map(|_| AtomicU128::new(0)).collect();
    let t8: Vec<AtomicU64> = (0..BYTES / 8).map(|_| AtomicU64::new(0)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let idx: Vec<usize> = (0..1_000_000)
        .map(|_| rng.random_range(0..BYTES / 16))
        .collect();
    let (mut i, mut j) = (0usize, 0usize);
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 2,
        || {
            i = if i + 1 == idx.len() { 0 } else { i + 1 };
            let s = &t16[idx[i]];
            let v = s.load(Ordering::Acquire);
            u64::from(
                s.compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok(),
            )
        },
        || {
            j = if j + 1 == idx.len() { 0 } else { j + 1 };
            let s = &t8[idx[j] * 2];
            let v = s.load(Ordering::Acquire);
            u64::from(
                s.compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok(),
            )
        },
    );
    cfg.emit(Line::new("machine_random_slot_cas_23mb").pair(a, b).str(
        "peer",
        "8-byte slots (tollgate column: 16-byte slots as in the keyed store); not governor",
    ));

    // What a keyed check at 1M keys waits for: the same random 8-byte CASes,
    // each one's slot chosen from the previous one's result (so its cache
    // miss cannot start before that CAS is done), next to independent ones
    // (whose misses the processor overlaps). A keyed check is independent
    // of the previous one, so it lies between the two; where it lies shows
    // how much of the miss it hides.
    let (mut i, mut j, mut last) = (0usize, 0usize, 1u64);
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 4,
        || {
            i = if i + 1 == idx.len() { 0 } else { i + 1 };
            // `last` is always 1 at run time; the compiler cannot know.
            let s = &t8[(idx[i] * 2 + last as usize - 1) % t8.len()];
            let v = s.load(Ordering::Acquire);
            last = u64::from(
                s.compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok(),
            );
            last
        },
        || {
            j = if j + 1 == idx.len() { 0 } else { j + 1 };
            let s = &t8[idx[j] * 2];
            let v = s.load(Ordering::Acquire);
            u64::from(
                s.compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok(),
            )
        },
    );
    cfg.emit(
        Line::new("machine_random_cas_23mb_dependent")
            .pair(a, b)
            .str(
                "peer",
                "the same CASes, independent of each other (tollgate column: each slot depends on the previous CAS); not governor",
            ),
    );
}

/// A full S4E policy check (key's minute window + burst, the endpoint's
/// concurrency permit taken and released) through the policy engine, next to
/// the nearest governor equivalent: two keyed checks (key, then key +
/// endpoint). governor has no policy engine and no concurrency limit, so
/// the peer does strictly less work.
fn policy(cfg: &mut Cfg) {
    let keys: Vec<String> = (0..1_000).map(|i| format!("key-{i}")).collect();
    let src = include_str!("../../../policies/s4e.toml");
    let engine = tollgate::policy::Engine::from_toml(src, Nanos::ZERO).expect("s4e policy");
    let (_, gq) = allowed();
    let gov = governor::RateLimiter::dashmap_with_clock(gq, fake_clock());
    let (mut i, mut j) = (0usize, 0usize);
    let mut t = 0u64;
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 4,
        || {
            i = if i + 1 == keys.len() { 0 } else { i + 1 };
            // Time moves so the enterprise plan (10 000/min) never refuses.
            t += 10_000_000;
            let req = tollgate::policy::Request::new("GET", "/api/events/stream")
                .key(&keys[i])
                .plan("enterprise");
            let out = engine.check(&req, Nanos::new(t)).expect("known plan");
            u64::from(out.is_allowed())
        },
        || {
            j = if j + 1 == keys.len() { 0 } else { j + 1 };
            let k = &keys[j];
            u64::from(gov.check_key(&(k.as_str(), 0u32)).is_ok())
                + u64::from(gov.check_key(&(k.as_str(), 1u32)).is_ok())
        },
    );
    cfg.emit(Line::new("policy_s4e_sse_check_1k_keys").pair(a, b).str(
        "peer",
        "2 governor keyed checks (key, key+endpoint); governor has no policy engine or concurrency",
    ));
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}m", n / 1_000_000),
        n if n >= 1_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn algorithms(cfg: &mut Cfg) {
    let now = Nanos::from_secs(1);
    let (tq, gq) = allowed();
    // Sliding log (no governor equivalent: peer is tollgate's GCRA).
    let log = SlidingLog::<64>::new(Nanos::from_micros(64)).expect("window");
    let base = Gcra::new(tq);
    let mut t = 0u64;
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 4,
        || {
            // Every check allowed: 1 µs apart, each unit leaves the 64 µs
            // window just as its slot comes round again.
            t += 1_000;
            u64::from(log.check(Nanos::new(t)).is_allowed())
        },
        || u64::from(base.check(black_box(now)).is_allowed()),
    );
    cfg.emit(
        Line::new("sliding_log64_check_allowed")
            .pair(a, b)
            .str("peer", "tollgate Gcra (governor has no sliding log)"),
    );
    // Window counters (no governor equivalent: peer is tollgate's GCRA).
    // Every check allowed: time moves 2 ns per check, so a 1 ms window sees
    // 500 000 checks against a limit of 1 000 000 (the sliding window's
    // weighted count stays below the limit too).
    let fixed =
        FixedWindow::new(nz(1_000_000), Nanos::from_millis(1), Nanos::ZERO).expect("window");
    let sliding = SlidingWindow::new(nz(1_000_000), Nanos::from_millis(1)).expect("window");
    let (mut tf, mut ts) = (0u64, 0u64);
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 2,
        || {
            tf += 2;
            u64::from(fixed.check(Nanos::new(tf)).is_allowed())
        },
        || u64::from(base.check(black_box(now)).is_allowed()),
    );
    cfg.emit(
        Line::new("fixed_window_check_allowed")
            .pair(a, b)
            .str("peer", "tollgate Gcra (governor has no window counter)"),
    );
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 2,
        || {
            ts += 2;
            u64::from(sliding.check(Nanos::new(ts)).is_allowed())
        },
        || u64::from(base.check(black_box(now)).is_allowed()),
    );
    cfg.emit(
        Line::new("sliding_window_check_allowed")
            .pair(a, b)
            .str("peer", "tollgate Gcra (governor has no window counter)"),
    );
    // Semaphore acquire + release vs tokio's (governor has none).
    let sem = pad(Semaphore::new(5));
    let tok = pad(tokio::sync::Semaphore::new(5));
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 2,
        || u64::from(sem.try_acquire(1).map(|p| p.count()).unwrap_or(0)),
        || {
            u64::from(
                tok.try_acquire()
                    .map(|p| p.num_permits() as u32)
                    .unwrap_or(0),
            )
        },
    );
    cfg.emit(Line::new("semaphore_acquire_release").pair(a, b).str(
        "peer",
        "tokio::sync::Semaphore::try_acquire (governor has no semaphore)",
    ));
    // Composite of three GCRAs vs three governor limiters checked one after
    // the other (governor has no all-or-nothing composite).
    let all = All((Gcra::new(tq), Gcra::new(tq), Gcra::new(tq)));
    let gs = [
        governor::RateLimiter::direct_with_clock(gq, fake_clock()),
        governor::RateLimiter::direct_with_clock(gq, fake_clock()),
        governor::RateLimiter::direct_with_clock(gq, fake_clock()),
    ];
    let (a, b) = side_by_side(
        cfg.reps,
        cfg.iters / 2,
        || u64::from(all.check_all(black_box(now), 1).decision.is_allowed()),
        || u64::from(gs.iter().all(|g| g.check().is_ok())),
    );
    cfg.emit(Line::new("composite_3_gcra_allowed").pair(a, b).str(
        "peer",
        "3 governor limiters checked in sequence (not all-or-nothing)",
    ));
}

/// `--only redis` (build with `--features redis`): the Redis backend's
/// check (one GCRA key, the Lua script via EVALSHA on a multiplexed
/// connection) next to a `PING` on the same kind of connection, the
/// physical floor of any Redis-backed decision on this machine; one request
/// in flight, then 32 in flight (pipelined by the multiplexer). Redis at
/// `$TOLLGATE_REDIS_URL` (default `redis://127.0.0.1:6379/`); skipped with a
/// message when none answers.
#[cfg(feature = "redis")]
fn redis_lines(cfg: &mut Cfg) {
    use tollgate::redis::{RedisConfig, RedisLimiter, Source};
    let url = std::env::var("TOLLGATE_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = RedisConfig {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    };
    let limiter = match RedisLimiter::new(&url, config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("compare: redis lines skipped: {e}");
            return;
        }
    };
    let (q, _) = allowed();
    if rt.block_on(limiter.check("bench", &q, 1)).source != Source::Redis {
        eprintln!(
            "compare: redis lines skipped: no Redis answers at {url} (set TOLLGATE_REDIS_URL)"
        );
        return;
    }
    let conn = match redis::Client::open(url.as_str())
        .and_then(|c| rt.block_on(c.get_multiplexed_async_connection()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("compare: redis lines skipped: {e}");
            return;
        }
    };
    let keys: Vec<String> = (0..1_000).map(|i| format!("bench-{i}")).collect();
    let reps = cfg.reps.min(5);
    let n = if cfg.quick { 2_000 } else { 10_000 };
    let mut i = 0;
    let (a, b) = side_by_side(
        reps,
        n,
        || {
            i = (i + 1) % keys.len();
            let d = rt.block_on(limiter.check(&keys[i], &q, 1));
            u64::from(d.decision.is_allowed())
        },
        || {
            let mut c = conn.clone();
            let pong: String = rt
                .block_on(redis::cmd("PING").query_async(&mut c))
                .unwrap_or_default();
            pong.len() as u64
        },
    );
    cfg.emit(
        Line::new("redis_check_1_in_flight")
            .pair(a, b)
            .str(
                "peer",
                "PING round trip, redis-rs multiplexed connection (the floor)",
            )
            .str("url", &url),
    );
    const IN_FLIGHT: u64 = 32;
    let (a, b) = side_by_side(
        reps,
        n / IN_FLIGHT,
        || {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for j in 0..IN_FLIGHT {
                    let (l, key) = (limiter.clone(), keys[j as usize].clone());
                    set.spawn(async move { l.check(&key, &q, 1).await.decision.is_allowed() });
                }
                set.join_all().await.into_iter().filter(|&ok| ok).count() as u64
            })
        },
        || {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..IN_FLIGHT {
                    let mut c = conn.clone();
                    set.spawn(async move {
                        let pong: String = redis::cmd("PING")
                            .query_async(&mut c)
                            .await
                            .unwrap_or_default();
                        pong.len()
                    });
                }
                set.join_all().await.len() as u64
            })
        },
    );
    let (a, b) = (a / IN_FLIGHT as f64, b / IN_FLIGHT as f64);
    cfg.emit(
        Line::new("redis_check_32_in_flight")
            .pair(a, b)
            .num("tollgate_kops", 1e6 / a)
            .num("peer_kops", 1e6 / b)
            .str(
                "peer",
                "32 PINGs in flight, redis-rs multiplexed connection (the floor)",
            ),
    );
    let s = limiter.stats();
    eprintln!("compare: redis stats {s:?}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--json-out")
        .and_then(|i| args.get(i + 1))
        .map(|p| std::fs::File::create(p).expect("create --json-out file"));
    let mut cfg = Cfg {
        reps: if quick { 5 } else { 21 },
        iters: if quick { 2_000_000 } else { 10_000_000 },
        quick,
        out,
        ticks: None,
    };
    // `--only NAME[,NAME]` runs just those groups (gcra, algorithms, keyed,
    // policy, clock, headers, scaling; redis only when named); the default
    // runs all.
    let only: Vec<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let started = Instant::now();
    if run("gcra") {
        gcra_single(&mut cfg);
    }
    if run("algorithms") {
        algorithms(&mut cfg);
    }
    if run("keyed") {
        keyed(&mut cfg);
        slot_width(&mut cfg);
    }
    if run("policy") {
        policy(&mut cfg);
    }
    if run("clock") {
        clocks(&mut cfg);
    }
    if run("headers") {
        headers(&mut cfg);
    }
    if run("scaling") {
        scaling(&mut cfg);
    }
    // Only when asked for: it needs a Redis server.
    if only.iter().any(|o| o == "redis") {
        #[cfg(feature = "redis")]
        redis_lines(&mut cfg);
        #[cfg(not(feature = "redis"))]
        eprintln!("compare: --only redis needs a build with `--features redis`");
    }
    eprintln!(
        "compare finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
