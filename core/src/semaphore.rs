//! [`Semaphore`]: a concurrency limit in one atomic word.

use core::fmt;

use crate::sync::{AtomicU64, Ordering};

/// A concurrency limit: at most `max` permits held at once.
///
/// S4E's "5 concurrent SSE connections", BlockSecOps' "1/3/10/25 concurrent
/// scans", Slim.io's "burst = concurrent requests". One `AtomicU64` holds the
/// number of permits in use (low 32 bits) and how many of them were
/// [forgotten](Permit::forget) (high 32 bits); a [`Permit`] gives its permits
/// back when dropped, and [`Semaphore::release`] can only give back forgotten
/// ones, so no misuse can make the count wrap or drop below what guards hold.
///
/// Per-holder deadlines (so a holder that crashes cannot keep a permit for
/// ever) do not fit in one word; [`LeaseSemaphore`](crate::LeaseSemaphore)
/// keeps one deadline per slot for that.
///
/// # Memory ordering
///
/// Taking permits is a CAS with `Acquire` on success, giving them back a
/// `fetch_sub`/CAS with `Release`: what a holder did while holding a permit
/// happens-before what the next holder does after acquiring it, as with a
/// mutex. Read-outs (`in_use`, `available`) are `Relaxed`.
///
/// # Examples
///
/// ```
/// use tollgate_core::{AcquireError, Semaphore};
///
/// static SSE: Semaphore = Semaphore::new(5);
///
/// let streams: Vec<_> = (0..5).map(|_| SSE.try_acquire(1).unwrap()).collect();
/// assert_eq!(
///     SSE.try_acquire(1).err(),
///     Some(AcquireError::Full { in_use: 5, max: 5, requested: 1 })
/// );
/// drop(streams); // every stream ended
/// assert_eq!(SSE.available(), 5);
/// ```
#[derive(Debug)]
pub struct Semaphore {
    in_use: AtomicU64,
    max: u32,
}

/// Why permits could not be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AcquireError {
    /// Not enough free permits now; some holder must release first.
    Full {
        /// Permits held now (BlockSecOps `current_scans`).
        in_use: u32,
        /// The limit (BlockSecOps `max_scans`).
        max: u32,
        /// Permits asked for.
        requested: u32,
    },
    /// More permits asked for than the limit: this can never succeed.
    TooMany {
        /// Permits asked for.
        requested: u32,
        /// The limit.
        max: u32,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Full {
                in_use,
                max,
                requested,
            } => write!(
                f,
                "{in_use} of {max} concurrent permits in use, {requested} more requested; \
                 wait for a holder to finish"
            ),
            AcquireError::TooMany { requested, max } => write!(
                f,
                "{requested} permits requested but at most {max} can ever be held; \
                 request fewer or raise the limit"
            ),
        }
    }
}

impl core::error::Error for AcquireError {}

/// Why permits could not be released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReleaseError {
    /// Permits asked to release.
    pub requested: u32,
    /// Forgotten permits at the time (the most that can be released).
    pub forgotten: u32,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot release {} permits: only {} were forgotten (permits still held by a \
             guard are released by dropping it)",
            self.requested, self.forgotten
        )
    }
}

/// Low half of the word: permits in use (held by guards or forgotten).
const IN_USE_MASK: u64 = 0xFFFF_FFFF;
/// High half of the word: forgotten permits, `<=` in use.
const FORGOTTEN_SHIFT: u32 = 32;

/// `(in_use, forgotten)` of a state word.
#[inline]
const fn unpack(word: u64) -> (u64, u64) {
    (word & IN_USE_MASK, word >> FORGOTTEN_SHIFT)
}

impl core::error::Error for ReleaseError {}

/// The acquire decision: the new state word, or why not. Pure.
#[inline]
const fn acquire(word: u64, n: u32, max: u32) -> Result<u64, AcquireError> {
    let (in_use, _) = unpack(word);
    if n > max {
        return Err(AcquireError::TooMany { requested: n, max });
    }
    let total = in_use + n as u64;
    if total > max as u64 {
        // in_use <= max at all times, so it fits in u32.
        #[allow(clippy::cast_possible_truncation)]
        let in_use = in_use as u32;
        return Err(AcquireError::Full {
            in_use,
            max,
            requested: n,
        });
    }
    // total <= max <= u32::MAX: the in-use half does not carry over.
    Ok(word + n as u64)
}

impl Semaphore {
    /// A semaphore with `max` permits, all free. `max == 0` refuses
    /// everything but zero-permit requests.
    #[cfg(not(tollgate_loom))]
    pub const fn new(max: u32) -> Semaphore {
        Semaphore {
            in_use: AtomicU64::new(0),
            max,
        }
    }

