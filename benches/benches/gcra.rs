//! Criterion: GCRA check, tollgate and governor side by side in each group.
//!
//! `cargo bench -p tollgate-benches --bench gcra`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::FakeRelativeClock;
use tollgate::{Clock, Gcra, MonotonicClock, Nanos, Quota};
use tollgate_benches::nz;

/// Every check allowed without moving time: 10^9 per second, a burst of
/// u32::MAX (4.3 s of capacity) on both sides.
fn allowed_quotas() -> (Quota, governor::Quota) {
    (
        Quota::per_second(nz(1_000_000_000)).with_burst(NonZeroU32::MAX),
        governor::Quota::per_second(nz(1_000_000_000)).allow_burst(NonZeroU32::MAX),
    )
}

fn manual_clock(c: &mut Criterion) {
    let (tq, gq) = allowed_quotas();
    let mut g = c.benchmark_group("gcra_check_allowed_manual_clock");
    let t = Gcra::new(tq);
    let now = Nanos::from_secs(1);
    g.bench_function("tollgate", |b| {
        b.iter(|| black_box(t.check(black_box(now))).is_allowed())
    });
    let clock = FakeRelativeClock::default();
    clock.advance(Duration::from_secs(1));
    let gov = governor::RateLimiter::direct_with_clock(gq, clock);
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).is_ok()));
    g.finish();

    let mut g = c.benchmark_group("gcra_check_denied_manual_clock");
    let t = Gcra::new(Quota::per_second(nz(1)));
    let _ = t.check(now);
    g.bench_function("tollgate", |b| {
        b.iter(|| black_box(t.check(black_box(now))).is_allowed())
    });
    let clock = FakeRelativeClock::default();
    clock.advance(Duration::from_secs(1));
    let gov = governor::RateLimiter::direct_with_clock(governor::Quota::per_second(nz(1)), clock);
    let _ = gov.check();
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).is_ok()));
    g.finish();

    let mut g = c.benchmark_group("gcra_check_n5_allowed_manual_clock");
    let t = Gcra::new(tq);
    g.bench_function("tollgate", |b| {
        b.iter(|| black_box(t.check_n(black_box(now), 5)).is_allowed())
    });
    let clock = FakeRelativeClock::default();
    clock.advance(Duration::from_secs(1));
    let gov = governor::RateLimiter::direct_with_clock(gq, clock);
    g.bench_function("governor", |b| {
        b.iter(|| matches!(black_box(gov.check_n(nz(5))), Ok(Ok(()))))
    });
    g.finish();
}

fn real_clock(c: &mut Criterion) {
    let (tq, gq) = allowed_quotas();
    let mut g = c.benchmark_group("gcra_check_allowed_real_clock");
    let clock = MonotonicClock::new();
    let t = Gcra::new(tq);
    g.bench_function("tollgate", |b| {
        b.iter(|| black_box(t.check(clock.now())).is_allowed())
    });
    let gov = governor::RateLimiter::direct(gq);
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).is_ok()));
    g.finish();

    let mut g = c.benchmark_group("gcra_check_denied_real_clock");
    let t = Gcra::new(Quota::per_hour(nz(1)));
    let _ = t.check(clock.now());
    g.bench_function("tollgate", |b| {
        b.iter(|| black_box(t.check(clock.now())).is_allowed())
    });
    let gov = governor::RateLimiter::direct(governor::Quota::per_hour(nz(1)));
    let _ = gov.check();
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check()).is_ok()));
    g.finish();
}

criterion_group!(benches, manual_clock, real_clock);
criterion_main!(benches);
