//! [`SlidingWindow`]: the approximate sliding-window counter in one packed word.

use super::*;

/// `SlidingWindow` state: bits of the window index (stored modulo 2^24).
///
/// ```
/// assert_eq!(tollgate_core::window::SLIDING_INDEX_BITS, 24);
/// ```
pub const SLIDING_INDEX_BITS: u32 = 24;
/// `SlidingWindow`: how many windows behind the stored one the clock may step
/// back and still be evaluated at it (stricter); see [`FIXED_MAX_BACK`].
///
/// ```
/// assert_eq!(tollgate_core::window::SLIDING_MAX_BACK, 1 << 12);
/// ```
pub const SLIDING_MAX_BACK: u32 = 1 << 12;
/// `SlidingWindow` state: bits of each of the two counts.
///
/// ```
/// use tollgate_core::window::{SLIDING_COUNT_BITS, SLIDING_INDEX_BITS};
/// assert_eq!(SLIDING_INDEX_BITS + 2 * SLIDING_COUNT_BITS, 64);
/// ```
pub const SLIDING_COUNT_BITS: u32 = 20;
/// `SlidingWindow` state: the window index sits above this bit.
///
/// ```
/// use tollgate_core::window::{pack_sliding, SLIDING_INDEX_SHIFT};
/// assert_eq!(pack_sliding(9, 1, 2) >> SLIDING_INDEX_SHIFT, 9);
/// ```
pub const SLIDING_INDEX_SHIFT: u32 = 2 * SLIDING_COUNT_BITS;
/// `SlidingWindow` state: mask of the index once shifted down (24 bits).
///
/// ```
/// use tollgate_core::window::{pack_sliding, SLIDING_INDEX_MASK, SLIDING_INDEX_SHIFT};
/// assert_eq!(SLIDING_INDEX_MASK, 0xFF_FFFF);
/// assert_eq!(pack_sliding(u32::MAX, 0, 0) >> SLIDING_INDEX_SHIFT, SLIDING_INDEX_MASK);
/// ```
pub const SLIDING_INDEX_MASK: u64 = (1 << SLIDING_INDEX_BITS) - 1;
/// `SlidingWindow` state: the previous window's count sits above this bit.
///
/// ```
/// use tollgate_core::window::{pack_sliding, SLIDING_COUNT_MASK, SLIDING_PREV_SHIFT};
/// assert_eq!((pack_sliding(9, 1, 2) >> SLIDING_PREV_SHIFT) & SLIDING_COUNT_MASK, 1);
/// ```
pub const SLIDING_PREV_SHIFT: u32 = SLIDING_COUNT_BITS;
/// `SlidingWindow` state: mask of one count (20 bits); the current window's
/// count is the lowest field.
///
/// ```
/// use tollgate_core::window::{pack_sliding, SLIDING_COUNT_MASK};
/// assert_eq!(SLIDING_COUNT_MASK, 0xF_FFFF);
/// assert_eq!(pack_sliding(9, 1, 2) & SLIDING_COUNT_MASK, 2);
/// ```
pub const SLIDING_COUNT_MASK: u64 = (1 << SLIDING_COUNT_BITS) - 1;
/// The largest limit a `SlidingWindow` can hold: 2^20 − 1 = 1 048 575.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::window::SLIDING_MAX_LIMIT;
/// use tollgate_core::{Nanos, SlidingWindow};
///
/// assert_eq!(SLIDING_MAX_LIMIT, 1_048_575);
/// let max = NonZeroU32::new(SLIDING_MAX_LIMIT).unwrap();
/// assert!(SlidingWindow::new(max, Nanos::from_secs(1)).is_ok());
/// assert!(SlidingWindow::new(max.saturating_add(1), Nanos::from_secs(1)).is_err());
/// ```
// SLIDING_COUNT_MASK < 2^20: the cast keeps every bit.
#[allow(clippy::cast_possible_truncation)]
pub const SLIDING_MAX_LIMIT: u32 = SLIDING_COUNT_MASK as u32;

/// Packs a `SlidingWindow` state word from the window index (kept modulo
/// 2^24), the previous window's count and the current window's count. Each
/// field is masked to its width; counts up to [`SLIDING_MAX_LIMIT`]
/// round-trip.
///
/// ```
/// use tollgate_core::window::{pack_sliding, unpack_sliding};
/// let word = pack_sliding(7, 300, 12);
/// assert_eq!(word, (7 << 40) | (300 << 20) | 12);
/// assert_eq!(unpack_sliding(word), (7, 300, 12));
/// assert_eq!(unpack_sliding(pack_sliding(1 << 24 | 5, 0, 0)).0, 5); // modulo 2^24
/// ```
#[inline]
pub const fn pack_sliding(index: u32, prev: u32, curr: u32) -> u64 {
    ((index as u64 & SLIDING_INDEX_MASK) << SLIDING_INDEX_SHIFT)
        | ((prev as u64 & SLIDING_COUNT_MASK) << SLIDING_PREV_SHIFT)
        | (curr as u64 & SLIDING_COUNT_MASK)
}

