//! Criterion: every core algorithm, one check each, next to its peer in the
//! same group — `governor` where governor has an equivalent (GCRA check,
//! check_n, three limits in a row), `tokio` for the semaphore, and
//! `tollgate` alone where nothing compares (window counters, sliding log).
//!
//! All on a manual clock (time is an argument), single thread.
//!
//! `cargo bench -p tollgate-benches --bench algorithms`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::{
    All, FixedWindow, Gcra, Nanos, Quota, Semaphore, SlidingLog, SlidingWindow, TokenBucket,
};
use tollgate_benches::{allowed, fake_clock, nz};

/// Runs `op` on a limiter built by `make` afresh for each batch of
/// iterations criterion asks for (outside the timing): with time standing
/// still, the allowed cases spend their 4.3 s burst 1 ns per unit, which a
/// long run at a few ns per check would otherwise exhaust, turning an
/// "allowed" bench into a "denied" one halfway.
fn fresh_each_batch<L>(
    b: &mut criterion::Bencher<'_>,
    make: impl Fn() -> L,
    op: impl Fn(&L) -> bool,
) {
    b.iter_custom(|iters| {
        let limiter = make();
        let start = Instant::now();
        for _ in 0..iters {
            black_box(op(black_box(&limiter)));
        }
        start.elapsed()
    })
}

/// GCRA: allowed, denied, and a cost of 5 (governor: `check`, `check_n`);
/// `TokenBucket` (the same limit, admitting by `fetch_sub`) in the allowed
/// and denied groups too.
fn gcra(c: &mut Criterion) {
    let (tq, gq) = allowed();
    let now = Nanos::from_secs(1);

    let mut g = c.benchmark_group("algorithms_gcra_allowed");
    g.bench_function("tollgate", |b| {
        fresh_each_batch(
            b,
            || Gcra::new(tq),
            |t| t.check(black_box(now)).is_allowed(),
        )
    });
    g.bench_function("tollgate_token_bucket", |b| {
        fresh_each_batch(
            b,
            || TokenBucket::new(tq),
            |t| t.check(black_box(now)).is_allowed(),
        )
    });
    g.bench_function("governor", |b| {
        fresh_each_batch(
            b,
            || governor::RateLimiter::direct_with_clock(gq, fake_clock()),
            |l| l.check().is_ok(),
        )
    });
    g.finish();

    let mut g = c.benchmark_group("algorithms_gcra_denied");
    let t = Gcra::new(Quota::per_second(nz(1)));
    assert!(t.check(now).is_allowed() && !t.check(now).is_allowed());
    g.bench_function("tollgate", |b| {
        b.iter(|| black_box(t.check(black_box(now))).is_allowed())
    });
    let tb = TokenBucket::new(Quota::per_second(nz(1)));
    assert!(tb.check(now).is_allowed() && !tb.check(now).is_allowed());
    g.bench_function("tollgate_token_bucket", |b| {
        b.iter(|| black_box(tb.check(black_box(now))).is_allowed())
    });
    let gov =
        governor::RateLimiter::direct_with_clock(governor::Quota::per_second(nz(1)), fake_clock());
    assert!(gov.check().is_ok() && gov.check().is_err());
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).is_ok()));
    g.finish();

    let mut g = c.benchmark_group("algorithms_gcra_check_n5_allowed");
    g.bench_function("tollgate", |b| {
        fresh_each_batch(
            b,
            || Gcra::new(tq),
            |t| t.check_n(black_box(now), 5).is_allowed(),
        )
    });
    g.bench_function("governor", |b| {
        fresh_each_batch(
            b,
            || governor::RateLimiter::direct_with_clock(gq, fake_clock()),
            |l| matches!(l.check_n(nz(5)), Ok(Ok(()))),
        )
    });
    g.finish();
}

