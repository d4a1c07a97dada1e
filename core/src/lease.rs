//! [`LeaseSemaphore`]: a concurrency limit whose permits expire, so a holder
//! that crashes cannot keep a slot for ever.

use core::fmt;

use crate::slots::{RELEASED, Slots};
use crate::time::Nanos;

/// A concurrency limit of `N` leases, each held until it is dropped or until
/// its deadline passes, whichever comes first.
///
/// [`Semaphore`](crate::Semaphore) is one word and the fastest choice when
/// every holder is sure to release (RAII in one process). When a holder can
/// vanish without releasing — a worker killed mid-scan, a client that opened
/// a stream and disappeared — per-holder deadlines are needed, and they do not
/// fit in one word: a `LeaseSemaphore` keeps one deadline per slot (`N × 8`
/// bytes), and a slot whose deadline has passed is free again without anyone
/// releasing it. BlockSecOps' "concurrent scans per plan" with a scan timeout
/// is `LeaseSemaphore::<N>` with `deadline = start + timeout`.
///
/// # Memory ordering
///
/// Acquiring a lease is a CAS with `Acquire` on success; dropping one is a
/// `Release` CAS on the same slot. So what the previous holder did before
/// releasing happens-before what the next holder of that slot does. (A lease
/// that *expires* releases nothing: its holder is presumed gone.)
///
/// # Examples
///
/// ```
/// use tollgate_core::{LeaseError, LeaseSemaphore, Nanos};
///
/// let scans = LeaseSemaphore::<2>::new();
/// let now = Nanos::ZERO;
/// let timeout = Nanos::from_secs(600);
/// let a = scans.try_acquire_until(now, now + timeout).unwrap();
/// let _b = scans.try_acquire_until(now, now + timeout).unwrap();
/// assert!(matches!(
///     scans.try_acquire_until(now, now + timeout),
///     Err(LeaseError::Full { in_use: 2, max: 2, .. })
/// ));
/// drop(a); // released
/// assert_eq!(scans.in_use(now), 1);
///
/// // A holder that never releases: its slot comes back at the deadline.
/// let crashed = scans.try_acquire_until(now, now + timeout).unwrap();
/// assert_eq!(crashed.deadline(), now + timeout);
/// crashed.forget();
/// assert_eq!(scans.in_use(now), 2);
/// assert_eq!(scans.in_use(now + timeout), 0); // both expired
/// ```
#[derive(Debug)]
pub struct LeaseSemaphore<const N: usize> {
    slots: Slots<N, true>,
}

/// Why a lease could not be taken or renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// All `max` leases are held; the earliest expires after `retry_after`
    /// (it may be released sooner).
    Full {
        /// Leases held now (`current_scans`).
        in_use: u32,
        /// The limit (`max_scans`).
        max: u32,
        /// Time until the earliest held lease expires.
        retry_after: Nanos,
    },
    /// The deadline was not after `now`: such a lease would be expired
    /// before it starts.
    DeadlineNotAfterNow,
    /// The lease had expired and its slot was taken by someone else.
    Lost,
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::Full { in_use, max, .. } => write!(
                f,
                "all {max} leases are in use ({in_use} held); wait for one to end"
            ),
            LeaseError::DeadlineNotAfterNow => {
                f.write_str("lease deadline must be later than the current time")
            }
            LeaseError::Lost => f.write_str(
                "the lease expired and its slot was taken by another holder; acquire a new one",
            ),
        }
    }
}

impl core::error::Error for LeaseError {}

impl<const N: usize> LeaseSemaphore<N> {
    /// `N` free leases (`N` from 1 to `u32::MAX`, checked at compile time).
    #[cfg(not(tollgate_loom))]
    pub const fn new() -> Self {
        LeaseSemaphore {
            slots: Slots::new(),
        }
    }

