use super::*;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn fixed(limit: u32, w: u64, offset: u64) -> FixedWindow {
    FixedWindow::new(nz(limit), Nanos::new(w), Nanos::new(offset)).unwrap()
}

fn sliding(limit: u32, w: u64) -> SlidingWindow {
    SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap()
}

fn word(f: &FixedWindow) -> u64 {
    f.state.load(Ordering::Relaxed)
}

/// A refund that would empty the window at an index ≡ 0 mod 2^24 keeps
/// one unit (the word 0 means "fresh at any index"); in the very first
/// window it empties it.
#[test]
fn refund_to_zero_at_index_multiple_of_2_24() {
    let w = SlidingWindow::new(NonZeroU32::new(10).unwrap(), Nanos::new(84)).unwrap();
    let now = Nanos::new((1 << 24) * 84 + 5);
    assert!(w.check(now).is_allowed());
    assert_eq!(w.refund(now, 1).remaining, 9, "one unit stays");
    let first = SlidingWindow::new(NonZeroU32::new(10).unwrap(), Nanos::new(84)).unwrap();
    assert!(first.check(Nanos::new(5)).is_allowed());
    assert_eq!(first.refund(Nanos::new(5), 1).remaining, 10);
}

#[test]
fn fixed_window_resets_on_boundaries() {
    let w = fixed(3, 100, 0);
    assert_eq!(
        w.check_n(Nanos::new(10), 3),
        Decision::Allowed {
            remaining: 0,
            reset_after: Nanos::new(90)
        }
    );
    assert_eq!(
        w.check(Nanos::new(99)),
        Decision::Denied {
            retry_after: Nanos::new(1),
            remaining: 0,
            reset_after: Nanos::new(1)
        }
    );
    assert!(w.check_n(Nanos::new(100), 3).is_allowed());
    assert_eq!(
        w.check_n(Nanos::new(150), 4),
        Decision::ExceedsCapacity {
            cost: 4,
            capacity: 3
        }
    );
}

#[test]
fn fixed_window_offset_aligns_windows() {
    // Offset 30: windows are [70, 170), [170, 270), ...
    let w = fixed(1, 100, 1_030);
    assert!(w.check(Nanos::new(69)).is_allowed());
    assert!(w.check(Nanos::new(70)).is_allowed());
    assert_eq!(w.check(Nanos::new(169)).retry_after(), Some(Nanos::new(1)));
    assert!(w.check(Nanos::new(170)).is_allowed());
}

#[test]
fn fixed_window_counts_against_the_later_window_when_time_goes_back() {
    let w = fixed(3, 100, 0);
    assert!(w.check_n(Nanos::new(150), 2).is_allowed());
    // Back to window 0: counts against window 1 (1 left), measured to
    // its end.
    assert_eq!(
        w.check(Nanos::new(50)),
        Decision::Allowed {
            remaining: 0,
            reset_after: Nanos::new(150)
        }
    );
    assert_eq!(w.check(Nanos::new(50)).retry_after(), Some(Nanos::new(150)));
    assert_eq!(w.peek(Nanos::new(50)).remaining, 0);
    // A refund back there gives back to window 1, the one charged.
    assert_eq!(w.refund(Nanos::new(50), 1).remaining, 1);
    assert_eq!(w.peek(Nanos::new(199)).remaining, 1);
    assert_eq!(w.peek(Nanos::new(200)).remaining, 3);
}

