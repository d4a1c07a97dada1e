//! Property tests of `FixedWindow` and `SlidingWindow` against reference
//! models that use full (not modular) window indexes.
//!
//! * Packed state words round-trip through their named fields, both ways.
//! * `FixedWindow` equals an exact per-window counter (`HashMap` of counts per
//!   window index) with offsets, refunds and monotone time, starting anywhere
//!   in the `u64` range (so stored indexes wrap modulo 2^32).
//! * `FixedWindow` with time going back: equals a model that counts against
//!   the latest window holding a count, and never admits more than `limit`
//!   in the latest window admitted so far.
//! * `SlidingWindow` equals the estimate computed from per-window counts, and
//!   obeys its documented error bound on random histories, from a list of
//!   admitted `(time, cost)`: at most `limit` per fixed window and at most
//!   `sliding_bound() = max(L, 2L − ⌈2L/W⌉)` in every `(t − W, t]` — also with
//!   time going back, each admission placed at the latest time admitted so
//!   far.
//! * `retry_after` is exact for both: 1 ns earlier is still refused, at
//!   `retry_after` the same cost is admitted.
//! * A denial changes nothing (`peek` and `probe` before == after).
//! * A steady load of one unit every `p` ns passes whenever
//!   `⌈W / p⌉ + 1 <= limit`.

mod common;

use std::collections::HashMap;
use std::num::NonZeroU32;

use proptest::prelude::*;
use tollgate_core::window::{
    SLIDING_INDEX_MASK, SLIDING_MAX_LIMIT, pack_fixed, pack_sliding, unpack_fixed, unpack_sliding,
};
use tollgate_core::{Decision, FixedWindow, Nanos, SlidingWindow, Snapshot};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A `u128` span as `Nanos`, saturating like the limiters do.
fn ns(v: u128) -> Nanos {
    Nanos::new(u64::try_from(v).unwrap_or(u64::MAX))
}

/// One operation of a history: move the clock by `dt` 256ths of a window
/// (plus `jitter` ns) forwards or backwards, then check or refund `cost`.
#[derive(Clone, Debug)]
struct Op {
    back: bool,
    frac: u32,
    jitter: u64,
    refund: bool,
    cost: u32,
}

impl Op {
    /// The next time: monotone unless `backwards`; saturating in `u64`.
    fn advance(&self, now: u64, w: u64, backwards: bool) -> u64 {
        let dt = u64::try_from(u128::from(self.frac) * u128::from(w) / 256)
            .unwrap_or(u64::MAX)
            .saturating_add(self.jitter);
        if backwards && self.back {
            now.saturating_sub(dt)
        } else {
            now.saturating_add(dt)
        }
    }
}

fn ops(max_cost: u32, refunds: bool) -> impl Strategy<Value = Vec<Op>> {
    let frac = prop_oneof![3 => Just(0u32), 4 => 0u32..=64, 2 => 0u32..=300, 1 => 0u32..=1_200];
    let op = (any::<bool>(), frac, 0u64..3, 0u32..8, 0..=max_cost).prop_map(
        move |(back, frac, jitter, r, cost)| Op {
            back,
            frac,
            jitter,
            refund: refunds && r == 0,
            cost,
        },
    );
    prop::collection::vec(op, 1..160)
}

/// Window lengths: mostly small (many windows per history), sometimes
/// seconds to days, sometimes huge (u128 paths).
fn window() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 1u64..=100,
        2 => 101u64..=100_000,
        1 => 1_000_000_000u64..=86_400_000_000_000,
        1 => (1u64 << 40)..=u64::MAX,
    ]
}

/// Start times anywhere, including where window indexes pass 2^24 or 2^32
/// and near the end of the u64 range.
fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..1_000_000,
        any::<u64>(),
        (u64::MAX - (1 << 20))..=u64::MAX,
    ]
}

// ---- reference models ----------------------------------------------------------

/// `FixedWindow` with a full window index: counts against the stored window
/// when it is the same or later, else against now's.
struct FixedModel {
    limit: u32,
    w: u128,
    offset: u128,
    stored: Option<(u128, u32)>,
}

impl FixedModel {
    fn new(limit: u32, w: u64, offset: u64) -> Self {
        FixedModel {
            limit,
            w: u128::from(w),
            offset: u128::from(offset % w),
            stored: None,
        }
    }

