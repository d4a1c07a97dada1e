//! Window counters: [`FixedWindow`] (calendar-aligned) and [`SlidingWindow`]
//! (the approximate sliding-window counter), each in one packed `AtomicU64`.

use core::fmt;
use core::num::NonZeroU32;

use crate::decision::{Decision, Snapshot};
use crate::limiter::Limiter;
use crate::sync::{AtomicU64, Ordering};
use crate::time::Nanos;

/// Why a window limiter could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowError {
    /// The window was zero nanoseconds long.
    ZeroWindow,
    /// The limit does not fit the counter bits (`SlidingWindow`: at most
    /// 16 777 215).
    LimitTooLarge {
        /// The requested limit.
        limit: u32,
        /// The largest supported limit.
        max: u32,
    },
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::ZeroWindow => f.write_str("window length must be greater than zero"),
            WindowError::LimitTooLarge { limit, max } => write!(
                f,
                "limit {limit} is above the {max} this window counter can hold; \
                 use a FixedWindow or a Gcra for larger limits"
            ),
        }
    }
}

impl core::error::Error for WindowError {}

/// Runs a pure transition on one word with a CAS loop; a `None` new state
/// writes nothing.
#[inline]
fn cas_loop<R>(word: &AtomicU64, step: impl Fn(u64) -> (R, Option<u64>)) -> R {
    // Relaxed: each window word publishes nothing but itself; the CAS acts on
    // the latest value in its modification order (see `Gcra`'s docs).
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        let (r, new) = step(cur);
        let Some(new) = new else { return r };
        match word.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return r,
            Err(actual) => cur = actual,
        }
    }
}

/// Clamps a `u128` span of nanoseconds to [`Nanos`].
#[inline]
fn nanos(v: u128) -> Nanos {
    Nanos::new(u64::try_from(v).unwrap_or(u64::MAX))
}

// ---- FixedWindow -------------------------------------------------------------

/// `FixedWindow` state: window index (mod 2^32) in the high half.
pub const FIXED_INDEX_SHIFT: u32 = 32;
/// `FixedWindow` state: admitted count in the low half.
pub const FIXED_COUNT_MASK: u64 = 0xFFFF_FFFF;

/// Packs a `FixedWindow` state word.
#[inline]
pub const fn pack_fixed(index: u32, count: u32) -> u64 {
    ((index as u64) << FIXED_INDEX_SHIFT) | count as u64
}

/// Unpacks a `FixedWindow` state word into `(index mod 2^32, count)`.
#[inline]
pub const fn unpack_fixed(word: u64) -> (u32, u32) {
    // Each half is 32 bits by construction.
    #[allow(clippy::cast_possible_truncation)]
    let r = (
        (word >> FIXED_INDEX_SHIFT) as u32,
        (word & FIXED_COUNT_MASK) as u32,
    );
    r
}

/// The arithmetic of a [`FixedWindow`], apart from its state word: `limit`
/// per window of length `window`, aligned by `offset`. Keyed stores keep one
/// state word per key and use this for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedRule {
    limit: u32,
    window: u64,
    offset: u64,
}

impl FixedRule {
    /// The rule; errors on a zero window.
    pub const fn new(limit: NonZeroU32, window: Nanos, offset: Nanos) -> Result<Self, WindowError> {
        if window.as_u64() == 0 {
            return Err(WindowError::ZeroWindow);
        }
        Ok(FixedRule {
            limit: limit.get(),
            window: window.as_u64(),
            offset: offset.as_u64() % window.as_u64(),
        })
    }

    /// The same rule with another limit (plans differ per key).
    pub const fn with_limit(self, limit: NonZeroU32) -> Self {
        FixedRule {
            limit: limit.get(),
            ..self
        }
    }