/// Unpacks a `SlidingWindow` state word into `(index mod 2^24, prev,
/// curr)`.
///
/// ```
/// use tollgate_core::window::{unpack_sliding, SLIDING_MAX_LIMIT};
/// assert_eq!(unpack_sliding(0), (0, 0, 0)); // the fresh state
/// assert_eq!(unpack_sliding(u64::MAX), (0xFF_FFFF, SLIDING_MAX_LIMIT, SLIDING_MAX_LIMIT));
/// ```
#[inline]
pub const fn unpack_sliding(word: u64) -> (u32, u32, u32) {
    // Each field is masked to at most 24 bits before the cast (try_from is
    // not const).
    #[allow(clippy::cast_possible_truncation)]
    let fields = (
        ((word >> SLIDING_INDEX_SHIFT) & SLIDING_INDEX_MASK) as u32,
        ((word >> SLIDING_PREV_SHIFT) & SLIDING_COUNT_MASK) as u32,
        (word & SLIDING_COUNT_MASK) as u32,
    );
    fields
}

/// Where a `SlidingWindow` state stands at some `now`: the window the call
/// counts in, its two counts, and the point in it at which it is evaluated.
#[derive(Clone, Copy)]
struct SlidingAt {
    /// The index (mod 2^24) of the window counted in.
    index: u32,
    /// The previous window's count.
    prev: u32,
    /// The current window's count.
    curr: u32,
    /// How far into the window the estimate is taken, `< W`.
    elapsed: u64,
    /// Nanoseconds from `now` to that point: 0, unless the clock stepped
    /// back (then the start of the stored, later window).
    lead: u128,
}

/// The arithmetic of a [`SlidingWindow`] apart from its state word. Keyed
/// stores keep one state word per key and apply a rule to it (see
/// [`SlidingRule::with_limit_clamped`]).
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::window::{pack_sliding, SlidingRule};
/// use tollgate_core::Nanos;
///
/// let rule = SlidingRule::new(NonZeroU32::new(10).unwrap(), Nanos::new(100)).unwrap();
/// // Window 1, previous window 0 held 10: at 130, ⌈10 × 70 / 100⌉ = 7 still count.
/// let (d, state) = rule.decide(pack_sliding(0, 0, 10), Nanos::new(130), 3);
/// assert_eq!(d.remaining(), 0);
/// assert_eq!(state, Some(pack_sliding(1, 10, 3)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingRule {
    /// `<= SLIDING_MAX_LIMIT`.
    limit: u32,
    /// `W`, in ns, > 0.
    window: u64,
}

impl SlidingRule {
    /// `limit` per sliding window of length `window`. Errors on a zero
    /// window or a limit above [`SLIDING_MAX_LIMIT`].
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{SlidingRule, SLIDING_MAX_LIMIT};
    /// use tollgate_core::{Nanos, WindowError};
    ///
    /// assert!(SlidingRule::new(NonZeroU32::new(100).unwrap(), Nanos::from_secs(60)).is_ok());
    /// assert_eq!(
    ///     SlidingRule::new(NonZeroU32::MAX, Nanos::from_secs(60)),
    ///     Err(WindowError::LimitTooLarge { limit: u32::MAX, max: SLIDING_MAX_LIMIT })
    /// );
    /// ```
    pub const fn new(limit: NonZeroU32, window: Nanos) -> Result<Self, WindowError> {
        if window.as_u64() == 0 {
            return Err(WindowError::ZeroWindow);
        }
        if limit.get() > SLIDING_MAX_LIMIT {
            return Err(WindowError::LimitTooLarge {
                limit: limit.get(),
                max: SLIDING_MAX_LIMIT,
            });
        }
        Ok(SlidingRule {
            limit: limit.get(),
            window: window.as_u64(),
        })
    }

    /// The same window with another limit (plans differ per key), clamped to
    /// [`SLIDING_MAX_LIMIT`] — stricter, never looser.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{SlidingRule, SLIDING_MAX_LIMIT};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = SlidingRule::new(NonZeroU32::MIN, Nanos::from_secs(1)).unwrap();
    /// assert_eq!(rule.with_limit_clamped(NonZeroU32::new(50).unwrap()).limit(), 50);
    /// assert_eq!(rule.with_limit_clamped(NonZeroU32::MAX).limit(), SLIDING_MAX_LIMIT);
    /// ```
    pub const fn with_limit_clamped(self, limit: NonZeroU32) -> Self {
        let limit = if limit.get() > SLIDING_MAX_LIMIT {
            SLIDING_MAX_LIMIT
        } else {
            limit.get()
        };
        SlidingRule { limit, ..self }
    }