    /// `(window index counted against, its count, ns to its end)`.
    fn at(&self, now: u64) -> (u128, u32, u128) {
        let t = u128::from(now) + self.offset;
        let i = t / self.w;
        let (index, count) = match self.stored {
            // The word 0 (index ≡ 0 mod 2^32, count 0) is the fresh state.
            Some((s, c)) if s >= i && (c > 0 || s % (1 << 32) != 0) => (s, c),
            _ => (i, 0),
        };
        (index, count, (index + 1) * self.w - t)
    }

    fn check(&mut self, now: u64, cost: u32) -> Decision {
        let l = self.limit;
        if cost > l {
            return Decision::ExceedsCapacity { cost, capacity: l };
        }
        let (i, c, to_end) = self.at(now);
        let reset = |c: u32| if c == 0 { Nanos::ZERO } else { ns(to_end) };
        if c + cost <= l {
            if cost > 0 {
                self.stored = Some((i, c + cost));
            }
            Decision::Allowed {
                remaining: l - c - cost,
                reset_after: reset(c + cost),
            }
        } else {
            Decision::Denied {
                retry_after: ns(to_end),
                remaining: l - c,
                reset_after: reset(c),
            }
        }
    }

    /// Returns the window refunded and how much.
    fn refund(&mut self, now: u64, cost: u32) -> (u128, u32) {
        let (i, c, _) = self.at(now);
        let back = c - fixed_refund_left(i, c, cost);
        if back > 0 {
            self.stored = Some((i, c - back));
        }
        (i, back)
    }

    fn peek(&self, now: u64) -> Snapshot {
        let (_, c, to_end) = self.at(now);
        Snapshot {
            limit: self.limit,
            remaining: self.limit - c,
            reset_after: if c == 0 { Nanos::ZERO } else { ns(to_end) },
        }
    }
}

/// What a `FixedWindow` refund of `cost` leaves of `count` in window `i`
/// (full index): never the fresh word 0 outside the very first window, so
/// in a window whose index is ≡ 0 mod 2^32 the last unit stays (stricter,
/// once every 2^32 windows; documented at `FixedRule::refunded`).
fn fixed_refund_left(i: u128, count: u32, cost: u32) -> u32 {
    let keep = u32::from(i % (1 << 32) == 0 && i != 0);
    (count - cost.min(count)).max(keep.min(count))
}

/// The sliding estimate from a full-index state: `(index, prev, curr)`, or
/// `None` when nothing is held.
#[derive(Clone, Copy)]
struct SlidingModel {
    limit: u32,
    w: u64,
    stored: Option<(u64, u32, u32)>,
}

/// What the model reads at some time: counts, elapsed at the evaluation
/// point, lead from now to it, and the window index.
struct Reading {
    index: u64,
    prev: u32,
    curr: u32,
    elapsed: u64,
    lead: u128,
}

impl SlidingModel {
    fn at(&self, now: u64) -> Reading {
        let (i, e) = (now / self.w, now % self.w);
        let here = |prev, curr| Reading {
            index: i,
            prev,
            curr,
            elapsed: e,
            lead: 0,
        };
        match self.stored {
            // The word 0 (index ≡ 0 mod 2^24, no counts) is the fresh state.
            Some((s, p, c)) if p > 0 || c > 0 || s % (1 << 24) != 0 => {
                if s == i {
                    here(p, c)
                } else if s.checked_add(1) == Some(i) {
                    here(c, 0)
                } else if s < i {
                    here(0, 0)
                } else {
                    Reading {
                        index: s,
                        prev: p,
                        curr: c,
                        elapsed: 0,
                        lead: u128::from(s) * u128::from(self.w) - u128::from(now),
                    }
                }
            }
            _ => here(0, 0),
        }
    }

    fn estimate(&self, r: &Reading) -> u64 {
        let w = u128::from(self.w);
        let weighted = (u128::from(r.prev) * (w - u128::from(r.elapsed))).div_ceil(w);
        u64::try_from(weighted).unwrap() + u64::from(r.curr)
    }

