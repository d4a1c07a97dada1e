//! The policy engine's side of the Redis backend, compiled as
//! `policy::external` (declared in `policy/mod.rs` with a `#[path]`): it
//! reads the engine's compiled rules, so it lives inside the `policy`
//! module, while its file stays with the rest of the Redis backend.
//!
//! An [`External`] is one request resolved for a store outside the engine:
//! which limits, under whose budget, at what cost, and how to answer from
//! the members' decisions (headers or a 429, in the policy's style).

use std::num::NonZeroU32;

use tollgate_core::window::{FixedRule, SlidingRule};
use tollgate_core::{Decision, Nanos, Quota};

use super::{
    Combo, Denial, Engine, Member, OwnedWho, Request, RequestError, Store, Who, boosted, subject,
};
use crate::keyed::{ConcurrencyRefused, KeyedPermit};

/// A member's limit in core terms (windows on Unix time: fixed windows with
/// offset 0 are the calendar-aligned ones the engine keeps).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ExternalRule {
    Gcra(Quota),
    Fixed(FixedRule),
    Sliding(SlidingRule),
}

/// One member to check outside the engine.
#[derive(Clone, Debug)]
pub(crate) struct ExternalMember {
    pub(crate) rule: ExternalRule,
    /// Unique per (rule, budget): the rule's stable id, then whose budget.
    pub(crate) key: String,
    pub(crate) units: u32,
}

/// A request resolved for an external store. See the module docs.
pub(crate) struct External<'e> {
    engine: &'e Engine,
    combo: &'e Combo,
    who: OwnedWho,
    factor: u32,
    /// The org pool's boost (see `Engine::boost`).
    pool_factor: u32,
    /// Whose budgets the keys of this request live under: the organisation
    /// when the request has one (so the key's limits and the org pool share
    /// one Redis Cluster slot), else the caller.
    pub(crate) tag: String,
    /// Per engine member, in order; `None`: not checked (the org pool of a
    /// request without an organisation).
    pub(crate) members: Vec<Option<ExternalMember>>,
}

fn budget(who: Who<'_>) -> String {
    match who {
        Who::Key(k) => format!("k:{k}"),
        Who::Org(o) => format!("o:{o}"),
        Who::Ip(ip) => format!("ip:{ip}"),
    }
}

impl Engine {
    /// Resolves `req` for an external store (`None`: an exempt route);
    /// `now` is the engine's clock (boosts). Exemptions and the endpoint
    /// rule are chosen as [`Engine::check`] chooses them: a `HEAD` takes the
    /// `GET` exemptions and endpoint rule unless the policy has a `HEAD`
    /// rule of its own (`model::method_applies`, `Engine::endpoint`).
    pub(crate) fn external(
        &self,
        req: &Request<'_>,
        now: Nanos,
    ) -> Result<Option<External<'_>>, RequestError> {
        if self.exempt(req) {
            return Ok(None);
        }
        let (who, plan, org) = self.resolve(req)?;
        let endpoint = self.endpoint(req)?;
        let combo = self.combo(plan, endpoint);
        let factor = self.boost_of(who, now);
        let pool_factor = org.map_or(1, |o| self.pool_factor(o, factor, now));
        let members = combo
            .members
            .iter()
            .map(|m: &Member| {
                let (w, f) = subject(m, who, org, (factor, pool_factor))?;
                let r = boosted(&self.rules[m.rule], f);
                let rule = match r.store {
                    Store::Gcra => ExternalRule::Gcra(r.quota),
                    // Windows of whole seconds from a second to a day: both
                    // constructors accept them (the limit was checked at
                    // load; a boost may pass a sliding maximum: clamped).
                    Store::Fixed(_) => ExternalRule::Fixed(
                        FixedRule::new(r.limit, r.per.nanos(), Nanos::ZERO).ok()?,
                    ),
                    Store::Sliding(_) => ExternalRule::Sliding(
                        SlidingRule::new(NonZeroU32::MIN, r.per.nanos())
                            .ok()?
                            .with_limit_clamped(r.limit),
                    ),
                };
                Some(ExternalMember {
                    rule,
                    key: format!("{:016x}:{}", r.id, budget(w)),
                    units: m.units,
                })
            })
            .collect();
        let tag = match org {
            Some(o) => budget(Who::Org(o)),
            None => budget(who),
        };
        Ok(Some(External {
            engine: self,
            combo,
            who: OwnedWho::of(who),
            factor,
            pool_factor,
            tag,
            members,
        }))
    }
}

