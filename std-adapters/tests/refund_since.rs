//! Late refunds (`KeyedLimiter::refund_since`): a refund that arrives after
//! its charge has partly or wholly regenerated gives back only what the
//! charge still weighs. Found by review: the policy engine refunded a 304 at
//! the response's time, so a response that came back after its minute rolled
//! over took a unit off the *next* minute, and one that came back after the
//! bucket refilled gave the refilled bucket one unit more than its burst.
//!
//! The property: whatever the mix of checks and late refunds, the requests
//! that stay admitted (admitted and not refunded) obey the limit as if the
//! refunded ones had never been made — GCRA's bound `burst + (t_j − t_i) / T`
//! over every run of them, a fixed window's limit in every window.

use std::num::NonZeroU32;

use proptest::prelude::*;
use tollgate::keyed::{KeyedFixedWindow, KeyedLimiter};
use tollgate::{Nanos, Quota};

#[derive(Clone, Debug)]
enum Op {
    /// Advance time by `dt` ns, then check `cost` units.
    Check { dt: u64, cost: u32 },
    /// Advance time by `dt` ns, then refund the `pick`-th admission still
    /// outstanding (if any), charged at its own admission time.
    Refund { dt: u64, pick: usize },
}

fn ops(max_dt: u64) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0..max_dt, 1u32..3).prop_map(|(dt, cost)| Op::Check { dt, cost }),
            2 => (0..max_dt, any::<usize>()).prop_map(|(dt, pick)| Op::Refund { dt, pick }),
        ],
        1..120,
    )
}

/// Runs `ops` and returns the admissions that were not refunded, as (time,
/// cost), in time order. `check` and `refund` act on one key.
fn run(
    ops: &[Op],
    mut check: impl FnMut(Nanos, u32) -> bool,
    mut refund: impl FnMut(Nanos, Nanos, u32),
) -> Vec<(u64, u32)> {
    let mut now = 0u64;
    let mut outstanding: Vec<(u64, u32)> = Vec::new();
    let mut kept: Vec<(u64, u32, bool)> = Vec::new();
    for op in ops {
        match *op {
            Op::Check { dt, cost } => {
                now += dt;
                if check(Nanos::new(now), cost) {
                    outstanding.push((now, cost));
                    kept.push((now, cost, true));
                }
            }
            Op::Refund { dt, pick } => {
                now += dt;
                if outstanding.is_empty() {
                    continue;
                }
                let (at, cost) = outstanding.remove(pick % outstanding.len());
                refund(Nanos::new(at), Nanos::new(now), cost);
                let k = kept
                    .iter_mut()
                    .find(|k| k.2 && k.0 == at && k.1 == cost)
                    .expect("an admission");
                k.2 = false;
            }
        }
    }
    kept.into_iter()
        .filter(|k| k.2)
        .map(|(t, c, _)| (t, c))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn gcra_late_refunds_never_loosen_the_bound(
        burst in 1u32..5,
        per_sec in 1u32..5,
        ops in ops(700_000_000),
    ) {
        let q = Quota::per_second(NonZeroU32::new(per_sec).unwrap())
            .with_burst(NonZeroU32::new(burst).unwrap());
        let t = q.emission_interval().as_u64();
        let store = KeyedLimiter::new(16).unwrap();
        let kept = run(
            &ops,
            |now, cost| store.check_n("k", &q, now, cost).is_allowed(),
            |at, now, cost| {
                store.refund_since("k", &q, at, now, cost);
            },
        );
        // Every run of kept admissions: cost <= burst + (t_j - t_i) / T.
        for i in 0..kept.len() {
            let mut sum = 0u64;
            for j in i..kept.len() {
                sum += u64::from(kept[j].1);
                let bound = u64::from(burst) + (kept[j].0 - kept[i].0) / t;
                prop_assert!(
                    sum <= bound,
                    "kept {:?}: {} units in [{}, {}] > bound {}",
                    kept, sum, kept[i].0, kept[j].0, bound
                );
            }
        }
    }

    #[test]
    fn fixed_window_late_refunds_never_loosen_a_window(
        limit in 1u32..5,
        ops in ops(400),
    ) {
        let w = 1_000u64;
        let alg = KeyedFixedWindow::new(Nanos::new(w), Nanos::ZERO).unwrap();
        let store = KeyedLimiter::with_hasher(16, alg, ahash::RandomState::new()).unwrap();
        let l = NonZeroU32::new(limit).unwrap();
        let kept = run(
            &ops,
            |now, cost| store.check_n("k", &l, now, cost).is_allowed(),
            |at, now, cost| {
                store.refund_since("k", &l, at, now, cost);
            },
        );
        let mut per_window = std::collections::BTreeMap::<u64, u64>::new();
        for (t, c) in &kept {
            *per_window.entry(t / w).or_default() += u64::from(*c);
        }
        for (window, used) in per_window {
            prop_assert!(used <= u64::from(limit), "window {window}: {used} > {limit}; kept {kept:?}");
        }
    }
}

