//! What the limiter answers while Redis fails: [`FailMode`]'s closed,
//! open and local answers, and the combination of member decisions shared
//! with the Redis path.

use core::num::NonZeroU32;

use tollgate_core::{Clock, Decision, Nanos, Quota, Snapshot};

use super::{
    FailMode, Kind, Member, RedisDecision, RedisLimiter, RedisRefund, RedisRule, Source, unix_now,
};
use crate::keyed::KeyedDecision;

impl RedisRule {
    /// The local fallback's GCRA quota: `share` of the limit and burst.
    pub(super) fn local_quota(&self, share: f64) -> Quota {
        let scale = |n: u32| {
            // share is in (0, 1], so the product is in [0, n].
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let v = (f64::from(n) * share).floor() as u32;
            NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
        };
        let (limit, period, burst) = match self.kind {
            Kind::Gcra(q) => (q.limit(), q.period(), q.burst()),
            Kind::Fixed(r) => {
                let l = NonZeroU32::new(r.limit()).unwrap_or(NonZeroU32::MIN);
                (l, r.window(), l)
            }
            Kind::Sliding(r) => {
                let l = NonZeroU32::new(r.limit()).unwrap_or(NonZeroU32::MIN);
                (l, r.window(), l)
            }
        };
        // A scaled limit per the same period is at most the original rate,
        // which was valid; fall back to per-second only if it is not.
        Quota::new(scale(limit.get()), period.as_duration())
            .unwrap_or_else(|_| Quota::per_second(scale(limit.get())))
            .with_burst(scale(burst.get()))
    }
}

impl RedisLimiter {
    /// The fail mode's answer.
    pub(super) fn check_degraded(
        &self,
        keys: &[String],
        members: &[Member<'_>],
        now: Option<Nanos>,
        local: Option<Nanos>,
    ) -> RedisDecision {
        let i = &self.inner;
        let unix = now.unwrap_or_else(unix_now);
        let answer = |decisions: Vec<Decision>, source| {
            let (decision, member) = combine(&decisions);
            RedisDecision {
                decision,
                member,
                members: decisions,
                source,
                now: unix,
            }
        };
        match (i.config.fail_mode, &i.local) {
            (FailMode::Local { share }, Some(store)) => {
                let t = local.unwrap_or_else(|| i.clock.now());
                let quotas: Vec<Quota> =
                    members.iter().map(|m| m.rule.local_quota(share)).collect();
                // Probe all, then charge all (undo on a lost race), as the
                // policy engine does in process.
                let mut decisions: Vec<Decision> = keys
                    .iter()
                    .zip(members)
                    .zip(&quotas)
                    .map(|((k, m), q)| store.probe(k, q, t, m.cost))
                    .collect();
                if decisions.iter().all(Decision::is_allowed) {
                    for (j, ((k, m), q)) in keys.iter().zip(members).zip(&quotas).enumerate() {
                        let d = match store.check_n(k, q, t, m.cost) {
                            KeyedDecision::Decided(d) | KeyedDecision::Untracked(d) => d,
                            KeyedDecision::StoreFull => Decision::Denied {
                                retry_after: Nanos::from_duration(i.config.retry_interval),
                                remaining: 0,
                                reset_after: Nanos::from_duration(i.config.retry_interval),
                            },
                        };
                        decisions[j] = d;
                        if !d.is_allowed() {
                            for ((k, m), q) in keys.iter().zip(members).zip(&quotas).take(j) {
                                let _ = store.refund(k, q, t, m.cost);
                            }
                            break;
                        }
                    }
                }
                answer(decisions, Source::Local)
            }
            (FailMode::Open, _) => answer(
                members
                    .iter()
                    .map(|m| Decision::Allowed {
                        remaining: m.rule.capacity().saturating_sub(m.cost),
                        reset_after: Nanos::ZERO,
                    })
                    .collect(),
                Source::FailOpen,
            ),
            _ => {
                let wait =
                    Nanos::from_duration(i.config.retry_interval).saturating_add(Nanos::new(1));
                answer(
                    members
                        .iter()
                        .map(|m| {
                            if m.cost > m.rule.capacity() {
                                Decision::ExceedsCapacity {
                                    cost: m.cost,
                                    capacity: m.rule.capacity(),
                                }
                            } else {
                                Decision::Denied {
                                    retry_after: wait,
                                    remaining: 0,
                                    reset_after: wait,
                                }
                            }
                        })
                        .collect(),
                    Source::FailClosed,
                )
            }
        }
    }

    pub(super) fn refund_degraded(
        &self,
        keys: &[String],
        members: &[Member<'_>],
        now: Option<Nanos>,
    ) -> RedisRefund {
        let i = &self.inner;
        match (i.config.fail_mode, &i.local) {
            (FailMode::Local { share }, Some(store)) => {
                let t = now.unwrap_or_else(|| i.clock.now());
                RedisRefund {
                    members: keys
                        .iter()
                        .zip(members)
                        .map(|(k, m)| store.refund(k, &m.rule.local_quota(share), t, m.cost))
                        .collect(),
                    source: Source::Local,
                }
            }
            (mode, _) => RedisRefund {
                members: members
                    .iter()
                    .map(|m| Snapshot {
                        limit: m.rule.capacity(),
                        remaining: m.rule.capacity(),
                        reset_after: Nanos::ZERO,
                    })
                    .collect(),
                source: if mode == FailMode::Open {
                    Source::FailOpen
                } else {
                    Source::FailClosed
                },
            },
        }
    }
}

/// A state the client cannot read (another script version wrote it):
/// refuse for a second rather than admit uncounted.
pub(super) fn unreadable() -> Decision {
    Decision::Denied {
        retry_after: Nanos::from_secs(1),
        remaining: 0,
        reset_after: Nanos::from_secs(1),
    }
}

/// [`All`](crate::All)'s combination of member decisions.
pub(super) fn combine(decisions: &[Decision]) -> (Decision, usize) {
    if let Some(i) = decisions
        .iter()
        .position(|d| matches!(d, Decision::ExceedsCapacity { .. }))
    {
        return (decisions[i], i);
    }
    let mut remaining = u32::MAX;
    let mut reset_after = Nanos::ZERO;
    let mut binding = 0;
    let mut refusal: Option<(usize, Nanos)> = None;
    for (i, d) in decisions.iter().enumerate() {
        if d.remaining() < remaining {
            remaining = d.remaining();
            binding = i;
        }
        if let Decision::Allowed { reset_after: r, .. } | Decision::Denied { reset_after: r, .. } =
            *d
        {
            reset_after = reset_after.max(r);
        }
        if let Some(r) = d.retry_after() {
            if refusal.is_none_or(|(_, w)| r > w) {
                refusal = Some((i, r));
            }
        }
    }
    match refusal {
        Some((i, retry_after)) => (
            Decision::Denied {
                retry_after,
                remaining,
                reset_after,
            },
            i,
        ),
        None => (
            Decision::Allowed {
                remaining,
                reset_after,
            },
            binding,
        ),
    }
}