    /// The limit per window.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The window length.
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.window)
    }

    /// The window `now` falls in: `(full index, ns from now to its end)`.
    #[inline]
    fn locate(&self, now: Nanos) -> (u128, u128) {
        let t = u128::from(now.as_u64()) + u128::from(self.offset);
        let w = u128::from(self.window);
        (t / w, w - t % w)
    }

    /// The effective `(index, count, ns to that window's end)` for `state`
    /// at `now`: a stored later window wins over `now`'s (time went back).
    #[inline]
    fn effective(&self, state: u64, now: Nanos) -> (u128, u32, u128) {
        let (i, to_end) = self.locate(now);
        let (stored, count) = unpack_fixed(state);
        // Truncation and sign reinterpretation intended: indexes are
        // compared modulo 2^32, as a signed distance.
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let ahead = (i as u32).wrapping_sub(stored) as i32;
        if ahead > 0 {
            (i, 0, to_end)
        } else if ahead == 0 {
            (i, count, to_end)
        } else {
            let back = u128::from(ahead.unsigned_abs());
            (i + back, count, to_end + back * u128::from(self.window))
        }
    }

    /// The pure decision: what to answer and what to store.
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
        let (i, count, to_end) = self.effective(state, now);
        let reset = |c: u32| if c == 0 { Nanos::ZERO } else { nanos(to_end) };
        if u64::from(count) + u64::from(cost) <= u64::from(self.limit) {
            let after = count + cost;
            // Truncation intended: the index is stored modulo 2^32.
            #[allow(clippy::cast_possible_truncation)]
            let new = pack_fixed(i as u32, after);
            (
                Decision::Allowed {
                    remaining: self.limit - after,
                    reset_after: reset(after),
                },
                (cost > 0).then_some(new),
            )
        } else {
            (
                Decision::Denied {
                    retry_after: nanos(to_end),
                    // A key charged under a larger plan can hold more than
                    // this limit.
                    remaining: self.limit.saturating_sub(count),
                    reset_after: reset(count),
                },
                None,
            )
        }
    }

    /// The read-out of `state` at `now`.
    pub fn snapshot(&self, state: u64, now: Nanos) -> Snapshot {
        let (_, count, to_end) = self.effective(state, now);
        Snapshot {
            limit: self.limit,
            remaining: self.limit - count.min(self.limit),
            reset_after: if count == 0 {
                Nanos::ZERO
            } else {
                nanos(to_end)
            },
        }
    }

    /// `state` after giving back up to `cost` units of the window `now`
    /// counts against (`None`: nothing to give back).
    pub fn refunded(&self, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        let (stored, count) = unpack_fixed(state);
        let (i, c, _) = self.effective(state, now);
        // Only the stored window holds anything to give back.
        #[allow(clippy::cast_possible_truncation)]
        let same = i as u32 == stored;
        (same && c > 0 && cost > 0).then(|| pack_fixed(stored, count - cost.min(count)))
    }

    /// Whether `state` decides like the fresh state `0` at `now` and later:
    /// nothing counted in the window `now` falls in (or a later one).
    pub fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        self.effective(state, now).1 == 0
    }
}

/// At most `limit` units per fixed window of length `W`, windows aligned so
/// that they can follow calendar minutes, hours or days of a wall clock.
///
/// Window `i` covers `[i × W − offset, (i + 1) × W − offset)` on the caller's
/// clock. To follow the calendar, pass as `offset` the Unix time (in ns) of
/// your clock's epoch: then windows start on whole Unix minutes/hours/days
/// (UTC). BlockSecOps' per-day limits reset at midnight UTC that way.
///
/// The state is one `AtomicU64`: window index (mod 2^32) and count. Time going
/// backwards into an earlier window counts against the later window already
/// stored (stricter, never looser); an index 2^32 windows stale could be
/// mistaken for the current one, which can only carry an old count over
/// (stricter) — 136 years of 1-second windows.
///
/// # Memory ordering
///
/// `Relaxed` throughout, as for [`Gcra`](crate::Gcra): the word publishes
/// nothing but itself.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{FixedWindow, Nanos};
///
/// // 100 per calendar hour; our clock's epoch was at Unix time 1714305600.5 s.
/// let epoch_unix = Nanos::from_millis(1_714_305_600_500);
/// let hourly = FixedWindow::new(NonZeroU32::new(100).unwrap(), Nanos::from_secs(3_600), epoch_unix)
///     .unwrap();
/// let d = hourly.check_n(Nanos::ZERO, 100);
/// assert!(d.is_allowed());
/// // Denied until the top of the hour, 3 599.5 s after our epoch.
/// let d = hourly.check(Nanos::ZERO);
/// assert_eq!(d.retry_after(), Some(Nanos::from_millis(3_599_500)));
/// assert!(hourly.check(Nanos::from_millis(3_599_500)).is_allowed());
/// ```
#[derive(Debug)]
pub struct FixedWindow {
    state: AtomicU64,
    rule: FixedRule,
}

