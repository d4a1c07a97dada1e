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

// ---- FixedWindow -------------------------------------------------------------

/// `FixedWindow` state: bits of the window index (stored modulo 2^32).
///
/// ```
/// assert_eq!(tollgate_core::window::FIXED_INDEX_BITS, 32);
/// ```
pub const FIXED_INDEX_BITS: u32 = 32;
/// `FixedWindow`: how many windows behind the stored one the clock may step
/// back and still be counted against it (stricter). A stored index further
/// ahead than this, modulo 2^32, is read as an old window that is over — a
/// counter idle for 2^31 windows or more must not read as "later" (it would
/// refuse for up to as long again; found by review).
///
/// ```
/// assert_eq!(tollgate_core::window::FIXED_MAX_BACK, 1 << 20);
/// ```
pub const FIXED_MAX_BACK: u32 = 1 << 20;
/// `FixedWindow` state: the window index sits above this bit.
///
/// ```
/// use tollgate_core::window::{pack_fixed, FIXED_INDEX_SHIFT};
/// assert_eq!(pack_fixed(5, 0) >> FIXED_INDEX_SHIFT, 5);
/// ```
pub const FIXED_INDEX_SHIFT: u32 = 32;
/// `FixedWindow` state: mask of the admitted count (the low 32 bits), so any
/// `u32` limit fits.
///
/// ```
/// use tollgate_core::window::{pack_fixed, FIXED_COUNT_MASK};
/// assert_eq!(pack_fixed(5, 7) & FIXED_COUNT_MASK, 7);
/// ```
pub const FIXED_COUNT_MASK: u64 = 0xFFFF_FFFF;

/// Packs a `FixedWindow` state word: `index` (the window index modulo 2^32)
/// in the high half, `count` in the low half.
///
/// ```
/// use tollgate_core::window::{pack_fixed, unpack_fixed};
/// let word = pack_fixed(3, 42);
/// assert_eq!(word, (3 << 32) | 42);
/// assert_eq!(unpack_fixed(word), (3, 42));
/// ```
#[inline]
pub const fn pack_fixed(index: u32, count: u32) -> u64 {
    ((index as u64) << FIXED_INDEX_SHIFT) | (count as u64 & FIXED_COUNT_MASK)
}

/// Unpacks a `FixedWindow` state word into `(index mod 2^32, count)`.
///
/// ```
/// use tollgate_core::window::unpack_fixed;
/// assert_eq!(unpack_fixed(0), (0, 0)); // the fresh state
/// assert_eq!(unpack_fixed(u64::MAX), (u32::MAX, u32::MAX));
/// ```
#[inline]
pub const fn unpack_fixed(word: u64) -> (u32, u32) {
    // Both fields are exactly 32 bits wide: the casts keep all of them
    // (try_from is not const).
    #[allow(clippy::cast_possible_truncation)]
    let fields = (
        (word >> FIXED_INDEX_SHIFT) as u32,
        (word & FIXED_COUNT_MASK) as u32,
    );
    fields
}

/// Where a `FixedWindow` state stands at some `now`.
#[derive(Clone, Copy)]
struct FixedAt {
    /// The index (mod 2^32) of the window this call counts against.
    index: u32,
    /// What that window holds.
    count: u32,
    /// Nanoseconds from `now` to that window's end.
    to_end: u128,
    /// Whether that window is later than now's (the clock stepped back).
    later: bool,
}

/// The arithmetic of a [`FixedWindow`] apart from its state word: `limit`
/// per window of length `window`, aligned by `offset`. Keyed stores keep one
/// state word per key and apply a rule to it (see
/// [`FixedRule::with_limit`]).
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::window::FixedRule;
/// use tollgate_core::Nanos;
///
/// let rule = FixedRule::new(NonZeroU32::new(2).unwrap(), Nanos::new(100), Nanos::ZERO).unwrap();
/// let (d, state) = rule.decide(0, Nanos::new(10), 2);
/// assert!(d.is_allowed());
/// let (d, none) = rule.decide(state.unwrap(), Nanos::new(20), 1);
/// assert_eq!(d.retry_after(), Some(Nanos::new(80)));
/// assert_eq!(none, None); // a denial writes nothing
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedRule {
    limit: u32,
    /// `W`, in ns, > 0.
    window: u64,
    /// Offset reduced modulo `W`.
    offset: u64,
}

