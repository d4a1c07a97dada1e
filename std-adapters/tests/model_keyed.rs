//! The keyed store against a `HashMap<key, GCRA state>` reference:
//!
//! * with time moving forward, identical decisions, read-outs and refunds
//!   while under capacity (several plans in one store) — also with 100 keys
//!   hashed into one probe window of 64 slots (`OneHome`), where slots of
//!   fresh keys are handed to other keys all the time: reclamation is
//!   lossless, and a new key is refused as full only when 64 keys are live;
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

fn ops(monotone: bool, keys: u8) -> impl Strategy<Value = Vec<Op>> {
    let dt = if monotone {
        prop_oneof![Just(0i64), 0i64..=200_000_000].boxed()
    } else {
        prop_oneof![Just(0i64), -500_000_000i64..=200_000_000].boxed()
    };
    let op = prop_oneof![
        6 => (0u8..keys, 0usize..3, dt.clone(), 0u32..=6)
            .prop_map(|(key, plan, dt, cost)| Op::Check { key, plan, dt, cost }),
        1 => (0u8..keys, 0usize..3, dt, 0u32..=3)
            .prop_map(|(key, plan, dt, cost)| Op::Refund { key, plan, dt, cost }),
    ];
    prop::collection::vec(op, 1..300)
}

/// Slots in one probe window (8 buckets of 8): the most keys one home
/// bucket's keys can hold at once.
const WINDOW_SLOTS: usize = 64;

/// A hasher that sends every key to one home bucket, each with its own
/// fingerprint, so that the keys of a test compete for the 64 slots of one
/// probe window: with more keys than that, slots of fresh keys are handed
/// over (the ahash-seeded stores above, 40 keys in 120+ slots, never
/// needed to — found by review).
#[derive(Clone, Default)]
struct OneHome;

struct OneHomeHasher(u64);

impl std::hash::Hasher for OneHomeHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.wrapping_mul(257).wrapping_add(u64::from(b) + 1);
        }
    }
    fn finish(&self) -> u64 {
        // The top bit picks the home bucket (the middle one, for every
        // key); the low bits, shifted up by the store, are the fingerprint.
        (1 << 63) | (self.0 & 0xFFFF_FFFF)
    }
}

impl std::hash::BuildHasher for OneHome {
    type Hasher = OneHomeHasher;
    fn build_hasher(&self) -> OneHomeHasher {
        OneHomeHasher(0)
    }
}