impl FixedWindow {
    /// `limit` per window of length `window`, aligned by `offset` (see the
    /// type's docs). Errors on a zero window.
    #[cfg(not(tollgate_loom))]
    pub const fn new(limit: NonZeroU32, window: Nanos, offset: Nanos) -> Result<Self, WindowError> {
        match FixedRule::new(limit, window, offset) {
            Ok(rule) => Ok(FixedWindow {
                state: AtomicU64::new(0),
                rule,
            }),
            Err(e) => Err(e),
        }
    }

    /// `limit` per window (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(limit: NonZeroU32, window: Nanos, offset: Nanos) -> Result<Self, WindowError> {
        Ok(FixedWindow {
            state: AtomicU64::new(0),
            rule: FixedRule::new(limit, window, offset)?,
        })
    }

    /// The limit per window.
    pub const fn limit(&self) -> u32 {
        self.rule.limit
    }

    /// The window length.
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.rule.window)
    }

    /// The arithmetic of this limiter.
    pub const fn rule(&self) -> &FixedRule {
        &self.rule
    }

    /// The pure decision (see [`FixedRule::decide`]).
    pub fn decide(&self, state: u64, now: Nanos, cost: u32) -> (Decision, Option<u64>) {
        self.rule.decide(state, now, cost)
    }

    /// Asks to admit one unit at `now`.
    pub fn check(&self, now: Nanos) -> Decision {
        self.check_n(now, 1)
    }

    /// Asks to admit `cost` units at `now`, all or nothing; a denial writes
    /// nothing.
    pub fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        cas_loop(&self.state, |s| self.rule.decide(s, now, cost))
    }

    /// The state at `now` without writing.
    pub fn peek(&self, now: Nanos) -> Snapshot {
        // Relaxed: a read-out.
        self.rule.snapshot(self.state.load(Ordering::Relaxed), now)
    }

    /// Gives back up to `cost` units of the window `now` counts against.
    pub fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        cas_loop(&self.state, |s| ((), self.rule.refunded(s, now, cost)));
        self.peek(now)
    }
}

impl Limiter for FixedWindow {
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        FixedWindow::check_n(self, now, cost)
    }
    fn peek(&self, now: Nanos) -> Snapshot {
        FixedWindow::peek(self, now)
    }
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        FixedWindow::refund(self, now, cost)
    }
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        // Relaxed: a read-out.
        self.rule
            .decide(self.state.load(Ordering::Relaxed), now, cost)
            .0
    }
}

// ---- SlidingWindow -------------------------------------------------------------

/// `SlidingWindow` state: window index (mod 2^16) in the top 16 bits.
pub const SLIDING_INDEX_SHIFT: u32 = 48;
/// `SlidingWindow` state: previous window's count in bits 24..48.
pub const SLIDING_PREV_SHIFT: u32 = 24;
/// `SlidingWindow` state: mask of one 24-bit count.
pub const SLIDING_COUNT_MASK: u64 = 0xFF_FFFF;
/// The largest limit a `SlidingWindow` can hold (2^24 − 1).
pub const SLIDING_MAX_LIMIT: u32 = 0xFF_FFFF;

/// Packs a `SlidingWindow` state word; counts must be `<= SLIDING_MAX_LIMIT`.
#[inline]
pub const fn pack_sliding(index: u16, prev: u32, curr: u32) -> u64 {
    ((index as u64) << SLIDING_INDEX_SHIFT)
        | ((prev as u64 & SLIDING_COUNT_MASK) << SLIDING_PREV_SHIFT)
        | (curr as u64 & SLIDING_COUNT_MASK)
}

/// Unpacks a `SlidingWindow` state word into `(index mod 2^16, prev, curr)`.
#[inline]
pub const fn unpack_sliding(word: u64) -> (u16, u32, u32) {
    // Each field is masked to its width first.
    #[allow(clippy::cast_possible_truncation)]
    let r = (
        (word >> SLIDING_INDEX_SHIFT) as u16,
        ((word >> SLIDING_PREV_SHIFT) & SLIDING_COUNT_MASK) as u32,
        (word & SLIDING_COUNT_MASK) as u32,
    );
    r
}