    fn admits(&self, now: u64, cost: u32) -> bool {
        let r = self.at(now);
        self.estimate(&r) + u64::from(cost) <= u64::from(self.limit)
    }

    fn reset(&self, r: &Reading, curr: u32) -> Nanos {
        if curr == 0 && r.prev == 0 {
            // Full: nothing to wait for, even with a later window stored.
            return Nanos::ZERO;
        }
        let w = u128::from(self.w);
        let rest = w - u128::from(r.elapsed);
        ns(r.lead
            + if curr > 0 {
                rest + w
            } else if r.prev > 0 {
                rest
            } else {
                0
            })
    }

    fn peek(&self, now: u64) -> Snapshot {
        let r = self.at(now);
        Snapshot {
            limit: self.limit,
            remaining: u32::try_from(u64::from(self.limit).saturating_sub(self.estimate(&r)))
                .unwrap(),
            reset_after: self.reset(&r, r.curr),
        }
    }

    /// Checks `got` (the limiter's answer) against the model at `now` and
    /// applies it; returns whether it was an admission.
    fn check(&mut self, now: u64, cost: u32, got: Decision) -> Result<bool, TestCaseError> {
        let l = self.limit;
        if cost > l {
            prop_assert_eq!(got, Decision::ExceedsCapacity { cost, capacity: l });
            return Ok(false);
        }
        let r = self.at(now);
        let est = self.estimate(&r);
        if cost == 0 {
            // A read-out: always answered, `remaining` clamped at 0.
            let want = Decision::Allowed {
                remaining: u32::try_from(u64::from(l).saturating_sub(est)).unwrap(),
                reset_after: self.reset(&r, r.curr),
            };
            prop_assert_eq!(got, want);
            return Ok(true);
        }
        if est + u64::from(cost) <= u64::from(l) {
            let want = Decision::Allowed {
                remaining: u32::try_from(u64::from(l) - est - u64::from(cost)).unwrap(),
                reset_after: self.reset(&r, r.curr + cost),
            };
            prop_assert_eq!(got, want);
            if cost > 0 {
                self.stored = Some((r.index, r.prev, r.curr + cost));
            }
            Ok(true)
        } else {
            let Decision::Denied {
                retry_after,
                remaining,
                reset_after,
            } = got
            else {
                return Err(TestCaseError::fail(format!(
                    "expected a denial, got {got:?}"
                )));
            };
            prop_assert_eq!(
                remaining,
                u32::try_from(u64::from(l).saturating_sub(est)).unwrap()
            );
            prop_assert_eq!(reset_after, self.reset(&r, r.curr));
            // Exact: the model refuses 1 ns before and admits at retry_after.
            prop_assert!(retry_after > Nanos::ZERO);
            if let Some(at) = now
                .checked_add(retry_after.as_u64())
                .filter(|_| retry_after < Nanos::MAX)
            {
                prop_assert!(
                    !self.admits(at - 1, cost),
                    "admitted 1 ns before retry_after"
                );
                prop_assert!(self.admits(at, cost), "refused at retry_after");
            }
            Ok(false)
        }
    }

    fn refund(&mut self, now: u64, cost: u32) {
        let r = self.at(now);
        let back = cost.min(r.curr);
        if back > 0 {
            // As `SlidingRule::refunded`: never the word 0 (fresh at any
            // index) for a window but the very first — at an index ≡ 0 mod
            // 2^24 with nothing else counted, one unit stays (stricter). A
            // CI run on 2026-12-03 drew such an index (start
            // 523 819 105 803 825 627, w = 84) and the model, which lacked
            // this rule, disagreed; `refund_to_zero_at_index_multiple_of_2_24`
            // in window.rs pins the rule itself.
            let first = r.lead == 0 && now / self.w == 0;
            let mut left = r.curr - back;
            if left == 0 && r.prev == 0 && r.index % (1 << 24) == 0 && !first {
                left = 1;
            }
            self.stored = Some((r.index, r.prev, left));
        }
    }
}

