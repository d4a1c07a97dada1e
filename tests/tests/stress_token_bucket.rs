//! Sixteen real threads against one [`TokenBucket`] while a driver thread
//! moves a shared [`ManualClock`]: admissions by `fetch_sub` and by the
//! read-first compare-exchange, refusals opening and joining episodes (the
//! opener restores the count), claims of refills racing each other and the
//! admissions, and refunds, all at once.
//!
//! What is proven, per run:
//!
//! * **The bound.** With burst `B`, emission interval `T` and the clock moved
//!   from `t0` to `t1`, net admitted cost (admitted − refunded) is at most
//!   `B + floor((t1 − t0) / T)`: the fresh bucket's `B`, plus one token per
//!   interval claimed (a claim moves `next` by whole intervals, or restarts
//!   it later), with refunds only giving back what was admitted. Every check
//!   in a run uses a clock reading `≤ t1`, so `t1` is the latest `now` seen.
//! * **Not starving: the bound is reached exactly.** Every difference from
//!   `Gcra` is stricter but transient: a refusal during an episode or while
//!   a claim's credit is pending leaves the tokens in the bucket, and only a
//!   cap can lose one (a refund capped at `B − 1`, a claim that fills the
//!   bucket and restarts the phase). When threads demand several
//!   times what a step brings, the bucket is never near full after the first
//!   step (a check is refused only when tokens are short), so no cap binds
//!   (test 3 holds its refunds back for the first 4 steps for that reason)
//!   and no capacity is wasted: net admitted — the threads' own, plus a
//!   single-threaded drain at `t1` for what transient refusals left — equals
//!   the bound. That is a count argument, not a timing one. (A 90% floor is
//!   too weak: with the first design's take-backs, a take-back doing nothing
//!   still reached 93.9% in test 1.)
//! * **Never above the burst.** `peek(now).remaining`, every decision's
//!   `remaining` and every refund's snapshot stay `≤ B` while the threads
//!   race (sampled by the workers and by the driver). After the run,
//!   single-threaded, once `(B + 1) × T` has passed, the bucket is
//!   indistinguishable from a fresh one: it admits exactly `B` at one instant,
//!   then a scripted history of checks gives the same decisions and
//!   read-outs as a fresh `TokenBucket` and as a fresh `Gcra`, and, with
//!   refunds, the same as a fresh `TokenBucket`.
//! * **Denial flood.** One per hour, 16 threads hammering the same instant:
//!   exactly one admitted per hour, every refusal says "1 h, 0 remaining".
//!
//! The driver is paced by demand, not by the bucket: it steps the clock once
//! the workers have asked for `DEMAND` more units since the last step,
//! whatever the answers were, so a bucket that refuses wrongly cannot hold
//! the clock back, and the demand per step is several times what a step
//! brings. No sleeps are used for correctness (refused threads
//! `yield_now`); a watchdog turns a hang into a failure. Costs and refunds
//! come from per-thread generators seeded from `STRESS_SEED` (or the time),
//! printed on failure; the interleavings are not reproducible. This machine
//! has 2 cores, so the 17 threads are oversubscribed on purpose: workers are
//! preempted between reading the clock and checking (their `now` is then
//! older than the clock), between a claim's exchange and its credit, and
//! between opening an episode and closing it.

mod stress_support;

use std::num::NonZeroU32;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tollgate::{Clock, Decision, Gcra, ManualClock, Nanos, Quota, TokenBucket};

use stress_support::{Rng, seed};

/// Worker threads (the driver is one more).
const THREADS: usize = 16;
/// Emission interval of the fast quotas: 10^6 per second.
const T: u64 = 1_000;
/// Start of every run.
const T0: Nanos = Nanos::from_secs(1);
/// A hang becomes a failure after this long.
const WATCHDOG: Duration = Duration::from_secs(60);

/// 10^6 per second with burst `burst`.
fn fast_quota(burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(1_000_000).unwrap())
        .with_burst(NonZeroU32::new(burst).unwrap())
}

/// `B + floor((t1 − t0) / T)` for `quota`.
fn bound(quota: &Quota, t0: Nanos, t1: Nanos) -> u64 {
    let t = quota.emission_interval().as_u64();
    u64::from(quota.burst().get()) + (t1.as_u64() - t0.as_u64()) / t
}

/// A per-thread counter alone on its cache line, so that counting demand
/// does not add a contended line of its own.
#[repr(align(128))]
struct Demand(AtomicU64);

