//! Loom models of the `FixedWindow` and `SlidingWindow` CAS paths, through
//! the public API.
//!
//! Run with:
//! `RUSTFLAGS="--cfg tollgate_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom cargo test -p tollgate-core --test loom_window --release`
#![cfg(tollgate_loom)]

use std::num::NonZeroU32;

use loom::sync::Arc;
use loom::thread;
use tollgate_core::{Clock, FixedWindow, Limiter, ManualClock, Nanos, SlidingWindow};

const SECOND: Nanos = Nanos::from_secs(1);

fn fixed(limit: u32) -> FixedWindow {
    FixedWindow::new(NonZeroU32::new(limit).unwrap(), SECOND, Nanos::ZERO).unwrap()
}

fn sliding(limit: u32) -> SlidingWindow {
    SlidingWindow::new(NonZeroU32::new(limit).unwrap(), SECOND).unwrap()
}

/// Two threads race for the last unit of a window: exactly one wins.
fn last_unit_goes_to_one<L: Limiter + Send + Sync + 'static>(make: fn(u32) -> L) {
    loom::model(move || {
        let l = Arc::new(make(2));
        assert!(l.check(Nanos::ZERO).is_allowed());
        let l2 = l.clone();
        let t = thread::spawn(move || l2.check(Nanos::ZERO).is_allowed());
        let here = l.check(Nanos::ZERO).is_allowed();
        let there = t.join().unwrap();
        assert!(here ^ there, "exactly one of the two must be admitted");
        assert_eq!(l.peek(Nanos::ZERO).remaining, 0);
    });
}

#[test]
fn fixed_window_last_unit_goes_to_one_thread() {
    last_unit_goes_to_one(fixed);
}

#[test]
fn sliding_window_last_unit_goes_to_one_thread() {
    last_unit_goes_to_one(sliding);
}

/// Three threads with costs 2, 2 and 1 against a limit of 3: whatever the
/// order, one 2 and the 1 fit, the other 2 is refused.
fn racing_costs_fill_exactly<L: Limiter + Send + Sync + 'static>(make: fn(u32) -> L) {
    loom::model(move || {
        let l = Arc::new(make(3));
        let spawn = |cost: u32| {
            let l = l.clone();
            thread::spawn(move || {
                if l.check_n(Nanos::ZERO, cost).is_allowed() {
                    cost
                } else {
                    0
                }
            })
        };
        let (a, b) = (spawn(2), spawn(2));
        let here = u32::from(l.check(Nanos::ZERO).is_allowed());
        let total = here + a.join().unwrap() + b.join().unwrap();
        assert_eq!(total, 3, "admitted {total} of limit 3");
        assert_eq!(l.peek(Nanos::ZERO).remaining, 0);
    });
}

#[test]
fn fixed_window_racing_costs_fill_exactly() {
    racing_costs_fill_exactly(fixed);
}

#[test]
fn sliding_window_racing_costs_fill_exactly() {
    racing_costs_fill_exactly(sliding);
}

/// A check at a clock that another thread is moving into the next window,
/// racing that thread's own check there. The old window is full, and one
/// unit is free at the advanced time (`free_at`): exactly one of the two
/// gets it, whichever time each read and whichever CAS lands first — the
/// roll-over is part of the admission's CAS, and a check that read the old
/// time after the roll counts against the later window.
fn roll_over_race<L: Limiter + Send + Sync + 'static>(limiter: fn() -> L, free_at: Nanos) {
    loom::model(move || {
        let l = Arc::new(limiter());
        let clock = Arc::new(ManualClock::new(Nanos::ZERO));
        let (l2, c2) = (l.clone(), clock.clone());
        let mover = thread::spawn(move || {
            let now = c2.advance(free_at);
            l2.check(now).is_allowed()
        });
        let reader = l.check(clock.now()).is_allowed();
        let moved = mover.join().unwrap();
        assert_eq!(
            u32::from(reader) + u32::from(moved),
            1,
            "one unit free at {free_at:?}: reader {reader}, mover {moved}"
        );
        assert_eq!(l.peek(free_at).remaining, 0);
    });
}

#[test]
fn fixed_window_check_racing_roll_over() {
    // Window 0 full (1 of 1); window 1 starts at 1 s with 1 free.
    roll_over_race(
        || {
            let f = fixed(1);
            assert!(f.check(Nanos::ZERO).is_allowed());
            f
        },
        SECOND,
    );
}

#[test]
fn sliding_window_check_racing_roll_over() {
    // Window 0 full (2 of 2); at 1.5 s, ⌈2 × 0.5⌉ = 1 still counts: 1 free.
    roll_over_race(
        || {
            let s = sliding(2);
            assert!(s.check_n(Nanos::ZERO, 2).is_allowed());
            s
        },
        Nanos::from_millis(1_500),
    );
}

/// A refund racing a check that succeeds either way: neither update is
/// lost (one unit held before, one after).
fn refund_racing_check<L: Limiter + Send + Sync + 'static>(make: fn(u32) -> L) {
    loom::model(move || {
        let l = Arc::new(make(2));
        assert!(l.check(Nanos::ZERO).is_allowed());
        let l2 = l.clone();
        let t = thread::spawn(move || {
            let _ = l2.refund(Nanos::ZERO, 1);
        });
        assert!(l.check(Nanos::ZERO).is_allowed());
        t.join().unwrap();
        assert_eq!(l.peek(Nanos::ZERO).remaining, 1, "an update was lost");
    });
}

#[test]
fn fixed_window_refund_racing_check_loses_nothing() {
    refund_racing_check(fixed);
}

#[test]
fn sliding_window_refund_racing_check_loses_nothing() {
    refund_racing_check(sliding);
}

/// A refund racing a check for the unit it frees: the check wins exactly
/// when the refund landed first, and the final state agrees.
fn refund_frees_the_unit<L: Limiter + Send + Sync + 'static>(make: fn(u32) -> L) {
    loom::model(move || {
        let l = Arc::new(make(1));
        assert!(l.check(Nanos::ZERO).is_allowed());
        let l2 = l.clone();
        let t = thread::spawn(move || l2.refund(Nanos::ZERO, 1).remaining);
        let admitted = l.check(Nanos::ZERO).is_allowed();
        let after_refund = t.join().unwrap();
        let remaining = l.peek(Nanos::ZERO).remaining;
        assert_eq!(remaining, u32::from(!admitted));
        // The refund's own read-out is a state the word really held.
        assert!(after_refund <= 1);
        if !admitted {
            // The check ran first and was refused: the refund then freed it.
            assert_eq!(after_refund, 1);
        }
    });
}

#[test]
fn fixed_window_refund_frees_the_unit() {
    refund_frees_the_unit(fixed);
}

#[test]
fn sliding_window_refund_frees_the_unit() {
    refund_frees_the_unit(sliding);
}
