//! `Semaphore` against a model: the permits held (guards in a `Vec`, plus a
//! count of forgotten ones). Every result and read-out must agree, for costs
//! over the whole `u32` range; in-use never exceeds max, and `release` can
//! give back only forgotten permits (never ones a guard still holds).

// Model counts never exceed u32::MAX (max is a u32).
#![allow(clippy::cast_possible_truncation)]

mod common;

use proptest::prelude::*;
use tollgate_core::{AcquireError, ReleaseError, Semaphore};

#[derive(Clone, Debug)]
enum Op {
    Acquire(u32),
    Drop(usize),
    Forget(usize),
    Release(u32),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let n = prop_oneof![4 => 0u32..=4, 1 => any::<u32>()];
    prop::collection::vec(
        prop_oneof![
            4 => n.clone().prop_map(Op::Acquire),
            2 => any::<usize>().prop_map(Op::Drop),
            1 => any::<usize>().prop_map(Op::Forget),
            1 => n.prop_map(Op::Release),
        ],
        1..100,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(1024),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn semaphore_equals_model(max in prop_oneof![0u32..=6, Just(u32::MAX)], ops in ops()) {
        let sem = Semaphore::new(max);
        let mut held = Vec::new();
        let mut forgotten: u64 = 0;
        for op in ops {
            let in_use: u64 = held.iter().map(|p: &tollgate_core::Permit<'_>| u64::from(p.count())).sum::<u64>() + forgotten;
            match op {
                Op::Acquire(n) => {
                    let want = if n > max {
                        Err(AcquireError::TooMany { requested: n, max })
                    } else if in_use + u64::from(n) > u64::from(max) {
                        Err(AcquireError::Full { in_use: in_use as u32, max, requested: n })
                    } else {
                        Ok(n)
                    };
                    let got = sem.try_acquire(n);
                    prop_assert_eq!(got.as_ref().map(|p| p.count()).map_err(|e| *e), want);
                    if let Ok(p) = got {
                        held.push(p);
                    }
                }
                Op::Drop(i) if !held.is_empty() => {
                    let i = i % held.len();
                    drop(held.swap_remove(i));
                }
                Op::Forget(i) if !held.is_empty() => {
                    let i = i % held.len();
                    forgotten += u64::from(held.swap_remove(i).forget());
                }
                Op::Release(n) => {
                    let got = sem.release(n);
                    if u64::from(n) <= forgotten {
                        prop_assert_eq!(got, Ok(()));
                        forgotten -= u64::from(n);
                    } else {
                        prop_assert_eq!(got, Err(ReleaseError { requested: n, forgotten: forgotten as u32 }));
                    }
                }
                _ => {}
            }
            let in_use: u64 = held.iter().map(|p| u64::from(p.count())).sum::<u64>() + forgotten;
            prop_assert!(in_use <= u64::from(max));
            prop_assert_eq!(u64::from(sem.in_use()), in_use);
            prop_assert_eq!(u64::from(sem.available()), u64::from(max) - in_use);
        }
    }
}
