//! [`All`]: all-or-nothing composition of limiters — per-minute AND per-hour
//! AND per-day, or a key's limit AND its organisation's pool.

use crate::decision::{Decision, Snapshot};
use crate::limiter::Limiter;
use crate::time::Nanos;

/// A fixed set of limiters checked as one: tuples of up to six members of any
/// [`Limiter`] types, arrays `[L; N]`, slices `[L]`, and references to them.
/// No allocation.
pub trait Members {
    /// How many members there are.
    fn count(&self) -> usize;
    /// Member `i`, `i < count()`; `None` past the end.
    fn member(&self, i: usize) -> Option<&dyn Limiter>;
}

impl<M: Members + ?Sized> Members for &M {
    fn count(&self) -> usize {
        (**self).count()
    }
    fn member(&self, i: usize) -> Option<&dyn Limiter> {
        (**self).member(i)
    }
}

impl<L: Limiter> Members for [L] {
    fn count(&self) -> usize {
        self.len()
    }
    fn member(&self, i: usize) -> Option<&dyn Limiter> {
        self.get(i).map(|l| l as &dyn Limiter)
    }
}

impl<L: Limiter, const N: usize> Members for [L; N] {
    fn count(&self) -> usize {
        N
    }
    fn member(&self, i: usize) -> Option<&dyn Limiter> {
        self.get(i).map(|l| l as &dyn Limiter)
    }
}

macro_rules! tuple_members {
    ($n:expr; $($idx:tt $t:ident),+) => {
        impl<$($t: Limiter),+> Members for ($($t,)+) {
            fn count(&self) -> usize {
                $n
            }
            fn member(&self, i: usize) -> Option<&dyn Limiter> {
                match i {
                    $($idx => Some(&self.$idx),)+
                    _ => None,
                }
            }
        }
    };
}
tuple_members!(1; 0 A);
tuple_members!(2; 0 A, 1 B);
tuple_members!(3; 0 A, 1 B, 2 C);
tuple_members!(4; 0 A, 1 B, 2 C, 3 D);
tuple_members!(5; 0 A, 1 B, 2 C, 3 D, 4 E);
tuple_members!(6; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F);

/// What a composite decided, and which member decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a rate-limit decision that is not inspected admits nothing"]
pub struct AllDecision {
    /// The combined decision: allowed with the smallest `remaining` and the
    /// largest `reset_after` of all members; denied with the longest
    /// `retry_after` of the refusing members; or the first member whose
    /// capacity the cost exceeds.
    pub decision: Decision,
    /// The member that refused (the one with the longest wait), or on
    /// admission the one with the smallest `remaining` (the binding limit,
    /// whose numbers belong in `X-RateLimit-*` headers). On a tie, the first
    /// such member.
    pub member: usize,
}

