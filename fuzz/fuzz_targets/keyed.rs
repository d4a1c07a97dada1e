//! `KeyedLimiter<KeyedGcra>` — small capacity, 96 keys, every `WhenFull`
//! policy, per-call quotas from the input, time moving forward only — against
//! a `HashMap<key, GCRA state>` reference (the TAT each key would have in its
//! own `Gcra`, updated with the same pure `tollgate_core::gcra` functions that
//! `Gcra` and the store run; a `HashMap<u64, Gcra>` cannot take a quota per
//! call). Mirrors `std-adapters/tests/model_keyed.rs`.
//!
//! The hasher places keys: either all in home bucket 0 (one probe window of
//! 8 buckets × 8 slots = 64 slots that every key competes for, so the store is
//! full exactly when 64 other keys hold a non-fresh state), or spread over
//! the home buckets.
//!
//! Guarantees checked:
//! * no panic;
//! * every `Decided` decision is the reference's, refunds and read-outs of
//!   every key equal the reference's, and `len(now)` is the number of keys
//!   whose reference state is not fresh: reclamation of fresh slots is
//!   lossless, and a store that is not full decides exactly like one `Gcra` per
//!   key — it never admits more for a key than the reference would;
//! * `StoreFull` only under `WhenFull::Deny`, `Untracked` only under
//!   `WhenFull::AllowUntracked` (with the decision of a fresh key), both only
//!   for a key not tracked whose admission needs a slot, and only when the
//!   probe window is full: at least 64 other keys, homed within 7 buckets of
//!   it, hold a non-fresh state (with all keys in one home: exactly then);
//! * under `WhenFull::EvictNearestFresh` a full window evicts exactly one key,
//!   one whose state is nearest to fresh (single home), which then reads as
//!   fresh (its documented loss); no other key ever changes.
#![no_main]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate::keyed::{KeyedDecision, KeyedGcra, KeyedLimiter, WhenFull};
use tollgate_core::{Nanos, Quota, gcra};

/// Keys `0..KEYS`: more than a probe window holds.
const KEYS: u64 = 96;
/// Buckets of one probe window (`PROBE` in the `keyed` module: "the 8
/// buckets, 64 slots, from the key's home bucket").
const WINDOW_BUCKETS: usize = 8;
/// Slots of one probe window: `WINDOW_BUCKETS` buckets of 8 slots.
const WINDOW_SLOTS: usize = WINDOW_BUCKETS * 8;

/// Maps key `k` to a hash of our choosing: `k + 1` (home bucket 0 for every
/// key) or a bijective spread over all home buckets. Fingerprints are the
/// hashes (never 0 here), so keys never collide.
#[derive(Clone, Copy)]
struct Placed {
    spread: bool,
}

