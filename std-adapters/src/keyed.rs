//! [`KeyedLimiter`]: one limiter per key (API key, client address,
//! organisation) for millions of keys, in a fixed-size table.
//!
//! # Design
//!
//! * **Fixed capacity, no allocation after construction.** The table is one
//!   boxed slice of buckets plus one control word per bucket, allocated and
//!   zeroed by the constructor. A check never allocates, on any path.
//! * **Slots are two 8-byte words**: the key's 64-bit fingerprint and the
//!   algorithm's 64-bit state (GCRA: the theoretical arrival time). A bucket
//!   is 8 slots, 128 bytes, aligned with [`CachePadded`] so threads on
//!   different keys rarely share a cache line. Finding a key first looks at
//!   its *preferred* slot (three bits of its hash; a new key takes it when
//!   it is empty), then compares the bucket's 8 fingerprints without a
//!   branch per slot; updating it is one
//!   8-byte compare-and-swap of the state (`lock cmpxchg`, not the 16-byte
//!   `cmpxchg16b`: half the cost here, see BENCHMARKS.md).
//! * **Lock-free checks of tracked keys.** A check reads its bucket's control
//!   word, the fingerprint and the state, CASes the state, and reads the
//!   control word again: if no slot of the bucket was handed to another key
//!   in between, the CAS landed on its own key. It waits only while a slot
//!   of its own bucket is being handed over (three instructions under the
//!   bucket's lock).
//! * **Batches of keys overlap their cache misses.** In a table larger than
//!   the caches a check mostly waits for its bucket to come from memory;
//!   [`KeyedLimiter::check_batch`] reads the buckets of up to 32 keys at
//!   once, then checks each key in turn exactly as `check` would (about a
//!   third of `check`'s time a key at 1M keys).
//! * **Inserting a new key** takes a lock bit of the key's home bucket: that
//!   is what guarantees a key is never inserted twice (two budgets would
//!   admit twice as much). A never-used slot is claimed by a CAS of its state
//!   from `0` to the key's first state, then its fingerprint is published;
//!   a slot outside the home bucket is claimed under its own bucket's lock
//!   as well (a key of another home could otherwise claim it and be released
//!   back to `0` between the two steps, and be overwritten without a
//!   handover).
//! * **Lossless reclamation.** A slot whose state equals a fresh state
//!   (GCRA: `TAT <= now`, the bucket is full) can be handed to another key:
//!   dropping it changes no decision, because a key that is not found starts
//!   from exactly that fresh state. The handover (under the slot's bucket
//!   lock) CASes the state from the fresh value it saw to the new key's first
//!   state — so it fails if the old key was charged meanwhile — then stores
//!   the new fingerprint and bumps the bucket's handover count. No
//!   background thread, no sweep.
//!   Reclamation is lossless for a clock that does not go backwards
//!   ([`MonotonicClock`](crate::MonotonicClock)). If a caller's `now` goes back
//!   from `r` to `t < r` after a slot was handed over at `r`, the key that
//!   lost it starts fresh at `t`, which can buy it up to `r - t` of budget;
//!   the GCRA bound otherwise holds (`tests/model_keyed.rs`).
//! * **Refunds and permit releases** (the operations that loosen a state)
//!   run under the lock of the slot's bucket, so the slot cannot change hands
//!   under them: a refund can never land on another key.
//! * **When no slot can be had** (every slot of the probe window — the 8
//!   buckets, 64 slots, from the key's home bucket — holds a key that is not
//!   fresh), [`WhenFull`] decides, per store. Filled with `capacity` distinct
//!   keys none of which is fresh, a store refuses about 1 insert in 10 000
//!   (0.007–0.009 % measured at 1K..10M keys, the first refusal after 89 %
//!   of capacity); with 4-bucket windows it was 0.16 %, from 57 % on. Size a
//!   store with headroom for the keys active at once.
//!
//! # Slots handed over mid-check
//!
//! A check of key A that read A's state `s`, then stalled while A's slot was
//! handed to key B (A was fresh), can see its CAS succeed if B's state
//! happens to equal `s` again (an ABA: the 8-byte state word carries no
//! owner). The bucket's handover count and the slot's 8-bit handover
//! generation, read before and after, detect it exactly (the slot cannot
//! wrap its generation without 256 handovers of the bucket, which the 62-bit
//! count would show); the check then takes its write back (`CAS(new -> s)`) and starts again as a
//! new key. If B's state changed in the meantime, the write stays in B's
//! state — B is charged once more than it asked, which is *stricter*, never
//! looser, and heals with time for GCRA and windows (concurrency counts are
//! undone exactly, [`KeyedState::undo`]). This needs B's state to return to
//! the exact nanosecond A had while the check was stalled; the handover
//! itself always changes the state word, so the plain race (a check of an
//! idle key meeting its slot's reclamation) is a failed CAS and a retry.
//! The loom models in `tests/loom_keyed.rs` cover these interleavings.
//!
//! # Fingerprints
//!
//! Keys are not stored: a key is identified by the low 56 bits of the 64-bit
//! hash of its bytes under a per-process random seed (`ahash::RandomState`
//! by default); the word's other 8 bits count the slot's handovers. Two keys
//! collide only if those 56 bits are equal: with `n` keys tracked at once
//! the probability that *any* two collide is below `n² / 2^57` —
//! 6.9 × 10⁻⁶ at 1 000 000 keys, 6.9 × 10⁻⁴ at 10 000 000 (and a pair only
//! matters when their probe windows overlap, which divides that by about
//! `n / 20`). A collision makes the two clients share one budget: each is
//! admitted *less*, never more. With a random seed an attacker cannot choose
//! colliding keys.
//!
//! # Memory
//!
//! `capacity` keys at a load factor of 0.71: `⌈capacity / 5.68⌉` buckets of
//! 128 bytes plus an 8-byte control word each — about 23.9 bytes per tracked
//! key ([`KeyedLimiter::memory_bytes`]).

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::hint::black_box;

