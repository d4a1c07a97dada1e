//! Differential test: tollgate's [`Gcra`] against governor 0.10's direct
//! limiter on its `FakeRelativeClock`, fed the same quota and the same
//! sequence of (time, cost).
//!
//! # Parameter map
//!
//! Both are the same GCRA. governor keeps `t` (its `replenish_1_per`) and
//! `tau = t × (burst − 1)` and admits `n` cells at `now` iff
//! `now ≥ tat + (n − 1)·t − tau`, then stores `max(tat, now) + n·t`. tollgate
//! keeps `T` (its emission interval) and admits `cost` iff
//! `max(tat, now) + cost·T − now ≤ burst·T`, then stores the same value. With
//! `t == T` these are one inequality, so every decision, every `remaining`
//! (governor's `remaining_burst_capacity`) and every wait (governor's
//! `NotUntil::wait_time_from`, tollgate's `retry_after`) must be equal.
//!
//! | governor                                  | tollgate                                        |
//! |-------------------------------------------|-------------------------------------------------|
//! | `Quota::with_period(T).allow_burst(b)`    | `Quota::new(l, l·T).with_burst(b)` (T = l·T / l) |
//! | `Quota::per_second(n).allow_burst(b)`     | `Quota::per_second(n).with_burst(b)`            |
//! | `check_n(n)` → `Ok(Ok(snapshot))`         | `Decision::Allowed { remaining, .. }`           |
//! | `check_n(n)` → `Ok(Err(not_until))`       | `Decision::Denied { retry_after, .. }`          |
//! | `check_n(n)` → `Err(InsufficientCapacity(b))` | `Decision::ExceedsCapacity { capacity: b, .. }` |
//! | time since the limiter was built (clock at 0 then) | any absolute `Nanos` (a random offset is added) |
//!
//! Time only moves forward: governor's fake clock cannot go back.
//!
//! # Intended differences
//!
//! 1. **Rounding of the emission interval.** governor truncates
//!    (`per_second(3)` gives `t = 333_333_333` ns, slightly more than 3 per
//!    second); tollgate rounds up (`T = 333_333_334` ns) so a quota in force is
//!    never looser than asked. [`exact_quotas_agree_on_every_answer`] uses
//!    quotas where both are exact (periods that divide into whole
//!    nanoseconds); [`rounding_makes_tollgate_stricter_never_looser`] checks
//!    where they differ (`T = t + 1`): as long as the two have made the same
//!    decisions, tollgate's `remaining` is ≤ governor's and its wait is ≥
//!    governor's and exceeds it by at most `admitted cost × 1 ns`; the first
//!    decision on which they differ is always governor admitting and tollgate
//!    refusing; and with unit costs tollgate's admitted count is ≤ governor's
//!    on every prefix of the sequence.
//!    With mixed costs the prefix comparison does *not* hold after the first
//!    difference, for either pair of limiters: all-or-nothing admission is not
//!    monotone in the rate (the looser limiter can spend its capacity on a
//!    large request the stricter one refuses, and then refuse a request the
//!    stricter one can still afford). [`mixed_costs_prefix_counts_are_not_monotone`]
//!    shows it on two tollgate limiters; each limiter's own bound is checked
//!    elsewhere (`core/tests/model.rs`).
//! 2. **Cost 0.** governor's `check_n` takes a `NonZeroU32`; tollgate admits a
//!    cost of 0 as a read-out. Not compared.
//! 3. **Burst clamp.** tollgate clamps the burst so that `burst × T ≤ 2^63` ns;
//!    governor does not. The quotas here are far below that clamp (asserted).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use proptest::prelude::*;
use proptest::test_runner::Config;
use tollgate::{Decision, Gcra, Nanos, Quota};

type Governor =
    governor::RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, StateInformationMiddleware>;

/// Cases per property and the most operations per case.
const CASES: u32 = 256;
const MAX_OPS: usize = 200;

fn config() -> Config {
    Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// One side's answer, in a shape both sides can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Allowed { remaining: u32 },
    Denied { wait: u64 },
    Never { capacity: u32 },
}

impl Answer {
    fn allowed(self) -> bool {
        matches!(self, Answer::Allowed { .. })
    }
}

/// A tollgate limiter and a governor limiter, driven in lockstep.
struct Pair {
    tollgate: Gcra,
    governor: Governor,
    /// governor's clock (it reads 0 when the limiter is built).
    clock: FakeRelativeClock,
    /// tollgate's time is `offset + governor's time`.
    offset: u64,
    elapsed: u64,
}

