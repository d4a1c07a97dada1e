//! [`TokenBucket`]: the GCRA limit stored as *(tokens, next refill)*, so that
//! an admission under contention is one `fetch_sub`.
//!
//! [`Gcra`](crate::Gcra) keeps one word, the theoretical arrival time, and
//! admits with a load and a compare-exchange. When many threads admit through
//! one limiter, every admission takes the word's cache line from another core
//! and a CAS that lost the race costs a second trip; a `fetch_sub` cannot lose.
//! An admission by `fetch_sub` must be taken back when it finds too few
//! tokens, and while a take-back is pending the count reads low. Anything
//! that *decides* on a low reading must then err on the strict side — and
//! GCRA's one non-linear step does not: whether the bucket is full (whether
//! the next token comes `T` after the request, or on the old schedule) flips
//! the wrong way on a low reading. So this type never lets a low reading be
//! seen by the step that decides fullness; see "Episodes" below.
//!
//! # The state
//!
//! * `tokens` (an `i64` alone on a cache line): units that can be admitted
//!   now, at most `burst - 1` outside a claim (a fresh bucket holds 0 with
//!   `next == 0`, read as full; the claim that fills a bucket takes its own
//!   units in the same step, so a full count is never seen by another check).
//! * `next` (nanoseconds, on a second line that every check reads but that is
//!   written about once per emission interval `T`): when the next token
//!   arrives. A check whose `now` has reached `next` *claims* the tokens that
//!   arrived — `1 + (now - next) / T` of them: it sets the line's claim bit
//!   (with the `next` it will store, which refusals meanwhile report)
//!   with a compare-exchange (one claimer at a time, so no interval is counted
//!   twice and no claim works from a count another claim has not finished),
//!   reads `tokens`, credits, and stores the new `next`. If the tokens that
//!   arrived fill the bucket the phase restarts, `next = now + T` (GCRA's
//!   `max(TAT, now)`); otherwise `next` moves on by whole intervals. The
//!   claimer's own units are taken in the same compare-exchange as the
//!   credit. A check that finds the claim bit set does not wait: it goes on
//!   with the tokens as they are (stricter until the claim lands) — unless
//!   the `next` under the bit is already due at its own `now` (a claimer or
//!   refund that read an older clock, or a claim slower than `T`): those
//!   tokens are from before a refill that will be claimed after, and one
//!   taken now would be taken twice (three admitted at one instant with a
//!   burst of 2). Such a check waits for the claim to land and starts over;
//!   the wait is bounded (about 10 µs), and a check whose wait runs out — the
//!   holder was preempted mid-claim — is refused.
//! * `empty` (beside `next`): set when a check found too few tokens, cleared
//!   by the next claim or refund. While set, checks load `tokens` first and
//!   write only to admit, so a flood of refusals is read-only (a line every
//!   core keeps shared) instead of a `fetch_sub` per refusal.
//! * `owed` (beside `next`): refunds made while an episode was open (below);
//!   folded into `tokens` when it closes.
//!
//! # Episodes
//!
//! A `fetch_sub` that takes `tokens` from `old >= 0` below zero (`old < cost`)
//! *opens an episode*; every `fetch_sub` that finds `tokens` already negative
//! joins it. All of them are refused. Only the opener writes back: it
//! compare-exchanges `tokens` from whatever negative value it finds to `old`,
//! the value before the episode, which also undoes every joiner's
//! subtraction (joiners never write back). While `tokens < 0` nothing else
//! writes it: admissions need `tokens >= cost`; a claim adds only to a
//! non-negative count (if an episode opened since it read the count, it
//! claims nothing this time and the next check claims); a refund made during
//! an episode goes to `owed`, which the opener folds in after closing (each
//! side writes its word and then checks the other's with a read-modify-write
//! of `tokens`, so one of the two always sees the other's write). Hence
//! **`tokens >= 0` means no subtraction is pending**: every count a claim
//! decides on is exact.
//!
//! # Against [`Gcra`](crate::Gcra)
//!
//! Called from one thread without refunds, time moving forward, every
//! decision — admitted or not, `remaining`, `reset_after`, `retry_after` —
//! equals [`Gcra`](crate::Gcra)'s for the same quota and times
//! (`core/tests/model_token_bucket.rs`, and the fuzz target `token_bucket`),
//! as long as the next arrival stays below 2^63 ns (times below 2^62 ns and
//! `T` below 2^61 ns, i.e. 146 and 73 years) and GCRA's arithmetic does not
//! saturate: a refusal whose `TAT + cost × T` would pass 2^64 ns gets
//! `retry_after == Nanos::MAX` ("never") from GCRA and the computed wait from
//! the bucket (e.g. `T` = 2^60 ns, burst 8, all spent at 2^62 − 1 ns, then a
//! cost of 8: GCRA says never, the bucket 2^63 ns). The differences are all
//! stricter:
//!
//! * a plain [`refund`](TokenBucket::refund) fills the bucket to `burst - 1`
//!   at most; the last unit comes with the next refill, at most `T` later (a
//!   bucket made full by a credit would let its next token arrive early).
//!   [`refund_since`](TokenBucket::refund_since) (and the rollback in
//!   [`All`](crate::All), which uses it) is GCRA's refund computed on the
//!   bucket's state, so it is exact, full included — but gives nothing while
//!   another claim holds the refill line or an episode is open;
//! * while calls race, a check may be refused that the tokens would have
//!   covered: during an episode every `fetch_sub` is refused (the opener's
//!   base may have covered a joiner); while a claim is being made or an
//!   episode is open, the tokens that arrived are not yet credited (and a
//!   check whose `now` has reached the `next` under the claim bit is
//!   refused); and a refund racing a claim can make the claim keep the old
//!   phase with the bucket one short of full (its cap of `burst - 1`);
//! * a next arrival past 2^63 ns (bit 63 of the `next` word is the claim
//!   bit) is "never": no more tokens, `retry_after == Nanos::MAX`, where GCRA
//!   would still count to the end of the `u64` range.
//!
//! A thread preempted in the middle of a claim or while it holds an episode
//! open delays refills (or admissions) until it runs again; it never makes
//! anything admit more. No call waits for another.
//!
//! # The bound
//!
//! The same as GCRA's when time moves forward: for any run of consecutive
//! admissions at times `s_i ..= s_j`, admitted cost minus refunded cost is at
//! most `burst + (s_j - s_i) / T`. Tokens never exceed `burst` (every
//! increment is capped), each token is credited once, by the claim of the
//! interval it arrived in, and the phase restarts exactly when the claimed
//! count fills the bucket. When a caller's `now` is older than one already
//! seen (a thread that read its clock and was preempted), the bucket still
//! holds only the tokens it holds, so the bound holds with `s_j` replaced by
//! the latest `now` any check in the run saw; GCRA is stricter there (it reads
//! its TAT as further ahead), which is why the two are compared on
//! forward-moving time. `core/tests/loom_token_bucket.rs` checks it under
//! every interleaving loom explores of racing admissions, episodes, claims
//! and refunds.

