//! Window counters: [`FixedWindow`] (calendar-aligned) and [`SlidingWindow`]
//! (the approximate sliding-window counter), each in one packed `AtomicU64`,
//! and their arithmetic apart from that word ([`FixedRule`], [`SlidingRule`])
//! for stores that keep one word per key.
//!
//! Both follow the crate's pattern: a pure decision function
//! ([`FixedRule::decide`], [`SlidingRule::decide`]) that maps
//! `(state, now, cost)` to a [`Decision`] and the state to store, wrapped in a
//! small `compare_exchange_weak` loop. A denial never writes.
//!
//! # State words
//!
//! ```text
//!             63                          32 31                          0
//! FixedWindow | window index mod 2^32       | count                       |
//!
//!             63             40 39             20 19                      0
//! SlidingWindow | index mod 2^24 | previous count  | current count          |
//! ```
//!
//! [`pack_fixed`]/[`unpack_fixed`] and [`pack_sliding`]/[`unpack_sliding`]
//! convert, with the named `*_SHIFT`/`*_MASK` constants. The word `0` is the
//! fresh state (what a `static` starts with, and what keyed stores assume).
//!
//! # Window indexes modulo 2^k
//!
//! The stored index is compared with the index of `now` modulo 2^k. A stored
//! index up to `MAX_BACK` windows *ahead* of now's ([`FIXED_MAX_BACK`] = 2^20,
//! [`SLIDING_MAX_BACK`] = 2^12) is a later window that the clock has stepped
//! back from: count against it (stricter). Any other distance means the
//! stored window is in the past: start a new window, or roll the sliding
//! window. See each type for what this means in time. Two things can go
//! wrong, and only there:
//!
//! * A counter untouched for between 2^k − `MAX_BACK` and 2^k windows (or a
//!   multiple of 2^k plus that) is mistaken for a later window. Its old count
//!   then keeps applying for at most `MAX_BACK` more windows: **stricter,
//!   never looser** — a band of 1 in 4 096 of idle lengths. A limiter never
//!   used (the word `0`) reads as fresh at any index. (Until the tenth
//!   session "later" took half the index range, so every counter idle for
//!   2^(k−1) windows or more — 97 days of 1 s sliding windows — refused for as
//!   long again, and keyed stores could not reclaim such keys; found by
//!   review.)
//! * A clock stepping *back* by more than `MAX_BACK` windows behind the
//!   latest time the counter saw reads as a step into an old window (looser:
//!   the later window's count is not seen). A monotonic clock never steps
//!   back; racing threads "step back" by a scheduling delay, far below that.
//!
//! A window refunded down to zero keeps its index, so that a clock stepping
//! back still counts against it. A refund never produces the word `0` except
//! in the very first window: `0` reads as fresh and would forget that the
//! window is later than those before it. When the index is a multiple of
//! 2^k (and not the first window) and nothing else is counted, one unit
//! stays counted (stricter, once every 2^k windows). Found by the `window`
//! fuzz target.

use core::fmt;
use core::num::NonZeroU32;

use crate::decision::{Decision, Snapshot};
use crate::limiter::Limiter;
use crate::sync::{AtomicU64, Ordering};
use crate::time::Nanos;

mod fixed;
mod sliding;
#[cfg(test)]
mod tests;

pub use fixed::{
    FIXED_COUNT_MASK, FIXED_INDEX_BITS, FIXED_INDEX_SHIFT, FIXED_MAX_BACK, FixedRule, FixedWindow,
    pack_fixed, unpack_fixed,
};
pub use sliding::{
    SLIDING_COUNT_BITS, SLIDING_COUNT_MASK, SLIDING_INDEX_BITS, SLIDING_INDEX_MASK,
    SLIDING_INDEX_SHIFT, SLIDING_MAX_BACK, SLIDING_MAX_LIMIT, SLIDING_PREV_SHIFT, SlidingRule,
    SlidingWindow, pack_sliding, unpack_sliding,
};

/// Why a window limiter could not be built, and what to change.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{FixedWindow, Nanos, SlidingWindow, WindowError};
///
/// let ten = NonZeroU32::new(10).unwrap();
/// let e = FixedWindow::new(ten, Nanos::ZERO, Nanos::ZERO).unwrap_err();
/// assert_eq!(e, WindowError::ZeroWindow);
/// assert!(e.to_string().contains("greater than zero"));
///
/// let big = NonZeroU32::new(5_000_000).unwrap();
/// let e = SlidingWindow::new(big, Nanos::from_secs(1)).unwrap_err();
/// assert!(matches!(e, WindowError::LimitTooLarge { limit: 5_000_000, .. }));
/// assert!(e.to_string().contains("1048575"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowError {
    /// The window was zero nanoseconds long.
    ZeroWindow,
    /// The limit does not fit the counter bits of the state word
    /// ([`SlidingWindow`]: at most [`SLIDING_MAX_LIMIT`]).
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
            WindowError::ZeroWindow => {
                f.write_str("window length must be greater than zero nanoseconds")
            }
            WindowError::LimitTooLarge { limit, max } => write!(
                f,
                "limit {limit} is above the {max} this window counter can hold; \
                 use a limit of at most {max} (count in coarser units), \
                 or a FixedWindow or Gcra, which take any u32 limit"
            ),
        }
    }
}

impl core::error::Error for WindowError {}

/// Runs the pure transition `step` on `word` in a compare-and-swap loop;
/// `step` returns the answer and the state to store (`None`: store nothing,
/// e.g. a denial), and is re-run on the fresh value whenever another thread
/// changed the word in between.
#[inline]
fn cas_loop<R>(word: &AtomicU64, step: impl Fn(u64) -> (R, Option<u64>)) -> R {
    // Relaxed: the word publishes no other memory (see "Memory ordering" on
    // the limiter types); a stale value only makes the CAS below fail.
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        let (r, new) = step(cur);
        let Some(new) = new else { return r };
        // Relaxed on success and failure: the RMW acts on the latest value in
        // the word's modification order whatever the ordering, which is all
        // the counting needs; on failure we retry with the value returned.
        match word.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return r,
            Err(actual) => cur = actual,
        }
    }
}

/// A `u128` span of nanoseconds as [`Nanos`], saturating at [`Nanos::MAX`]
/// (only spans that end after 2^64 ns saturate).
#[inline]
fn nanos(v: u128) -> Nanos {
    Nanos::new(u64::try_from(v).unwrap_or(u64::MAX))
}

/// `⌊a × b / d⌋` (or `⌈…⌉` when `up`) for results that fit a `u64`; plain
/// `u64` arithmetic whenever the product fits (the common case), `u128`
/// otherwise. Requires `d > 0`.
#[inline]
fn mul_div(a: u64, b: u64, d: u64, up: bool) -> u64 {
    match a.checked_mul(b) {
        Some(p) if up => p.div_ceil(d),
        Some(p) => p / d,
        None => {
            let (p, d) = (u128::from(a) * u128::from(b), u128::from(d));
            let q = if up { p.div_ceil(d) } else { p / d };
            u64::try_from(q).unwrap_or(u64::MAX)
        }
    }
}
