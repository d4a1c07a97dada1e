//! [`SlidingLog`]: the exact sliding window — at most `N` units in any window
//! of length `W`.

use core::fmt;

use crate::decision::{Decision, Snapshot};
use crate::limiter::Limiter;
use crate::slots::{Scan, Slots};
use crate::time::Nanos;

/// An exact sliding-window limiter: at most `N` admitted cost units in any
/// window `(now - W, now]`, for any interleaving of threads and any order of
/// times.
///
/// CyberVault's "sliding 60-second window" is `SlidingLog::<N>::new(60 s)`.
///
/// # How
///
/// The state is the expiry times of the last `N` admitted units: `N` slots,
/// each holding "taken until `t + W`" for a unit admitted at `t`. A unit is
/// admitted by taking a slot whose previous unit has left the window, with one
/// CAS; so no slot hosts two units within one window, and `N` slots bound the
/// window to `N` units. Lock-free: a CAS fails only when another caller took
/// or freed that slot.
///
/// # Cost and memory
///
/// `N × 8 + 16` bytes. A check reads every slot once (to report `remaining`)
/// and usually takes a slot in O(1); a denial of cost `c` also finds the
/// `c`-th earliest expiry for an exact `retry_after`. That is fine for the
/// tens to hundreds of requests per window that exact windows are used for;
/// for larger limits, or when a smooth rate is what you want, use
/// [`Gcra`](crate::Gcra): one word, O(1), and no window edge to game.
///
/// # Concurrency notes
///
/// A check of cost `c > 1` that finds `c` free slots and then loses a race for
/// one gives back the slots it took; until it does, a concurrent caller can see
/// them taken (stricter, never looser). `remaining` and `retry_after` are read
/// by a scan that is exact when no other thread changes the log meanwhile.
///
/// # Memory ordering
///
/// See the slots engine: taking a slot is an `Acquire` CAS, freeing one a
/// `Release` write; read-outs are `Relaxed` loads, and every write is a CAS
/// that re-checks the value it replaces.
///
/// # Examples
///
/// ```
/// use tollgate_core::{Nanos, SlidingLog};
///
/// // At most 3 requests in any 10-second window.
/// let log = SlidingLog::<3>::new(Nanos::from_secs(10)).unwrap();
/// for t in [0, 1, 2] {
///     assert!(log.check(Nanos::from_secs(t)).is_allowed());
/// }
/// // At t = 9 s all three are still in the window; the first leaves at 10 s.
/// let d = log.check(Nanos::from_secs(9));
/// assert_eq!(d.retry_after(), Some(Nanos::from_secs(1)));
/// assert!(log.check(Nanos::from_secs(10)).is_allowed());
/// ```
#[derive(Debug)]
pub struct SlidingLog<const N: usize> {
    slots: Slots<N>,
    window: u64,
}

/// Why a window-based limiter could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogError {
    /// The window was zero: nothing would ever be limited.
    ZeroWindow,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::ZeroWindow => f.write_str("sliding log window must be longer than zero"),
        }
    }
}

impl core::error::Error for LogError {}

/// A read-out of a [`SlidingLog`] (see [`SlidingLog::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogState {
    /// Units admitted within `(now - W, now]`.
    pub in_window: u32,
    /// When the oldest of them leaves the window (`None` if none is in it).
    pub oldest_leaves_after: Option<Nanos>,
}

impl<const N: usize> SlidingLog<N> {
    /// An empty log of window `window`. `N` (1 ..= `u32::MAX`, checked at
    /// compile time) is the limit.
    ///
    /// ```
    /// use tollgate_core::{LogError, Nanos, SlidingLog};
    ///
    /// static PER_MINUTE: SlidingLog<60> = match SlidingLog::new(Nanos::from_secs(60)) {
    ///     Ok(log) => log,
    ///     Err(_) => panic!("60 s is a valid window"),
    /// };
    /// assert!(PER_MINUTE.check(Nanos::ZERO).is_allowed());
    /// assert_eq!(SlidingLog::<5>::new(Nanos::ZERO).err(), Some(LogError::ZeroWindow));
    /// ```
    #[cfg(not(tollgate_loom))]
    pub const fn new(window: Nanos) -> Result<Self, LogError> {
        if window.as_u64() == 0 {
            return Err(LogError::ZeroWindow);
        }
        Ok(SlidingLog {
            slots: Slots::new(),
            window: window.as_u64(),
        })
    }

