//! Property tests of `FixedWindow` and `SlidingWindow`.
//!
//! * Packed state words round-trip through their named fields.
//! * `FixedWindow` equals an exact per-window counter (monotone time), and
//!   with time going back it never admits more than `limit` per window of
//!   the latest admission.
//! * `SlidingWindow` obeys its documented error bound, from a list of
//!   admitted timestamps: at most `limit` per fixed window and at most
//!   `2 × limit − 1` in any sliding window `(t − W, t]`.
//! * `retry_after` is exact for both (1 ns earlier is still refused).

// Model arithmetic narrows values bounded by the limits (u32).
#![allow(clippy::cast_possible_truncation)]

use std::collections::HashMap;
use std::num::NonZeroU32;

use proptest::prelude::*;
use tollgate_core::window::{pack_fixed, pack_sliding, unpack_fixed, unpack_sliding};
use tollgate_core::{Decision, FixedWindow, Nanos, SlidingWindow};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// (dt, cost) steps; `monotone` keeps dt >= 0.
fn steps(monotone: bool) -> impl Strategy<Value = Vec<(i64, u32)>> {
    let dt = if monotone {
        prop_oneof![Just(0i64), 0i64..=40, 0i64..=400].boxed()
    } else {
        prop_oneof![Just(0i64), -300i64..=300].boxed()
    };
    prop::collection::vec((dt, 0u32..=6), 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn packed_words_round_trip(i in any::<u32>(), c in any::<u32>(), j in any::<u16>(), p in 0u32..=0xFF_FFFF, q in 0u32..=0xFF_FFFF) {
        prop_assert_eq!(unpack_fixed(pack_fixed(i, c)), (i, c));
        prop_assert_eq!(unpack_sliding(pack_sliding(j, p, q)), (j, p, q));
    }

    #[test]
    fn fixed_window_equals_per_window_counter(limit in 1u32..=8, w in 1u64..=100, offset in 0u64..1_000, steps in steps(true)) {
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::new(offset)).unwrap();
        let mut counts: HashMap<u64, u32> = HashMap::new();
        let mut now = 0u64;
        for (dt, cost) in steps {
            now += dt as u64;
            let t = now + offset % w;
            let (i, to_end) = (t / w, w - t % w);
            let c = counts.entry(i).or_default();
            let want = if cost > limit {
                Decision::ExceedsCapacity { cost, capacity: limit }
            } else if *c + cost <= limit {
                *c += cost;
                Decision::Allowed {
                    remaining: limit - *c,
                    reset_after: Nanos::new(if *c == 0 { 0 } else { to_end }),
                }
            } else {
                Decision::Denied {
                    retry_after: Nanos::new(to_end),
                    remaining: limit - *c,
                    reset_after: Nanos::new(if *c == 0 { 0 } else { to_end }),
                }
            };
            let before = fw.peek(Nanos::new(now));
            let got = fw.check_n(Nanos::new(now), cost);
            prop_assert_eq!(got, want);
            if !got.is_allowed() {
                prop_assert_eq!(fw.peek(Nanos::new(now)), before);
            }
        }
    }

    #[test]
    fn fixed_window_bound_in_latest_admitted_window(limit in 1u32..=8, w in 1u64..=100, steps in steps(false)) {
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::ZERO).unwrap();
        let mut per_window: HashMap<u64, u64> = HashMap::new();
        // Each admission counts in the latest window anything was admitted
        // in (the limiter only learns a time by storing it: a refusal
        // writes nothing).
        let (mut now, mut latest) = (10_000u64, 0u64);
        for (dt, cost) in steps {
            now = now.saturating_add_signed(dt);
            if fw.check_n(Nanos::new(now), cost).is_allowed() && cost > 0 {
                latest = latest.max(now / w);
                *per_window.entry(latest).or_default() += u64::from(cost);
            }
        }
        for (i, n) in per_window {
            prop_assert!(n <= u64::from(limit), "{} admitted in window {}", n, i);
        }
    }

    #[test]
    fn sliding_window_error_bound(limit in 1u32..=8, w in 1u64..=100, steps in steps(true)) {
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        let mut now = 0u64;
        for (dt, cost) in steps {
            now += dt as u64;
            let before = sw.peek(Nanos::new(now));
            let d = sw.check_n(Nanos::new(now), cost);
            if d.is_allowed() {
                if cost > 0 {
                    admitted.push((now, u64::from(cost)));
                }
            } else {
                prop_assert_eq!(sw.peek(Nanos::new(now)), before);
            }
        }
        let l = u64::from(limit);
        for &(t, _) in &admitted {
            let sliding: u64 = admitted.iter().filter(|&&(s, _)| s <= t && s + w > t).map(|&(_, c)| c).sum();
            prop_assert!(sliding < 2 * l, "{} in ({}, {}]", sliding, t.saturating_sub(w), t);
            let fixed: u64 = admitted.iter().filter(|&&(s, _)| s / w == t / w).map(|&(_, c)| c).sum();
            prop_assert!(fixed <= l, "{} in fixed window {}", fixed, t / w);
        }
    }

    #[test]
    fn retry_after_is_exact(
        limit in 1u32..=10,
        w in 1u64..=1_000,
        stored in 0u64..50,
        ahead in 0u64..3,
        prev in 0u32..=10,
        curr in 0u32..=10,
        e in 0u64..1_000,
        cost in 0u32..=10,
    ) {
        let e = e % w;
        let now = Nanos::new((stored + ahead) * w + e);
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        let state = pack_sliding(stored as u16, prev.min(limit), curr.min(limit));
        if let (Decision::Denied { retry_after, .. }, _) = sw.decide(state, now, cost) {
            prop_assert!(retry_after > Nanos::ZERO);
            prop_assert!(!sw.decide(state, now + retry_after - Nanos::new(1), cost).0.is_allowed());
            prop_assert!(sw.decide(state, now + retry_after, cost).0.is_allowed());
        }
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::ZERO).unwrap();
        let state = pack_fixed(stored as u32, curr.min(limit));
        if let (Decision::Denied { retry_after, .. }, _) = fw.decide(state, now, cost) {
            prop_assert!(retry_after > Nanos::ZERO);
            prop_assert!(!fw.decide(state, now + retry_after - Nanos::new(1), cost).0.is_allowed());
            prop_assert!(fw.decide(state, now + retry_after, cost).0.is_allowed());
        }
    }
}
