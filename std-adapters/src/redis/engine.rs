//! A policy [`Engine`]'s rules checked on Redis (features `redis` and
//! `policy`): every process of a fleet loads the same policy file and shares
//! the counts.
//!
//! What is shared and what is not:
//!
//! * **Shared through Redis**: every rate limit of the request (plan
//!   windows, bursts, endpoint limits, the org pool), all or nothing in one
//!   script call, at the server's clock; refunds on
//!   [`complete`](RedisLimiter::complete), of what the charge still weighs
//!   (a late `304` gives a later window or a refilled bucket nothing).
//! * **Per process**: concurrency limits (the engine's own permits) and
//!   boosts ([`Engine::boost`], [`Engine::boost_org`] on each process).
//! * **Not done**: queueing — a plan with `queue` answers refusals with the
//!   429 instead of waiting in line.
//!
//! Keys: `prefix{o:ORG}:RULE:WHO` when the request names an organisation
//! (so the key's limits and its org pool are one Redis Cluster slot), else
//! `prefix{k:KEY}:RULE:WHO` (or `ip:`). A key must therefore always come
//! with the same organisation. `RULE` is the engine's stable rule id, the
//! same in every process running the same build on the same policy.

use tollgate_core::{Decision, Nanos};

use super::{Member, RedisLimiter, RedisRule, Source};
use crate::keyed::KeyedPermit;
use crate::policy::external::{ExternalMember, ExternalRule};
use crate::policy::{Denial, Engine, Request, RequestError};

/// The answer to [`RedisLimiter::check_request`].
#[derive(Debug)]
#[must_use]
pub enum PolicyOutcome<'e> {
    /// Admitted and counted: add `headers`, then
    /// [`complete`](RedisLimiter::complete) it (or drop it).
    Allowed(RedisAdmission<'e>),
    /// An exempt route: admitted, not counted.
    Exempt,
    /// Refused: send `status`, `headers` and `body`.
    Denied(Denial),
}

impl PolicyOutcome<'_> {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, PolicyOutcome::Allowed(_) | PolicyOutcome::Exempt)
    }
}

