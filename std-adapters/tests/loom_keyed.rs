//! Loom models of the keyed store's insertion and reclamation paths.
//!
//! `RUSTFLAGS="--cfg tollgate_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p tollgate --test loom_keyed --release`
#![cfg(tollgate_loom)]

use std::num::NonZeroU32;

use loom::sync::Arc;
use loom::thread;
use tollgate::keyed::{KeyedDecision, KeyedGcra, KeyedLimiter, KeyedSemaphore};
use tollgate::{Nanos, Quota};

fn quota(burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(burst).unwrap())
}

fn store() -> KeyedLimiter<KeyedGcra, ahash::RandomState> {
    KeyedLimiter::with_hasher(1, KeyedGcra, ahash::RandomState::with_seeds(1, 2, 3, 4)).unwrap()
}

/// Two threads insert the same new key with one unit of budget: exactly one
/// is admitted (a duplicate insertion would admit both).
#[test]
fn same_new_key_inserted_once() {
    loom::model(|| {
        let s = Arc::new(store());
        let s2 = s.clone();
        let t = thread::spawn(move || s2.check("k", &quota(1), Nanos::ZERO).is_allowed());
        let here = s.check("k", &quota(1), Nanos::ZERO).is_allowed();
        assert!(here ^ t.join().unwrap());
        assert_eq!(s.occupied(), 1);
    });
}

/// A batch naming a new key twice races a single check of the same key, with
/// two units of budget: exactly two of the three checks are admitted and the
/// key has one slot. (The batch's early reads of the bucket decide nothing:
/// each key is checked as `check` would, after them.)
#[test]
fn batch_racing_check_of_the_same_new_key() {
    loom::model(|| {
        let s = Arc::new(store());
        let s2 = s.clone();
        let t = thread::spawn(move || s2.check("k", &quota(2), Nanos::ZERO).is_allowed());
        let mut admitted = 0;
        s.check_batch(["k", "k"], &quota(2), Nanos::ZERO, |_, d| {
            admitted += usize::from(d.is_allowed())
        });
        admitted += usize::from(t.join().unwrap());
        assert_eq!(admitted, 2);
        assert_eq!(s.occupied(), 1);
    });
}

/// Insertion of a new key reclaiming fresh slots races an update of an old
/// key in one of them: neither update is lost. Identity hashing puts every
/// key in one window; at t1 every slot is fresh and the new key takes the
/// first fresh one — key 1's, unless key 1's check came first.
#[test]
fn insert_racing_reclamation() {
    let t0 = Nanos::ZERO;
    let t1 = Nanos::from_secs(1);
    builder().check(move || {
        let s = Arc::new(KeyedLimiter::with_hasher(1, KeyedGcra, Identity).unwrap());
        // Fill the window at t0; at t1 every state is fresh.
        for k in 1..=WINDOW {
            assert!(s.check(&k, &quota(1), t0).is_allowed());
        }
        assert_eq!(s.check(&999u64, &quota(1), t0), KeyedDecision::StoreFull);
        let s2 = s.clone();
        let t = thread::spawn(move || s2.check(&1u64, &quota(2), t1).is_allowed());
        let new_key = s.check(&100u64, &quota(2), t1).is_allowed();
        assert!(new_key);
        assert!(t.join().unwrap());
        // Each holds exactly one unit of its two.
        assert_eq!(s.peek(&1u64, &quota(2), t1).remaining, 1);
        assert_eq!(s.peek(&100u64, &quota(2), t1).remaining, 1);
    });
}