impl Pair {
    fn new(t: Quota, g: governor::Quota, offset: u64) -> Pair {
        let clock = FakeRelativeClock::default();
        let governor = governor::RateLimiter::direct_with_clock(g, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Pair {
            tollgate: Gcra::new(t),
            governor,
            clock,
            offset,
            elapsed: 0,
        }
    }

    fn advance(&mut self, ns: u64) {
        self.clock.advance(Duration::from_nanos(ns));
        self.elapsed += ns;
    }

    fn check(&self, cost: u32) -> (Answer, Answer) {
        let now = Nanos::new(self.offset + self.elapsed);
        let t = match self.tollgate.check_n(now, cost) {
            Decision::Allowed { remaining, .. } => Answer::Allowed { remaining },
            Decision::Denied { retry_after, .. } => Answer::Denied {
                wait: retry_after.as_u64(),
            },
            Decision::ExceedsCapacity { capacity, .. } => Answer::Never { capacity },
        };
        let g = match self.governor.check_n(nz(cost)) {
            Ok(Ok(snapshot)) => Answer::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Answer::Denied {
                    wait: u64::try_from(wait.as_nanos()).unwrap(),
                }
            }
            Err(governor::InsufficientCapacity(capacity)) => Answer::Never { capacity },
        };
        (t, g)
    }
}

/// How far the clock moves before an operation.
#[derive(Clone, Copy, Debug)]
enum Advance {
    Stay,
    /// A few nanoseconds (rounding edges).
    Nanos(u64),
    /// `k × T / 16`.
    Sixteenths(u64),
    /// `k × T`.
    Intervals(u64),
}

/// One operation: move the clock, then ask.
#[derive(Clone, Copy, Debug)]
enum Op {
    Check {
        advance: Advance,
        cost: u32,
    },
    /// Move the clock by exactly the last denial's wait (or 1 ns less when
    /// `early`) and ask again for the denied cost: the boundary.
    Retry {
        early: bool,
    },
}

fn ops(burst: u32) -> impl Strategy<Value = Vec<Op>> {
    let advance = prop_oneof![
        3 => Just(Advance::Stay),
        2 => (1u64..=3).prop_map(Advance::Nanos),
        4 => (1u64..=48).prop_map(Advance::Sixteenths),
        2 => (1u64..=64).prop_map(Advance::Intervals),
    ];
    let cost = prop_oneof![
        6 => Just(1u32),
        6 => 1..=burst,
        1 => burst + 1..=burst + 2,
    ];
    let op = prop_oneof![
        8 => (advance, cost).prop_map(|(advance, cost)| Op::Check { advance, cost }),
        1 => any::<bool>().prop_map(|early| Op::Retry { early }),
    ];
    prop::collection::vec(op, 1..=MAX_OPS)
}

fn advance_ns(a: Advance, t: u64) -> u64 {
    match a {
        Advance::Stay => 0,
        Advance::Nanos(n) => n,
        Advance::Sixteenths(k) => k * t / 16,
        Advance::Intervals(k) => k * t,
    }
}

/// How a quota is written on both sides.
#[derive(Clone, Copy, Debug)]
enum Made {
    /// governor `with_period(T)`; tollgate `Quota::new(limit, limit × T)`.
    Period {
        t: u64,
        limit: u32,
    },
    PerSecond(u32),
    PerMinute(u32),
    PerHour(u32),
}

impl Made {
    /// `(period in ns, limit)` as asked.
    fn asked(self) -> (u64, u64) {
        match self {
            Made::Period { t, limit } => (t * u64::from(limit), u64::from(limit)),
            Made::PerSecond(n) => (1_000_000_000, u64::from(n)),
            Made::PerMinute(n) => (60_000_000_000, u64::from(n)),
            Made::PerHour(n) => (3_600_000_000_000, u64::from(n)),
        }
    }

    fn build(self, burst: u32) -> (Quota, governor::Quota) {
        let b = nz(burst);
        match self {
            Made::Period { t, limit } => (
                Quota::new(nz(limit), Duration::from_nanos(t * u64::from(limit)))
                    .unwrap()
                    .with_burst(b),
                governor::Quota::with_period(Duration::from_nanos(t))
                    .unwrap()
                    .allow_burst(b),
            ),
            Made::PerSecond(n) => (
                Quota::per_second(nz(n)).with_burst(b),
                governor::Quota::per_second(nz(n)).allow_burst(b),
            ),
            Made::PerMinute(n) => (
                Quota::per_minute(nz(n)).with_burst(b),
                governor::Quota::per_minute(nz(n)).allow_burst(b),
            ),
            Made::PerHour(n) => (
                Quota::per_hour(nz(n)).with_burst(b),
                governor::Quota::per_hour(nz(n)).allow_burst(b),
            ),
        }
    }
}

/// `2^i × 3^k × 5^j`, capped to fit in a `u32`: divides 10^9 (k = 0),
/// 60 × 10^9 (k ≤ 1) and 3600 × 10^9 (k ≤ 2) when i, j ≤ 9.
fn smooth(i: u32, k: u32, j: u32) -> u32 {
    let n = 2u64.pow(i) * 3u64.pow(k) * 5u64.pow(j);
    u32::try_from(n).unwrap_or(2u32.pow(i) * 5u32.pow(j))
}