    /// The limit.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::SlidingRule;
    /// use tollgate_core::Nanos;
    ///
    /// let rule = SlidingRule::new(NonZeroU32::new(8).unwrap(), Nanos::from_secs(1)).unwrap();
    /// assert_eq!(rule.limit(), 8);
    /// ```
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The window length.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::SlidingRule;
    /// use tollgate_core::Nanos;
    ///
    /// let rule = SlidingRule::new(NonZeroU32::MIN, Nanos::from_secs(60)).unwrap();
    /// assert_eq!(rule.window(), Nanos::from_secs(60));
    /// ```
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.window)
    }

    /// The most cost this rule can admit in any interval `(t − W, t]` with
    /// time moving forward: `max(L, 2L − ⌈2L / W⌉)` for limit `L` and `W` in
    /// nanoseconds — `2L − 1` whenever `W >= 2L` ns, and never more. Tight:
    /// some history reaches it. See [`SlidingWindow`] for the proof.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::SlidingRule;
    /// use tollgate_core::Nanos;
    ///
    /// let l = NonZeroU32::new(100).unwrap();
    /// assert_eq!(SlidingRule::new(l, Nanos::from_secs(60)).unwrap().sliding_bound(), 199);
    /// assert_eq!(SlidingRule::new(l, Nanos::new(1)).unwrap().sliding_bound(), 100);
    /// ```
    pub const fn sliding_bound(&self) -> u64 {
        let l = self.limit as u64; // <= 2^20
        let w = self.window;
        let spill = 2 * l - (2 * l).div_ceil(w); // >= 0 as ⌈2L/W⌉ <= 2L
        if spill > l { spill } else { l }
    }

    /// Which windows `state` counts at `now`, rolled forward as needed.
    #[inline]
    fn at(&self, state: u64, now: Nanos) -> SlidingAt {
        let (i, elapsed) = (now.as_u64() / self.window, now.as_u64() % self.window);
        // Truncation intended: indexes are kept and compared modulo 2^24.
        #[allow(clippy::cast_possible_truncation)]
        let index = (i & SLIDING_INDEX_MASK) as u32;
        let (stored, prev, curr) = unpack_sliding(state);
        let here = |prev, curr| SlidingAt {
            index,
            prev,
            curr,
            elapsed,
            lead: 0,
        };
        if state == 0 {
            // Never used: fresh at any index (index 0 may read as "later").
            return here(0, 0);
        }
        // Modulo 2^24, as a u32 masked to 24 bits.
        let distance = index.wrapping_sub(stored) & ((1 << SLIDING_INDEX_BITS) - 1);
        match distance {
            0 => here(prev, curr),
            // The next window: the current count becomes the previous one.
            1 => here(curr, 0),
            // Two or more windows later: nothing still counts. (Also a stored
            // window more than `SLIDING_MAX_BACK` ahead: an old one seen
            // across the index's wrap.)
            d if (1 << SLIDING_INDEX_BITS) - d > SLIDING_MAX_BACK => here(0, 0),
            // The stored window is `back` windows later than now's: the
            // clock stepped back. Evaluate at that window's start, where the
            // previous count weighs most (the strictest reading).
            d => {
                let back = u128::from((1u32 << SLIDING_INDEX_BITS) - d);
                SlidingAt {
                    index: stored,
                    prev,
                    curr,
                    elapsed: 0,
                    lead: back * u128::from(self.window) - u128::from(elapsed),
                }
            }
        }
    }

    /// `⌈prev × (W − elapsed) / W⌉`: the previous window's count weighted by
    /// the share of it the sliding window still covers, rounded **up**.
    #[inline]
    fn weighted(&self, prev: u32, elapsed: u64) -> u64 {
        mul_div(u64::from(prev), self.window - elapsed, self.window, true)
    }

    /// The earliest elapsed time `x < W` in a window whose previous count is
    /// `prev` at which `⌈prev × (W − x) / W⌉ <= room`; `None` if there is
    /// none in that window.
    #[inline]
    fn earliest(&self, prev: u32, room: u64) -> Option<u64> {
        let prev = u64::from(prev);
        if prev <= room {
            return Some(0);
        }
        // For an integer room, ⌈a / W⌉ <= room ⇔ a <= room × W, so
        // prev × (W − x) <= room × W ⇔ x >= W − ⌊room × W / prev⌋
        // (room < prev keeps the quotient below W).
        let x = self.window - mul_div(room, self.window, prev, false);
        (x < self.window).then_some(x)
    }

    /// Time from the evaluation point until the estimate is 0 with nothing
    /// more admitted: the end of the next window if the current one holds
    /// anything, else the end of this one if the previous one does.
    #[inline]
    fn reset_after(&self, at: &SlidingAt, curr: u32) -> Nanos {
        if curr == 0 && at.prev == 0 {
            // Full already, even when the stored window is a later one (time
            // stepped back): nothing to wait for.
            return Nanos::ZERO;
        }
        let w = u128::from(self.window);
        let rest = w - u128::from(at.elapsed);
        nanos(
            at.lead
                + if curr > 0 {
                    rest + w
                } else if at.prev > 0 {
                    rest
                } else {
                    0
                },
        )
    }

    /// The pure decision: what to answer, and what to store (`None`: store
    /// nothing). Never panics or overflows, for any inputs.
    ///
    /// With `estimate = ⌈prev × (W − elapsed) / W⌉ + curr`:
    ///
    /// * `cost > limit`: [`Decision::ExceedsCapacity`], no write.
    /// * `estimate + cost <= limit`: [`Decision::Allowed`]; `remaining =
    ///   limit − estimate − cost`, `reset_after` = time until the estimate is
    ///   0 (end of the next window); a cost of 0 writes nothing.
    /// * otherwise [`Decision::Denied`], no write; `retry_after` is the exact
    ///   earliest time at which the same cost is admitted if nothing else
    ///   happens — later in this window as the previous count's weight
    ///   shrinks, or in the next window (where this window's count becomes
    ///   the previous one), or at the start of the one after (where nothing
    ///   counts) — at least 1 ns, saturating at [`Nanos::MAX`] only past
    ///   2^64 ns.
    ///
    /// When the clock has stepped back into an earlier window than the stored
    /// one, the estimate is taken at the start of the stored window (the
    /// strictest point) and all times are measured from `now`.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_sliding, SlidingRule};
    /// use tollgate_core::{Decision, Nanos};
    ///
    /// let rule = SlidingRule::new(NonZeroU32::new(10).unwrap(), Nanos::new(100)).unwrap();
    /// // Window 1 holds 5, window 0 held 10; at 150 the estimate is 5 + 5.
    /// let state = pack_sliding(1, 10, 5);
    /// let (d, new) = rule.decide(state, Nanos::new(150), 1);
    /// // One more fits once ⌈10 × (100 − x) / 100⌉ <= 4, at x = 60.
    /// assert_eq!(d, Decision::Denied {
    ///     retry_after: Nanos::new(10),
    ///     remaining: 0,
    ///     reset_after: Nanos::new(150),
    /// });
    /// assert_eq!(new, None);
    /// assert!(rule.decide(state, Nanos::new(160), 1).0.is_allowed());
    /// ```
    pub fn decide(&self, state: u64, now: Nanos, cost: u32) -> (Decision, Option<u64>) {
        if cost > self.limit {
            return (
                Decision::ExceedsCapacity {
                    cost,
                    capacity: self.limit,
                },
                None,
            );
        }
        let at = self.at(state, now);
        let limit = u64::from(self.limit);
        let estimate = self.weighted(at.prev, at.elapsed) + u64::from(at.curr);
        let wanted = estimate + u64::from(cost);
        if cost == 0 {
            // A read-out is always answered, even when the estimate is above
            // the limit (a later window stored, time stepped back), as
            // `Gcra` does: `remaining` 0, never a refusal of nothing.
            return (
                Decision::Allowed {
                    remaining: count_u32(limit.saturating_sub(estimate)),
                    reset_after: self.reset_after(&at, at.curr),
                },
                None,
            );
        }
        if wanted <= limit {
            // curr + cost <= estimate + cost <= limit <= SLIDING_MAX_LIMIT:
            // fits a u32 and the count bits.
            let curr = at.curr + cost;
            (
                Decision::Allowed {
                    remaining: count_u32(limit - wanted),
                    reset_after: self.reset_after(&at, curr),
                },
                (cost > 0).then_some(pack_sliding(at.index, at.prev, curr)),
            )
        } else {
            let w = self.window;
            let e = at.elapsed;
            // Later in this window, as the previous count's weight shrinks.
            // A denial means ⌈prev × (W − e) / W⌉ > room, so any such x is > e.
            let here = limit
                .checked_sub(u64::from(at.curr) + u64::from(cost))
                .and_then(|room| self.earliest(at.prev, room))
                .filter(|&x| x > e);
            let wait = match here {
                Some(x) => u128::from(x - e),
                // In the next window this window's count is the previous one,
                // and nothing is current; failing that, at the start of the
                // window after, nothing counts (cost <= limit fits).
                None => {
                    let x = self.earliest(at.curr, limit - u64::from(cost)).unwrap_or(w);
                    u128::from(w - e) + u128::from(x)
                }
            };
            (
                Decision::Denied {
                    retry_after: nanos(at.lead + wait),
                    remaining: count_u32(limit.saturating_sub(estimate)),
                    reset_after: self.reset_after(&at, at.curr),
                },
                None,
            )
        }
    }

    /// The read-out of `state` at `now`: `remaining = limit − estimate`
    /// (at least 0) and the time until the estimate is 0.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_sliding, SlidingRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = SlidingRule::new(NonZeroU32::new(10).unwrap(), Nanos::new(100)).unwrap();
    /// // At 125: ⌈8 × 75 / 100⌉ = 6 from window 0, plus 1 in window 1.
    /// let s = rule.snapshot(pack_sliding(1, 8, 1), Nanos::new(125));
    /// assert_eq!((s.remaining, s.reset_after), (3, Nanos::new(175)));
    /// ```
    pub fn snapshot(&self, state: u64, now: Nanos) -> Snapshot {
        let at = self.at(state, now);
        let estimate = self.weighted(at.prev, at.elapsed) + u64::from(at.curr);
        Snapshot {
            limit: self.limit,
            remaining: count_u32(u64::from(self.limit).saturating_sub(estimate)),
            reset_after: self.reset_after(&at, at.curr),
        }
    }

    /// `state` after giving back up to `cost` units of the current window's
    /// count, saturating at 0 (`None`: nothing to give back). The previous
    /// window's count is history and is never changed.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_sliding, SlidingRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = SlidingRule::new(NonZeroU32::new(10).unwrap(), Nanos::new(100)).unwrap();
    /// assert_eq!(rule.refunded(pack_sliding(1, 4, 3), Nanos::new(150), 2), Some(pack_sliding(1, 4, 1)));
    /// assert_eq!(rule.refunded(pack_sliding(1, 4, 3), Nanos::new(150), 9), Some(pack_sliding(1, 4, 0)));
    /// assert_eq!(rule.refunded(pack_sliding(1, 4, 3), Nanos::new(250), 1), None); // rolled over
    /// ```
    pub fn refunded(&self, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        let at = self.at(state, now);
        (at.curr > 0 && cost > 0).then(|| {
            // Never the word 0 (fresh at any index) for any window but the
            // very first, as for `FixedRule`: with the index ≡ 0 mod 2^24
            // and nothing else counted, one unit stays.
            let first = at.lead == 0 && now.as_u64() / self.window == 0;
            let left = at.curr - cost.min(at.curr);
            let left = left.max(u32::from(at.index == 0 && at.prev == 0 && !first));
            pack_sliding(at.index, at.prev, left)
        })
    }

    /// `state` after giving back `cost` units charged at `charged_at`, as
    /// of `now` (`None`: nothing to give back): [`refunded`](Self::refunded)
    /// while `now` is in the window of the charge; nothing later (the charge
    /// may still weigh as the previous window's count, but giving it back
    /// there is left out: stricter, never looser).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_sliding, SlidingRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = SlidingRule::new(NonZeroU32::new(10).unwrap(), Nanos::new(100)).unwrap();
    /// let t0 = Nanos::new(110);
    /// assert_eq!(rule.refunded_since(pack_sliding(1, 4, 3), t0, Nanos::new(150), 2), Some(pack_sliding(1, 4, 1)));
    /// assert_eq!(rule.refunded_since(pack_sliding(2, 3, 1), t0, Nanos::new(250), 2), None);
    /// ```
    pub fn refunded_since(
        &self,
        state: u64,
        charged_at: Nanos,
        now: Nanos,
        cost: u32,
    ) -> Option<u64> {
        // As for `FixedRule::refunded_since`: nothing from a stored window
        // later than now's.
        if charged_at.as_u64() / self.window == now.as_u64() / self.window
            && self.at(state, now).lead == 0
        {
            self.refunded(state, now, cost)
        } else {
            None
        }
    }

    /// Whether `state` decides exactly like the fresh state `0` at `now`:
    /// neither window it covers holds anything, and no later window is
    /// stored.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_sliding, SlidingRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = SlidingRule::new(NonZeroU32::MIN, Nanos::new(100)).unwrap();
    /// assert!(!rule.is_fresh(pack_sliding(0, 0, 1), Nanos::new(150))); // still the previous window
    /// assert!(rule.is_fresh(pack_sliding(0, 0, 1), Nanos::new(200)));
    /// ```
    pub fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        let at = self.at(state, now);
        at.prev == 0 && at.curr == 0 && at.lead == 0
    }
}