    /// `N` free leases (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new() -> Self {
        LeaseSemaphore {
            slots: Slots::new(),
        }
    }

    /// Takes one lease valid until `deadline` (exclusive: at `deadline` it
    /// is free again), if one is free at `now`.
    pub fn try_acquire_until(
        &self,
        now: Nanos,
        deadline: Nanos,
    ) -> Result<Lease<'_, N>, LeaseError> {
        let (now, deadline) = (now.as_u64(), deadline.as_u64());
        if deadline <= now {
            return Err(LeaseError::DeadlineNotAfterNow);
        }
        match self.slots.take_one(now, clamp(deadline)) {
            // The deadline stored may be later than asked for, when a stale
            // holder of the slot (its lease expired and the slot re-taken)
            // has one as late (the clock stepped back): a new deadline is
            // later than every earlier holder's (see `Slots`).
            Some((idx, deadline, floor)) => Ok(Lease {
                slots: &self.slots,
                idx,
                deadline,
                floor,
            }),
            None => {
                let scan = self.slots.scan(now);
                let first = scan.first_until.unwrap_or(now.saturating_add(1));
                Err(LeaseError::Full {
                    in_use: self.slots.len_u32() - u32::try_from(scan.free).unwrap_or(0),
                    max: self.slots.len_u32(),
                    retry_after: Nanos::new(first.saturating_sub(now).max(1)),
                })
            }
        }
    }

    /// Leases held at `now` (expired ones are not counted).
    pub fn in_use(&self, now: Nanos) -> u32 {
        self.slots.len_u32() - self.available(now)
    }

    /// Leases free at `now`.
    pub fn available(&self, now: Nanos) -> u32 {
        u32::try_from(self.slots.scan(now.as_u64()).free).unwrap_or(0)
    }

    /// The limit, `N`.
    pub fn max(&self) -> u32 {
        self.slots.len_u32()
    }
}

/// Deadlines at or past 2^63 ns (292 years) mean "for ever" (`u64::MAX`):
/// the top bit marks released slots.
#[inline]
fn clamp(deadline: u64) -> u64 {
    if deadline >= RELEASED {
        u64::MAX
    } else {
        deadline
    }
}

impl<const N: usize> Default for LeaseSemaphore<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// One lease of a [`LeaseSemaphore`]: released on drop, or at its deadline
/// if never dropped.
#[derive(Debug)]
#[must_use = "dropping a lease releases it at once"]
pub struct Lease<'a, const N: usize> {
    slots: &'a Slots<N, true>,
    idx: usize,
    deadline: u64,
    /// The deadline of the value this lease's slot held before (see
    /// `Slots::take_one`): what a lease for ever leaves as its marker.
    floor: u64,
}

impl<const N: usize> Lease<'_, N> {
    /// When this lease expires if not dropped first.
    pub fn deadline(&self) -> Nanos {
        Nanos::new(self.deadline)
    }

    /// Moves the deadline later (a heartbeat from a long scan; a deadline
    /// before the current one keeps the current one — drop the lease to end
    /// it early). Fails with
    /// [`LeaseError::Lost`] if the lease expired and another holder took the
    /// slot, and with [`LeaseError::DeadlineNotAfterNow`] for a deadline not
    /// after `now`.
    ///
    /// ```
    /// use tollgate_core::{LeaseSemaphore, Nanos};
    ///
    /// let sem = LeaseSemaphore::<1>::new();
    /// let mut lease = sem.try_acquire_until(Nanos::ZERO, Nanos::from_secs(10)).unwrap();
    /// lease.renew(Nanos::from_secs(9), Nanos::from_secs(20)).unwrap();
    /// assert_eq!(sem.in_use(Nanos::from_secs(15)), 1);
    /// ```
    pub fn renew(&mut self, now: Nanos, deadline: Nanos) -> Result<(), LeaseError> {
        let deadline = deadline.as_u64();
        if deadline <= now.as_u64() {
            return Err(LeaseError::DeadlineNotAfterNow);
        }
        // Never earlier than the current deadline: a slot's deadlines only
        // increase, so no stale holder can ever match this one.
        let deadline = clamp(deadline.max(self.deadline));
        if self.slots.replace(self.idx, self.deadline, deadline) {
            self.deadline = deadline;
            Ok(())
        } else {
            Err(LeaseError::Lost)
        }
    }

    /// Keeps the slot taken until the deadline, without releasing it now.
    pub fn forget(self) {
        core::mem::forget(self);
    }
}

