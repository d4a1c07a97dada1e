//! GCRA — the generic cell rate algorithm — on one `AtomicU64`.
//!
//! The state is one number, the *theoretical arrival time* (TAT): the instant
//! at which the limiter would be full again if nothing more were admitted. A
//! fresh limiter has `TAT <= now` (we use 0). Admitting `cost` units moves the
//! TAT to `max(TAT, now) + cost × T`, and is allowed only if the new TAT is at
//! most `now + burst × T`.
//!
//! The arithmetic is the pure function [`decide`]; [`Gcra`] publishes its
//! result with a compare-and-swap loop. The same `decide` serves every other
//! place that keeps a TAT (keyed stores, composites, a Redis script).
//!
//! # The bound
//!
//! For any run of consecutive admissions `i..=j` (in the order their CAS took
//! effect) at times `s_i ..= s_j`, the admitted cost minus the cost refunded in
//! between is at most `burst + (s_j - s_i) / T`, rounded down; when time went
//! backwards (`s_j < s_i`) the bound is tighter, not looser. With `T` rounded up
//! by [`Quota`], that never exceeds the quota as asked: in any interval of
//! length `t`, at most `burst + t × limit / period` units.
//!
//! Proof sketch: the base `max(TAT, s_i)` of admission `i` is at least `s_i`;
//! each admission adds exactly `cost × T` and a refund removes at most
//! `cost × T`, so after admission `j` the TAT is at least
//! `s_i + net_cost × T`; admission `j` required TAT `<= s_j + burst × T`.
//! `core/tests/model.rs` checks this bound on random histories and
//! `core/tests/loom.rs` checks it for every interleaving of racing threads.

use crate::decision::{Decision, Snapshot};
use crate::quota::Quota;
use crate::sync::{AtomicU64, Ordering};
use crate::time::Nanos;

/// The GCRA decision: given the stored TAT, the time and the cost, what to
/// answer and what TAT to store (`None`: store nothing).
///
/// A pure function: the same inputs always give the same output. It never
/// panics and never overflows, for any `tat`, `now` and `cost`:
///
/// * `cost > burst` gives [`Decision::ExceedsCapacity`] and no write;
/// * `cost == 0` gives [`Decision::Allowed`] with the current state and no
///   write;
/// * a denial never writes;
/// * when the new TAT would pass `u64::MAX` ns, the request is denied with
///   `retry_after == Nanos::MAX` — stricter, never looser. That takes a TAT
///   within `cost × T` of the end of the range: `now` beyond 2^63 ns ≈ 292
///   years, or a capacity (`burst × T`) near its 2^63 ns maximum that is
///   nearly used up (e.g. `per_minute(1)` with a burst of 1.5 × 10^8).
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{gcra, Decision, Nanos, Quota};
///
/// let q = Quota::per_second(NonZeroU32::new(10).unwrap()); // T = 100 ms, burst 10
/// let (d, new_tat) = gcra::decide(&q, 0, Nanos::from_secs(5), 3);
/// assert!(d.is_allowed());
/// assert_eq!(new_tat, Some(5_300_000_000)); // 5 s + 3 × 100 ms
///
/// // A TAT a full second ahead: the bucket is empty.
/// let (d, new_tat) = gcra::decide(&q, 6_000_000_000, Nanos::from_secs(5), 1);
/// assert_eq!(d.retry_after(), Some(Nanos::from_millis(100)));
/// assert_eq!(new_tat, None);
/// ```
#[inline]
pub fn decide(quota: &Quota, tat: u64, now: Nanos, cost: u32) -> (Decision, Option<u64>) {
    let s = step(quota, tat, now.as_u64(), cost);
    let write = match s {
        Step::Take { new_tat, .. } => Some(new_tat),
        _ => None,
    };
    (s.decision(quota, cost), write)
}

