//! `TokenBucket` driven by arbitrary operations (any quota built with
//! `Quota::new` / `per_second` / … / `with_burst`; `check_n`, `check`,
//! `probe`, `peek`, `refund`, `reset`; costs mostly small, sometimes 0, the
//! burst, just over it or `u32::MAX`; time mostly stepping forward by
//! fractions of `T`, sometimes jumping far, stepping back, or landing near
//! `u64::MAX`) against a sequential reference model of `(tokens, next)`
//! written here, as in `core/tests/model_token_bucket.rs`.
//!
//! Guarantees checked:
//! * no panic, for any input;
//! * every decision, read-out and refund equals the model's exactly
//!   (`remaining`, `reset_after`, `retry_after`), including the refund cap of
//!   `burst - 1`, refunds and read-outs that claim nothing, and time going
//!   backwards (no refill while `now < next`);
//! * against a `Gcra` of the same quota fed the same ops, from the start or
//!   the last reset while no refund has happened and every time is below
//!   2^62, for quotas with `T` below 2^61 ns (a larger `T` can put the
//!   bucket's next arrival past 2^63 ns, where it saturates to "never"; a CI
//!   run drew one — seed `huge-interval-next-saturates`): the same decisions. Where a `now` is older than the latest time a
//!   consuming check saw (`M`), the bucket holds the tokens it holds, so it
//!   answers as `Gcra` would at `M`, with every non-zero wait longer by
//!   `M - now` (with time moving forward that is plain equality);
//! * the bound with refunds: for every run of consecutive admissions `i..=j`,
//!   admitted minus refunded cost ≤ `burst + (M_j - s_i) / T`, `M_j` the
//!   latest `now` a consuming check in the run saw (`s_j` when time moves
//!   forward). Near the end of the range a `next` that would pass `u64::MAX`
//!   saturates to "never" (2^63 − 1): no token arrives again, and refusals
//!   say `retry_after == Nanos::MAX`; the model does the same.
#![no_main]

use std::num::NonZeroU32;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_core::{Decision, Gcra, Nanos, Quota, Snapshot, TokenBucket};

/// Times at or above this stop the comparison with `Gcra` until a reset:
/// `Gcra` refuses where its TAT would pass `u64::MAX`, the bucket saturates
/// `next` (see [`shifted`] for the one case below this).
const GCRA_TIME_LIMIT: u64 = 1 << 62;

/// A clock move before an op. `kind % 16`: 0..=9 forward by up to 4 `T` in
/// quarters plus up to 255 ns; 10 no move; 11..=12 back by up to 2^14 `T`;
/// 13 forward by up to 2^32 `T` (and further, shifted); 14 to any time;
/// 15 to within 2^32 ns of `u64::MAX`.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Step {
    kind: u8,
    x: u32,
    jitter: u8,
}

impl Step {
    fn apply(self, now: u64, t: u64) -> u64 {
        let quarters = |q: u64| -> u64 {
            u64::try_from(u128::from(q) * u128::from(t) / 4)
                .unwrap_or(u64::MAX)
                .saturating_add(u64::from(self.jitter))
        };
        match self.kind % 16 {
            0..=9 => now.saturating_add(quarters(u64::from(self.x % 16))),
            10 => now,
            11..=12 => now.saturating_sub(quarters(u64::from(self.x % (1 << 16)))),
            13 => {
                let intervals = u64::from(self.x).saturating_mul(t);
                let far = intervals
                    .checked_shl(u32::from(self.jitter % 32))
                    .unwrap_or(u64::MAX);
                now.saturating_add(far)
            }
            14 => u64::from(self.x) << (self.jitter % 33),
            _ => u64::MAX - u64::from(self.x),
        }
    }
}

/// A cost. `kind % 16`: 0..=9 small (0 ..= min(burst, 16)); 10 zero;
/// 11 the burst; 12 the burst + 1 (+ x % 4); 13 `u32::MAX`; 14 any `u32`;
/// 15 anything up to the burst.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Cost {
    kind: u8,
    x: u32,
}