use crossbeam_utils::{Backoff, CachePadded};
use tollgate_core::{Decision, Nanos, Quota, Snapshot, gcra};

use crate::sync::{AtomicU64, Ordering, backoff};

mod semaphore;
mod window;

pub use semaphore::{Concurrency, ConcurrencyRefused, KeyedPermit, KeyedSemaphore};
pub use window::{KeyedFixedWindow, KeyedSlidingWindow};

/// Slots per bucket: 8 × 16 bytes = 128 bytes, two cache lines, one
/// `CachePadded` unit on x86-64 and aarch64.
const SLOTS: usize = 8;
/// Buckets a key may live in, starting from its home bucket.
const PROBE: usize = 8;
/// Keys whose cache lines [`KeyedLimiter::check_batch`] requests at once
/// before checking them one by one: 32 keys, 96 lines (6 KB of L1). At 1M
/// keys (`compare`'s `keyed_check_batch_1m_keys`, 64 keys a call): 8 keys at
/// once, 51 ns a key; 16, 44 ns; 32, 40 ns; 64, 39 ns.
const BATCH: usize = 32;
/// Keys per 100 slots at full capacity (load factor 0.71: with the 8-byte
/// control word per bucket, 136 bytes per 5.68 keys = 23.9 bytes per key).
const LOAD_PERCENT: usize = 71;

/// Control word bits: the bucket's lock (inserts of keys homed here; refunds,
/// releases and handovers of slots here) ...
const LOCKED: u64 = 1;
/// ... a handover of one of its slots in progress ...
const HANDOVER: u64 = 2;
/// ... and, above them, the number of handovers so far (2^62 of them: no
/// wrap-around in practice).
const HANDED: u64 = 4;
/// The low 8 bits of a slot's fingerprint word: how many times the slot was
/// handed over, modulo 256.
const GEN: u64 = 0xFF;

/// The slot of its home bucket a key is put in when that slot is empty, and
/// looked for first: three bits of its fingerprint (the hash's low bits;
/// independent of the home bucket, which comes from the high bits).
#[inline(always)]
fn preferred(fp: u64) -> usize {
    // < SLOTS (8), so the cast cannot truncate.
    ((fp >> 8) & (SLOTS as u64 - 1)) as usize
}

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

    /// The state after giving back, at `now`, `cost` units that were charged
    /// at `charged_at` — only as much as that charge still weighs at `now`
    /// (`None`: unchanged). A refund that arrives late (a response that
    /// took a while) must not give back a unit that time has already given
    /// back: a window that has rolled over since, or a GCRA bucket that has
    /// refilled, owes the charge nothing, and taking a unit off the *new*
    /// window or the refilled bucket would admit one more than the limit.
    ///
    /// The default gives back nothing unless the charge was made at `now`
    /// (then it is [`refunded`](Self::refunded)): never more than owed.
    /// GCRA gives back `cost × T` less the time elapsed since the charge;
    /// the windows give back the units only within the window of the charge.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tollgate::keyed::{KeyedAlgorithm, KeyedGcra};
    /// use tollgate::{Nanos, Quota};
    ///
    /// let q = Quota::per_second(NonZeroU32::new(1).unwrap()); // T = 1 s
    /// let t0 = Nanos::ZERO;
    /// let (_, tat) = KeyedGcra.decide(&q, 0, t0, 1); // TAT = 1 s
    /// let tat = tat.unwrap();
    /// // Given back at once: the whole second.
    /// assert_eq!(KeyedGcra.refunded_since(&q, tat, t0, t0, 1), Some(0));
    /// // 0.4 s later: only the 0.6 s the charge still weighs.
    /// let later = Nanos::from_millis(400);
    /// assert_eq!(KeyedGcra.refunded_since(&q, tat, t0, later, 1), Some(400_000_000));
    /// // A second later the bucket has refilled on its own: nothing owed.
    /// assert_eq!(KeyedGcra.refunded_since(&q, tat, t0, Nanos::from_secs(1), 1), None);
    /// ```
    fn refunded_since(
        &self,
        quota: &Self::Quota,
        state: u64,
        charged_at: Nanos,
        now: Nanos,
        cost: u32,
    ) -> Option<u64> {
        if charged_at == now {
            self.refunded(quota, state, now, cost)
        } else {
            None
        }
    }
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

    /// Removes a charge `before -> after` from `current`, the state of a slot
    /// that another key took over while the charge was being made (see the
    /// [module docs](self), "Slots handed over mid-check"), if that can be
    /// done exactly; `None` leaves the charge in place, which only ever makes
    /// that key stricter.
    ///
    /// Only states that cannot become fresh while the charge is in them may
    /// return `Some` (the slot must keep its key until the undo lands):
    /// concurrency counts do; GCRA and window states (which become fresh with
    /// time) keep the default.
    fn undo(&self, current: u64, before: u64, after: u64) -> Option<u64> {
        let _ = (current, before, after);
        None
    }
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

    /// The charge moved the TAT `cost × T` forward; the bucket has since
    /// regenerated `now − charged_at` of it at most, so at least `cost × T −
    /// (now − charged_at)` of the charge is still in the TAT (it is all
    /// there if the bucket was never full in between, less if it was): move
    /// the TAT back by that much, never below `now`. Never gives back more
    /// than the charge still weighs, so a late refund cannot admit beyond
    /// the bound. A `charged_at` after `now` (a clock stepping back) counts
    /// as no time elapsed.
    fn refunded_since(
        &self,
        quota: &Quota,
        state: u64,
        charged_at: Nanos,
        now: Nanos,
        cost: u32,
    ) -> Option<u64> {
        gcra::refunded_since(quota, state, charged_at, now, cost)
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
    /// The table for this capacity would not fit in memory addresses, or
    /// the allocator could not give it.
    CapacityTooLarge,
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyedError::ZeroCapacity => f.write_str("keyed store capacity must be at least 1 key"),
            KeyedError::CapacityTooLarge => {
                f.write_str("keyed store capacity is too large: its table cannot be allocated")
            }
        }
    }
}