impl FixedRule {
    /// `limit` per window of length `window`; window `i` covers
    /// `[i × W − offset, (i + 1) × W − offset)` (see [`FixedWindow`]). The
    /// offset is taken modulo the window. Errors on a zero window; every
    /// `u32` limit fits the 32 count bits.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::FixedRule;
    /// use tollgate_core::{Nanos, WindowError};
    ///
    /// let one = NonZeroU32::MIN;
    /// let rule = FixedRule::new(one, Nanos::from_secs(60), Nanos::from_secs(130)).unwrap();
    /// assert_eq!(rule.offset(), Nanos::from_secs(10));
    /// assert_eq!(FixedRule::new(one, Nanos::ZERO, Nanos::ZERO), Err(WindowError::ZeroWindow));
    /// ```
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

    /// The same windows with another limit (plans differ per key). A state
    /// counted under a larger limit simply reads as full under a smaller one.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::FixedRule;
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::MIN, Nanos::from_secs(1), Nanos::ZERO).unwrap();
    /// assert_eq!(rule.with_limit(NonZeroU32::new(9).unwrap()).limit(), 9);
    /// ```
    pub const fn with_limit(self, limit: NonZeroU32) -> Self {
        FixedRule {
            limit: limit.get(),
            ..self
        }
    }

    /// The limit per window.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::FixedRule;
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::new(4).unwrap(), Nanos::new(1), Nanos::ZERO).unwrap();
    /// assert_eq!(rule.limit(), 4);
    /// ```
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The window length.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::FixedRule;
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::MIN, Nanos::from_secs(3_600), Nanos::ZERO).unwrap();
    /// assert_eq!(rule.window(), Nanos::from_secs(3_600));
    /// ```
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.window)
    }

    /// The alignment offset in force (the one given, modulo the window).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::FixedRule;
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::MIN, Nanos::new(100), Nanos::new(1_234)).unwrap();
    /// assert_eq!(rule.offset(), Nanos::new(34));
    /// ```
    pub const fn offset(&self) -> Nanos {
        Nanos::new(self.offset)
    }

    /// The window `now` falls in: `(index, ns from now to its end)`.
    #[inline]
    fn locate(&self, now: Nanos) -> (u128, u128) {
        let w = self.window;
        match now.as_u64().checked_add(self.offset) {
            // The common case: no u128 division.
            Some(t) => (u128::from(t / w), u128::from(w - t % w)),
            None => {
                let t = u128::from(now.as_u64()) + u128::from(self.offset);
                let w = u128::from(w);
                (t / w, w - t % w)
            }
        }
    }

    /// Which window `state` counts against at `now`, and what it holds.
    #[inline]
    fn at(&self, state: u64, now: Nanos) -> FixedAt {
        let (i, to_end) = self.locate(now);
        // Truncation intended: indexes are kept and compared modulo 2^32.
        #[allow(clippy::cast_possible_truncation)]
        let index = i as u32;
        let (stored, count) = unpack_fixed(state);
        let fresh = FixedAt {
            index,
            count: 0,
            to_end,
            later: false,
        };
        if state == 0 {
            // Never used: fresh at any index (index 0 may read as "later").
            return fresh;
        }
        // How many windows the stored one is ahead of now's, modulo 2^32.
        let ahead = stored.wrapping_sub(index);
        if ahead == 0 {
            FixedAt {
                index,
                count,
                to_end,
                later: false,
            }
        } else if ahead > FIXED_MAX_BACK {
            // The stored window is over: a new one. (Also when it reads as
            // more than `FIXED_MAX_BACK` windows ahead: an old window seen
            // across the index's wrap, not a clock that stepped that far
            // back.)
            fresh
        } else {
            // The stored window is `ahead` windows later than now's: the
            // clock stepped back. Count against that later window (stricter).
            FixedAt {
                index: stored,
                count,
                to_end: to_end + u128::from(ahead) * u128::from(self.window),
                later: true,
            }
        }
    }

    /// The pure decision: what to answer, and what to store (`None`: store
    /// nothing). Never panics or overflows, for any inputs.
    ///
    /// * `cost > limit`: [`Decision::ExceedsCapacity`], no write.
    /// * `count + cost <= limit`: [`Decision::Allowed`] with `remaining =
    ///   limit − count` after the admission and `reset_after` = time to the
    ///   end of the window (zero if it holds nothing); a cost of 0 writes
    ///   nothing.
    /// * otherwise [`Decision::Denied`], no write, with `retry_after` = time to
    ///   the next window's start, where the count restarts at 0: exact, and
    ///   at least 1 ns (saturating at [`Nanos::MAX`] only when that start is
    ///   past 2^64 ns).
    ///
    /// When the clock has stepped back into an earlier window than the
    /// stored one, the request counts against the stored, later window, and
    /// the times are measured to *its* end.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_fixed, FixedRule};
    /// use tollgate_core::{Decision, Nanos};
    ///
    /// let rule = FixedRule::new(NonZeroU32::new(3).unwrap(), Nanos::new(100), Nanos::ZERO).unwrap();
    /// // Window 4 already holds 2; at 450 one more fits.
    /// let (d, new) = rule.decide(pack_fixed(4, 2), Nanos::new(450), 1);
    /// assert_eq!(d, Decision::Allowed { remaining: 0, reset_after: Nanos::new(50) });
    /// assert_eq!(new, Some(pack_fixed(4, 3)));
    /// // Two do not: retry at the start of window 5.
    /// let (d, new) = rule.decide(pack_fixed(4, 2), Nanos::new(450), 2);
    /// assert_eq!(d.retry_after(), Some(Nanos::new(50)));
    /// assert_eq!(new, None);
    /// // Window 3 is earlier than the stored 4: count against window 4.
    /// let (d, _) = rule.decide(pack_fixed(4, 3), Nanos::new(350), 1);
    /// assert_eq!(d.retry_after(), Some(Nanos::new(150)));
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
        let reset = |count: u32| {
            if count == 0 {
                Nanos::ZERO
            } else {
                nanos(at.to_end)
            }
        };
        if u64::from(at.count) + u64::from(cost) <= u64::from(self.limit) {
            // <= limit, so it fits a u32 and the count bits.
            let after = at.count + cost;
            (
                Decision::Allowed {
                    remaining: self.limit - after,
                    reset_after: reset(after),
                },
                (cost > 0).then_some(pack_fixed(at.index, after)),
            )
        } else {
            (
                Decision::Denied {
                    retry_after: nanos(at.to_end),
                    // A key counted under a larger plan can hold more than
                    // this limit.
                    remaining: self.limit.saturating_sub(at.count),
                    reset_after: reset(at.count),
                },
                None,
            )
        }
    }

    /// The read-out of `state` at `now`: units left in the window `now`
    /// counts against, and the time to its end (zero if it holds nothing).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_fixed, FixedRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::new(5).unwrap(), Nanos::new(100), Nanos::ZERO).unwrap();
    /// let s = rule.snapshot(pack_fixed(0, 3), Nanos::new(60));
    /// assert_eq!((s.limit, s.remaining, s.reset_after), (5, 2, Nanos::new(40)));
    /// assert_eq!(rule.snapshot(pack_fixed(0, 3), Nanos::new(100)).remaining, 5);
    /// ```
    pub fn snapshot(&self, state: u64, now: Nanos) -> Snapshot {
        let at = self.at(state, now);
        Snapshot {
            limit: self.limit,
            remaining: self.limit.saturating_sub(at.count),
            reset_after: if at.count == 0 {
                Nanos::ZERO
            } else {
                nanos(at.to_end)
            },
        }
    }

    /// `state` after giving back up to `cost` units of the window `now`
    /// counts against, saturating at 0 (`None`: nothing to give back — the
    /// stored window is over, or holds nothing). When the stored window is
    /// later than now's (the clock stepped back, or another thread counted
    /// there with a fresher `now`), the units come off that stored window:
    /// right when the refunded admission was itself counted there (a check
    /// with a stale `now` counts against the stored later window), one too
    /// many when it was counted in an earlier window that has since rolled
    /// over. [`refunded_since`](Self::refunded_since) gives nothing in that
    /// case, and the limiters' `undo` uses it.
    ///
    /// One exception keeps the state word meaningful: the word `0` is the
    /// fresh state, so in a window whose index is ≡ 0 mod 2^32 (other than
    /// the very first) a refund leaves one unit counted rather than write
    /// `0` — stricter by one unit, in one window out of every 2^32, never
    /// more admitted.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_fixed, FixedRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::new(5).unwrap(), Nanos::new(100), Nanos::ZERO).unwrap();
    /// assert_eq!(rule.refunded(pack_fixed(2, 3), Nanos::new(250), 1), Some(pack_fixed(2, 2)));
    /// assert_eq!(rule.refunded(pack_fixed(2, 3), Nanos::new(250), 9), Some(pack_fixed(2, 0)));
    /// assert_eq!(rule.refunded(pack_fixed(2, 3), Nanos::new(300), 1), None); // window over
    /// ```
    pub fn refunded(&self, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        let at = self.at(state, now);
        (at.count > 0 && cost > 0).then(|| {
            // Never the word 0 for any window but the very first: 0 reads as
            // fresh at any index, and would forget that this window is later
            // than the ones before it (a clock stepping back would count
            // afresh in them). With the index ≡ 0 mod 2^32, one unit stays
            // (stricter, once every 2^32 windows).
            let first = !at.later && self.locate(now).0 == 0;
            let keep = u32::from(at.index == 0 && !first);
            let left = (at.count - cost.min(at.count)).max(keep);
            pack_fixed(at.index, left)
        })
    }

    /// `state` after giving back `cost` units charged at `charged_at`, as
    /// of `now` (`None`: nothing to give back): [`refunded`](Self::refunded)
    /// while `now` is in the window of the charge; nothing once that window
    /// is over — the charge counted in a window that has ended, and taking a
    /// unit off the new one would let it admit one more than its limit — nor
    /// when `state` already holds a window later than `now`'s (another
    /// thread counted there with a fresher clock, or the clock stepped back).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_fixed, FixedRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::new(5).unwrap(), Nanos::new(100), Nanos::ZERO).unwrap();
    /// let (t0, later) = (Nanos::new(210), Nanos::new(290));
    /// assert_eq!(rule.refunded_since(pack_fixed(2, 3), t0, later, 1), Some(pack_fixed(2, 2)));
    /// // The charge's window is over: the next window's count is not its.
    /// assert_eq!(rule.refunded_since(pack_fixed(3, 3), t0, Nanos::new(310), 1), None);
    /// ```
    pub fn refunded_since(
        &self,
        state: u64,
        charged_at: Nanos,
        now: Nanos,
        cost: u32,
    ) -> Option<u64> {
        // A stored window later than now's (the clock stepped back, or
        // another thread already counted in the next window with a fresher
        // `now`) is not the charge's: give nothing (stricter).
        if self.locate(charged_at).0 == self.locate(now).0 && !self.at(state, now).later {
            self.refunded(state, now, cost)
        } else {
            None
        }
    }

    /// Whether `state` decides exactly like the fresh state `0` at `now`:
    /// nothing is counted in now's window, and no later window is stored.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::{pack_fixed, FixedRule};
    /// use tollgate_core::Nanos;
    ///
    /// let rule = FixedRule::new(NonZeroU32::MIN, Nanos::new(100), Nanos::ZERO).unwrap();
    /// assert!(!rule.is_fresh(pack_fixed(0, 1), Nanos::new(99)));
    /// assert!(rule.is_fresh(pack_fixed(0, 1), Nanos::new(100)));
    /// ```
    pub fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        let at = self.at(state, now);
        at.count == 0 && !at.later
    }
}