/// The outcome of the GCRA arithmetic, before it is dressed as a
/// [`Decision`]: plain integers, so the CAS loop in [`Gcra::check_n`] keeps
/// them in registers and builds the `Decision` only once, after the CAS.
#[derive(Clone, Copy)]
enum Step {
    /// Admit; store `new_tat`; the limiter is full again `after` ns later.
    Take { new_tat: u64, after: u64 },
    /// Admit a cost of 0: nothing to store.
    Read { after: u64 },
    /// Refuse: the stored TAT is `ahead` ns past now; this cost would fit
    /// `wait` ns from now.
    Deny { ahead: u64, wait: u64 },
    /// The cost exceeds the burst.
    Never,
}

impl Step {
    #[inline]
    fn decision(self, quota: &Quota, cost: u32) -> Decision {
        // One `remaining` for both arms (the TAT's distance past now, after
        // an admission or as it stands on a refusal): one copy of its
        // multiply in the code.
        let ahead = match self {
            Step::Take { after, .. } | Step::Read { after } => after,
            Step::Deny { ahead, .. } => ahead,
            Step::Never => 0,
        };
        let remaining = remaining(quota, ahead);
        match self {
            Step::Take { .. } | Step::Read { .. } => Decision::Allowed {
                remaining,
                reset_after: Nanos::new(ahead),
            },
            Step::Deny { wait, .. } => Decision::Denied {
                retry_after: Nanos::new(wait),
                remaining,
                reset_after: Nanos::new(ahead),
            },
            Step::Never => Decision::ExceedsCapacity {
                cost,
                capacity: quota.burst().get(),
            },
        }
    }
}

/// The GCRA arithmetic shared by [`decide`] and [`Gcra::check_n`].
#[inline(always)]
fn step(quota: &Quota, tat: u64, now: u64, cost: u32) -> Step {
    if cost > quota.burst().get() {
        return Step::Never;
    }
    let base = if tat > now { tat } else { now };
    // cost <= burst and burst × T <= 2^63, so this cannot overflow.
    let inc = cost as u64 * quota.emission_raw();
    let Some(new_tat) = base.checked_add(inc) else {
        // Only near the end of the range (see `decide`): refuse rather than
        // lose state.
        return Step::Deny {
            ahead: base - now,
            wait: u64::MAX,
        };
    };
    // new_tat >= base >= now.
    let after = new_tat - now;
    let cap = quota.capacity_raw();
    if cost == 0 {
        // Asks for nothing, so it is always allowed (a read-out), even when
        // time went backwards past the capacity.
        Step::Read { after }
    } else if after <= cap {
        Step::Take { new_tat, after }
    } else {
        // after > cap: the earliest time this cost fits is new_tat - cap.
        Step::Deny {
            ahead: base - now,
            wait: after - cap,
        }
    }
}

/// Whether [`Gcra::check_n`] confirms every outcome with one
/// compare-exchange instead of a load followed by a compare-exchange.
///
/// Where the 64-bit word is native (x86-64, AArch64, RISC-V 64), a load is
/// nearly free and a denial must not take the cache line away from other
/// cores, so the check loads first and writes only to admit. Where it is not
/// (thumbv7em: portable-atomic's global spinlocks, or interrupts disabled
/// with `unsafe-assume-single-core`), every access costs about the same and
/// the load path would emit the 64-bit atomic twice; one exchange site keeps
/// the check small (`ci/size.sh`: 784 → 712 bytes with the spinlocks, 470 →
/// 388 with interrupts disabled, thumbv7em, opt-level "s"). Not with this
/// crate's `critical-section` feature (thumbv6m, riscv32imc): there a load is
/// an inlined critical section and the load path is the smaller one (446 vs
/// 480 bytes on thumbv6m). `--cfg tollgate_one_rmw` selects it on any
/// target, so the tests and the loom models exercise it on the build machine
/// (`ci/loom.sh`, `ci/one_rmw.sh`).
const ONE_RMW: bool = cfg!(any(
    all(
        not(target_has_atomic = "64"),
        not(feature = "critical-section")
    ),
    tollgate_one_rmw
));