impl std::error::Error for KeyedError {}

/// One slot: a key's fingerprint (`0`: never used) and its state.
struct Slot {
    fp: AtomicU64,
    st: AtomicU64,
}

type Bucket = CachePadded<[Slot; SLOTS]>;

/// Whether an operation tightens a key's state (checks, acquires: lock-free,
/// and may insert the key) or loosens it (refunds, releases: under the slot's
/// bucket lock, never insert).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Tighten,
    Loosen,
}

/// The outcome of the insertion path.
enum Insert<R> {
    Done(R),
    /// No slot could be had: the result the fresh state gave.
    Full(R),
    /// The key appeared meanwhile: go through the update path.
    Retry,
}

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
/// Every write of a state is a compare-and-swap (`AcqRel`), never a plain
/// store, so all writes to one state word form one release sequence: a check
/// whose CAS reads a value written at or after a handover's CAS
/// synchronizes with that handover, and its following `Acquire` load of the
/// control word sees the handover's `HANDOVER` bit or count (it is set before
/// the handover's CAS). That is the whole ABA argument; a handover whose CAS
/// comes *after* a check's CAS fails, because the state changed. Fingerprints
/// are published with `Release` after the state they go with and read with
/// `Acquire`. The bucket lock is taken with an `Acquire` CAS and released with
/// a `Release` RMW. Loom explores these orderings (`tests/loom_keyed.rs`).
pub struct KeyedLimiter<A: KeyedState = KeyedGcra, S = ahash::RandomState> {
    buckets: Box<[Bucket]>,
    /// One control word per bucket: `LOCKED`, `HANDOVER`, handover count.
    ctl: Box<[AtomicU64]>,
    /// Home buckets: `buckets.len() - (PROBE - 1)`.
    homes: usize,
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
            .checked_mul(100)
            .ok_or(KeyedError::CapacityTooLarge)?
            .div_ceil(LOAD_PERCENT);
        let n = slots.div_ceil(SLOTS).max(PROBE);
        // `n` home buckets, plus `PROBE - 1` at the end so that every probe
        // window is one contiguous run (no wrap-around, no division).
        let total = n + PROBE - 1;
        total
            .checked_mul(std::mem::size_of::<Bucket>() + 8)
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or(KeyedError::CapacityTooLarge)?;
        // Reserved first: a table the allocator cannot give is an error,
        // not an abort of the process.
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut ctl: Vec<AtomicU64> = Vec::new();
        buckets
            .try_reserve_exact(total)
            .and_then(|()| ctl.try_reserve_exact(total))
            .map_err(|_| KeyedError::CapacityTooLarge)?;
        buckets.extend(
            std::iter::repeat_with(|| {
                CachePadded::new(std::array::from_fn(|_| Slot {
                    fp: AtomicU64::new(0),
                    st: AtomicU64::new(0),
                }))
            })
            .take(total),
        );
        ctl.extend(std::iter::repeat_with(|| AtomicU64::new(0)).take(total));
        let (buckets, ctl) = (buckets.into_boxed_slice(), ctl.into_boxed_slice());
        Ok(KeyedLimiter {
            buckets,
            ctl,
            homes: n,
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
        std::mem::size_of_val(&*self.buckets) + std::mem::size_of_val(&*self.ctl)
    }

    /// Slots ever claimed by a key (O(table); for metrics, not the hot path).
    pub fn occupied(&self) -> usize {
        self.slots()
            .filter(|s| s.fp.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Keys whose state is not fresh at `now`: the ones that matter
    /// (O(table)).
    pub fn len(&self, now: Nanos) -> usize {
        self.slots()
            .filter(|s| {
                s.fp.load(Ordering::Relaxed) != 0
                    && !self.algorithm.is_fresh(s.st.load(Ordering::Relaxed), now)
            })
            .count()
    }

    /// Whether no key holds a non-fresh state at `now`.
    pub fn is_empty(&self, now: Nanos) -> bool {
        self.len(now) == 0
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.buckets.iter().flat_map(|b| b.iter())
    }

    /// Fingerprint (low 8 bits clear, never 0) and home bucket of a key.
    #[inline(always)]
    fn locate<K: Hash + ?Sized>(&self, key: &K) -> (u64, usize) {
        let h = self.hasher.hash_one(key);
        // The fingerprint is the hash's low 56 bits, shifted over the
        // slot's 8-bit handover generation (`GEN`); never 0.
        let fp = match h << 8 {
            0 => 1 << 8,
            f => f,
        };
        // Multiply-high maps the hash onto 0..len without a division; the
        // result is < len, so it fits a usize.
        #[allow(clippy::cast_possible_truncation)]
        let home = ((u128::from(h) * self.homes as u128) >> 64) as usize;
        (fp, home)
    }

    /// Reads the control word and both cache lines of each home bucket in
    /// `at`, back to back, so that their cache misses overlap (no
    /// compare-and-swap between them to wait for); the values are dropped.
    /// Relaxed: nothing is decided on them — every check reads its words
    /// again, from cache, with the orderings of the single-key path.
    ///
    /// Passing this read on as the check's `early` control word measured no
    /// faster, and it would have to be `Acquire`, which on Arm (`ldar`)
    /// orders every later load after it: the misses would queue again.
    /// Reading the next bucket too, for keys that overflow their home,
    /// measured slower (47 against 40 ns a key at 1M keys).
    #[inline(always)]
    fn touch(&self, at: &[(u64, usize)]) {
        let mut sink = 0;
        for &(_, home) in at {
            let bucket = &self.buckets[home];
            sink ^= self.ctl[home].load(Ordering::Relaxed)
                ^ bucket[0].fp.load(Ordering::Relaxed)
                ^ bucket[SLOTS - 1].fp.load(Ordering::Relaxed);
        }
        // The reads are for their side effect (the lines they bring in): the
        // sink keeps the compiler from dropping them.
        black_box(sink);
    }

    /// The slots of a key's probe window, in order, with their buckets.
    fn window(&self, home: usize) -> impl Iterator<Item = (usize, &Slot)> {
        (home..home + PROBE).flat_map(move |b| self.buckets[b].iter().map(move |s| (b, s)))
    }

    /// The bucket and slot holding `fp`, or `None`. A slot is *empty* when
    /// both its words are 0 (a slot being claimed has its state set before
    /// its fingerprint); a key is always inserted before any empty slot of
    /// its window, and slots never become empty again, so the search stops
    /// at the first empty one.
    #[inline(always)]
    fn lookup(&self, fp: u64, home: usize) -> Option<(usize, &Slot)> {
        // Most keys sit in their preferred slot (`insert` claims it when it
        // is empty): one load and compare instead of the bucket's eight.
        // Acquire as below.
        let slot = &self.buckets[home][preferred(fp)];
        if (slot.fp.load(Ordering::Acquire) ^ fp) <= GEN {
            return Some((home, slot));
        }
        for b in home..home + PROBE {
            let bucket = &self.buckets[b];
            // Acquire: the state a fingerprint was published with is
            // visible once the fingerprint is. All 8 compared without a
            // branch per slot.
            // `fp` has its low (`GEN`) bits clear, so `f & !GEN == fp` is
            // `(f ^ fp) <= GEN`: one xor and one compare, kept with a
            // conditional move. A key has at most one slot in its window.
            let (mut hit, mut unused) = (SLOTS, 0u32);
            for (i, slot) in bucket.iter().enumerate() {
                let f = slot.fp.load(Ordering::Acquire);
                hit = if (f ^ fp) <= GEN { i } else { hit };
                unused |= u32::from(f == 0) << i;
            }
            if hit < SLOTS {
                return Some((b, &bucket[hit]));
            }
            while unused != 0 {
                if bucket[unused.trailing_zeros() as usize]
                    .st
                    .load(Ordering::Acquire)
                    == 0
                {
                    return None;
                }
                unused &= unused - 1;
            }
        }
        None
    }

    /// Runs `step` (a pure transition of one key's state: result and state
    /// to store) on `key`'s state, atomically. A key not tracked is in the
    /// fresh state `0`; it gets a slot only if a tightening `step` stores
    /// something. `Err(r)` carries the result when a slot was needed and none
    /// could be had under [`WhenFull::Deny`] or [`WhenFull::AllowUntracked`].
    #[inline(always)]
    fn transact<K: Hash + ?Sized, R>(
        &self,
        key: &K,
        now: Nanos,
        mode: Mode,
        step: impl Fn(u64) -> (R, Option<u64>),
    ) -> Result<R, R> {
        let (fp, home) = self.locate(key);
        self.transact_at(fp, home, now, mode, step)
    }

    #[inline(always)]
    fn transact_at<R>(
        &self,
        fp: u64,
        home: usize,
        now: Nanos,
        mode: Mode,
        step: impl Fn(u64) -> (R, Option<u64>),
    ) -> Result<R, R> {
        // The hot path (a tracked key, no handover) inline; the rest apart.
        if mode == Mode::Tighten {
            // The home bucket's control word, read *before* the lookup: most
            // keys sit in their home bucket, and a read issued now overlaps
            // its cache miss with the bucket's instead of following it (at
            // 1M keys both miss). Reading it earlier than `tighten` would
            // only widen the window `kept` checks: never less strict.
            let early = self.ctl[home].load(Ordering::Acquire);
            if let Some((b, slot)) = self.lookup(fp, home) {
                let v1 = if b == home { Some(early) } else { None };
                if let Some(r) = self.tighten(b, slot, fp, v1, &step) {
                    return Ok(r);
                }
            }
        }
        self.transact_slow(fp, home, now, mode, &step)
    }

    #[inline(never)]
    fn transact_slow<R>(
        &self,
        fp: u64,
        home: usize,
        now: Nanos,
        mode: Mode,
        step: &impl Fn(u64) -> (R, Option<u64>),
    ) -> Result<R, R> {
        loop {
            match (self.lookup(fp, home), mode) {
                (Some((b, slot)), Mode::Tighten) => {
                    if let Some(r) = self.tighten(b, slot, fp, None, step) {
                        return Ok(r);
                    }
                }
                (Some((b, slot)), Mode::Loosen) => {
                    if let Some(r) = self.loosen(b, slot, fp, step) {
                        return Ok(r);
                    }
                }
                (None, Mode::Tighten) => match self.insert(fp, home, now, step) {
                    Insert::Done(r) => return Ok(r),
                    Insert::Full(r) => return Err(r),
                    Insert::Retry => {}
                },
                // A key not tracked is fresh: there is nothing to loosen.
                (None, Mode::Loosen) => return Ok(step(0).0),
            }
        }
    }

    /// The lock-free update of `fp`'s slot in bucket `b` (see the type's
    /// "Memory ordering"). `early`: the bucket's control word if the caller
    /// read it before looking the slot up. `None`: the slot was handed to
    /// another key; look the key up again.
    #[inline(always)]
    fn tighten<R>(
        &self,
        b: usize,
        slot: &Slot,
        fp: u64,
        mut early: Option<u64>,
        step: &impl Fn(u64) -> (R, Option<u64>),
    ) -> Option<R> {
        let ctl = &self.ctl[b];
        let wait = Backoff::new();
        loop {
            let v1 = match early.take() {
                Some(v) => v,
                None => ctl.load(Ordering::Acquire),
            };
            if v1 & HANDOVER != 0 {
                backoff(&wait);
                continue;
            }
            let w1 = slot.fp.load(Ordering::Acquire);
            if w1 & !GEN != fp {
                return None;
            }
            let s = slot.st.load(Ordering::Acquire);
            let (r, new) = step(s);
            let Some(new) = new else {
                // Read-only (a denial, a peek): `s` was this key's state if
                // the slot did not change hands meanwhile.
                if self.kept(ctl, v1, slot, w1) {
                    return Some(r);
                }
                continue;
            };
            if slot
                .st
                .compare_exchange(s, new, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            if self.kept(ctl, v1, slot, w1) {
                return Some(r);
            }
            // A slot of this bucket changed hands around the CAS: it may have
            // landed on another key (module docs, "Slots handed over
            // mid-check"). Take it back and start again.
            self.take_back(b, slot, s, new);
            return None;
        }
    }

    /// Whether `slot` kept its key throughout since the control word read
    /// `v1` (no handover in progress then) and the slot's word read `w1`,
    /// given a read or CAS of its state in between.
    ///
    /// Same bucket handover count and none in progress: no slot of the
    /// bucket changed hands. Otherwise wait out a handover in progress and
    /// compare the slot's word: every handover of the slot bumps its 8-bit
    /// generation, and the slot cannot have been handed over more often than
    /// the bucket, so with fewer than 256 bucket handovers since `v1` an
    /// unchanged word means an unchanged owner. (The count is bumped after
    /// the word is stored, `Release`; these `Acquire` reads see both.) 256 or
    /// more: cannot tell, report a change (the caller takes its write back).
    #[inline(always)]
    fn kept(&self, ctl: &AtomicU64, v1: u64, slot: &Slot, w1: u64) -> bool {
        let v2 = ctl.load(Ordering::Acquire);
        if v2 & HANDOVER == 0 && v2 >> 2 == v1 >> 2 {
            return true;
        }
        self.kept_slow(ctl, v1, slot, w1)
    }

    #[cold]
    #[inline(never)]
    fn kept_slow(&self, ctl: &AtomicU64, v1: u64, slot: &Slot, w1: u64) -> bool {
        let wait = Backoff::new();
        let v3 = loop {
            let v = ctl.load(Ordering::Acquire);
            if v & HANDOVER == 0 {
                break v;
            }
            backoff(&wait);
        };
        (v3 >> 2) - (v1 >> 2) <= GEN && slot.fp.load(Ordering::Acquire) == w1
    }

    /// Removes this check's write `before -> after` from `slot`: exactly if
    /// nothing was written since, else by [`KeyedState::undo`] if the
    /// algorithm can, else leaves it (stricter for whoever holds the slot).
    #[cold]
    #[inline(never)]
    fn take_back(&self, b: usize, slot: &Slot, before: u64, after: u64) {
        if slot
            .st
            .compare_exchange(after, before, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        let _lock = self.lock(b);
        update(slot, |cur| ((), self.algorithm.undo(cur, before, after)));
    }

    /// A loosening update (refund, release) of `fp`'s slot in bucket `b`,
    /// under the bucket's lock: no handover can move the slot meanwhile.
    /// `None`: the slot was handed over before the lock was taken.
    #[inline(never)]
    fn loosen<R>(
        &self,
        b: usize,
        slot: &Slot,
        fp: u64,
        step: &impl Fn(u64) -> (R, Option<u64>),
    ) -> Option<R> {
        let _lock = self.lock(b);
        if slot.fp.load(Ordering::Acquire) & !GEN != fp {
            return None;
        }
        Some(update(slot, step))
    }

    #[cold]
    #[inline(never)]
    fn insert<R>(
        &self,
        fp: u64,
        home: usize,
        now: Nanos,
        step: &impl Fn(u64) -> (R, Option<u64>),
    ) -> Insert<R> {
        // A key not found is in the fresh state: decide on that first, so a
        // refusal (or a read-only step) needs no slot at all. A first state
        // of 0 is the fresh state itself: nothing to keep either.
        let (r, new) = step(0);
        let Some(new) = new.filter(|&n| n != 0) else {
            return Insert::Done(r);
        };
        let _home = self.lock(home);
        // Under the lock no one else inserts a key of this home bucket: look
        // again for a copy inserted while we waited.
        if self.lookup(fp, home).is_some() {
            return Insert::Retry;
        }
        // An empty slot: the key's preferred slot of its home bucket if it
        // is empty (where `lookup` looks first), else the first empty one of
        // the window. Claim it by its state, then publish the fingerprint.
        // Either way the key is in the first bucket of its window that had
        // an empty slot, which is all `lookup` relies on.
        let preferred = &self.buckets[home][preferred(fp)];
        let candidates = || std::iter::once((home, preferred)).chain(self.window(home));
        for (b, slot) in candidates() {
            if slot.fp.load(Ordering::Acquire) != 0 {
                continue;
            }
            // A slot of another bucket is claimed under that bucket's lock
            // too (ascending order, as in `hand_over`): another home's key
            // may claim it, publish its fingerprint and be released back to
            // the state 0 between our read of the fingerprint and our CAS —
            // a CAS from 0 would then overwrite a live key without a
            // handover (its checks in flight would land on our slot unseen).
            // A release needs this lock, so under it a state of 0 with a
            // fingerprint of 0 is a slot no one has.
            let _lock = (b != home).then(|| self.lock(b));
            if slot.fp.load(Ordering::Acquire) == 0
                && slot
                    .st
                    .compare_exchange(0, new, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                slot.fp.store(fp, Ordering::Release);
                return Insert::Done(r);
            }
        }
        // A slot holding a fresh state: hand it over (the preferred slot
        // first, as above).
        for (b, slot) in candidates() {
            let old = slot.fp.load(Ordering::Acquire);
            let cur = slot.st.load(Ordering::Acquire);
            if old != 0
                && self.algorithm.is_fresh(cur, now)
                && self.hand_over(b, home, slot, old, cur, fp, new)
            {
                return Insert::Done(r);
            }
        }
        if self.when_full != WhenFull::EvictNearestFresh {
            return Insert::Full(r);
        }
        loop {
            let victim = self
                .window(home)
                .map(|(b, s)| {
                    let v = s.st.load(Ordering::Acquire);
                    (b, s, s.fp.load(Ordering::Acquire), v)
                })
                .filter(|&(_, _, old, _)| old != 0)
                .min_by_key(|&(_, _, _, v)| self.algorithm.distance_from_fresh(v, now));
            let Some((b, slot, old, v)) = victim else {
                return Insert::Full(r);
            };
            if self.hand_over(b, home, slot, old, v, fp, new) {
                return Insert::Done(r);
            }
        }
    }

    /// Gives `slot` (in bucket `b`, holding key `old` with state `cur`) to key
    /// `fp` with first state `new`, if it still holds exactly that. The caller
    /// holds the lock of `home <= b`.
    #[allow(clippy::too_many_arguments)]
    fn hand_over(
        &self,
        b: usize,
        home: usize,
        slot: &Slot,
        old: u64,
        cur: u64,
        fp: u64,
        new: u64,
    ) -> bool {
        // Locks are taken in ascending bucket order (home, then b): no cycle.
        let _lock = (b != home).then(|| self.lock(b));
        if slot.fp.load(Ordering::Acquire) != old {
            return false;
        }
        let ctl = &self.ctl[b];
        // Relaxed: published by the Release half of the CAS just below.
        ctl.fetch_or(HANDOVER, Ordering::Relaxed);
        let ok = slot
            .st
            .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ok {
            // The new key, and the slot's handover generation + 1.
            slot.fp
                .store(fp | (old.wrapping_add(1) & GEN), Ordering::Release);
            // Clears HANDOVER (set) and counts one handover.
            ctl.fetch_add(HANDED - HANDOVER, Ordering::Release);
        } else {
            ctl.fetch_and(!HANDOVER, Ordering::Release);
        }
        ok
    }

    fn lock(&self, b: usize) -> LockGuard<'_> {
        let ctl = &self.ctl[b];
        let wait = Backoff::new();
        loop {
            let v = ctl.load(Ordering::Relaxed);
            // Acquire: pairs with the Release in `LockGuard::drop`.
            if v & LOCKED == 0
                && ctl
                    .compare_exchange_weak(v, v | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return LockGuard(ctl);
            }
            backoff(&wait);
        }
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
        let step = move |state| self.algorithm.decide(quota, state, now, cost);
        match self.transact(key, now, Mode::Tighten, step) {
            Ok(d) => KeyedDecision::Decided(d),
            Err(d) => match self.when_full {
                WhenFull::AllowUntracked => KeyedDecision::Untracked(d),
                _ => KeyedDecision::StoreFull,
            },
        }
    }

    /// Asks to admit one unit for each of `keys`, in order, under `quota` at
    /// `now`, and hands `each` the index of every key with its decision.
    /// Allocates nothing.
    ///
    /// The decisions, and the store afterwards, are exactly those of calling
    /// [`check`](Self::check) on each key in turn: a key that appears twice
    /// is checked twice, the second time after the first one's charge.
    ///
    /// It is faster when the store is much larger than the CPU caches. There
    /// a check waits about 100 ns for its key's bucket to come from memory,
    /// and the next check's reads barely start before that: the locked
    /// compare-and-swap that ends a check is a full barrier on x86, and a
    /// check is too long for the processor to look far past it. So checks
    /// pay their cache misses one after another. `check_batch` hashes up to
    /// 32 keys and reads the lines of their home buckets back to back, with
    /// no compare-and-swap in between, so that their misses overlap; then it
    /// makes each check, in order, on lines already in cache. Measured with
    /// `compare` (64 keys a call, the same random order for every side), 1M
    /// keys: 40–47 ns a key, against 100–190 ns with `check` and 160–400 ns
    /// with governor's `check_key` in the same runs (a noisy machine; the
    /// ratio to governor stayed within 0.16–0.25). 1K keys, in cache: 15–16
    /// ns against 18–19 ns with `check`.
    ///
    /// `keys` yields references: `&[u64]`, `&Vec<String>`, or
    /// `names.iter().copied()` for `str` keys (a key hashes as with `check`,
    /// so `&&str` and `&str` reach the same limiter).
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tollgate::keyed::{KeyedDecision, KeyedLimiter};
    /// use tollgate::{Nanos, Quota};
    ///
    /// let store = KeyedLimiter::new(100_000).unwrap();
    /// let q = Quota::per_minute(NonZeroU32::new(2).unwrap());
    /// let now = Nanos::ZERO;
    ///
    /// // One decision per key, in order: "b" is checked three times.
    /// let names = ["a", "b", "b", "c", "b"];
    /// let mut allowed = [false; 5];
    /// store.check_batch(names.iter().copied(), &q, now, |i, d| allowed[i] = d.is_allowed());
    /// assert_eq!(allowed, [true, true, true, true, false]);
    /// assert!(!store.check("b", &q, now).is_allowed()); // the same limiter as `check`'s
    ///
    /// // Numeric keys from a slice; decisions into an array (no allocation).
    /// let ids: [u64; 3] = [7, 8, 7];
    /// let mut out = [KeyedDecision::StoreFull; 3];
    /// store.check_batch(&ids, &q, now, |i, d| out[i] = d);
    /// assert!(out.iter().all(|d| d.is_allowed()));
    /// ```
    pub fn check_batch<'k, K, I>(
        &self,
        keys: I,
        quota: &A::Quota,
        now: Nanos,
        mut each: impl FnMut(usize, KeyedDecision),
    ) where
        K: Hash + ?Sized + 'k,
        I: IntoIterator<Item = &'k K>,
    {
        let mut keys = keys.into_iter();
        let mut at = [(0u64, 0usize); BATCH];
        let mut index = 0;
        loop {
            let mut n = 0;
            while n < BATCH {
                let Some(key) = keys.next() else { break };
                at[n] = self.locate(key);
                n += 1;
            }
            let chunk = &at[..n];
            self.touch(chunk);
            // The checks themselves, in order, exactly as `check` makes them:
            // `touch` only moved lines into the cache.
            for &(fp, home) in chunk {
                each(index, self.check_at(fp, home, quota, now, 1));
                index += 1;
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// `check_n` of the key with fingerprint `fp` and home bucket `home`
    /// (`check_n` keeps its own copy: routed through here it stopped being
    /// inlined into callers, 18 -> 24 ns a check at 1K keys).
    #[inline(always)]
    fn check_at(
        &self,
        fp: u64,
        home: usize,
        quota: &A::Quota,
        now: Nanos,
        cost: u32,
    ) -> KeyedDecision {
        let step = move |state| self.algorithm.decide(quota, state, now, cost);
        match self.transact_at(fp, home, now, Mode::Tighten, step) {
            Ok(d) => KeyedDecision::Decided(d),
            Err(d) => match self.when_full {
                WhenFull::AllowUntracked => KeyedDecision::Untracked(d),
                _ => KeyedDecision::StoreFull,
            },
        }
    }

    /// The decision `check_n` would make for `cost` units of `key` at `now`,
    /// without consuming anything or inserting the key (read-only). Used to
    /// check several limits before charging any of them. It reads the limit,
    /// not the table: for a new key in a full store it answers the fresh
    /// decision, where `check_n` may then answer
    /// [`KeyedDecision::StoreFull`] (never more admitted than probed).
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
        let step = |state| (self.algorithm.decide(quota, state, now, cost).0, None);
        match self.transact(key, now, Mode::Tighten, step) {
            Ok(d) | Err(d) => d,
        }
    }

    /// The state of `key` at `now` without consuming anything. A key not
    /// tracked reads as fresh.
    pub fn peek<K: Hash + ?Sized>(&self, key: &K, quota: &A::Quota, now: Nanos) -> Snapshot {
        let step = |state| (self.algorithm.snapshot(quota, state, now), None);
        match self.transact(key, now, Mode::Tighten, step) {
            Ok(s) | Err(s) => s,
        }
    }

    /// Gives back `cost` units of `key` that were admitted but not used
    /// (never beyond a fresh state). Returns the state after. A key not
    /// tracked is already fresh: nothing to give back.
    ///
    /// Refund promptly, at a `now` no older than the key's last check: for
    /// the window algorithms the units come off the window the *stored* state
    /// holds, which is a later one than the charge's if the window rolled
    /// over (or another thread counted there with a fresher clock) — one unit
    /// too many given back. [`refund_since`](Self::refund_since) gives only
    /// what the charge still weighs; the policy engine uses it.
    pub fn refund<K: Hash + ?Sized>(
        &self,
        key: &K,
        quota: &A::Quota,
        now: Nanos,
        cost: u32,
    ) -> Snapshot {
        self.give_back(key, quota, now, |state| {
            self.algorithm.refunded(quota, state, now, cost)
        })
    }

    /// Gives back, at `now`, `cost` units charged to `key` at `charged_at`,
    /// as far as that charge still weighs (see
    /// [`KeyedAlgorithm::refunded_since`]): the refund of a request whose
    /// response came back after its window rolled over, or after the
    /// bucket refilled, gives back nothing. Returns the key's read-out.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tollgate::keyed::KeyedLimiter;
    /// use tollgate::{Nanos, Quota};
    ///
    /// let store = KeyedLimiter::new(100).unwrap();
    /// // A unit every 30 s, at most 2 at once.
    /// let q = Quota::per_minute(NonZeroU32::new(2).unwrap());
    /// let t0 = Nanos::ZERO;
    /// assert!(store.check("k", &q, t0).is_allowed());
    /// assert!(store.check("k", &q, t0).is_allowed());
    /// // Refunded at once: the unit comes back.
    /// assert_eq!(store.refund_since("k", &q, t0, t0, 1).remaining, 1);
    /// assert!(store.check("k", &q, t0).is_allowed());
    /// // 30 s later a unit has come back by itself; the charge made at t0
    /// // weighs nothing any more, so its refund gives nothing back.
    /// let t1 = Nanos::from_secs(30);
    /// assert_eq!(store.refund_since("k", &q, t0, t1, 1).remaining, 1);
    /// assert!(store.check("k", &q, t1).is_allowed());
    /// assert!(!store.check("k", &q, t1).is_allowed());
    /// ```
    pub fn refund_since<K: Hash + ?Sized>(
        &self,
        key: &K,
        quota: &A::Quota,
        charged_at: Nanos,
        now: Nanos,
        cost: u32,
    ) -> Snapshot {
        self.give_back(key, quota, now, |state| {
            self.algorithm
                .refunded_since(quota, state, charged_at, now, cost)
        })
    }

    /// Loosens `key`'s state to `refunded(state)` (`None`: unchanged) under
    /// the slot's bucket lock (`Mode::Loosen`), and reads it out at `now`.
    fn give_back<K: Hash + ?Sized>(
        &self,
        key: &K,
        quota: &A::Quota,
        now: Nanos,
        refunded: impl Fn(u64) -> Option<u64>,
    ) -> Snapshot {
        let step = |state| match refunded(state) {
            Some(new) => (self.algorithm.snapshot(quota, new, now), Some(new)),
            None => (self.algorithm.snapshot(quota, state, now), None),
        };
        match self.transact(key, now, Mode::Loosen, step) {
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

/// A CAS loop on `slot`'s state: `step` gives the result and the state to
/// store (`None`: leave it). For callers that hold the slot's bucket lock,
/// where the slot cannot change hands.
fn update<R>(slot: &Slot, step: impl Fn(u64) -> (R, Option<u64>)) -> R {
    let mut cur = slot.st.load(Ordering::Acquire);
    loop {
        let (r, new) = step(cur);
        let Some(new) = new else { return r };
        // AcqRel: every state write is an RMW (see `KeyedLimiter`'s "Memory
        // ordering").
        match slot
            .st
            .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return r,
            Err(actual) => cur = actual,
        }
    }
}

struct LockGuard<'a>(&'a AtomicU64);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire in `KeyedLimiter::lock`.
        self.0.fetch_and(!LOCKED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
