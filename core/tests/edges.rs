//! Boundaries no other test pinned, found by a mutation audit (eleventh
//! session): each test fails on a one-token change of the code it names
//! (a comparison, a clamp, a fallback, a tie-break) that every other test
//! let through. Kept apart from the models: they are exact single-thread
//! facts, not properties.

use core::num::NonZeroU32;
use tollgate_core::*;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn secs(s: u64) -> Nanos {
    Nanos::from_secs(s)
}

/// `TokenBucket::refund_since` on a fresh bucket (never used, or `reset`)
/// near the clock's zero: nothing was charged, so it stays full — a fresh
/// `next` of 0 must not be read as GCRA's TAT. (token_bucket.rs: the
/// `seen == 0` case.)
#[test]
fn refund_since_on_a_fresh_bucket_leaves_it_full() {
    let q = Quota::per_second(nz(4)).with_burst(nz(5));
    for used_then_reset in [false, true] {
        let (b, g) = (TokenBucket::new(q), Gcra::new(q));
        if used_then_reset {
            assert!(b.check_n(Nanos::ZERO, 5).is_allowed());
            b.reset();
        }
        let t = Nanos::from_millis(100);
        assert_eq!(b.refund_since(t, t, 2), g.refund_since(t, t, 2));
        assert_eq!(b.peek(t).remaining, 5);
        assert_eq!(b.check_n(t, 5), g.check_n(t, 5));
    }
}

/// An entry of a `SlidingLog` admitted at the end of time (its expiry
/// saturates) can still be refunded. (slots.rs: the `MAX - 1` clamp of a
/// refund's bound.)
#[test]
fn a_refund_at_the_end_of_time_frees_a_saturated_entry() {
    let log = SlidingLog::<1>::new(secs(10)).unwrap();
    assert!(log.check(Nanos::MAX).is_allowed());
    assert_eq!(log.refund(Nanos::MAX, 1).remaining, 1);
    assert!(log.check(Nanos::MAX).is_allowed());
}

/// `SlidingLog`'s `undo` of more units than were admitted at `now` gives
/// the rest back as `refund` does (the earliest entries).
#[test]
fn undo_falls_back_to_refund_for_units_not_admitted_at_now() {
    let log = SlidingLog::<3>::new(secs(10)).unwrap();
    assert!(log.check(secs(1)).is_allowed());
    assert!(log.check(secs(2)).is_allowed());
    Limiter::undo(&log, secs(2), 2);
    assert_eq!(
        log.state(secs(2)),
        LogState {
            in_window: 0,
            oldest_leaves_after: None
        }
    );
}

/// A lease whose deadline is `now` is refused: it would be over at once.
#[test]
fn a_lease_deadline_at_now_is_refused() {
    let sem = LeaseSemaphore::<1>::new();
    let t = Nanos::new(107);
    assert_eq!(
        sem.try_acquire_until(t, t).err(),
        Some(LeaseError::DeadlineNotAfterNow)
    );
    assert_eq!(sem.available(t), 1);
}

/// A deadline of exactly 2^63 ns is a lease for ever (it cannot be stored as
/// a timed one without reading as a released marker): held, slot full.
#[test]
fn a_lease_deadline_of_exactly_2_pow_63_is_held_for_ever() {
    let sem = LeaseSemaphore::<1>::new();
    let l = sem
        .try_acquire_until(Nanos::ZERO, Nanos::new(1 << 63))
        .unwrap();
    assert_eq!(l.deadline(), Nanos::MAX);
    assert_eq!(sem.in_use(Nanos::new(1)), 1);
    assert!(matches!(
        sem.try_acquire_until(Nanos::new(1), Nanos::new(10)),
        Err(LeaseError::Full {
            in_use: 1,
            max: 1,
            ..
        })
    ));
}

/// A lease for ever that took over a slot expiring at the latest timed
/// deadline frees the slot when dropped. (slots.rs: the floor a release
/// marks is clamped below the markers.)
#[test]
fn a_lease_taken_over_at_the_latest_deadline_frees_its_slot_on_drop() {
    let sem = LeaseSemaphore::<1>::new();
    let d = Nanos::new((1 << 63) - 1);
    sem.try_acquire_until(Nanos::ZERO, d).unwrap().forget();
    let b = sem.try_acquire_until(d, Nanos::MAX).unwrap();
    drop(b);
    assert_eq!(sem.available(d), 1);
    assert!(sem.try_acquire_until(Nanos::new(5), Nanos::new(10)).is_ok());
}

/// An admission by `All` reports the largest `reset_after` of its members
/// (the member full again last), whichever position it has; so does
/// `peek_all`.
#[test]
fn all_reports_the_largest_reset_after() {
    let fast = || Gcra::new(Quota::per_second(nz(10)));
    let slow = || Gcra::new(Quota::per_second(nz(1)).with_burst(nz(2)));
    let a = All((fast(), slow()));
    let d = a.check_all(secs(1), 1);
    assert_eq!(
        d.decision,
        Decision::Allowed {
            remaining: 1,
            reset_after: secs(1)
        }
    );
    assert_eq!(d.member, 1);
    let (s, m) = a.peek_all(secs(1));
    assert_eq!((s.remaining, s.reset_after, m), (1, secs(1), 1));
    let a = All((slow(), fast()));
    let d = a.check_all(secs(1), 1);
    assert_eq!(
        d.decision,
        Decision::Allowed {
            remaining: 1,
            reset_after: secs(1)
        }
    );
    assert_eq!(d.member, 0);
    let (s, m) = a.peek_all(secs(1));
    assert_eq!((s.remaining, s.reset_after, m), (1, secs(1), 0));
}

/// Ties between members go to the first: the member an admission or
/// `peek_all` reports (fewest remaining), and the refusing member with the
/// shortest wait — what the `X-RateLimit-*` headers then describe.
#[test]
fn all_ties_go_to_the_first_member() {
    let q = Quota::per_second(nz(2));
    let a = All((
        Gcra::new(q),
        Gcra::new(Quota::per_minute(nz(120))),
        Gcra::new(q),
    ));
    let d = a.check_all(secs(1), 1);
    assert_eq!(d.decision.remaining(), 1);
    assert_eq!(d.member, 0);
    let (s, m) = a.peek_all(secs(1));
    assert_eq!((s.limit, m), (2, 0));
    let a = All((Gcra::new(q), Gcra::new(q)));
    assert!(a.check_all(secs(1), 2).decision.is_allowed());
    let d = a.check_all(secs(1), 1);
    assert_eq!(d.decision.retry_after(), Some(Nanos::from_millis(500)));
    assert_eq!(d.member, 0);
}
