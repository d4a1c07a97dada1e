//! [`TokenBucket`]: the GCRA limit stored as *(tokens, next refill)*, so that
//! an admission under contention is one `fetch_sub`.
//!
//! [`Gcra`](crate::Gcra) keeps one word, the theoretical arrival time, and
//! admits with a load and a compare-exchange. When many threads admit through
//! one limiter, every admission takes the word's cache line from another core
//! and a CAS that lost the race costs a second trip; a `fetch_sub` cannot lose.
//! GCRA itself cannot admit with a plain add: its floor `max(TAT, now)` depends
//! on each caller's own `now`, and an add that has to be taken back can land
//! under another caller's floored admission (BENCHMARKS.md, "Scaling"). The
//! token-bucket form of the same limit has no per-caller floor: tokens live in
//! one word, the time of the next token in another, and the non-linear step is
//! a ceiling at the constant `burst`, which composes with take-backs.
//!
//! # The state
//!
//! * `tokens` (an `i64` on its own cache line): units that can be admitted
//!   now, at most `burst`. Admissions `fetch_sub` it; an admission that finds
//!   too few tokens adds its cost back. While such a take-back is pending the
//!   word reads low (never high), so the value may dip below zero.
//! * `next` (a `u64` of nanoseconds, on a second cache line that is read by
//!   every check but written at most once per emission interval `T`): when the
//!   next token arrives. A caller whose `now` has reached `next` *claims* the
//!   tokens that arrived — `1 + (now - next) / T` of them — by moving `next`
//!   forward with a compare-exchange; only the caller whose exchange succeeds
//!   credits them, so no interval is counted twice. If the claim fills the
//!   bucket, the phase restarts: `next = now + T` (GCRA's `max(TAT, now)`).
//! * `empty` (a flag beside `next`): set by a check that found the bucket
//!   empty, cleared by the next claim or refund. While it is set, checks read
//!   `tokens` first and write only to admit, so a flood of denials stays
//!   read-only (a cache line shared by every core) instead of adding and
//!   taking back on every call.
//!
//! # Against [`Gcra`](crate::Gcra)
//!
//! Called from one thread without refunds, time moving forward, every decision — admitted or not,
//! `remaining`, `reset_after`, `retry_after` — equals [`Gcra`](crate::Gcra)'s
//! for the same quota and times (`core/tests/model_token_bucket.rs` checks
//! it). The differences are all in the stricter direction:
//!
//! * a refund (and an admission's take-back) fills the bucket to `burst - 1`
//!   at most; the last unit comes with the next refill, at most `T` later
//!   (a bucket made full by a refund would let its next token arrive early);
//! * while two calls race, one may be refused although the tokens would have
//!   covered it: an admission that found too few tokens has not yet added its
//!   cost back, or a claim has moved `next` but not yet credited its tokens;
//! * a claim that reads `tokens` while such a take-back is pending sees the
//!   bucket short by that cost; when that is the difference between full and
//!   not full, the claim keeps the old phase and caps at `burst - 1`, so the
//!   last token comes with the next refill, at most `T` late (the unit test
//!   `take_back_after_a_claim_never_fills_the_bucket_early` plays this
//!   interleaving; crediting to `burst` there would let a token arrive early).
//!
//! # The bound
//!
//! The same as GCRA's when time moves forward: for any run of consecutive
//! admissions at times `s_i ..= s_j`, admitted cost minus refunded cost is at
//! most `burst + (s_j - s_i) / T`. Tokens never exceed `burst` (every increment
//! is a capped compare-exchange or a claim computed against `burst`), and each
//! token is credited once, by the claim of the interval it arrived in. When a
//! caller's `now` is older than one already seen (a thread that read its clock
//! and was preempted), the bucket still holds only the tokens it holds, so the
//! bound holds with `s_j` replaced by the latest `now` any check in the run
//! saw; GCRA is stricter there (it reads its TAT as further ahead), which is
//! why the two are compared on forward-moving time.
//! `core/tests/loom_token_bucket.rs` checks it under every interleaving of
//! racing admissions, claims, take-backs and refunds.

use crate::decision::{Decision, Snapshot};
use crate::quota::Quota;
use crate::sync::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use crate::time::Nanos;

