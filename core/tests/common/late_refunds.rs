//! The late-refund property harness, shared by `core/tests/refund_since.rs`
//! (the core limiters) and `std-adapters/tests/refund_since.rs` (one key of
//! a keyed store, through the same `Limiter` interface): random checks and
//! refunds of earlier admissions, each refunded as of a later time with its
//! own admission time, then the admissions that stayed (admitted and not
//! refunded) checked against the algorithm's bound as if the refunded ones
//! had never been made.

#![allow(dead_code)]

use proptest::prelude::*;
use tollgate_core::{Limiter, Nanos};

#[derive(Clone, Debug)]
pub enum Op {
    /// Advance time by `dt` ns, then check `cost` units.
    Check { dt: u64, cost: u32 },
    /// Advance time by `dt` ns, then refund the `pick`-th admission still
    /// outstanding (if any), charged at its own admission time, with a `now`
    /// `lag` ns older than the latest check's (not before the charge): the
    /// refunding thread read its clock, then others checked.
    Refund { dt: u64, pick: usize, lag: u64 },
}

pub fn ops(max_dt: u64, max_cost: u32) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0..max_dt, 1..=max_cost).prop_map(|(dt, cost)| Op::Check { dt, cost }),
            2 => (0..max_dt, any::<usize>(), prop_oneof![Just(0), 0..max_dt.saturating_mul(4)])
                .prop_map(|(dt, pick, lag)| Op::Refund { dt, pick, lag }),
        ],
        1..120,
    )
}

/// Runs `ops` on `l` (refunds through `Limiter::refund_since`) and returns
/// the admissions not refunded, as (time, cost), in time order.
pub fn kept<L: Limiter>(l: &L, ops: &[Op]) -> Vec<(u64, u32)> {
    kept_and_lag(l, ops).0
}

/// [`kept`], and the sum over the refunds of how far each one's `now` lay
/// behind the latest check's (the slack a GCRA refund may give away: see
/// [`gcra_bound_with_slack`]).
pub fn kept_and_lag<L: Limiter>(l: &L, ops: &[Op]) -> (Vec<(u64, u32)>, u64) {
    let mut lagged = 0u64;
    let mut now = 0u64;
    let mut outstanding: Vec<(u64, u32)> = Vec::new();
    let mut kept: Vec<(u64, u32, bool)> = Vec::new();
    for op in ops {
        match *op {
            Op::Check { dt, cost } => {
                now += dt;
                if l.check_n(Nanos::new(now), cost).is_allowed() {
                    outstanding.push((now, cost));
                    kept.push((now, cost, true));
                }
            }
            Op::Refund { dt, pick, lag } => {
                now += dt;
                if outstanding.is_empty() {
                    continue;
                }
                let (at, cost) = outstanding.remove(pick % outstanding.len());
                let read = now.saturating_sub(lag).max(at);
                lagged += now - read;
                let _ = l.refund_since(Nanos::new(at), Nanos::new(read), cost);
                let k = kept
                    .iter_mut()
                    .find(|k| k.2 && k.0 == at && k.1 == cost)
                    .expect("an admission");
                k.2 = false;
            }
        }
    }
    let kept = kept
        .into_iter()
        .filter(|k| k.2)
        .map(|(t, c, _)| (t, c))
        .collect();
    (kept, lagged)
}

/// GCRA's bound over every run of kept admissions: `cost ≤ burst + (t_j −
/// t_i) / T`.
pub fn gcra_bound(kept: &[(u64, u32)], burst: u32, t: u64) -> Result<(), TestCaseError> {
    gcra_bound_with_slack(kept, burst, t, 0)
}

/// GCRA's bound with `slack` ns added to every run: `cost ≤ burst + (t_j −
/// t_i + slack) / T`. A GCRA refund whose `now` lies `L` behind another
/// thread's latest check cannot tell how much of the charge that check's
/// time regenerated, beyond what the TAT itself shows: it may give back up
/// to `L` of time too much (see `gcra::refunded_since`).
pub fn gcra_bound_with_slack(
    kept: &[(u64, u32)],
    burst: u32,
    t: u64,
    slack: u64,
) -> Result<(), TestCaseError> {
    for i in 0..kept.len() {
        let mut sum = 0u64;
        for j in i..kept.len() {
            sum += u64::from(kept[j].1);
            let bound = u64::from(burst) + (kept[j].0 - kept[i].0 + slack) / t;
            prop_assert!(
                sum <= bound,
                "kept {:?}: {} in [{}, {}] > {}",
                kept,
                sum,
                kept[i].0,
                kept[j].0,
                bound
            );
        }
    }
    Ok(())
}

/// At most `limit` kept in every fixed window `[k × w, (k + 1) × w)`.
pub fn per_window(kept: &[(u64, u32)], w: u64, limit: u32) -> Result<(), TestCaseError> {
    let mut counts = std::collections::BTreeMap::<u64, u64>::new();
    for (t, c) in kept {
        *counts.entry(t / w).or_default() += u64::from(*c);
    }
    for (k, used) in counts {
        prop_assert!(
            used <= u64::from(limit),
            "window {}: {} > {}; kept {:?}",
            k,
            used,
            limit,
            kept
        );
    }
    Ok(())
}