/// Found by the model proptest: a later window refunded to zero must
/// still absorb admissions when the clock steps back, or the earlier
/// window (already full) gets more than `limit`.
#[test]
fn a_later_window_refunded_to_zero_still_counts_when_time_goes_back() {
    let f = fixed(3, 100, 0);
    assert!(f.check_n(Nanos::new(450), 3).is_allowed()); // window 4 full
    assert!(f.check(Nanos::new(550)).is_allowed()); // window 5
    let _ = f.refund(Nanos::new(550), 1); // window 5 holds 0
    assert!(!f.rule().is_fresh(word(&f), Nanos::new(460)));
    // Back in window 4: counted in window 5 (fresh budget there), so
    // window 4 by itself never exceeds 3 + 0.
    assert_eq!(
        f.check(Nanos::new(460)),
        Decision::Allowed {
            remaining: 2,
            reset_after: Nanos::new(140)
        }
    );
    let s = sliding(3, 100);
    assert!(s.check_n(Nanos::new(450), 3).is_allowed());
    assert!(s.check(Nanos::new(650)).is_allowed());
    let _ = s.refund(Nanos::new(650), 1); // window 6 holds (0, 0)
    assert!(
        !s.rule()
            .is_fresh(s.state.load(Ordering::Relaxed), Nanos::new(460))
    );
    // Back in window 4: evaluated at the start of window 6, not in
    // window 4 whose 3 are spent.
    assert_eq!(s.check(Nanos::new(460)).remaining(), 2);
}

#[test]
fn fixed_window_refund_only_touches_the_current_window() {
    let w = fixed(3, 100, 0);
    let _ = w.check_n(Nanos::new(10), 3);
    let before = word(&w);
    assert_eq!(w.refund(Nanos::new(100), 2).remaining, 3);
    assert_eq!(word(&w), before, "an old window has nothing to refund");
    assert_eq!(w.refund(Nanos::new(10), 0).remaining, 0);
    assert_eq!(word(&w), before, "a zero refund writes nothing");
}

#[test]
fn denials_and_zero_costs_never_write() {
    let f = fixed(2, 100, 0);
    let s = sliding(2, 100);
    let _ = (f.check_n(Nanos::ZERO, 2), s.check_n(Nanos::ZERO, 2));
    let (fw, sw) = (word(&f), s.state.load(Ordering::Relaxed));
    for cost in [0, 1, 2, 3, u32::MAX] {
        let _ = (
            f.check_n(Nanos::new(5), cost),
            s.check_n(Nanos::new(5), cost),
        );
        let _ = (f.probe(Nanos::new(5), cost), s.probe(Nanos::new(5), cost));
        assert_eq!(word(&f), fw);
        assert_eq!(s.state.load(Ordering::Relaxed), sw);
    }
    // A zero cost on a fresh limiter in a later window: still no write.
    let f = fixed(2, 100, 0);
    assert!(f.check_n(Nanos::from_secs(7), 0).is_allowed());
    assert_eq!(word(&f), 0);
}

/// The fresh word 0 holds index 0; wherever `now` is — including in the
/// half of the index range that reads as "before window 0" — a fresh
/// limiter must decide as fresh and keep counting per window.
#[test]
fn fresh_state_is_fresh_at_any_index() {
    // 1 ns windows: index mod 2^32 of 3e9 is in the upper half.
    let f = fixed(2, 1, 0);
    let t = 3_000_000_000;
    for k in 0..4 {
        assert!(f.check_n(Nanos::new(t + k), 2).is_allowed(), "window {k}");
    }
    // 1 s sliding windows from index 40 000 (above 2^15) and above
    // 2^23 (Unix-epoch clocks).
    for start in [40_000, (1 << 23) + 5, 1_714_305_600] {
        let s = sliding(2, 1_000_000_000);
        for k in 0..4u64 {
            let now = Nanos::from_secs(start + 2 * k);
            assert!(s.check_n(now, 2).is_allowed(), "start {start}, step {k}");
        }
    }
}

/// A counter idle for less than half the index range rolls over
/// normally.
#[test]
fn long_idle_gaps_below_half_the_index_range() {
    let s = sliding(2, 1_000_000_000);
    let _ = s.check_n(Nanos::from_secs(10), 2);
    // Ten hours later (36 000 windows): fresh.
    assert!(s.check_n(Nanos::from_secs(36_010), 2).is_allowed());
    // 90 days later.
    assert!(
        s.check_n(Nanos::from_secs(36_010 + 90 * 86_400), 2)
            .is_allowed()
    );
    let f = fixed(2, 1_000_000, 0); // 1 ms windows
    let _ = f.check_n(Nanos::ZERO, 2);
    // 20 days of 1 ms windows later.
    assert!(f.check_n(Nanos::from_secs(20 * 86_400), 2).is_allowed());
}