/// Unit requests that fit when the TAT is `ahead` ns past now.
///
/// Out of line where 64-bit arithmetic is software (no native 64-bit
/// atomics is the proxy): otherwise the optimiser copies its multiplies into
/// both arms of [`Step::decision`].
#[cfg_attr(not(target_has_atomic = "64"), inline(never))]
#[cfg_attr(target_has_atomic = "64", inline)]
fn remaining(quota: &Quota, ahead: u64) -> u32 {
    let free = quota.units_in(quota.capacity_raw().saturating_sub(ahead));
    // free <= capacity / T == burst, which is a u32.
    u32::try_from(free).unwrap_or(u32::MAX)
}

/// The state read-out for a stored TAT at `now`, without consuming anything.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{gcra, Nanos, Quota};
///
/// let q = Quota::per_second(NonZeroU32::new(10).unwrap());
/// let s = gcra::snapshot(&q, 1_000_000_000, Nanos::from_millis(800));
/// assert_eq!(s.remaining, 8);
/// assert_eq!(s.reset_after, Nanos::from_millis(200));
/// ```
#[inline]
pub fn snapshot(quota: &Quota, tat: u64, now: Nanos) -> Snapshot {
    let ahead = tat.saturating_sub(now.as_u64());
    Snapshot {
        limit: quota.limit().get(),
        remaining: remaining(quota, ahead),
        reset_after: Nanos::new(ahead),
    }
}

/// The TAT after refunding `cost` units at `now` (`None`: nothing to change).
///
/// The TAT moves back by `cost × T` but never below `now`: a refund can return
/// the limiter to a fresh state, never beyond it.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{gcra, Nanos, Quota};
///
/// let q = Quota::per_second(NonZeroU32::new(10).unwrap());
/// assert_eq!(gcra::refunded(&q, 500_000_000, Nanos::ZERO, 2), Some(300_000_000));
/// assert_eq!(gcra::refunded(&q, 500_000_000, Nanos::ZERO, 50), Some(0));
/// assert_eq!(gcra::refunded(&q, 500_000_000, Nanos::from_secs(1), 1), None);
/// ```
#[inline]
pub fn refunded(quota: &Quota, tat: u64, now: Nanos, cost: u32) -> Option<u64> {
    let now = now.as_u64();
    if tat <= now || cost == 0 {
        return None;
    }
    let back = (cost as u64).saturating_mul(quota.emission_raw());
    let new_tat = tat.saturating_sub(back);
    Some(if new_tat > now { new_tat } else { now })
}

/// The TAT after refunding `cost` units charged at `charged_at`, as of
/// `now` (`None`: nothing to change): only what the charge still weighs.
///
/// The charge moved the TAT `cost × T` forward; the limiter has since
/// regenerated `now − charged_at` of it at most, so at least `cost × T −
/// (now − charged_at)` of the charge is still in the TAT (all of it if the
/// limiter was never full in between, less if it was). The TAT moves back by
/// that much, never below `now`: a late refund can never admit beyond the
/// bound, where [`refunded`] at `now` would give back units time already
/// returned. A `charged_at` after `now` (a clock stepping back) counts as no
/// time elapsed.
///
/// A `now` older than a check the TAT has already seen (the refunding thread
/// read its clock, then another thread checked later) is moved up to the
/// earliest `now` that check can have had: an admission at `now'` leaves the
/// TAT at most `burst × T` past `now'`, so `TAT − burst × T` is a time the
/// limiter has already reached. Without this, such a refund would give back
/// a charge the later check's refill had already restored (18 kept at one
/// instant with a burst of 10).
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{gcra, Nanos, Quota};
///
/// let q = Quota::per_second(NonZeroU32::new(1).unwrap()); // T = 1 s
/// let t0 = Nanos::ZERO;
/// let (_, tat) = gcra::decide(&q, 0, t0, 1); // TAT = 1 s
/// let tat = tat.unwrap();
/// // Given back at once: the whole second.
/// assert_eq!(gcra::refunded_since(&q, tat, t0, t0, 1), Some(0));
/// // 0.4 s later: only the 0.6 s the charge still weighs.
/// let later = Nanos::from_millis(400);
/// assert_eq!(gcra::refunded_since(&q, tat, t0, later, 1), Some(400_000_000));
/// // A second later the limiter has refilled on its own: nothing owed.
/// assert_eq!(gcra::refunded_since(&q, tat, t0, Nanos::from_secs(1), 1), None);
/// ```
#[inline]
pub fn refunded_since(
    quota: &Quota,
    tat: u64,
    charged_at: Nanos,
    now: Nanos,
    cost: u32,
) -> Option<u64> {
    let now = now.as_u64().max(tat.saturating_sub(quota.capacity_raw()));
    let elapsed = now.saturating_sub(charged_at.as_u64());
    let weight = (cost as u64).saturating_mul(quota.emission_raw());
    let owed = weight.saturating_sub(elapsed);
    if owed == 0 || tat <= now {
        return None;
    }
    Some(tat.saturating_sub(owed).max(now))
}

