//! [`KeyedLimiter`]: one limiter per key (API key, client address,
//! organisation) for millions of keys, in a fixed-size table.
//!
//! # Design
//!
//! * **Fixed capacity, no allocation after construction.** The table is one
//!   boxed slice of buckets, allocated and zeroed by the constructor. A check
//!   never allocates, on any path.
//! * **Slots are 16 bytes**: a 64-bit key fingerprint and the algorithm's
//!   64-bit state (GCRA: the theoretical arrival time), in one 128-bit atomic,
//!   so a check of a tracked key is one load and one compare-and-swap of both
//!   together. Buckets of 8 slots are 128 bytes, aligned with
//!   [`CachePadded`] so threads on different keys rarely share a cache line.
//! * **Lock-free checks of tracked keys.** Finding a key is a scan of its
//!   probe window (at most 4 buckets, stopping at the first never-used slot);
//!   updating it is a CAS loop like [`Gcra::check_n`](crate::Gcra::check_n).
//! * **Inserting a new key** takes a one-byte lock of the key's home bucket for
//!   a few instructions (re-scan, claim a slot). That is what guarantees a key
//!   is never inserted twice (two budgets would admit twice as much); checks
//!   of keys already present never wait for it.
//! * **Lossless reclamation.** A slot whose state equals a fresh state
//!   (GCRA: `TAT <= now`, the bucket is full) can be claimed by another key:
//!   dropping it changes no decision, because a key that is not found starts
//!   from exactly that fresh state. The claim is one CAS of (fingerprint,
//!   state) together, so it cannot overwrite a concurrent update of the old
//!   key. No background thread, no sweep.
//!   Reclamation is lossless for a clock that does not go backwards
//!   ([`MonotonicClock`](crate::MonotonicClock)). If a caller's `now` goes back
//!   from `r` to `t < r` after a slot was handed over at `r`, the key that
//!   lost it starts fresh at `t`, which can buy it up to `r - t` of budget;
//!   the GCRA bound otherwise holds (`tests/model_keyed.rs`).
//! * **When no slot can be had** (every slot of the probe window holds a key
//!   that is not fresh), [`WhenFull`] decides, per store.
//!
//! # Fingerprints
//!
//! Keys are not stored: a key is identified by the 64-bit hash of its bytes
//! under a per-process random seed (`ahash::RandomState` by default). Two keys
//! collide only if their 64-bit hashes are equal; with `n` keys tracked at
//! once the probability that *any* two collide is below `n² / 2^65` —
//! 2.7 × 10⁻⁸ at 1 000 000 keys, 2.7 × 10⁻⁶ at 10 000 000. A collision makes
//! the two clients share one budget: each is admitted *less*, never more.
//! With a random seed an attacker cannot choose colliding keys.
//!
//! # Memory
//!
//! `capacity` keys at a load factor of 0.7: `⌈capacity / 5.6⌉` buckets of
//! 128 bytes plus 1 lock byte each — about 23 bytes per tracked key
//! ([`KeyedLimiter::memory_bytes`]).

use std::fmt;
use std::hash::{BuildHasher, Hash};

use crossbeam_utils::{Backoff, CachePadded};
use tollgate_core::{Decision, Nanos, Quota, Snapshot, gcra};

use crate::sync::{AtomicU8, AtomicU128, Ordering, backoff};

mod semaphore;
mod window;

pub use semaphore::{Concurrency, ConcurrencyRefused, KeyedPermit, KeyedSemaphore};
pub use window::{KeyedFixedWindow, KeyedSlidingWindow};

/// Slots per bucket: 8 × 16 bytes = 128 bytes, two cache lines, one
/// `CachePadded` unit on x86-64 and aarch64.
const SLOTS: usize = 8;
/// Buckets a key may live in, starting from its home bucket.
const PROBE: usize = 4;
/// Keys per 10 slots at full capacity (load factor 0.7).
const LOAD_TENTHS: usize = 7;