fn demands() -> Vec<Demand> {
    (0..THREADS).map(|_| Demand(AtomicU64::new(0))).collect()
}

/// What one worker saw.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    /// Cost admitted.
    admitted: u64,
    /// Cost refunded (only ever this thread's own admitted cost).
    refunded: u64,
    /// Checks refused.
    refused: u64,
    /// Largest `peek(now).remaining` sampled.
    peek_max: u32,
    /// Largest `remaining` in a decision or a refund's snapshot.
    decision_max: u32,
}

impl Tally {
    fn add(self, o: Tally) -> Tally {
        Tally {
            admitted: self.admitted + o.admitted,
            refunded: self.refunded + o.refunded,
            refused: self.refused + o.refused,
            peek_max: self.peek_max.max(o.peek_max),
            decision_max: self.decision_max.max(o.decision_max),
        }
    }

    /// Records one check of `cost`.
    fn check(&mut self, d: Decision, cost: u32) -> bool {
        self.decision_max = self.decision_max.max(d.remaining());
        if d.is_allowed() {
            self.admitted += u64::from(cost);
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

/// The driver: `steps` times, waits (yielding) until the workers have
/// demanded `per_step` more units, samples `peek` at the current time, and
/// advances the clock by `step(i)`. Sets `done` at the end (also when the
/// watchdog fires, then panics). Returns the largest `peek` it sampled.
fn drive(
    bucket: &TokenBucket,
    clock: &ManualClock,
    done: &AtomicBool,
    demand: &[Demand],
    steps: u64,
    per_step: u64,
    step: impl Fn(u64) -> u64,
) -> u32 {
    let start = Instant::now();
    let total = || -> u64 { demand.iter().map(|d| d.0.load(Ordering::Relaxed)).sum() };
    let mut peek_max = 0;
    let mut want = per_step;
    for i in 0..steps {
        while total() < want {
            if start.elapsed() > WATCHDOG {
                done.store(true, Ordering::Release);
                panic!("driver stuck at step {i} of {steps}");
            }
            thread::yield_now();
        }
        want = total() + per_step;
        peek_max = peek_max.max(bucket.peek(clock.now()).remaining);
        clock.advance(Nanos::new(step(i)));
    }
    peek_max = peek_max.max(bucket.peek(clock.now()).remaining);
    // Release: the workers' final round reads the clock after seeing this.
    done.store(true, Ordering::Release);
    peek_max
}

/// Single-threaded, after a run that ended at `t1`: once `(B + 1) × T` has
/// passed the bucket is full, admits exactly `B` at one instant and then
/// behaves exactly like a fresh `TokenBucket` and a fresh `Gcra` on a
/// scripted history of checks, and like a fresh `TokenBucket` with refunds.
fn assert_behaves_like_fresh(bucket: &TokenBucket, t1: Nanos, seed: u64) {
    let q = *bucket.quota();
    let burst = q.burst().get();
    let t = q.emission_interval().as_u64();
    let mut now = t1 + Nanos::new((u64::from(burst) + 1) * t);
    let fresh = TokenBucket::new(q);
    let gcra = Gcra::new(q);

    assert_eq!(
        bucket.peek(now).remaining,
        burst,
        "not full after (B + 1) × T"
    );
    assert_eq!(bucket.peek(now), fresh.peek(now));
    assert_eq!(bucket.peek(now), gcra.peek(now));
    for i in 1..=burst {
        let d = bucket.check(now);
        assert_eq!(d.remaining(), burst - i, "unit {i} of the burst: {d:?}");
        assert!(d.is_allowed(), "unit {i} of the burst: {d:?}");
        assert_eq!(d, fresh.check(now), "unit {i} of the burst");
        assert_eq!(d, gcra.check(now), "unit {i} of the burst");
    }
    let d = bucket.check(now);
    assert!(
        !d.is_allowed(),
        "unit {} of a burst of {burst}: {d:?}",
        burst + 1
    );
    assert_eq!(d, fresh.check(now));
    assert_eq!(d, gcra.check(now));

    // A scripted history: time forward by 0..2T (often by 0), costs 1..=3
    // (capped at the burst) and now and then one more than the burst.
    let mut rng = Rng::new(seed, 1_000);
    let max_cost = burst.min(3);
    let step = |rng: &mut Rng, now: &mut Nanos| {
        if rng.below(3) != 0 {
            let dt = u64::from(rng.below(2_000)) * t / 1_000;
            *now = *now + Nanos::new(dt);
        }
        if rng.below(32) == 0 {
            burst + 1
        } else {
            1 + rng.below(max_cost)
        }
    };
    for i in 0..2_000 {
        let cost = step(&mut rng, &mut now);
        let d = bucket.check_n(now, cost);
        assert_eq!(
            d,
            fresh.check_n(now, cost),
            "scripted check {i}, cost {cost}"
        );
        assert_eq!(
            d,
            gcra.check_n(now, cost),
            "scripted check {i}, cost {cost}"
        );
        assert_eq!(bucket.peek(now), fresh.peek(now), "scripted check {i}");
        assert_eq!(bucket.peek(now), gcra.peek(now), "scripted check {i}");
    }
    // Refunds make `Gcra` differ (it is exact, the bucket is capped at
    // B − 1); against a fresh bucket everything stays equal.
    for i in 0..2_000 {
        let cost = step(&mut rng, &mut now);
        if rng.below(4) == 0 {
            let c = 1 + rng.below(max_cost);
            assert_eq!(bucket.refund(now, c), fresh.refund(now, c), "refund {i}");
        }
        assert_eq!(
            bucket.check_n(now, cost),
            fresh.check_n(now, cost),
            "check {i} among refunds, cost {cost}"
        );
        assert_eq!(bucket.peek(now), fresh.peek(now), "check {i} among refunds");
    }
}

/// Takes what is left at `t1` with unit checks, single-threaded.
fn drain(bucket: &TokenBucket, t1: Nanos) -> u64 {
    let mut n = 0;
    while bucket.check(t1).is_allowed() {
        n += 1;
    }
    n
}

/// What a worker of tests (1) to (3) shares with the others and the driver,
/// and its own demand counter.
#[derive(Clone, Copy)]
struct Lane<'a> {
    bucket: &'a TokenBucket,
    clock: &'a ManualClock,
    done: &'a AtomicBool,
    demand: &'a Demand,
}

impl Lane<'_> {
    /// Final round at the last time: take what is left.
    fn take_the_rest(self, tally: &mut Tally) {
        while tally.check(self.bucket.check(self.clock.now()), 1) {}
    }
}

/// One run of tests (1) to (3), and what it left.
struct Run {
    bucket: TokenBucket,
    clock: ManualClock,
    /// The workers' summed tallies.
    tally: Tally,
    /// The largest `peek` the driver sampled.
    driver_peek: u32,
    seed: u64,
}

impl Run {
    /// The last clock reading `t1` and `B + floor((t1 − t0) / T)`.
    fn t1_and_bound(&self) -> (Nanos, u64) {
        let t1 = self.clock.now();
        (t1, bound(self.bucket.quota(), T0, t1))
    }

