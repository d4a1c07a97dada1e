//! Loom models of the keyed store's insertion and reclamation paths.
//!
//! `RUSTFLAGS="--cfg tollgate_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p tollgate --test loom_keyed --release`
#![cfg(tollgate_loom)]

use std::num::NonZeroU32;

use loom::sync::Arc;
use loom::thread;
use tollgate::keyed::{KeyedGcra, KeyedLimiter};
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

/// Insertion of a new key reclaiming fresh slots races an update of an old
/// key in one of them: neither update is lost.
#[test]
fn insert_racing_reclamation() {
    let t0 = Nanos::ZERO;
    let t1 = Nanos::from_secs(1);
    // Filling the table is a long single-threaded prefix: raise the branch
    // limit (it counts operations, not interleavings).
    let mut model = loom::model::Builder::new();
    model.max_branches = 100_000;
    model.check(move || {
        let s = Arc::new(store());
        // Fill the whole table at t0; at t1 every state is fresh.
        let mut k = 0u32;
        while s.check(&k, &quota(1), t0).is_allowed() {
            k += 1;
        }
        let s2 = s.clone();
        let t = thread::spawn(move || s2.check(&0u32, &quota(2), t1).is_allowed());
        let new_key = s.check("new", &quota(2), t1).is_allowed();
        assert!(new_key);
        assert!(t.join().unwrap());
        // Each holds exactly one unit of its two.
        assert_eq!(s.peek(&0u32, &quota(2), t1).remaining, 1);
        assert_eq!(s.peek("new", &quota(2), t1).remaining, 1);
    });
}
