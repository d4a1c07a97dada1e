//! Property tests of GCRA against reference models.
//!
//! * **The bound** (any history, time may go backwards, refunds anywhere): for
//!   every run of consecutive admissions `i..=j`, net admitted cost × T ≤
//!   burst × T + (s_j − s_i).
//! * **Token bucket** (monotone time): the decisions, `remaining`,
//!   `retry_after` and `reset_after` equal those of a token bucket of `burst`
//!   tokens refilled at one per `T`, computed with exact integers (tokens are
//!   kept scaled by `T`, so no rounding happens anywhere in the model).
//! * **Exactness** of `retry_after`, `remaining` and `reset_after`.
//! * **No panic, no overflow** over the full ranges of time, cost and quota.

// The model works in u128 on values that are bounded well below u64 (times
// < 2^62, capacity <= 2^63); narrowing them back is exact.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use tollgate_core::{Decision, Gcra, Nanos, Quota, gcra};

/// Quotas across the whole supported range: 1/day .. 10^9/s, odd periods,
/// bursts below and above the limit.
fn any_quota() -> impl Strategy<Value = Quota> {
    let limit = prop_oneof![1u32..=10, 1u32..=1_000, 1u32..=1_000_000_000];
    let period = prop_oneof![
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(60)),
        Just(Duration::from_secs(3_600)),
        Just(Duration::from_secs(86_400)),
        (1u64..=1_000_000_000_000).prop_map(Duration::from_nanos),
    ];
    let burst = prop_oneof![
        Just(None),
        (1u32..=20).prop_map(Some),
        any::<u32>().prop_map(Some)
    ];
    (limit, period, burst).prop_filter_map("rate above 1/ns", |(l, p, b)| {
        let q = Quota::new(NonZeroU32::new(l).unwrap(), p).ok()?;
        Some(match b.and_then(NonZeroU32::new) {
            Some(b) => q.with_burst(b),
            None => q,
        })
    })
}

#[derive(Clone, Debug)]
enum Op {
    /// Move time by `dt` (negative: backwards) and check `cost`.
    Check { dt: i64, cost: u32 },
    /// Move time by `dt` and refund `cost`.
    Refund { dt: i64, cost: u32 },
}

/// Time steps in units of T, scaled to the quota by the test; negative steps
/// make time go backwards.
fn ops(monotone: bool) -> impl Strategy<Value = Vec<Op>> {
    let dt = if monotone {
        prop_oneof![Just(0i64), 0i64..=3, 0i64..=20_000].boxed()
    } else {
        prop_oneof![Just(0i64), -20_000i64..=20_000].boxed()
    };
    let op = prop_oneof![
        8 => (dt.clone(), 0u32..=14).prop_map(|(dt, cost)| Op::Check { dt, cost }),
        1 => (dt, 0u32..=14).prop_map(|(dt, cost)| Op::Refund { dt, cost }),
    ];
    prop::collection::vec(op, 1..120)
}