/// `next` at `u64::MAX`: no token will ever arrive again. A claim whose next
/// arrival would pass the end of the nanosecond range (about 584 years after
/// the clock's zero) stores this, so the bucket keeps only the tokens it has
/// instead of minting one on every check at `now == u64::MAX`; refusals then
/// say `retry_after == Nanos::MAX`, as GCRA's do there.
const NEVER: u64 = u64::MAX;

/// A value alone on its cache line (128 bytes: adjacent-line prefetch on x86
/// pulls pairs of 64-byte lines).
#[derive(Debug)]
#[repr(align(128))]
struct Line<T>(T);

/// The rarely written half of the state: read by every check, written by a
/// claim (at most once per `T`) and when the bucket runs empty.
#[derive(Debug)]
struct Refill {
    /// Nanoseconds at which the next token arrives; 0 in a fresh bucket (a
    /// full bucket's first claim restarts the phase at its `now`).
    next: AtomicU64,
    /// A recent check found too few tokens: read before writing.
    empty: AtomicBool,
}

/// A lock-free token bucket whose admissions are one `fetch_sub` when many
/// threads share it: the limit of [`Gcra`](crate::Gcra) for a limiter that is
/// hot on several cores at once (one global limit for a whole service).
///
/// Same [`Quota`], same [`Decision`]s: `burst` units at once, one more every
/// emission interval `T`. See the [module docs](crate::token_bucket) for the state, how it
/// differs from `Gcra` (only ever stricter) and the bound.
///
/// Use [`Gcra`](crate::Gcra) where one thread at a time uses a limiter (per
/// key, in a keyed store, on a microcontroller): it is one word instead of two
/// cache lines, and its refunds are exact. Use `TokenBucket` for a limiter
/// that several cores admit through at once: two threads on one key admit
/// about twice as many requests per second (BENCHMARKS.md, "Scaling").
///
/// # Memory ordering
///
/// Every access is `Relaxed`. Neither word publishes other memory, and the
/// bound rests only on facts every atomic read-modify-write gives at any
/// ordering: each claim's compare-exchange acts on the latest `next`, so
/// intervals are claimed once; every change of `tokens` is a read-modify-write
/// on the latest value and every increase is capped at `burst`. A stale read
/// of `tokens` before a claim makes the claim credit fewer tokens (stricter)
/// or more, which the cap then removes; a stale read of `next` makes a check
/// consume before a refill that has already happened (stricter) or attempt a
/// claim whose exchange then fails. `core/tests/loom_token_bucket.rs` checks
/// this under every interleaving loom explores.
///
/// # Examples
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{Nanos, Quota, TokenBucket};
///
/// // One limit for the whole service, shared by every worker thread.
/// static GLOBAL: TokenBucket = TokenBucket::new(Quota::per_second(NonZeroU32::new(5).unwrap()));
///
/// let now = Nanos::from_secs(1);
/// for _ in 0..5 {
///     assert!(GLOBAL.check(now).is_allowed());
/// }
/// let d = GLOBAL.check(now);
/// assert_eq!(d.retry_after(), Some(Nanos::from_millis(200)));
/// assert!(GLOBAL.check(now + Nanos::from_millis(200)).is_allowed());
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    tokens: Line<AtomicI64>,
    refill: Line<Refill>,
    quota: Quota,
}

