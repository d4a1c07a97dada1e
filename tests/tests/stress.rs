//! Real threads hammering one `Gcra` while a driver thread moves a shared
//! `ManualClock`: the total admitted must be *exactly* the bound.
//!
//! The driver advances the clock by one emission interval only after the
//! bucket has been drained at the current time, so every unit of capacity
//! is taken and the exact count is `burst + steps × units_per_step`. A single
//! over-admission anywhere shows up as a larger total; no sleeps are used for
//! correctness.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use tollgate::{Clock, Gcra, ManualClock, Nanos, Quota};

fn threads() -> usize {
    thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(4)
}

/// Runs `threads` workers checking `cost` units while the driver advances
/// the clock `steps` times by `cost` intervals. Returns total admitted cost.
fn hammer(quota: Quota, cost: u32, steps: u64) -> u64 {
    let gcra = Arc::new(Gcra::new(quota));
    let clock = Arc::new(ManualClock::new(Nanos::from_secs(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let admitted = Arc::new(AtomicU64::new(0));

    let workers: Vec<_> = (0..threads())
        .map(|_| {
            let (gcra, clock, stop, admitted) =
                (gcra.clone(), clock.clone(), stop.clone(), admitted.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if gcra.check_n(clock.now(), cost).is_allowed() {
                        admitted.fetch_add(u64::from(cost), Ordering::Relaxed);
                    } else {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();

    let step = Nanos::new(quota.emission_interval().as_u64() * u64::from(cost));
    let drained = |now| gcra.peek(now).remaining < cost;
    for _ in 0..steps {
        while !drained(clock.now()) {
            thread::yield_now();
        }
        clock.advance(step);
    }
    while !drained(clock.now()) {
        thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    for w in workers {
        w.join().unwrap();
    }
    admitted.load(Ordering::Relaxed)
}

#[test]
fn unit_cost_admits_exactly_the_bound() {
    let quota =
        Quota::per_second(NonZeroU32::new(1_000).unwrap()).with_burst(NonZeroU32::new(50).unwrap());
    let steps = 5_000;
    assert_eq!(hammer(quota, 1, steps), 50 + steps);
}

#[test]
fn multi_unit_cost_admits_exactly_the_bound() {
    let quota =
        Quota::per_minute(NonZeroU32::new(600).unwrap()).with_burst(NonZeroU32::new(9).unwrap());
    let steps = 2_000;
    assert_eq!(hammer(quota, 3, steps), 9 + 3 * steps);
}

/// The same exact-bound check on a keyed store: threads hammer 64 keys (each
/// thread walks all keys, so every key is contended), the driver advances the
/// clock only when every key is drained. Each key must admit exactly its
/// bound; one lost update or duplicate insertion shows up as a mismatch.
#[test]
fn keyed_store_admits_exactly_the_bound_per_key() {
    use std::sync::atomic::AtomicUsize;
    use tollgate::keyed::KeyedLimiter;

    const KEYS: usize = 64;
    let quota =
        Quota::per_second(NonZeroU32::new(100).unwrap()).with_burst(NonZeroU32::new(5).unwrap());
    let steps = 300u64;
    let store = Arc::new(KeyedLimiter::new(4 * KEYS).unwrap());
    let clock = Arc::new(ManualClock::new(Nanos::from_secs(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let admitted: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));

    let workers: Vec<_> = (0..threads())
        .map(|_| {
            let (store, clock, stop, admitted, next) = (
                store.clone(),
                clock.clone(),
                stop.clone(),
                admitted.clone(),
                next.clone(),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let k = next.fetch_add(1, Ordering::Relaxed) % KEYS;
                    if store.check(&k, &quota, clock.now()).is_allowed() {
                        admitted[k].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let drained = |now| (0..KEYS).all(|k| store.peek(&k, &quota, now).remaining == 0);
    for _ in 0..steps {
        while !drained(clock.now()) {
            thread::yield_now();
        }
        clock.advance(quota.emission_interval());
    }
    while !drained(clock.now()) {
        thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    for w in workers {
        w.join().unwrap();
    }
    for (k, a) in admitted.iter().enumerate() {
        assert_eq!(a.load(Ordering::Relaxed), 5 + steps, "key {k}");
    }
}