    /// A semaphore with `max` permits (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(max: u32) -> Semaphore {
        Semaphore {
            in_use: AtomicU64::new(0),
            max,
        }
    }

    /// Takes `n` permits, all or nothing. A refusal writes nothing;
    /// `n == 0` always succeeds with an empty permit.
    pub fn try_acquire(&self, n: u32) -> Result<Permit<'_>, AcquireError> {
        // Relaxed: the CAS below re-checks the value.
        let mut cur = self.in_use.load(Ordering::Relaxed);
        loop {
            let new = acquire(cur, n, self.max)?;
            if n == 0 {
                return Ok(Permit { sem: self, n: 0 });
            }
            // Acquire on success: pairs with the Release in `release_n`.
            match self
                .in_use
                .compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Ok(Permit { sem: self, n }),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back `n` permits that a [`Permit::forget`] kept. Releasing more
    /// than are in use is an error and changes nothing.
    ///
    /// ```
    /// use tollgate_core::Semaphore;
    ///
    /// let s = Semaphore::new(2);
    /// s.try_acquire(2).unwrap().forget();
    /// assert_eq!(s.in_use(), 2);
    /// s.release(2).unwrap();
    /// assert!(s.release(1).is_err());
    /// assert_eq!(s.in_use(), 0);
    /// ```
    pub fn release(&self, n: u32) -> Result<(), ReleaseError> {
        // Relaxed: the CAS below re-checks the value.
        let mut cur = self.in_use.load(Ordering::Relaxed);
        loop {
            let (_, forgotten) = unpack(cur);
            if u64::from(n) > forgotten {
                return Err(ReleaseError {
                    requested: n,
                    forgotten: u32::try_from(forgotten).unwrap_or(u32::MAX),
                });
            }
            // forgotten <= in_use, so both halves stay >= 0.
            let new = cur - u64::from(n) - (u64::from(n) << FORGOTTEN_SHIFT);
            // Release: pairs with the Acquire in `try_acquire`.
            match self
                .in_use
                .compare_exchange_weak(cur, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Permits held now.
    pub fn in_use(&self) -> u32 {
        // Relaxed: a read-out.
        let (in_use, _) = unpack(self.in_use.load(Ordering::Relaxed));
        u32::try_from(in_use).unwrap_or(u32::MAX)
    }

    /// Permits free now.
    pub fn available(&self) -> u32 {
        self.max.saturating_sub(self.in_use())
    }

    /// The limit.
    pub const fn max(&self) -> u32 {
        self.max
    }
}

/// Permits of a [`Semaphore`], given back on drop.
#[derive(Debug)]
#[must_use = "dropping a permit releases it at once"]
pub struct Permit<'a> {
    sem: &'a Semaphore,
    n: u32,
}

impl Permit<'_> {
    /// How many permits this holds.
    pub fn count(&self) -> u32 {
        self.n
    }

    /// Keeps the permits taken without a guard; give them back later with
    /// [`Semaphore::release`]. Returns how many were kept.
    pub fn forget(self) -> u32 {
        let n = self.n;
        // Relaxed: moves permits from "held by a guard" to "forgotten"
        // without changing how many are in use; `release` re-checks with a
        // CAS. forgotten <= in_use <= u32::MAX, so the high half cannot
        // overflow.
        self.sem
            .in_use
            .fetch_add(u64::from(n) << FORGOTTEN_SHIFT, Ordering::Relaxed);
        core::mem::forget(self);
        n
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            // Release: pairs with the Acquire in `try_acquire`. A permit's
            // count is in use until this point, so this cannot underflow.
            self.sem
                .in_use
                .fetch_sub(u64::from(self.n), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_nothing_and_distinct_errors() {
        let s = Semaphore::new(3);
        let a = s.try_acquire(2).unwrap();
        assert_eq!(
            s.try_acquire(2).err(),
            Some(AcquireError::Full {
                in_use: 2,
                max: 3,
                requested: 2
            })
        );
        assert_eq!(s.in_use(), 2);
        assert_eq!(
            s.try_acquire(4).err(),
            Some(AcquireError::TooMany {
                requested: 4,
                max: 3
            })
        );
        let b = s.try_acquire(1).unwrap();
        assert_eq!(s.available(), 0);
        drop(a);
        assert_eq!(s.available(), 2);
        assert_eq!(b.forget(), 1);
        assert_eq!(s.in_use(), 1);
        s.release(1).unwrap();
        assert_eq!(
            s.release(1),
            Err(ReleaseError {
                requested: 1,
                forgotten: 0
            })
        );
        // Permits held by a guard cannot be released behind its back.
        let _c = s.try_acquire(2).unwrap();
        assert!(s.release(1).is_err());
        assert_eq!(s.in_use(), 2);
    }

    #[test]
    fn extremes() {
        let s = Semaphore::new(u32::MAX);
        s.try_acquire(u32::MAX).unwrap().forget();
        assert!(s.try_acquire(1).is_err());
        assert!(s.try_acquire(0).is_ok());
        s.release(u32::MAX).unwrap();
        let zero = Semaphore::new(0);
        assert!(zero.try_acquire(0).is_ok());
        assert!(matches!(
            zero.try_acquire(1),
            Err(AcquireError::TooMany { .. })
        ));
    }
}