/// A lock-free GCRA rate limiter: one `AtomicU64` plus its [`Quota`].
///
/// `const fn new`, so it can live in a `static` (firmware, global limits).
/// Every method takes the time as an argument; see [`crate::Clock`].
///
/// # Memory ordering
///
/// All accesses to the TAT word are `Relaxed`. The word publishes no other
/// memory, so there is nothing for an Acquire/Release pair to order; what the
/// bound needs is that each successful CAS acts on the latest value in the
/// word's modification order, which every read-modify-write guarantees at any
/// ordering. A `Relaxed` load may read an older TAT than another thread has
/// just written; the CAS then fails and the loop retries with the value it
/// returns, and a denial decided on such a read is one that was true at some
/// point during the call (reads of one word never go backwards in a thread).
/// `core/tests/loom.rs` checks this under every interleaving.
///
/// # Examples
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{Decision, Gcra, ManualClock, Clock, Nanos, Quota};
///
/// static LIMIT: Gcra = Gcra::new(Quota::per_second(NonZeroU32::new(5).unwrap()));
/// let clock = ManualClock::new(Nanos::ZERO);
///
/// for _ in 0..5 {
///     assert!(LIMIT.check(clock.now()).is_allowed());
/// }
/// let d = LIMIT.check(clock.now());
/// assert_eq!(d.retry_after(), Some(Nanos::from_millis(200)));
///
/// clock.advance(Nanos::from_millis(200));
/// assert!(LIMIT.check(clock.now()).is_allowed());
/// ```
#[derive(Debug)]
pub struct Gcra {
    tat: AtomicU64,
    quota: Quota,
}

impl Gcra {
    /// A full (fresh) limiter for `quota`.
    #[cfg(not(tollgate_loom))]
    pub const fn new(quota: Quota) -> Gcra {
        Gcra {
            tat: AtomicU64::new(0),
            quota,
        }
    }