/// All-or-nothing composition: a request is admitted only if every member
/// admits it, and a refused request leaves every member as it was.
///
/// # How
///
/// Two phases. First every member is asked with [`Limiter::probe`], which
/// writes nothing: if any refuses, the composite refuses, and no member was
/// touched. Otherwise the members are charged in order with
/// [`Limiter::check_n`]; if one of them now refuses (another caller took the
/// room between the phases), the members already charged are rolled back with
/// [`Limiter::undo`] and the composite refuses.
///
/// # Concurrency notes
///
/// * Between a charge and its rollback (only in that race), concurrent callers
///   see the charged members with less room: stricter, never looser.
/// * A rollback undoes exactly what was charged when the racing callers used
///   the same `now` (always the case with one clock read per request in the
///   same nanosecond, and what the loom models check). If a racing caller on a
///   GCRA member used a *later* `now`, by `δ`, the rollback can return up to
///   `δ` of emission time early — the same effect as that caller's clock being
///   `δ` fast. Read the clock once per request, just before checking.
/// * A [`TokenBucket`](crate::TokenBucket) member is rolled back with
///   [`TokenBucket::refund_since`](crate::TokenBucket::refund_since) at the
///   same `now`: exactly as a GCRA member, full again if it was full. It
///   gives back nothing (stricter) if, at that moment, another thread holds
///   the bucket's refill line three times in a row or an episode of
///   refusals is open. Put a `TokenBucket` **last** in the outermost `All`
///   to avoid even that: its last member is never rolled back (if it
///   refuses, nothing of it was taken; if it admits, nobody after it can
///   refuse). An `All` nested as a member is rolled back whole, its last
///   member included.
///
/// # Examples
///
/// BlockSecOps-style: 60 per minute AND 1 000 per hour AND 10 000 per day.
///
/// ```
/// use core::num::NonZeroU32;
/// use tollgate_core::{All, Gcra, Nanos, Quota};
///
/// let nz = |n| NonZeroU32::new(n).unwrap();
/// let limits = All((
///     Gcra::new(Quota::per_minute(nz(60))),
///     Gcra::new(Quota::per_hour(nz(1_000))),
///     Gcra::new(Quota::per_day(nz(10_000))),
/// ));
/// let d = limits.check_all(Nanos::ZERO, 1);
/// assert!(d.decision.is_allowed());
/// assert_eq!(d.decision.remaining(), 59); // the per-minute limit binds
/// assert_eq!(d.member, 0);
///
/// // A cost of 61 exceeds the per-minute burst: nobody is charged.
/// let d = limits.check_all(Nanos::ZERO, 61);
/// assert!(!d.decision.is_allowed());
/// assert_eq!(limits.0 .1.peek(Nanos::ZERO).remaining, 999);
/// ```
#[derive(Debug, Default)]
pub struct All<M>(pub M);

impl<M: Members> All<M> {
    /// Asks every member to admit `cost` at `now`, all or nothing, and says
    /// which member decided.
    pub fn check_all(&self, now: Nanos, cost: u32) -> AllDecision {
        if let Some(refusal) = self.probe_all(now, cost) {
            return refusal;
        }
        let members = &self.0;
        let mut acc = Combined::new();
        for i in 0..members.count() {
            let Some(m) = members.member(i) else { break };
            let d = m.check_n(now, cost);
            if !d.is_allowed() {
                // Lost a race since the probe: undo what was charged.
                for j in 0..i {
                    if let Some(charged) = members.member(j) {
                        charged.undo(now, cost);
                    }
                }
                return AllDecision {
                    decision: d,
                    member: i,
                };
            }
            acc.add(i, &d);
        }
        acc.allowed()
    }

    /// The combined decision without charging anything: `None` if every
    /// member would admit, else the refusal.
    fn probe_all(&self, now: Nanos, cost: u32) -> Option<AllDecision> {
        let members = &self.0;
        let mut acc = Combined::new();
        let mut refusal: Option<(usize, Nanos)> = None;
        for i in 0..members.count() {
            let Some(m) = members.member(i) else { break };
            let d = m.probe(now, cost);
            match d {
                Decision::ExceedsCapacity { .. } => {
                    return Some(AllDecision {
                        decision: d,
                        member: i,
                    });
                }
                Decision::Denied { retry_after, .. } => {
                    if refusal.is_none_or(|(_, r)| retry_after > r) {
                        refusal = Some((i, retry_after));
                    }
                }
                Decision::Allowed { .. } => {}
            }
            acc.add(i, &d);
        }
        let (member, retry_after) = refusal?;
        Some(AllDecision {
            decision: Decision::Denied {
                retry_after,
                remaining: acc.remaining,
                reset_after: acc.reset_after,
            },
            member,
        })
    }

    /// The decision [`All::check_all`] would make, without charging.
    pub fn probe_all_members(&self, now: Nanos, cost: u32) -> AllDecision {
        match self.probe_all(now, cost) {
            Some(refusal) => refusal,
            None => {
                let mut acc = Combined::new();
                for i in 0..self.0.count() {
                    if let Some(m) = self.0.member(i) {
                        acc.add(i, &m.probe(now, cost));
                    }
                }
                acc.allowed()
            }
        }
    }