    /// An empty log (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(window: Nanos) -> Result<Self, LogError> {
        if window.as_u64() == 0 {
            return Err(LogError::ZeroWindow);
        }
        Ok(SlidingLog {
            slots: Slots::new(),
            window: window.as_u64(),
        })
    }

    /// The window length.
    #[inline]
    pub const fn window(&self) -> Nanos {
        Nanos::new(self.window)
    }

    /// The limit, `N`.
    #[inline]
    pub const fn limit(&self) -> u32 {
        // N <= u32::MAX is checked at compile time by the slots engine.
        #[allow(clippy::cast_possible_truncation)]
        let n = N as u32;
        n
    }

    /// Asks to admit one unit at `now`.
    #[inline]
    pub fn check(&self, now: Nanos) -> Decision {
        self.check_n(now, 1)
    }

    /// Asks to admit `cost` units at `now`, all or nothing. A denial writes
    /// nothing (see the type's concurrency notes for the one race in which a
    /// cost above 1 takes and gives back slots).
    ///
    /// ```
    /// use tollgate_core::{Decision, Nanos, SlidingLog};
    ///
    /// let log = SlidingLog::<10>::new(Nanos::from_secs(60)).unwrap();
    /// assert_eq!(log.check_n(Nanos::ZERO, 8).remaining(), 2);
    /// assert!(!log.check_n(Nanos::ZERO, 3).is_allowed());
    /// assert_eq!(
    ///     log.check_n(Nanos::ZERO, 11),
    ///     Decision::ExceedsCapacity { cost: 11, capacity: 10 }
    /// );
    /// ```
    pub fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        let now = now.as_u64();
        let until = now.saturating_add(self.window);
        let n = self.limit();
        if cost > n {
            return Decision::ExceedsCapacity { cost, capacity: n };
        }
        loop {
            let scan = self.slots.scan(now);
            let c = cost as usize;
            if scan.free < c {
                return self.denied(now, cost, &scan);
            }
            if c == 0 || self.slots.take(now, until, c) {
                return allowed(now, until, cost, &scan);
            }
            // Lost a race for a slot that was free when scanned: look again.
        }
    }

    fn denied(&self, now: u64, cost: u32, scan: &Scan) -> Decision {
        let short = cost as usize - scan.free;
        // `short` more slots must come free; the slots engine finds when.
        let at = self.slots.kth_until(now, short).unwrap_or(u64::MAX);
        // `at` is the deadline of a taken slot, so at > now, or at == MAX
        // ("for ever", also when now == MAX): report MAX, never 0.
        let retry_after = if at == u64::MAX { u64::MAX } else { at - now };
        Decision::Denied {
            retry_after: Nanos::new(retry_after),
            remaining: u32::try_from(scan.free).unwrap_or(0),
            reset_after: Nanos::new(scan.last_until - now),
        }
    }

    /// The decision [`SlidingLog::check_n`] would make, without writing.
    pub fn probe(&self, now: Nanos, cost: u32) -> Decision {
        let now = now.as_u64();
        let n = self.limit();
        if cost > n {
            return Decision::ExceedsCapacity { cost, capacity: n };
        }
        let scan = self.slots.scan(now);
        if scan.free < cost as usize {
            return self.denied(now, cost, &scan);
        }
        allowed(now, now.saturating_add(self.window), cost, &scan)
    }

    /// Remaining units and the time until the window is empty, without
    /// writing.
    ///
    /// ```
    /// use tollgate_core::{Nanos, SlidingLog};
    ///
    /// let log = SlidingLog::<4>::new(Nanos::from_secs(60)).unwrap();
    /// let _ = log.check(Nanos::from_secs(5));
    /// let s = log.peek(Nanos::from_secs(20));
    /// assert_eq!((s.limit, s.remaining), (4, 3));
    /// assert_eq!(s.reset_after, Nanos::from_secs(45));
    /// ```
    pub fn peek(&self, now: Nanos) -> Snapshot {
        let now = now.as_u64();
        let scan = self.slots.scan(now);
        Snapshot {
            limit: self.limit(),
            remaining: u32::try_from(scan.free).unwrap_or(0),
            reset_after: Nanos::new(scan.last_until - now),
        }
    }

    /// How many units are in the window and when the oldest leaves (the
    /// BlockSecOps-style usage read-out), without writing.
    ///
    /// ```
    /// use tollgate_core::{LogState, Nanos, SlidingLog};
    ///
    /// let log = SlidingLog::<4>::new(Nanos::from_secs(60)).unwrap();
    /// let _ = log.check(Nanos::from_secs(5));
    /// let _ = log.check(Nanos::from_secs(7));
    /// assert_eq!(
    ///     log.state(Nanos::from_secs(20)),
    ///     LogState { in_window: 2, oldest_leaves_after: Some(Nanos::from_secs(45)) }
    /// );
    /// ```
    pub fn state(&self, now: Nanos) -> LogState {
        let now = now.as_u64();
        let scan = self.slots.scan(now);
        LogState {
            in_window: self.limit() - u32::try_from(scan.free).unwrap_or(0),
            oldest_leaves_after: scan.first_until.map(|t| Nanos::new(t - now)),
        }
    }

    /// Gives back up to `cost` units that are in the window at `now`, the
    /// ones that would leave it soonest first (that frees the least: a refund
    /// made while the refunded units are still in the window can never let
    /// more through than if they had not been admitted). Made after they
    /// left, it frees someone else's entries: use
    /// [`refund_since`](Self::refund_since) when a refund may come late.
    /// Only entries admitted at or before `now` (deadline ≤ `now + W`) are
    /// freed: one admitted later, by a thread with a fresher clock, is not
    /// this refund's.
    ///
    /// ```
    /// use tollgate_core::{Nanos, SlidingLog};
    ///
    /// let log = SlidingLog::<1>::new(Nanos::from_secs(60)).unwrap();
    /// let _ = log.check(Nanos::ZERO);
    /// assert_eq!(log.refund(Nanos::ZERO, 1).remaining, 1);
    /// assert!(log.check(Nanos::ZERO).is_allowed());
    /// ```
    pub fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        self.free_through(now, cost, now)
    }

    /// Frees up to `cost` entries live at `now`, earliest first, among those
    /// admitted at or before `admitted_by`.
    fn free_through(&self, now: Nanos, cost: u32, admitted_by: Nanos) -> Snapshot {
        let max_until = admitted_by.as_u64().saturating_add(self.window);
        let _ = self
            .slots
            .free_earliest(now.as_u64(), cost as usize, max_until);
        self.peek(now)
    }

    /// Gives back up to `cost` units admitted at `charged_at`, as of `now`:
    /// while the charge is still in the window (`now − charged_at < W`), as
    /// [`refund`](Self::refund) — the entries freed leave no later than the
    /// charge's own, so no more is freed than the charge still holds;
    /// nothing once it has left (a plain `refund` then would free someone
    /// else's entry and let one more through).
    ///
    /// ```
    /// use tollgate_core::{Nanos, SlidingLog};
    ///
    /// let log = SlidingLog::<1>::new(Nanos::from_secs(60)).unwrap();
    /// let t0 = Nanos::ZERO;
    /// assert!(log.check(t0).is_allowed());
    /// let t1 = Nanos::from_secs(61); // the charge has left the window
    /// assert!(log.check(t1).is_allowed());
    /// assert_eq!(log.refund_since(t0, t1, 1).remaining, 0); // nothing owed
    /// assert!(!log.check(t1).is_allowed());
    /// ```
    pub fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        if now.as_u64().saturating_sub(charged_at.as_u64()) >= self.window {
            return self.peek(now);
        }
        // Entries admitted after the charge are not its (with the clock
        // stepped back, `now < charged_at`, the charge's own entry is still
        // among those admitted by `charged_at`).
        self.free_through(now, cost, charged_at)
    }

    /// Empties the log.
    pub fn reset(&self) {
        self.slots.reset();
    }
}

