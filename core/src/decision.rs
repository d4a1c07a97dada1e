//! [`Decision`]: what a limiter says about one request, and [`Snapshot`]: what
//! it would say without consuming anything.

use crate::time::Nanos;

/// The outcome of asking a limiter to admit `cost` units at `now`.
///
/// Three outcomes, because a client needs to know which one it got:
///
/// * [`Decision::Allowed`] — admitted; the cost is consumed.
/// * [`Decision::Denied`] — not now; `retry_after` is exactly when a request
///   of the same cost would first pass if nothing else is admitted meanwhile.
///   A denial changes no state.
/// * [`Decision::ExceedsCapacity`] — the cost is larger than the burst: no
///   amount of waiting can admit it, so there is no `retry_after`.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{Decision, Gcra, Nanos, Quota};
///
/// let gcra = Gcra::new(Quota::per_second(NonZeroU32::new(2).unwrap()));
/// let now = Nanos::ZERO;
/// assert!(gcra.check(now).is_allowed());
/// match gcra.check_n(now, 2) {
///     Decision::Denied { retry_after, .. } => assert_eq!(retry_after, Nanos::from_millis(500)),
///     other => panic!("expected a denial, got {other:?}"),
/// }
/// assert_eq!(
///     gcra.check_n(now, 3),
///     Decision::ExceedsCapacity { cost: 3, capacity: 2 }
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a rate-limit decision that is not inspected admits nothing"]
pub enum Decision {
    /// The request was admitted and its cost consumed.
    Allowed {
        /// Unit requests that could still be admitted at this instant.
        remaining: u32,
        /// Time until the limiter is full again (back to a fresh state) if
        /// nothing else is admitted: `X-RateLimit-Reset`.
        reset_after: Nanos,
    },
    /// The request was refused; no state changed.
    Denied {
        /// Time until a request of this cost could first be admitted, exact to
        /// the nanosecond (`Retry-After`, rounded up by adapters).
        retry_after: Nanos,
        /// Unit requests that could be admitted at this instant (smaller than
        /// the refused cost, possibly non-zero).
        remaining: u32,
        /// Time until the limiter is full again.
        reset_after: Nanos,
    },
    /// The cost exceeds what the limiter can ever admit at once; retrying
    /// cannot help.
    ExceedsCapacity {
        /// The requested cost.
        cost: u32,
        /// The most this limiter can admit at once (the burst).
        capacity: u32,
    },
}

impl Decision {
    /// `true` only for [`Decision::Allowed`].
    #[inline]
    pub const fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The wait before a retry can succeed: `Some` only for
    /// [`Decision::Denied`].
    #[inline]
    pub const fn retry_after(&self) -> Option<Nanos> {
        match self {
            Decision::Denied { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Unit requests that could be admitted at this instant (0 for
    /// [`Decision::ExceedsCapacity`], which carries no state read-out).
    #[inline]
    pub const fn remaining(&self) -> u32 {
        match self {
            Decision::Allowed { remaining, .. } | Decision::Denied { remaining, .. } => *remaining,
            Decision::ExceedsCapacity { .. } => 0,
        }
    }
}

/// A read-out of a limiter's state at some `now`, taken without consuming
/// anything (see [`Gcra::peek`](crate::Gcra::peek)).
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{Gcra, Nanos, Quota};
///
/// let gcra = Gcra::new(Quota::per_minute(NonZeroU32::new(60).unwrap()));
/// let _ = gcra.check_n(Nanos::ZERO, 10);
/// let s = gcra.peek(Nanos::ZERO);
/// assert_eq!(s.remaining, 50);
/// assert_eq!(s.reset_after, Nanos::from_secs(10));
/// assert_eq!(s.limit, 60);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// The quota's limit (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Unit requests that could be admitted at this instant.
    pub remaining: u32,
    /// Time until the limiter is full again.
    pub reset_after: Nanos,
}