use crate::decision::{Decision, Snapshot};
use crate::gcra;
use crate::quota::Quota;
use crate::sync::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use crate::time::Nanos;

/// Set in `next` while a claim is being made.
const CLAIMING: u64 = 1 << 63;

/// `next` at `CLAIMING - 1`: no token will ever arrive again. A claim whose
/// next arrival would pass 2^63 ns (292 years after the clock's zero) stores
/// this, so the bucket keeps only the tokens it has instead of minting more;
/// refusals then say `retry_after == Nanos::MAX`, as GCRA's do near the end
/// of its range.
const NEVER: u64 = CLAIMING - 1;

/// A value alone on its cache line (128 bytes: adjacent-line prefetch on x86
/// pulls pairs of 64-byte lines).
#[derive(Debug)]
#[repr(align(128))]
struct Line<T>(T);

/// The rarely written half of the state: read by every check, written by a
/// claim (about once per `T`), when the bucket runs empty, and in races.
#[derive(Debug)]
struct Refill {
    /// Nanoseconds at which the next token arrives, `<= NEVER`, plus
    /// [`CLAIMING`] while a claim is in progress; 0 in a fresh bucket (its
    /// first claim restarts the phase at its `now`).
    next: AtomicU64,
    /// A recent check found too few tokens: read before writing.
    empty: AtomicBool,
    /// Refunds waiting for an episode to close.
    owed: AtomicI64,
}

/// A lock-free token bucket whose admissions are one `fetch_sub` when many
/// threads share it: the limit of [`Gcra`](crate::Gcra) for a limiter that is
/// hot on several cores at once (one global limit for a whole service).
///
/// Same [`Quota`], same [`Decision`]s: `burst` units at once, one more every
/// emission interval `T`. See the [module docs](crate::token_bucket) for the
/// state, the protocol, how it differs from `Gcra` (only ever stricter) and the
/// bound.
///
/// Use [`Gcra`](crate::Gcra) where one thread at a time uses a limiter (per
/// key, in a keyed store, on a microcontroller): it is one word instead of two
/// cache lines, and its refunds are exact. Use `TokenBucket` for a limiter
/// that several cores admit through at once: two threads on one key admit
/// about twice as many requests per second as through `Gcra` or governor
/// (BENCHMARKS.md, "Scaling").
///
/// # Memory ordering
///
/// The fast path is `Relaxed`: a `fetch_sub` acts on the latest count
/// whatever its ordering, and a stale read of `next` or `empty` only sends a
/// check down a slower or stricter path (a claim attempt whose exchange
/// fails, a `fetch_sub` that opens or joins an episode). A claim acquires the
/// claim bit and releases it with the new `next` (`Acquire`/`Release`), so
/// the next claimer reads a count that includes the previous claim's credit.
/// The hand-over of `owed` between an episode's opener and a refund
/// is the store-buffering pattern (each writes one word, then checks the
/// other's): both sides end with a read-modify-write of `tokens` (`AcqRel`),
/// and those are totally ordered, so at least one side sees the other and
/// folds the refund in (no `SeqCst` needed; see `credit_refund`).
/// `core/tests/loom_token_bucket.rs` checks this
/// under every interleaving loom explores.
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