/// Admitted cost in every `(t − W, t]` ending at an admission, and in every
/// fixed window, against the bounds.
fn check_bounds(
    admitted: &[(u64, u64)],
    w: u64,
    limit: u64,
    bound: u64,
) -> Result<(), TestCaseError> {
    for &(t, _) in admitted {
        let sliding: u64 = admitted
            .iter()
            .filter(|&&(s, _)| s <= t && u128::from(s) + u128::from(w) > u128::from(t))
            .map(|&(_, c)| c)
            .sum();
        prop_assert!(
            sliding <= bound,
            "{} admitted in ({} − W, {}], bound {}",
            sliding,
            t,
            t,
            bound
        );
        let fixed: u64 = admitted
            .iter()
            .filter(|&&(s, _)| s / w == t / w)
            .map(|&(_, c)| c)
            .sum();
        prop_assert!(
            fixed <= limit,
            "{} admitted in fixed window {}",
            fixed,
            t / w
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(1024),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn packed_words_round_trip(
        i in any::<u32>(),
        c in any::<u32>(),
        j in 0u32..1 << 24,
        p in 0u32..=SLIDING_MAX_LIMIT,
        q in 0u32..=SLIDING_MAX_LIMIT,
        word in any::<u64>(),
    ) {
        prop_assert_eq!(unpack_fixed(pack_fixed(i, c)), (i, c));
        prop_assert_eq!(unpack_sliding(pack_sliding(j, p, q)), (j, p, q));
        // Every bit of the word belongs to exactly one field.
        let (i, c) = unpack_fixed(word);
        prop_assert_eq!(pack_fixed(i, c), word);
        let (j, p, q) = unpack_sliding(word);
        prop_assert_eq!(pack_sliding(j, p, q), word);
    }

    /// Monotone time: a `HashMap` of counts per full window index.
    #[test]
    fn fixed_window_equals_per_window_counter(
        limit in prop_oneof![1u32..=8, Just(u32::MAX)],
        w in window(),
        offset in any::<u64>(),
        start in start(),
        ops in ops(9, true),
    ) {
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::new(offset)).unwrap();
        let off = u128::from(offset % w);
        let mut counts: HashMap<u128, u32> = HashMap::new();
        let mut now = start;
        for op in ops {
            now = op.advance(now, w, false);
            let t = u128::from(now) + off;
            let (i, to_end) = (t / u128::from(w), u128::from(w) - t % u128::from(w));
            let c = counts.entry(i).or_default();
            let cost = op.cost;
            let reset = |c: u32| if c == 0 { Nanos::ZERO } else { ns(to_end) };
            if op.refund {
                *c = fixed_refund_left(i, *c, cost);
                let want = Snapshot { limit, remaining: limit - *c, reset_after: reset(*c) };
                prop_assert_eq!(fw.refund(Nanos::new(now), cost), want);
                continue;
            }
            let want = if cost > limit {
                Decision::ExceedsCapacity { cost, capacity: limit }
            } else if *c + cost <= limit {
                *c += cost;
                Decision::Allowed { remaining: limit - *c, reset_after: reset(*c) }
            } else {
                Decision::Denied { retry_after: ns(to_end), remaining: limit - *c, reset_after: reset(*c) }
            };
            let before = (fw.peek(Nanos::new(now)), fw.probe(Nanos::new(now), cost));
            prop_assert_eq!(fw.probe(Nanos::new(now), cost), want);
            let got = fw.check_n(Nanos::new(now), cost);
            prop_assert_eq!(got, want);
            if !got.is_allowed() {
                prop_assert_eq!((fw.peek(Nanos::new(now)), fw.probe(Nanos::new(now), cost)), before);
            }
            prop_assert_eq!(fw.peek(Nanos::new(now)).remaining, limit - *c);
        }
    }

    /// Time going back and forth, with refunds: the full-index model, and
    /// the net cost counted in any window stays within the limit.
    #[test]
    fn fixed_window_with_time_going_back_equals_model(
        limit in 1u32..=8,
        w in window(),
        offset in any::<u64>(),
        start in start(),
        ops in ops(9, true),
    ) {
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::new(offset)).unwrap();
        let mut model = FixedModel::new(limit, w, offset);
        let mut net: HashMap<u128, u32> = HashMap::new();
        let mut now = start;
        for op in ops {
            now = op.advance(now, w, true);
            let t = Nanos::new(now);
            if op.refund {
                let (i, back) = model.refund(now, op.cost);
                *net.entry(i).or_default() -= back;
                prop_assert_eq!(fw.refund(t, op.cost), model.peek(now));
                continue;
            }
            let charged = model.at(now).0;
            let before = fw.peek(t);
            let want = model.check(now, op.cost);
            let got = fw.check_n(t, op.cost);
            prop_assert_eq!(got, want);
            if got.is_allowed() {
                let n = net.entry(charged).or_default();
                *n += op.cost;
                prop_assert!(*n <= limit, "{} counted in window {}", n, charged);
            } else {
                prop_assert_eq!(fw.peek(t), before);
            }
        }
    }

    /// The bound with time going back, independent of the model: no refunds,
    /// each admission placed in the latest window admitted in so far.
    #[test]
    fn fixed_window_bound_in_latest_admitted_window(
        limit in 1u32..=8,
        w in window(),
        offset in any::<u64>(),
        start in start(),
        ops in ops(9, false),
    ) {
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::new(offset)).unwrap();
        let off = u128::from(offset % w);
        let mut per_window: HashMap<u128, u64> = HashMap::new();
        let (mut now, mut latest) = (start, 0u128);
        for op in ops {
            now = op.advance(now, w, true);
            if fw.check_n(Nanos::new(now), op.cost).is_allowed() && op.cost > 0 {
                latest = latest.max((u128::from(now) + off) / u128::from(w));
                *per_window.entry(latest).or_default() += u64::from(op.cost);
            }
        }
        for (i, n) in per_window {
            prop_assert!(n <= u64::from(limit), "{} admitted in window {}", n, i);
        }
    }

    /// Monotone time, with refunds: the estimate from per-window counts.
    #[test]
    fn sliding_window_equals_model(
        limit in prop_oneof![1u32..=10, Just(SLIDING_MAX_LIMIT)],
        w in window(),
        start in start(),
        ops in ops(11, true),
    ) {
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        let mut model = SlidingModel { limit, w, stored: None };
        let mut now = start;
        for op in ops {
            now = op.advance(now, w, false);
            let t = Nanos::new(now);
            if op.refund {
                model.refund(now, op.cost);
                prop_assert_eq!(sw.refund(t, op.cost), model.peek(now));
                continue;
            }
            let before = (sw.peek(t), sw.probe(t, op.cost));
            prop_assert_eq!(before.0, model.peek(now));
            let got = sw.check_n(t, op.cost);
            prop_assert_eq!(got, before.1, "probe and check agree");
            if !model.check(now, op.cost, got)? {
                prop_assert_eq!((sw.peek(t), sw.probe(t, op.cost)), before);
            }
        }
    }

    /// Time going back and forth: the full-index model, including the
    /// evaluation at the start of a stored later window.
    #[test]
    fn sliding_window_with_time_going_back_equals_model(
        limit in 1u32..=10,
        w in window(),
        start in start(),
        ops in ops(11, true),
    ) {
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        let mut model = SlidingModel { limit, w, stored: None };
        let mut now = start;
        for op in ops {
            now = op.advance(now, w, true);
            let t = Nanos::new(now);
            if op.refund {
                model.refund(now, op.cost);
                prop_assert_eq!(sw.refund(t, op.cost), model.peek(now));
                continue;
            }
            let before = sw.peek(t);
            prop_assert_eq!(before, model.peek(now));
            if !model.check(now, op.cost, sw.check_n(t, op.cost))? {
                prop_assert_eq!(sw.peek(t), before);
            }
        }
    }

    /// The documented error bound from a list of admitted `(time, cost)`:
    /// at most `limit` per fixed window, at most `sliding_bound()` in every
    /// `(t − W, t]`.
    #[test]
    fn sliding_window_error_bound(
        limit in 1u32..=10,
        w in prop_oneof![3 => 1u64..=40, 1 => 41u64..=100_000],
        start in prop_oneof![Just(0u64), any::<u64>()],
        ops in ops(11, false),
    ) {
        let start = start.min(u64::MAX / 2);
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        let bound = sw.sliding_bound();
        prop_assert!(bound < 2 * u64::from(limit));
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        let mut now = start;
        for op in ops {
            now = op.advance(now, w, false);
            let before = sw.peek(Nanos::new(now));
            if sw.check_n(Nanos::new(now), op.cost).is_allowed() {
                if op.cost > 0 {
                    admitted.push((now, u64::from(op.cost)));
                }
            } else {
                prop_assert_eq!(sw.peek(Nanos::new(now)), before);
            }
        }
        check_bounds(&admitted, w, u64::from(limit), bound)?;
    }

    /// The same bounds with time going back, each admission placed at the
    /// latest time admitted so far (where the limiter counted it).
    #[test]
    fn sliding_window_error_bound_with_time_going_back(
        limit in 1u32..=10,
        w in prop_oneof![3 => 1u64..=40, 1 => 41u64..=100_000],
        start in 0u64..=u64::MAX / 2,
        ops in ops(11, false),
    ) {
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        let (mut now, mut latest) = (start, 0u64);
        for op in ops {
            now = op.advance(now, w, true);
            if sw.check_n(Nanos::new(now), op.cost).is_allowed() && op.cost > 0 {
                latest = latest.max(now);
                admitted.push((latest, u64::from(op.cost)));
            }
        }
        check_bounds(&admitted, w, u64::from(limit), sw.sliding_bound())?;
    }

    /// `retry_after` from arbitrary stored states — same, next, older, later
    /// (time went back) and aliased windows — is exact.
    #[test]
    fn retry_after_is_exact(
        limit in prop_oneof![1u32..=12, Just(SLIDING_MAX_LIMIT)],
        w in window(),
        index in any::<u64>(),
        e in any::<u64>(),
        delta in prop_oneof![-3i64..=3, Just(1 << 23), Just((1 << 23) + 1), Just(1 << 31), Just((1 << 31) + 1), any::<i64>()],
        prev in any::<u32>(),
        curr in any::<u32>(),
        cost in 0u32..=13,
        offset in any::<u64>(),
    ) {
        let e = e % w;
        let index = index % (u64::MAX / w).max(1);
        let now = index * w + e;
        let stored = index.wrapping_add_signed(delta.wrapping_neg());
        let (prev, curr) = (prev % (limit + 1), curr % (limit + 1));
        let cost = if limit == SLIDING_MAX_LIMIT { cost * 80_000 } else { cost };
        let t = Nanos::new(now);
        let exact = |d: (Decision, Option<u64>), at: &dyn Fn(Nanos) -> bool| -> Result<(), TestCaseError> {
            if let (Decision::Denied { retry_after, .. }, new) = d {
                prop_assert_eq!(new, None, "a denial writes nothing");
                prop_assert!(retry_after > Nanos::ZERO);
                if retry_after < Nanos::MAX && now.checked_add(retry_after.as_u64()).is_some() {
                    prop_assert!(!at(t + retry_after - Nanos::new(1)), "admitted 1 ns before");
                    prop_assert!(at(t + retry_after), "refused at retry_after");
                }
            }
            Ok(())
        };
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        #[allow(clippy::cast_possible_truncation)] // masked to 24 bits
        let state = pack_sliding((stored & SLIDING_INDEX_MASK) as u32, prev, curr);
        exact(sw.decide(state, t, cost), &|at| sw.decide(state, at, cost).0.is_allowed())?;
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::new(offset)).unwrap();
        // Same alignment as `index` up to the offset: shift the stored index by
        // the windows the offset adds.
        // (now + offset mod W) / W < 2^64 for W >= 2; for W = 1 the offset is 0.
        #[allow(clippy::cast_possible_truncation)]
        let fixed_index = ((u128::from(now) + u128::from(offset % w)) / u128::from(w)) as u64;
        #[allow(clippy::cast_possible_truncation)] // stored modulo 2^32
        let state = pack_fixed(fixed_index.wrapping_add_signed(delta.wrapping_neg()) as u32, curr);
        exact(fw.decide(state, t, cost), &|at| fw.decide(state, at, cost).0.is_allowed())?;
    }

    /// Idle gaps up to just below half the index range (2^31 fixed windows,
    /// 2^23 sliding ones) read as over: the full limit is available again;
    /// and a gap of exactly 1 sliding window keeps the previous count.
    #[test]
    fn idle_gaps_below_half_the_index_range_read_as_over(
        limit in 1u32..=10,
        w in 1u64..=1_000,
        index in any::<u64>(),
        gap_fixed in 1u64..1 << 31,
        gap_sliding in 2u64..1 << 23,
        cost in 1u32..=10,
    ) {
        let cost = cost.min(limit);
        let index = index % (u64::MAX / w / 4);
        let t = Nanos::new(index * w);
        let fw = FixedWindow::new(nz(limit), Nanos::new(w), Nanos::ZERO).unwrap();
        prop_assert!(fw.check_n(t, cost).is_allowed());
        let later = Nanos::new((index + gap_fixed) * w);
        prop_assert_eq!(fw.peek(later).remaining, limit);
        prop_assert!(fw.check_n(later, limit).is_allowed());
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        prop_assert!(sw.check_n(t, cost).is_allowed());
        // One window later, at its start, the previous count weighs in full.
        prop_assert_eq!(sw.peek(t + Nanos::new(w)).remaining, limit - cost);
        let later = Nanos::new((index + gap_sliding) * w);
        prop_assert_eq!(sw.peek(later).remaining, limit);
        prop_assert!(sw.check_n(later, limit).is_allowed());
    }

    /// A steady load of one unit every `p` ns (at most `R = ⌈W/p⌉` in any
    /// `W`) is never refused when `R + 1 <= limit`.
    #[test]
    fn steady_load_is_not_over_throttled(
        w in 1u64..=2_000,
        p in 1u64..=500,
        phase in 0u64..=5_000,
        start_index in prop_oneof![Just(0u64), any::<u64>()],
    ) {
        let r = w.div_ceil(p);
        prop_assume!(r < u64::from(SLIDING_MAX_LIMIT));
        let limit = u32::try_from(r + 1).unwrap();
        let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
        let base = (start_index % (u64::MAX / w / 2)) * w + phase;
        let n = (5 * w / p + 10).min(2_000);
        for k in 0..n {
            let d = sw.check(Nanos::new(base + k * p));
            prop_assert!(d.is_allowed(), "request {} at +{} refused: {:?}", k, k * p, d);
        }
    }
}

