//! SlidingLog driven by arbitrary operations (costs, refunds, time jumps both
//! ways) against its guarantee, from a plain list of admitted timestamps: at
//! most N units in any window (t − W, t]. Also: no panic, denials change
//! nothing.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate_core::{Nanos, SlidingLog};

const N: usize = 6;

#[derive(Arbitrary, Debug)]
enum Op {
    Check { forward: bool, dt: u16, cost: u8 },
    Refund { cost: u8 },
    Reset,
}

#[derive(Arbitrary, Debug)]
struct Input {
    window: u16,
    start: u32,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let window = u64::from(input.window.max(1));
    let Ok(log) = SlidingLog::<N>::new(Nanos::new(window)) else { return };
    let mut now = u64::from(input.start);
    let mut admitted: Vec<u64> = Vec::new();
    let mut refunded_any = false;
    for op in input.ops.iter().take(256) {
        match *op {
            Op::Check { forward, dt, cost } => {
                let dt = u64::from(dt);
                now = if forward { now.saturating_add(dt) } else { now.saturating_sub(dt) };
                let cost = u32::from(cost % 9);
                let before = log.state(Nanos::new(now));
                let d = log.check_n(Nanos::new(now), cost);
                if d.is_allowed() {
                    admitted.extend(std::iter::repeat_n(now, cost as usize));
                } else {
                    assert_eq!(log.state(Nanos::new(now)), before, "a denial changed the log");
                    if let Some(r) = d.retry_after() {
                        assert!(r > Nanos::ZERO);
                    }
                }
            }
            Op::Refund { cost } => {
                let _ = log.refund(Nanos::new(now), u32::from(cost % 4));
                refunded_any = true;
            }
            Op::Reset => {
                log.reset();
                admitted.clear();
                refunded_any = false;
            }
        }
    }
    // Refunds give units back, so the bound is checked on refund-free runs.
    if !refunded_any {
        for &t in &admitted {
            let in_window = admitted.iter().filter(|&&s| s <= t && s + window > t).count();
            assert!(in_window <= N, "{in_window} units in ({}, {t}]", t.saturating_sub(window));
        }
    }
});
