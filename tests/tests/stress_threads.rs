//! Sixteen real threads against one limiter while a separate driver thread
//! moves a shared [`ManualClock`] in fixed steps; at the end the admitted
//! cost must equal *exactly* the bound the model computes for the time span
//! covered, and semaphores must never exceed their limit (high-water mark)
//! and end with nothing in use.
//!
//! What this adds to `stress.rs` (4 threads, one cost per run, a driver that
//! waits for a full drain before each step):
//!
//! * 16 worker threads plus the driver. This machine has 2 cores, so the 17
//!   threads are oversubscribed on purpose: workers are preempted between
//!   reading the clock and checking, in the middle of CAS loops, while
//!   holding the keyed store's insertion lock, or while holding permits.
//! * Mixed costs per call (1..=4) and refunds (1 admission in 8 is given
//!   back, at a later clock reading), on the core [`Gcra`] and on the keyed
//!   store.
//! * The driver does not wait for a drain: it moves on as soon as fewer than
//!   `PACE` units are left, so admissions race with clock steps. Steps are
//!   3⅓ emission intervals, so the `floor` in the bound matters.
//! * The keyed store also serves "churn" keys whose state turns fresh after
//!   every step, in a store small enough that their slots are reclaimed and
//!   re-inserted all the time around the tracked keys.
//! * A core [`Semaphore`] and a [`KeyedSemaphore`] under the same 16 threads,
//!   with a high-water mark kept outside the semaphore.
//!
//! # Why the count is exact whatever the scheduling
//!
//! With emission interval `T`, burst `B` and the clock moved from `t0` to
//! `t1`, the model admits (net of refunds) exactly
//! `B + floor((t1 − t0) / T)` once the limiter is drained at `t1`, provided
//! it never sat full while time passed (no capacity wasted) and no refund
//! was cut short at `now`. Both hold here by construction, not by timing:
//!
//! * the clock does not move from `t0` until the workers have taken all but
//!   `PACE` units at `t0`, so the first admission is at `t0`;
//! * the driver moves the clock by `STEP ≤ 4T` only when fewer than `PACE`
//!   units are left, i.e. when `TAT − now > (B − PACE)·T`. Refunds after that
//!   can undo at most one admission per thread (`THREADS × MAX_COST` units),
//!   so `TAT − clock > (B − PACE − THREADS·MAX_COST − 4)·T ≥ 0` at all times:
//!   the TAT is never behind the clock (no waste, no reset) and every refund
//!   moves it back by exactly `cost × T`;
//! * then `TAT = t0 + net × T`; each worker ends with a unit check at `t1`
//!   that is refused, so `TAT + T − t1 > B·T`, and every admission kept
//!   `TAT ≤ t1 + B·T`: `net = B + floor((t1 − t0) / T)`.
//!
//! The clock is only advanced and read; no sleeps are used for correctness
//! (threads `yield_now` when refused). A watchdog turns a hang into a
//! failure after `WATCHDOG`. Costs, keys and refunds come from per-thread
//! generators seeded from `STRESS_SEED` (or the time), printed on failure;
//! the interleavings themselves are not reproducible.

mod stress_support;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tollgate::keyed::{ConcurrencyRefused, KeyedDecision, KeyedLimiter, KeyedSemaphore};
use tollgate::{AcquireError, Clock, Gcra, ManualClock, Nanos, Quota, Semaphore};

use stress_support::{Rng, seed};

/// Worker threads (the driver is one more).
const THREADS: usize = 16;
/// Largest cost of one check.
const MAX_COST: u32 = 4;
/// Emission interval: 10^6 per second.
const T: u64 = 1_000;
/// Burst: large enough that the TAT never falls behind the clock (see the
/// module docs): `B − PACE − THREADS·MAX_COST − STEP/T ≥ 0`.
const BURST: u32 = 100;
/// The driver steps once fewer than this many units are left.
const PACE: u32 = 4;
/// One clock step: 3⅓ intervals.
const STEP: u64 = 3 * T + T / 3;
/// Start of the run.
const T0: Nanos = Nanos::from_secs(1);
/// A hang becomes a failure after this long.
const WATCHDOG: Duration = Duration::from_secs(60);

const _: () =
    assert!(BURST as u64 >= PACE as u64 + THREADS as u64 * MAX_COST as u64 + STEP.div_ceil(T));

fn quota() -> Quota {
    Quota::per_second(NonZeroU32::new(1_000_000).unwrap())
        .with_burst(NonZeroU32::new(BURST).unwrap())
}