/// How many times one check may wait for a claim or refund holding a refill
/// due at its `now` (`TokenBucket::refill_pending`).
const PENDING_WAITS: u32 = 2;

/// How many reads of `next` one such wait makes before the check is refused,
/// each after a spin-loop hint: about 10 µs in all on the x86-64 machine this
/// was measured on (a `pause` of ~10 ns), up to ~50 µs where `pause` takes
/// ~140 cycles. A claim takes a few hundred ns, so only a holder that lost its
/// core outlasts the wait. Chosen by measurement (8 threads on 2 cores, 10^6/s,
/// TSC clock): 256 reads left 2 % of checks refused, 1024 0.2–0.4 % at the
/// admission rate governor reaches, 4096 0.15–0.2 % with a quarter fewer
/// admissions (time spun while the holder is off-core). Loom explores every
/// interleaving of each read, so there it makes one.
#[cfg(not(tollgate_loom))]
const PENDING_SPINS: u32 = 1024;
#[cfg(tollgate_loom)]
const PENDING_SPINS: u32 = 1;

/// Whether a refill is due at `now` by `next` (with or without the claim
/// bit): its arrival has come, and arrivals have not ended (`NEVER`).
#[inline]
fn due_by(next: u64, now: u64) -> bool {
    let due = next & !CLAIMING;
    due <= now && due < NEVER
}

/// The bucket as one caller sees it after any refill due at its `now`.
#[derive(Clone, Copy, Debug)]
struct View {
    /// Tokens, clamped at 0 (an open episode reads as no tokens).
    tokens: u64,
    /// When the next token arrives (meaningless once `tokens == burst`).
    next: u64,
}

/// What [`TokenBucket::claim`] did for the check that made it.
#[derive(Clone, Copy, Debug)]
enum Claim {
    /// Claimed, and took the check's units with the credit: `left` remain.
    Taken { left: i64, next: u64 },
    /// Claimed, but the count (`tokens`, credit included) does not cover
    /// the check's cost: refuse it.
    Short { tokens: i64, next: u64 },
    /// Claimed nothing (another claim in progress, an episode open, no
    /// arrival any more, or `next` already moved past now): go on with the
    /// tokens as they are. `next` is the value in force, possibly with the
    /// claim bit.
    Not { next: u64 },
}

impl TokenBucket {
    /// A full bucket for `quota`.
    #[cfg(not(tollgate_loom))]
    pub const fn new(quota: Quota) -> TokenBucket {
        TokenBucket {
            // Fresh: no tokens counted, `next == 0`, which the first claim
            // (or a read-out) takes as full (see `claim`).
            tokens: Line(AtomicI64::new(0)),
            refill: Line(Refill {
                next: AtomicU64::new(0),
                empty: AtomicBool::new(false),
                owed: AtomicI64::new(0),
            }),
            quota,
        }
    }