impl Engine {
    /// The Unix time of the engine's zero.
    pub(crate) fn unix_at_zero(&self) -> Nanos {
        self.stores.unix_at_zero
    }
}

impl<'e> External<'e> {
    /// The engine's clock for a Unix time (the engine renders headers from
    /// its own clock plus `unix_at_zero`).
    fn engine_now(&self, now_unix: Nanos) -> Nanos {
        now_unix.saturating_sub(self.engine.stores.unix_at_zero)
    }

    /// Headers of an admitted request; `decisions` per engine member (any
    /// allowed value for the skipped ones). A request with no limit of its
    /// own to report (an "unlimited" class) gets none here; in process the
    /// engine reports the plan's general limits instead, which over Redis
    /// would cost another round trip for a read-out.
    pub(crate) fn admitted(
        &self,
        decisions: &[Decision],
        now_unix: Nanos,
    ) -> Vec<(&'static str, String)> {
        match self
            .engine
            .info(&self.combo.members, decisions, self.factor)
        {
            Some(info) => self.engine.header_style.render(&info, now_unix),
            None => Vec::new(),
        }
    }

    /// The 429 of a refused request: the refusing member with the longest
    /// wait binds, as in the engine.
    pub(crate) fn denied(&self, decisions: &[Decision], now_unix: Nanos) -> Denial {
        let wait = |d: &Decision| d.retry_after().unwrap_or(Nanos::MAX);
        let (i, d) = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.is_allowed())
            .fold(None::<(usize, Decision)>, |worst, (i, d)| match worst {
                Some((_, w)) if wait(&w) >= wait(d) => worst,
                _ => Some((i, *d)),
            })
            .unwrap_or((
                0,
                Decision::ExceedsCapacity {
                    cost: 0,
                    capacity: 0,
                },
            ));
        self.engine.deny_rate(
            &self.combo.members,
            decisions,
            (self.factor, self.pool_factor),
            i,
            d,
            self.engine_now(now_unix),
        )
    }

    /// The request's concurrency permits (per process: the engine's own
    /// store), or `(in use, max)` of the one that is full.
    pub(crate) fn permits(&self) -> Result<[Option<KeyedPermit<'e>>; 2], (u32, u32)> {
        let who = self.who.as_who();
        let mut permits = [None, None];
        for (slot, limit) in self.combo.concurrency.into_iter().enumerate() {
            let Some((id, max)) = limit else { continue };
            match self.engine.stores.sem.try_acquire(&(who, id), max, 1) {
                Ok(p) => permits[slot] = Some(p),
                Err(ConcurrencyRefused::Full { in_use, max }) => return Err((in_use, max)),
                Err(_) => return Err((max, max)),
            }
        }
        Ok(permits)
    }

    /// The 429 of a full concurrency limit (`in use`, `max`), with the
    /// binding rate window as it stands: `standing` per engine member, the
    /// members' states after this request's units went back (as the
    /// in-process engine reports it, S4E: "Every API response includes rate
    /// limit headers").
    pub(crate) fn denied_concurrency(
        &self,
        (current, max): (u32, u32),
        standing: &[Decision],
        now_unix: Nanos,
    ) -> Denial {
        let window = self.engine.info(&self.combo.members, standing, self.factor);
        self.engine
            .deny_concurrency(current, max, window, self.engine_now(now_unix))
    }
}