/// Quotas whose emission interval is a whole number of nanoseconds on both
/// sides.
fn exact_quota() -> impl Strategy<Value = Made> {
    prop_oneof![
        (
            prop_oneof![1u64..=1_000, 1u64..=10_000_000_000],
            prop_oneof![Just(1u32), 1u32..=1_000]
        )
            .prop_map(|(t, limit)| Made::Period { t, limit }),
        (0u32..=9, 0u32..=9).prop_map(|(i, j)| Made::PerSecond(smooth(i, 0, j))),
        (0u32..=9, 0u32..=1, 0u32..=9).prop_map(|(i, k, j)| Made::PerMinute(smooth(i, k, j))),
        (0u32..=9, 0u32..=2, 0u32..=9).prop_map(|(i, k, j)| Made::PerHour(smooth(i, k, j))),
    ]
}

/// Quotas where governor truncates the interval and tollgate rounds it up.
fn inexact_quota() -> impl Strategy<Value = Made> {
    prop_oneof![
        (1u32..=1_000_000).prop_map(Made::PerSecond),
        (1u32..=100_000).prop_map(Made::PerMinute),
        (1u32..=100_000).prop_map(Made::PerHour),
    ]
}

fn burst() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..=8, 1u32..=64, 1u32..=5_000]
}

fn case(quota: impl Strategy<Value = Made>) -> impl Strategy<Value = (Made, u32, u64, Vec<Op>)> {
    (quota, burst(), prop_oneof![Just(0u64), 0u64..1 << 50])
        .prop_flat_map(|(made, burst, offset)| (Just(made), Just(burst), Just(offset), ops(burst)))
}

/// Builds the pair and checks the parameters map as intended; returns
/// `(pair, tollgate's T, governor's t)`.
fn pair(made: Made, burst: u32, offset: u64) -> (Pair, u64, u64) {
    let (tq, gq) = made.build(burst);
    let t = tq.emission_interval().as_u64();
    let g = u64::try_from(gq.replenish_interval().as_nanos()).unwrap();
    assert_eq!(tq.burst().get(), burst, "burst clamped: {made:?}");
    assert_eq!(gq.burst_size().get(), burst);
    (Pair::new(tq, gq, offset), t, g)
}

