//! Late refunds on the core limiters (`Limiter::refund_since`): a refund
//! that arrives after its charge has partly or wholly regenerated gives back
//! only what the charge still weighs, so the requests that stay admitted
//! (admitted and not refunded) obey each algorithm's bound as if the
//! refunded ones had never been made. `Limiter::refund` at the refund's
//! time does not (the last test pins why `refund_since` exists).

mod common;

use common::late_refunds::{gcra_bound, kept, ops, per_window};

use std::num::NonZeroU32;

use proptest::prelude::*;
use tollgate_core::{
    All, FixedWindow, Gcra, Limiter, Nanos, Quota, SlidingLog, SlidingWindow, TokenBucket,
};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn gcra_late_refunds_never_loosen_the_bound(
        burst in 1u32..5,
        per_sec in 1u32..5,
        ops in ops(700_000_000, 2),
    ) {
        let q = Quota::per_second(nz(per_sec)).with_burst(nz(burst));
        let g = Gcra::new(q);
        gcra_bound(&kept(&g, &ops), burst, q.emission_interval().as_u64())?;
    }

    #[test]
    fn window_late_refunds_never_loosen_a_window(
        limit in 1u32..5,
        ops in ops(400, 2),
    ) {
        let w = 1_000u64;
        let fixed = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::ZERO).unwrap();
        per_window(&kept(&fixed, &ops), w, limit)?;
        // A sliding window's estimate includes the current window's count,
        // so each fixed window holds at most the limit too.
        let sliding = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        per_window(&kept(&sliding, &ops), w, limit)?;
    }

    /// The sliding log's exact bound in every `(t − W, t]`.
    #[test]
    fn sliding_log_late_refunds_never_loosen_any_window(ops in ops(400, 1)) {
        let w = 1_000u64;
        let log = SlidingLog::<3>::new(Nanos::new(w)).unwrap();
        let kept = kept(&log, &ops);
        for &(t, _) in &kept {
            let n = kept.iter().filter(|&&(s, _)| s <= t && s + w > t).count();
            prop_assert!(n <= 3, "{} in ({} − W, {}]; kept {:?}", n, t, t, kept);
        }
    }

    /// A composite refunds each member what it still owes: the GCRA member's
    /// bound and the window's both hold.
    #[test]
    fn composite_late_refunds_keep_every_members_bound(
        limit in 1u32..5,
        per_sec in 1u32..5,
        ops in ops(700_000_000, 1),
    ) {
        let q = Quota::per_second(nz(per_sec));
        let w = 2_000_000_000u64;
        let all = All((Gcra::new(q), FixedWindow::new(nz(limit), Nanos::new(w), Nanos::ZERO).unwrap()));
        let kept = kept(&all, &ops);
        gcra_bound(&kept, per_sec, q.emission_interval().as_u64())?;
        per_window(&kept, w, limit)?;
    }
}

#[test]
fn prompt_refunds_give_everything_back() {
    let t0 = Nanos::from_secs(5);
    let g = Gcra::new(Quota::per_minute(nz(1)));
    assert!(g.check(t0).is_allowed());
    // 20 ms later nearly all of the minute's unit is still owed: it passes.
    let t1 = t0 + Nanos::from_millis(20);
    let _ = g.refund_since(t0, t1, 1);
    assert!(g.check(t1).is_allowed());
    // The default, at the instant of the charge: `refund`.
    // (A bucket refunds up to `burst − 1`: burst 3, two spent.)
    let tb = TokenBucket::new(Quota::per_minute(nz(3)));
    assert!(tb.check_n(t0, 2).is_allowed());
    assert_eq!(Limiter::refund_since(&tb, t0, t0, 1).remaining, 2);
    // Later: nothing (never more than owed; here less).
    assert!(tb.check(t0).is_allowed());
    assert_eq!(Limiter::refund_since(&tb, t0, t1, 1).remaining, 1);
    // The sliding log, while the charge is in its window: given back.
    let log = SlidingLog::<1>::new(Nanos::from_secs(60)).unwrap();
    assert!(log.check(t0).is_allowed());
    assert_eq!(Limiter::refund_since(&log, t0, t1, 1).remaining, 1);
    assert!(log.check(t1).is_allowed());
}

/// `refund` at the refund's time is what a caller without `refund_since`
/// does: it lets a refilled limiter admit one more than its burst, and a
/// new window one more than its limit.
#[test]
fn a_refund_at_the_late_time_would_over_admit() {
    let q = Quota::per_second(nz(1)).with_burst(nz(2));
    let (t0, t1) = (Nanos::ZERO, Nanos::from_secs(2)); // refilled by t1
    let (late, naive) = (Gcra::new(q), Gcra::new(q));
    for g in [&late, &naive] {
        assert!(g.check(t0).is_allowed()); // the request refunded late
        assert!(g.check_n(t1, 2).is_allowed()); // the burst spent at t1
    }
    let _ = late.refund_since(t0, t1, 1);
    let _ = naive.refund(t1, 1);
    assert!(!late.check(t1).is_allowed(), "burst 2 at one instant");
    assert!(naive.check(t1).is_allowed(), "the naive way: a third at t1");

    let w = Nanos::from_secs(60);
    let (late, naive) = (
        FixedWindow::new(nz(1), w, Nanos::ZERO).unwrap(),
        FixedWindow::new(nz(1), w, Nanos::ZERO).unwrap(),
    );
    let (t0, t1) = (Nanos::from_secs(59), Nanos::from_secs(61));
    for f in [&late, &naive] {
        assert!(f.check(t0).is_allowed());
        assert!(f.check(t1).is_allowed());
    }
    let _ = late.refund_since(t0, t1, 1);
    let _ = naive.refund(t1, 1);
    assert!(!late.check(t1).is_allowed());
    assert!(naive.check(t1).is_allowed());
}

/// Found by review: a refund whose `now` is a little stale (still in the
/// charge's window) while another thread has already counted in the next
/// window must not take a unit off that next window.
#[test]
fn a_stale_refund_gives_nothing_from_a_later_window() {
    let w = Nanos::new(100);
    let fixed = FixedWindow::new(nz(1), w, Nanos::ZERO).unwrap();
    let sliding = SlidingWindow::new(nz(1), w).unwrap();
    let ls: [&dyn Limiter; 2] = [&fixed, &sliding];
    for (i, l) in ls.into_iter().enumerate() {
        assert!(l.check(Nanos::new(150)).is_allowed(), "{i}");
        // Another thread counts in a later window (the sliding window still
        // weighs window 1 during window 2, so it goes on to window 3).
        let later = if i == 1 { 300 } else { 201 };
        assert!(l.check(Nanos::new(later)).is_allowed(), "{i}");
        // The refund of the charge at 150, with a `now` read before 200.
        let _ = l.refund_since(Nanos::new(150), Nanos::new(199), 1);
        assert!(
            !l.check(Nanos::new(later)).is_allowed(),
            "{i}: the later window admitted twice"
        );
    }
}