/// The arithmetic of a [`SlidingWindow`], apart from its state word. Keyed
/// stores keep one state word per key and use this for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingRule {
    limit: u32,
    window: u64,
}

impl SlidingRule {
    /// The rule. Errors on a zero window or a limit above
    /// [`SLIDING_MAX_LIMIT`].
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

    /// The same rule with another limit (plans differ per key), clamped to
    /// [`SLIDING_MAX_LIMIT`] — stricter, never looser.
    pub const fn with_limit_clamped(self, limit: NonZeroU32) -> Self {
        let limit = if limit.get() > SLIDING_MAX_LIMIT {
            SLIDING_MAX_LIMIT
        } else {
            limit.get()
        };
        SlidingRule { limit, ..self }
    }

    /// The limit.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The window length.
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.window)
    }

    /// The effective `(index, prev, curr, elapsed)` for `state` at `now`. A
    /// stored later window (time went back) is used as is, at its start
    /// (full weight on `prev`: the strictest reading).
    #[inline]
    fn effective(&self, state: u64, now: Nanos) -> (u64, u32, u32, u64) {
        let i = now.as_u64() / self.window;
        let e = now.as_u64() % self.window;
        let (stored, prev, curr) = unpack_sliding(state);
        // Truncation and sign reinterpretation intended: indexes are
        // compared modulo 2^16, as a signed distance.
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let ahead = (i as u16).wrapping_sub(stored) as i16;
        match ahead {
            0 => (i, prev, curr, e),
            1 => (i, curr, 0, e),
            a if a > 1 => (i, 0, 0, e),
            // Only used modulo 2^16 (to store it back): wrapping is exact.
            a => (i.wrapping_add(u64::from(a.unsigned_abs())), prev, curr, 0),
        }
    }

    /// `⌈prev × (W − e) / W⌉`.
    #[inline]
    fn weighted(&self, prev: u32, e: u64) -> u64 {
        let w = u128::from(self.window);
        let v = (u128::from(prev) * (w - u128::from(e))).div_ceil(w);
        // v <= prev, a u32.
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    /// Earliest elapsed time `x` in a window with previous count `prev` at
    /// which `⌈prev × (W − x) / W⌉ <= room`; `None` if not within it.
    #[inline]
    fn earliest(&self, prev: u32, room: u64) -> Option<u64> {
        if u64::from(prev) <= room {
            return Some(0);
        }
        // prev × (W − x) <= room × W  ⇔  x >= W − ⌊room × W / prev⌋
        let w = u128::from(self.window);
        let x = w - u128::from(room) * w / u128::from(prev);
        (x < w).then(|| u64::try_from(x).unwrap_or(u64::MAX))
    }

    /// The pure decision.
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
        let (i, prev, curr, e) = self.effective(state, now);
        let estimate = self.weighted(prev, e) + u64::from(curr);
        let limit = u64::from(self.limit);
        let remaining = |est: u64| u32::try_from(limit.saturating_sub(est)).unwrap_or(0);
        if estimate + u64::from(cost) <= limit {
            let curr = curr + cost;
            // Truncation intended: the index is stored modulo 2^16.
            #[allow(clippy::cast_possible_truncation)]
            let new = pack_sliding(i as u16, prev, curr);
            (
                Decision::Allowed {
                    remaining: remaining(estimate + u64::from(cost)),
                    reset_after: self.reset_after(prev, curr, e),
                },
                (cost > 0).then_some(new),
            )
        } else {
            let w = self.window;
            let retry = match limit
                .checked_sub(u64::from(curr) + u64::from(cost))
                .and_then(|room| self.earliest(prev, room).filter(|&x| x > e))
            {
                Some(x) => u128::from(x - e),
                // Not in this window: in the next, `curr` becomes `prev`.
                None => {
                    let x = self.earliest(curr, limit - u64::from(cost)).unwrap_or(w);
                    u128::from(w - e) + u128::from(x)
                }
            };
            (
                Decision::Denied {
                    retry_after: nanos(retry),
                    remaining: remaining(estimate),
                    reset_after: self.reset_after(prev, curr, e),
                },
                None,
            )
        }
    }

    /// Time until the estimate is 0 with nothing more admitted.
    #[inline]
    fn reset_after(&self, prev: u32, curr: u32, e: u64) -> Nanos {
        let w = u128::from(self.window);
        let rest = w - u128::from(e);
        if curr > 0 {
            nanos(rest + w)
        } else if prev > 0 {
            nanos(rest)
        } else {
            Nanos::ZERO
        }
    }

    /// The read-out of `state` at `now`.
    pub fn snapshot(&self, state: u64, now: Nanos) -> Snapshot {
        let (_, prev, curr, e) = self.effective(state, now);
        let est = self.weighted(prev, e) + u64::from(curr);
        Snapshot {
            limit: self.limit,
            remaining: u32::try_from(u64::from(self.limit).saturating_sub(est)).unwrap_or(0),
            reset_after: self.reset_after(prev, curr, e),
        }
    }

    /// `state` after giving back up to `cost` units of the current window
    /// (`None`: nothing to give back).
    pub fn refunded(&self, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        let (i, prev, curr, _) = self.effective(state, now);
        // Truncation intended: the index is stored modulo 2^16.
        #[allow(clippy::cast_possible_truncation)]
        let new =
            (curr > 0 && cost > 0).then(|| pack_sliding(i as u16, prev, curr - cost.min(curr)));
        new
    }

    /// Whether `state` decides like the fresh state `0` at `now` and later:
    /// neither window it covers holds anything.
    pub fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        let (_, prev, curr, _) = self.effective(state, now);
        prev == 0 && curr == 0
    }
}