impl Placed {
    fn hash(self, k: u64) -> u64 {
        if self.spread {
            (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        } else {
            k + 1
        }
    }
}

struct PlacedHasher(Placed, u64);

impl Hasher for PlacedHasher {
    fn finish(&self) -> u64 {
        self.0.hash(self.1)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.1 = (self.1 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.1 = n;
    }
}

impl BuildHasher for Placed {
    type Hasher = PlacedHasher;
    fn build_hasher(&self) -> PlacedHasher {
        PlacedHasher(*self, 0)
    }
}

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

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Policy {
    Deny,
    AllowUntracked,
    EvictNearestFresh,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Check {
        key: u8,
        plan: u8,
        dt: u32,
        cost: u8,
    },
    Refund {
        key: u8,
        plan: u8,
        dt: u32,
        cost: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    spread: bool,
    policy: Policy,
    plans: [QuotaSpec; 3],
    start: u32,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let Some(plans) = input
        .plans
        .iter()
        .map(|s| s.quota())
        .collect::<Option<Vec<Quota>>>()
    else {
        return;
    };
    let capacity = usize::from(input.capacity % 64) + 1;
    let placed = Placed {
        spread: input.spread,
    };
    let when_full = match input.policy {
        Policy::Deny => WhenFull::Deny,
        Policy::AllowUntracked => WhenFull::AllowUntracked,
        Policy::EvictNearestFresh => WhenFull::EvictNearestFresh,
    };
    let store = KeyedLimiter::with_hasher(capacity, KeyedGcra, placed)
        .expect("small capacity")
        .when_full(when_full);
    // Home buckets as the store computes them (load factor 0.71, 8 slots per
    // bucket, at least one window's worth of homes; multiply-high placement).
    let homes = (capacity * 100).div_ceil(71).div_ceil(8).max(WINDOW_BUCKETS);
    let home = |k: u64| ((u128::from(placed.hash(k)) * homes as u128) >> 64) as usize;
    let plan_of = |k: u64| &plans[(k % 3) as usize];

    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut now = u64::from(input.start) * 1_000;
    for op in input.ops.iter().take(384) {
        let (Op::Check {
            key,
            plan,
            dt,
            cost,
        }
        | Op::Refund {
            key,
            plan,
            dt,
            cost,
        }) = *op;
        let (key, cost) = (u64::from(key) % KEYS, u32::from(cost));
        let q = &plans[usize::from(plan) % 3];
        now = now.saturating_add(u64::from(dt));
        let t = Nanos::new(now);
        let state = model.get(&key).copied().unwrap_or(0);
        // Keys other than `key` holding a non-fresh state whose probe window
        // overlaps `key`'s.
        let blockers = model
            .iter()
            .filter(|&(&k, &s)| k != key && s > now && home(k).abs_diff(home(key)) < WINDOW_BUCKETS)
            .count();
        let full = blockers >= WINDOW_SLOTS;
        let mut insertion = false;

        match *op {
            Op::Check { .. } => {
                let (want, new) = gcra::decide(q, state, t, cost);
                // A key whose reference state is fresh may be untracked: its
                // admission then needs a slot.
                insertion = state <= now && new.is_some();
                match store.check_n(&key, q, t, cost) {
                    KeyedDecision::Decided(d) => {
                        assert_eq!(d, want, "key {key}: store and reference differ");
                        if insertion && full && !input.spread {
                            // One shared window, full: only an eviction makes room.
                            assert_eq!(
                                when_full,
                                WhenFull::EvictNearestFresh,
                                "key {key} inserted into a full window"
                            );
                        }
                        if let Some(new) = new {
                            model.insert(key, new);
                        }
                    }
                    KeyedDecision::StoreFull => {
                        assert_eq!(when_full, WhenFull::Deny, "StoreFull under {when_full:?}");
                        assert!(insertion, "StoreFull without a slot needed: {want:?}");
                        assert!(full, "StoreFull with {blockers} keys in the window");
                    }
                    KeyedDecision::Untracked(d) => {
                        assert_eq!(
                            when_full,
                            WhenFull::AllowUntracked,
                            "Untracked under {when_full:?}"
                        );
                        assert!(insertion, "Untracked without a slot needed: {want:?}");
                        assert!(full, "Untracked with {blockers} keys in the window");
                        // Decided as a fresh key, and not tracked.
                        assert_eq!(d, gcra::decide(q, 0, t, cost).0);
                        assert_eq!(d, want);
                    }
                }
            }
            Op::Refund { .. } => {
                if let Some(new) = gcra::refunded(q, state, t, cost) {
                    model.insert(key, new);
                }
                let want = gcra::snapshot(q, model.get(&key).copied().unwrap_or(0), t);
                assert_eq!(store.refund(&key, q, t, cost), want, "key {key}: refund");
            }
        }

        // Every key reads as in the reference, but for one evicted key.
        let mut evicted = Vec::new();
        for k in 0..KEYS {
            let s = model.get(&k).copied().unwrap_or(0);
            let got = store.peek(&k, plan_of(k), t);
            if got != gcra::snapshot(plan_of(k), s, t) {
                evicted.push((k, s, got));
            }
        }
        if let [(k, s, got)] = evicted[..] {
            assert_eq!(
                when_full,
                WhenFull::EvictNearestFresh,
                "key {k} changed: {got:?}"
            );
            assert!(
                insertion && full && k != key,
                "key {k} evicted by key {key} ({blockers} blockers)"
            );
            assert_eq!(
                got,
                gcra::snapshot(plan_of(k), 0, t),
                "evicted key {k} is not fresh"
            );
            if !input.spread {
                // All keys share one window: the victim is nearest to fresh.
                let nearest = model
                    .iter()
                    .filter(|&(&o, &st)| o != key && st > now)
                    .map(|(_, &st)| st - now)
                    .min()
                    .expect("a full window");
                assert_eq!(
                    s - now,
                    nearest,
                    "evicted key {k} is not the nearest to fresh"
                );
            }
            model.insert(k, 0);
        } else {
            assert!(evicted.is_empty(), "keys changed: {evicted:?}");
        }
        if !input.spread && insertion && matches!(when_full, WhenFull::EvictNearestFresh) {
            // One shared window: an insertion into a full one must evict.
            assert_eq!(
                evicted.len(),
                usize::from(full),
                "eviction iff the window was full"
            );
        }
        let live = model.values().filter(|&&s| s > now).count();
        assert_eq!(store.len(t), live, "keys not fresh");
    }
});