    /// The tightest state of all members: the smallest `remaining` (and that
    /// member's `limit`), the largest `reset_after`.
    pub fn peek_all(&self, now: Nanos) -> (Snapshot, usize) {
        let mut best: Option<(Snapshot, usize)> = None;
        let mut reset_after = Nanos::ZERO;
        for i in 0..self.0.count() {
            let Some(m) = self.0.member(i) else { break };
            let s = m.peek(now);
            reset_after = reset_after.max(s.reset_after);
            if best.is_none_or(|(b, _)| s.remaining < b.remaining) {
                best = Some((s, i));
            }
        }
        match best {
            Some((s, i)) => (Snapshot { reset_after, ..s }, i),
            None => (
                Snapshot {
                    limit: u32::MAX,
                    remaining: u32::MAX,
                    reset_after,
                },
                0,
            ),
        }
    }
}

/// Running combination of member decisions.
struct Combined {
    member: usize,
    remaining: u32,
    reset_after: Nanos,
}

impl Combined {
    fn new() -> Self {
        Combined {
            member: 0,
            remaining: u32::MAX,
            reset_after: Nanos::ZERO,
        }
    }

    fn add(&mut self, i: usize, d: &Decision) {
        let (remaining, reset_after) = match *d {
            Decision::Allowed {
                remaining,
                reset_after,
            }
            | Decision::Denied {
                remaining,
                reset_after,
                ..
            } => (remaining, reset_after),
            Decision::ExceedsCapacity { .. } => return,
        };
        if remaining < self.remaining {
            self.remaining = remaining;
            self.member = i;
        }
        self.reset_after = self.reset_after.max(reset_after);
    }

    fn allowed(self) -> AllDecision {
        AllDecision {
            decision: Decision::Allowed {
                remaining: self.remaining,
                reset_after: self.reset_after,
            },
            member: self.member,
        }
    }
}

impl<M: Members> Limiter for All<M> {
    fn check_n(&self, now: Nanos, cost: u32) -> Decision {
        self.check_all(now, cost).decision
    }
    fn peek(&self, now: Nanos) -> Snapshot {
        self.peek_all(now).0
    }
    /// Refunds every member.
    fn refund(&self, now: Nanos, cost: u32) -> Snapshot {
        for i in 0..self.0.count() {
            if let Some(m) = self.0.member(i) {
                let _ = m.refund(now, cost);
            }
        }
        self.peek(now)
    }
    /// Refunds every member what its share of the charge still weighs.
    fn refund_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> Snapshot {
        for i in 0..self.0.count() {
            if let Some(m) = self.0.member(i) {
                let _ = m.refund_since(charged_at, now, cost);
            }
        }
        self.peek(now)
    }
    fn undo(&self, now: Nanos, cost: u32) {
        for i in 0..self.0.count() {
            if let Some(m) = self.0.member(i) {
                m.undo(now, cost);
            }
        }
    }
    fn probe(&self, now: Nanos, cost: u32) -> Decision {
        self.probe_all_members(now, cost).decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gcra, Quota, SlidingLog};
    use core::num::NonZeroU32;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn denied_composite_touches_nobody_and_reports_longest_wait() {
        let per_sec = Gcra::new(Quota::per_second(nz(10)));
        let per_min = Gcra::new(Quota::per_minute(nz(12)));
        let all = All((&per_sec, &per_min));
        assert!(all.check_all(Nanos::ZERO, 10).decision.is_allowed());
        let before = (per_sec.peek(Nanos::ZERO), per_min.peek(Nanos::ZERO));
        let d = all.check_all(Nanos::ZERO, 3);
        // per-second: 3 units need 300 ms; per-minute: 2 left, 1 more needs 5 s.
        assert_eq!(d.member, 1);
        assert_eq!(d.decision.retry_after(), Some(Nanos::from_secs(5)));
        assert_eq!(d.decision.remaining(), 0);
        assert_eq!(
            (per_sec.peek(Nanos::ZERO), per_min.peek(Nanos::ZERO)),
            before
        );
    }