/// The model's bound for the clock moved by `steps` steps.
fn bound(steps: u64) -> u64 {
    u64::from(BURST) + steps * STEP / T
}

impl Rng {
    /// A cost in `1..=MAX_COST`.
    fn cost(&mut self) -> u32 {
        1 + self.below(MAX_COST)
    }
}

/// The driver: waits (yielding) until `ready(now)` says enough was taken at
/// the current time, then advances the clock by `STEP`, `steps` times; sets
/// `done` at the end (also when the watchdog fires, then panics).
fn drive(clock: &ManualClock, done: &AtomicBool, steps: u64, ready: impl Fn(Nanos) -> bool) {
    let start = Instant::now();
    for step in 0..steps {
        while !ready(clock.now()) {
            if start.elapsed() > WATCHDOG {
                done.store(true, Ordering::Release);
                panic!("driver stuck at step {step} of {steps}");
            }
            thread::yield_now();
        }
        clock.advance(Nanos::new(STEP));
    }
    // Release: the workers' final round reads the clock after seeing this.
    done.store(true, Ordering::Release);
}

/// (a) One core `Gcra`, 16 threads, mixed costs, refunds, a free-running
/// driver: net admitted == `B + floor((t1 − t0) / T)`.
#[test]
fn gcra_16_threads_admit_exactly_the_bound() {
    const STEPS: u64 = 100_000;
    let seed = seed();
    let gcra = Gcra::new(quota());
    let clock = ManualClock::new(T0);
    let done = AtomicBool::new(false);

    let (admitted, refunded, refusals) = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|i| {
                let (gcra, clock, done) = (&gcra, &clock, &done);
                s.spawn(move || {
                    let mut rng = Rng::new(seed, i);
                    let (mut admitted, mut refunded, mut refusals) = (0u64, 0u64, 0u64);
                    while !done.load(Ordering::Acquire) {
                        let cost = rng.cost();
                        if gcra.check_n(clock.now(), cost).is_allowed() {
                            admitted += u64::from(cost);
                            if rng.below(8) == 0 {
                                let _ = gcra.refund(clock.now(), cost);
                                refunded += u64::from(cost);
                            }
                        } else {
                            refusals += 1;
                            thread::yield_now();
                        }
                    }
                    // Final round at the last time: take what is left.
                    while gcra.check_n(clock.now(), 1).is_allowed() {
                        admitted += 1;
                    }
                    (admitted, refunded, refusals)
                })
            })
            .collect();
        drive(&clock, &done, STEPS, |now| gcra.peek(now).remaining < PACE);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    });

    let t1 = clock.now();
    assert_eq!(t1.as_u64() - T0.as_u64(), STEPS * STEP);
    let net = admitted - refunded;
    eprintln!(
        "gcra: {THREADS} threads, {STEPS} steps, admitted {admitted}, refunded {refunded}, \
         refused {refusals}, net {net} (seed {seed})"
    );
    assert_eq!(
        net,
        bound(STEPS),
        "net admitted (admitted {admitted} − refunded {refunded}) != B + floor((t1 − t0) / T); \
         seed {seed}"
    );
    assert_eq!(gcra.peek(t1).remaining, 0, "seed {seed}");
}