/// The per-key algorithm of a [`KeyedLimiter`]: a pure decision over one
/// `u64` of state, where **`0` is the fresh state** (what a key that was never
/// seen starts from).
///
/// ```
/// use tollgate::keyed::{KeyedAlgorithm, KeyedGcra, KeyedState};
/// use tollgate::{Nanos, Quota};
/// use std::num::NonZeroU32;
///
/// let q = Quota::per_second(NonZeroU32::new(1).unwrap());
/// let (d, state) = KeyedGcra.decide(&q, 0, Nanos::ZERO, 1);
/// assert!(d.is_allowed());
/// assert!(!KeyedGcra.is_fresh(state.unwrap(), Nanos::ZERO));
/// assert!(KeyedGcra.is_fresh(state.unwrap(), Nanos::from_secs(1)));
/// ```
pub trait KeyedAlgorithm: KeyedState {
    /// What each call brings along (plans differ per key, so one store
    /// serves every plan).
    type Quota;

    /// The decision for `cost` at `now` from `state`, and the state to store
    /// (`None`: store nothing — denials always return `None`).
    fn decide(
        &self,
        quota: &Self::Quota,
        state: u64,
        now: Nanos,
        cost: u32,
    ) -> (Decision, Option<u64>);

    /// The read-out of `state` at `now`.
    fn snapshot(&self, quota: &Self::Quota, state: u64, now: Nanos) -> Snapshot;

    /// The state after giving back `cost` at `now` (`None`: unchanged).
    fn refunded(&self, quota: &Self::Quota, state: u64, now: Nanos, cost: u32) -> Option<u64>;
}

/// What a [`KeyedLimiter`] needs to know about a per-key state to reclaim
/// slots: when it equals the fresh state `0`.
pub trait KeyedState {
    /// Whether `state` decides exactly like the fresh state `0` at `now` and
    /// later, so the slot holding it may be given to another key.
    fn is_fresh(&self, state: u64, now: Nanos) -> bool;

    /// How far `state` is from fresh at `now` (for
    /// [`WhenFull::EvictNearestFresh`]): smaller is closer.
    fn distance_from_fresh(&self, state: u64, now: Nanos) -> u64;
}

/// GCRA per key; the [`Quota`] comes with each call.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyedGcra;

impl KeyedAlgorithm for KeyedGcra {
    type Quota = Quota;

    #[inline]
    fn decide(&self, quota: &Quota, state: u64, now: Nanos, cost: u32) -> (Decision, Option<u64>) {
        gcra::decide(quota, state, now, cost)
    }

    #[inline]
    fn snapshot(&self, quota: &Quota, state: u64, now: Nanos) -> Snapshot {
        gcra::snapshot(quota, state, now)
    }

    #[inline]
    fn refunded(&self, quota: &Quota, state: u64, now: Nanos, cost: u32) -> Option<u64> {
        gcra::refunded(quota, state, now, cost)
    }
}

impl KeyedState for KeyedGcra {
    /// `TAT <= now`: the bucket is full, exactly like a key never seen.
    #[inline]
    fn is_fresh(&self, state: u64, now: Nanos) -> bool {
        state <= now.as_u64()
    }

    #[inline]
    fn distance_from_fresh(&self, state: u64, now: Nanos) -> u64 {
        state.saturating_sub(now.as_u64())
    }
}

/// What a [`KeyedLimiter`] does when a new key finds no free slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenFull {
    /// Refuse the request ([`KeyedDecision::StoreFull`]). The default: the
    /// store never admits anything it cannot account for. Size the store for
    /// the keys that are *active at once* (reclamation frees the rest), and
    /// watch for `StoreFull`.
    #[default]
    Deny,
    /// Admit as if the key were fresh, without tracking it
    /// ([`KeyedDecision::Untracked`]): fail-open, for stores where refusing a
    /// new client is worse than over-admitting one.
    AllowUntracked,
    /// Take the slot of the key in the probe window whose state is nearest to
    /// fresh. That key loses what it had used (it may then be admitted up to
    /// that much more); everyone else keeps their exact state.
    EvictNearestFresh,
}

/// The outcome of a keyed check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a rate-limit decision that is not inspected admits nothing"]
pub enum KeyedDecision {
    /// The key's limiter decided (the key is tracked, or a fresh key was
    /// refused and so needs no slot).
    Decided(Decision),
    /// The store was full and [`WhenFull::AllowUntracked`] admitted the
    /// request without tracking the key.
    Untracked(Decision),
    /// The store was full and [`WhenFull::Deny`] refused the request.
    StoreFull,
}