    /// A full bucket for `quota` (loom build: not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(quota: Quota) -> TokenBucket {
        TokenBucket {
            // Fresh: no tokens counted, `next == 0`, which the first claim
            // (or a read-out) takes as full (see `claim`).
            tokens: Line(AtomicI64::new(0)),
            refill: Line(Refill {
                next: AtomicU64::new(0),
                empty: AtomicBool::new(false),
                owed: AtomicI64::new(0),
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
    /// Admitting is one `fetch_sub` unless a refill is due (then a claim on
    /// the refill line first, at most about once per `T` across all threads)
    /// or the bucket recently ran empty (then a load, and a compare-exchange
    /// only to admit). A refusal leaves the count as it was (see "Episodes"
    /// in the [module docs](crate::token_bucket)). A check that finds another
    /// thread's claim in flight with a refill already due at its `now` waits
    /// for it (bounded, about 10 µs) and is refused only if it does not land.
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
        // cost == 0 or cost > burst (one compare): a read-out or a refusal.
        if cost.wrapping_sub(1) >= self.quota.burst().get() {
            return self.probe(now, cost);
        }
        self.check_units(now.as_u64(), cost, PENDING_WAITS)
    }

    /// `check_n` for `1 <= cost <= burst`; `waits`: how many more times a
    /// refill pending at `now` may be waited for (see `refill_pending`).
    #[inline(always)]
    fn check_units(&self, now: u64, cost: u32, waits: u32) -> Decision {
        let c = i64::from(cost);
        // Acquire: a claim made from it reads the count after the previous
        // claim's credit (see `claim`). (A plain load on x86.)
        let mut next = self.refill.0.next.load(Ordering::Acquire);
        // (A claim in progress or NEVER is above any `now` below 2^63; `claim`
        // sorts out the rest.)
        if now >= next {
            match self.claim(now, next, c) {
                Claim::Taken { left, next } => return self.allowed(left, next, now),
                Claim::Short { tokens, next } => return self.denied(tokens, next, now, cost),
                Claim::Not { next: n } if due_by(n, now) => {
                    return self.refill_pending(now, cost, waits);
                }
                Claim::Not { next: n } => next = n,
            }
        }
        // A claim in progress: read first, so that no `fetch_sub` of ours
        // opens an episode that makes the claimer (who is about to take its
        // own units together with the credit) claim nothing.
        if next & CLAIMING == 0 && !self.refill.0.empty.load(Ordering::Relaxed) {
            let old = self.tokens.0.fetch_sub(c, Ordering::Relaxed);
            if old >= c {
                return self.allowed(old - c, next, now);
            }
            return self.refused_after_fetch_sub(old, next, now, cost);
        }
        let due = next & !CLAIMING;
        if next & CLAIMING != 0 && due_by(next, now) {
            // The claim or refund in progress will leave a refill due at our
            // `now`: the tokens there now are from before it.
            return self.refill_pending(now, cost, waits);
        }
        self.check_reading_first(now, due, c, cost)
    }

    /// A refill is due at this check's `now` but could not be claimed: a
    /// claim or refund holds the bit with a `next` at or before `now` (its
    /// maker read an older clock, or `T` is shorter than the claim took). The
    /// tokens there are the ones from before that refill: a check that took
    /// one would be counted as taken before the refill, and the refill,
    /// claimed later, would then fill the bucket again on top of it (three
    /// admitted at one instant with a burst of 2; found by a loom model).
    ///
    /// So the check waits for the holder to finish — a claim is a load and
    /// two read-modify-writes — and starts over, which claims the refill. The
    /// wait is bounded (`PENDING_SPINS` reads, at most `PENDING_WAITS` times
    /// per check): a holder that was preempted mid-claim does not block
    /// anyone, the check is refused instead (stricter, never looser). Without
    /// the wait, two threads checking a 10^6/s bucket with the TSC clock had
    /// 0.2–1.5 % of their checks refused with billions of tokens in it, and
    /// eight threads on two cores 60–85 %.
    #[cold]
    #[inline(never)]
    fn refill_pending(&self, now: u64, cost: u32, waits: u32) -> Decision {
        if waits > 0 {
            for _ in 0..PENDING_SPINS {
                crate::sync::spin_wait();
                // Acquire: as the check's own first load of `next`.
                let next = self.refill.0.next.load(Ordering::Acquire);
                if next & CLAIMING == 0 {
                    return self.check_units(now, cost, waits - 1);
                }
            }
        }
        let next = self.refill.0.next.load(Ordering::Acquire) & !CLAIMING;
        let x = self.tokens.0.load(Ordering::Relaxed);
        self.denied(x, next, now, cost)
    }

    /// A `fetch_sub` that found `old < cost`: it opened an episode (`old >=
    /// 0`: close it, restoring `old`) or joined one (leave it to the opener).
    #[cold]
    #[inline(never)]
    fn refused_after_fetch_sub(&self, old: i64, next: u64, now: u64, cost: u32) -> Decision {
        // Let the next checks read before they write.
        self.refill.0.empty.store(true, Ordering::Relaxed);
        if old >= 0 {
            self.close_episode(old);
        }
        self.denied(old, next, now, cost)
    }

    /// Ends the episode this caller opened: `tokens` back to `base`, the
    /// count before the episode, which undoes every joiner's subtraction too;
    /// then folds in what was credited meanwhile.
    fn close_episode(&self, base: i64) {
        let mut x = self.tokens.0.load(Ordering::Relaxed);
        // While x < 0 only joiners' fetch_subs change it (see "Episodes"), so
        // each retry is another thread's finished refusal: lock-free.
        while x < 0 {
            // AcqRel: the closing half of the `owed` hand-over (see
            // `credit_refund`): it reads from any depositor's earlier RMW of `tokens`.
            match self
                .tokens
                .0
                .compare_exchange_weak(x, base, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => x = actual,
            }
        }
        // (x >= 0 before the exchange: `reset` closed it; nothing to restore.)
        // Acquire: sees a deposit whose RMW of `tokens` our exchange read from.
        if self.refill.0.owed.load(Ordering::Acquire) != 0 {
            self.settle();
        }
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

    /// Claims and credits the tokens that arrived up to `now` (`seen <= now`,
    /// the `next` this caller read; nothing when it is `NEVER` or carries the
    /// claim bit), and takes the caller's `c` units in the same step as the
    /// credit.
    ///
    /// Taking them together is what keeps a full bucket from being seen: a
    /// claim that fills the bucket restarts the phase at its `now` (the next
    /// token comes `T` after it), which is right only if the units leave at
    /// that same instant. Credited first and taken by a separate `fetch_sub`,
    /// the full bucket's units could go to a check with a later `now` (one
    /// that had no claim to make) while the claimer is refused — and the next
    /// token would then come less than `T` after that admission (admissions
    /// at 10.9 s and 11.0 s at one per second, burst 1; found by a loom
    /// model). So the count never holds `burst` outside this step: a fresh
    /// bucket holds 0 tokens with `next == 0` (its first claim fills it),
    /// refunds and kept-phase claims stop at `burst - 1`, and a claim that
    /// fills the bucket leaves `burst - c`.
    #[cold]
    #[inline(never)]
    fn claim(&self, now: u64, mut seen: u64, c: i64) -> Claim {
        let burst = i64::from(self.quota.burst().get());
        let t = self.quota.emission_raw();
        if seen >= NEVER {
            // A claim in progress, or no token will arrive again.
            return Claim::Not { next: seen };
        }
        loop {
            // Read before taking the claim bit: a check that consumes while
            // this claim is in progress comes after the refill (its `now`
            // has passed the arrivals), so the room to fill must not include
            // it. `seen` was read with Acquire, so x0 includes the previous
            // claim's credit (released with that `next`); and `tokens >= 0`
            // means no subtraction is pending: x0 is exact (see "Episodes").
            let x0 = self.tokens.0.load(Ordering::Relaxed);
            if x0 < 0 {
                // An episode is open: claim nothing this time. (Report the
                // `next` in force now: another claim may have moved it.)
                return Claim::Not {
                    next: self.refill.0.next.load(Ordering::Acquire),
                };
            }
            // `seen == 0`: a fresh bucket, full whatever the time.
            let arrived = match seen {
                0 => u64::MAX,
                _ => self.quota.units_in(now - seen).saturating_add(1),
            };
            // x0 <= burst - 1 (the count holds `burst` only inside this
            // step, see above), so room >= 1.
            let room = (burst - x0.min(burst)) as u64;
            let (credit, full, next) = if arrived >= room {
                // The arrivals fill the bucket: GCRA's floor, the phase
                // restarts at now.
                (room, true, now.saturating_add(t))
            } else {
                // arrived < room <= burst. Capped at burst - 1: a refund that
                // lands after x0 was read may be what fills the bucket, and
                // then the kept phase must not also bring the last token.
                (
                    arrived,
                    false,
                    seen.saturating_add(arrived.saturating_mul(t)),
                )
            };
            let next = next.min(NEVER);
            // The claim bit: one claim at a time, and only if `next` is still
            // what x0 was read under. It goes up with the `next` this claim
            // will store, so that checks refused meanwhile (the arrivals are
            // not credited yet) report the wait to the arrival after them,
            // not to `seen`, which has passed. Acquire on failure: a new
            // `seen`.
            // Acquire on success too: `next` may have come back to `seen`
            // (a refund stores the value it found), and then it is the
            // refund's Release that publishes its credit to this claim.
            match self.refill.0.next.compare_exchange(
                seen,
                next | CLAIMING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // credit <= room <= burst. If an episode opened since x0
                    // was read, claim nothing after all: crediting now would
                    // have to wait for it (and a phase restarted by a claim
                    // whose own check then joins the episode would let the
                    // next token come early). The next check claims.
                    let cap = if full { burst } else { burst - 1 };
                    let outcome = self.credit_and_take(credit as i64, cap, c);
                    let next = if outcome.is_some() { next } else { seen };
                    if outcome.is_some() && self.refill.0.empty.load(Ordering::Relaxed) {
                        self.refill.0.empty.store(false, Ordering::Relaxed);
                    }
                    // Release: publishes the credit to the next claimer.
                    self.refill.0.next.store(next, Ordering::Release);
                    return match outcome {
                        Some(Ok(left)) => Claim::Taken { left, next },
                        Some(Err(tokens)) => Claim::Short { tokens, next },
                        None => Claim::Not { next },
                    };
                }
                Err(actual) => {
                    // Another claim started or finished since `seen` was read.
                    if actual & CLAIMING != 0 || now < actual || actual >= NEVER {
                        return Claim::Not { next: actual };
                    }
                    seen = actual;
                }
            }
        }
    }

    /// Adds `n` tokens (at most to `cap`, never lowering the count), then
    /// takes `c` if the count covers it, in one compare-exchange. `None`
    /// (nothing changed) while an episode is open; else `Ok(left)` (taken)
    /// or `Err(count)` (credited, too few to take).
    fn credit_and_take(&self, n: i64, cap: i64, c: i64) -> Option<Result<i64, i64>> {
        let mut x = self.tokens.0.load(Ordering::Relaxed);
        loop {
            if x < 0 {
                return None;
            }
            let credited = x.saturating_add(n).min(cap).max(x);
            let (new, outcome) = if credited >= c {
                (credited - c, Ok(credited - c))
            } else {
                (credited, Err(credited))
            };
            // Exchanged even when `new == x`: only a read-modify-write proves
            // that `x` is the latest count (a plain load may be older, and a
            // decision on it could take units a refund had just added on top
            // of a full credit; found by a loom model).
            match self
                .tokens
                .0
                .compare_exchange_weak(x, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(outcome),
                Err(actual) => x = actual,
            }
        }
    }

    /// Adds refunded units, at most up to `burst - 1`. While an episode is
    /// open they go to `owed` instead, and the opener folds them in on
    /// closing; if the episode closed before this caller could tell, it folds
    /// them in itself.
    fn credit_refund(&self, n: i64) {
        let cap = i64::from(self.quota.burst().get()) - 1;
        if n <= 0 || self.add_unless_episode(n, cap) {
            return;
        }
        // The hand-over with the opener (`close_episode`): of "deposit, then
        // see the episode still open" and "close, then see no deposit", at
        // most one happens, so the refund is never stranded. Both sides end
        // with a read-modify-write of `tokens`, and those are totally
        // ordered: if ours comes first, the opener's closing exchange
        // (Acquire) reads from it (Release) and so sees our deposit; if
        // theirs comes first, we read the closed count and fold it ourselves.
        self.refill.0.owed.fetch_add(n, Ordering::AcqRel);
        if self.episode_closed() {
            self.settle();
        }
    }

    /// Adds `n` tokens, at most to `cap` and never lowering the count; `false`
    /// (nothing added) while an episode is open.
    fn add_unless_episode(&self, n: i64, cap: i64) -> bool {
        let mut x = self.tokens.0.load(Ordering::Relaxed);
        loop {
            if x < 0 {
                return false;
            }
            let new = x.saturating_add(n).min(cap).max(x);
            if new == x {
                return true;
            }
            match self
                .tokens
                .0
                .compare_exchange_weak(x, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => x = actual,
            }
        }
    }

    /// Whether no episode is open, read with a read-modify-write (adding 0)
    /// so that it takes part in the hand-over of `owed` (see `credit_refund`).
    fn episode_closed(&self) -> bool {
        self.tokens.0.fetch_add(0, Ordering::AcqRel) >= 0
    }

    /// Folds `owed` into `tokens` (at most up to `burst - 1`, as a refund).
    #[cold]
    #[inline(never)]
    fn settle(&self) {
        let cap = i64::from(self.quota.burst().get()) - 1;
        loop {
            let o = self.refill.0.owed.swap(0, Ordering::AcqRel);
            if o == 0 {
                return;
            }
            if self.add_unless_episode(o, cap) {
                continue;
            }
            // Another episode opened: hand it back; its opener folds it
            // unless it has already closed, in which case loop again (the
            // same hand-over as in `refund`).
            self.refill.0.owed.fetch_add(o, Ordering::AcqRel);
            if !self.episode_closed() {
                return;
            }
        }
    }

    /// The bucket at `now` after the refill due then, computed without
    /// claiming anything.
    fn view(&self, now: u64) -> View {
        let burst = u64::from(self.quota.burst().get());
        let raw = self.refill.0.next.load(Ordering::Relaxed);
        let next = raw & !CLAIMING;
        // Negative: an episode is open; its count is unknown until it closes.
        let x = self.tokens.0.load(Ordering::Relaxed).max(0) as u64;
        if raw & CLAIMING != 0 || now < next || next >= NEVER {
            return View { tokens: x, next };
        }
        // `next == 0`: a fresh bucket, full whatever the time.
        let arrived = match next {
            0 => u64::MAX,
            _ => self.quota.units_in(now - next).saturating_add(1),
        };
        let t = self.quota.emission_raw();
        if arrived >= burst.saturating_sub(x) {
            View {
                tokens: burst.max(x),
                next: now.saturating_add(t).min(NEVER),
            }
        } else {
            View {
                tokens: x + arrived,
                next: next.saturating_add(arrived.saturating_mul(t)).min(NEVER),
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
        if next >= NEVER {
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
            // At least 1 ns: with a claim skipped or in progress `next` can
            // be at or before now (the tokens are due but not yet credited).
            retry_after: Nanos::new(self.wait_for(x, next, now, u64::from(cost)).max(1)),
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
            self.credit_refund(i64::from(cost));
            if self.refill.0.empty.load(Ordering::Relaxed) {
                self.refill.0.empty.store(false, Ordering::Relaxed);
            }
        }
        self.peek(now)
    }

    /// Gives back `cost` units admitted at `charged_at`, as of `now`: only
    /// what the charge still weighs, exactly as
    /// [`Gcra::refund_since`](crate::Gcra::refund_since) would on the same
    /// history. The bucket's state is read as GCRA's theoretical arrival time
    /// (full `burst - 1 - tokens` intervals after the next arrival), the
    /// refund applied to it ([`gcra::refunded_since`]),
    /// and the result stored back as tokens and a next arrival. So a refund
    /// made after the bucket refilled gives back nothing the refill already
    /// restored, and one that comes after other admissions moves the next
    /// arrival as GCRA would (a plain credit would keep a phase that the
    /// refunded charge had set, and bring the next token early).
    ///
    /// Unlike [`refund`](Self::refund) this can make the bucket full again:
    /// it then holds `burst - 1` with its next arrival already due, and the
    /// next check restarts the phase at its own `now`, as GCRA does.
    ///
    /// Made holding the claim bit (no claim can move `next` in between);
    /// while another claim holds it, or an episode is open, it gives nothing
    /// rather than wait (never more than owed, possibly less). A `now` older
    /// than another thread's latest check counts as GCRA's does (see
    /// [`gcra::refunded_since`]).
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota, TokenBucket};
    ///
    /// let bucket = TokenBucket::new(Quota::per_second(NonZeroU32::new(10).unwrap()));
    /// let t0 = Nanos::from_secs(1);
    /// assert!(bucket.check_n(t0, 9).is_allowed());
    /// assert_eq!(bucket.refund_since(t0, t0, 4).remaining, 5); // prompt: given back
    /// // Another thread, a minute later: the bucket refilled; it spends it.
    /// let t1 = Nanos::from_secs(61);
    /// assert!(bucket.check_n(t1, 10).is_allowed());
    /// // The rest of the t0 charge refunded, on the t0 thread's clock:
    /// // the refill restored it already, nothing is owed.
    /// assert_eq!(bucket.refund_since(t0, t0, 5).remaining, 0);
    /// assert!(!bucket.check(t1).is_allowed());
    /// ```
    pub fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        if cost > 0 {
            self.refund_as_gcra(charged_at, now, cost);
        }
        self.peek(now)
    }

    /// Takes the claim bit and makes the refund of
    /// [`refund_since`](Self::refund_since) under it.
    fn refund_as_gcra(&self, charged_at: Nanos, now: Nanos, cost: u32) {
        // Acquire: as a claimer, to read a count that includes the last
        // claim's credit.
        let mut seen = self.refill.0.next.load(Ordering::Acquire);
        // A claim holds the bit for a few instructions; a refund that finds
        // it set three times gives nothing rather than wait for a thread
        // that may be preempted.
        for _ in 0..3 {
            if seen & CLAIMING != 0 {
                seen = self.refill.0.next.load(Ordering::Acquire);
                continue;
            }
            // 0: fresh (full, nothing owed); NEVER: no arrivals any more.
            if seen == 0 || seen >= NEVER {
                return;
            }
            match self.refill.0.next.compare_exchange(
                seen,
                seen | CLAIMING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let next = self.refund_holding_claim(seen, charged_at, now, cost);
                    // Release: the credit is in the count the next claimer
                    // reads.
                    self.refill.0.next.store(next, Ordering::Release);
                    return;
                }
                Err(actual) => seen = actual,
            }
        }
    }

    /// The refund itself, with `next == seen` held by the claim bit; returns
    /// the `next` to store. Checks may still take tokens meanwhile (each
    /// moves GCRA's TAT one interval on): the count is re-read and the
    /// conversion redone until the exchange lands.
    fn refund_holding_claim(&self, seen: u64, charged_at: Nanos, now: Nanos, cost: u32) -> u64 {
        let burst = i64::from(self.quota.burst().get());
        let t = self.quota.emission_raw();
        let mut x = self.tokens.0.load(Ordering::Relaxed);
        loop {
            if x < 0 {
                // An episode is open: its opener restores a count this
                // credit cannot be ordered against. Nothing.
                return seen;
            }
            let x1 = x.min(burst - 1);
            let missing = (burst - 1 - x1) as u64;
            let tat = seen.saturating_add(missing.saturating_mul(t));
            let Some(after) = gcra::refunded_since(&self.quota, tat, charged_at, now, cost) else {
                return seen;
            };
            // Back to (tokens, next): `k` intervals between the next arrival
            // and full. The bucket answers as GCRA for every `now` after
            // `next - T`, so the next arrival goes at most `T` past the
            // refund's time (`r`, as `refunded_since` takes it) — and the
            // count never goes down (`k <= missing`).
            //
            // A late refund (its `now` behind checks that read `seen` and
            // found no refill due) must not bring a refill due under them:
            // they take their units after this exchange, and a refill
            // claimed after them would fill the bucket over those units (5
            // admitted at one instant where GCRA admits 4; found by review).
            // So the refund is taken as made no earlier than `seen - T`: the
            // TAT it leaves and the time it converts at are lifted there
            // (stricter; a refund that is not late is already past it, since
            // `next` is never more than `T` ahead of the latest check).
            let floor = seen.saturating_sub(t);
            let after = after.max(floor);
            let r = now
                .as_u64()
                .max(tat.saturating_sub(self.quota.capacity_raw()))
                .max(floor);
            let canonical = after.saturating_sub(r.saturating_add(t)).div_ceil(t);
            let k = canonical.min(missing);
            let new = burst - 1 - k as i64;
            // A next arrival past `NEVER` is "never" (bit 63 is the claim
            // bit). `next == 0` reads as a fresh, full bucket: right when
            // nothing is missing (`k == 0`, GCRA's TAT at 0), else 1 ns.
            let next = after.saturating_sub(k.saturating_mul(t)).min(NEVER);
            let next = if k > 0 { next.max(1) } else { next };
            // Exchanged even when `new == x`, to know `x` was the latest
            // count (see `credit_and_take`).
            match self
                .tokens
                .0
                .compare_exchange_weak(x, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if self.refill.0.empty.load(Ordering::Relaxed) {
                        self.refill.0.empty.store(false, Ordering::Relaxed);
                    }
                    return next;
                }
                Err(actual) => x = actual,
            }
        }
    }

