//! Late refunds (`KeyedLimiter::refund_since`): a refund that arrives after
//! its charge has partly or wholly regenerated gives back only what the
//! charge still weighs. Found by review: the policy engine refunded a 304 at
//! the response's time, so a response that came back after its minute rolled
//! over took a unit off the *next* minute, and one that came back after the
//! bucket refilled gave the refilled bucket one unit more than its burst.
//!
//! The property: whatever the mix of checks and late refunds, the requests
//! that stay admitted (admitted and not refunded) obey the limit as if the
//! refunded ones had never been made — GCRA's bound `burst + (t_j − t_i) / T`
//! over every run of them, a fixed window's limit in every window.

#[path = "../../core/tests/common/late_refunds.rs"]
mod late_refunds;

use std::hash::BuildHasher;
use std::num::NonZeroU32;

use late_refunds::{gcra_bound_with_slack, kept, kept_and_lag, ops, per_window};
use proptest::prelude::*;
use tollgate::keyed::{KeyedAlgorithm, KeyedFixedWindow, KeyedLimiter, KeyedState};
use tollgate::{Decision, Limiter, Nanos, Quota, Snapshot};

/// One key of a keyed store, with its quota, as a core `Limiter` (what the
/// shared harness drives).
struct OneKey<'a, A: KeyedAlgorithm, S> {
    store: &'a KeyedLimiter<A, S>,
    quota: A::Quota,
}

impl<A: KeyedAlgorithm + KeyedState, S: BuildHasher> Limiter for OneKey<'_, A, S> {
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        let d = self.store.check_n("k", &self.quota, now, cost);
        d.decision()
            .expect("a store of 16 slots never fills with one key")
    }
    fn peek(&self, now: Nanos) -> Snapshot {
        self.store.peek("k", &self.quota, now)
    }
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        self.store.refund("k", &self.quota, now, cost)
    }
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        self.store
            .refund_since("k", &self.quota, charged_at, now, cost)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn gcra_late_refunds_never_loosen_the_bound(
        burst in 1u32..5,
        per_sec in 1u32..5,
        ops in ops(700_000_000, 2),
    ) {
        let q = Quota::per_second(NonZeroU32::new(per_sec).unwrap())
            .with_burst(NonZeroU32::new(burst).unwrap());
        let store = KeyedLimiter::new(16).unwrap();
        // Refunds whose `now` lags the latest check may give back up to
        // their lag early (see `gcra::refunded_since`): the bound's slack.
        let (kept, lag) = kept_and_lag(&OneKey { store: &store, quota: q }, &ops);
        gcra_bound_with_slack(&kept, burst, q.emission_interval().as_u64(), lag)?;
    }

    #[test]
    fn fixed_window_late_refunds_never_loosen_a_window(
        limit in 1u32..5,
        ops in ops(400, 2),
    ) {
        let w = 1_000u64;
        let alg = KeyedFixedWindow::new(Nanos::new(w), Nanos::ZERO).unwrap();
        let store = KeyedLimiter::with_hasher(16, alg, ahash::RandomState::new()).unwrap();
        let quota = NonZeroU32::new(limit).unwrap();
        let kept = kept(&OneKey { store: &store, quota }, &ops);
        per_window(&kept, w, limit)?;
    }
}

/// The plain `refund` at the response's time is what the policy engine
/// used before: the same property fails with it (this pins why
/// `refund_since` exists; see `gcra_late_refunds_never_loosen_the_bound`).
#[test]
fn a_refund_at_completion_time_would_give_a_refilled_bucket_one_more() {
    let q = Quota::per_second(NonZeroU32::new(1).unwrap()).with_burst(NonZeroU32::new(2).unwrap());
    let t0 = Nanos::ZERO;
    let t1 = Nanos::from_secs(2); // the bucket has refilled by then
    let late = KeyedLimiter::new(16).unwrap();
    let naive = KeyedLimiter::new(16).unwrap();
    for s in [&late, &naive] {
        assert!(s.check("k", &q, t0).is_allowed()); // the request whose 304 comes late
        assert!(s.check("k", &q, t1).is_allowed());
        assert!(s.check("k", &q, t1).is_allowed()); // burst spent at t1
    }
    late.refund_since("k", &q, t0, t1, 1);
    naive.refund("k", &q, t1, 1);
    assert!(
        !late.check("k", &q, t1).is_allowed(),
        "burst 2 at one instant"
    );
    assert!(
        naive.check("k", &q, t1).is_allowed(),
        "the old way: a third at t1"
    );
}

#[test]
fn a_refund_in_the_same_window_or_at_once_gives_the_units_back() {
    let q = Quota::per_minute(NonZeroU32::new(1).unwrap());
    let store = KeyedLimiter::new(16).unwrap();
    let t0 = Nanos::from_secs(5);
    assert!(store.check("k", &q, t0).is_allowed());
    // The 304 comes back 20 ms later: the unit (a minute's worth) is nearly
    // all still owed, and the next request passes at once.
    let t1 = t0 + Nanos::from_millis(20);
    store.refund_since("k", &q, t0, t1, 1);
    assert!(store.check("k", &q, t1).is_allowed());

    let alg = KeyedFixedWindow::new(Nanos::from_secs(60), Nanos::ZERO).unwrap();
    let fixed = KeyedLimiter::with_hasher(16, alg, ahash::RandomState::new()).unwrap();
    let one = NonZeroU32::MIN;
    assert!(fixed.check("k", &one, t0).is_allowed());
    fixed.refund_since("k", &one, t0, Nanos::from_secs(59), 1); // same minute
    assert!(fixed.check("k", &one, Nanos::from_secs(59)).is_allowed());
    // Charged at 59 s, refunded at 61 s: the minute is over, nothing back.
    fixed.refund_since("k", &one, Nanos::from_secs(59), Nanos::from_secs(61), 1);
    assert!(fixed.check("k", &one, Nanos::from_secs(61)).is_allowed());
    assert!(!fixed.check("k", &one, Nanos::from_secs(61)).is_allowed());
}