/// A counter idle for half the index range or more reads as fresh (it
/// read as a later window until the tenth session: 97 days idle with 1 s
/// sliding windows refused for as long again). Only the last `MAX_BACK`
/// windows before a wrap still read as later: stricter, and for at most
/// `MAX_BACK` windows.
#[test]
fn long_idle_counters_read_as_fresh_but_for_a_band_before_the_wrap() {
    for idle in [1u64 << 31, 3 << 30, (1 << 32) - (1 << 20) - 1] {
        let f = fixed(2, 1, 0);
        let _ = f.check_n(Nanos::new(0), 2);
        assert!(
            f.check_n(Nanos::new(idle), 2).is_allowed(),
            "fixed, idle {idle}"
        );
    }
    for idle in [1u64 << 23, 3 << 22, (1 << 24) - (1 << 12) - 1] {
        let s = sliding(2, 1);
        let _ = s.check_n(Nanos::new(0), 2);
        assert!(
            s.check_n(Nanos::new(idle), 2).is_allowed(),
            "sliding, idle {idle}"
        );
    }
    // The band: read as window 2^32, which ends 2^19 + 1 ns later.
    let f = fixed(2, 1, 0);
    let _ = f.check_n(Nanos::new(0), 2);
    let aliased = Nanos::new((1 << 32) - (1 << 19));
    assert_eq!(
        f.check(aliased).retry_after(),
        Some(Nanos::new((1 << 19) + 1))
    );
    assert!(f.check(aliased + Nanos::new((1 << 19) + 1)).is_allowed());
    let s = sliding(2, 1);
    let _ = s.check_n(Nanos::new(0), 2);
    let aliased = Nanos::new((1 << 24) - (1 << 11));
    // Read as window 2^24 holding 2: the unit fits at the start of
    // window 2^24 + 2.
    assert_eq!(
        s.check(aliased).retry_after(),
        Some(Nanos::new((1 << 11) + 2))
    );
}

/// A clock stepping back up to `MAX_BACK` windows still counts against
/// the later window; further back it is not seen (documented).
#[test]
fn stepping_back_up_to_max_back_windows_stays_strict() {
    let f = fixed(2, 1_000, 0);
    let late = Nanos::new(1_000 * (u64::from(FIXED_MAX_BACK) + 10));
    assert!(f.check_n(late, 2).is_allowed());
    let back = late - Nanos::new(1_000 * u64::from(FIXED_MAX_BACK));
    assert!(!f.check(back).is_allowed());
    assert!(f.check(back - Nanos::new(1_000)).is_allowed());
    let s = sliding(2, 1_000);
    let late = Nanos::new(1_000 * (u64::from(SLIDING_MAX_BACK) + 10));
    assert!(s.check_n(late, 2).is_allowed());
    let back = late - Nanos::new(1_000 * u64::from(SLIDING_MAX_BACK));
    assert!(!s.check(back).is_allowed());
    assert!(s.check(back - Nanos::new(1_000)).is_allowed());
}

#[test]
fn sliding_window_weights_the_previous_window() {
    let w = sliding(10, 100);
    assert!(w.check_n(Nanos::new(99), 10).is_allowed());
    // At 150 (half way), ⌈10 × 50 / 100⌉ = 5 still count.
    assert_eq!(w.peek(Nanos::new(150)).remaining, 5);
    assert!(w.check_n(Nanos::new(150), 5).is_allowed());
    // Now 5 + 5: the next unit fits once the weight drops to 4, at 160.
    assert_eq!(w.check(Nanos::new(150)).retry_after(), Some(Nanos::new(10)));
    assert!(!w.check(Nanos::new(159)).is_allowed());
    assert!(w.check(Nanos::new(160)).is_allowed());
}