/// The plain `refund` at the response's time is what the policy engine
/// used before: the same property fails with it (this pins why
/// `refund_since` exists; see `gcra_late_refunds_never_loosen_the_bound`).
#[test]
fn a_refund_at_completion_time_would_give_a_refilled_bucket_one_more() {
    let q = Quota::per_second(NonZeroU32::new(1).unwrap()).with_burst(NonZeroU32::new(2).unwrap());
    let t0 = Nanos::ZERO;
    let t1 = Nanos::from_secs(2); // the bucket has refilled by then
    let late = KeyedLimiter::new(16).unwrap();
    let naive = KeyedLimiter::new(16).unwrap();
    for s in [&late, &naive] {
        assert!(s.check("k", &q, t0).is_allowed()); // the request whose 304 comes late
        assert!(s.check("k", &q, t1).is_allowed());
        assert!(s.check("k", &q, t1).is_allowed()); // burst spent at t1
    }
    late.refund_since("k", &q, t0, t1, 1);
    naive.refund("k", &q, t1, 1);
    assert!(
        !late.check("k", &q, t1).is_allowed(),
        "burst 2 at one instant"
    );
    assert!(
        naive.check("k", &q, t1).is_allowed(),
        "the old way: a third at t1"
    );
}

#[test]
fn a_refund_in_the_same_window_or_at_once_gives_the_units_back() {
    let q = Quota::per_minute(NonZeroU32::new(1).unwrap());
    let store = KeyedLimiter::new(16).unwrap();
    let t0 = Nanos::from_secs(5);
    assert!(store.check("k", &q, t0).is_allowed());
    // The 304 comes back 20 ms later: the unit (a minute's worth) is nearly
    // all still owed, and the next request passes at once.
    let t1 = t0 + Nanos::from_millis(20);
    store.refund_since("k", &q, t0, t1, 1);
    assert!(store.check("k", &q, t1).is_allowed());

    let alg = KeyedFixedWindow::new(Nanos::from_secs(60), Nanos::ZERO).unwrap();
    let fixed = KeyedLimiter::with_hasher(16, alg, ahash::RandomState::new()).unwrap();
    let one = NonZeroU32::MIN;
    assert!(fixed.check("k", &one, t0).is_allowed());
    fixed.refund_since("k", &one, t0, Nanos::from_secs(59), 1); // same minute
    assert!(fixed.check("k", &one, Nanos::from_secs(59)).is_allowed());
    // Charged at 59 s, refunded at 61 s: the minute is over, nothing back.
    fixed.refund_since("k", &one, Nanos::from_secs(59), Nanos::from_secs(61), 1);
    assert!(fixed.check("k", &one, Nanos::from_secs(61)).is_allowed());
    assert!(!fixed.check("k", &one, Nanos::from_secs(61)).is_allowed());
}