/// The corner a CI run drew on 2026-12-03 (see `SlidingModel::refund`): a
/// unit admitted and refunded at a window index ≡ 0 mod 2^24 — the model
/// and the limiter agree that one unit stays.
#[test]
fn sliding_model_keeps_one_unit_at_index_multiple_of_2_24() {
    let (limit, w) = (SLIDING_MAX_LIMIT, 84u64);
    let sw = SlidingWindow::new(nz(limit), Nanos::new(w)).unwrap();
    let mut model = SlidingModel {
        limit,
        w,
        stored: None,
    };
    let now = (523_819_105_803_825_627 / w / (1 << 24) + 1) * (1 << 24) * w + 3;
    let t = Nanos::new(now);
    let got = sw.check_n(t, 1);
    assert!(model.check(now, 1, got).unwrap());
    model.refund(now, 1);
    assert_eq!(sw.refund(t, 1), model.peek(now));
    assert_eq!(model.peek(now).remaining, limit - 1);
}

/// Found by CI's random proptest seed (limit 1, W = 32, offset 1, time
/// saturated at `u64::MAX`): window index 2^59 ≡ 0 mod 2^32, where a refund
/// keeps the last unit. Both models must say so.
#[test]
fn refund_in_a_window_with_index_multiple_of_2_32_keeps_one_unit() {
    let (w, offset, now) = (32, 1, u64::MAX);
    let fw = FixedWindow::new(nz(1), Nanos::new(w), Nanos::new(offset)).unwrap();
    let mut model = FixedModel::new(1, w, offset);
    assert!(fw.check(Nanos::new(now)).is_allowed());
    assert!(model.check(now, 1).is_allowed());
    let got = fw.refund(Nanos::new(now), 1);
    assert_eq!(model.refund(now, 1), ((1u128 << 64) / 32, 0));
    assert_eq!(got, model.peek(now));
    assert_eq!(got.remaining, 0);
    // A window earlier the same refund gives the unit back.
    let fw = FixedWindow::new(nz(1), Nanos::new(w), Nanos::new(offset)).unwrap();
    let earlier = Nanos::new(now - 32);
    assert!(fw.check(earlier).is_allowed());
    assert_eq!(fw.refund(earlier, 1).remaining, 1);
}