/// (b) One `KeyedLimiter`: 16 threads on 8 tracked keys (every thread on
/// every key) with mixed costs and refunds, plus churn keys that go fresh
/// after every step in a store of capacity 64, so slots are reclaimed and
/// claimed around the tracked keys all the time. Each tracked key's net
/// admitted == `B + floor((t1 − t0) / T)`; a tracked key is never refused
/// for lack of a slot (it is never fresh, so it never loses its slot).
#[test]
fn keyed_store_16_threads_admit_exactly_the_bound_per_key() {
    const KEYS: u32 = 8;
    const STEPS: u64 = 50_000;
    let seed = seed();
    let quota = quota();
    // One unit per interval, burst 1: fresh again one interval after use.
    let churn_quota = Quota::per_second(NonZeroU32::new(1_000_000).unwrap());
    let store = KeyedLimiter::new(64).unwrap();
    let clock = ManualClock::new(T0);
    let done = AtomicBool::new(false);
    let lost = AtomicU64::new(0);

    let totals = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|i| {
                let (store, clock, done, lost) = (&store, &clock, &done, &lost);
                let (quota, churn_quota) = (&quota, &churn_quota);
                s.spawn(move || {
                    let mut rng = Rng::new(seed, i);
                    let mut admitted = [0u64; KEYS as usize];
                    let mut refunded = [0u64; KEYS as usize];
                    let (mut churn_admitted, mut churn_full) = (0u64, 0u64);
                    while !done.load(Ordering::Acquire) {
                        let now = clock.now();
                        // Churn only once the clock has left t0 (so the
                        // tracked keys are in the table first).
                        if now > T0 && rng.below(4) == 0 {
                            let key = 1_000 + u64::from(rng.below(4_096));
                            match store.check(&key, churn_quota, now) {
                                KeyedDecision::StoreFull => churn_full += 1,
                                d if d.is_allowed() => churn_admitted += 1,
                                _ => {}
                            }
                            continue;
                        }
                        let k = rng.below(KEYS);
                        let cost = rng.cost();
                        match store.check_n(&u64::from(k), quota, now, cost) {
                            KeyedDecision::StoreFull => {
                                lost.fetch_add(1, Ordering::Relaxed);
                            }
                            d if d.is_allowed() => {
                                admitted[k as usize] += u64::from(cost);
                                if rng.below(8) == 0 {
                                    let _ = store.refund(&u64::from(k), quota, clock.now(), cost);
                                    refunded[k as usize] += u64::from(cost);
                                }
                            }
                            _ => thread::yield_now(),
                        }
                    }
                    // Final round at the last time, on every tracked key.
                    let now = clock.now();
                    for (k, a) in (0u64..).zip(admitted.iter_mut()) {
                        while store.check(&k, quota, now).is_allowed() {
                            *a += 1;
                        }
                    }
                    (admitted, refunded, churn_admitted, churn_full)
                })
            })
            .collect();
        drive(&clock, &done, STEPS, |now| {
            (0..u64::from(KEYS)).all(|k| store.peek(&k, &quota, now).remaining < PACE)
        });
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });

    let t1 = clock.now();
    let mut net = [0u64; KEYS as usize];
    let (mut churn_admitted, mut churn_full) = (0, 0);
    for (admitted, refunded, ca, cf) in &totals {
        for k in 0..KEYS as usize {
            net[k] += admitted[k] - refunded[k];
        }
        churn_admitted += ca;
        churn_full += cf;
    }
    eprintln!(
        "keyed: {THREADS} threads, {KEYS} keys, {STEPS} steps, net per key {net:?}, \
         churn admitted {churn_admitted}, churn store-full {churn_full} (seed {seed})"
    );
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "a tracked key was refused for lack of a slot; seed {seed}"
    );
    for (k, n) in (0u64..).zip(&net) {
        assert_eq!(
            *n,
            bound(STEPS),
            "key {k}: net admitted != B + floor((t1 − t0) / T); all keys {net:?}; seed {seed}"
        );
        assert_eq!(store.peek(&k, &quota, t1).remaining, 0, "key {k}");
    }
    assert!(churn_admitted > 0, "the churn keys never got a slot");
}

/// Bookkeeping outside a semaphore: incremented after an acquire,
/// decremented before the release, with a high-water mark.
struct Held {
    now: AtomicU32,
    high: AtomicU32,
}

impl Held {
    const fn new() -> Held {
        Held {
            now: AtomicU32::new(0),
            high: AtomicU32::new(0),
        }
    }

    fn take(&self, n: u32) -> u32 {
        let held = self.now.fetch_add(n, Ordering::AcqRel) + n;
        self.high.fetch_max(held, Ordering::AcqRel);
        held
    }

