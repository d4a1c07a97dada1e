//! The keyed store against a `HashMap<key, GCRA state>` reference:
//!
//! * with time moving forward, identical decisions, read-outs and refunds
//!   while under capacity (several plans in one store), although slots of
//!   fresh keys are handed to other keys all the time: reclamation is
//!   lossless;
//! * with time jumping both ways, no panic, and every key obeys the GCRA
//!   bound plus at most the distance the clock went back: a slot handed over
//!   at time `r` held a state that was fresh at `r`, and a later check at
//!   `t < r` cannot recover it, which can buy that key up to `r - t` of
//!   budget (see the keyed module docs).

use std::collections::HashMap;
use std::num::NonZeroU32;

use proptest::prelude::*;
use tollgate::keyed::{KeyedDecision, KeyedGcra, KeyedLimiter};
use tollgate::{Nanos, Quota, gcra};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

/// An admission `(Some((time, how far behind the latest time)), cost)` or a
/// refund `(None, -cost)`.
type Event = (Option<(i128, i128)>, i128);

#[derive(Clone, Debug)]
enum Op {
    Check {
        key: u8,
        plan: usize,
        dt: i64,
        cost: u32,
    },
    Refund {
        key: u8,
        plan: usize,
        dt: i64,
        cost: u32,
    },
}