    /// The read-outs every report ends with.
    fn readouts(&self) -> String {
        let t = &self.tally;
        format!(
            "refused {}, peek max {} / {} (driver), decision/refund max {} (seed {})",
            t.refused, t.peek_max, self.driver_peek, t.decision_max, self.seed
        )
    }
}

/// One run of tests (1) to (3): a fresh bucket of `fast_quota(burst)` and a
/// clock at `T0`; `THREADS` workers, thread `i` running `worker` on its lane
/// with its generator `Rng::new(seed, i)` until `done`, against the driver
/// ([`drive`] with `steps`, `per_step` and `step`).
fn race(
    burst: u32,
    steps: u64,
    per_step: u64,
    step: impl Fn(u64) -> u64,
    worker: impl Fn(Lane<'_>, Rng) -> Tally + Sync,
) -> Run {
    let seed = seed();
    let bucket = TokenBucket::new(fast_quota(burst));
    let clock = ManualClock::new(T0);
    let done = AtomicBool::new(false);
    let demand = demands();

    let (tally, driver_peek) = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|i| {
                let worker = &worker;
                let lane = Lane {
                    bucket: &bucket,
                    clock: &clock,
                    done: &done,
                    demand: &demand[i],
                };
                s.spawn(move || worker(lane, Rng::new(seed, i)))
            })
            .collect();
        let peek = drive(&bucket, &clock, &done, &demand, steps, per_step, step);
        let tally = workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold(Tally::default(), Tally::add);
        (tally, peek)
    });
    Run {
        bucket,
        clock,
        tally,
        driver_peek,
        seed,
    }
}

