//! `KeyedLimiter::check_batch` through the public API: the decisions and
//! the store afterwards are those of `check` on each key in turn, and
//! racing batches admit exactly the burst. (That the batch path allocates
//! nothing is counted in `alloc.rs`, with the single-key paths.)

use std::num::NonZeroU32;

use tollgate::keyed::{KeyedDecision, KeyedLimiter, WhenFull};
use tollgate::{Nanos, Quota};

fn q(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap())
}

/// xorshift64: a fixed pseudo-random sequence without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).expect("below a usize")
    }
}

const POLICIES: [WhenFull; 3] = [
    WhenFull::Deny,
    WhenFull::AllowUntracked,
    WhenFull::EvictNearestFresh,
];

/// Two stores with the same hash seed: `check_batch` on one, `check` key by
/// key on the other, `str` keys, batches of 0..100 keys with duplicates,
/// checks of other costs in between, time moving on. Same decisions; then
/// the same read-out of every key, and the same count of slots in use.
#[test]
fn batch_decisions_and_state_match_sequential_checks() {
    let names: Vec<String> = (0..400).map(|k| format!("api-key-{k}")).collect();
    let plans = [q(1), q(10).with_burst(NonZeroU32::new(20).unwrap())];
    let mut batch: Vec<&str> = Vec::new();
    for (round, policy) in POLICIES.into_iter().cycle().take(12).enumerate() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ round as u64);
        let hasher = ahash::RandomState::with_seeds(round as u64, 7, 8, 9);
        // 120 keys' room for 400 keys: full, evicting, untracked.
        let capacity = if round % 2 == 0 { 120 } else { 2_000 };
        let make = || {
            KeyedLimiter::with_hasher(capacity, tollgate::keyed::KeyedGcra, hasher.clone())
                .unwrap()
                .when_full(policy)
        };
        let (batched, sequential) = (make(), make());
        let mut now = Nanos::from_secs(1);
        for _ in 0..200 {
            now = Nanos::new(now.as_u64() + rng.below(3) * rng.below(400_000_000));
            let quota = &plans[rng.index(2)];
            batch.clear();
            for _ in 0..rng.below(100) {
                // One key in three from a hot few: duplicates in a batch.
                let k = if rng.below(3) == 0 {
                    rng.index(4)
                } else {
                    rng.index(400)
                };
                batch.push(&names[k]);
            }
            let mut got = Vec::with_capacity(batch.len());
            batched.check_batch(batch.iter().copied(), quota, now, |i, d| {
                assert_eq!(i, got.len(), "indices in order");
                got.push(d);
            });
            let want: Vec<KeyedDecision> = batch
                .iter()
                .map(|k| sequential.check(*k, quota, now))
                .collect();
            assert_eq!(got.len(), want.len(), "one decision per key");
            if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                panic!(
                    "round {round}, {policy:?}: key {i} ({}) of {batch:?}: batch {:?}, check {:?}",
                    batch[i], got[i], want[i]
                );
            }
            // A check of another cost, the same on both.
            let k = &names[rng.index(400)];
            let cost = u32::try_from(rng.below(4)).expect("below 4");
            assert_eq!(
                batched.check_n(k.as_str(), quota, now, cost),
                sequential.check_n(k.as_str(), quota, now, cost)
            );
        }
        for k in &names {
            for quota in &plans {
                assert_eq!(
                    batched.peek(k.as_str(), quota, now),
                    sequential.peek(k.as_str(), quota, now),
                    "{k}"
                );
            }
        }
        assert_eq!(batched.occupied(), sequential.occupied());
        assert_eq!(batched.len(now), sequential.len(now));
    }
}

/// Threads racing `check_batch` and `check` on the same hot keys, time
/// standing still: every key is admitted exactly its burst, no more (a lost
/// or doubled charge would show), no less.
#[test]
fn racing_batches_admit_exactly_the_burst() {
    const KEYS: usize = 50;
    const BURST: u32 = 10;
    let store = KeyedLimiter::new(10_000).unwrap();
    let quota = Quota::per_hour(NonZeroU32::new(BURST).unwrap());
    let now = Nanos::from_secs(1);
    let per_thread: Vec<[u32; KEYS]> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let (store, quota) = (&store, &quota);
                s.spawn(move || {
                    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (t + 1));
                    let mut allowed = [0u32; KEYS];
                    let mut batch = [0usize; 40];
                    for round in 0..200 {
                        for k in &mut batch {
                            *k = rng.index(KEYS);
                        }
                        if (round + t) % 4 == 0 {
                            for &k in &batch {
                                if store.check(&k, quota, now).is_allowed() {
                                    allowed[k] += 1;
                                }
                            }
                        } else {
                            store.check_batch(&batch, quota, now, |i, d| {
                                if d.is_allowed() {
                                    allowed[batch[i]] += 1;
                                }
                            });
                        }
                    }
                    allowed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for k in 0..KEYS {
        let total: u32 = per_thread.iter().map(|a| a[k]).sum();
        assert_eq!(total, BURST, "key {k}");
    }
}