/// A token count as a `u32` (counts never exceed `burst`, a `u32`).
#[inline]
fn as_units(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// The bucket as one caller sees it after any refill due at its `now`.
#[derive(Clone, Copy, Debug)]
struct View {
    /// Tokens, clamped at 0 (a pending take-back reads as no tokens).
    tokens: u64,
    /// When the next token arrives (meaningless once `tokens == burst`).
    next: u64,
}

impl TokenBucket {
    /// A full bucket for `quota`.
    #[cfg(not(tollgate_loom))]
    pub const fn new(quota: Quota) -> TokenBucket {
        TokenBucket {
            tokens: Line(AtomicI64::new(quota.burst().get() as i64)),
            refill: Line(Refill {
                next: AtomicU64::new(0),
                empty: AtomicBool::new(false),
            }),
            quota,
        }
    }

    /// A full bucket for `quota` (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(quota: Quota) -> TokenBucket {
        TokenBucket {
            tokens: Line(AtomicI64::new(quota.burst().get() as i64)),
            refill: Line(Refill {
                next: AtomicU64::new(0),
                empty: AtomicBool::new(false),
            }),
            quota,
        }
    }

    /// The quota this bucket enforces.
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
    /// Admitting is one `fetch_sub` unless a refill is due (then one
    /// compare-exchange on the refill line first, at most once per `T` across
    /// all threads) or the bucket recently ran empty (then a load, and a
    /// compare-exchange only to admit). A check that finds too few tokens after
    /// its `fetch_sub` adds the cost back before it returns: the bucket is
    /// never left short by a refused request.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Decision, Nanos, Quota, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Quota::per_minute(NonZeroU32::new(60).unwrap()));
    /// assert_eq!(bucket.check_n(Nanos::ZERO, 5).remaining(), 55);
    /// assert_eq!(
    ///     bucket.check_n(Nanos::ZERO, 61),
    ///     Decision::ExceedsCapacity { cost: 61, capacity: 60 }
    /// );
    /// ```
    #[inline]
    pub fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        let burst = self.quota.burst().get();
        if cost == 0 || cost > burst {
            return self.probe(now, cost);
        }
        let now = now.as_u64();
        // Relaxed: see "Memory ordering" on the type.
        let mut next = self.refill.0.next.load(Ordering::Relaxed);
        if now >= next && next != NEVER {
            next = self.claim(now, next);
        }
        let c = i64::from(cost);
        if !self.refill.0.empty.load(Ordering::Relaxed) {
            let old = self.tokens.0.fetch_sub(c, Ordering::Relaxed);
            if old >= c {
                return self.allowed(old - c, next, now);
            }
            // Too few: add the cost back before deciding, and let the next
            // checks read before they write.
            self.give_back(c);
            self.refill.0.empty.store(true, Ordering::Relaxed);
        }
        self.check_reading_first(now, next, c, cost)
    }

    /// The bucket ran empty recently: load, refuse without writing, or admit
    /// with a compare-exchange that cannot overshoot.
    #[inline]
    fn check_reading_first(&self, now: u64, next: u64, c: i64, cost: u32) -> Decision {
        let mut x = self.tokens.0.load(Ordering::Relaxed);
        loop {
            if x < c {
                return self.denied(x, next, now, cost);
            }
            match self.tokens.0.compare_exchange_weak(
                x,
                x - c,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.allowed(x - c, next, now),
                Err(actual) => x = actual,
            }
        }
    }

    /// Claims and credits the tokens that arrived up to `now` (`now >= seen`,
    /// the `next` this caller read, and `seen != NEVER`). A `next` that would
    /// pass `u64::MAX` saturates to [`NEVER`]. Returns the `next` in force afterwards.
    #[cold]
    #[inline(never)]
    fn claim(&self, now: u64, mut seen: u64) -> u64 {
        let burst = i64::from(self.quota.burst().get());
        let t = self.quota.emission_raw();
        loop {
            // Relaxed: a stale read only changes how much is credited, and the
            // cap in `add_capped` bounds that (see "Memory ordering").
            let x0 = self.tokens.0.load(Ordering::Relaxed).min(burst);
            let arrived = self.quota.units_in(now - seen).saturating_add(1);
            // x0 <= burst, so room >= 0.
            let room = (burst - x0) as u64;
            let (credit, next, cap) = if arrived >= room {
                // Full: GCRA's floor, the phase restarts at now.
                (room, now.saturating_add(t), burst)
            } else {
                // arrived < room <= 2 × u32::MAX here, and arrived × T
                // <= now - seen + T.
                let next = seen.saturating_add(arrived.saturating_mul(t));
                (arrived, next, burst - 1)
            };
            match self.refill.0.next.compare_exchange(
                seen,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // credit <= room <= burst - x0 + pending take-backs,
                    // within i64 for any number of threads.
                    self.add_capped(credit as i64, cap);
                    if self.refill.0.empty.load(Ordering::Relaxed) {
                        self.refill.0.empty.store(false, Ordering::Relaxed);
                    }
                    return next;
                }
                Err(actual) => {
                    seen = actual;
                    if now < seen || seen == NEVER {
                        return seen;
                    }
                }
            }
        }
    }

    /// Adds `n` tokens, never past `cap` and never lowering the count.
    fn add_capped(&self, n: i64, cap: i64) -> i64 {
        let mut x = self.tokens.0.load(Ordering::Relaxed);
        loop {
            let new = x.saturating_add(n).min(cap).max(x);
            if new == x {
                return x;
            }
            match self
                .tokens
                .0
                .compare_exchange_weak(x, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return new,
                Err(actual) => x = actual,
            }
        }
    }

    /// Takes back an admission's `fetch_sub` that found too few tokens.
    #[cold]
    #[inline(never)]
    fn give_back(&self, c: i64) {
        self.add_capped(c, i64::from(self.quota.burst().get()) - 1);
    }

    /// The bucket at `now` after the refill due then, computed without
    /// claiming anything.
    fn view(&self, now: u64) -> View {
        let burst = u64::from(self.quota.burst().get());
        let next = self.refill.0.next.load(Ordering::Relaxed);
        let x = self.tokens.0.load(Ordering::Relaxed).max(0) as u64;
        if now < next || next == NEVER {
            return View { tokens: x, next };
        }
        let arrived = self.quota.units_in(now - next).saturating_add(1);
        if arrived >= burst.saturating_sub(x) {
            View {
                tokens: burst.max(x),
                next: now.saturating_add(self.quota.emission_raw()),
            }
        } else {
            View {
                tokens: x + arrived,
                next: next.saturating_add(arrived.saturating_mul(self.quota.emission_raw())),
            }
        }
    }

    /// Time from `now` until the bucket holds `want` tokens, given `tokens`
    /// now and the next arriving at `next`.
    #[inline]
    fn wait_for(&self, tokens: u64, next: u64, now: u64, want: u64) -> u64 {
        if tokens >= want {
            return 0;
        }
        if next == NEVER {
            return u64::MAX;
        }
        // want - tokens - 1 < burst, so the product is at most the capacity.
        (want - tokens - 1)
            .saturating_mul(self.quota.emission_raw())
            .saturating_add(next.saturating_sub(now))
    }

    #[inline]
    fn allowed(&self, left: i64, next: u64, now: u64) -> Decision {
        let left = left.max(0) as u64;
        let burst = u64::from(self.quota.burst().get());
        Decision::Allowed {
            remaining: as_units(left),
            reset_after: Nanos::new(self.wait_for(left, next, now, burst)),
        }
    }

    #[inline]
    fn denied(&self, x: i64, next: u64, now: u64, cost: u32) -> Decision {
        let x = x.max(0) as u64;
        let burst = u64::from(self.quota.burst().get());
        Decision::Denied {
            retry_after: Nanos::new(self.wait_for(x, next, now, u64::from(cost))),
            remaining: as_units(x),
            reset_after: Nanos::new(self.wait_for(x, next, now, burst)),
        }
    }

    /// The decision [`TokenBucket::check_n`] would make at `now`, without
    /// consuming anything (no write).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// assert!(bucket.probe(Nanos::ZERO, 1).is_allowed());
    /// assert!(bucket.probe(Nanos::ZERO, 1).is_allowed()); // nothing consumed
    /// ```
    pub fn probe(&self, now: Nanos, cost: u32) -> Decision {
        let burst = self.quota.burst().get();
        if cost > burst {
            return Decision::ExceedsCapacity {
                cost,
                capacity: burst,
            };
        }
        let now = now.as_u64();
        let v = self.view(now);
        if v.tokens >= u64::from(cost) {
            self.allowed((v.tokens - u64::from(cost)) as i64, v.next, now)
        } else {
            self.denied(v.tokens as i64, v.next, now, cost)
        }
    }

    /// The state at `now` without consuming anything: remaining units and
    /// time until full. Performs no write.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(NonZeroU32::new(4).unwrap()));
    /// assert_eq!(bucket.peek(Nanos::ZERO).remaining, 4);
    /// let _ = bucket.check(Nanos::ZERO);
    /// assert_eq!(bucket.peek(Nanos::ZERO).remaining, 3);
    /// assert_eq!(bucket.peek(Nanos::ZERO).reset_after, Nanos::from_millis(250));
    /// ```
    pub fn peek(&self, now: Nanos) -> Snapshot {
        let now = now.as_u64();
        let v = self.view(now);
        let burst = u64::from(self.quota.burst().get());
        Snapshot {
            limit: self.quota.limit().get(),
            remaining: as_units(v.tokens),
            reset_after: Nanos::new(self.wait_for(v.tokens, v.next, now, burst)),
        }
    }

    /// Gives back `cost` units that were admitted but not used. Fills the
    /// bucket to `burst - 1` at most: the last unit comes with the next refill
    /// (at most `T` later), so a refund never lets a token arrive early (with
    /// a burst of 1 a refund changes nothing). Returns the state after the
    /// refund.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(NonZeroU32::new(3).unwrap()));
    /// let now = Nanos::ZERO;
    /// let _ = bucket.check_n(now, 3);
    /// assert!(!bucket.check(now).is_allowed());
    /// assert_eq!(bucket.refund(now, 1).remaining, 1);
    /// assert!(bucket.check(now).is_allowed());
    /// assert_eq!(bucket.refund(now, 1_000).remaining, 2); // burst - 1
    /// ```
    pub fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        // No claim here, even when a refill is due: a claim that fills the
        // bucket restarts the phase at its `now`, which is right only for a
        // check that consumes at once. A refund that claimed could leave a
        // full bucket whose next token is already on its way, and the check
        // after it would get that token early. The next check claims.
        if cost > 0 {
            self.add_capped(i64::from(cost), i64::from(self.quota.burst().get()) - 1);
            if self.refill.0.empty.load(Ordering::Relaxed) {
                self.refill.0.empty.store(false, Ordering::Relaxed);
            }
        }
        self.peek(now)
    }

    /// Returns the bucket to a fresh (full) state.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(NonZeroU32::new(1).unwrap()));
    /// let _ = bucket.check(Nanos::ZERO);
    /// assert!(!bucket.check(Nanos::ZERO).is_allowed());
    /// bucket.reset();
    /// assert!(bucket.check(Nanos::ZERO).is_allowed());
    /// ```
    pub fn reset(&self) {
        let burst = i64::from(self.quota.burst().get());
        self.refill.0.next.store(0, Ordering::Relaxed);
        self.tokens.0.store(burst, Ordering::Relaxed);
        self.refill.0.empty.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gcra;
    use core::num::NonZeroU32;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn fresh_bucket_admits_the_burst_then_one_per_interval() {
        let b = TokenBucket::new(Quota::per_second(nz(4)));
        let t0 = Nanos::from_secs(3);
        for left in (0..4).rev() {
            assert_eq!(b.check(t0).remaining(), left);
        }
        assert_eq!(b.check(t0).retry_after(), Some(Nanos::from_millis(250)));
        let t1 = t0 + Nanos::from_millis(249);
        assert_eq!(b.check(t1).retry_after(), Some(Nanos::from_millis(1)));
        let t2 = t0 + Nanos::from_millis(250);
        assert!(b.check(t2).is_allowed());
        assert!(!b.check(t2).is_allowed());
    }

    #[test]
    fn denial_after_overshoot_leaves_the_tokens_as_they_were() {
        let b = TokenBucket::new(Quota::per_second(nz(3)));
        assert!(b.check_n(Nanos::ZERO, 2).is_allowed());
        // One token left: a cost of 2 overshoots, is refused and taken back.
        assert!(!b.check_n(Nanos::ZERO, 2).is_allowed());
        assert_eq!(b.peek(Nanos::ZERO).remaining, 1);
        assert!(b.check(Nanos::ZERO).is_allowed());
        assert_eq!(b.peek(Nanos::ZERO).remaining, 0);
    }

    #[test]
    fn denials_after_the_first_do_not_write() {
        let b = TokenBucket::new(Quota::per_hour(nz(1)));
        assert!(b.check(Nanos::ZERO).is_allowed());
        assert!(!b.check(Nanos::ZERO).is_allowed());
        assert!(b.refill.0.empty.load(Ordering::Relaxed));
        let before = b.tokens.0.load(Ordering::Relaxed);
        for _ in 0..10 {
            assert!(!b.check(Nanos::from_secs(1)).is_allowed());
        }
        assert_eq!(b.tokens.0.load(Ordering::Relaxed), before);
        // The next refill clears the hint.
        assert!(b.check(Nanos::from_secs(3600)).is_allowed());
        assert!(!b.refill.0.empty.load(Ordering::Relaxed));
    }

    #[test]
    fn equals_gcra_on_a_simple_history() {
        let q = Quota::per_second(nz(5)).with_burst(nz(3));
        let (b, g) = (TokenBucket::new(q), Gcra::new(q));
        let mut now = Nanos::from_secs(10);
        for (step, cost) in [
            (0, 1),
            (0, 2),
            (1, 1),
            (150, 1),
            (200, 2),
            (1000, 3),
            (0, 1),
        ] {
            now = now + Nanos::from_millis(step);
            assert_eq!(
                b.check_n(now, cost),
                g.check_n(now, cost),
                "at {now:?} cost {cost}"
            );
            assert_eq!(b.peek(now), g.peek(now));
        }
    }

    #[test]
    fn refund_fills_to_burst_minus_one() {
        let b = TokenBucket::new(Quota::per_second(nz(2)));
        let now = Nanos::ZERO;
        let _ = b.check_n(now, 2);
        assert_eq!(b.refund(now, 5).remaining, 1);
        // The second unit arrives with the refill, T = 500 ms after the start.
        assert_eq!(b.peek(Nanos::from_millis(499)).remaining, 1);
        assert_eq!(b.peek(Nanos::from_millis(500)).remaining, 2);
    }

    /// One interleaving, played step by step: a stale check's `fetch_sub`
    /// overshoots, a claim reads the bucket while that is not yet taken back
    /// (one short of full), then the take-back lands. Capped at `burst - 1`
    /// the token comes one interval late (stricter); capped at `burst` it
    /// would leave a full bucket whose next token is already due, and admit
    /// twice within 0.1 s at 1 per second.
    #[test]
    fn take_back_after_a_claim_never_fills_the_bucket_early() {
        let b = TokenBucket::new(Quota::per_second(nz(1)));
        let t0 = Nanos::from_secs(1);
        assert!(b.check(t0).is_allowed());
        // The stale check (now = t0) finds no token: its fetch_sub...
        assert_eq!(b.tokens.0.fetch_sub(1, Ordering::Relaxed), 0);
        // ...is still pending when another check claims the arrival at t1.
        let t1 = t0 + Nanos::from_secs(1);
        assert!(
            !b.check(t1).is_allowed(),
            "the claim saw -1 and credited to 0"
        );
        // Now the stale check takes back and flags the bucket.
        b.give_back(1);
        b.refill.0.empty.store(true, Ordering::Relaxed);
        let a = b.check(t1 + Nanos::from_millis(900)).is_allowed();
        let c = b.check(t1 + Nanos::from_secs(1)).is_allowed();
        assert!(!(a && c), "two admissions 0.1 s apart at 1 per second");
        // And the shortfall is gone one interval later.
        assert_eq!(b.peek(t1 + Nanos::from_secs(3)).remaining, 1);
    }

    /// At the end of the nanosecond range no token is minted per check: the
    /// claim that would move `next` past `u64::MAX` stores `NEVER`.
    #[test]
    fn no_tokens_minted_at_the_end_of_time() {
        let b = TokenBucket::new(Quota::per_day(nz(3)));
        let end = Nanos::new(u64::MAX);
        let admitted = (0..1000).filter(|_| b.check(end).is_allowed()).count();
        assert_eq!(admitted, 3);
        assert_eq!(b.check(end).retry_after(), Some(Nanos::MAX));
        assert_eq!(b.peek(end).remaining, 0);
    }

    #[test]
    fn extremes_do_not_panic() {
        for q in [
            Quota::per_second(nz(u32::MAX)).with_burst(nz(u32::MAX)),
            Quota::per_day(nz(1)),
            Quota::per_second(nz(1_000_000_000)),
        ] {
            let b = TokenBucket::new(q);
            for now in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX, 3] {
                for cost in [0, 1, u32::MAX] {
                    let _ = b.check_n(Nanos::new(now), cost);
                    let _ = b.refund(Nanos::new(now), cost);
                    let _ = b.probe(Nanos::new(now), cost);
                    let _ = b.peek(Nanos::new(now));
                }
            }
        }
    }
}
