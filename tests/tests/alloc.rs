//! Zero allocations per check after construction, counted by a global
//! allocator, on every path of the keyed store (hit, insert, reclaim, full,
//! denial, refund, peek; `check_batch`) and of the core limiters.

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to
// the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::num::NonZeroU32;

use tollgate::keyed::{KeyedDecision, KeyedLimiter, WhenFull};
use tollgate::{All, Gcra, Nanos, Quota, SlidingLog};

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on parallel threads; a
    /// `const` thread-local with no destructor never allocates itself).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    ALLOCATIONS.with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call unchanged to `System`, which upholds the
// GlobalAlloc contract; the counter has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn no_allocation_on_any_check_path() {
    let q = Quota::per_second(NonZeroU32::new(2).unwrap());
    let stores = [
        KeyedLimiter::new(64).unwrap(),
        KeyedLimiter::new(64)
            .unwrap()
            .when_full(WhenFull::AllowUntracked),
        KeyedLimiter::new(64)
            .unwrap()
            .when_full(WhenFull::EvictNearestFresh),
    ];
    let gcra = Gcra::new(q);
    let log = SlidingLog::<4>::new(Nanos::from_secs(1)).unwrap();
    let n = allocations_during(|| {
        for store in &stores {
            for round in 0..3u64 {
                let now = Nanos::from_secs(round); // fresh again each round: reclaim
                for key in 0..500u64 {
                    // Inserts, hits, denials, a full store (500 keys > 64).
                    for _ in 0..3 {
                        let _ = store.check(&key, &q, now);
                    }
                    let _ = store.check_n("a str key", &q, now, 5); // exceeds
                    let _ = store.peek(&key, &q, now);
                    let _ = store.refund(&key, &q, now, 1);
                }
            }
        }
        for t in 0..100 {
            let _ = gcra.check(Nanos::new(t));
            let _ = log.check_n(Nanos::new(t), 2);
            let _ = All((&gcra, &log)).check_all(Nanos::new(t), 1);
        }
    });
    assert_eq!(n, 0, "{n} allocations on check paths");
}

#[test]
fn check_batch_allocates_nothing() {
    let q = Quota::per_second(NonZeroU32::new(2).unwrap());
    let stores = [
        WhenFull::Deny,
        WhenFull::AllowUntracked,
        WhenFull::EvictNearestFresh,
    ]
    .map(|p| KeyedLimiter::new(64).unwrap().when_full(p));
    let ids: Vec<u64> = (0..500u64).map(|k| k % 97).collect();
    let names: Vec<String> = (0..200).map(|k| format!("client-{}", k % 50)).collect();
    let strs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out = [KeyedDecision::StoreFull; 500];
    let n = allocations_during(|| {
        for store in &stores {
            for round in 0..3u64 {
                // Fresh again each round: reclaimed slots. 97 and 50 keys in a
                // 64-key store: inserts, hits, denials, a full store.
                let now = Nanos::from_secs(round);
                store.check_batch(&ids, &q, now, |i, d| out[i] = d);
                store.check_batch(&names, &q, now, |i, d| out[i] = d);
                store.check_batch(strs.iter().copied(), &q, now, |i, d| out[i] = d);
                store.check_batch(ids.iter().take(5), &q, now, |i, d| out[i] = d);
                store.check_batch(std::iter::empty::<&u64>(), &q, now, |i, d| out[i] = d);
            }
        }
    });
    assert_eq!(n, 0, "{n} allocations on the batch path");
    assert!(out[..5].iter().all(|d| d.decision().is_some()));
}

#[test]
fn the_counter_sees_allocations() {
    // The test above is only meaningful if the counter works.
    let n = allocations_during(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(16));
        std::hint::black_box(v);
    });
    assert!(n >= 1);
}