/// Maps a `u64` key to itself, so a model can choose where keys live: keys
/// below 2^56 / homes all have home bucket 0 and one 64-slot probe window.
#[derive(Clone, Copy, Default)]
struct Identity;
impl std::hash::BuildHasher for Identity {
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

/// Slots in a key's probe window (8 buckets of 8). Each model checks after
/// its setup that the window is really full (a new key is refused), so a
/// change of the window's size fails the models instead of letting the
/// racing insertion find an empty slot and pass without a handover.
const WINDOW: u64 = 64;

fn builder() -> loom::model::Builder {
    // Filling the window is a long single-threaded prefix: raise the branch
    // limit (it counts operations, not interleavings).
    let mut model = loom::model::Builder::new();
    model.max_branches = 1_000_000;
    model
}

/// Key 1 sits in the window's first slot with a state that is fresh at t1;
/// every other slot holds a key that is not. A check of key 1 races the
/// insertion of key 100, which must take key 1's slot: whatever the
/// interleaving, each key ends with exactly the one unit it was charged (no
/// charge lost, none landing on the other key).
#[test]
fn check_racing_handover_of_its_own_slot() {
    let t0 = Nanos::ZERO;
    let t1 = Nanos::from_secs(1);
    builder().check(move || {
        let s = Arc::new(KeyedLimiter::with_hasher(1, KeyedGcra, Identity).unwrap());
        assert!(s.check(&1u64, &quota(1), t0).is_allowed());
        let minute = Quota::per_minute(NonZeroU32::new(1).unwrap());
        for k in 2..=WINDOW {
            assert!(s.check(&k, &minute, t0).is_allowed());
        }
        assert_eq!(s.check(&99u64, &minute, t0), KeyedDecision::StoreFull);
        let s2 = s.clone();
        let t = thread::spawn(move || s2.check(&1u64, &quota(2), t1).is_allowed());
        let new_key = s.check(&100u64, &quota(2), t1).is_allowed();
        let old_key = t.join().unwrap();
        // Whoever comes second may find no slot: key 1 charged first makes
        // its slot not fresh (key 100 refused, store full); key 100 first
        // takes it (key 1 refused). Never both refused; a refused key is
        // charged nothing, an admitted one exactly one unit.
        assert!(new_key || old_key);
        let left = |admitted| if admitted { 1 } else { 2 };
        assert_eq!(s.peek(&1u64, &quota(2), t1).remaining, left(old_key));
        assert_eq!(s.peek(&100u64, &quota(2), t1).remaining, left(new_key));
    });
}

/// A refund that makes key 1 fresh races the insertion of key 100, which
/// can only get key 1's slot once it is fresh: the refund never lands on key
/// 100, and key 100 is admitted exactly when the slot was free for it.
#[test]
fn refund_racing_handover() {
    let t0 = Nanos::ZERO;
    let t1 = Nanos::from_secs(1);
    builder().check(move || {
        let s = Arc::new(KeyedLimiter::with_hasher(1, KeyedGcra, Identity).unwrap());
        let two = quota(1).with_burst(NonZeroU32::new(2).unwrap());
        // TAT 2 s: one unit ahead of t1.
        assert!(s.check_n(&1u64, &two, t0, 2).is_allowed());
        let minute = Quota::per_minute(NonZeroU32::new(1).unwrap());
        for k in 2..=WINDOW {
            assert!(s.check(&k, &minute, t0).is_allowed());
        }
        assert_eq!(s.check(&99u64, &minute, t0), KeyedDecision::StoreFull);
        let s2 = s.clone();
        let t = thread::spawn(move || s2.refund(&1u64, &two, t1, 1).remaining);
        let new_key = s.check(&100u64, &quota(2), t1);
        let refunded = t.join().unwrap();
        // After the refund key 1 is full again (fresh), whoever holds its slot.
        assert_eq!(refunded, 2);
        assert_eq!(s.peek(&1u64, &two, t1).remaining, 2);
        match new_key {
            KeyedDecision::Decided(d) => {
                assert!(d.is_allowed());
                assert_eq!(s.peek(&100u64, &quota(2), t1).remaining, 1);
            }
            KeyedDecision::StoreFull => {
                assert_eq!(s.peek(&100u64, &quota(2), t1).remaining, 2);
            }
            other => panic!("{other:?}"),
        }
    });
}

/// A permit of key 1 (whose count is 0, so its slot can be handed over)
/// races key 100 taking that slot and then taking and giving back a permit
/// of its own (its count back at 0: the value key 1's acquire compares
/// against). However the acquire lands, no count leaks and the limit holds.
#[test]
fn acquire_racing_handover_never_leaks_a_count() {
    builder().check(move || {
        let s = Arc::new(KeyedSemaphore::with_hasher(1, Identity).unwrap());
        let first = s.try_acquire(&1u64, 1, 1).unwrap();
        let held: Vec<_> = (2..=WINDOW)
            .map(|k| s.try_acquire(&k, 1, 1).unwrap())
            .collect();
        // The window is full while key 1 holds its permit.
        assert!(s.try_acquire(&99u64, 1, 1).is_err());
        drop(first);
        let s2 = s.clone();
        let t = thread::spawn(move || {
            let p = s2.try_acquire(&1u64, 1, 1);
            let got = p.is_ok();
            drop(p);
            got
        });
        if let Ok(p) = s.try_acquire(&100u64, 1, 1) {
            assert_eq!(s.in_use(&100u64), 1);
            drop(p);
        }
        t.join().unwrap();
        assert_eq!(s.in_use(&1u64), 0);
        assert_eq!(s.in_use(&100u64), 0);
        drop(held);
    });
}

/// An insertion claims an "empty" slot with `fp == 0` then
/// `CAS(state 0 -> first)`, two separate steps. Between them another home's
/// key Y can claim that slot, publish its fingerprint and release back to
/// state 0 (a count of 0 is fresh); the CAS then succeeds and overwrites Y's
/// fingerprint *without* a handover (no HANDOVER bit, no count, no
/// generation bump). A concurrent acquire of Y that read state 0 before the
/// overwrite then landed its CAS on X's slot and `kept` could not see it:
/// Y's held permit uncounted, a second one granted, X's count leaked. Now a
/// slot outside the inserter's home bucket is claimed under its own
/// bucket's lock, which a release to 0 needs too.
///
/// Bucket 0 is full of keys 1..=8 holding permits (home 0). X = 16 (home 0)
/// must go to bucket 1, slot 0. Y = 2^61 + 32 has home 1 and preferred slot
/// 0: the same slot, taken under another home lock.
#[test]
fn insert_claim_racing_a_released_neighbour_never_loses_a_permit() {
    const Y: u64 = (1 << 61) + 32;
    builder().check(move || {
        let s = Arc::new(KeyedSemaphore::with_hasher(1, Identity).unwrap());
        let held: Vec<_> = (1..=8u64)
            .map(|k| s.try_acquire(&k, 1, 1).unwrap())
            .collect();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            let x = s2.try_acquire(&16u64, 1, 1);
            drop(x);
        });
        drop(s.try_acquire(&Y, 1, 1));
        let y = s.try_acquire(&Y, 1, 1);
        t.join().unwrap();
        if y.is_ok() {
            // Y holds its one permit: it must read as in use, and a second
            // one must be refused (limit 1).
            assert_eq!(s.in_use(&Y), 1, "a held permit of Y is not counted");
            assert!(
                s.try_acquire(&Y, 1, 1).is_err(),
                "Y got 2 permits with a limit of 1"
            );
        }
        drop(y);
        assert_eq!(s.in_use(&16u64), 0, "X's count leaked");
        drop(held);
    });
}