#[test]
fn sliding_window_rounds_the_weight_up() {
    let w = sliding(3, 100);
    assert!(w.check_n(Nanos::new(0), 3).is_allowed());
    // At 199, 3 × 1 / 100 = 0.03 of the previous window: rounded up to 1.
    assert_eq!(w.peek(Nanos::new(199)).remaining, 2);
    assert!(!w.check_n(Nanos::new(199), 3).is_allowed());
    assert_eq!(w.peek(Nanos::new(200)).remaining, 3);
    // Limit 1: any weight left rounds up to the whole unit, so the next
    // admission is at the start of the window after next.
    let w = sliding(1, 100);
    assert!(w.check(Nanos::new(0)).is_allowed());
    assert_eq!(w.check(Nanos::new(0)).retry_after(), Some(Nanos::new(200)));
    assert!(!w.check(Nanos::new(199)).is_allowed());
    assert!(w.check(Nanos::new(200)).is_allowed());
}

#[test]
fn sliding_window_retry_spans_windows() {
    let w = sliding(4, 100);
    // Window 0 holds 4 at 10: cost 4 needs window 0's count weighted to 0,
    // i.e. the start of window 2.
    assert!(w.check_n(Nanos::new(10), 4).is_allowed());
    assert_eq!(
        w.check_n(Nanos::new(10), 4).retry_after(),
        Some(Nanos::new(190))
    );
    // Cost 2 fits in window 1 once ⌈4 × (100 − x) / 100⌉ <= 2: x = 50.
    assert_eq!(
        w.check_n(Nanos::new(10), 2).retry_after(),
        Some(Nanos::new(140))
    );
    assert!(!w.check_n(Nanos::new(149), 2).is_allowed());
    assert!(w.check_n(Nanos::new(150), 2).is_allowed());
    // Reset: window 1 now holds 2, so the estimate is 0 at the end of
    // window 2.
    assert_eq!(w.peek(Nanos::new(150)).reset_after, Nanos::new(150));
}

#[test]
fn sliding_window_time_going_back_counts_at_the_later_window_start() {
    let w = sliding(4, 100);
    assert!(w.check_n(Nanos::new(50), 4).is_allowed());
    assert!(w.check_n(Nanos::new(180), 1).is_allowed()); // ⌈4 × 20/100⌉ = 1, +1
    // Back to window 0: evaluated at 100, where the previous 4 weigh in
    // full: denied; the unit fits in window 1 at x = 50 (⌈4 × 50/100⌉ + 1
    // = 3 <= 3), i.e. 100 ns from 50.
    let d = w.check(Nanos::new(50));
    assert_eq!(d.retry_after(), Some(Nanos::new(100)));
    assert_eq!(
        w.peek(Nanos::new(50)).reset_after,
        Nanos::new(50 + 200),
        "to the end of window 2"
    );
    assert!(!w.check(Nanos::new(149)).is_allowed());
    assert!(w.check(Nanos::new(150)).is_allowed());
}

#[test]
fn sliding_bound_is_tight() {
    // L units at the last ns of a window, then 2L − ⌈2L/W⌉ − L at W − 2.
    for (l, w) in [(3u32, 3u64), (10, 100), (5, 7), (1, 2), (4, 1), (7, 1_000)] {
        let s = sliding(l, w);
        assert!(s.check_n(Nanos::new(w - 1), l).is_allowed());
        let bound = s.sliding_bound();
        let second = bound.saturating_sub(u64::from(l));
        if w >= 2 && second > 0 {
            let t = Nanos::new(w + w - 2);
            let cost = u32::try_from(second).unwrap();
            assert!(s.check_n(t, cost).is_allowed(), "L {l}, W {w}");
            assert!(!s.check(t).is_allowed(), "L {l}, W {w}: bound is tight");
        }
    }
    assert_eq!(sliding(3, 3).sliding_bound(), 4);
    assert_eq!(sliding(10, 100).sliding_bound(), 19);
    assert_eq!(sliding(4, 1).sliding_bound(), 4);
    assert_eq!(sliding(4, 2).sliding_bound(), 4);
    assert_eq!(sliding(SLIDING_MAX_LIMIT, 1).sliding_bound(), 1_048_575);
    assert_eq!(
        sliding(SLIDING_MAX_LIMIT, u64::MAX).sliding_bound(),
        2 * 1_048_575 - 1
    );
}

