//! [`KeyedSemaphore`]: a concurrency limit per key — S4E's 5 concurrent SSE
//! connections per API key, BlockSecOps' 1/3/10/25 concurrent scans per plan.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use tollgate_core::Nanos;

use super::{KeyedError, KeyedLimiter, KeyedState, Mode, WhenFull};

/// The per-key state is the number of permits in use; `0` (none) is fresh.
#[derive(Clone, Copy, Debug, Default)]
pub struct Concurrency;

impl KeyedState for Concurrency {
    #[inline]
    fn is_fresh(&self, state: u64, _now: Nanos) -> bool {
        state == 0
    }

    #[inline]
    fn distance_from_fresh(&self, state: u64, _now: Nanos) -> u64 {
        state
    }

    /// A count taken from a slot that changed hands mid-acquire is given
    /// back exactly: the new key's count includes it, so it stays above 0 and
    /// the slot keeps its key until it is given back.
    #[inline]
    fn undo(&self, current: u64, before: u64, after: u64) -> Option<u64> {
        current.checked_sub(after.checked_sub(before)?)
    }
}

/// Why a keyed permit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConcurrencyRefused {
    /// `in_use` permits of `max` are held for this key; one must be released
    /// first (BlockSecOps' `CONCURRENT_LIMIT` with `current_scans` /
    /// `max_scans`).
    Full {
        /// Permits held for this key.
        in_use: u32,
        /// The key's limit.
        max: u32,
    },
    /// More permits asked for at once than the key may ever hold.
    TooMany {
        /// Permits asked for.
        requested: u32,
        /// The key's limit.
        max: u32,
    },
    /// The store had no slot for a new key (capacity reached with every key
    /// holding permits).
    StoreFull,
}

impl fmt::Display for ConcurrencyRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConcurrencyRefused::Full { in_use, max } => {
                write!(
                    f,
                    "{in_use} of {max} concurrent slots in use; wait for one to end"
                )
            }
            ConcurrencyRefused::TooMany { requested, max } => write!(
                f,
                "{requested} concurrent slots requested but at most {max} are allowed"
            ),
            ConcurrencyRefused::StoreFull => {
                f.write_str("concurrency store is full; raise its capacity")
            }
        }
    }
}

impl std::error::Error for ConcurrencyRefused {}

/// Per-key concurrency limits in one fixed-capacity store (the same table as
/// [`KeyedLimiter`]: 16-byte slots, lock-free updates of tracked keys, a key
/// whose permits are all released frees its slot for others).
///
/// The limit comes with each call, so one store serves every plan.
///
/// ```
/// use tollgate::keyed::{ConcurrencyRefused, KeyedSemaphore};
///
/// let scans = KeyedSemaphore::new(10_000).unwrap();
/// let a = scans.try_acquire("org-1", 1, 1).unwrap(); // Free plan: 1 scan
/// assert_eq!(
///     scans.try_acquire("org-1", 1, 1).err(),
///     Some(ConcurrencyRefused::Full { in_use: 1, max: 1 })
/// );
/// drop(a);
/// assert_eq!(scans.in_use("org-1"), 0);
/// assert!(scans.try_acquire("org-1", 1, 1).is_ok());
/// ```
#[derive(Debug)]
pub struct KeyedSemaphore<S = ahash::RandomState> {
    table: KeyedLimiter<Concurrency, S>,
}

impl KeyedSemaphore<ahash::RandomState> {
    /// A store for `capacity` keys holding permits at once.
    pub fn new(capacity: usize) -> Result<Self, KeyedError> {
        Self::with_hasher(capacity, ahash::RandomState::new())
    }
}

impl<S: BuildHasher> KeyedSemaphore<S> {
    /// A store with the given hasher.
    pub fn with_hasher(capacity: usize, hasher: S) -> Result<Self, KeyedError> {
        Ok(KeyedSemaphore {
            table: KeyedLimiter::with_hasher(capacity, Concurrency, hasher)?
                .when_full(WhenFull::Deny),
        })
    }

