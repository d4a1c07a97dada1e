//! Loom models of every CAS path in the core, driven through the public API.
//!
//! Run with:
//! `RUSTFLAGS="--cfg tollgate_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p tollgate-core --test loom --release`
#![cfg(tollgate_loom)]

use std::num::NonZeroU32;

use loom::sync::Arc;
use loom::thread;
use tollgate_core::{Clock, Gcra, ManualClock, Nanos, Quota};

fn quota(burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(burst).unwrap())
}

/// Two threads race for the last token: exactly one wins, whatever the order.
#[test]
fn last_token_goes_to_exactly_one_thread() {
    loom::model(|| {
        let g = Arc::new(Gcra::new(quota(2)));
        assert!(g.check(Nanos::ZERO).is_allowed());
        let g2 = g.clone();
        let t = thread::spawn(move || g2.check(Nanos::ZERO).is_allowed());
        let here = g.check(Nanos::ZERO).is_allowed();
        let there = t.join().unwrap();
        assert!(here ^ there, "exactly one of the two must be admitted");
        assert_eq!(g.peek(Nanos::ZERO).remaining, 0);
    });
}

/// Three threads, two tokens, costs 1 and 2 mixed: admitted cost never
/// exceeds the burst.
#[test]
fn racing_costs_never_exceed_burst() {
    loom::model(|| {
        let g = Arc::new(Gcra::new(quota(3)));
        let spawn = |cost: u32| {
            let g = g.clone();
            thread::spawn(move || {
                if g.check_n(Nanos::ZERO, cost).is_allowed() {
                    cost
                } else {
                    0
                }
            })
        };
        let a = spawn(2);
        let b = spawn(2);
        let here = if g.check(Nanos::ZERO).is_allowed() {
            1
        } else {
            0
        };
        let total = here + a.join().unwrap() + b.join().unwrap();
        // Burst 3 with costs {2, 2, 1}: whatever the order, exactly one of the
        // 2s and the 1 fit; the other 2 is refused.
        assert_eq!(total, 3, "admitted {total}, burst 3");
        assert_eq!(3 - total, g.peek(Nanos::ZERO).remaining);
    });
}

/// A check racing a refund: the check wins the refunded token only if the
/// refund happened first; the token is never both refunded and left unused
/// nor spent twice.
#[test]
fn check_racing_refund() {
    loom::model(|| {
        let g = Arc::new(Gcra::new(quota(1)));
        assert!(g.check(Nanos::ZERO).is_allowed());
        let g2 = g.clone();
        let t = thread::spawn(move || g2.refund(Nanos::ZERO, 1));
        let admitted = g.check(Nanos::ZERO).is_allowed();
        let _ = t.join().unwrap();
        let left = g.peek(Nanos::ZERO).remaining;
        // Either the refund came first and the check took the token back
        // (0 left), or the check was refused and the refund left it free.
        assert_eq!(left, if admitted { 0 } else { 1 });
    });
}

/// A refund racing an admission that succeeds either way: neither update
/// may be lost (a lost admission would over-admit, a lost refund leaks a
/// token).
#[test]
fn refund_does_not_overwrite_a_concurrent_admission() {
    loom::model(|| {
        let g = Arc::new(Gcra::new(quota(2)));
        assert!(g.check(Nanos::ZERO).is_allowed());
        let g2 = g.clone();
        let t = thread::spawn(move || g2.refund(Nanos::ZERO, 1));
        assert!(g.check(Nanos::ZERO).is_allowed());
        let _ = t.join().unwrap();
        // 2 admitted, 1 refunded: exactly 1 of 2 left, in every order.
        assert_eq!(g.peek(Nanos::ZERO).remaining, 1);
    });
}

/// A peek racing a check sees the state before or after, never a torn or
/// invented one, and never changes anything.
#[test]
fn check_racing_peek() {
    loom::model(|| {
        let g = Arc::new(Gcra::new(quota(2)));
        let g2 = g.clone();
        let t = thread::spawn(move || g2.peek(Nanos::ZERO));
        assert!(g.check(Nanos::ZERO).is_allowed());
        let seen = t.join().unwrap();
        assert!(seen.remaining == 2 || seen.remaining == 1, "{seen:?}");
        assert_eq!(g.peek(Nanos::ZERO).remaining, 1);
    });
}

/// A check racing a clock advance on a shared ManualClock: admissions stay
/// within burst + elapsed / T.
#[test]
fn check_with_advancing_clock() {
    loom::model(|| {
        let clock = Arc::new(ManualClock::new(Nanos::ZERO));
        let g = Arc::new(Gcra::new(quota(1))); // T = 1 s, burst 1
        let (c2, g2) = (clock.clone(), g.clone());
        let t = thread::spawn(move || g2.check(c2.now()).is_allowed() as u32);
        clock.advance(Nanos::from_secs(1));
        let here = g.check(clock.now()).is_allowed() as u32;
        let total = here + t.join().unwrap();
        // 1 s elapsed at most: burst 1 + 1 s / 1 s = 2.
        assert!(total <= 2);
        assert!(total >= 1);
    });
}
