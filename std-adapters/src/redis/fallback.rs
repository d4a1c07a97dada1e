//! What the limiter answers while Redis fails: [`FailMode`]'s closed,
//! open and local answers, and the combination of member decisions shared
//! with the Redis path.

use core::num::NonZeroU32;
use core::time::Duration;

use tollgate_core::{Clock, Decision, MAX_CAPACITY, Nanos, Quota, Snapshot};

use super::{
    FailMode, Kind, Member, RedisDecision, RedisLimiter, RedisRefund, RedisRule, Source, unix_now,
};
use crate::keyed::KeyedDecision;

impl RedisRule {
    /// The local fallback's GCRA quota ([`FailMode::Local`]): never more
    /// than `share` of this rule, whatever the rule. `None` when such a
    /// quota cannot be represented (one unit would take longer than
    /// [`MAX_CAPACITY`], about 292 years): the member is then refused (see
    /// [`RedisLimiter::check_degraded`]), never admitted at a looser rate.
    ///
    /// A product `x × share` is floored after f64 rounds it (so
    /// `30 × (1.0 / 3.0)` is 10, as meant); a time divided by `share` is
    /// divided by the f64's exact value and rounded up (stricter).
    ///
    /// * **GCRA** (`limit` per `period`, burst `B`, emission interval
    ///   `T = ceil(period / limit)`): one unit per `T' = ceil(T / share)`,
    ///   burst `b' = max(1, floor(B × share))`, reported as
    ///   `l = max(1, floor(limit × share))` per `l × T'`. So it admits at most
    ///   `b' + t / T'` in any time `t`, and `t / T' <= share × t / T`: the
    ///   rule's `B + t / T`, times `share`, plus at most 1 (a burst cannot be
    ///   below 1: with a limit or burst below `1 / share`, each process may
    ///   still admit 1 at once).
    /// * **Fixed and sliding windows** (`L` per window `W`): a GCRA of
    ///   `L` per `W` with burst `L` admits `L` at once, then one more every
    ///   `W / L`: `2L − 1` inside one window. Instead, with
    ///   `n = floor(L × share)`:
    ///   - `n >= 1`: burst `b = ceil(n / 2)`, rate `r = n − b + 1` per `W`
    ///     (emission interval `T = ceil(W / r)`, so `r × T >= W`). No
    ///     half-open interval of length `W` holds more than `n` units: if
    ///     `U` units are admitted from `t_1` to `t_j` (the last `c` of them
    ///     at `t_j`), the TAT before `t_j` is at least `t_1 + (U − c) × T`
    ///     and GCRA admits only if `TAT + c × T − t_j <= b × T`, so
    ///     `t_j − t_1 >= (U − b) × T`. Inside `[s, s + W)`,
    ///     `t_j − t_1 < W <= r × T`, so `U − b < r`: `U <= b + r − 1 = n`.
    ///     Hence no calendar window (at any offset) and no sliding window of
    ///     length `W` sees more than `n` (refunded units aside). The
    ///     sustained rate is `r = floor(n / 2) + 1` per `W`: about half the
    ///     share (never above it: `r <= n`).
    ///   - `n == 0` (`L × share < 1`): one unit per
    ///     `ceil(W / (L × share))`, burst 1 (so at most 1 per `W`).
    pub(super) fn local_quota(&self, share: f64) -> Option<Quota> {
        let floor_share = |n: u32| {
            // share is in (0, 1], so the product is in [0, n].
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let v = (f64::from(n) * share).floor() as u32;
            v
        };
        match self.kind {
            Kind::Gcra(q) => {
                let t = divide_by_share(q.emission_interval().as_u64(), 1, share)?;
                gcra(
                    floor_share(q.limit().get()).max(1),
                    t,
                    floor_share(q.burst().get()).max(1),
                )
            }
            Kind::Fixed(r) => window_quota(r.limit(), r.window(), share, floor_share),
            Kind::Sliding(r) => window_quota(r.limit(), r.window(), share, floor_share),
        }
    }
}

/// The window-safe GCRA of [`RedisRule::local_quota`] (see there for the
/// proof): never more than `floor(L × share)` (or 1) in any interval of
/// length `W`.
fn window_quota(
    limit: u32,
    window: Nanos,
    share: f64,
    floor_share: impl Fn(u32) -> u32,
) -> Option<Quota> {
    let w = window.as_u64();
    match floor_share(limit) {
        0 => gcra(1, divide_by_share(w, limit, share)?, 1),
        n => {
            let burst = n.div_ceil(2);
            // burst + rate - 1 == n: the most any interval shorter than W
            // can hold, with T = ceil(W / rate) >= W / rate.
            let rate = n - burst + 1;
            gcra(rate, w.div_ceil(u64::from(rate)), burst)
        }
    }
}

