//! [`FixedWindow`]: a calendar-aligned window counter in one packed word.

use super::*;

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
    /// The packed word (`pub(super)`: the module's tests read it).
    pub(super) state: AtomicU64,
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