impl Cost {
    fn get(self, burst: u32) -> u32 {
        let b = u64::from(burst);
        let c = match self.kind % 16 {
            0..=9 => u64::from(self.x) % (b.min(16) + 1),
            10 => 0,
            11 => b,
            12 => b + 1 + u64::from(self.x % 4),
            13 => u64::from(u32::MAX),
            14 => u64::from(self.x),
            _ => u64::from(self.x) % (b + 1),
        };
        u32::try_from(c).unwrap_or(u32::MAX)
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum What {
    CheckN(Cost),
    /// `check(now)`, i.e. `check_n(now, 1)`.
    Check,
    Probe(Cost),
    Peek,
    Refund(Cost),
}

/// One op: `what` after moving the clock by `step`; `kind % 32 == 31` is a
/// reset instead (rare, so histories get long).
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Op {
    kind: u8,
    step: Step,
    what: What,
}

/// The quota: the usual constructors, or `Quota::new` with any period (which
/// may refuse: then the input is skipped).
#[derive(Arbitrary, Debug)]
enum Rate {
    PerSecond(u32),
    PerMinute(u32),
    PerHour(u32),
    PerDay(u32),
    New {
        limit: u32,
        period_nanos: u64,
    },
    /// `T` exactly `1 + t` ns, so that steps of a few ns cross intervals.
    Tiny {
        limit: u8,
        t: u16,
    },
}

#[derive(Arbitrary, Debug)]
enum Burst {
    Default,
    Small(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Start {
    Zero,
    Secs(u32),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    rate: Rate,
    burst: Burst,
    start: Start,
    ops: Vec<Op>,
}

fn quota(rate: &Rate, burst: &Burst) -> Option<Quota> {
    let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap();
    let q = match *rate {
        Rate::PerSecond(l) => Quota::per_second(nz(l)),
        Rate::PerMinute(l) => Quota::per_minute(nz(l)),
        Rate::PerHour(l) => Quota::per_hour(nz(l)),
        Rate::PerDay(l) => Quota::per_day(nz(l)),
        Rate::New {
            limit,
            period_nanos,
        } => Quota::new(nz(limit), Duration::from_nanos(period_nanos)).ok()?,
        Rate::Tiny { limit, t } => {
            let l = u64::from(limit.max(1));
            Quota::new(
                nz(u32::from(limit)),
                Duration::from_nanos(l * (1 + u64::from(t))),
            )
            .ok()?
        }
    };
    Some(match *burst {
        Burst::Default => q,
        Burst::Small(b) => q.with_burst(nz(u32::from(b % 12) + 1)),
        Burst::Any(b) => q.with_burst(nz(b)),
    })
}

/// `next` saturates here: 2^63 − 1 ns, after which no token arrives
/// (`TokenBucket` keeps bit 63 of its `next` word for a claim in progress).
const NEVER: u64 = (1 << 63) - 1;

/// The sequential token bucket: `tokens <= burst` units now, the next one
/// arriving at `next` ns.
#[derive(Clone, Copy, Debug)]
struct Model {
    burst: u64,
    t: u64,
    limit: u32,
    tokens: u64,
    next: u64,
}

impl Model {
    fn new(q: &Quota) -> Model {
        Model {
            burst: u64::from(q.burst().get()),
            t: q.emission_interval().as_u64(),
            limit: q.limit().get(),
            tokens: u64::from(q.burst().get()),
            next: 0,
        }
    }

    /// Credits the tokens that arrived by `now`; a refill that fills the
    /// bucket restarts the phase at `now`. Nothing while `now < next`.
    fn refill(&mut self, now: u64) {
        // `next == NEVER`: nothing arrives again (as in the bucket).
        if now < self.next || self.next >= NEVER {
            return;
        }
        let arrived = ((now - self.next) / self.t).saturating_add(1);
        if arrived >= self.burst - self.tokens {
            self.tokens = self.burst;
            self.next = now.saturating_add(self.t).min(NEVER);
        } else {
            // arrived < burst - tokens, and burst × T <= 2^63.
            self.tokens += arrived;
            self.next = self.next.saturating_add(arrived * self.t).min(NEVER);
        }
    }

    /// Time from `now` until `want` tokens are in the bucket.
    fn wait(&self, now: u64, want: u64) -> Nanos {
        if self.tokens >= want {
            return Nanos::ZERO;
        }
        if self.next >= NEVER {
            return Nanos::MAX;
        }
        Nanos::new(
            (want - self.tokens - 1)
                .saturating_mul(self.t)
                .saturating_add(self.next.saturating_sub(now)),
        )
    }

    /// `check_n` (`take`) or `probe`. A probe, a cost of 0 and a cost above
    /// the burst change nothing (a read-out claims nothing: it looks at a
    /// refilled copy).
    fn decide(&mut self, now: u64, cost: u32, take: bool) -> Decision {
        let c = u64::from(cost);
        if c > self.burst {
            return Decision::ExceedsCapacity {
                cost,
                capacity: self.burst as u32,
            };
        }
        if !take || cost == 0 {
            let mut copy = *self;
            return copy.consume(now, c);
        }
        self.consume(now, c)
    }

    /// Refills at `now`, then takes `c <= burst` if there are enough tokens.
    fn consume(&mut self, now: u64, c: u64) -> Decision {
        self.refill(now);
        if self.tokens >= c {
            self.tokens -= c;
            Decision::Allowed {
                remaining: self.tokens as u32,
                reset_after: self.wait(now, self.burst),
            }
        } else {
            Decision::Denied {
                retry_after: self.wait(now, c),
                remaining: self.tokens as u32,
                reset_after: self.wait(now, self.burst),
            }
        }
    }

    fn peek(&self, now: u64) -> Snapshot {
        let mut v = *self;
        v.refill(now);
        Snapshot {
            limit: v.limit,
            remaining: v.tokens as u32,
            reset_after: v.wait(now, v.burst),
        }
    }

    /// A refund claims nothing (the next check does) and fills the bucket to
    /// `burst - 1` at most, never lowering it.
    fn refund(&mut self, now: u64, cost: u32) -> Snapshot {
        let filled = self
            .tokens
            .saturating_add(u64::from(cost))
            .min(self.burst - 1);
        self.tokens = self.tokens.max(filled);
        self.peek(now)
    }
}

/// `Gcra`'s answer `d` at `eff >= now`, seen from `now`: every non-zero wait
/// longer by `shift = eff - now`. Where `Gcra`'s TAT would pass `u64::MAX`
/// (its capacity close to 2^63 ns, e.g. one a minute with the burst clamped
/// to 153 722 867), it refuses with `retry_after = Nanos::MAX` instead of the
/// exact wait (stricter): then only the refusal, `remaining` and
/// `reset_after` are compared, the bucket's own `retry_after` is taken.
fn shifted(d: Decision, shift: u64, got: Decision) -> Decision {
    let add = |n: Nanos| {
        if n == Nanos::ZERO {
            n
        } else {
            Nanos::new(n.as_u64().saturating_add(shift))
        }
    };
    match d {
        Decision::Allowed {
            remaining,
            reset_after,
        } => Decision::Allowed {
            remaining,
            reset_after: add(reset_after),
        },
        Decision::Denied {
            retry_after,
            remaining,
            reset_after,
        } => Decision::Denied {
            retry_after: match got {
                Decision::Denied { retry_after: r, .. } if retry_after == Nanos::MAX => r,
                _ => add(retry_after),
            },
            remaining,
            reset_after: add(reset_after),
        },
        other => other,
    }
}

fn shifted_snapshot(s: Snapshot, shift: u64) -> Snapshot {
    Snapshot {
        reset_after: if s.reset_after == Nanos::ZERO {
            s.reset_after
        } else {
            Nanos::new(s.reset_after.as_u64().saturating_add(shift))
        },
        ..s
    }
}

fn same_decision(what: &str, i: usize, op: &Op, now: u64, got: Decision, want: Decision) {
    if got != want {
        if got.is_allowed() && !want.is_allowed() {
            panic!(
                "over-admitted: op {i} {op:?} at {now} ns: {what} refuses ({want:?}), bucket {got:?}"
            );
        }
        panic!("mismatch {what}: op {i} {op:?} at {now} ns: bucket {got:?}, expected {want:?}");
    }
}

fn same_snapshot(what: &str, i: usize, op: &Op, now: u64, got: Snapshot, want: Snapshot) {
    assert_eq!(got, want, "mismatch {what}: op {i} {op:?} at {now} ns");
}

/// One entry of the history since the last reset, for the bound.
struct Event {
    /// The `now` of a consuming check (admitted or refused); `None`: refund.
    at: Option<u64>,
    /// Admitted cost, minus refunded cost, 0 for a refusal.
    net: i128,
}

fuzz_target!(|input: Input| {
    let Some(q) = quota(&input.rate, &input.burst) else {
        return;
    };
    let burst = q.burst().get();
    let t = q.emission_interval().as_u64();
    let bucket = TokenBucket::new(q);
    let gcra = Gcra::new(q);
    let mut model = Model::new(&q);
    let mut now = match input.start {
        Start::Zero => 0,
        Start::Secs(s) => u64::from(s) * 1_000_000_000,
        Start::Any(x) => x,
    };
    // Compare with `gcra` (no refund and every time < 2^62 since the start
    // or the last reset), and the latest `now` of a consuming check.
    // A quota whose T is 2^61 ns or more (one unit per 73 years or fewer)
    // can put the bucket's next arrival past 2^63 ns, where it saturates to
    // "never" while Gcra's TAT (a full u64) still counts: not compared.
    let gcra_comparable = t < 1 << 61;
    let mut with_gcra = gcra_comparable;
    let mut latest = 0u64;
    let mut events: Vec<Event> = Vec::new();
    for (i, op) in input.ops.iter().take(256).enumerate() {
        if op.kind % 32 == 31 {
            bucket.reset();
            gcra.reset();
            model = Model::new(&q);
            with_gcra = gcra_comparable;
            latest = 0;
            events.clear();
            continue;
        }
        now = op.step.apply(now, t);
        let n = Nanos::new(now);
        if now >= GCRA_TIME_LIMIT {
            with_gcra = false;
        }
        let eff = now.max(latest);
        match op.what {
            What::CheckN(_) | What::Check => {
                let (cost, got) = match op.what {
                    What::CheckN(c) => {
                        let cost = c.get(burst);
                        (cost, bucket.check_n(n, cost))
                    }
                    _ => (1, bucket.check(n)),
                };
                let want = model.decide(now, cost, true);
                same_decision("model check_n", i, op, now, got, want);
                if with_gcra {
                    let g = shifted(gcra.check_n(Nanos::new(eff), cost), eff - now, got);
                    same_decision("Gcra check_n", i, op, now, got, g);
                }
                if (1..=burst).contains(&cost) {
                    latest = eff;
                    let net = if got.is_allowed() {
                        i128::from(cost)
                    } else {
                        0
                    };
                    events.push(Event { at: Some(now), net });
                }
            }
            What::Probe(c) => {
                let cost = c.get(burst);
                let got = bucket.probe(n, cost);
                same_decision(
                    "model probe",
                    i,
                    op,
                    now,
                    got,
                    model.decide(now, cost, false),
                );
                if with_gcra {
                    let g = shifted(gcra.probe(Nanos::new(eff), cost), eff - now, got);
                    same_decision("Gcra probe", i, op, now, got, g);
                }
            }
            What::Peek => {
                let got = bucket.peek(n);
                same_snapshot("model peek", i, op, now, got, model.peek(now));
                if with_gcra {
                    let g = shifted_snapshot(gcra.peek(Nanos::new(eff)), eff - now);
                    same_snapshot("Gcra peek", i, op, now, got, g);
                }
            }
            What::Refund(c) => {
                let cost = c.get(burst);
                let got = bucket.refund(n, cost);
                same_snapshot("model refund", i, op, now, got, model.refund(now, cost));
                // Gcra's refunds are exact; the bucket's stop at burst - 1.
                with_gcra = false;
                events.push(Event {
                    at: None,
                    net: -i128::from(cost),
                });
            }
        }
    }
    // The bound, with each run's end at the latest time a check in it saw.
    let (b, t) = (i128::from(burst), i128::from(t));
    for i in 0..events.len() {
        let (Some(si), true) = (events[i].at, events[i].net > 0) else {
            continue;
        };
        let (mut net, mut seen) = (0i128, si);
        for (j, e) in events.iter().enumerate().skip(i) {
            net += e.net;
            if let Some(sj) = e.at {
                seen = seen.max(sj);
                if e.net > 0 {
                    assert!(
                        net * t <= b * t + i128::from(seen) - i128::from(si),
                        "over-admitted: net {net} units in admissions {i}..={j}, from {si} to {seen} ns (burst {b}, T {t} ns)"
                    );
                }
            }
        }
    }
});