/// `remaining` never above the burst: in the workers' and the driver's
/// `peek` samples, in any decision and in any refund's snapshot.
fn assert_never_above_the_burst(run: &Run) {
    let (tally, driver_peek, seed) = (&run.tally, run.driver_peek, run.seed);
    let burst = run.bucket.quota().burst().get();
    assert!(
        tally.peek_max <= burst && driver_peek <= burst,
        "peek above the burst {burst}: workers {}, driver {driver_peek}; {tally:?}; seed {seed}",
        tally.peek_max
    );
    assert!(
        tally.decision_max <= burst,
        "a decision or refund read out {} > burst {burst}; {tally:?}; seed {seed}",
        tally.decision_max
    );
}

/// After a run of test (1) or (3) over `steps` steps of `step` ns,
/// single-threaded: the clock moved by exactly that, and net admitted — the
/// threads' own less their refunds, plus a drain at `t1` for what transient
/// refusals left — is exactly `B + floor((t1 − t0) / T)`: not above it
/// (over-admitted), not below it (tokens lost). Nothing read out above the
/// burst, and afterwards the bucket is as good as fresh.
fn assert_exactly_the_bound(name: &str, run: &Run, steps: u64, step: u64) {
    let (t1, bound) = run.t1_and_bound();
    let (tally, seed) = (run.tally, run.seed);
    let burst = run.bucket.quota().burst().get();
    assert_eq!(t1.as_u64() - T0.as_u64(), steps * step);
    let drained = drain(&run.bucket, t1);
    let net = tally.admitted + drained - tally.refunded;
    let parts = format!(
        "admitted {} + drained {drained} − refunded {}",
        tally.admitted, tally.refunded
    );
    eprintln!(
        "{name}: {THREADS} threads, {steps} steps of {step} ns, B {burst}: {parts} = net {net} \
         of bound {bound} ({:.4}%), {}",
        net as f64 * 100.0 / bound as f64,
        run.readouts()
    );
    assert!(
        net <= bound,
        "over-admitted: net {net} ({parts}) > B + floor((t1 − t0) / T) = {bound}; seed {seed}"
    );
    assert_eq!(
        net, bound,
        "tokens lost: net {net} ({parts}) < B + floor((t1 − t0) / T) = {bound} after the drain; \
         seed {seed}"
    );
    assert_never_above_the_burst(run);
    assert_behaves_like_fresh(&run.bucket, t1, seed);
}

/// How a worker of tests (2) and (3) refunds and samples.
#[derive(Clone, Copy)]
struct Refunds {
    /// `(hold, give)`: an admission is held for a later refund with odds
    /// `1 / hold`; while something is held, one held admission is refunded
    /// per round with odds `1 / give`.
    odds: (u32, u32),
    /// No refund before this clock reading (the final ones aside).
    from: Nanos,
    /// `peek` is sampled when the units asked are a multiple of this (1:
    /// every round).
    peek_every: u64,
}

/// A worker of tests (2) and (3): checks of cost 1..=3 until `done`,
/// holding some admissions back and refunding them later, at a later clock
/// reading (see [`Refunds`]); what is still held is refunded at the end.
fn refunding_worker(w: Lane<'_>, mut rng: Rng, r: Refunds) -> Tally {
    let Lane {
        bucket,
        clock,
        done,
        demand,
    } = w;
    let mut tally = Tally::default();
    let mut pending: Vec<u32> = Vec::new();
    let mut asked = 0u64;
    let refund = |tally: &mut Tally, cost: u32, now: Nanos| {
        let s = bucket.refund(now, cost);
        tally.refunded += u64::from(cost);
        tally.decision_max = tally.decision_max.max(s.remaining);
    };
    while !done.load(Ordering::Acquire) {
        let cost = 1 + rng.below(3);
        let d = bucket.check_n(clock.now(), cost);
        asked += u64::from(cost);
        demand.0.store(asked, Ordering::Relaxed);
        if tally.check(d, cost) {
            if rng.below(r.odds.0) == 0 {
                pending.push(cost);
            }
        } else {
            thread::yield_now();
        }
        if !pending.is_empty() {
            let now = clock.now();
            if now >= r.from && rng.below(r.odds.1) == 0 {
                let c = pending.swap_remove(0);
                refund(&mut tally, c, now);
            }
        }
        if asked % r.peek_every == 0 {
            let p = bucket.peek(clock.now()).remaining;
            tally.peek_max = tally.peek_max.max(p);
        }
    }
    for c in pending {
        refund(&mut tally, c, clock.now());
    }
    tally
}