impl KeyedDecision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        match self {
            KeyedDecision::Decided(d) | KeyedDecision::Untracked(d) => d.is_allowed(),
            KeyedDecision::StoreFull => false,
        }
    }

    /// The limiter's decision, if one was made.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            KeyedDecision::Decided(d) | KeyedDecision::Untracked(d) => Some(*d),
            KeyedDecision::StoreFull => None,
        }
    }
}

/// Why a [`KeyedLimiter`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyedError {
    /// A capacity of zero keys.
    ZeroCapacity,
    /// The table for this capacity would not fit in memory addresses.
    CapacityTooLarge,
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyedError::ZeroCapacity => f.write_str("keyed store capacity must be at least 1 key"),
            KeyedError::CapacityTooLarge => {
                f.write_str("keyed store capacity is too large for this machine's address space")
            }
        }
    }
}

impl std::error::Error for KeyedError {}

type Bucket = CachePadded<[AtomicU128; SLOTS]>;

/// A sharded, fixed-capacity store of per-key limiters (see the
/// [module docs](self) for the design and its guarantees).
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use std::num::NonZeroU32;
/// use tollgate::keyed::{KeyedDecision, KeyedLimiter};
/// use tollgate::{Nanos, Quota};
///
/// let store = KeyedLimiter::new(100_000).unwrap();
/// let free = Quota::per_minute(NonZeroU32::new(2).unwrap());
/// let pro = Quota::per_minute(NonZeroU32::new(100).unwrap());
/// let now = Nanos::ZERO;
///
/// // Keys of any hashable type, no allocation per check.
/// assert!(store.check("key-alice", &pro, now).is_allowed());
/// let ip: IpAddr = "203.0.113.9".parse().unwrap();
/// assert!(store.check(&ip, &free, now).is_allowed());
/// assert!(store.check(&ip, &free, now).is_allowed());
/// match store.check(&ip, &free, now) {
///     KeyedDecision::Decided(d) => assert_eq!(d.retry_after(), Some(Nanos::from_secs(30))),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(store.peek("key-alice", &pro, now).remaining, 99);
/// ```
///
/// # Memory ordering
///
/// A slot's CAS uses `AcqRel` on success and loads use `Acquire`: the slot
/// publishes only itself, so `Relaxed` would keep the bound, but a key's
/// fingerprint and state travel together in the one word and the stronger
/// orderings cost nothing on x86-64, where this type's throughput is
/// measured. The insertion lock is a byte taken with an `Acquire` CAS and
/// released with a `Release` store, pairing with each other, so the re-scan
/// under the lock sees every slot claimed by the previous holder.
pub struct KeyedLimiter<A: KeyedState = KeyedGcra, S = ahash::RandomState> {
    buckets: Box<[Bucket]>,
    /// Home buckets: `buckets.len() - (PROBE - 1)`.
    homes: usize,
    locks: Box<[AtomicU8]>,
    hasher: S,
    algorithm: A,
    capacity: usize,
    when_full: WhenFull,
}

impl KeyedLimiter<KeyedGcra, ahash::RandomState> {
    /// A GCRA store for `capacity` keys at once, with a random hash seed and
    /// [`WhenFull::Deny`].
    pub fn new(capacity: usize) -> Result<Self, KeyedError> {
        Self::with_hasher(capacity, KeyedGcra, ahash::RandomState::new())
    }
}