/// A GCRA of one unit per `emission` ns with `burst`, reported as `limit`
/// per `limit × emission` (or 1 per `emission` past `u64`); `None` when one
/// unit would take longer than [`MAX_CAPACITY`].
fn gcra(limit: u32, emission: u64, burst: u32) -> Option<Quota> {
    let limit = NonZeroU32::new(limit)?;
    // emission >= 1, so limit <= limit × emission: never RateTooHigh; and
    // ceil(limit × emission / limit) == emission.
    let q = match u64::from(limit.get()).checked_mul(emission) {
        Some(period) => Quota::new(limit, Duration::from_nanos(period)),
        None => Quota::new(NonZeroU32::MIN, Duration::from_nanos(emission)),
    }
    .ok()?;
    debug_assert_eq!(q.emission_interval().as_u64(), emission);
    // The core clamps the burst to MAX_CAPACITY / emission (stricter).
    Some(q.with_burst(NonZeroU32::new(burst)?))
}

/// `ceil(t / (d × share))` ns, exactly for the f64 `share` (rounded up:
/// stricter), or `None` when it exceeds [`MAX_CAPACITY`] (or `d` is 0).
fn divide_by_share(t: u64, d: u32, share: f64) -> Option<u64> {
    // Every positive finite f64 is m / 2^k exactly: m < 2^53, k <= 1074.
    let bits = share.to_bits();
    let exp = u32::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let frac = bits & ((1 << 52) - 1);
    let (m, k) = if exp == 0 {
        (frac, 1074)
    } else {
        // share <= 1, so exp <= 1023 and k >= 52.
        (frac | 1 << 52, 1075_u32.saturating_sub(exp))
    };
    if m == 0 || d == 0 || !share.is_finite() {
        return None;
    }
    // t × 2^k / den by long division: the first (up to) 64 doublings at
    // once (t < 2^64), then one bit at a time while the quotient can still
    // be at most 2^63 (each doubling at least doubles it).
    let den = u128::from(d) * u128::from(m); // < 2^85
    let first = k.min(64);
    let num = u128::from(t) << first;
    let (mut q, mut r) = (num / den, num % den);
    let max = u128::from(MAX_CAPACITY.as_u64());
    for _ in first..k {
        if q > max {
            return None;
        }
        q *= 2;
        r *= 2;
        if r >= den {
            q += 1;
            r -= den;
        }
    }
    if r != 0 {
        q += 1;
    }
    if q > max {
        return None;
    }
    u64::try_from(q).ok()
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
        // The local store's time.
        let t = local.unwrap_or_else(|| i.clock.now());
        // The answer's time: the caller's; without one, the local store's
        // clock as Unix time when it is the limiter's own (so a
        // `refund_to_since` can map it back to `t` exactly), else this
        // machine's.
        let unix = match (now, local) {
            (Some(n), _) => n,
            (None, None) => i.clock.unix_nanos_at(t),
            (None, Some(_)) => unix_now(),
        };
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
                let quotas: Vec<Option<Quota>> =
                    members.iter().map(|m| m.rule.local_quota(share)).collect();
                // Probe all, then charge all (undo on a lost race), as the
                // policy engine does in process. A member without a local
                // quota (see `local_quota`) is refused as in fail-closed.
                let mut decisions: Vec<Decision> = keys
                    .iter()
                    .zip(members)
                    .zip(&quotas)
                    .map(|((k, m), q)| match q {
                        Some(q) => self.local_answer(m, store.probe(k, q, t, m.cost)),
                        None => self.refused(m),
                    })
                    .collect();
                if decisions.iter().all(Decision::is_allowed) {
                    // All admitted, so every member has a quota.
                    let charged: Vec<(&String, &Member<'_>, &Quota)> = keys
                        .iter()
                        .zip(members)
                        .zip(&quotas)
                        .filter_map(|((k, m), q)| Some((k, m, q.as_ref()?)))
                        .collect();
                    for (j, &(k, m, q)) in charged.iter().enumerate() {
                        let d = match store.check_n(k, q, t, m.cost) {
                            KeyedDecision::Decided(d) | KeyedDecision::Untracked(d) => {
                                self.local_answer(m, d)
                            }
                            KeyedDecision::StoreFull => Decision::Denied {
                                retry_after: Nanos::from_duration(i.config.retry_interval),
                                remaining: 0,
                                reset_after: Nanos::from_duration(i.config.retry_interval),
                            },
                        };
                        decisions[j] = d;
                        if !d.is_allowed() {
                            for &(k, m, q) in charged.iter().take(j) {
                                let _ = store.refund(k, q, t, m.cost);
                            }
                            break;
                        }
                    }
                }
                answer(decisions, Source::Local)
            }
            // Every cost the rules could ever admit; a cost above a rule's
            // capacity stays `ExceedsCapacity`, as Redis and the core say.
            (FailMode::Open, _) => answer(
                members
                    .iter()
                    .map(|m| match self.refused(m) {
                        d @ Decision::ExceedsCapacity { .. } => d,
                        _ => Decision::Allowed {
                            remaining: m.rule.capacity() - m.cost,
                            reset_after: Nanos::ZERO,
                        },
                    })
                    .collect(),
                Source::FailOpen,
            ),
            _ => answer(
                members.iter().map(|m| self.refused(m)).collect(),
                Source::FailClosed,
            ),
        }
    }

    /// Until the limiter next tries Redis.
    fn degraded_wait(&self) -> Nanos {
        Nanos::from_duration(self.inner.config.retry_interval).saturating_add(Nanos::new(1))
    }

    /// The fail-closed answer for `m`: refused until the limiter next tries
    /// Redis, or the rule's own `ExceedsCapacity`.
    fn refused(&self, m: &Member<'_>) -> Decision {
        if m.cost > m.rule.capacity() {
            Decision::ExceedsCapacity {
                cost: m.cost,
                capacity: m.rule.capacity(),
            }
        } else {
            let wait = self.degraded_wait();
            Decision::Denied {
                retry_after: wait,
                remaining: 0,
                reset_after: wait,
            }
        }
    }

    /// A local decision for `m`: a cost the rule holds but the smaller
    /// local burst cannot is refused for now (Redis may take it once it is
    /// back), not reported as exceeding the rule's capacity.
    fn local_answer(&self, m: &Member<'_>, d: Decision) -> Decision {
        match d {
            Decision::ExceedsCapacity { .. } => self.refused(m),
            d => d,
        }
    }

    /// [`refund_all`](RedisLimiter::refund_all) while Redis fails: into the
    /// local store in [`FailMode::Local`] (units charged at `now`), else
    /// nothing (fresh read-outs).
    pub(super) fn refund_degraded(
        &self,
        keys: &[String],
        members: &[Member<'_>],
        now: Option<Nanos>,
    ) -> RedisRefund {
        if let Some(r) = self.refund_local(keys, members, None, now) {
            return r;
        }
        RedisRefund {
            members: members
                .iter()
                .map(|m| Snapshot {
                    limit: m.rule.capacity(),
                    remaining: m.rule.capacity(),
                    reset_after: Nanos::ZERO,
                })
                .collect(),
            source: if self.inner.config.fail_mode == FailMode::Open {
                Source::FailOpen
            } else {
                Source::FailClosed
            },
        }
    }

    /// Gives `members` their cost, charged at `charged_at` (`None`: at
    /// `now`), back in the local store at `now` (`None`: this process'
    /// clock), as far as the charge still weighs
    /// ([`KeyedLimiter::refund_since`](crate::keyed::KeyedLimiter::refund_since):
    /// the local store is GCRA, so `cost × T'` less the time since the
    /// charge, `T'` the local emission interval); `None` without a local
    /// store (not [`FailMode::Local`]).
    pub(super) fn refund_local(
        &self,
        keys: &[String],
        members: &[Member<'_>],
        charged_at: Option<Nanos>,
        now: Option<Nanos>,
    ) -> Option<RedisRefund> {
        let i = &self.inner;
        let (FailMode::Local { share }, Some(store)) = (i.config.fail_mode, &i.local) else {
            return None;
        };
        let t = now.unwrap_or_else(|| i.clock.now());
        let charged_at = charged_at.unwrap_or(t);
        Some(RedisRefund {
            members: keys
                .iter()
                .zip(members)
                .map(|(k, m)| match m.rule.local_quota(share) {
                    Some(q) => store.refund_since(k, &q, charged_at, t, m.cost),
                    // Never charged locally: always refused there.
                    None => Snapshot {
                        limit: m.rule.capacity(),
                        remaining: 0,
                        reset_after: self.degraded_wait(),
                    },
                })
                .collect(),
            source: Source::Local,
        })
    }
}

/// A state the client cannot read (another script version wrote it, or the
/// script reported `?`: a key of another type or text that is no state):
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