    /// Returns the bucket to a fresh (full) state. Meant for a quiet bucket:
    /// checks racing a reset may see either state (as with
    /// [`Gcra::reset`](crate::Gcra::reset)).
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
        self.refill.0.owed.store(0, Ordering::Relaxed);
        self.refill.0.next.store(0, Ordering::Release);
        // Fresh, as `new`: 0 counted with `next == 0` reads as full.
        self.tokens.0.store(0, Ordering::Relaxed);
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

    /// Found in the tenth session's review: near the end of the time range
    /// `refund_since` stored a next arrival past 2^63, which set the claim
    /// bit, and every later check was refused with a 1 ns wait.
    #[test]
    fn refund_since_near_2_pow_63_never_sets_the_claim_bit() {
        let t = 1u64 << 60;
        let q = Quota::new(nz(1), core::time::Duration::from_nanos(t))
            .unwrap()
            .with_burst(nz(8));
        let b = TokenBucket::new(q);
        let now_a = (1u64 << 63) - (1 << 61) + 5;
        assert!(b.check_n(Nanos::new(now_a), 8).is_allowed());
        let now_b = now_a + t + 1; // one arrival due, not claimed
        assert_eq!(
            b.refund_since(Nanos::new(now_b), Nanos::new(now_b), 1)
                .remaining,
            2
        );
        for later in [now_b, now_b + 1_000_000_000, u64::MAX] {
            let d = b.check(Nanos::new(later));
            assert!(
                d.is_allowed() || d.retry_after() == Some(Nanos::MAX),
                "at {later}: {d:?}"
            );
        }
    }