#[test]
fn a_smaller_limit_than_the_count_stored_never_underflows() {
    // Keyed stores pass the limit per call: a key charged under a larger
    // plan can be checked under a smaller one.
    let rule = FixedRule::new(nz(8), Nanos::new(100), Nanos::ZERO).unwrap();
    let (_, state) = rule.decide(0, Nanos::ZERO, 8);
    let small = rule.with_limit(nz(3));
    let (d, new) = small.decide(state.unwrap(), Nanos::ZERO, 1);
    assert_eq!(d.remaining(), 0);
    assert_eq!(new, None);
    assert_eq!(small.snapshot(state.unwrap(), Nanos::ZERO).remaining, 0);
    let rule = SlidingRule::new(nz(8), Nanos::new(100)).unwrap();
    let (_, state) = rule.decide(0, Nanos::ZERO, 8);
    let small = rule.with_limit_clamped(nz(3));
    let (d, new) = small.decide(state.unwrap(), Nanos::ZERO, 1);
    assert_eq!(d.remaining(), 0);
    // In window 1, once ⌈8 × (100 − x) / 100⌉ <= 2: x = 75.
    assert_eq!(d.retry_after(), Some(Nanos::new(175)));
    assert_eq!(new, None);
}

#[test]
fn construction_errors_say_what_to_change() {
    extern crate std;
    use std::string::ToString;
    let e = SlidingWindow::new(nz(SLIDING_MAX_LIMIT + 1), Nanos::new(1)).unwrap_err();
    assert_eq!(
        e,
        WindowError::LimitTooLarge {
            limit: SLIDING_MAX_LIMIT + 1,
            max: SLIDING_MAX_LIMIT
        }
    );
    assert!(e.to_string().contains("at most 1048575"));
    let e = FixedWindow::new(nz(1), Nanos::ZERO, Nanos::ZERO).unwrap_err();
    assert_eq!(e, WindowError::ZeroWindow);
    assert!(e.to_string().contains("greater than zero"));
    assert_eq!(
        SlidingWindow::new(nz(1), Nanos::ZERO).unwrap_err(),
        WindowError::ZeroWindow
    );
    // Every u32 limit fits the fixed window's count.
    assert!(FixedWindow::new(NonZeroU32::MAX, Nanos::new(1), Nanos::MAX).is_ok());
}

