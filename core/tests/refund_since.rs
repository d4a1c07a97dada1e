//! Late refunds on the core limiters (`Limiter::refund_since`): a refund
//! that arrives after its charge has partly or wholly regenerated gives back
//! only what the charge still weighs, so the requests that stay admitted
//! (admitted and not refunded) obey each algorithm's bound as if the
//! refunded ones had never been made. `Limiter::refund` at the refund's
//! time does not (the last test pins why `refund_since` exists).

mod common;

use common::late_refunds::{gcra_bound_with_slack, kept, kept_and_lag, ops, per_window};

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
        let (kept, lag) = kept_and_lag(&g, &ops);
        gcra_bound_with_slack(&kept, burst, q.emission_interval().as_u64(), lag)?;
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

    /// `TokenBucket::refund_since`, with on-time and stale refunds: GCRA's
    /// bound holds for what stays admitted.
    #[test]
    fn token_bucket_late_refunds_never_loosen_the_bound(
        burst in 1u32..5,
        per_sec in 1u32..5,
        ops in ops(700_000_000, 2),
    ) {
        let q = Quota::per_second(nz(per_sec)).with_burst(nz(burst));
        let b = TokenBucket::new(q);
        let (kept, lag) = kept_and_lag(&b, &ops);
        gcra_bound_with_slack(&kept, burst, q.emission_interval().as_u64(), lag)?;
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
        let (kept, lag) = kept_and_lag(&all, &ops);
        gcra_bound_with_slack(&kept, per_sec, q.emission_interval().as_u64(), lag)?;
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
    // 20 ms later, as GCRA: nearly all of the 20 s interval is still owed.
    assert!(tb.check(t0).is_allowed());
    assert_eq!(Limiter::refund_since(&tb, t0, t1, 1).remaining, 2);
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

/// Found by review (eighth session): `refund_since(t0, t0, c)` — a prompt
/// refund of a charge at t0, as the refunding thread's clock reads — made
/// after another thread with a later clock refilled and spent the bucket,
/// gave back units the refill had already restored: 19 kept at one instant
/// with a burst of 10.
#[test]
fn token_bucket_stale_refund_since_gives_back_nothing_refilled() {
    let b = TokenBucket::new(Quota::per_second(nz(10)));
    let t0 = Nanos::from_secs(1);
    let t1 = Nanos::from_secs(100); // far past a full refill
    assert!(b.check_n(t0, 9).is_allowed());
    let mut kept_at_t1 = 0;
    if b.check_n(t1, 10).is_allowed() {
        kept_at_t1 += 10;
    }
    let _ = Limiter::refund_since(&b, t0, t0, 9);
    while b.check(t1).is_allowed() {
        kept_at_t1 += 1;
    }
    assert!(
        kept_at_t1 <= 10,
        "kept {kept_at_t1} at one instant, burst 10"
    );
}

/// The same for `Gcra::refund_since` with a refund `now` a little after the
/// charge but before another thread's later check (18 kept with burst 10),
/// and for a composite's rollback (`undo`) made with a stale `now`.
#[test]
fn gcra_stale_refund_since_gives_back_nothing_refilled() {
    let g = Gcra::new(Quota::per_second(nz(10)));
    let t0 = Nanos::from_secs(1);
    let t1 = Nanos::from_secs(100);
    assert!(g.check_n(t0, 9).is_allowed());
    let mut kept_at_t1 = 0;
    if g.check_n(t1, 10).is_allowed() {
        kept_at_t1 += 10;
    }
    let _ = g.refund_since(t0, t0 + Nanos::from_millis(1), 9);
    while g.check(t1).is_allowed() {
        kept_at_t1 += 1;
    }
    assert!(
        kept_at_t1 <= 10,
        "kept {kept_at_t1} at one instant, burst 10"
    );

    // A rollback: the stale thread's admission of 9 at t0 is undone after
    // the t1 thread spent the refilled burst.
    for undo_by in [0, 1] {
        let g = Gcra::new(Quota::per_second(nz(10)));
        let b = TokenBucket::new(Quota::per_second(nz(10)));
        let ls: [&dyn Limiter; 2] = [&g, &b];
        let l = ls[undo_by];
        assert!(l.check_n(t0, 9).is_allowed());
        assert!(l.check_n(t1, 10).is_allowed());
        l.undo(t0, 9);
        assert!(
            !l.check(t1).is_allowed(),
            "limiter {undo_by}: an 11th at t1"
        );
    }
}