impl<A: KeyedState, S: BuildHasher> KeyedLimiter<A, S> {
    /// A store for `capacity` keys with the given algorithm and hasher.
    ///
    /// ```
    /// use tollgate::keyed::{KeyedGcra, KeyedLimiter, WhenFull};
    ///
    /// let store = KeyedLimiter::with_hasher(1_000, KeyedGcra, ahash::RandomState::new())
    ///     .unwrap()
    ///     .when_full(WhenFull::EvictNearestFresh);
    /// assert!(store.capacity() >= 1_000);
    /// ```
    pub fn with_hasher(capacity: usize, algorithm: A, hasher: S) -> Result<Self, KeyedError> {
        if capacity == 0 {
            return Err(KeyedError::ZeroCapacity);
        }
        let slots = capacity
            .checked_mul(10)
            .ok_or(KeyedError::CapacityTooLarge)?
            .div_ceil(LOAD_TENTHS);
        let n = slots.div_ceil(SLOTS).max(PROBE);
        // `n` home buckets, plus `PROBE - 1` at the end so that every probe
        // window is one contiguous run (no wrap-around, no division).
        let total = n + PROBE - 1;
        total
            .checked_mul(std::mem::size_of::<Bucket>())
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or(KeyedError::CapacityTooLarge)?;
        let buckets: Box<[Bucket]> = std::iter::repeat_with(|| {
            CachePadded::new(std::array::from_fn(|_| AtomicU128::new(0)))
        })
        .take(total)
        .collect();
        let locks: Box<[AtomicU8]> = std::iter::repeat_with(|| AtomicU8::new(0))
            .take(n)
            .collect();
        Ok(KeyedLimiter {
            buckets,
            homes: n,
            locks,
            hasher,
            algorithm,
            capacity,
            when_full: WhenFull::default(),
        })
    }

    /// Sets what happens when a new key finds no free slot.
    pub fn when_full(mut self, policy: WhenFull) -> Self {
        self.when_full = policy;
        self
    }

