//! Criterion: one clock read. tollgate's `MonotonicClock::now` (quanta, the
//! TSC where it is invariant) next to governor's `DefaultClock` (with
//! governor's default features that is `QuantaClock`: the same source), plus
//! two references: governor's `MonotonicClock` and `std::time::Instant::now`
//! (the OS monotonic clock through the vDSO).
//!
//! `cargo bench -p tollgate-benches --bench clock`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::Clock as _;
use tollgate::{Clock as _, MonotonicClock};

fn clock_now(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock_now");
    let t = MonotonicClock::new();
    g.bench_function("tollgate", |b| b.iter(|| black_box(&t).now()));
    let gov = governor::clock::DefaultClock::default();
    g.bench_function("governor", |b| b.iter(|| black_box(&gov).now()));
    let gov_std = governor::clock::MonotonicClock;
    g.bench_function("governor_monotonic_instant", |b| {
        b.iter(|| black_box(&gov_std).now())
    });
    g.bench_function("std_instant", |b| b.iter(Instant::now));
    g.finish();
}

criterion_group! {
    name = benches;
    // Nanosecond-scale reads: short runs suffice.
    config = common::short();
    targets = clock_now
}
criterion_main!(benches);