/// An admitted request: its headers, what it was charged (for a refund)
/// and its concurrency permits (released on drop).
pub struct RedisAdmission<'e> {
    /// Rate-limit headers for the response.
    pub headers: Vec<(&'static str, String)>,
    /// Who decided (Redis, or the fail mode).
    pub source: Source,
    /// Where the units were charged (`source` as decided; kept apart from
    /// the public field so a refund always goes where the charge went).
    charged_in: Source,
    /// When, on the clock of `charged_in`: the server's time of the script
    /// call for [`Source::Redis`], the engine's clock the local store
    /// charged at for [`Source::Local`]. A refund gives back only what the
    /// charge still weighs (see [`RedisLimiter::complete`]).
    charged_at: Nanos,
    tag: String,
    engine: &'e Engine,
    charged: Vec<ExternalMember>,
    permits: [Option<KeyedPermit<'e>>; 2],
}

impl std::fmt::Debug for RedisAdmission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdmission")
            .field("headers", &self.headers)
            .field("source", &self.source)
            .field("permits", &self.permits.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

fn rule_of(r: ExternalRule) -> Option<RedisRule> {
    match r {
        ExternalRule::Gcra(q) => Some(RedisRule::gcra(q)),
        ExternalRule::Fixed(f) => RedisRule::fixed(f).ok(),
        ExternalRule::Sliding(s) => RedisRule::sliding(s).ok(),
    }
}

impl RedisLimiter {
    /// Decides `req` under `engine`'s policy with the counts in Redis.
    /// `now` is the engine's clock (as for [`Engine::check`]; it times
    /// boosts and the local fallback), the limits use the server's.
    ///
    /// ```no_run
    /// use tollgate::policy::{Engine, Request};
    /// use tollgate::redis::{PolicyOutcome, RedisConfig, RedisLimiter};
    /// use tollgate::{Clock, MonotonicClock};
    ///
    /// # async fn demo(src: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let clock = MonotonicClock::new();
    /// let engine = Engine::from_toml(src, clock.unix_nanos_at(tollgate::Nanos::ZERO))?;
    /// let redis = RedisLimiter::new("redis://127.0.0.1:6379/", RedisConfig::default())?;
    /// let req = Request::new("GET", "/api/assets").key("k1").plan("free");
    /// match redis.check_request(&engine, &req, clock.now()).await? {
    ///     PolicyOutcome::Allowed(a) => { /* serve, add a.headers */ redis.complete(a, 200, clock.now()).await }
    ///     PolicyOutcome::Exempt => {}
    ///     PolicyOutcome::Denied(d) => { /* d.status, d.headers, d.body */ }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check_request<'e>(
        &self,
        engine: &'e Engine,
        req: &Request<'_>,
        now: Nanos,
    ) -> Result<PolicyOutcome<'e>, RequestError> {
        self.check_request_inner(engine, req, now, None).await
    }

    /// [`check_request`](Self::check_request) with Redis deciding at the
    /// engine's clock `now` (Unix time `engine`'s zero + `now`) instead of
    /// the server's `TIME`: for tests and simulations, as
    /// [`check_all_at`](Self::check_all_at) (do not mix with server time on
    /// the same keys). Complete its admissions with
    /// [`complete_at`](Self::complete_at).
    pub async fn check_request_at<'e>(
        &self,
        engine: &'e Engine,
        req: &Request<'_>,
        now: Nanos,
    ) -> Result<PolicyOutcome<'e>, RequestError> {
        let unix = engine.unix_at_zero().saturating_add(now);
        self.check_request_inner(engine, req, now, Some(unix)).await
    }

    /// A request decided with Redis at `redis_now` (`None`: the server's
    /// time) and the local fallback at `now` (the engine's clock).
    async fn check_request_inner<'e>(
        &self,
        engine: &'e Engine,
        req: &Request<'_>,
        now: Nanos,
        redis_now: Option<Nanos>,
    ) -> Result<PolicyOutcome<'e>, RequestError> {
        let Some(ext) = engine.external(req, now)? else {
            return Ok(PolicyOutcome::Exempt);
        };
        // The members to send, and where each engine member's decision is.
        let mut sent: Vec<ExternalMember> = Vec::new();
        let mut slots: Vec<Option<usize>> = Vec::new();
        let mut members = Vec::new();
        for m in &ext.members {
            match m.as_ref().and_then(|m| rule_of(m.rule).map(|r| (m, r))) {
                Some((m, rule)) => {
                    slots.push(Some(sent.len()));
                    sent.push(m.clone());
                    members.push(rule);
                }
                None => slots.push(None),
            }
        }
        let list: Vec<Member<'_>> = sent
            .iter()
            .zip(&members)
            .map(|(m, r)| Member::new(&m.key, *r, m.units))
            .collect();
        // Redis decides at its own time; the local fallback counts on the
        // engine's clock.
        let d = self
            .check_inner(&ext.tag, &list, redis_now, Some(now))
            .await;
        // When the units were charged, on the clock of where they were.
        let charged_at = if d.source == Source::Local {
            now
        } else {
            d.now
        };
        let untouched = Decision::Allowed {
            remaining: u32::MAX,
            reset_after: Nanos::ZERO,
        };
        let decisions: Vec<Decision> = slots
            .iter()
            .map(|s| s.map_or(untouched, |i| d.members[i]))
            .collect();
        if !d.decision.is_allowed() {
            return Ok(PolicyOutcome::Denied(ext.denied(&decisions, d.now)));
        }
        let permits = match ext.permits() {
            Ok(p) => p,
            Err(full) => {
                // Give the rate units back where they were charged, as far
                // as the charge still weighs (a moment later: about all of
                // it): the request does not run.
                let back = self
                    .refund_to_inner(
                        d.source,
                        &ext.tag,
                        &list,
                        Some(charged_at),
                        redis_now,
                        Some(now),
                    )
                    .await;
                // The windows as they stand: after the refund, or as charged
                // when nothing could go back (Redis unreachable).
                let standing: Vec<Decision> = match &back {
                    Some(r) => slots
                        .iter()
                        .map(|s| {
                            s.and_then(|i| r.members.get(i)).map_or(untouched, |snap| {
                                Decision::Allowed {
                                    remaining: snap.remaining,
                                    reset_after: snap.reset_after,
                                }
                            })
                        })
                        .collect(),
                    None => decisions,
                };
                return Ok(PolicyOutcome::Denied(
                    ext.denied_concurrency(full, &standing, d.now),
                ));
            }
        };
        Ok(PolicyOutcome::Allowed(RedisAdmission {
            headers: ext.admitted(&decisions, d.now),
            source: d.source,
            charged_in: d.source,
            charged_at,
            tag: ext.tag.clone(),
            engine,
            charged: sent,
            permits,
        }))
    }

    /// Ends an admitted request with its response `status`: gives its units
    /// back if the policy refunds that status (S4E: `304`), and releases its
    /// concurrency permits.
    ///
    /// The units go back only where the admission charged them (its
    /// `source`, as [`refund_to`](RedisLimiter::refund_to)): to Redis for
    /// [`Source::Redis`] (dropped if Redis cannot be reached now), to this
    /// process' local store for [`Source::Local`] (even if Redis is back),
    /// and nowhere for [`Source::FailOpen`] and [`Source::FailClosed`],
    /// which charged nothing — so Redis never gets back units it did not
    /// count.
    ///
    /// And only as far as the charge still weighs now, counted from the
    /// admission's time (as [`refund_to_since`](RedisLimiter::refund_to_since);
    /// in Redis at the server's time, in the local store at the engine's
    /// clock): a window member gets its units back while its window is the
    /// one the request was counted in, and nothing once that window is over
    /// (the next window's count is not the request's); a burst (GCRA)
    /// member gets back the charge less the time since the admission, since
    /// the bucket has regenerated that much on its own. So a `304` answered
    /// at once costs nothing, and a slow one can never make a later window
    /// or a refilled bucket admit more than its limit — as
    /// [`Engine::complete`] in process.
    ///
    /// `now` is the engine's clock, as given to
    /// [`check_request`](Self::check_request): the local store counted the
    /// charge on it, so the time since the charge is measured on it too
    /// (Redis uses the server's time, as at the check).
    pub async fn complete(&self, admission: RedisAdmission<'_>, status: u16, now: Nanos) {
        self.complete_inner(admission, status, None, now).await;
    }

    /// [`complete`](Self::complete) at the engine's clock `now`, in Redis
    /// too (Unix time `engine`'s zero + `now`), for admissions of
    /// [`check_request_at`](Self::check_request_at): tests and simulations.
    /// The same rule: only what the charge still weighs at `now` goes back.
    pub async fn complete_at(&self, admission: RedisAdmission<'_>, status: u16, now: Nanos) {
        let unix = admission.engine.unix_at_zero().saturating_add(now);
        self.complete_inner(admission, status, Some(unix), now)
            .await;
    }

    /// Refunds (see [`complete`](Self::complete)) in Redis at `redis_now`
    /// (`None`: the server's time), in the local store at `local`.
    async fn complete_inner(
        &self,
        admission: RedisAdmission<'_>,
        status: u16,
        redis_now: Option<Nanos>,
        local: Nanos,
    ) {
        if admission.engine.refunds(status) {
            let rules: Vec<RedisRule> = admission
                .charged
                .iter()
                .filter_map(|m| rule_of(m.rule))
                .collect();
            let list: Vec<Member<'_>> = admission
                .charged
                .iter()
                .zip(&rules)
                .map(|(m, r)| Member::new(&m.key, *r, m.units))
                .collect();
            let _ = self
                .refund_to_inner(
                    admission.charged_in,
                    &admission.tag,
                    &list,
                    Some(admission.charged_at),
                    redis_now,
                    Some(local),
                )
                .await;
        }
        drop(admission);
    }
}