    /// The number of keys the store was sized for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of the table (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets) + std::mem::size_of_val(&*self.locks)
    }

    /// Slots ever claimed by a key (O(table); for metrics, not the hot path).
    pub fn occupied(&self) -> usize {
        self.slots()
            .filter(|s| hi(s.load(Ordering::Relaxed)) != 0)
            .count()
    }

    /// Keys whose state is not fresh at `now`: the ones that matter
    /// (O(table)).
    pub fn len(&self, now: Nanos) -> usize {
        self.slots()
            .filter(|s| {
                let v = s.load(Ordering::Relaxed);
                hi(v) != 0 && !self.algorithm.is_fresh(lo(v), now)
            })
            .count()
    }

    /// Whether no key holds a non-fresh state at `now`.
    pub fn is_empty(&self, now: Nanos) -> bool {
        self.len(now) == 0
    }

    fn slots(&self) -> impl Iterator<Item = &AtomicU128> {
        self.buckets.iter().flat_map(|b| b.iter())
    }

    /// Fingerprint (never 0) and home bucket of a key.
    #[inline]
    fn locate<K: Hash + ?Sized>(&self, key: &K) -> (u64, usize) {
        let h = self.hasher.hash_one(key);
        let fp = if h == 0 { 1 } else { h };
        // Multiply-high maps the hash onto 0..len without a division; the
        // result is < len, so it fits a usize.
        #[allow(clippy::cast_possible_truncation)]
        let home = ((u128::from(h) * self.homes as u128) >> 64) as usize;
        (fp, home)
    }

    /// The slots of a key's probe window, in order.
    #[inline]
    fn window(&self, home: usize) -> impl Iterator<Item = &AtomicU128> {
        self.buckets[home..home + PROBE]
            .iter()
            .flat_map(|b| b.iter())
    }

    /// The slot holding `fp` and the word it held when found, or `None`
    /// (stopping at the first never-used slot: a key is always inserted
    /// before any never-used slot of its window, and slots are never emptied,
    /// only handed over).
    #[inline]
    fn lookup(&self, fp: u64, home: usize) -> Option<(&AtomicU128, u128)> {
        for slot in self.window(home) {
            // Acquire: see the type's "Memory ordering".
            let v = slot.load(Ordering::Acquire);
            if hi(v) == fp {
                return Some((slot, v));
            }
            if v == 0 {
                return None;
            }
        }
        None
    }

    /// Applies `step` to `fp`'s slot in a CAS loop, starting from `cur`, the
    /// word last seen in it. `None` if the slot no longer holds `fp` (it was
    /// fresh and was handed to another key).
    #[inline]
    fn apply<R>(
        &self,
        slot: &AtomicU128,
        mut cur: u128,
        fp: u64,
        step: &impl Fn(u64) -> (R, Option<u64>),
    ) -> Option<R> {
        loop {
            if hi(cur) != fp {
                return None;
            }
            let (r, new) = step(lo(cur));
            let Some(new) = new else { return Some(r) };
            // AcqRel/Acquire: see the type's "Memory ordering".
            match slot.compare_exchange(cur, pack(fp, new), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(r),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Runs `step` (a pure transition of one key's state: result and state
    /// to store) on `key`'s state, atomically. A key not tracked is in the
    /// fresh state `0`; it gets a slot only if `step` stores something.
    /// `Err(r)` carries the result when a slot was needed and none could be
    /// had under [`WhenFull::Deny`] or [`WhenFull::AllowUntracked`].
    #[inline]
    fn transact<K: Hash + ?Sized, R>(
        &self,
        key: &K,
        now: Nanos,
        step: impl Fn(u64) -> (R, Option<u64>),
    ) -> Result<R, R> {
        let (fp, home) = self.locate(key);
        self.transact_at(fp, home, now, step)
    }

    #[inline]
    fn transact_at<R>(
        &self,
        fp: u64,
        home: usize,
        now: Nanos,
        step: impl Fn(u64) -> (R, Option<u64>),
    ) -> Result<R, R> {
        while let Some((slot, cur)) = self.lookup(fp, home) {
            if let Some(r) = self.apply(slot, cur, fp, &step) {
                return Ok(r);
            }
        }
        self.insert(fp, home, now, &step)
    }

    #[cold]
    fn insert<R>(
        &self,
        fp: u64,
        home: usize,
        now: Nanos,
        step: &impl Fn(u64) -> (R, Option<u64>),
    ) -> Result<R, R> {
        // A key not found is in the fresh state: decide on that first, so a
        // refusal (or a read-only step) needs no slot at all.
        let (r, new) = step(0);
        let Some(new) = new else { return Ok(r) };
        let _lock = self.lock(home);
        // Under the lock no one else inserts a key of this home bucket: look
        // again for a copy inserted while we waited.
        while let Some((slot, cur)) = self.lookup(fp, home) {
            if let Some(r) = self.apply(slot, cur, fp, step) {
                return Ok(r);
            }
        }
        let word = pack(fp, new);
        for slot in self.window(home) {
            let mut cur = slot.load(Ordering::Acquire);
            // Never used, or holding a fresh state: claimable. The CAS fails
            // if the slot changed meanwhile (an update of its key, or another
            // home's insertion); then look at what it holds now.
            while cur == 0 || (hi(cur) != fp && self.algorithm.is_fresh(lo(cur), now)) {
                match slot.compare_exchange(cur, word, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Ok(r),
                    Err(actual) => cur = actual,
                }
            }
        }
        if self.when_full != WhenFull::EvictNearestFresh {
            return Err(r);
        }
        loop {
            let victim = self
                .window(home)
                .map(|s| (s, s.load(Ordering::Acquire)))
                .min_by_key(|&(_, v)| self.algorithm.distance_from_fresh(lo(v), now));
            let Some((slot, v)) = victim else {
                return Err(r);
            };
            if slot
                .compare_exchange(v, word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(r);
            }
        }
    }

    fn lock(&self, home: usize) -> LockGuard<'_> {
        let lock = &self.locks[home];
        let b = Backoff::new();
        // Acquire: pairs with the Release in `LockGuard::drop`.
        while lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            backoff(&b);
        }
        LockGuard(lock)
    }
}

impl<A: KeyedAlgorithm, S: BuildHasher> KeyedLimiter<A, S> {
    /// Asks to admit one unit for `key` under `quota` at `now`.
    #[inline]
    pub fn check<K: Hash + ?Sized>(&self, key: &K, quota: &A::Quota, now: Nanos) -> KeyedDecision {
        self.check_n(key, quota, now, 1)
    }

    /// Asks to admit `cost` units for `key` under `quota` at `now`, all or
    /// nothing. A denial writes nothing, and a new key that is refused is not
    /// inserted.
    #[inline]
    pub fn check_n<K: Hash + ?Sized>(
        &self,
        key: &K,
        quota: &A::Quota,
        now: Nanos,
        cost: u32,
    ) -> KeyedDecision {
        let step = |state| self.algorithm.decide(quota, state, now, cost);
        match self.transact(key, now, step) {
            Ok(d) => KeyedDecision::Decided(d),
            Err(d) => match self.when_full {
                WhenFull::AllowUntracked => KeyedDecision::Untracked(d),
                _ => KeyedDecision::StoreFull,
            },
        }
    }

    /// The decision `check_n` would make for `cost` units of `key` at `now`,
    /// without consuming anything or inserting the key (read-only). Used to
    /// check several limits before charging any of them.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tollgate::keyed::KeyedLimiter;
    /// use tollgate::{Nanos, Quota};
    ///
    /// let store = KeyedLimiter::new(100).unwrap();
    /// let q = Quota::per_minute(NonZeroU32::new(1).unwrap());
    /// assert!(store.probe("k", &q, Nanos::ZERO, 1).is_allowed());
    /// assert!(store.probe("k", &q, Nanos::ZERO, 1).is_allowed()); // nothing taken
    /// assert_eq!(store.occupied(), 0);
    /// ```
    pub fn probe<K: Hash + ?Sized>(
        &self,
        key: &K,
        quota: &A::Quota,
        now: Nanos,
        cost: u32,
    ) -> Decision {
        let (fp, home) = self.locate(key);
        let state = self.lookup(fp, home).map_or(0, |(_, v)| lo(v));
        self.algorithm.decide(quota, state, now, cost).0
    }

    /// The state of `key` at `now` without consuming anything. A key not
    /// tracked reads as fresh.
    pub fn peek<K: Hash + ?Sized>(&self, key: &K, quota: &A::Quota, now: Nanos) -> Snapshot {
        let (fp, home) = self.locate(key);
        let state = self.lookup(fp, home).map_or(0, |(_, v)| lo(v));
        self.algorithm.snapshot(quota, state, now)
    }

    /// Gives back `cost` units of `key` that were admitted but not used
    /// (never beyond a fresh state). Returns the state after. A key not
    /// tracked is already fresh: nothing to give back.
    pub fn refund<K: Hash + ?Sized>(
        &self,
        key: &K,
        quota: &A::Quota,
        now: Nanos,
        cost: u32,
    ) -> Snapshot {
        let step = |state| match self.algorithm.refunded(quota, state, now, cost) {
            Some(new) => (self.algorithm.snapshot(quota, new, now), Some(new)),
            None => (self.algorithm.snapshot(quota, state, now), None),
        };
        // A refund of an untracked key stores nothing (fresh stays fresh),
        // so it never needs a slot.
        match self.transact(key, now, step) {
            Ok(s) | Err(s) => s,
        }
    }
}

impl<A: KeyedState, S> fmt::Debug for KeyedLimiter<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("capacity", &self.capacity)
            .field("buckets", &self.buckets.len())
            .field("when_full", &self.when_full)
            .finish_non_exhaustive()
    }
}