    fn give(&self, n: u32) {
        self.now.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A short stretch of work while holding permits; now and then a yield, so
/// a holder is descheduled with its permits taken.
fn hold(rng: &mut Rng) {
    if rng.below(4) == 0 {
        thread::yield_now();
    } else {
        for _ in 0..rng.below(64) {
            std::hint::spin_loop();
        }
    }
}

/// (c) A core `Semaphore` of 5 under 16 threads taking 1..=3 permits (and
/// sometimes more than the limit), through guards and through
/// `forget` + `release`: never more than 5 held, nothing held at the end.
#[test]
fn semaphore_16_threads_never_exceed_max() {
    const MAX: u32 = 5;
    const ITERS: u32 = 200_000;
    let seed = seed();
    let sem = Semaphore::new(MAX);
    let held = Held::new();
    let over = AtomicU32::new(0);

    let acquired: u64 = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|i| {
                let (sem, held, over) = (&sem, &held, &over);
                s.spawn(move || {
                    let mut rng = Rng::new(seed, i);
                    let mut acquired = 0u64;
                    for _ in 0..ITERS {
                        let n = 1 + rng.below(3);
                        if rng.below(64) == 0 {
                            assert_eq!(
                                sem.try_acquire(MAX + 1).err(),
                                Some(AcquireError::TooMany {
                                    requested: MAX + 1,
                                    max: MAX
                                })
                            );
                        }
                        match sem.try_acquire(n) {
                            Ok(permit) => {
                                acquired += 1;
                                if held.take(n) > MAX {
                                    over.fetch_add(1, Ordering::Relaxed);
                                }
                                hold(&mut rng);
                                held.give(n);
                                if rng.below(4) == 0 {
                                    let kept = permit.forget();
                                    sem.release(kept).unwrap();
                                } else {
                                    drop(permit);
                                }
                            }
                            Err(AcquireError::Full { .. }) => thread::yield_now(),
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    acquired
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });

    let high = held.high.load(Ordering::Relaxed);
    eprintln!(
        "semaphore: {THREADS} threads × {ITERS} iterations, {acquired} acquired, \
         high-water {high} of {MAX} (seed {seed})"
    );
    assert_eq!(
        over.load(Ordering::Relaxed),
        0,
        "held more than {MAX}; high-water {high}; seed {seed}"
    );
    assert!(high <= MAX);
    assert_eq!(sem.in_use(), 0);
    assert_eq!(held.now.load(Ordering::Relaxed), 0);
}

/// (c) A `KeyedSemaphore` with 8 keys of limits 1, 2, 3 (per call) and churn
/// keys, in a store of capacity 16: keys whose permits all return are fresh
/// and lose their slot, so tracked keys are removed and re-inserted all the
/// time under 16 threads. Per key: never more than its limit held, nothing
/// held at the end.
#[test]
fn keyed_semaphore_16_threads_never_exceed_max_per_key() {
    const KEYS: u32 = 8;
    const ITERS: u32 = 100_000;
    let limit = |k: u32| 1 + k % 3;
    let seed = seed();
    let sem = KeyedSemaphore::new(16).unwrap();
    let held: Vec<Held> = (0..KEYS).map(|_| Held::new()).collect();
    let over = AtomicU32::new(0);

    let (acquired, full) = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|i| {
                let (sem, held, over) = (&sem, &held, &over);
                s.spawn(move || {
                    let mut rng = Rng::new(seed, i);
                    let (mut acquired, mut full) = (0u64, 0u64);
                    for _ in 0..ITERS {
                        if rng.below(4) == 0 {
                            // A churn key, held briefly.
                            let key = 1_000 + u64::from(rng.below(256));
                            if let Ok(p) = sem.try_acquire(&key, 1, 1) {
                                hold(&mut rng);
                                drop(p);
                            }
                            continue;
                        }
                        let k = rng.below(KEYS);
                        let max = limit(k);
                        let n = 1 + rng.below(max);
                        match sem.try_acquire(&u64::from(k), max, n) {
                            Ok(permit) => {
                                acquired += 1;
                                let held = &held[k as usize];
                                if held.take(n) > max {
                                    over.fetch_add(1, Ordering::Relaxed);
                                }
                                hold(&mut rng);
                                held.give(n);
                                drop(permit);
                            }
                            Err(ConcurrencyRefused::Full { .. }) => thread::yield_now(),
                            Err(ConcurrencyRefused::StoreFull) => full += 1,
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    (acquired, full)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });

    let highs: Vec<u32> = held
        .iter()
        .map(|h| h.high.load(Ordering::Relaxed))
        .collect();
    eprintln!(
        "keyed semaphore: {THREADS} threads × {ITERS} iterations, {acquired} acquired, \
         {full} store-full, high-water per key {highs:?} (seed {seed})"
    );
    assert_eq!(
        over.load(Ordering::Relaxed),
        0,
        "a key held more than its limit; high-water {highs:?}; seed {seed}"
    );
    for ((k, high), held) in (0..KEYS).zip(&highs).zip(&held) {
        assert!(*high <= limit(k), "key {k}: high-water {high}");
        assert_eq!(sem.in_use(&u64::from(k)), 0, "key {k}");
        assert_eq!(held.now.load(Ordering::Relaxed), 0);
    }
    for key in 1_000..1_256u64 {
        assert_eq!(sem.in_use(&key), 0, "churn key {key}");
    }
}