    /// Takes `n` permits of `key`, whose limit is `max`, all or nothing.
    /// Released when the [`KeyedPermit`] drops.
    pub fn try_acquire<K: Hash + ?Sized>(
        &self,
        key: &K,
        max: u32,
        n: u32,
    ) -> Result<KeyedPermit<'_, S>, ConcurrencyRefused> {
        if n > max {
            return Err(ConcurrencyRefused::TooMany { requested: n, max });
        }
        let (fp, home) = self.table.locate(key);
        let step = |in_use: u64| {
            let total = in_use + u64::from(n);
            if total <= u64::from(max) {
                (Ok(()), if n == 0 { None } else { Some(total) })
            } else {
                let in_use = u32::try_from(in_use).unwrap_or(u32::MAX);
                (Err(ConcurrencyRefused::Full { in_use, max }), None)
            }
        };
        match self
            .table
            .transact_at(fp, home, Nanos::ZERO, Mode::Tighten, step)
        {
            Ok(Ok(())) => Ok(KeyedPermit {
                sem: self,
                fp,
                home,
                n,
            }),
            Ok(Err(refused)) => Err(refused),
            Err(_) => Err(ConcurrencyRefused::StoreFull),
        }
    }

    /// Permits of `key` in use.
    pub fn in_use<K: Hash + ?Sized>(&self, key: &K) -> u32 {
        let (fp, home) = self.table.locate(key);
        let step = |in_use: u64| (u32::try_from(in_use).unwrap_or(u32::MAX), None);
        match self
            .table
            .transact_at(fp, home, Nanos::ZERO, Mode::Tighten, step)
        {
            Ok(n) | Err(n) => n,
        }
    }

    fn release(&self, fp: u64, home: usize, n: u32) {
        let step = |in_use: u64| {
            if n == 0 || in_use == 0 {
                ((), None)
            } else {
                ((), Some(in_use.saturating_sub(u64::from(n))))
            }
        };
        // A key holding permits is never fresh, so its slot cannot have been
        // handed over: the release always finds it. Loosening: under the
        // slot's bucket lock.
        let _ = self
            .table
            .transact_at(fp, home, Nanos::ZERO, Mode::Loosen, step);
    }
}

/// Permits of one key in a [`KeyedSemaphore`], released on drop.
#[must_use = "dropping a permit releases it at once"]
pub struct KeyedPermit<'a, S: BuildHasher = ahash::RandomState> {
    sem: &'a KeyedSemaphore<S>,
    fp: u64,
    home: usize,
    n: u32,
}

impl<S: BuildHasher> KeyedPermit<'_, S> {
    /// How many permits this holds.
    pub fn count(&self) -> u32 {
        self.n
    }
}

impl<S: BuildHasher> fmt::Debug for KeyedPermit<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPermit").field("n", &self.n).finish()
    }
}

impl<S: BuildHasher> Drop for KeyedPermit<'_, S> {
    fn drop(&mut self) {
        self.sem.release(self.fp, self.home, self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_key_limits_with_per_call_max() {
        let s = KeyedSemaphore::new(100).unwrap();
        let held: Vec<_> = (0..5)
            .map(|_| s.try_acquire("sse", 5, 1).unwrap())
            .collect();
        assert_eq!(
            s.try_acquire("sse", 5, 1).err(),
            Some(ConcurrencyRefused::Full { in_use: 5, max: 5 })
        );
        assert!(s.try_acquire("other", 5, 1).is_ok());
        drop(held);
        assert_eq!(s.in_use("sse"), 0);
        assert_eq!(
            s.try_acquire("sse", 3, 4).err(),
            Some(ConcurrencyRefused::TooMany {
                requested: 4,
                max: 3
            })
        );
    }

    #[test]
    fn released_keys_free_their_slots() {
        let s = KeyedSemaphore::new(8).unwrap();
        for round in 0..100u32 {
            let permits: Vec<_> = (0..8u32)
                .map(|k| s.try_acquire(&(round * 8 + k), 1, 1).unwrap())
                .collect();
            drop(permits);
        }
        assert_eq!(s.table.len(Nanos::ZERO), 0);
    }
}