/// Time after a step of `dt / 1000` emission intervals, kept away from
/// saturation.
fn step(now: u64, dt: i64, t: u64) -> u64 {
    let delta = (dt.unsigned_abs() as u128 * t as u128 / 1_000) as u64;
    if dt >= 0 {
        now.saturating_add(delta).min(1 << 62)
    } else {
        now.saturating_sub(delta)
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(2048),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Never over-admit, for any history: every run of consecutive
    /// admissions satisfies the GCRA bound (refunds counted against it).
    #[test]
    fn never_over_admits(q in common::small_quota(), start in 0u64..1_000_000, ops in ops(false)) {
        let g = Gcra::new(q);
        let t = q.emission_interval().as_u64() as i128;
        let b = q.burst().get() as i128;
        // (time, cost) per admission; refunds recorded as negative costs.
        let mut events: Vec<(Option<u64>, i128)> = Vec::new();
        let mut now = start;
        for op in ops {
            match op {
                Op::Check { dt, cost } => {
                    now = step(now, dt, q.emission_interval().as_u64());
                    let before = g.peek(Nanos::new(now));
                    let d = g.check_n(Nanos::new(now), cost);
                    match d {
                        Decision::Allowed { .. } => {
                            if cost > 0 {
                                events.push((Some(now), cost as i128));
                            }
                        }
                        // A denial changes nothing.
                        _ => prop_assert_eq!(g.peek(Nanos::new(now)), before),
                    }
                    if cost > q.burst().get() {
                        prop_assert!(matches!(d, Decision::ExceedsCapacity { .. }), "got {:?}", d);
                    }
                }
                Op::Refund { dt, cost } => {
                    now = step(now, dt, q.emission_interval().as_u64());
                    let _ = g.refund(Nanos::new(now), cost);
                    events.push((None, -(cost as i128)));
                }
            }
        }
        for i in 0..events.len() {
            let Some(si) = events[i].0 else { continue };
            let mut net = 0i128;
            for e in &events[i..] {
                net += e.1;
                if let Some(sj) = e.0 {
                    let room = b * t + sj as i128 - si as i128;
                    prop_assert!(
                        net * t <= room,
                        "admitted {} in a run from {} to {} ns, bound {}/{}",
                        net, si, sj, room, t
                    );
                }
            }
        }
    }

    /// With time moving forward, GCRA is exactly a token bucket.
    #[test]
    fn equals_exact_token_bucket(q in common::small_quota(), start in 0u64..1_000_000, ops in ops(true)) {
        let g = Gcra::new(q);
        let t = q.emission_interval().as_u64() as u128;
        let cap = q.burst().get() as u128 * t;
        // Tokens scaled by T: an integer, so the model is exact.
        let mut tokens = cap;
        let mut last = start;
        let mut now = start;
        for op in ops {
            let (dt, cost, refund) = match op {
                Op::Check { dt, cost } => (dt, cost, false),
                Op::Refund { dt, cost } => (dt, cost, true),
            };
            now = step(now, dt, t as u64);
            tokens = (tokens + (now - last) as u128).min(cap);
            last = now;
            let c = cost as u128 * t;
            if refund {
                tokens = (tokens + c).min(cap);
                let s = g.refund(Nanos::new(now), cost);
                prop_assert_eq!(s.remaining as u128, tokens / t);
                prop_assert_eq!(s.reset_after.as_u64() as u128, cap - tokens);
                continue;
            }
            let d = g.check_n(Nanos::new(now), cost);
            let expected = if cost > q.burst().get() {
                Decision::ExceedsCapacity { cost, capacity: q.burst().get() }
            } else if tokens >= c {
                tokens -= c;
                Decision::Allowed {
                    remaining: (tokens / t) as u32,
                    reset_after: Nanos::new((cap - tokens) as u64),
                }
            } else {
                Decision::Denied {
                    retry_after: Nanos::new((c - tokens) as u64),
                    remaining: (tokens / t) as u32,
                    reset_after: Nanos::new((cap - tokens) as u64),
                }
            };
            prop_assert_eq!(d, expected);
        }
    }

    /// `retry_after`, `remaining` and `reset_after` are exact: one nanosecond
    /// earlier is too early, and the announced numbers are neither too high
    /// nor too low.
    #[test]
    fn read_outs_are_exact(q in any_quota(), tat in 0u64..1 << 62, now in 0u64..1 << 62, cost in any::<u32>()) {
        let cost = cost % (q.burst().get().saturating_add(1));
        let now = Nanos::new(now);
        let (d, _) = gcra::decide(&q, tat, now, cost);
        match d {
            Decision::Denied { retry_after, .. } => {
                prop_assert!(retry_after > Nanos::ZERO);
                let early = now + retry_after - Nanos::new(1);
                prop_assert!(!gcra::decide(&q, tat, early, cost).0.is_allowed());
                prop_assert!(gcra::decide(&q, tat, now + retry_after, cost).0.is_allowed());
            }
            Decision::Allowed { .. } => {}
            Decision::ExceedsCapacity { .. } => prop_assert!(cost > q.burst().get()),
        }
        let s = gcra::snapshot(&q, tat, now);
        if let Decision::Denied { remaining, reset_after, .. } = d {
            // A denial reports the untouched state.
            prop_assert_eq!((remaining, reset_after), (s.remaining, s.reset_after));
        }
        prop_assert!(gcra::decide(&q, tat, now, s.remaining).0.is_allowed());
        if s.remaining < q.burst().get() {
            prop_assert!(!gcra::decide(&q, tat, now, s.remaining + 1).0.is_allowed());
        }
        // Full exactly at now + reset_after, not a nanosecond before.
        prop_assert_eq!(gcra::snapshot(&q, tat, now + s.reset_after).remaining, q.burst().get());
        if s.reset_after > Nanos::ZERO {
            let early = now + s.reset_after - Nanos::new(1);
            prop_assert!(gcra::snapshot(&q, tat, early).remaining < q.burst().get());
        }
    }

    /// No panic and no overflow anywhere in the ranges: any stored TAT, any
    /// time up to u64::MAX, any cost up to u32::MAX, any valid quota.
    #[test]
    fn full_ranges_never_panic(q in any_quota(), tat in any::<u64>(), now in any::<u64>(), cost in any::<u32>()) {
        let now_n = Nanos::new(now);
        let (d, new) = gcra::decide(&q, tat, now_n, cost);
        if let Some(new) = new {
            prop_assert!(d.is_allowed());
            prop_assert!(new >= now && new - now <= q.capacity().as_u64());
        }
        if let Decision::Denied { retry_after, .. } = d {
            prop_assert!(retry_after > Nanos::ZERO);
        }
        if cost > q.burst().get() {
            prop_assert_eq!(d, Decision::ExceedsCapacity { cost, capacity: q.burst().get() });
        }
        let s = gcra::snapshot(&q, tat, now_n);
        prop_assert!(s.remaining <= q.burst().get());
        if let Some(r) = gcra::refunded(&q, tat, now_n, cost) {
            prop_assert!(r < tat && r >= now);
        }
    }
}
