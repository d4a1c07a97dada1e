//! [`Limiter`]: the one interface every time-based algorithm offers, so the
//! keyed store, the composite ([`crate::all`]) and the policy engine can treat
//! them alike.

use crate::decision::{Decision, Snapshot};
use crate::time::Nanos;

/// A time-based rate limiter: admit cost at a time, read the state, give cost
/// back.
///
/// Implemented by [`Gcra`](crate::Gcra),
/// [`TokenBucket`](crate::TokenBucket), [`SlidingLog`](crate::SlidingLog),
/// [`SlidingWindow`](crate::SlidingWindow) and [`FixedWindow`](crate::FixedWindow),
/// and by references to them.
/// Concurrency limits ([`Semaphore`](crate::Semaphore)) do not refill with
/// time and have their own RAII API instead.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{Gcra, Limiter, Nanos, Quota};
///
/// fn admit<L: Limiter>(l: &L, now: Nanos) -> bool {
///     l.check_n(now, 1).is_allowed()
/// }
/// let g = Gcra::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
/// assert!(admit(&g, Nanos::ZERO));
/// assert!(!admit(&g, Nanos::ZERO));
/// ```
pub trait Limiter {
    /// Asks to admit `cost` units at `now`, all or nothing. A denial changes
    /// no state.
    fn check_n(&self, now: Nanos, cost: u32) -> Decision;

    /// The state at `now`, without consuming anything.
    fn peek(&self, now: Nanos) -> Snapshot;

    /// The decision `check_n(now, cost)` would make, without consuming
    /// anything (the first phase of an all-or-nothing composite).
    ///
    /// The default derives it from [`Limiter::peek`]: exact about *whether*
    /// `cost` fits, but on a denial it reports the time until the limiter is
    /// full again as `retry_after`, an upper bound. Algorithms override it with
    /// their exact decision.
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        let s = self.peek(now);
        if cost <= s.remaining {
            Decision::Allowed {
                remaining: s.remaining - cost,
                reset_after: s.reset_after,
            }
        } else if s.reset_after == Nanos::ZERO {
            // Already full and still not enough room: it can never fit.
            Decision::ExceedsCapacity {
                cost,
                capacity: s.remaining,
            }
        } else {
            Decision::Denied {
                retry_after: s.reset_after,
                remaining: s.remaining,
                reset_after: s.reset_after,
            }
        }
    }

    /// Gives back `cost` units that were admitted but not used, as of `now`.
    /// Never frees more than the limiter holds. Made promptly — at or soon
    /// after the charge — it never lets more through than the algorithm's
    /// bound counting the refund as an un-admission.
    ///
    /// A *late* refund is applied to the state at `now`: if the charge has
    /// regenerated meanwhile (its window rolled over, or the bucket refilled
    /// and was spent again), it gives back units that time already returned,
    /// and the limiter can admit more than its bound. Refund promptly, or
    /// pass only what the charge still weighs: [`Limiter::refund_since`]
    /// does (as do the std crate's keyed store and policy engine,
    /// `KeyedLimiter::refund_since`).
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot;

    /// Gives back `cost` units admitted at `charged_at`, as of `now`: only
    /// what the charge still weighs, so a late refund never lets more
    /// through than the algorithm's bound. Returns the state after.
    ///
    /// [`Gcra`](crate::Gcra) gives back `cost × T` less the time since the
    /// charge; [`FixedWindow`](crate::FixedWindow) and
    /// [`SlidingWindow`](crate::SlidingWindow) give the units back while
    /// `now` is in the window of the charge, nothing after;
    /// [`SlidingLog`](crate::SlidingLog) while the charge is still in its
    /// window; [`TokenBucket`](crate::TokenBucket) unless a refill has filled
    /// the bucket since. The default is [`Limiter::refund`] when `charged_at
    /// == now` and nothing otherwise: never more than owed, possibly less.
    /// A `now` older than another caller's latest call (a thread preempted
    /// between reading its clock and refunding) must not give back more: the
    /// core's limiters check this with such refunds.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Gcra, Limiter, Nanos, Quota};
    ///
    /// fn late_refund<L: Limiter>(l: &L) -> bool {
    ///     let (t0, t1) = (Nanos::ZERO, Nanos::from_secs(1));
    ///     assert!(l.check(t0).is_allowed());
    ///     assert!(l.check(t1).is_allowed()); // refilled: spent again
    ///     let _ = l.refund_since(t0, t1, 1); // owes nothing any more
    ///     l.check(t1).is_allowed()
    /// }
    /// let g = Gcra::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// assert!(!late_refund(&g)); // one per second, late refund or not
    /// ```
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        if charged_at == now {
            self.refund(now, cost)
        } else {
            self.peek(now)
        }
    }

    /// Undoes an admission of `cost` that *this caller* made at exactly
    /// `now` and that turned out not to be wanted (a composite rolling back
    /// after another member refused). The default is [`Limiter::refund`];
    /// algorithms that can undo more exactly override it.
    fn undo(&self, now: Nanos, cost: u32) {
        let _ = self.refund(now, cost);
    }

    /// `check_n(now, 1)`.
    fn check(&self, now: Nanos) -> Decision {
        self.check_n(now, 1)
    }
}

impl<L: Limiter + ?Sized> Limiter for &L {
    #[inline]
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        (**self).check_n(now, cost)
    }
    #[inline]
    fn peek(&self, now: Nanos) -> Snapshot {
        (**self).peek(now)
    }
    #[inline]
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        (**self).refund(now, cost)
    }
    #[inline]
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        (**self).refund_since(charged_at, now, cost)
    }
    #[inline]
    fn undo(&self, now: Nanos, cost: u32) {
        (**self).undo(now, cost)
    }
    #[inline]
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        (**self).probe(now, cost)
    }
}

impl Limiter for crate::Gcra {
    #[inline]
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        crate::Gcra::check_n(self, now, cost)
    }
    #[inline]
    fn peek(&self, now: Nanos) -> Snapshot {
        crate::Gcra::peek(self, now)
    }
    #[inline]
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        crate::Gcra::refund(self, now, cost)
    }
    #[inline]
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        crate::Gcra::refund_since(self, charged_at, now, cost)
    }
    /// As `refund_since(now, now, cost)`: a rollback made with a `now` older
    /// than another thread's admission gives back only what is still owed.
    #[inline]
    fn undo(&self, now: Nanos, cost: u32) {
        let _ = crate::Gcra::refund_since(self, now, now, cost);
    }
    #[inline]
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        crate::Gcra::probe(self, now, cost)
    }
}

impl Limiter for crate::TokenBucket {
    #[inline]
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        crate::TokenBucket::check_n(self, now, cost)
    }
    #[inline]
    fn peek(&self, now: Nanos) -> Snapshot {
        crate::TokenBucket::peek(self, now)
    }
    #[inline]
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        crate::TokenBucket::refund(self, now, cost)
    }
    #[inline]
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        crate::TokenBucket::refund_since(self, charged_at, now, cost)
    }
    /// As `refund_since(now, now, cost)`: a rollback made with a `now` older
    /// than another thread's refill gives nothing back.
    #[inline]
    fn undo(&self, now: Nanos, cost: u32) {
        let _ = crate::TokenBucket::refund_since(self, now, now, cost);
    }
    #[inline]
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        crate::TokenBucket::probe(self, now, cost)
    }
}
