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
}

/// The approximate sliding-window counter per key (see
/// [`SlidingWindow`](tollgate_core::SlidingWindow) for its error bound); the
/// store fixes the window, each call brings the key's limit (clamped to
/// 16 777 215).
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
/// ```
#[derive(Clone, Copy, Debug)]
pub struct KeyedSlidingWindow {
    rule: SlidingRule,
}

impl KeyedSlidingWindow {
    /// Sliding windows of length `window`.
    pub fn new(window: Nanos) -> Result<Self, WindowError> {
        Ok(KeyedSlidingWindow {
            rule: SlidingRule::new(NonZeroU32::MIN, window)?,
        })
    }
}

impl KeyedState for KeyedSlidingWindow {
    fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        self.rule.is_fresh(state, now)
    }
    fn distance_from_fresh(&self, state: u64, now: Nanos) -> u64 {
        self.rule.snapshot(state, now).reset_after.as_u64()
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
            .decide(state, now, cost)
    }
    fn snapshot(&self, limit: &NonZeroU32, state: u64, now: Nanos) -> Snapshot {
        self.rule.with_limit_clamped(*limit).snapshot(state, now)
    }
    fn refunded(&self, limit: &NonZeroU32, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        self.rule
            .with_limit_clamped(*limit)
            .refunded(state, now, cost)
    }
}
