//! `N` "busy-until" slots: the engine shared by [`SlidingLog`] and
//! [`LeaseSemaphore`].
//!
//! Each slot holds the instant until which it is taken (`0`: never taken). A
//! slot is free at `now` when its value is `<= now`, except `u64::MAX`, which
//! means "taken for ever" (a deadline that saturated); taking it is one CAS from
//! the value seen to the new deadline, so two callers can never both take the
//! same slot, and every slot is taken by at most one holder at a time.
//!
//! * For the sliding log the deadline is `admission time + W`: a slot can be
//!   reused only once its previous admission has left the window, so within
//!   any window `(t - W, t]` each slot hosts at most one admission — at most
//!   `N` in all, for any interleaving and any order of times.
//! * For leases the deadline is the lease's expiry, and a lease given back
//!   early leaves a *released marker* (`RELEASED | its floor`: the deadline
//!   of the value it had replaced, at or above every earlier holder's)
//!   instead of `0` (`Slots<N, true>`). The next holder's deadline is made
//!   later than the marked one, so a stale holder (its lease expired, the
//!   slot re-taken and given back, the clock stepped back) can never match
//!   the current holder's value when it releases or renews: every deadline a
//!   slot takes is later than every earlier holder's still alive. The lease
//!   given back is gone, so its own deadline is not marked: the next lease
//!   gets the deadline it asks for unless a stale holder's is as late.
//!   Lease deadlines are below `RELEASED` (2^63 ns, 292 years) or `u64::MAX`
//!   (for ever). Found by the `semaphore` fuzz target.
//!
//! # Memory ordering
//!
//! Taking a slot is a CAS with `Acquire` on success and releasing it a store
//! or CAS with `Release`: a lease guards a resource, so what the previous
//! holder did before releasing happens-before what the next holder does after
//! taking the slot. Counting scans use `Relaxed` loads: their results are
//! read-outs (remaining, retry-after) and never the basis of a write except
//! through a CAS, which re-checks the value it replaces.
//!
//! [`SlidingLog`]: crate::SlidingLog
//! [`LeaseSemaphore`]: crate::LeaseSemaphore

use crate::sync::{AtomicU64, Ordering};

/// The bit that marks a lease given back early (`Slots<N, true>` only).
pub(crate) const RELEASED: u64 = 1 << 63;

/// What one scan of the slots saw at some `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Slots with `until <= now`.
    pub free: usize,
    /// The latest `until` among taken slots (`now` if none is taken).
    pub last_until: u64,
    /// The earliest `until` among taken slots (`None` if none is taken).
    pub first_until: Option<u64>,
}

/// `MARKERS`: leases, whose early releases leave a released marker (see the
/// module docs); `false` for the sliding log, whose values are plain times.
#[derive(Debug)]
pub(crate) struct Slots<const N: usize, const MARKERS: bool = false> {
    until: [AtomicU64; N],
    /// Where the next search for a free slot starts. Only a hint: any value
    /// is correct, a good one makes the search O(1) when time is monotone.
    hint: AtomicU64,
}

impl<const N: usize, const MARKERS: bool> Slots<N, MARKERS> {
    /// Whether a slot holding `v` is free at `now`. `u64::MAX` is a deadline
    /// that saturated: never free, not even at `now == u64::MAX`. With
    /// markers, a released marker is free.
    #[inline]
    fn is_free(v: u64, now: u64) -> bool {
        v != u64::MAX && (v <= now || (MARKERS && v & RELEASED != 0))
    }

    /// The value a taker stores over `v` for a deadline `until`: `until`,
    /// except over a released marker, where it must be later than the
    /// marker's deadline (so it is later than every earlier holder's that
    /// may still be alive).
    #[inline]
    fn taken_value(v: u64, until: u64) -> u64 {
        if MARKERS && v & RELEASED != 0 {
            let after = (v & !RELEASED) + 1;
            // The latest marker (deadline 2^63 − 2) gives "for ever": a
            // deadline of 2^63 − 1 here could expire and be taken over the
            // same marker again, equal to a stale holder's (a new deadline
            // must pass every stale holder's).
            if after >= RELEASED - 1 {
                u64::MAX
            } else {
                until.max(after)
            }
        } else {
            until
        }
    }