/// A count known to be at most a `u32` limit, as a `u32`.
#[inline]
fn count_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The approximate sliding-window counter (as in Cloudflare's write-up):
/// the previous fixed window's count, weighted by how much of that window the
/// sliding window still covers, plus the current window's count.
///
/// `estimate = ⌈prev × (W − elapsed) / W⌉ + curr`, where `elapsed` is how
/// far `now` is into its fixed window `[i × W, (i + 1) × W)`; a request of
/// `cost` is admitted if `estimate + cost <= limit`. The weighted count is
/// rounded **up**, so the estimate never undercounts. One word, O(1), smooth
/// — but approximate: it assumes the previous window's requests were spread
/// evenly.
///
/// # Error bound
///
/// With time moving forward, for limit `L` and window `W` (in ns):
///
/// * in any fixed window `[i × W, (i + 1) × W)`: at most `L` units;
/// * in any sliding window `(t − W, t]`: at most
///   `B = max(L, 2L − ⌈2L / W⌉)` units — that is `2L − 1` for every `W >=
///   2L` ns, and always below `2L`. [`SlidingWindow::sliding_bound`] returns
///   it.
///
/// *Proof.* The fixed-window bound holds because the weighted term is never
/// negative. Let `t` be `e` ns into window `j`, `P` the count of window
/// `j − 1` (at most `L`), `X` what was admitted in `(t − W, j × W)` — the
/// last `W − 1 − e` ns of window `j − 1` — and `Y` what was admitted in
/// `[j × W, t]`. If `X = 0` or `Y = 0` the sliding window holds at most `L`.
/// Otherwise `e <= W − 2`, and the last admission in `[j × W, t]`, at some
/// `e' <= e`, needed `⌈P × (W − e') / W⌉ + Y <= L`; with `X <= P`,
/// `X + Y <= P + L − ⌈P × (W − e) / W⌉ = L + ⌊P × e / W⌋ <=
/// L + ⌊L × (W − 2) / W⌋ = 2L − ⌈2L / W⌉`. The bound is reached: `L` units at
/// the last nanosecond of a window, then `L − ⌈2L / W⌉` at `W − 2` ns into
/// the next.
///
/// A refund counts as an un-admission in the current window. When the clock
/// steps back into an earlier window than the stored one, the estimate is
/// taken at the start of the stored window (the strictest point in it), so
/// the bound holds with every admission placed at the latest time admitted
/// so far. `core/tests/model_window.rs` checks both bounds, exactly, on
/// random histories against a list of admitted times.
///
/// A steady load loses at most one unit to the approximation: unit requests
/// exactly `p` ns apart (at most `R = ⌈W / p⌉` in any interval of length
/// `W`) are all admitted whenever `R + 1 <= L`, where an exact sliding log
/// needs `R <= L`. *Proof sketch:* at a request at `t`, with `ℓ` the elapsed
/// time of the last request of the previous window (so `ℓ + p >= W`),
/// `prev <= ℓ / p + 1` and `m`, the previous window's requests inside
/// `(t − W, t]`, is at least `(ℓ − e) / p`; so `prev × (W − e) / W <= m + 1`
/// and the estimate is at most `m + 1 + curr`, the number of requests in
/// `(t − W, t]`, at most `R`. With `limit = 1` that one unit is all of it: any
/// weight left of the previous window rounds up to 1, so after an admission
/// the next one comes at the start of the window after next.
///
/// # State
///
/// One `AtomicU64`: window index modulo 2^24 and two 20-bit counts (see the
/// [module docs](crate::window)), so the limit is at most
/// [`SLIDING_MAX_LIMIT`] (1 048 575). A stored window up to
/// [`SLIDING_MAX_BACK`] (4 096) windows ahead of now's is a clock that
/// stepped back (evaluated at the stored window's start: stricter); one
/// further ahead, modulo 2^24, is an old window seen across the index's
/// wrap, and over. So the clock may step back at most 4 096 windows behind
/// the latest time the counter saw (68 min of 1 s windows); further back,
/// the later windows' counts are not seen. A counter idle for 2^24 − 4 096
/// to 2^24 windows (1 in 4 096 of the index range: at 1 s windows, 194 days
/// minus 68 minutes) reads as later and refuses for at most 4 096 more
/// windows; every other idle length reads as fresh. With `W >= 19 min` no
/// two `u64` times are that far apart. Prefer [`Gcra`](crate::Gcra)
/// for very short windows, and [`SlidingLog`](crate::SlidingLog) (exact)
/// when the `2L − 1` spill matters.
///
/// # Memory ordering
///
/// Every access to the state word is `Relaxed`, for the reasons given on
/// [`FixedWindow`]: the word publishes no other memory, and the counting
/// only needs the compare-and-swaps on this one word to act on each other's
/// results in one modification order, which they do at any ordering. A roll
/// to a new window is part of the same compare-and-swap as the admission, so
/// a racing roll-over cannot lose or double a count.
/// `core/tests/loom_window.rs` checks this under every interleaving.
///
/// # Examples
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{Nanos, SlidingWindow};
///
/// let w = SlidingWindow::new(NonZeroU32::new(10).unwrap(), Nanos::from_secs(60)).unwrap();
/// assert!(w.check_n(Nanos::from_secs(50), 10).is_allowed());
/// // 30 s into the next window, half of the previous 10 still count.
/// assert_eq!(w.peek(Nanos::from_secs(90)).remaining, 5);
/// // 6 more must wait until only 4 count: 36 s into that window.
/// assert_eq!(w.check_n(Nanos::from_secs(90), 6).retry_after(), Some(Nanos::from_secs(6)));
/// assert!(w.check_n(Nanos::from_secs(96), 6).is_allowed());
/// ```
#[derive(Debug)]
pub struct SlidingWindow {
    /// The packed word (`pub(super)`: the module's tests read it).
    pub(super) state: AtomicU64,
    rule: SlidingRule,
}

impl SlidingWindow {
    /// `limit` per sliding window of length `window`. Errors on a zero
    /// window or a limit above [`SLIDING_MAX_LIMIT`].
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow, WindowError};
    ///
    /// static SMOOTH: SlidingWindow =
    ///     match SlidingWindow::new(NonZeroU32::new(30).unwrap(), Nanos::from_millis(100)) {
    ///         Ok(w) => w,
    ///         Err(_) => panic!("valid window"),
    ///     };
    /// assert!(SMOOTH.check(Nanos::ZERO).is_allowed());
    /// let e = SlidingWindow::new(NonZeroU32::MIN, Nanos::ZERO).unwrap_err();
    /// assert_eq!(e, WindowError::ZeroWindow);
    /// ```
    #[cfg(not(tollgate_loom))]
    pub const fn new(limit: NonZeroU32, window: Nanos) -> Result<Self, WindowError> {
        match SlidingRule::new(limit, window) {
            Ok(rule) => Ok(SlidingWindow::from_rule(rule)),
            Err(e) => Err(e),
        }
    }

    /// `limit` per sliding window of length `window` (loom build: loom
    /// atomics are not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(limit: NonZeroU32, window: Nanos) -> Result<Self, WindowError> {
        Ok(SlidingWindow::from_rule(SlidingRule::new(limit, window)?))
    }

    /// A fresh limiter for `rule`.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::SlidingRule;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let rule = SlidingRule::new(NonZeroU32::new(3).unwrap(), Nanos::from_secs(1)).unwrap();
    /// assert_eq!(SlidingWindow::from_rule(rule).peek(Nanos::ZERO).remaining, 3);
    /// ```
    #[cfg(not(tollgate_loom))]
    pub const fn from_rule(rule: SlidingRule) -> Self {
        SlidingWindow {
            state: AtomicU64::new(0),
            rule,
        }
    }

    /// A fresh limiter for `rule` (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn from_rule(rule: SlidingRule) -> Self {
        SlidingWindow {
            state: AtomicU64::new(0),
            rule,
        }
    }

    /// The limit.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(12).unwrap(), Nanos::from_secs(1)).unwrap();
    /// assert_eq!(w.limit(), 12);
    /// ```
    pub const fn limit(&self) -> u32 {
        self.rule.limit
    }

    /// The window length.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::MIN, Nanos::from_secs(60)).unwrap();
    /// assert_eq!(w.window(), Nanos::from_secs(60));
    /// ```
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.rule.window)
    }

    /// The most cost admitted in any interval of length `W` (see
    /// [`SlidingRule::sliding_bound`]).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(10).unwrap(), Nanos::from_secs(1)).unwrap();
    /// assert_eq!(w.sliding_bound(), 19);
    /// ```
    pub const fn sliding_bound(&self) -> u64 {
        self.rule.sliding_bound()
    }

    /// The arithmetic of this limiter.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(5).unwrap(), Nanos::from_secs(1)).unwrap();
    /// assert_eq!(w.rule().limit(), 5);
    /// ```
    pub const fn rule(&self) -> &SlidingRule {
        &self.rule
    }

    /// The pure decision for a given state word (see
    /// [`SlidingRule::decide`]); touches nothing.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::pack_sliding;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(4).unwrap(), Nanos::new(100)).unwrap();
    /// let (d, new) = w.decide(pack_sliding(0, 0, 4), Nanos::new(150), 2);
    /// assert!(d.is_allowed());
    /// assert_eq!(new, Some(pack_sliding(1, 4, 2)));
    /// ```
    pub fn decide(&self, state: u64, now: Nanos, cost: u32) -> (Decision, Option<u64>) {
        self.rule.decide(state, now, cost)
    }

    /// Asks to admit one unit at `now`: `check_n(now, 1)`.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(2).unwrap(), Nanos::from_secs(1)).unwrap();
    /// assert!(w.check(Nanos::ZERO).is_allowed());
    /// assert!(w.check(Nanos::ZERO).is_allowed());
    /// // In the next window ⌈2 × (1 s − x) / 1 s⌉ <= 1 from x = 0.5 s.
    /// assert_eq!(w.check(Nanos::ZERO).retry_after(), Some(Nanos::from_millis(1_500)));
    /// ```
    #[inline]
    pub fn check(&self, now: Nanos) -> Decision {
        self.check_n(now, 1)
    }

    /// Asks to admit `cost` units at `now`, all or nothing (see
    /// [`SlidingRule::decide`]). A denial writes nothing. Lock-free: the
    /// loop retries only when another thread changed the word in between.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Decision, Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(10).unwrap(), Nanos::from_secs(1)).unwrap();
    /// assert_eq!(w.check_n(Nanos::ZERO, 4).remaining(), 6);
    /// assert!(!w.check_n(Nanos::ZERO, 7).is_allowed());
    /// assert_eq!(w.check_n(Nanos::ZERO, 11), Decision::ExceedsCapacity { cost: 11, capacity: 10 });
    /// ```
    #[inline]
    pub fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        cas_loop(&self.state, |s| self.rule.decide(s, now, cost))
    }

    /// The decision [`check_n`](Self::check_n) would make, without writing.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::MIN, Nanos::from_secs(1)).unwrap();
    /// assert!(w.probe(Nanos::ZERO, 1).is_allowed());
    /// assert!(w.probe(Nanos::ZERO, 1).is_allowed()); // nothing consumed
    /// ```
    #[inline]
    pub fn probe(&self, now: Nanos, cost: u32) -> Decision {
        // Relaxed: a read-out (see "Memory ordering" on the type).
        self.rule
            .decide(self.state.load(Ordering::Relaxed), now, cost)
            .0
    }

    /// The state at `now` without writing (see [`SlidingRule::snapshot`]).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(10).unwrap(), Nanos::new(100)).unwrap();
    /// let _ = w.check_n(Nanos::new(90), 10);
    /// let s = w.peek(Nanos::new(175)); // ⌈10 × 25 / 100⌉ = 3 still count
    /// assert_eq!((s.remaining, s.reset_after), (7, Nanos::new(25)));
    /// ```
    #[inline]
    pub fn peek(&self, now: Nanos) -> Snapshot {
        // Relaxed: a read-out (see "Memory ordering" on the type).
        self.rule.snapshot(self.state.load(Ordering::Relaxed), now)
    }

    /// Gives back up to `cost` units of the current window's count
    /// (saturating at 0). Returns the state after.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(3).unwrap(), Nanos::from_secs(1)).unwrap();
    /// let _ = w.check_n(Nanos::ZERO, 3);
    /// assert_eq!(w.refund(Nanos::ZERO, 2).remaining, 2);
    /// assert_eq!(w.refund(Nanos::ZERO, 100).remaining, 3); // saturates
    /// ```
    pub fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        cas_loop(&self.state, |s| {
            let new = self.rule.refunded(s, now, cost);
            (self.rule.snapshot(new.unwrap_or(s), now), new)
        })
    }

    /// Gives back `cost` units admitted at `charged_at`, as of `now`: while
    /// `now` is in the window of the charge, as [`refund`](Self::refund);
    /// nothing later (see [`SlidingRule::refunded_since`]).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, SlidingWindow};
    ///
    /// let w = SlidingWindow::new(NonZeroU32::new(2).unwrap(), Nanos::from_secs(1)).unwrap();
    /// let t0 = Nanos::from_millis(100);
    /// let _ = w.check_n(t0, 2);
    /// // Refunded within the same window: given back.
    /// assert_eq!(w.refund_since(t0, Nanos::from_millis(900), 1).remaining, 1);
    /// // Refunded after the window rolled over: nothing.
    /// let late = Nanos::from_millis(1_100);
    /// assert_eq!(w.refund_since(t0, late, 1), w.peek(late));
    /// ```
    pub fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        cas_loop(&self.state, |s| {
            let new = self.rule.refunded_since(s, charged_at, now, cost);
            (self.rule.snapshot(new.unwrap_or(s), now), new)
        })
    }
}

impl Limiter for SlidingWindow {
    #[inline]
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        SlidingWindow::check_n(self, now, cost)
    }
    #[inline]
    fn peek(&self, now: Nanos) -> Snapshot {
        SlidingWindow::peek(self, now)
    }
    #[inline]
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        SlidingWindow::refund(self, now, cost)
    }
    #[inline]
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        SlidingWindow::refund_since(self, charged_at, now, cost)
    }
    /// As [`refund_since`](SlidingWindow::refund_since) at the charge's own
    /// instant: a stale `now` (another thread has moved the state on to a
    /// later window) gives nothing back rather than take a unit off a window
    /// the undone admission was not counted in. Stricter by the undone units
    /// in that race, never looser.
    #[inline]
    fn undo(&self, now: Nanos, cost: u32) {
        let _ = SlidingWindow::refund_since(self, now, now, cost);
    }
    #[inline]
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        SlidingWindow::probe(self, now, cost)
    }
}