/// The admission of `cost <= scan.free` units at `now`, taken until `until`.
fn allowed(now: u64, until: u64, cost: u32, scan: &Scan) -> Decision {
    let last = if cost == 0 {
        scan.last_until
    } else {
        scan.last_until.max(until)
    };
    Decision::Allowed {
        remaining: u32::try_from(scan.free - cost as usize).unwrap_or(0),
        reset_after: Nanos::new(last - now),
    }
}

impl<const N: usize> Limiter for SlidingLog<N> {
    #[inline]
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        SlidingLog::check_n(self, now, cost)
    }
    #[inline]
    fn peek(&self, now: Nanos) -> Snapshot {
        SlidingLog::peek(self, now)
    }
    #[inline]
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        SlidingLog::refund(self, now, cost)
    }
    #[inline]
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        SlidingLog::refund_since(self, charged_at, now, cost)
    }
    #[inline]
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        SlidingLog::probe(self, now, cost)
    }
    /// Frees units admitted at exactly `now` (interchangeable with the
    /// caller's own), falling back to [`SlidingLog::refund`] for the rest.
    fn undo(&self, now: Nanos, cost: u32) {
        let t = now.as_u64();
        let until = t.saturating_add(self.window);
        let freed = self.slots.free_matching(until, cost as usize, t);
        if freed < cost as usize {
            let _ = self.slots.free_earliest(t, cost as usize - freed, until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Nanos {
        Nanos::from_secs(s)
    }

    #[test]
    fn window_is_half_open() {
        let log = SlidingLog::<2>::new(secs(10)).unwrap();
        assert!(log.check(secs(0)).is_allowed());
        assert!(log.check(secs(5)).is_allowed());
        // (0, 10] no longer holds the unit at 0.
        let d = log.check(secs(10) - Nanos::new(1));
        assert_eq!(d.retry_after(), Some(Nanos::new(1)));
        assert!(log.check(secs(10)).is_allowed());
        assert!(!log.check(secs(14)).is_allowed());
        assert!(log.check(secs(15)).is_allowed());
    }

    #[test]
    fn multi_cost_retry_waits_for_enough_slots() {
        let log = SlidingLog::<3>::new(secs(10)).unwrap();
        for t in [1, 2, 3] {
            assert!(log.check(secs(t)).is_allowed());
        }
        // Two slots needed: the second frees at 12 s.
        assert_eq!(log.check_n(secs(5), 2).retry_after(), Some(secs(7)));
        assert!(!log.check_n(secs(12) - Nanos::new(1), 2).is_allowed());
        assert!(log.check_n(secs(12), 2).is_allowed());
    }

    #[test]
    fn denial_and_probe_write_nothing() {
        let log = SlidingLog::<2>::new(secs(10)).unwrap();
        let _ = log.check_n(secs(1), 2);
        let before = log.state(secs(3));
        assert!(!log.check(secs(3)).is_allowed());
        assert!(!log.probe(secs(3), 1).is_allowed());
        assert!(log.probe(secs(11), 2).is_allowed());
        assert_eq!(log.state(secs(3)), before);
    }

    #[test]
    fn backwards_time_is_stricter() {
        let log = SlidingLog::<1>::new(secs(10)).unwrap();
        assert!(log.check(secs(100)).is_allowed());
        assert!(!log.check(secs(50)).is_allowed());
        assert!(!log.check(secs(105)).is_allowed());
        assert!(log.check(secs(110)).is_allowed());
    }

    #[test]
    fn extremes_do_not_panic() {
        let log = SlidingLog::<2>::new(Nanos::MAX).unwrap();
        assert!(log.check(Nanos::MAX).is_allowed());
        assert!(log.check(Nanos::ZERO).is_allowed());
        let d = log.check(Nanos::MAX);
        assert!(!d.is_allowed());
        assert!(d.retry_after().unwrap() > Nanos::ZERO);
        let _ = log.refund(Nanos::MAX, u32::MAX);
        let _ = log.check_n(Nanos::MAX, u32::MAX);
    }

    #[test]
    fn undo_frees_the_same_instant_units() {
        let log = SlidingLog::<3>::new(secs(10)).unwrap();
        assert!(log.check(secs(1)).is_allowed());
        assert!(log.check_n(secs(2), 2).is_allowed());
        Limiter::undo(&log, secs(2), 2);
        assert_eq!(
            log.state(secs(2)),
            LogState {
                in_window: 1,
                oldest_leaves_after: Some(secs(9))
            }
        );
    }

    /// A refund, late-refund or undo at a stale `now` must not free an entry
    /// admitted after it (by a thread with a fresher clock). Found by review:
    /// they freed the earliest live entry, whoever's it was.
    #[test]
    fn a_stale_give_back_leaves_later_entries_alone() {
        type GiveBack = fn(&SlidingLog<1>);
        let ways: [(&str, GiveBack); 3] = [
            ("refund", |l| {
                let _ = l.refund(Nanos::new(150), 1);
            }),
            ("refund_since", |l| {
                let _ = l.refund_since(Nanos::new(150), Nanos::new(150), 1);
            }),
            ("undo", |l| Limiter::undo(l, Nanos::new(150), 1)),
        ];
        for (name, give_back) in ways {
            let log = SlidingLog::<1>::new(Nanos::new(10)).unwrap();
            assert!(log.check(Nanos::new(150)).is_allowed());
            assert!(log.check(Nanos::new(160)).is_allowed());
            give_back(&log);
            assert!(!log.check(Nanos::new(165)).is_allowed(), "{name}");
        }
    }
}