/// (1) Unit costs, no refunds: admissions by `fetch_sub`, episodes opened
/// and closed, claims racing. 16⅓ intervals per step against 64 units demanded:
/// net admitted ≤ `B + floor((t1 − t0) / T)`, and equal to it once the
/// transients are drained.
#[test]
fn unit_checks_admit_exactly_the_bound() {
    const BURST: u32 = 100;
    const STEPS: u64 = 20_000;
    const STEP: u64 = 16 * T + T / 3;
    const DEMAND: u64 = 64;

    let run = race(
        BURST,
        STEPS,
        DEMAND,
        |_| STEP,
        |w, _| {
            let mut tally = Tally::default();
            let mut asked = 0u64;
            while !w.done.load(Ordering::Acquire) {
                let d = w.bucket.check(w.clock.now());
                asked += 1;
                w.demand.0.store(asked, Ordering::Relaxed);
                if !tally.check(d, 1) {
                    thread::yield_now();
                }
                if asked % 8 == 0 {
                    let p = w.bucket.peek(w.clock.now()).remaining;
                    tally.peek_max = tally.peek_max.max(p);
                }
            }
            w.take_the_rest(&mut tally);
            tally
        },
    );
    assert_exactly_the_bound("unit checks", &run, STEPS, STEP);
}

/// (2) Burst 8, steps of ⅓..2⅓ intervals and every 16th step a jump of 10⅓
/// intervals, so the bucket is often full and claims restart the phase while
/// refusals (costs 1..=3) and refunds (half the admissions, given back
/// later) race them: `remaining` never above 8 in any sample, decision or
/// refund; the bound holds; afterwards the bucket is as good as fresh.
#[test]
fn tokens_never_exceed_the_burst() {
    const BURST: u32 = 8;
    const STEPS: u64 = 40_000;
    const DEMAND: u64 = 12;
    let step = |i: u64| {
        if i % 16 == 15 {
            10 * T + T / 3
        } else {
            T / 3 + (i % 5) * T / 2
        }
    };
    let refunds = Refunds {
        odds: (2, 3),
        from: T0,
        peek_every: 1,
    };

    let run = race(BURST, STEPS, DEMAND, step, |w, rng| {
        refunding_worker(w, rng, refunds)
    });

    let (t1, bound) = run.t1_and_bound();
    let Tally {
        admitted, refunded, ..
    } = run.tally;
    let net = admitted - refunded;
    let share = net as f64 * 100.0 / bound as f64;
    eprintln!(
        "burst cap: {THREADS} threads, {STEPS} steps, B {BURST}: admitted {admitted}, refunded \
         {refunded}, net {net} of bound {bound} ({share:.2}%, capacity is wasted by design while \
         full), {}",
        run.readouts()
    );
    assert_never_above_the_burst(&run);
    assert!(
        net <= bound,
        "over-admitted: net {net} (admitted {admitted} − refunded {refunded}) > {bound}; seed {}",
        run.seed
    );
    assert_behaves_like_fresh(&run.bucket, t1, run.seed);
}

/// (3) Burst 100, costs 1..=3, one admission in 8 refunded later (at a later
/// clock reading, by the thread it was admitted to), 3⅓ intervals per step
/// against 32 units demanded: net admitted (admitted − refunded) ≤
/// `B + floor((t1 − t0) / T)`, and equal to it once the transients are
/// drained. Refunds start once the clock has moved 4 steps: a refund into the
/// nearly full bucket of the first instants is capped at `B − 1` (the
/// documented strictness; seen once in ~80 runs as `97 + 3` capped at 99,
/// net one short of the bound), which test (2) covers instead.
#[test]
fn mixed_costs_and_refunds_admit_exactly_the_bound() {
    const BURST: u32 = 100;
    const STEPS: u64 = 40_000;
    const STEP: u64 = 3 * T + T / 3;
    const DEMAND: u64 = 32;
    const REFUNDS_FROM: Nanos = Nanos::new(T0.as_u64() + 4 * STEP);
    let refunds = Refunds {
        odds: (8, 4),
        from: REFUNDS_FROM,
        peek_every: 8,
    };

    let run = race(
        BURST,
        STEPS,
        DEMAND,
        |_| STEP,
        |w, rng| {
            let mut tally = refunding_worker(w, rng, refunds);
            w.take_the_rest(&mut tally);
            tally
        },
    );
    assert_exactly_the_bound("mixed", &run, STEPS, STEP);
    assert!(
        run.tally.refunded > 0,
        "no refunds happened; seed {}",
        run.seed
    );
}