    /// A limiter whose probe admits and whose charge refuses: the race
    /// between the two phases, played deterministically.
    struct Raced;
    impl Limiter for Raced {
        fn check_n(&self, _: Nanos, _: u32) -> Decision {
            Decision::Denied {
                retry_after: Nanos::new(1),
                remaining: 0,
                reset_after: Nanos::new(1),
            }
        }
        fn peek(&self, _: Nanos) -> Snapshot {
            Snapshot {
                limit: 1,
                remaining: 1,
                reset_after: Nanos::ZERO,
            }
        }
        fn refund(&self, now: Nanos, _: u32) -> Snapshot {
            self.peek(now)
        }
        fn probe(&self, _: Nanos, _: u32) -> Decision {
            Decision::Allowed {
                remaining: 0,
                reset_after: Nanos::ZERO,
            }
        }
    }

    /// What the docs say of a `TokenBucket` member: rolled back it is as it
    /// was, full included; last, it is never rolled back. (It used to come
    /// back one unit short of full: its rollback was a plain refund.)
    #[test]
    fn a_token_bucket_member_rolled_back_is_as_it_was() {
        use crate::TokenBucket;
        let q = Quota::per_hour(nz(3));
        let now = Nanos::from_secs(5);
        let first = TokenBucket::new(q);
        let d = All((&first, Raced)).check_all(now, 1);
        assert!(!d.decision.is_allowed());
        assert_eq!(first.peek(now), TokenBucket::new(q).peek(now));
        assert!(
            All((&first, &first, &first))
                .check_all(now, 1)
                .decision
                .is_allowed()
        );
        assert!(!first.check(now).is_allowed());
        let last = TokenBucket::new(q);
        let d = All((Raced, &last)).check_all(now, 1);
        assert!(!d.decision.is_allowed());
        assert_eq!(last.peek(now), TokenBucket::new(q).peek(now));
        // Not full: the rollback is exact.
        let _ = first.check(now);
        let before = first.peek(now);
        let _ = All((&first, Raced)).check_all(now, 1);
        assert_eq!(first.peek(now), before);
    }

    #[test]
    fn mixed_members_and_arrays() {
        let log = SlidingLog::<2>::new(Nanos::from_secs(1)).unwrap();
        let g = Gcra::new(Quota::per_second(nz(5)));
        let all = All((&log, &g));
        assert!(all.check(Nanos::ZERO).is_allowed());
        assert!(all.check(Nanos::ZERO).is_allowed());
        let d = all.check_all(Nanos::ZERO, 1);
        assert_eq!(d.member, 0);
        assert_eq!(g.peek(Nanos::ZERO).remaining, 3);

        let arr = All([
            Gcra::new(Quota::per_second(nz(1))),
            Gcra::new(Quota::per_second(nz(2))),
        ]);
        assert!(arr.check(Nanos::ZERO).is_allowed());
        assert!(!arr.check(Nanos::ZERO).is_allowed());
        assert_eq!(arr.0[1].peek(Nanos::ZERO).remaining, 1);
    }

    #[test]
    fn exceeds_capacity_wins() {
        let all = All((
            Gcra::new(Quota::per_second(nz(100))),
            Gcra::new(Quota::per_second(nz(2))),
        ));
        let d = all.check_all(Nanos::ZERO, 3);
        assert_eq!(
            d,
            AllDecision {
                decision: Decision::ExceedsCapacity {
                    cost: 3,
                    capacity: 2
                },
                member: 1
            }
        );
    }

    #[test]
    fn nested_composites() {
        let key = Gcra::new(Quota::per_second(nz(2)));
        let org = Gcra::new(Quota::per_second(nz(3)));
        let day = Gcra::new(Quota::per_day(nz(100)));
        let all = All((All((&key, &org)), &day));
        assert!(all.check_n(Nanos::ZERO, 2).is_allowed());
        assert!(!all.check(Nanos::ZERO).is_allowed());
        assert_eq!(org.peek(Nanos::ZERO).remaining, 1);
        assert_eq!(day.peek(Nanos::ZERO).remaining, 98);
    }
}