    /// A full (fresh) limiter for `quota` (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(quota: Quota) -> Gcra {
        Gcra {
            tat: AtomicU64::new(0),
            quota,
        }
    }

    /// The quota this limiter enforces.
    #[inline]
    pub const fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Asks to admit one unit at `now`. Same as `check_n(now, 1)`.
    #[inline]
    pub fn check(&self, now: Nanos) -> Decision {
        self.check_n(now, 1)
    }

    /// Asks to admit `cost` units at `now`, all or nothing.
    ///
    /// A denial ([`Decision::Denied`] or [`Decision::ExceedsCapacity`])
    /// performs no write. Lock-free: the loop retries only when another thread
    /// changed the state in between, i.e. when some other operation made
    /// progress.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Gcra, Nanos, Quota};
    ///
    /// // CyberVault-style cost factor: a scan costs 5 units of 60 per minute.
    /// let gcra = Gcra::new(Quota::per_minute(NonZeroU32::new(60).unwrap()));
    /// let d = gcra.check_n(Nanos::ZERO, 5);
    /// assert_eq!(d.remaining(), 55);
    /// ```
    #[inline]
    pub fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        if ONE_RMW {
            return self.check_n_one_rmw(now, cost);
        }
        // Relaxed: see "Memory ordering" on the type.
        let mut tat = self.tat.load(Ordering::Relaxed);
        // The `Decision` is built in one place, after the loop: its
        // arithmetic (`remaining`, a 64×64-bit multiply) is then emitted
        // once, which halves the check's code on 32-bit targets.
        let s = loop {
            let s = step(&self.quota, tat, now.as_u64(), cost);
            let Step::Take { new_tat, .. } = s else {
                break s;
            };
            // Relaxed on both sides: the RMW itself orders updates of this one
            // word; no other memory is published (see the type's docs).
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break s,
                Err(actual) => tat = actual,
            }
        };
        s.decision(&self.quota, cost)
    }

    /// `check_n` for targets without a native 64-bit CAS (see [`ONE_RMW`]):
    /// one compare-exchange site and no separate load, so the 64-bit
    /// atomic (a lock or a critical section there) is emitted once.
    ///
    /// Every outcome is confirmed by a successful compare-exchange whose
    /// expected value is the TAT the outcome was computed from: an admission
    /// stores its new TAT; a refusal or read-out stores the TAT it read
    /// (the same value, so nothing observable changes — "a denial performs
    /// no write" still holds for every reader). The first guess is 0 (a
    /// fresh limiter); when it is wrong the failed exchange returns the
    /// actual TAT and the loop recomputes from it. Linearizable at the
    /// successful exchange, like the load-and-CAS loop.
    #[inline]
    fn check_n_one_rmw(&self, now: Nanos, cost: u32) -> Decision {
        let mut tat = 0;
        let s = loop {
            let s = step(&self.quota, tat, now.as_u64(), cost);
            let store = match s {
                Step::Take { new_tat, .. } => new_tat,
                _ => tat,
            };
            // Relaxed: as in `check_n` (one word, nothing else published).
            match self
                .tat
                .compare_exchange_weak(tat, store, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break s,
                Err(actual) => tat = actual,
            }
        };
        s.decision(&self.quota, cost)
    }

    /// The decision [`Gcra::check_n`] would make at `now`, without
    /// consuming anything (no write).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Gcra, Nanos, Quota};
    ///
    /// let gcra = Gcra::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// assert!(gcra.probe(Nanos::ZERO, 1).is_allowed());
    /// assert!(gcra.probe(Nanos::ZERO, 1).is_allowed()); // nothing consumed
    /// ```
    #[inline]
    pub fn probe(&self, now: Nanos, cost: u32) -> Decision {
        // Relaxed: see "Memory ordering" on the type.
        decide(&self.quota, self.tat.load(Ordering::Relaxed), now, cost).0
    }

    /// The state at `now` without consuming anything: remaining units and
    /// time until full. Performs no write.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Gcra, Nanos, Quota};
    ///
    /// let gcra = Gcra::new(Quota::per_second(NonZeroU32::new(4).unwrap()));
    /// assert_eq!(gcra.peek(Nanos::ZERO).remaining, 4);
    /// let _ = gcra.check(Nanos::ZERO);
    /// assert_eq!(gcra.peek(Nanos::ZERO).remaining, 3);
    /// assert_eq!(gcra.peek(Nanos::ZERO).reset_after, Nanos::from_millis(250));
    /// ```
    #[inline]
    pub fn peek(&self, now: Nanos) -> Snapshot {
        // Relaxed: see "Memory ordering" on the type.
        snapshot(&self.quota, self.tat.load(Ordering::Relaxed), now)
    }

    /// Gives back `cost` units that were admitted but not used (S4E: a
    /// `304 Not Modified` consumes no token). Never moves the limiter past a
    /// fresh state. Returns the state after the refund. Refund promptly: a
    /// refund made after the bucket has refilled gives back a unit time
    /// already returned (see [`Limiter::refund`](crate::Limiter::refund));
    /// [`Gcra::refund_since`] gives back only what the charge still weighs.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Gcra, Nanos, Quota};
    ///
    /// let gcra = Gcra::new(Quota::per_second(NonZeroU32::new(2).unwrap()));
    /// let now = Nanos::ZERO;
    /// let _ = gcra.check_n(now, 2);
    /// assert!(!gcra.check(now).is_allowed());
    /// assert_eq!(gcra.refund(now, 1).remaining, 1);
    /// assert!(gcra.check(now).is_allowed());
    /// assert_eq!(gcra.refund(now, 1_000).remaining, 2); // capped at fresh
    /// ```
    pub fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        self.give_back(now, |tat| refunded(&self.quota, tat, now, cost))
    }

    /// Gives back `cost` units admitted at `charged_at`, as of `now`: only
    /// what the charge still weighs (see [`refunded_since`]), so a refund
    /// that comes late — after the limiter refilled on its own — can never
    /// admit beyond the bound. Made at `charged_at`, it is [`Gcra::refund`].
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Gcra, Nanos, Quota};
    ///
    /// let gcra = Gcra::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// let t0 = Nanos::ZERO;
    /// assert!(gcra.check(t0).is_allowed());
    /// // One second later the limiter is full again and admits one...
    /// let t1 = Nanos::from_secs(1);
    /// assert!(gcra.check(t1).is_allowed());
    /// // ...so the first request's late refund has nothing left to give:
    /// // `refund(t1, 1)` would have admitted a second request at t1.
    /// assert_eq!(gcra.refund_since(t0, t1, 1).remaining, 0);
    /// assert!(!gcra.check(t1).is_allowed());
    /// ```
    pub fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        self.give_back(now, |tat| {
            refunded_since(&self.quota, tat, charged_at, now, cost)
        })
    }

    /// Replaces the TAT with `new(tat)` until the exchange lands (`None`:
    /// nothing to change); the state at `now` after.
    fn give_back(&self, now: Nanos, new: impl Fn(u64) -> Option<u64>) -> Snapshot {
        // Relaxed: see "Memory ordering" on the type.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let Some(new_tat) = new(tat) else {
                return snapshot(&self.quota, tat, now);
            };
            // Relaxed: as in `check_n`.
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return snapshot(&self.quota, new_tat, now),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Returns the limiter to a fresh (full) state.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Gcra, Nanos, Quota};
    ///
    /// let gcra = Gcra::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// let _ = gcra.check(Nanos::ZERO);
    /// assert!(!gcra.check(Nanos::ZERO).is_allowed());
    /// gcra.reset();
    /// assert!(gcra.check(Nanos::ZERO).is_allowed());
    /// ```
    pub fn reset(&self) {
        // Relaxed: see "Memory ordering" on the type.
        self.tat.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::num::NonZeroU32;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn burst_then_steady_rate() {
        let g = Gcra::new(Quota::per_second(nz(10)));
        let t0 = Nanos::from_secs(100);
        for i in 0..10 {
            let d = g.check(t0);
            assert_eq!(
                d,
                Decision::Allowed {
                    remaining: 9 - i,
                    reset_after: Nanos::from_millis(100 * (i as u64 + 1)),
                }
            );
        }
        assert_eq!(
            g.check(t0),
            Decision::Denied {
                retry_after: Nanos::from_millis(100),
                remaining: 0,
                reset_after: Nanos::from_secs(1),
            }
        );
        let t1 = t0 + Nanos::from_millis(100) - Nanos::new(1);
        assert!(!g.check(t1).is_allowed());
        assert!(g.check(t0 + Nanos::from_millis(100)).is_allowed());
    }

    #[test]
    fn denial_does_not_write() {
        let g = Gcra::new(Quota::per_second(nz(2)));
        let _ = g.check_n(Nanos::ZERO, 2);
        let before = g.tat.load(Ordering::Relaxed);
        for cost in [1, 2, 3, u32::MAX] {
            assert!(!g.check_n(Nanos::ZERO, cost).is_allowed());
            assert_eq!(g.tat.load(Ordering::Relaxed), before);
        }
    }

    #[test]
    fn cost_above_burst_is_distinct_and_free() {
        let g = Gcra::new(Quota::per_minute(nz(60)).with_burst(nz(5)));
        assert_eq!(
            g.check_n(Nanos::ZERO, 6),
            Decision::ExceedsCapacity {
                cost: 6,
                capacity: 5
            }
        );
        assert_eq!(g.peek(Nanos::ZERO).remaining, 5);
        assert!(g.check_n(Nanos::ZERO, 5).is_allowed());
    }

    #[test]
    fn zero_cost_reads_without_consuming() {
        let g = Gcra::new(Quota::per_second(nz(3)));
        let d = g.check_n(Nanos::ZERO, 0);
        assert_eq!(d.remaining(), 3);
        assert_eq!(g.tat.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn partial_remaining_on_denial() {
        let g = Gcra::new(Quota::per_second(nz(10)));
        let _ = g.check_n(Nanos::ZERO, 7);
        match g.check_n(Nanos::ZERO, 5) {
            Decision::Denied {
                retry_after,
                remaining,
                ..
            } => {
                assert_eq!(remaining, 3);
                assert_eq!(retry_after, Nanos::from_millis(200));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn time_going_backwards_is_stricter() {
        let g = Gcra::new(Quota::per_second(nz(2)));
        let t = Nanos::from_secs(10);
        assert!(g.check_n(t, 2).is_allowed());
        // Going back 1 s: the bucket looks even more occupied.
        let d = g.check(t - Nanos::from_secs(1));
        assert_eq!(d.retry_after(), Some(Nanos::from_millis(1_500)));
        assert!(!g.check(Nanos::ZERO).is_allowed());
    }

    #[test]
    fn extremes_do_not_panic() {
        let quotas = [
            Quota::per_day(nz(1)),
            Quota::per_day(nz(1)).with_burst(NonZeroU32::MAX),
            Quota::per_second(nz(1_000_000_000)),
            Quota::per_second(NonZeroU32::MAX).with_burst(NonZeroU32::MAX),
        ];
        let times = [0, 1, 1 << 62, 1 << 63, u64::MAX - 1, u64::MAX];
        let costs = [0, 1, 2, 106_751, u32::MAX - 1, u32::MAX];
        for q in quotas {
            for &tat in &times {
                for &now in &times {
                    for &cost in &costs {
                        let (d, new) = decide(&q, tat, Nanos::new(now), cost);
                        if let Some(n) = new {
                            assert!(d.is_allowed());
                            assert!(n - now <= q.capacity_raw());
                        }
                        if let Decision::Denied { retry_after, .. } = d {
                            assert!(retry_after > Nanos::ZERO);
                        }
                        let _ = snapshot(&q, tat, Nanos::new(now));
                        let _ = refunded(&q, tat, Nanos::new(now), cost);
                    }
                }
            }
        }
    }

    #[test]
    fn saturated_time_refuses_instead_of_wrapping() {
        let q = Quota::per_second(nz(1));
        let near_end = Nanos::new(u64::MAX - 10);
        let (d, new) = decide(&q, 0, near_end, 1);
        assert_eq!(new, None);
        assert_eq!(d.retry_after(), Some(Nanos::MAX));
    }

    #[test]
    fn reset_restores_fresh_state() {
        let g = Gcra::new(Quota::per_hour(nz(1)));
        let _ = g.check(Nanos::ZERO);
        g.reset();
        assert_eq!(g.peek(Nanos::ZERO).remaining, 1);
    }
}