/// (4) One per hour; 16 threads × `CHECKS` unit checks at one instant, for
/// `ROUNDS` instants an hour apart (a barrier between rounds): exactly one
/// admitted per instant, and every refusal reads "retry after 1 h, 0
/// remaining". The first round is the fresh bucket (its claim credits
/// nothing); every later one starts with a claim race.
#[test]
fn denial_flood_admits_exactly_one_per_hour() {
    const ROUNDS: usize = 256;
    const CHECKS: u32 = 2_000;
    let hour = Nanos::from_secs(3_600);
    let quota = Quota::per_hour(NonZeroU32::new(1).unwrap());
    assert_eq!(quota.burst().get(), 1);
    let bucket = TokenBucket::new(quota);
    let barrier = Barrier::new(THREADS);
    let at = |r: usize| T0 + Nanos::new(hour.as_u64() * r as u64);

    let per_thread: Vec<(Vec<u64>, u64, Option<Decision>)> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (bucket, barrier) = (&bucket, &barrier);
                s.spawn(move || {
                    let mut admitted = vec![0u64; ROUNDS];
                    let (mut odd, mut first_odd) = (0u64, None);
                    for (r, a) in admitted.iter_mut().enumerate() {
                        let now = at(r);
                        // No panics between barriers: a panicking thread would
                        // leave the others waiting.
                        barrier.wait();
                        for _ in 0..CHECKS {
                            match bucket.check(now) {
                                Decision::Allowed { .. } => *a += 1,
                                Decision::Denied {
                                    retry_after,
                                    remaining: 0,
                                    ..
                                } if retry_after == hour => {}
                                d => {
                                    odd += 1;
                                    first_odd.get_or_insert(d);
                                }
                            }
                        }
                    }
                    (admitted, odd, first_odd)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let mut per_round = [0u64; ROUNDS];
    for (admitted, _, _) in &per_thread {
        for (p, a) in per_round.iter_mut().zip(admitted) {
            *p += a;
        }
    }
    let odd: u64 = per_thread.iter().map(|p| p.1).sum();
    let first_odd = per_thread.iter().find_map(|p| p.2);
    let ones = per_round.iter().filter(|&&a| a == 1).count();
    eprintln!(
        "flood: {THREADS} threads × {CHECKS} checks × {ROUNDS} hours: {ones} hours admitted \
         exactly 1, others {:?}, {odd} refusals not reading (1 h, 0)",
        per_round
            .iter()
            .enumerate()
            .filter(|(_, a)| **a != 1)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        per_round, [1; ROUNDS],
        "admitted per instant, an hour apart"
    );
    assert_eq!(
        odd, 0,
        "a refusal read {first_odd:?}, not 1 h / 0 remaining"
    );
    let last = at(ROUNDS - 1);
    assert_eq!(bucket.peek(last).remaining, 0);
    assert_behaves_like_fresh(&bucket, last, 7);
}

/// A bucket with billions of tokens under a fast refill (10^6 per second, a
/// token every µs) and the TSC clock, four threads on two cores: refills fall
/// due while a claim is in flight (the claimer's clock read is older than the
/// others', or it was preempted mid-claim), and a check whose `now` has
/// passed the claim's `next` must not take the tokens from before it. It
/// waits for the claim instead of being refused: without the wait, 15–51 %
/// of these checks were refused (five runs) with over four billion tokens in
/// the bucket; with it, 0.04–0.25 % on this 2-core machine (a claimer
/// preempted for longer than the bounded wait). The bound here is 5 %:
/// generous for a loaded CI machine, well below the broken figures.
#[test]
fn checks_past_a_claim_in_flight_wait_for_it_instead_of_being_refused() {
    const WORKERS: usize = 4;
    const CHECKS: u64 = 1_000_000;
    let quota = Quota::per_second(NonZeroU32::new(1_000_000).unwrap()).with_burst(NonZeroU32::MAX);
    let bucket = TokenBucket::new(quota);
    let clock = tollgate::MonotonicClock::new();
    let barrier = Barrier::new(WORKERS);
    let refused: u64 = thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (bucket, clock, barrier) = (&bucket, &clock, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..CHECKS)
                        .filter(|_| !bucket.check(clock.now()).is_allowed())
                        .count() as u64
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let total = WORKERS as u64 * CHECKS;
    let pct = refused as f64 * 100.0 / total as f64;
    eprintln!(
        "{refused} of {total} checks refused ({pct:.3} %), burst {}",
        u32::MAX
    );
    assert!(
        pct < 5.0,
        "{pct:.2} % refused from a bucket of 2^32 − 1 tokens"
    );
}