/// Runs the operations, calling `each(op index, cost, tollgate, governor)`
/// after every check.
fn run(
    pair: &mut Pair,
    t: u64,
    ops: &[Op],
    mut each: impl FnMut(usize, u32, Answer, Answer) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut last_denial: Option<(u32, u64)> = None;
    for (i, op) in ops.iter().enumerate() {
        let cost = match *op {
            Op::Check { advance, cost } => {
                pair.advance(advance_ns(advance, t));
                cost
            }
            Op::Retry { early } => match last_denial {
                Some((cost, wait)) => {
                    pair.advance(if early { wait - 1 } else { wait });
                    cost
                }
                None => 1,
            },
        };
        let (a, b) = pair.check(cost);
        each(i, cost, a, b)?;
        last_denial = match a {
            Answer::Denied { wait } => Some((cost, wait)),
            _ => None,
        };
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Same quota, same (time, cost) sequence, emission interval exact on
    /// both sides: every answer is equal — allow/deny/never, `remaining`
    /// after an admission and the wait after a denial (to the nanosecond).
    #[test]
    fn exact_quotas_agree_on_every_answer((made, burst, offset, ops) in case(exact_quota())) {
        let (mut pair, t, g) = pair(made, burst, offset);
        let (period, limit) = made.asked();
        prop_assert_eq!((t, g), (period / limit, period / limit), "not exact: {:?}", made);
        prop_assert_eq!(period % limit, 0);
        let mut previous: Option<Answer> = None;
        run(&mut pair, t, &ops, |i, cost, a, b| {
            prop_assert_eq!(a, b, "op {} (cost {}) of {:?}", i, cost, ops);
            // A retry after a denial, exactly at the announced wait, is
            // admitted; 1 ns earlier it is refused (on both sides, as they
            // are equal).
            if let (Op::Retry { early }, Some(Answer::Denied { .. })) = (ops[i], previous) {
                prop_assert_eq!(a.allowed(), !early, "op {}: retry (early: {})", i, early);
            }
            previous = Some(a);
            Ok(())
        })?;
    }

    /// Where governor truncates the interval (`t`) and tollgate rounds it up
    /// (`T = t + 1`), tollgate is never looser: while the two agree, its
    /// `remaining` is ≤ governor's and its wait ≥ governor's (by at most the
    /// cost admitted so far × 1 ns); the first disagreement is governor
    /// admitting what tollgate refuses.
    #[test]
    fn rounding_makes_tollgate_stricter_never_looser(
        (made, burst, offset, ops) in case(inexact_quota()),
    ) {
        let (mut pair, t, g) = pair(made, burst, offset);
        // tollgate rounds up, governor truncates: they differ by 1 ns exactly
        // when the period does not divide by the limit.
        let (period, limit) = made.asked();
        prop_assert_eq!((t, g), (period.div_ceil(limit), period / limit), "{:?}", made);
        let mut agreed = true;
        let mut admitted = 0u64;
        run(&mut pair, t, &ops, |i, cost, a, b| {
            if !agreed {
                return Ok(());
            }
            match (a, b) {
                (Answer::Allowed { remaining: ra }, Answer::Allowed { remaining: rb }) => {
                    prop_assert!(ra <= rb, "op {}: remaining {} > governor's {}", i, ra, rb);
                    admitted += u64::from(cost);
                }
                (Answer::Denied { wait: wa }, Answer::Denied { wait: wb }) => {
                    prop_assert!(
                        wb <= wa && wa <= wb + admitted * (t - g),
                        "op {}: wait {} vs governor's {} after {} admitted",
                        i, wa, wb, admitted
                    );
                }
                (Answer::Never { capacity: ca }, Answer::Never { capacity: cb }) => {
                    prop_assert_eq!(ca, cb);
                }
                (Answer::Denied { .. }, Answer::Allowed { .. }) => agreed = false,
                _ => prop_assert!(false, "op {} (cost {}): tollgate {:?}, governor {:?}", i, cost, a, b),
            }
            Ok(())
        })?;
    }

    /// Unit costs, rounding as above: tollgate's admitted count is ≤
    /// governor's on every prefix, for the whole sequence.
    #[test]
    fn rounding_unit_costs_never_admit_more(
        (made, burst, offset, ops) in case(inexact_quota()),
    ) {
        let (mut pair, t, g) = pair(made, burst, offset);
        let (period, limit) = made.asked();
        prop_assert_eq!((t, g), (period.div_ceil(limit), period / limit), "{:?}", made);
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|op| match op {
                Op::Check { advance, .. } => Op::Check { advance, cost: 1 },
                retry => retry,
            })
            .collect();
        let (mut ta, mut ga) = (0u64, 0u64);
        run(&mut pair, t, &ops, |i, _, a, b| {
            ta += u64::from(a.allowed());
            ga += u64::from(b.allowed());
            prop_assert!(ta <= ga, "op {}: tollgate admitted {} > governor's {}", i, ta, ga);
            Ok(())
        })?;
    }
}

/// A fixed quota with a known difference, by hand: `per_second(3)`, burst 1.
/// governor: one per 333 333 333 ns; tollgate: one per 333 333 334 ns.
#[test]
fn per_second_3_differs_by_one_nanosecond() {
    let (mut pair, t, g) = pair(Made::PerSecond(3), 1, 0);
    assert_eq!((t, g), (333_333_334, 333_333_333));
    assert_eq!(pair.check(1).0, Answer::Allowed { remaining: 0 });
    pair.advance(333_333_333);
    let (a, b) = pair.check(1);
    assert_eq!(a, Answer::Denied { wait: 1 });
    assert_eq!(b, Answer::Allowed { remaining: 0 });
}

/// Why the prefix comparison is for unit costs only (difference 1 above):
/// two tollgate limiters, one per 10 ms and a stricter one per 11 ms, burst
/// 5, the same requests. The looser one spends its capacity on a request of
/// 3 the stricter one refuses; a moment later the stricter one admits a
/// request of 3 the looser one cannot, and is ahead on that prefix.
#[test]
fn mixed_costs_prefix_counts_are_not_monotone() {
    let looser = Gcra::new(
        Quota::new(nz(1), Duration::from_millis(10))
            .unwrap()
            .with_burst(nz(5)),
    );
    let stricter = Gcra::new(
        Quota::new(nz(1), Duration::from_millis(11))
            .unwrap()
            .with_burst(nz(5)),
    );
    let ms = Nanos::from_millis;
    let (mut looser_count, mut stricter_count) = (0, 0);
    for (at, cost) in [(0, 4), (20, 3), (33, 4)] {
        looser_count += u32::from(looser.check_n(ms(at), cost).is_allowed()) * cost;
        stricter_count += u32::from(stricter.check_n(ms(at), cost).is_allowed()) * cost;
    }
    // t = 0: both admit 4 (1 left each). t = 20 ms: the looser one has 3 and
    // admits 3, the stricter one has 2.82 and refuses. t = 33 ms: the looser
    // one has 1.3 and refuses 4, the stricter one has exactly 4 and admits.
    assert_eq!((looser_count, stricter_count), (7, 8));
}