    /// `refund_since` at time 0 left `burst - 1` tokens and a 1 ns wait where
    /// GCRA is full again.
    #[test]
    fn refund_since_at_time_zero_equals_gcra() {
        let q = Quota::per_second(nz(1));
        let (b, g) = (TokenBucket::new(q), Gcra::new(q));
        let t0 = Nanos::ZERO;
        assert!(b.check(t0).is_allowed());
        assert!(g.check(t0).is_allowed());
        assert_eq!(b.refund_since(t0, t0, 1), g.refund_since(t0, t0, 1));
        assert_eq!(b.check(t0), g.check(t0));
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
        // One token left: a cost of 2 opens an episode, is refused, and the
        // count is restored.
        assert!(!b.check_n(Nanos::ZERO, 2).is_allowed());
        assert_eq!(b.peek(Nanos::ZERO).remaining, 1);
        assert!(b.check(Nanos::ZERO).is_allowed());
        assert_eq!(b.peek(Nanos::ZERO).remaining, 0);
    }

    #[test]
    fn denials_after_the_first_do_not_write() {
        let b = TokenBucket::new(Quota::per_hour(nz(1)));
        // (Burst 1: the first refusal is a fetch_sub that opens and closes
        // an episode; the ones after it only load.)
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
    /// opens an episode; a check at the next arrival finds it open, claims
    /// nothing and joins it (refused); the opener closes it. Nothing is lost
    /// and nothing comes early: exactly GCRA's answers afterwards.
    #[test]
    fn claim_during_an_open_episode_claims_nothing_and_loses_nothing() {
        let b = TokenBucket::new(Quota::per_second(nz(1)));
        let t0 = Nanos::from_secs(1);
        assert!(b.check(t0).is_allowed());
        // The stale check (now = t0) finds no token: its fetch_sub opens an
        // episode (base 0)...
        assert_eq!(b.tokens.0.fetch_sub(1, Ordering::Relaxed), 0);
        // ...and is still open when a check at t1 wants to claim.
        let t1 = t0 + Nanos::from_secs(1);
        let d = b.check(t1);
        assert!(!d.is_allowed(), "joined the episode: refused");
        assert!(d.retry_after().unwrap() > Nanos::ZERO);
        assert_eq!(
            b.refill.0.next.load(Ordering::Relaxed),
            t1.as_u64(),
            "claimed nothing"
        );
        b.close_episode(0);
        assert_eq!(b.tokens.0.load(Ordering::Relaxed), 0);
        // The arrival at t1 is still there, and the phase restarts at the
        // check that takes it (GCRA: TAT = t1 + 0.9 s + 1 s).
        assert_eq!(b.peek(t1).remaining, 1);
        assert!(b.check(t1 + Nanos::from_millis(900)).is_allowed());
        assert!(!b.check(t1 + Nanos::from_secs(1)).is_allowed());
        assert!(b.check(t1 + Nanos::from_millis(1900)).is_allowed());
    }

    /// A credit (here a refund) made while an episode is open goes to `owed`
    /// and is folded in when the episode closes.
    #[test]
    fn credit_during_an_episode_is_folded_in_on_close() {
        let b = TokenBucket::new(Quota::per_second(nz(3)));
        assert!(b.check_n(Nanos::ZERO, 3).is_allowed());
        assert_eq!(b.tokens.0.fetch_sub(1, Ordering::Relaxed), 0); // opens
        let _ = b.refund(Nanos::ZERO, 1);
        assert_eq!(
            b.tokens.0.load(Ordering::Relaxed),
            -1,
            "not added while open"
        );
        assert_eq!(b.refill.0.owed.load(Ordering::Relaxed), 1);
        b.close_episode(0);
        assert_eq!(b.refill.0.owed.load(Ordering::Relaxed), 0);
        assert_eq!(b.peek(Nanos::ZERO).remaining, 1);
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
