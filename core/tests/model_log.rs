//! Property tests of `SlidingLog` and `All` against reference models.
//!
//! * `SlidingLog` equals a multiset of expiry times (a `Vec`): every decision
//!   field, for any history with monotone time and refunds.
//! * The window bound, from a plain `Vec` of admitted timestamps: for every
//!   admitted time `t`, at most `N` units were admitted in `(t - W, t]`, in
//!   whatever order the times came.
//! * `All`: a refused composite leaves every member's `peek` unchanged, and
//!   an admitted one charges each member exactly as a single check would.

// The model narrows u128 values that are bounded far below u32/u64.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::num::NonZeroU32;

use proptest::prelude::*;
use tollgate_core::{All, Decision, Gcra, Nanos, Quota, SlidingLog};

const N: usize = 5;

#[derive(Clone, Debug)]
enum Op {
    Check { dt: i64, cost: u32 },
    Refund { dt: i64, cost: u32 },
}

/// With `monotone`, time never goes back (which free slot a check reuses is
/// then unobservable, so the model can be exact); otherwise it jumps both ways.
fn ops(monotone: bool) -> impl Strategy<Value = Vec<Op>> {
    let dt = if monotone {
        prop_oneof![3 => Just(0i64), 6 => 0i64..=60, 1 => 0i64..=1_000].boxed()
    } else {
        prop_oneof![3 => Just(0i64), 6 => -30i64..=60, 1 => -1_000i64..=1_000].boxed()
    };
    let op = prop_oneof![
        8 => (dt.clone(), 0u32..=7).prop_map(|(dt, cost)| Op::Check { dt, cost }),
        1 => (dt, 0u32..=3).prop_map(|(dt, cost)| Op::Refund { dt, cost }),
    ];
    prop::collection::vec(op, 1..150)
}

fn step(now: u64, dt: i64) -> u64 {
    now.saturating_add_signed(dt)
}

/// The reference: the multiset of expiry times of units in the log.
struct Model {
    window: u64,
    expiries: Vec<u64>,
}

impl Model {
    fn busy(&self, now: u64) -> Vec<u64> {
        let mut b: Vec<u64> = self.expiries.iter().copied().filter(|&e| e > now).collect();
        b.sort_unstable();
        b
    }

    fn check(&mut self, now: u64, cost: u32) -> Decision {
        if cost as usize > N {
            return Decision::ExceedsCapacity {
                cost,
                capacity: N as u32,
            };
        }
        let busy = self.busy(now);
        let free = N - busy.len();
        let last = busy.last().copied().unwrap_or(now);
        if (cost as usize) <= free {
            let until = now + self.window;
            for _ in 0..cost {
                // Replace a free entry (or grow up to N).
                if let Some(pos) = self.expiries.iter().position(|&e| e <= now) {
                    self.expiries[pos] = until;
                } else {
                    self.expiries.push(until);
                }
            }
            Decision::Allowed {
                remaining: (free - cost as usize) as u32,
                reset_after: Nanos::new(if cost == 0 { last } else { last.max(until) } - now),
            }
        } else {
            let short = cost as usize - free;
            Decision::Denied {
                retry_after: Nanos::new(busy[short - 1] - now),
                remaining: free as u32,
                reset_after: Nanos::new(last - now),
            }
        }
    }