struct LockGuard<'a>(&'a AtomicU8);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `KeyedLimiter::lock`.
        self.0.store(0, Ordering::Release);
    }
}

#[inline]
fn pack(fp: u64, state: u64) -> u128 {
    (u128::from(fp) << 64) | u128::from(state)
}

#[inline]
fn hi(v: u128) -> u64 {
    (v >> 64) as u64
}

#[inline]
fn lo(v: u128) -> u64 {
    // The low half, on purpose.
    #[allow(clippy::cast_possible_truncation)]
    let lo = v as u64;
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn q(n: u32) -> Quota {
        Quota::per_second(NonZeroU32::new(n).unwrap())
    }

    /// A hasher that maps every key to its own u64 value: lets tests place
    /// keys in chosen buckets.
    #[derive(Clone, Default)]
    struct Identity;
    impl BuildHasher for Identity {
        type Hasher = IdentityHasher;
        fn build_hasher(&self) -> IdentityHasher {
            IdentityHasher(0)
        }
    }
    struct IdentityHasher(u64);
    impl std::hash::Hasher for IdentityHasher {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 << 8) | u64::from(b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }

    #[test]
    fn keys_are_independent_and_per_call_quotas_work() {
        let s = KeyedLimiter::new(1_000).unwrap();
        assert!(s.check(&1u64, &q(2), Nanos::ZERO).is_allowed());
        assert!(s.check(&1u64, &q(2), Nanos::ZERO).is_allowed());
        assert!(!s.check(&1u64, &q(2), Nanos::ZERO).is_allowed());
        assert!(s.check(&2u64, &q(2), Nanos::ZERO).is_allowed());
        // Same key, bigger plan (an upgrade): the state is time, so the 2
        // units of 500 ms used are 10 units of 100 ms under the new plan.
        assert_eq!(s.peek(&1u64, &q(10), Nanos::ZERO).remaining, 0);
        let bigger_burst = q(10).with_burst(NonZeroU32::new(20).unwrap());
        assert_eq!(s.peek(&1u64, &bigger_burst, Nanos::ZERO).remaining, 10);
        assert_eq!(s.len(Nanos::ZERO), 2);
        assert_eq!(s.len(Nanos::from_secs(2)), 0);
    }

    #[test]
    fn refused_new_key_is_not_inserted() {
        let s = KeyedLimiter::new(10).unwrap();
        let d = s.check_n("k", &q(2), Nanos::ZERO, 3);
        assert!(matches!(
            d,
            KeyedDecision::Decided(Decision::ExceedsCapacity { .. })
        ));
        assert_eq!(s.occupied(), 0);
    }

    #[test]
    fn fresh_slots_are_reclaimed_losslessly() {
        // Identity hashing sends small keys to home bucket 0: its probe
        // window is all they can use.
        let s = KeyedLimiter::with_hasher(8, KeyedGcra, Identity).unwrap();
        let total = PROBE * SLOTS;
        let t0 = Nanos::ZERO;
        // Identity hashing: keys 1.. have distinct fingerprints (0 is remapped
        // to 1, so it is left out).
        for k in 1..=total as u64 {
            assert!(s.check(&k, &q(1), t0).is_allowed(), "key {k}");
        }
        // Full of non-fresh keys: a new key is refused (default policy).
        assert_eq!(s.check(&9_999u64, &q(1), t0), KeyedDecision::StoreFull);
        // One second later every state is fresh: new keys reuse slots, and
        // an old key that lost its slot starts fresh — the same decision it
        // would have got anyway.
        let t1 = Nanos::from_secs(1);
        assert!(s.check(&9_999u64, &q(1), t1).is_allowed());
        assert!(!s.check(&9_999u64, &q(1), t1).is_allowed());
        assert_eq!(s.occupied(), total);
    }

    #[test]
    fn when_full_policies() {
        let t0 = Nanos::ZERO;
        let fill = |s: &KeyedLimiter<KeyedGcra, Identity>| {
            for k in 1..=(PROBE * SLOTS) as u64 {
                let _ = s.check_n(&k, &q(10), t0, 1 + (k % 5) as u32);
            }
        };
        let s = KeyedLimiter::with_hasher(8, KeyedGcra, Identity)
            .unwrap()
            .when_full(WhenFull::AllowUntracked);
        fill(&s);
        assert!(matches!(
            s.check(&777u64, &q(10), t0),
            KeyedDecision::Untracked(Decision::Allowed { remaining: 9, .. })
        ));
        let s = KeyedLimiter::with_hasher(8, KeyedGcra, Identity)
            .unwrap()
            .when_full(WhenFull::EvictNearestFresh);
        fill(&s);
        assert!(matches!(
            s.check(&777u64, &q(10), t0),
            KeyedDecision::Decided(_)
        ));
        // A key with cost 1 (k % 5 == 0) was the nearest to fresh.
        assert_eq!(s.peek(&777u64, &q(10), t0).remaining, 9);
    }

    #[test]
    fn refund_and_peek() {
        let s = KeyedLimiter::new(100).unwrap();
        let now = Nanos::ZERO;
        assert!(s.check_n("a", &q(5), now, 5).is_allowed());
        assert_eq!(s.peek("a", &q(5), now).remaining, 0);
        assert_eq!(s.refund("a", &q(5), now, 2).remaining, 2);
        assert_eq!(s.refund("nobody", &q(5), now, 2).remaining, 5);
    }

    #[test]
    fn memory_per_key_is_within_24_bytes() {
        let s = KeyedLimiter::new(1_000_000).unwrap();
        let per_key = s.memory_bytes() as f64 / s.capacity() as f64;
        assert!(per_key <= 24.0, "{per_key} bytes per key");
    }

    #[test]
    fn bad_capacity_is_an_error() {
        assert_eq!(KeyedLimiter::new(0).err(), Some(KeyedError::ZeroCapacity));
        assert_eq!(
            KeyedLimiter::new(usize::MAX).err(),
            Some(KeyedError::CapacityTooLarge)
        );
    }
}