/// The geometry reaches the handover: 100 keys, one after another, each
/// fresh again before the next arrives, all admitted by a window of 64.
#[test]
fn one_home_bucket_keys_reuse_fresh_slots() {
    let store = KeyedLimiter::with_hasher(8, KeyedGcra, OneHome).unwrap();
    let q = Quota::per_second(NonZeroU32::new(1).unwrap());
    for key in 0u8..100 {
        let now = Nanos::from_secs(u64::from(key) * 2);
        assert_eq!(
            store.check(&key, &q, now),
            KeyedDecision::Decided(gcra::decide(&q, 0, now, 1).0)
        );
    }
    assert!(store.occupied() <= WINDOW_SLOTS);
    // 65 keys alive at once: the 65th is refused as the store is full.
    let now = Nanos::from_secs(1_000);
    for key in 0u8..64 {
        assert!(store.check(&key, &q, now).is_allowed());
    }
    assert_eq!(store.check(&64u8, &q, now), KeyedDecision::StoreFull);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_equals_hashmap_of_gcra(ops in ops(true, 40)) {
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
    fn bound_holds_up_to_backward_clock_steps(ops in ops(false, 100)) {
        // 100 keys in one probe window of 64 slots, so that reclamation
        // happens all the time.
        let store = KeyedLimiter::with_hasher(8, KeyedGcra, OneHome)
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
    fn window_stores_equal_hashmap_of_rules(ops in ops(true, 40)) {
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

    /// As `store_equals_hashmap_of_gcra`, with 100 keys in one probe window
    /// of 64 slots: fresh keys' slots are handed to new keys all the time.
    /// Identical decisions, read-outs and refunds, except that a new key is
    /// refused as `StoreFull` exactly when all 64 slots hold keys whose
    /// state is not fresh (the store is really full; nothing is charged).
    #[test]
    fn store_equals_hashmap_of_gcra_while_reclaiming(ops in ops(true, 100)) {
        let nz = |n| NonZeroU32::new(n).unwrap();
        let plans = [
            Quota::per_second(nz(5)),
            Quota::per_second(nz(2)).with_burst(nz(4)),
            Quota::per_minute(nz(30)),
        ];
        let store = KeyedLimiter::with_hasher(8, KeyedGcra, OneHome).unwrap();
        let mut model: HashMap<u8, u64> = HashMap::new();
        let mut now = 1_000_000_000u64;
        for op in ops {
            match op {
                Op::Check { key, plan, dt, cost } => {
                    now = now.saturating_add_signed(dt);
                    let q = &plans[plan];
                    let state = model.get(&key).copied().unwrap_or(0);
                    let (want, new) = gcra::decide(q, state, Nanos::new(now), cost);
                    match store.check_n(&key, q, Nanos::new(now), cost) {
                        KeyedDecision::StoreFull => {
                            let live = model.values().filter(|&&s| s > now).count();
                            prop_assert!(state <= now && new.is_some(), "full for a tracked key {}", key);
                            prop_assert_eq!(live, WINDOW_SLOTS, "refused as full with {} keys alive", live);
                        }
                        got => {
                            prop_assert_eq!(got, KeyedDecision::Decided(want));
                            if let Some(new) = new {
                                model.insert(key, new);
                            }
                        }
                    }
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
            for key in 0u8..100 {
                let q = &plans[usize::from(key) % 3];
                let want = gcra::snapshot(q, model.get(&key).copied().unwrap_or(0), Nanos::new(now));
                prop_assert_eq!(store.peek(&key, q, Nanos::new(now)), want);
            }
        }
    }

    /// As `window_stores_equal_hashmap_of_rules`, with 100 keys in one probe
    /// window of 64 slots (so slots of keys whose window is over are handed
    /// over); a new key refused as `StoreFull` only when 64 keys are alive.
    #[test]
    fn window_stores_equal_hashmap_of_rules_while_reclaiming(ops in ops(true, 100)) {
        use tollgate::keyed::{KeyedFixedWindow, KeyedSlidingWindow, KeyedState};
        use tollgate::window::{FixedRule, SlidingRule};
        let w = Nanos::from_millis(300);
        let limits = [NonZeroU32::new(3).unwrap(), NonZeroU32::new(5).unwrap(), NonZeroU32::new(8).unwrap()];
        let fixed_alg = KeyedFixedWindow::new(w, Nanos::new(7)).unwrap();
        let sliding_alg = KeyedSlidingWindow::new(w).unwrap();
        let fixed = KeyedLimiter::with_hasher(8, fixed_alg, OneHome).unwrap();
        let sliding = KeyedLimiter::with_hasher(8, sliding_alg, OneHome).unwrap();
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
            match fixed.check_n(&key, &limit, t, cost) {
                KeyedDecision::StoreFull => {
                    let live = fm.values().filter(|&&s| !fixed_alg.is_fresh(s, t)).count();
                    prop_assert_eq!(live, WINDOW_SLOTS);
                }
                got => {
                    prop_assert_eq!(got, KeyedDecision::Decided(want));
                    if let Some(new) = new { fm.insert(key, new); }
                }
            }
            let (want, new) = sliding_rule.with_limit_clamped(limit).decide(sm.get(&key).copied().unwrap_or(0), t, cost);
            match sliding.check_n(&key, &limit, t, cost) {
                KeyedDecision::StoreFull => {
                    let live = sm.values().filter(|&&s| !sliding_alg.is_fresh(s, t)).count();
                    prop_assert_eq!(live, WINDOW_SLOTS);
                }
                got => {
                    prop_assert_eq!(got, KeyedDecision::Decided(want));
                    if let Some(new) = new { sm.insert(key, new); }
                }
            }
        }
    }
}
