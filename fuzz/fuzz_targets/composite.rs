//! `All` composites — a tuple `(Gcra, Gcra, FixedWindow)` and an array
//! `[Gcra; 3]` — driven by arbitrary checks and refunds with the clock moving
//! both ways, each against *twins*: stand-alone limiters of the same
//! configurations that see exactly what the composite's all-or-nothing
//! contract says its members see.
//!
//! Guarantees checked, on every operation:
//! * no panic;
//! * the composite admits exactly when every member would admit alone
//!   (`probe` of each twin), and then every member is charged exactly as a
//!   stand-alone `check_n` charges it (member `peek` == twin `peek`);
//! * a refusal leaves every member as it was (`peek` unchanged);
//! * a refusal names a member that refuses alone: on `ExceedsCapacity` the
//!   first member whose capacity the cost exceeds, with its decision; on
//!   `Denied` a denying member with the longest `retry_after` of all
//!   refusing members, which the composite reports;
//! * an admission reports the smallest `remaining` of all members (and names
//!   a member with that `remaining`) and the largest `reset_after`;
//! * `probe_all_members` and `Limiter::probe` answer what `check_all` then
//!   does, and `refund` refunds every member.
#![no_main]

use std::num::NonZeroU32;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_core::{All, Decision, FixedWindow, Gcra, Limiter, Members, Nanos, Quota};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Period {
    Second,
    Minute,
    Nanos(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct QuotaSpec {
    limit: u8,
    period: Period,
    /// 0: the default burst (= limit).
    burst: u8,
}

impl QuotaSpec {
    fn quota(self) -> Option<Quota> {
        let limit = NonZeroU32::new(u32::from(self.limit).max(1))?;
        let period = match self.period {
            Period::Second => Duration::from_secs(1),
            Period::Minute => Duration::from_secs(60),
            Period::Nanos(n) => Duration::from_nanos(u64::from(n)),
        };
        let q = Quota::new(limit, period).ok()?;
        Some(match NonZeroU32::new(u32::from(self.burst)) {
            Some(b) => q.with_burst(b),
            None => q,
        })
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Check { back: bool, dt: u32, cost: u8 },
    CheckBig { cost: u32 },
    Refund { cost: u8 },
    Probe { cost: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    quotas: [QuotaSpec; 3],
    window_limit: u8,
    window: u32,
    offset: u64,
    start: u64,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let Some(q) = input
        .quotas
        .iter()
        .map(|s| s.quota())
        .collect::<Option<Vec<Quota>>>()
    else {
        return;
    };
    let fw = |_: ()| {
        let limit = NonZeroU32::new(u32::from(input.window_limit).max(1)).expect(">= 1");
        FixedWindow::new(
            limit,
            Nanos::new(u64::from(input.window).max(1)),
            Nanos::new(input.offset),
        )
        .expect("non-zero window")
    };
    let tuple = All((Gcra::new(q[0]), Gcra::new(q[1]), fw(())));
    let tuple_twins: Vec<Box<dyn Limiter>> = vec![
        Box::new(Gcra::new(q[0])),
        Box::new(Gcra::new(q[1])),
        Box::new(fw(())),
    ];
    let array = All([Gcra::new(q[0]), Gcra::new(q[1]), Gcra::new(q[2])]);
    let array_twins: Vec<Box<dyn Limiter>> = q
        .iter()
        .map(|&q| Box::new(Gcra::new(q)) as Box<dyn Limiter>)
        .collect();

    let mut now = input.start;
    for op in input.ops.iter().take(256) {
        match *op {
            Op::Check { back, dt, cost } => {
                let dt = u64::from(dt);
                now = if back {
                    now.saturating_sub(dt)
                } else {
                    now.saturating_add(dt)
                };
                check(&tuple, &tuple_twins, now, u32::from(cost));
                check(&array, &array_twins, now, u32::from(cost));
            }
            Op::CheckBig { cost } => {
                check(&tuple, &tuple_twins, now, cost);
                check(&array, &array_twins, now, cost);
            }
            Op::Refund { cost } => {
                refund(&tuple, &tuple_twins, now, u32::from(cost));
                refund(&array, &array_twins, now, u32::from(cost));
            }
            Op::Probe { cost } => {
                // A probe writes nothing (checked by the comparison below).
                let _ = tuple.probe_all_members(Nanos::new(now), u32::from(cost));
                let _ = array.probe(Nanos::new(now), u32::from(cost));
            }
        }
        assert_same(&tuple, &tuple_twins, now);
        assert_same(&array, &array_twins, now);
    }
});

/// Every member reads exactly like its twin.
fn assert_same<M: Members>(all: &All<M>, twins: &[Box<dyn Limiter>], now: u64) {
    let t = Nanos::new(now);
    for (i, twin) in twins.iter().enumerate() {
        let m = all.0.member(i).expect("a member per twin");
        assert_eq!(m.peek(t), twin.peek(t), "member {i} differs from its twin");
    }
}

fn refund<M: Members>(all: &All<M>, twins: &[Box<dyn Limiter>], now: u64, cost: u32) {
    let t = Nanos::new(now);
    let _ = Limiter::refund(all, t, cost);
    for twin in twins {
        let _ = twin.refund(t, cost);
    }
}

fn check<M: Members>(all: &All<M>, twins: &[Box<dyn Limiter>], now: u64, cost: u32) {
    let t = Nanos::new(now);
    let before: Vec<_> = (0..twins.len())
        .map(|i| all.0.member(i).expect("member").peek(t))
        .collect();
    // What each member would decide alone (twins are in the same state).
    let alone: Vec<Decision> = twins.iter().map(|tw| tw.probe(t, cost)).collect();
    let probed = all.probe_all_members(t, cost);
    assert_eq!(Limiter::probe(all, t, cost), probed.decision);
    let d = all.check_all(t, cost);
    // One caller: nothing races between the probe and the charge.
    assert_eq!(d, probed, "probe_all_members differs from check_all");
    let member = d.member;
    assert!(member < twins.len());

    if alone.iter().all(Decision::is_allowed) {
        let Decision::Allowed {
            remaining,
            reset_after,
        } = d.decision
        else {
            panic!("every member admits alone, the composite refused: {d:?}");
        };
        // Charge the twins as the contract says every member was charged.
        for (i, twin) in twins.iter().enumerate() {
            assert_eq!(
                twin.check_n(t, cost),
                alone[i],
                "twin {i} probe and check_n differ"
            );
        }
        let min = alone
            .iter()
            .map(Decision::remaining)
            .min()
            .expect("members");
        let max_reset = alone
            .iter()
            .map(|a| match *a {
                Decision::Allowed { reset_after, .. } => reset_after,
                _ => unreachable!("all admitted"),
            })
            .max()
            .expect("members");
        assert_eq!(remaining, min, "not the smallest remaining");
        assert_eq!(
            alone[member].remaining(),
            min,
            "the binding member is not the tightest"
        );
        assert_eq!(reset_after, max_reset, "not the largest reset_after");
        return;
    }

    // A refusal: nobody was charged.
    assert!(
        !d.decision.is_allowed(),
        "a member refuses alone, the composite admitted: {alone:?}"
    );
    for (i, b) in before.iter().enumerate() {
        assert_eq!(
            all.0.member(i).expect("member").peek(t),
            *b,
            "refusal charged member {i}"
        );
    }
    assert!(
        !alone[member].is_allowed(),
        "member {member} named but admits alone"
    );
    if let Some(first) = alone
        .iter()
        .position(|a| matches!(a, Decision::ExceedsCapacity { .. }))
    {
        // Retrying cannot help: the first member that can never admit it.
        assert_eq!(member, first);
        assert_eq!(d.decision, alone[first]);
    } else {
        let longest = alone
            .iter()
            .filter_map(Decision::retry_after)
            .max()
            .expect("a denial");
        assert_eq!(
            d.decision.retry_after(),
            Some(longest),
            "not the longest wait"
        );
        assert_eq!(
            alone[member].retry_after(),
            Some(longest),
            "member {member} is not the longest wait"
        );
    }
}