    const NON_EMPTY: () = assert!(
        N > 0 && N <= u32::MAX as usize,
        "N must be between 1 and u32::MAX"
    );

    #[cfg(not(tollgate_loom))]
    pub(crate) const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::NON_EMPTY;
        Slots {
            until: [const { AtomicU64::new(0) }; N],
            hint: AtomicU64::new(0),
        }
    }

    #[cfg(tollgate_loom)]
    pub(crate) fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::NON_EMPTY;
        Slots {
            until: core::array::from_fn(|_| AtomicU64::new(0)),
            hint: AtomicU64::new(0),
        }
    }

    /// `N` as a `u32` (checked at compile time by `NON_EMPTY`).
    #[inline]
    pub(crate) fn len_u32(&self) -> u32 {
        u32::try_from(N).unwrap_or(u32::MAX)
    }

    #[inline]
    fn start(&self) -> usize {
        // Relaxed: a hint, any value is correct.
        let h = self.hint.load(Ordering::Relaxed);
        usize::try_from(h % N as u64).unwrap_or(0)
    }

    #[inline]
    fn set_hint(&self, next: usize) {
        // Relaxed: a hint, any value is correct.
        self.hint.store((next % N) as u64, Ordering::Relaxed);
    }

    /// Counts free slots and the extreme deadlines of taken ones.
    pub(crate) fn scan(&self, now: u64) -> Scan {
        let mut s = Scan {
            free: 0,
            last_until: now,
            first_until: None,
        };
        for slot in &self.until {
            // Relaxed: a read-out, see the module's "Memory ordering".
            let v = slot.load(Ordering::Relaxed);
            if Self::is_free(v, now) {
                s.free += 1;
            } else {
                s.last_until = s.last_until.max(v);
                s.first_until = Some(s.first_until.map_or(v, |f| f.min(v)));
            }
        }
        s
    }

    /// The `k`-th earliest deadline among slots taken at `now` (`k >= 1`):
    /// when `k` more slots will have come free. `None` if fewer are taken.
    /// O(N × distinct deadlines); used only on denials.
    pub(crate) fn kth_until(&self, now: u64, k: usize) -> Option<u64> {
        // Every taken deadline <= `counted` has been counted in `seen`.
        let mut counted: Option<u64> = None;
        let mut seen = 0;
        loop {
            let mut next: Option<u64> = None;
            let mut ties = 0;
            for slot in &self.until {
                // Relaxed: a read-out.
                let v = slot.load(Ordering::Relaxed);
                if Self::is_free(v, now) || counted.is_some_and(|c| v <= c) {
                    continue;
                }
                match next {
                    Some(n) if v > n => {}
                    Some(n) if v == n => ties += 1,
                    _ => {
                        next = Some(v);
                        ties = 1;
                    }
                }
            }
            let n = next?;
            seen += ties;
            if seen >= k {
                return Some(n);
            }
            counted = Some(n);
        }
    }

    /// Takes one slot free at `now`, setting it to `until` (with markers,
    /// possibly later: see `taken_value`). Returns its index, the value
    /// stored and the *floor* — the deadline of the value it replaced, at or
    /// above every earlier holder's (pass it to `release`) — or `None` if
    /// every slot is taken.
    pub(crate) fn take_one(&self, now: u64, until: u64) -> Option<(usize, u64, u64)> {
        let start = self.start();
        for i in 0..N {
            let idx = (start + i) % N;
            let slot = &self.until[idx];
            // Relaxed: the CAS below re-checks the value it replaces.
            let mut v = slot.load(Ordering::Relaxed);
            while Self::is_free(v, now) {
                let value = Self::taken_value(v, until);
                // Acquire on success: pairs with the Release that freed the
                // slot (lease release), see the module docs.
                match slot.compare_exchange_weak(v, value, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => {
                        self.set_hint(idx + 1);
                        let floor = if MARKERS { v & !RELEASED } else { v };
                        return Some((idx, value, floor));
                    }
                    Err(actual) => v = actual,
                }
            }
        }
        None
    }

    /// Takes `n` slots free at `now` (all or nothing), setting them to
    /// `until`. On failure, slots taken so far are given back.
    pub(crate) fn take(&self, now: u64, until: u64, n: usize) -> bool {
        let mut taken = 0;
        while taken < n {
            if self.take_one(now, until).is_none() {
                // Every slot set to `until` was taken for an admission at the
                // same instant; which of them we free changes nothing.
                self.free_matching(until, taken, now);
                return false;
            }
            taken += 1;
        }
        true
    }

    /// Frees up to `n` slots whose deadline is exactly `until`, setting them
    /// to `to`. Returns how many were freed.
    pub(crate) fn free_matching(&self, until: u64, n: usize, to: u64) -> usize {
        // `u64::MAX` would mean "taken for ever": the latest free value is one
        // below it.
        let to = to.min(u64::MAX - 1);
        let mut freed = 0;
        for slot in &self.until {
            if freed == n {
                break;
            }
            // Release: pairs with the Acquire of the next taker.
            if slot
                .compare_exchange(until, to, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                freed += 1;
            }
        }
        freed
    }

    /// Frees up to `n` slots taken at `now` whose deadline is at most
    /// `max_until`, earliest deadline first, setting them to `now`. Returns
    /// how many were freed.
    ///
    /// Freeing the earliest deadline gives back the least capacity-time: any
    /// other choice would free a slot that stays taken longer. `max_until`
    /// keeps a refund off slots taken after the refunded charge (another
    /// thread, with a fresher clock): those are not the refunder's to free.
    pub(crate) fn free_earliest(&self, now: u64, n: usize, max_until: u64) -> usize {
        let n = n.min(N);
        let mut freed = 0;
        while freed < n {
            let Some(first) = self.scan(now).first_until else {
                break;
            };
            if first > max_until {
                break;
            }
            freed += self.free_matching(first, 1, now);
        }
        freed
    }

    /// Frees slot `idx` if it still holds `until` (a lease ending), leaving
    /// a released marker with markers, `0` without. `floor` is what
    /// `take_one` returned for this holder.
    pub(crate) fn release(&self, idx: usize, until: u64, floor: u64) -> bool {
        let to = if MARKERS {
            // The marker must be at or above every *other* holder's deadline
            // that may still be alive (stale holders, all at or below this
            // holder's floor); this one's own is gone with it, so the floor
            // is marked, never the deadline. Marking the deadline pushed it
            // onto the next holder: a 1 h lease given back after a second
            // made the next 10 s lease of its slot last an hour (held that
            // long if its holder crashed), and one given back with a deadline
            // near 2^63 ns made every later lease of the slot one for ever.
            RELEASED | floor.min(RELEASED - 2)
        } else {
            0
        };
        // Release: pairs with the Acquire of the next taker.
        self.until[idx]
            .compare_exchange(until, to, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Moves slot `idx` from `until` to `to` if it still holds `until`.
    pub(crate) fn replace(&self, idx: usize, until: u64, to: u64) -> bool {
        // AcqRel: keeps the holder's ownership chain intact, as in `take_one`
        // and `release`.
        self.until[idx]
            .compare_exchange(until, to, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Frees every slot.
    pub(crate) fn reset(&self) {
        for slot in &self.until {
            // Release: as in `release`.
            slot.store(0, Ordering::Release);
        }
    }
}
