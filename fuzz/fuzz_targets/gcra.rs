//! GCRA driven by arbitrary operations (any quota, cost, time jumps both
//! ways) against the bound: for every run of consecutive admissions, net
//! admitted cost × T ≤ burst × T + (s_j − s_i). Also: no panic, denials change
//! nothing, `ExceedsCapacity` exactly when cost > burst.
#![no_main]

use std::num::NonZeroU32;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_core::{Decision, Gcra, Nanos, Quota};

#[derive(Arbitrary, Debug)]
enum Op {
    Check { forward: bool, dt: u32, cost: u8 },
    CheckBig { cost: u32 },
    Refund { cost: u8 },
    Peek,
    Reset,
    SetTime { t: u64 },
}

/// The period of the quota: the usual ones, or any number of nanoseconds
/// (which `Quota::new` may refuse: then the input is skipped).
#[derive(Arbitrary, Debug)]
enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Nanos(u64),
}

impl Period {
    fn duration(&self) -> Duration {
        match *self {
            Period::Second => Duration::from_secs(1),
            Period::Minute => Duration::from_secs(60),
            Period::Hour => Duration::from_secs(3_600),
            Period::Day => Duration::from_secs(86_400),
            Period::Nanos(n) => Duration::from_nanos(n),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    limit: u32,
    period: Period,
    /// 0: the default burst (= limit).
    burst: u32,
    start: u64,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let Some(limit) = NonZeroU32::new(input.limit.max(1)) else { return };
    let Ok(mut quota) = Quota::new(limit, input.period.duration()) else {
        return;
    };
    if let Some(b) = NonZeroU32::new(input.burst) {
        quota = quota.with_burst(b);
    }
    let g = Gcra::new(quota);
    let t = i128::from(quota.emission_interval().as_u64());
    let b = i128::from(quota.burst().get());
    let mut now = input.start;
    // (time, cost) admissions since the last reset; refunds as (None, -cost).
    let mut events: Vec<(Option<u64>, i128)> = Vec::new();
    for op in input.ops.iter().take(256) {
        match *op {
            Op::Check { forward, dt, cost } => {
                let step = u64::from(dt);
                now = if forward { now.saturating_add(step) } else { now.saturating_sub(step) };
                check(&g, &quota, now, u32::from(cost), &mut events);
            }
            Op::CheckBig { cost } => check(&g, &quota, now, cost, &mut events),
            Op::Refund { cost } => {
                let _ = g.refund(Nanos::new(now), u32::from(cost));
                events.push((None, -i128::from(cost)));
            }
            Op::Peek => {
                let s = g.peek(Nanos::new(now));
                assert!(s.remaining <= quota.burst().get());
            }
            Op::Reset => {
                g.reset();
                events.clear();
            }
            Op::SetTime { t } => now = t,
        }
    }
    for i in 0..events.len() {
        let Some(si) = events[i].0 else { continue };
        let mut net = 0i128;
        for e in &events[i..] {
            net += e.1;
            if let Some(sj) = e.0 {
                assert!(
                    net * t <= b * t + i128::from(sj) - i128::from(si),
                    "over-admitted: {net} units between {si} and {sj} ns"
                );
            }
        }
    }
});

fn check(g: &Gcra, quota: &Quota, now: u64, cost: u32, events: &mut Vec<(Option<u64>, i128)>) {
    let before = g.peek(Nanos::new(now));
    let d = g.check_n(Nanos::new(now), cost);
    assert_eq!(
        matches!(d, Decision::ExceedsCapacity { .. }),
        cost > quota.burst().get()
    );
    assert!(!d.is_allowed() || cost <= quota.burst().get(), "allowed above the burst");
    match d {
        Decision::Allowed { .. } => {
            if cost > 0 {
                events.push((Some(now), i128::from(cost)));
            }
        }
        Decision::Denied { retry_after, .. } => {
            assert!(retry_after > Nanos::ZERO);
            assert_eq!(g.peek(Nanos::new(now)), before, "a denial changed the state");
        }
        Decision::ExceedsCapacity { .. } => {
            assert_eq!(g.peek(Nanos::new(now)), before);
        }
    }
}