fn ops(monotone: bool) -> impl Strategy<Value = Vec<Op>> {
    let dt = if monotone {
        prop_oneof![Just(0i64), 0i64..=200_000_000].boxed()
    } else {
        prop_oneof![Just(0i64), -500_000_000i64..=200_000_000].boxed()
    };
    let op = prop_oneof![
        6 => (0u8..40, 0usize..3, dt.clone(), 0u32..=6)
            .prop_map(|(key, plan, dt, cost)| Op::Check { key, plan, dt, cost }),
        1 => (0u8..40, 0usize..3, dt, 0u32..=3)
            .prop_map(|(key, plan, dt, cost)| Op::Refund { key, plan, dt, cost }),
    ];
    prop::collection::vec(op, 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_equals_hashmap_of_gcra(ops in ops(true)) {
        let nz = |n| NonZeroU32::new(n).unwrap();
        let plans = [
            Quota::per_second(nz(5)),
            Quota::per_second(nz(2)).with_burst(nz(4)),
            Quota::per_minute(nz(30)),
        ];
        let store = KeyedLimiter::new(1_000).unwrap();
        let mut model: HashMap<u8, u64> = HashMap::new();
        let mut now = 1_000_000_000u64;
        for op in ops {
            match op {
                Op::Check { key, plan, dt, cost } => {
                    now = now.saturating_add_signed(dt);
                    let q = &plans[plan];
                    let state = model.get(&key).copied().unwrap_or(0);
                    let (want, new) = gcra::decide(q, state, Nanos::new(now), cost);
                    if let Some(new) = new {
                        model.insert(key, new);
                    }
                    let got = store.check_n(&key, q, Nanos::new(now), cost);
                    prop_assert_eq!(got, KeyedDecision::Decided(want));
                }
                Op::Refund { key, plan, dt, cost } => {
                    now = now.saturating_add_signed(dt);
                    let q = &plans[plan];
                    let state = model.get(&key).copied().unwrap_or(0);
                    if let Some(new) = gcra::refunded(q, state, Nanos::new(now), cost) {
                        model.insert(key, new);
                    }
                    let want = gcra::snapshot(q, model.get(&key).copied().unwrap_or(0), Nanos::new(now));
                    prop_assert_eq!(store.refund(&key, q, Nanos::new(now), cost), want);
                }
            }
            for key in 0u8..40 {
                let q = &plans[usize::from(key) % 3];
                let want = gcra::snapshot(q, model.get(&key).copied().unwrap_or(0), Nanos::new(now));
                prop_assert_eq!(store.peek(&key, q, Nanos::new(now)), want);
            }
        }
    }

    #[test]
    fn bound_holds_up_to_backward_clock_steps(ops in ops(false)) {
        // A small store, so that reclamation happens all the time.
        let store = KeyedLimiter::with_hasher(8, KeyedGcra, ahash::RandomState::with_seeds(7, 7, 7, 7))
            .unwrap()
            .when_full(tollgate::keyed::WhenFull::Deny);
        let q = Quota::per_second(NonZeroU32::new(3).unwrap());
        let t = q.emission_interval().as_u64() as i128;
        let b = i128::from(q.burst().get());
        let mut now = 1_000_000_000u64;
        let mut latest = now;
        // Per key: (time, how far behind the latest time seen, cost) per
        // admission; refunds as negative costs.
        let mut events: HashMap<u8, Vec<Event>> = HashMap::new();
        for op in ops {
            match op {
                Op::Check { key, dt, cost, .. } => {
                    now = now.saturating_add_signed(dt);
                    let behind = i128::from(latest.saturating_sub(now));
                    latest = latest.max(now);
                    if let KeyedDecision::Decided(d) = store.check_n(&key, &q, Nanos::new(now), cost) {
                        if d.is_allowed() && cost > 0 {
                            let at = (i128::from(now), behind);
                            events.entry(key).or_default().push((Some(at), i128::from(cost)));
                        }
                    }
                }
                Op::Refund { key, dt, cost, .. } => {
                    now = now.saturating_add_signed(dt);
                    latest = latest.max(now);
                    let _ = store.refund(&key, &q, Nanos::new(now), cost);
                    events.entry(key).or_default().push((None, -i128::from(cost)));
                }
            }
        }
        for (key, ev) in &events {
            for i in 0..ev.len() {
                let Some((si, _)) = ev[i].0 else { continue };
                let (mut net, mut slack) = (0, 0);
                for (k, e) in ev[i..].iter().enumerate() {
                    net += e.1;
                    if let Some((sj, behind)) = e.0 {
                        if k > 0 {
                            slack += behind;
                        }
                        prop_assert!(net * t <= b * t + sj - si + slack,
                            "key {}: {} admitted between {} and {} (slack {})", key, net, si, sj, slack);
                    }
                }
            }
        }
    }

    /// The window counters per key against a `HashMap` of their pure rules
    /// (monotone time, small store so fresh slots are reclaimed).
    #[test]
    fn window_stores_equal_hashmap_of_rules(ops in ops(true)) {
        use tollgate::keyed::{KeyedFixedWindow, KeyedSlidingWindow};
        use tollgate::window::{FixedRule, SlidingRule};
        let w = Nanos::from_millis(300);
        let limits = [NonZeroU32::new(3).unwrap(), NonZeroU32::new(5).unwrap(), NonZeroU32::new(8).unwrap()];
        let seed = || ahash::RandomState::with_seeds(1, 2, 3, 4);
        let fixed = KeyedLimiter::with_hasher(64, KeyedFixedWindow::new(w, Nanos::new(7)).unwrap(), seed()).unwrap();
        let sliding = KeyedLimiter::with_hasher(64, KeyedSlidingWindow::new(w).unwrap(), seed()).unwrap();
        let fixed_rule = FixedRule::new(NonZeroU32::MIN, w, Nanos::new(7)).unwrap();
        let sliding_rule = SlidingRule::new(NonZeroU32::MIN, w).unwrap();
        let (mut fm, mut sm): (HashMap<u8, u64>, HashMap<u8, u64>) = (HashMap::new(), HashMap::new());
        let mut now = 0u64;
        for op in ops {
            let Op::Check { key, plan, dt, cost } = op else { continue };
            now = now.saturating_add_signed(dt);
            let t = Nanos::new(now);
            let limit = limits[plan];
            let (want, new) = fixed_rule.with_limit(limit).decide(fm.get(&key).copied().unwrap_or(0), t, cost);
            if let Some(new) = new { fm.insert(key, new); }
            prop_assert_eq!(fixed.check_n(&key, &limit, t, cost), KeyedDecision::Decided(want));
            let (want, new) = sliding_rule.with_limit_clamped(limit).decide(sm.get(&key).copied().unwrap_or(0), t, cost);
            if let Some(new) = new { sm.insert(key, new); }
            prop_assert_eq!(sliding.check_n(&key, &limit, t, cost), KeyedDecision::Decided(want));
        }
    }
}
