//! Window counters per key: [`KeyedFixedWindow`] and [`KeyedSlidingWindow`]
//! for [`KeyedLimiter`](super::KeyedLimiter).

use std::num::NonZeroU32;

use tollgate_core::window::{FixedRule, SlidingRule};
use tollgate_core::{Decision, Nanos, Snapshot, WindowError};

use super::{KeyedAlgorithm, KeyedState};

/// A fixed window per key (calendar-aligned, see
/// [`FixedWindow`](tollgate_core::FixedWindow)); the store fixes the window and
/// its alignment, each call brings the key's limit.
///
/// ```
/// use std::num::NonZeroU32;
/// use tollgate::keyed::{KeyedFixedWindow, KeyedLimiter};
/// use tollgate::Nanos;
///
/// // Per calendar day (UTC), our clock's epoch at Unix 1714305600 s.
/// let daily = KeyedFixedWindow::new(Nanos::from_secs(86_400), Nanos::from_secs(1_714_305_600)).unwrap();
/// let store = KeyedLimiter::with_hasher(10_000, daily, ahash::RandomState::new()).unwrap();
/// let limit = NonZeroU32::new(2).unwrap();
/// assert!(store.check("key", &limit, Nanos::ZERO).is_allowed());
/// assert!(store.check("key", &limit, Nanos::ZERO).is_allowed());
/// assert!(!store.check("key", &limit, Nanos::ZERO).is_allowed());
/// assert!(store.check("key", &limit, Nanos::from_secs(86_400)).is_allowed());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct KeyedFixedWindow {
    rule: FixedRule,
}

impl KeyedFixedWindow {
    /// Windows of length `window`, aligned by `offset`.
    pub fn new(window: Nanos, offset: Nanos) -> Result<Self, WindowError> {
        Ok(KeyedFixedWindow {
            rule: FixedRule::new(NonZeroU32::MIN, window, offset)?,
        })
    }
}

impl KeyedState for KeyedFixedWindow {
    fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        self.rule.is_fresh(state, now)
    }
    fn distance_from_fresh(&self, state: u64, now: Nanos) -> u64 {
        self.rule.snapshot(state, now).reset_after.as_u64()
    }
}

impl KeyedAlgorithm for KeyedFixedWindow {
    type Quota = NonZeroU32;

    fn decide(
        &self,
        limit: &NonZeroU32,
        state: u64,
        now: Nanos,
        cost: u32,
    ) -> (Decision, Option<u64>) {
        self.rule.with_limit(*limit).decide(state, now, cost)
    }
    fn snapshot(&self, limit: &NonZeroU32, state: u64, now: Nanos) -> Snapshot {
        self.rule.with_limit(*limit).snapshot(state, now)
    }
    fn refunded(&self, limit: &NonZeroU32, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        self.rule.with_limit(*limit).refunded(state, now, cost)
    }
    /// Within the window of the charge: the units come back. After it
    /// rolled over: nothing (the charge counted in a window that is over;
    /// taking a unit off the new one would admit one more than its limit).
    fn refunded_since(
        &self,
        limit: &NonZeroU32,
        state: u64,
        charged_at: Nanos,
        now: Nanos,
        cost: u32,
    ) -> Option<u64> {
        self.rule
            .with_limit(*limit)
            .refunded_since(state, charged_at, now, cost)
    }
}

/// The approximate sliding-window counter per key (see
/// [`SlidingWindow`](tollgate_core::SlidingWindow) for its error bound); the
/// store fixes the window, each call brings the key's limit (clamped to
/// [`SLIDING_MAX_LIMIT`](tollgate_core::window::SLIDING_MAX_LIMIT) =
/// 1 048 575, the 20 count bits of the packed state; a cost above it is
/// refused as exceeding capacity).
///
/// ```
/// use std::num::NonZeroU32;
/// use tollgate::keyed::{KeyedLimiter, KeyedSlidingWindow};
/// use tollgate::Nanos;
///
/// // CyberVault: a sliding 60-second window.
/// let per_minute = KeyedSlidingWindow::new(Nanos::from_secs(60)).unwrap();
/// let store = KeyedLimiter::with_hasher(10_000, per_minute, ahash::RandomState::new()).unwrap();
/// let limit = NonZeroU32::new(100).unwrap();
/// assert_eq!(store.check_n("key", &limit, Nanos::ZERO, 100).decision().unwrap().remaining(), 0);
/// assert!(!store.check("key", &limit, Nanos::from_secs(59)).is_allowed());
///
/// // A larger limit counts as SLIDING_MAX_LIMIT.
/// use tollgate::window::SLIDING_MAX_LIMIT;
/// let d = store.check_n("big", &NonZeroU32::MAX, Nanos::ZERO, SLIDING_MAX_LIMIT + 1);
/// assert!(matches!(d.decision(), Some(tollgate::Decision::ExceedsCapacity { .. })));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct KeyedSlidingWindow {
    rule: SlidingRule,
    /// Added to every time before the rule sees it (`< window`).
    offset: u64,
}