/// The approximate sliding-window counter: the previous fixed window's count,
/// weighted by how much of it the sliding window still covers, plus the
/// current window's count.
///
/// `estimate = ⌈prev × (W − elapsed) / W⌉ + curr`; a request of `cost` is
/// admitted if `estimate + cost <= limit`. Cheap (one word, O(1)) and smooth,
/// but approximate: it assumes the previous window's requests were spread
/// evenly.
///
/// # Error bound
///
/// * In any fixed window `[i × W, (i + 1) × W)`: at most `limit` units.
/// * In any sliding window `(t − W, t]`: at most `limit + prev × e / W`
///   units, where `e` is how far `t` is into its fixed window — always at
///   most `2 × limit − 1`, reached only when a whole window's worth arrived at
///   the very end of the previous window. Use [`SlidingLog`](crate::SlidingLog)
///   (exact) or [`Gcra`](crate::Gcra) when that matters.
///
/// Both are checked against a list of admitted timestamps in
/// `core/tests/model_window.rs`.
///
/// # Memory ordering
///
/// `Relaxed` throughout, as for [`Gcra`](crate::Gcra).
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{Nanos, SlidingWindow};
///
/// let w = SlidingWindow::new(NonZeroU32::new(10).unwrap(), Nanos::from_secs(60)).unwrap();
/// assert!(w.check_n(Nanos::from_secs(50), 10).is_allowed());
/// // 30 s into the next window, half of the previous 10 still count.
/// assert_eq!(w.peek(Nanos::from_secs(90)).remaining, 5);
/// ```
#[derive(Debug)]
pub struct SlidingWindow {
    state: AtomicU64,
    rule: SlidingRule,
}

impl SlidingWindow {
    /// `limit` per sliding window of length `window`. Errors on a zero
    /// window or a limit above [`SLIDING_MAX_LIMIT`].
    #[cfg(not(tollgate_loom))]
    pub const fn new(limit: NonZeroU32, window: Nanos) -> Result<Self, WindowError> {
        match SlidingRule::new(limit, window) {
            Ok(rule) => Ok(SlidingWindow {
                state: AtomicU64::new(0),
                rule,
            }),
            Err(e) => Err(e),
        }
    }

    /// `limit` per sliding window (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(limit: NonZeroU32, window: Nanos) -> Result<Self, WindowError> {
        Ok(SlidingWindow {
            state: AtomicU64::new(0),
            rule: SlidingRule::new(limit, window)?,
        })
    }

    /// The limit.
    pub const fn limit(&self) -> u32 {
        self.rule.limit
    }

    /// The arithmetic of this limiter.
    pub const fn rule(&self) -> &SlidingRule {
        &self.rule
    }

    /// The pure decision (see [`SlidingRule::decide`]).
    pub fn decide(&self, state: u64, now: Nanos, cost: u32) -> (Decision, Option<u64>) {
        self.rule.decide(state, now, cost)
    }

    /// Asks to admit one unit at `now`.
    pub fn check(&self, now: Nanos) -> Decision {
        self.check_n(now, 1)
    }

    /// Asks to admit `cost` units at `now`, all or nothing; a denial writes
    /// nothing.
    pub fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        cas_loop(&self.state, |s| self.rule.decide(s, now, cost))
    }

    /// The state at `now` without writing.
    pub fn peek(&self, now: Nanos) -> Snapshot {
        // Relaxed: a read-out.
        self.rule.snapshot(self.state.load(Ordering::Relaxed), now)
    }

    /// Gives back up to `cost` units of the current window's count.
    pub fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        cas_loop(&self.state, |s| ((), self.rule.refunded(s, now, cost)));
        self.peek(now)
    }
}