/// At most `limit` cost units per fixed window of length `W`, windows
/// aligned so that they can follow the calendar minutes, hours or days of a
/// wall clock.
///
/// # Alignment
///
/// Window `i` covers `[i × W − offset, (i + 1) × W − offset)` on the
/// caller's clock: the window index of `now` is `(now + offset) / W`. Pass
/// as `offset` the wall-clock time of your clock's zero (`wall − now`,
/// any multiple of `W` more or less: only `offset mod W` matters):
///
/// * **calendar minutes/hours/days (UTC)**: pass the Unix time, in ns, of
///   your clock's epoch, e.g. `Nanos::from_duration(SystemTime::now()
///   .duration_since(UNIX_EPOCH)?) - monotonic_now` once at start-up;
/// * **local midnight** in a zone at UTC+h: add `h` hours to that offset.
///
/// # The bound
///
/// With time moving forward, the cost admitted in any one window (minus what
/// is refunded in it) is at most `limit`. A denied request's `retry_after` is
/// exact: the next window's start. When the clock steps back into an earlier
/// window than the stored one, the request counts against the stored, later
/// window, so stepping back never admits more than `limit` per window — each
/// admission counts in the latest window the counter has seen.
///
/// # State
///
/// One `AtomicU64`: window index modulo 2^32 and a 32-bit count (see the
/// [module docs](crate::window)); every `u32` limit fits. A stored window up
/// to [`FIXED_MAX_BACK`] (2^20) windows ahead of now's is a clock that
/// stepped back (counted against the stored window: stricter); one further
/// ahead, modulo 2^32, is an old window seen across the index's wrap, and
/// over. So the clock may step back at most 2^20 windows behind the latest
/// time the counter saw (17 min of 1 ms windows, 12 days of 1 s ones);
/// further back, the later window's count is not seen. A counter idle for
/// 2^32 − 2^20 to 2^32 windows (a band of 1 in 4 096 of the index range:
/// at 1 ms windows, 49.7 days minus 17 minutes) reads as later and refuses
/// for at most 2^20 more windows; every other idle length reads as fresh.
/// With `W >= 5 s` no two `u64` times are that far apart.
///
/// # Memory ordering
///
/// Every access to the state word is `Relaxed`. The word publishes no other
/// memory — an admission is not a synchronisation point, and nothing is
/// read or written under its protection — so there is no happens-before
/// edge for Acquire/Release to create. What the bound needs is that the
/// read-modify-writes on this one word form a single order in which each acts
/// on the value left by the previous one; every compare-and-swap guarantees
/// that at any ordering. A `Relaxed` load may return a value another thread
/// has since replaced: a CAS from it then fails and the loop retries with the
/// value the CAS returned, and a denial or [`peek`](Self::peek) decided on it
/// reflects a state the word really held (reads of one word never move back
/// in its modification order within a thread). `core/tests/loom_window.rs`
/// checks this under every interleaving of racing threads.
///
/// # Examples
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{FixedWindow, Nanos};
///
/// // 100 per calendar hour; our clock's epoch was at Unix time 1714305600.5 s.
/// let epoch_unix = Nanos::from_millis(1_714_305_600_500);
/// let hourly =
///     FixedWindow::new(NonZeroU32::new(100).unwrap(), Nanos::from_secs(3_600), epoch_unix)
///         .unwrap();
/// assert!(hourly.check_n(Nanos::ZERO, 100).is_allowed());
/// // Denied until the top of the hour, 3 599.5 s after our epoch.
/// let d = hourly.check(Nanos::ZERO);
/// assert_eq!(d.retry_after(), Some(Nanos::from_millis(3_599_500)));
/// assert!(hourly.check(Nanos::from_millis(3_599_500)).is_allowed());
/// ```
///
/// In a `static`:
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{FixedWindow, Nanos};
///
/// static PER_SECOND: FixedWindow = match FixedWindow::new(
///     NonZeroU32::new(50).unwrap(),
///     Nanos::from_secs(1),
///     Nanos::ZERO,
/// ) {
///     Ok(w) => w,
///     Err(_) => panic!("a one-second window is valid"),
/// };
/// assert!(PER_SECOND.check(Nanos::ZERO).is_allowed());
/// ```
#[derive(Debug)]
pub struct FixedWindow {
    state: AtomicU64,
    rule: FixedRule,
}