#[test]
fn extremes_do_not_panic_and_stay_consistent() {
    let windows = [1, 2, 3, 86_400_000_000_000, u64::MAX - 1, u64::MAX];
    let times = [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX];
    let costs = [0, 1, 2, SLIDING_MAX_LIMIT, u32::MAX - 1, u32::MAX];
    for window in windows {
        for offset in [0, 1, u64::MAX] {
            for limit in [1, 2, SLIDING_MAX_LIMIT, u32::MAX] {
                let f = fixed(limit, window, offset);
                let s = sliding(limit.min(SLIDING_MAX_LIMIT), window);
                for &now in &times {
                    let now = Nanos::new(now);
                    for &cost in &costs {
                        for d in [f.check_n(now, cost), s.check_n(now, cost)] {
                            if let Decision::Denied { retry_after, .. } = d {
                                assert!(retry_after > Nanos::ZERO);
                            }
                        }
                        let _ = (f.refund(now, cost), s.refund(now, cost));
                        let _ = (f.probe(now, cost), s.probe(now, cost));
                    }
                    for snap in [f.peek(now), s.peek(now)] {
                        assert!(snap.remaining <= snap.limit);
                    }
                    // Stored states from anywhere, read at any time.
                    for &state in &[0, 1, u64::MAX, u64::MAX / 3, 1 << 63] {
                        for &cost in &costs {
                            let _ = f.decide(state, now, cost);
                            let _ = s.decide(state, now, cost);
                            let _ = f.rule().refunded(state, now, cost);
                            let _ = s.rule().refunded(state, now, cost);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn huge_windows_and_offsets_use_wide_arithmetic() {
    // now + offset overflows u64: index 1 of a u64::MAX window.
    let f = fixed(1, u64::MAX, u64::MAX - 1);
    assert!(f.check(Nanos::new(5)).is_allowed());
    // (5 + 2^64 − 2) mod (2^64 − 1) = 4: the window ends 2^64 − 5 ns
    // after `now`.
    assert_eq!(
        f.check(Nanos::new(5)).retry_after(),
        Some(Nanos::new(u64::MAX - 4))
    );
    // A window ending past 2^64 ns: the wait saturates.
    let f = fixed(1, u64::MAX, 0);
    assert!(f.check(Nanos::MAX).is_allowed());
    assert_eq!(f.check(Nanos::MAX).retry_after(), Some(Nanos::MAX));
    // prev × (W − e) overflows u64 for W = u64::MAX.
    let s = sliding(SLIDING_MAX_LIMIT, u64::MAX);
    assert!(
        s.check_n(Nanos::new(u64::MAX - 1), SLIDING_MAX_LIMIT)
            .is_allowed()
    );
    let d = s.check(Nanos::MAX);
    // At W (index 1, elapsed 0) the weight is the full count.
    assert_eq!(d.remaining(), 0);
    assert!(d.retry_after().is_some_and(|r| r > Nanos::ZERO));
}

#[test]
fn mul_div_matches_wide_arithmetic() {
    for (a, b, d) in [
        (3, 7, 2),
        (u64::MAX, u64::MAX, u64::MAX),
        (1 << 20, u64::MAX - 3, u64::MAX),
        (5, 0, 1),
        (0, u64::MAX, 3),
    ] {
        let p = u128::from(a) * u128::from(b);
        let d128 = u128::from(d);
        assert_eq!(u128::from(mul_div(a, b, d, false)), p / d128);
        assert_eq!(u128::from(mul_div(a, b, d, true)), p.div_ceil(d128));
    }
}

/// A stale undo (the caller's `now` is in a window another thread has
/// already left) must not take a unit off the later window. Found by
/// review: `undo` fell back to `refund`.
#[test]
fn a_stale_undo_leaves_a_later_window_alone() {
    use crate::Limiter;
    let fixed = FixedWindow::new(nz(1), Nanos::new(100), Nanos::ZERO).unwrap();
    let sliding = SlidingWindow::new(nz(1), Nanos::new(100)).unwrap();
    let cases: [(&dyn Limiter, u64); 2] = [(&fixed, 201), (&sliding, 300)];
    for (l, later) in cases {
        let later = Nanos::new(later);
        assert!(l.check(Nanos::new(150)).is_allowed());
        assert!(l.check(later).is_allowed());
        l.undo(Nanos::new(150), 1);
        assert!(!l.check(later).is_allowed(), "{:?}", l.peek(later));
    }
}

/// Found in the tenth session's review: with a later window stored (time
/// stepped back) and everything in it refunded, the window read as full
/// but still reported a wait until that later window's start.
#[test]
fn a_full_sliding_window_reports_no_reset_wait() {
    let sw = SlidingWindow::new(NonZeroU32::new(2).unwrap(), Nanos::new(100)).unwrap();
    assert!(sw.check(Nanos::new(250)).is_allowed());
    let _ = sw.refund(Nanos::new(250), 1);
    let s = sw.peek(Nanos::new(150));
    assert_eq!((s.remaining, s.reset_after), (2, Nanos::ZERO), "{s:?}");
}

/// A cost of 0 is a read-out: answered, never refused, even when the
/// estimate at an earlier `now` is above the limit.
#[test]
fn a_zero_cost_sliding_check_is_never_refused() {
    let sw = SlidingWindow::new(NonZeroU32::new(2).unwrap(), Nanos::new(100)).unwrap();
    assert!(sw.check_n(Nanos::new(150), 2).is_allowed());
    assert!(sw.check_n(Nanos::new(260), 1).is_allowed());
    let d = sw.check_n(Nanos::new(150), 0);
    assert!(matches!(d, Decision::Allowed { remaining: 0, .. }), "{d:?}");
    assert!(!sw.check(Nanos::new(150)).is_allowed());
}