impl Limiter for SlidingWindow {
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        SlidingWindow::check_n(self, now, cost)
    }
    fn peek(&self, now: Nanos) -> Snapshot {
        SlidingWindow::peek(self, now)
    }
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        SlidingWindow::refund(self, now, cost)
    }
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        // Relaxed: a read-out.
        self.rule
            .decide(self.state.load(Ordering::Relaxed), now, cost)
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn fixed_window_resets_on_boundaries() {
        let w = FixedWindow::new(nz(3), Nanos::new(100), Nanos::ZERO).unwrap();
        assert!(w.check_n(Nanos::new(10), 3).is_allowed());
        assert_eq!(w.check(Nanos::new(99)).retry_after(), Some(Nanos::new(1)));
        assert!(w.check_n(Nanos::new(100), 3).is_allowed());
        // Backwards into window 0: counts against the stored window 1.
        assert_eq!(w.check(Nanos::new(50)).retry_after(), Some(Nanos::new(150)));
        assert_eq!(w.refund(Nanos::new(150), 1).remaining, 1);
        assert_eq!(
            w.check_n(Nanos::new(150), 4),
            Decision::ExceedsCapacity {
                cost: 4,
                capacity: 3
            }
        );
    }

    #[test]
    fn sliding_window_weights_the_previous_window() {
        let w = SlidingWindow::new(nz(10), Nanos::new(100)).unwrap();
        assert!(w.check_n(Nanos::new(99), 10).is_allowed());
        // At 150 (half way), ⌈10 × 50 / 100⌉ = 5 still count.
        assert_eq!(w.peek(Nanos::new(150)).remaining, 5);
        assert!(w.check_n(Nanos::new(150), 5).is_allowed());
        // Now 5 + 5: the next unit fits once the weight drops to 4, at 160.
        let d = w.check(Nanos::new(150));
        assert_eq!(d.retry_after(), Some(Nanos::new(10)));
        assert!(!w.check(Nanos::new(159)).is_allowed());
        assert!(w.check(Nanos::new(160)).is_allowed());
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
        assert_eq!(
            small.decide(state.unwrap(), Nanos::ZERO, 1).0.remaining(),
            0
        );
    }

    #[test]
    fn construction_errors() {
        assert_eq!(
            SlidingWindow::new(nz(SLIDING_MAX_LIMIT + 1), Nanos::new(1)).err(),
            Some(WindowError::LimitTooLarge {
                limit: SLIDING_MAX_LIMIT + 1,
                max: SLIDING_MAX_LIMIT
            })
        );
        assert_eq!(
            FixedWindow::new(nz(1), Nanos::ZERO, Nanos::ZERO).err(),
            Some(WindowError::ZeroWindow)
        );
    }

    #[test]
    fn extremes_do_not_panic() {
        for window in [1, 2, 86_400_000_000_000, u64::MAX] {
            let f = FixedWindow::new(NonZeroU32::MAX, Nanos::new(window), Nanos::MAX).unwrap();
            let s = SlidingWindow::new(nz(SLIDING_MAX_LIMIT), Nanos::new(window)).unwrap();
            for now in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                for cost in [0, 1, SLIDING_MAX_LIMIT, u32::MAX] {
                    let _ = f.check_n(Nanos::new(now), cost);
                    let _ = s.check_n(Nanos::new(now), cost);
                    let _ = f.refund(Nanos::new(now), cost);
                    let _ = s.refund(Nanos::new(now), cost);
                }
                let _ = (f.peek(Nanos::new(now)), s.peek(Nanos::new(now)));
            }
        }
    }
}