/// Window counters and the sliding log: governor has none of them, so these
/// groups hold `tollgate` alone (the GCRA groups above are the reference).
/// Time moves so that every check is allowed.
fn windows(c: &mut Criterion) {
    // 10^6 per 1 ms window, time 2 ns further each check: half the limit's
    // rate, so neither the fixed nor the sliding estimate ever refuses.
    const STEP: u64 = 2;
    let fixed =
        FixedWindow::new(nz(1_000_000), Nanos::from_millis(1), Nanos::ZERO).expect("window");
    let sliding = SlidingWindow::new(nz(1_000_000), Nanos::from_millis(1)).expect("window");
    // 64 units per 64 µs, one check every 1 µs: each unit leaves the window
    // just as its slot comes round again.
    let log = SlidingLog::<64>::new(Nanos::from_micros(64)).expect("window");
    // Check the claim "every check allowed" over a few windows first.
    for i in 1..=2_000_000u64 {
        assert!(fixed.check(Nanos::new(i * STEP)).is_allowed());
        assert!(sliding.check(Nanos::new(i * STEP)).is_allowed());
    }
    for i in 1..=1_000u64 {
        assert!(log.check(Nanos::from_micros(i)).is_allowed());
    }

    let mut g = c.benchmark_group("algorithms_fixed_window_allowed");
    let mut t = 4_000_000u64;
    g.bench_function("tollgate", |b| {
        b.iter(|| {
            t += STEP;
            black_box(fixed.check(Nanos::new(t))).is_allowed()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("algorithms_sliding_window_allowed");
    let mut t = 4_000_000u64;
    g.bench_function("tollgate", |b| {
        b.iter(|| {
            t += STEP;
            black_box(sliding.check(Nanos::new(t))).is_allowed()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("algorithms_sliding_log64_allowed");
    let mut t = 1_000_000u64;
    g.bench_function("tollgate", |b| {
        b.iter(|| {
            t += 1_000;
            black_box(log.check(Nanos::new(t))).is_allowed()
        })
    });
    g.finish();
}

/// A concurrency permit taken and given back (the permit dropped). governor
/// has no concurrency limit: the peer is `tokio::sync::Semaphore::try_acquire`,
/// as in `compare`.
fn semaphore(c: &mut Criterion) {
    let mut g = c.benchmark_group("algorithms_semaphore_acquire_release");
    let sem = Semaphore::new(5);
    g.bench_function("tollgate", |b| {
        b.iter(|| black_box(sem.try_acquire(1)).is_ok())
    });
    let tok = tokio::sync::Semaphore::new(5);
    g.bench_function("tokio", |b| b.iter(|| black_box(tok.try_acquire()).is_ok()));
    g.finish();
}

/// Three limits checked as one (`All` of three GCRAs) next to three governor
/// limiters checked in a row. governor has no composite, and three checks in
/// a row are *not* all-or-nothing: when the third refuses, the first two have
/// already been charged. tollgate's `All` probes every member first and
/// charges none on a refusal, so on the denied path it does the probes only.
fn composite(c: &mut Criterion) {
    let (tq, gq) = allowed();
    let now = Nanos::from_secs(1);

    let mut g = c.benchmark_group("algorithms_all_3_gcra_allowed");
    g.bench_function("tollgate", |b| {
        fresh_each_batch(
            b,
            || All((Gcra::new(tq), Gcra::new(tq), Gcra::new(tq))),
            |all| all.check_all(black_box(now), 1).decision.is_allowed(),
        )
    });
    g.bench_function("governor", |b| {
        fresh_each_batch(
            b,
            || {
                [
                    governor::RateLimiter::direct_with_clock(gq, fake_clock()),
                    governor::RateLimiter::direct_with_clock(gq, fake_clock()),
                    governor::RateLimiter::direct_with_clock(gq, fake_clock()),
                ]
            },
            |gs| gs.iter().all(|l| l.check().is_ok()),
        )
    });
    g.finish();

    // The last of the three refuses (1 per hour, spent).
    let mut g = c.benchmark_group("algorithms_all_3_gcra_last_denied");
    // Fresh limiters per batch here too: governor's first two are charged
    // on every refusal and would run dry in a long run.
    let make_all = || {
        let all = All((
            Gcra::new(tq),
            Gcra::new(tq),
            Gcra::new(Quota::per_hour(nz(1))),
        ));
        assert!(all.check_all(now, 1).decision.is_allowed());
        assert!(!all.check_all(now, 1).decision.is_allowed());
        all
    };
    g.bench_function("tollgate", |b| {
        fresh_each_batch(b, make_all, |all| {
            all.check_all(black_box(now), 1).decision.is_allowed()
        })
    });
    let make_gs = || {
        let gs = [
            governor::RateLimiter::direct_with_clock(gq, fake_clock()),
            governor::RateLimiter::direct_with_clock(gq, fake_clock()),
            governor::RateLimiter::direct_with_clock(
                governor::Quota::per_hour(nz(1)),
                fake_clock(),
            ),
        ];
        assert!(gs.iter().all(|l| l.check().is_ok()));
        assert!(!gs.iter().all(|l| l.check().is_ok()));
        gs
    };
    g.bench_function("governor", |b| {
        fresh_each_batch(b, make_gs, |gs| gs.iter().all(|l| l.check().is_ok()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Cases of a few to a hundred nanoseconds: 0.5 s of warm-up and 1.5 s
    // of samples (tens of millions of checks) are plenty, and keep the
    // whole suite within a few minutes.
    config = common::short();
    targets = gcra, windows, semaphore, composite
}
criterion_main!(benches);