impl FixedWindow {
    /// `limit` per window of length `window`, aligned by `offset` (see the
    /// type's docs). Errors on a zero window; every `u32` limit fits.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos, WindowError};
    ///
    /// let per_day = FixedWindow::new(NonZeroU32::new(1_000).unwrap(), Nanos::from_secs(86_400), Nanos::ZERO);
    /// assert!(per_day.is_ok());
    /// let bad = FixedWindow::new(NonZeroU32::MIN, Nanos::ZERO, Nanos::ZERO);
    /// assert_eq!(bad.unwrap_err(), WindowError::ZeroWindow);
    /// ```
    #[cfg(not(tollgate_loom))]
    pub const fn new(limit: NonZeroU32, window: Nanos, offset: Nanos) -> Result<Self, WindowError> {
        match FixedRule::new(limit, window, offset) {
            Ok(rule) => Ok(FixedWindow::from_rule(rule)),
            Err(e) => Err(e),
        }
    }

    /// `limit` per window of length `window`, aligned by `offset` (loom
    /// build: loom atomics are not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(limit: NonZeroU32, window: Nanos, offset: Nanos) -> Result<Self, WindowError> {
        Ok(FixedWindow::from_rule(FixedRule::new(
            limit, window, offset,
        )?))
    }

    /// A fresh limiter for `rule`.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::window::FixedRule;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let rule = FixedRule::new(NonZeroU32::new(3).unwrap(), Nanos::from_secs(1), Nanos::ZERO).unwrap();
    /// let w = FixedWindow::from_rule(rule);
    /// assert_eq!(w.peek(Nanos::ZERO).remaining, 3);
    /// ```
    #[cfg(not(tollgate_loom))]
    pub const fn from_rule(rule: FixedRule) -> Self {
        FixedWindow {
            state: AtomicU64::new(0),
            rule,
        }
    }

    /// A fresh limiter for `rule` (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn from_rule(rule: FixedRule) -> Self {
        FixedWindow {
            state: AtomicU64::new(0),
            rule,
        }
    }

    /// The limit per window.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::new(7).unwrap(), Nanos::from_secs(1), Nanos::ZERO).unwrap();
    /// assert_eq!(w.limit(), 7);
    /// ```
    pub const fn limit(&self) -> u32 {
        self.rule.limit
    }

    /// The window length.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::MIN, Nanos::from_secs(60), Nanos::ZERO).unwrap();
    /// assert_eq!(w.window(), Nanos::from_secs(60));
    /// ```
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.rule.window)
    }

    /// The arithmetic of this limiter.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::MIN, Nanos::new(100), Nanos::new(130)).unwrap();
    /// assert_eq!(w.rule().offset(), Nanos::new(30));
    /// ```
    pub const fn rule(&self) -> &FixedRule {
        &self.rule
    }

    /// The pure decision for a given state word (see [`FixedRule::decide`]);
    /// touches nothing.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::new(2).unwrap(), Nanos::new(100), Nanos::ZERO).unwrap();
    /// let (d, new) = w.decide(0, Nanos::new(5), 2);
    /// assert!(d.is_allowed() && new.is_some());
    /// assert_eq!(w.peek(Nanos::new(5)).remaining, 2); // nothing was consumed
    /// ```
    pub fn decide(&self, state: u64, now: Nanos, cost: u32) -> (Decision, Option<u64>) {
        self.rule.decide(state, now, cost)
    }

    /// Asks to admit one unit at `now`: `check_n(now, 1)`.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::MIN, Nanos::from_secs(1), Nanos::ZERO).unwrap();
    /// assert!(w.check(Nanos::ZERO).is_allowed());
    /// assert!(!w.check(Nanos::ZERO).is_allowed());
    /// ```
    #[inline]
    pub fn check(&self, now: Nanos) -> Decision {
        self.check_n(now, 1)
    }

    /// Asks to admit `cost` units at `now`, all or nothing (see
    /// [`FixedRule::decide`]). A denial writes nothing. Lock-free: the loop
    /// retries only when another thread changed the word in between.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Decision, FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::new(10).unwrap(), Nanos::from_secs(1), Nanos::ZERO).unwrap();
    /// assert_eq!(w.check_n(Nanos::from_millis(250), 4).remaining(), 6);
    /// assert_eq!(w.check_n(Nanos::from_millis(250), 7).retry_after(), Some(Nanos::from_millis(750)));
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
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::MIN, Nanos::from_secs(1), Nanos::ZERO).unwrap();
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

    /// The state at `now` without writing (see [`FixedRule::snapshot`]).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::new(5).unwrap(), Nanos::from_secs(1), Nanos::ZERO).unwrap();
    /// let _ = w.check_n(Nanos::from_millis(400), 2);
    /// let s = w.peek(Nanos::from_millis(400));
    /// assert_eq!((s.remaining, s.reset_after), (3, Nanos::from_millis(600)));
    /// ```
    #[inline]
    pub fn peek(&self, now: Nanos) -> Snapshot {
        // Relaxed: a read-out (see "Memory ordering" on the type).
        self.rule.snapshot(self.state.load(Ordering::Relaxed), now)
    }

    /// Gives back up to `cost` units of the window `now` counts against
    /// (saturating at 0; nothing if that window is over). Returns the state
    /// after.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::new(2).unwrap(), Nanos::from_secs(1), Nanos::ZERO).unwrap();
    /// let _ = w.check_n(Nanos::ZERO, 2);
    /// assert_eq!(w.refund(Nanos::ZERO, 1).remaining, 1);
    /// assert_eq!(w.refund(Nanos::ZERO, 100).remaining, 2); // saturates
    /// ```
    pub fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        cas_loop(&self.state, |s| {
            let new = self.rule.refunded(s, now, cost);
            (self.rule.snapshot(new.unwrap_or(s), now), new)
        })
    }

    /// Gives back `cost` units admitted at `charged_at`, as of `now`: while
    /// `now` is in the window of the charge, as [`refund`](Self::refund);
    /// nothing once it is over (see [`FixedRule::refunded_since`]), so a
    /// late refund never lets a later window admit more than its limit.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{FixedWindow, Nanos};
    ///
    /// let w = FixedWindow::new(NonZeroU32::new(1).unwrap(), Nanos::from_secs(60), Nanos::ZERO).unwrap();
    /// let t0 = Nanos::from_secs(59);
    /// assert!(w.check(t0).is_allowed());
    /// let t1 = Nanos::from_secs(61); // the next minute: its one unit is spent
    /// assert!(w.check(t1).is_allowed());
    /// // The first minute's request refunded late: the new minute keeps its count.
    /// assert_eq!(w.refund_since(t0, t1, 1).remaining, 0);
    /// assert!(!w.check(t1).is_allowed());
    /// ```
    pub fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        cas_loop(&self.state, |s| {
            let new = self.rule.refunded_since(s, charged_at, now, cost);
            (self.rule.snapshot(new.unwrap_or(s), now), new)
        })
    }
}

impl Limiter for FixedWindow {
    #[inline]
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        FixedWindow::check_n(self, now, cost)
    }
    #[inline]
    fn peek(&self, now: Nanos) -> Snapshot {
        FixedWindow::peek(self, now)
    }
    #[inline]
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        FixedWindow::refund(self, now, cost)
    }
    #[inline]
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        FixedWindow::refund_since(self, charged_at, now, cost)
    }
    /// As [`refund_since`](FixedWindow::refund_since) at the charge's own
    /// instant: a stale `now` (another thread has moved the state on to a
    /// later window) gives nothing back rather than take a unit off a window
    /// the undone admission was not counted in. Stricter by the undone units
    /// in that race, never looser.
    #[inline]
    fn undo(&self, now: Nanos, cost: u32) {
        let _ = FixedWindow::refund_since(self, now, now, cost);
    }
    #[inline]
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        FixedWindow::probe(self, now, cost)
    }
}

// ---- SlidingWindow -------------------------------------------------------------

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
    state: AtomicU64,
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

#[cfg(test)]
mod tests {
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
}