    fn refund(&mut self, now: u64, cost: u32) {
        for _ in 0..cost {
            let Some((pos, _)) = self
                .expiries
                .iter()
                .enumerate()
                .filter(|&(_, &e)| e > now)
                .min_by_key(|&(_, &e)| e)
            else {
                return;
            };
            self.expiries[pos] = now;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(1024),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sliding_log_equals_its_model(window in 1u64..=100, start in 0u64..500, ops in ops(true)) {
        let log = SlidingLog::<N>::new(Nanos::new(window)).unwrap();
        let mut model = Model { window, expiries: Vec::new() };
        let mut now = start;
        for op in ops {
            match op {
                Op::Check { dt, cost } => {
                    now = step(now, dt);
                    let before = log.peek(Nanos::new(now));
                    let probed = log.probe(Nanos::new(now), cost);
                    let d = log.check_n(Nanos::new(now), cost);
                    prop_assert_eq!(d, model.check(now, cost));
                    prop_assert_eq!(probed, d);
                    if !d.is_allowed() {
                        prop_assert_eq!(log.peek(Nanos::new(now)), before);
                    }
                }
                Op::Refund { dt, cost } => {
                    now = step(now, dt);
                    model.refund(now, cost);
                    let s = log.refund(Nanos::new(now), cost);
                    let busy = model.busy(now);
                    prop_assert_eq!(s.remaining as usize, N - busy.len());
                }
            }
            let busy = model.busy(now);
            let st = log.state(Nanos::new(now));
            prop_assert_eq!(st.in_window as usize, busy.len());
            prop_assert_eq!(st.oldest_leaves_after, busy.first().map(|&e| Nanos::new(e - now)));
        }
    }

    /// The guarantee itself, from admitted timestamps only.
    #[test]
    fn at_most_n_in_any_window(window in 1u64..=100, start in 0u64..500, ops in ops(false)) {
        let log = SlidingLog::<N>::new(Nanos::new(window)).unwrap();
        let mut admitted: Vec<u64> = Vec::new();
        let mut now = start;
        for op in ops {
            if let Op::Check { dt, cost } = op {
                now = step(now, dt);
                if log.check_n(Nanos::new(now), cost).is_allowed() {
                    admitted.extend(std::iter::repeat_n(now, cost as usize));
                }
            }
        }
        for &t in &admitted {
            let in_window = admitted.iter().filter(|&&s| s + window > t && s <= t).count();
            prop_assert!(in_window <= N, "{} units in ({}, {}]", in_window, t.saturating_sub(window), t);
        }
    }

    /// A refused composite changes no member; an admitted one charges each
    /// member exactly as checking it alone would.
    #[test]
    fn composite_is_all_or_nothing(
        bursts in (1u32..=4, 1u32..=8),
        window in 1u64..=100,
        ops in ops(false),
    ) {
        let nz = |n| NonZeroU32::new(n).unwrap();
        let a = Gcra::new(Quota::per_second(nz(bursts.0)));
        let b = SlidingLog::<N>::new(Nanos::new(window * 1_000_000)).unwrap();
        let c = Gcra::new(Quota::per_minute(nz(bursts.1)));
        // Shadows, driven one by one.
        let sa = Gcra::new(Quota::per_second(nz(bursts.0)));
        let sb = SlidingLog::<N>::new(Nanos::new(window * 1_000_000)).unwrap();
        let sc = Gcra::new(Quota::per_minute(nz(bursts.1)));
        let all = All((&a, &b, &c));
        let mut now = 0u64;
        for op in ops {
            let Op::Check { dt, cost } = op else { continue };
            now = step(now, dt * 1_000_000);
            let t = Nanos::new(now);
            let would = [sa.probe(t, cost), sb.probe(t, cost), sc.probe(t, cost)];
            let before = (a.peek(t), b.peek(t), c.peek(t));
            let d = all.check_all(t, cost);
            let everyone = would.iter().all(Decision::is_allowed);
            prop_assert_eq!(d.decision.is_allowed(), everyone);
            if everyone {
                prop_assert!(sa.check_n(t, cost).is_allowed());
                prop_assert!(sb.check_n(t, cost).is_allowed());
                prop_assert!(sc.check_n(t, cost).is_allowed());
                let min = would.iter().map(Decision::remaining).min().unwrap();
                prop_assert_eq!(d.decision.remaining(), min);
            } else {
                prop_assert_eq!((a.peek(t), b.peek(t), c.peek(t)), before);
                if let Decision::Denied { retry_after, .. } = d.decision {
                    let longest = would.iter().filter_map(Decision::retry_after).max().unwrap();
                    prop_assert_eq!(retry_after, longest);
                }
            }
            prop_assert_eq!((a.peek(t), b.peek(t), c.peek(t)), (sa.peek(t), sb.peek(t), sc.peek(t)));
        }
    }
}