impl<const N: usize> Drop for Lease<'_, N> {
    fn drop(&mut self) {
        // If the lease expired and the slot was taken again, the CAS fails and
        // the new holder keeps it.
        let _ = self.slots.release(self.idx, self.deadline, self.floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: over the latest released marker a slot took the
    /// deadline 2^63 − 1, which expires, so a slot could hold it twice in a
    /// row: the stale holder's drop freed the next holder's slot and N + 1
    /// leases were live. It now takes "for ever" there.
    #[test]
    fn the_latest_deadline_before_for_ever_cannot_be_held_twice() {
        let sem = LeaseSemaphore::<1>::new();
        let (t, d) = (Nanos::new, Nanos::new((1 << 63) - 1));
        let a = sem.try_acquire_until(t(0), d).unwrap();
        // If A's deadline expired at d, C could take the slot at d, give it
        // back, and D (clock stepped back) take it with A's deadline.
        if let Ok(c) = sem.try_acquire_until(d, Nanos::MAX) {
            drop(c);
        }
        let d_lease = sem.try_acquire_until(t(0), d);
        drop(a); // stale if D holds the slot: must not free it
        let e = sem.try_acquire_until(t(0), t(10));
        assert!(d_lease.is_err() || e.is_err(), "two leases of one");
        drop((d_lease, e));

        // The same through the marker a lease for ever leaves: B, taken
        // over it, must not get a deadline that expires.
        let sem = LeaseSemaphore::<1>::new();
        drop(sem.try_acquire_until(t(0), Nanos::MAX).unwrap());
        let b = sem.try_acquire_until(t(0), t(10)).unwrap();
        if let Ok(c) = sem.try_acquire_until(d, Nanos::MAX) {
            drop(c);
        }
        let d_lease = sem.try_acquire_until(t(0), t(10));
        drop(b);
        let e = sem.try_acquire_until(t(0), t(10));
        assert!(d_lease.is_err() || e.is_err(), "two leases of one (marker)");
    }

    /// Found by review of the fix above: with the latest marker after a
    /// lease for ever, every later lease of that slot became one for ever
    /// too (its deadline had to pass the marker), so a crashed holder of a
    /// 10 ns lease kept the slot for good. A lease for ever now marks the
    /// deadline it replaced.
    #[test]
    fn a_timed_lease_after_one_for_ever_still_expires() {
        let sem = LeaseSemaphore::<1>::new();
        let t = Nanos::new;
        let old = sem.try_acquire_until(t(0), t(5)).unwrap();
        // `old` expires; the slot goes to a lease for ever, then back.
        drop(sem.try_acquire_until(t(5), Nanos::MAX).unwrap());
        let timed = sem.try_acquire_until(t(5), t(15)).unwrap();
        assert!(timed.deadline() > t(5) && timed.deadline() <= t(15));
        timed.forget(); // crashed
        assert_eq!(sem.in_use(t(14)), 1);
        assert_eq!(sem.available(t(15)), 1);
        // The stale `old` cannot free anyone's slot.
        let next = sem.try_acquire_until(t(15), t(30)).unwrap();
        drop(old);
        assert_eq!(sem.in_use(t(20)), 1);
        drop(next);
        assert_eq!(sem.available(t(20)), 1);
    }

    /// Found by the `semaphore` fuzz target: an expired lease whose slot was
    /// re-taken, given back, and taken again after the clock stepped back
    /// with the *same* deadline freed the new holder's slot on drop.
    #[test]
    fn stale_lease_cannot_free_a_slot_retaken_with_its_deadline() {
        let sem = LeaseSemaphore::<4>::new();
        let t = Nanos::new;
        let a = sem.try_acquire_until(t(100), t(110)).unwrap();
        let others: [_; 3] =
            core::array::from_fn(|_| sem.try_acquire_until(t(110), t(200)).unwrap());
        let e = sem.try_acquire_until(t(110), t(150)).unwrap(); // A's slot, expired
        drop(e);
        // The clock steps back; F asks for A's deadline and gets a later one
        // (E's deadline is not pushed onto it: E is gone).
        let f = sem.try_acquire_until(t(105), t(110)).unwrap();
        assert_eq!(f.deadline(), t(111));
        drop(a); // stale: must not free F's slot
        assert_eq!(sem.in_use(t(105)), 4);
        assert!(matches!(
            sem.try_acquire_until(t(105), t(110)),
            Err(LeaseError::Full {
                in_use: 4,
                max: 4,
                ..
            })
        ));
        drop((others, f));
        assert_eq!(sem.available(t(105)), 4);
    }

    /// A lease given back early does not lend its deadline to the next one
    /// (found in the tenth session's review: the next 10 s lease of the slot
    /// got 3 600 s and a crashed holder kept the slot an hour).
    #[test]
    fn an_early_release_does_not_lengthen_the_next_lease() {
        let sem = LeaseSemaphore::<1>::new();
        let s = Nanos::from_secs;
        drop(sem.try_acquire_until(s(0), s(3_600)).unwrap());
        let short = sem.try_acquire_until(s(1), s(11)).unwrap();
        assert_eq!(short.deadline(), s(11));
        short.forget(); // the holder crashes
        assert!(sem.try_acquire_until(s(11), s(21)).is_ok());
    }

    /// A lease given back with a deadline near 2^63 ns no longer makes every
    /// later lease of its slot one for ever.
    #[test]
    fn a_lease_near_the_deadline_limit_given_back_leaves_later_ones_timed() {
        let sem = LeaseSemaphore::<1>::new();
        let t = Nanos::new;
        drop(sem.try_acquire_until(t(0), t(i64::MAX as u64)).unwrap());
        for start in [100u64, 200, 300] {
            let l = sem.try_acquire_until(t(start), t(start + 10)).unwrap();
            assert_eq!(l.deadline(), t(start + 10));
        }
        sem.try_acquire_until(t(400), t(410)).unwrap().forget();
        assert!(sem.try_acquire_until(t(410), t(420)).is_ok());
    }

    #[test]
    fn renew_never_moves_a_deadline_earlier() {
        let sem = LeaseSemaphore::<1>::new();
        let mut l = sem.try_acquire_until(Nanos::ZERO, Nanos::new(100)).unwrap();
        l.renew(Nanos::new(10), Nanos::new(50)).unwrap();
        assert_eq!(l.deadline(), Nanos::new(100));
        l.renew(Nanos::new(10), Nanos::new(300)).unwrap();
        assert_eq!(l.deadline(), Nanos::new(300));
        assert_eq!(sem.in_use(Nanos::new(299)), 1);
    }

    #[test]
    fn expired_lease_is_reused_and_old_holder_cannot_free_it() {
        let sem = LeaseSemaphore::<1>::new();
        let old = sem.try_acquire_until(Nanos::ZERO, Nanos::new(10)).unwrap();
        assert!(
            sem.try_acquire_until(Nanos::new(9), Nanos::new(20))
                .is_err()
        );
        let new = sem
            .try_acquire_until(Nanos::new(10), Nanos::new(20))
            .unwrap();
        drop(old); // must not free the new holder's slot
        assert_eq!(sem.in_use(Nanos::new(11)), 1);
        drop(new);
        assert_eq!(sem.in_use(Nanos::new(11)), 0);
    }

    #[test]
    fn full_reports_counts_and_wait() {
        let sem = LeaseSemaphore::<2>::new();
        let _a = sem.try_acquire_until(Nanos::ZERO, Nanos::new(50)).unwrap();
        let _b = sem.try_acquire_until(Nanos::ZERO, Nanos::new(30)).unwrap();
        assert_eq!(
            sem.try_acquire_until(Nanos::new(10), Nanos::new(100)).err(),
            Some(LeaseError::Full {
                in_use: 2,
                max: 2,
                retry_after: Nanos::new(20)
            })
        );
    }

    #[test]
    fn renew_after_loss_fails() {
        let sem = LeaseSemaphore::<1>::new();
        let mut a = sem.try_acquire_until(Nanos::ZERO, Nanos::new(10)).unwrap();
        let _b = sem
            .try_acquire_until(Nanos::new(10), Nanos::new(20))
            .unwrap();
        assert_eq!(
            a.renew(Nanos::new(11), Nanos::new(30)),
            Err(LeaseError::Lost)
        );
        assert_eq!(
            a.renew(Nanos::new(11), Nanos::new(11)),
            Err(LeaseError::DeadlineNotAfterNow)
        );
    }

    #[test]
    fn saturated_deadline_never_expires() {
        let sem = LeaseSemaphore::<1>::new();
        let l = sem.try_acquire_until(Nanos::ZERO, Nanos::MAX).unwrap();
        l.forget();
        assert_eq!(sem.in_use(Nanos::MAX), 1);
    }
}