impl KeyedSlidingWindow {
    /// Sliding windows of length `window`, counted from the clock's zero.
    pub fn new(window: Nanos) -> Result<Self, WindowError> {
        Self::aligned(window, Nanos::ZERO)
    }

    /// Sliding windows of length `window` whose boundaries fall where those
    /// of a clock `offset` ahead of the caller's do (only `offset mod
    /// window` matters): pass the Unix time of your clock's zero and the
    /// current and previous windows are those of Unix time, as on the Redis
    /// backend, whose script counts `unix / window` — so one process and a
    /// fleet sharing Redis decide alike. Times past `u64::MAX − offset`
    /// count as `u64::MAX` (time stands still: stricter, never looser).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tollgate::keyed::{KeyedLimiter, KeyedSlidingWindow};
    /// use tollgate::Nanos;
    ///
    /// // Our clock's zero is 30 s into a Unix minute: its second 30 starts
    /// // the next Unix minute, where the 2 of the first count as previous.
    /// let w = KeyedSlidingWindow::aligned(Nanos::from_secs(60), Nanos::from_secs(1_714_305_630)).unwrap();
    /// let store = KeyedLimiter::with_hasher(100, w, ahash::RandomState::new()).unwrap();
    /// let two = NonZeroU32::new(2).unwrap();
    /// assert_eq!(store.check_n("k", &two, Nanos::from_secs(29), 2).decision().unwrap().remaining(), 0);
    /// // 45 s into the next Unix minute the previous one weighs 15/60 of 2.
    /// assert!(store.check("k", &two, Nanos::from_secs(75)).is_allowed());
    /// ```
    pub fn aligned(window: Nanos, offset: Nanos) -> Result<Self, WindowError> {
        let rule = SlidingRule::new(NonZeroU32::MIN, window)?;
        Ok(KeyedSlidingWindow {
            offset: offset.as_u64() % rule.window().as_u64(),
            rule,
        })
    }

    /// `t` on the clock the windows are counted on.
    fn at(&self, t: Nanos) -> Nanos {
        Nanos::new(t.as_u64().saturating_add(self.offset))
    }
}

impl KeyedState for KeyedSlidingWindow {
    fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        self.rule.is_fresh(state, self.at(now))
    }
    fn distance_from_fresh(&self, state: u64, now: Nanos) -> u64 {
        self.rule.snapshot(state, self.at(now)).reset_after.as_u64()
    }
}

impl KeyedAlgorithm for KeyedSlidingWindow {
    type Quota = NonZeroU32;

    fn decide(
        &self,
        limit: &NonZeroU32,
        state: u64,
        now: Nanos,
        cost: u32,
    ) -> (Decision, Option<u64>) {
        self.rule
            .with_limit_clamped(*limit)
            .decide(state, self.at(now), cost)
    }
    fn snapshot(&self, limit: &NonZeroU32, state: u64, now: Nanos) -> Snapshot {
        self.rule
            .with_limit_clamped(*limit)
            .snapshot(state, self.at(now))
    }
    fn refunded(&self, limit: &NonZeroU32, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        self.rule
            .with_limit_clamped(*limit)
            .refunded(state, self.at(now), cost)
    }
    /// Within the window of the charge: the units come back. Later: nothing
    /// (the charge may still weigh as the previous window's count, but
    /// giving it back there is left out: stricter, never looser).
    fn refunded_since(
        &self,
        limit: &NonZeroU32,
        state: u64,
        charged_at: Nanos,
        now: Nanos,
        cost: u32,
    ) -> Option<u64> {
        self.rule.with_limit_clamped(*limit).refunded_since(
            state,
            self.at(charged_at),
            self.at(now),
            cost,
        )
    }
}
