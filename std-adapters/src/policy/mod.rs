//! Declarative policies (feature `policy`): a TOML file describes plans,
//! quota classes, endpoint rules, cost factors, concurrency, scopes, an org
//! pool, exemptions, refunds and the response style; an [`Engine`] enforces
//! it over keyed stores and answers each request with its headers, or a 429
//! with headers and body.
//!
//! ```
//! use tollgate::policy::{Engine, Outcome, Request};
//! use tollgate::Nanos;
//!
//! let engine = Engine::from_toml(r#"
//!     name = "demo"
//!     [response]
//!     headers = "x-ratelimit"
//!     body = "s4e"
//!     [plans.standard]
//!     limits = [{ per = "minute", limit = 2 }]
//! "#, Nanos::from_secs(1_714_305_600)).unwrap();
//!
//! let req = Request::new("GET", "/api/assets").key("k1").plan("standard");
//! let now = Nanos::ZERO;
//! assert!(engine.check(&req, now).unwrap().is_allowed());
//! assert!(engine.check(&req, now).unwrap().is_allowed());
//! match engine.check(&req, now).unwrap() {
//!     Outcome::Denied(d) => {
//!         assert_eq!(d.status, 429);
//!         assert!(d.headers.contains(&("Retry-After", "60".to_string())));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! # What a check does
//!
//! 1. A route listed under `exempt` is admitted uncounted ([`Outcome::Exempt`]).
//! 2. The caller's identity and plan: the API key (or, with `scope = "org"`,
//!    the organisation) and the plan the caller's auth layer resolved;
//!    without a key, the `anonymous` plan keyed by client address.
//! 3. The members: the plan's limits of the request's quota class (charged
//!    the endpoint's `cost`), the endpoint's own limits (one per request),
//!    the org pool (charged `cost`, per organisation). A limit with a
//!    `burst` adds a GCRA member at the same rate.
//! 4. All-or-nothing: every member is probed read-only first; any refusal is
//!    a 429 with the longest wait of all refusing members and nothing is
//!    charged. Then all are charged; one losing a race in between is rolled
//!    back by refunding the others (a concurrent caller may briefly see
//!    those units taken — stricter, never looser).
//! 5. Concurrency (if the endpoint has it for the plan): a permit held by
//!    the [`Admission`] until it is dropped or [`Engine::complete`]d.

mod model;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tollgate_core::{Decision, Nanos, Quota, WindowError};

use crate::body::{BodyStyle, Refusal, body};
use crate::headers::{HeaderStyle, RateLimitInfo};
use crate::keyed::{
    KeyedAlgorithm, KeyedDecision, KeyedError, KeyedFixedWindow, KeyedGcra, KeyedLimiter,
    KeyedPermit, KeyedSemaphore, KeyedSlidingWindow,
};
pub use model::{
    Algorithm, AnonymousSpec, ConcurrencySpec, EndpointSpec, HeadersSpec, LimitSpec, LimitValue,
    Per, PlanSpec, PolicyError, PolicyFile, ResponseSpec, RouteSpec, ScopeSpec,
};
use model::{Seg, line_col, matches, methods_overlap, overlap, parse_pattern};

/// One request as the engine sees it. Build with [`Request::new`] and the
/// setters; nothing is allocated.
///
/// ```
/// use tollgate::policy::Request;
/// let r = Request::new("POST", "/scans").key("k1").org("acme").plan("free");
/// assert_eq!(r.method, "POST");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path (a query string is ignored).
    pub path: &'a str,
    /// The caller's API key, if authenticated.
    pub api_key: Option<&'a str>,
    /// The caller's organisation or tenant, if any.
    pub org: Option<&'a str>,
    /// The caller's plan, as the auth layer resolved it (ignored for
    /// anonymous callers, who get the policy's anonymous plan).
    pub plan: Option<&'a str>,
    /// The client address (keys anonymous callers).
    pub client_ip: Option<IpAddr>,
}

impl<'a> Request<'a> {
    /// A request with no identity yet.
    pub fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            api_key: None,
            org: None,
            plan: None,
            client_ip: None,
        }
    }
    /// Sets the API key.
    pub fn key(mut self, key: &'a str) -> Self {
        self.api_key = Some(key);
        self
    }
    /// Sets the organisation.
    pub fn org(mut self, org: &'a str) -> Self {
        self.org = Some(org);
        self
    }
    /// Sets the plan.
    pub fn plan(mut self, plan: &'a str) -> Self {
        self.plan = Some(plan);
        self
    }
    /// Sets the client address.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
}

/// A request the engine cannot judge (a caller error, not a rate decision).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The plan named by the request is not in the policy.
    UnknownPlan(String),
    /// Authenticated request without a plan.
    MissingPlan,
    /// No API key, and the policy has no `anonymous` section (or no client
    /// address was given to key the anonymous caller).
    Unauthenticated,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::UnknownPlan(p) => write!(f, "plan \"{p}\" is not in the policy"),
            RequestError::MissingPlan => f.write_str("request has an API key but no plan"),
            RequestError::Unauthenticated => f.write_str(
                "request has no API key and the policy has no anonymous plan \
                 (or no client address was given)",
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// Whose budget a member is kept under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who<'a> {
    Key(&'a str),
    Org(&'a str),
    Ip(IpAddr),
}

/// Which store a member lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Gcra,
    Fixed(usize),
    Sliding(usize),
}

/// A compiled limit.
#[derive(Clone, Debug)]
struct Rule {
    /// Unique per policy: part of the store key.
    id: u32,
    store: Store,
    per: Per,
    limit: NonZeroU32,
    /// GCRA only: at most this many at once.
    burst: Option<NonZeroU32>,
    /// Reported in headers (burst members are not).
    visible: bool,
    class: String,
}

#[derive(Debug)]
struct Endpoint {
    id: u32,
    method: String,
    path: Vec<Seg>,
    class: String,
    cost: u32,
    limits: Vec<Rule>,
    concurrency: HashMap<String, u32>,
    concurrency_all: Option<u32>,
}

#[derive(Debug)]
struct Plan {
    rules: Vec<Rule>,
    concurrency: Option<u32>,
}

struct Boost {
    factor: u32,
    until: Nanos,
}

/// The outcome of [`Engine::check`].
#[derive(Debug)]
#[must_use]
pub enum Outcome<'e> {
    /// Admitted and counted: add `headers` to the response, then call
    /// [`Engine::complete`] (or drop the admission) when it is sent.
    Allowed(Admission<'e>),
    /// An exempt route: admitted, not counted, no headers.
    Exempt,
    /// Refused: send `status`, `headers` and `body`.
    Denied(Denial),
}

impl Outcome<'_> {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Outcome::Denied(_))
    }
}

/// An admitted request: its headers, what it was charged, and its
/// concurrency permit (released on drop).
pub struct Admission<'e> {
    /// Rate-limit headers for the response.
    pub headers: Vec<(&'static str, String)>,
    charges: Vec<(&'e Rule, Who<'static>, u32, u32)>,
    owned: OwnedWho,
    permits: Vec<KeyedPermit<'e>>,
}

impl fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("headers", &self.headers)
            .field("charges", &self.charges.len())
            .field("permits", &self.permits.len())
            .finish()
    }
}

/// A 429 answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    /// HTTP status: 429.
    pub status: u16,
    /// Headers (`Retry-After` and the style's rate-limit headers).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body in the policy's style.
    pub body: Value,
    /// The exact wait, if waiting can help (not for concurrency refusals).
    pub retry_after: Option<Nanos>,
}

/// Owned copies of the identities an admission was charged under (the
/// request's borrowed strings do not outlive the call).
#[derive(Clone, Debug, Default)]
struct OwnedWho {
    key: Option<String>,
    org: Option<String>,
    ip: Option<IpAddr>,
}

/// One line of [`Engine::usage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Quota class.
    pub class: String,
    /// Window.
    pub per: Per,
    /// Units used in the current window.
    pub used: u32,
    /// The limit.
    pub limit: u32,
}

/// Loads a policy and enforces it. See the [module docs](self).
pub struct Engine {
    name: String,
    scope: ScopeSpec,
    anonymous_plan: Option<String>,
    plans: HashMap<String, Plan>,
    endpoints: Vec<Endpoint>,
    exempt: Vec<(String, Vec<Seg>)>,
    org_pool: Vec<Rule>,
    refund_status: Vec<u16>,
    header_style: HeaderStyle,
    body_style: BodyStyle,
    gcra: KeyedLimiter<KeyedGcra>,
    fixed: Vec<(Per, KeyedLimiter<KeyedFixedWindow>)>,
    sliding: Vec<(Per, KeyedLimiter<KeyedSlidingWindow>)>,
    sem: KeyedSemaphore,
    unix_at_zero: Nanos,
    boosts: RwLock<HashMap<String, Boost>>,
    any_boost: AtomicBool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.name)
            .field("plans", &self.plans.len())
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

/// Builds the compiled rules of one limit spec (0, 1 or 2 members).
struct Compiler<'s> {
    src: &'s str,
    next_id: u32,
    fixed: Vec<Per>,
    sliding: Vec<Per>,
}

impl Compiler<'_> {
    fn err(&self, span: std::ops::Range<usize>, field: &str, message: String) -> PolicyError {
        let (line, column) = line_col(self.src, span.start);
        PolicyError {
            line,
            column,
            field: field.to_owned(),
            message,
        }
    }

    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn rules(&mut self, spec: &LimitSpec, field: &str) -> Result<Vec<Rule>, PolicyError> {
        let limit = match *spec.limit.get_ref() {
            LimitValue::Unlimited => {
                if let Some(b) = &spec.burst {
                    return Err(self.err(
                        b.span(),
                        &format!("{field}.burst"),
                        "an unlimited limit has no burst; remove `burst`".into(),
                    ));
                }
                return Ok(Vec::new());
            }
            LimitValue::Count(n) => NonZeroU32::new(n).ok_or_else(|| {
                self.err(
                    spec.limit.span(),
                    &format!("{field}.limit"),
                    "must be at least 1; write \"unlimited\" for no limit".into(),
                )
            })?,
        };
        let algorithm = spec.algorithm.unwrap_or(Algorithm::Fixed);
        let store = match algorithm {
            Algorithm::Gcra => Store::Gcra,
            Algorithm::Fixed => Store::Fixed(slot(&mut self.fixed, spec.per)),
            Algorithm::Sliding => {
                if limit.get() > tollgate_core::window::SLIDING_MAX_LIMIT {
                    return Err(self.err(
                        spec.limit.span(),
                        &format!("{field}.limit"),
                        format!(
                            "a sliding window holds at most {} per window; use \
                             algorithm = \"fixed\" or \"gcra\" for larger limits",
                            tollgate_core::window::SLIDING_MAX_LIMIT
                        ),
                    ));
                }
                Store::Sliding(slot(&mut self.sliding, spec.per))
            }
        };
        let burst = match &spec.burst {
            None => None,
            Some(b) => Some(NonZeroU32::new(*b.get_ref()).ok_or_else(|| {
                self.err(
                    b.span(),
                    &format!("{field}.burst"),
                    "must be at least 1 (or leave `burst` out)".into(),
                )
            })?),
        };
        let mut out = vec![Rule {
            id: self.id(),
            store,
            per: spec.per,
            limit,
            burst: if algorithm == Algorithm::Gcra {
                burst
            } else {
                None
            },
            visible: true,
            class: spec.class.clone(),
        }];
        if let (Some(burst), true) = (burst, algorithm != Algorithm::Gcra) {
            out.push(Rule {
                id: self.id(),
                store: Store::Gcra,
                per: spec.per,
                limit,
                burst: Some(burst),
                visible: false,
                class: spec.class.clone(),
            });
        }
        Ok(out)
    }
}

fn slot(v: &mut Vec<Per>, per: Per) -> usize {
    v.iter().position(|&p| p == per).unwrap_or_else(|| {
        v.push(per);
        v.len() - 1
    })
}

/// At most this many units can pass `rule` at once.
fn capacity_of(rule: &Rule) -> u32 {
    rule.burst.map_or(rule.limit.get(), NonZeroU32::get)
}

impl Engine {
    /// Parses, validates and compiles a policy. `unix_at_zero` is the Unix
    /// time of the engine's `Nanos::ZERO` (for calendar-aligned windows and
    /// `X-RateLimit-Reset`; with [`MonotonicClock`](crate::MonotonicClock),
    /// `clock.unix_nanos_at(Nanos::ZERO)`).
    ///
    /// Errors name the line, column and field, and say what is allowed:
    ///
    /// ```
    /// use tollgate::policy::Engine;
    /// use tollgate::Nanos;
    /// let e = Engine::from_toml(r#"
    /// name = "x"
    /// [response]
    /// headers = "x-ratelimit"
    /// body = "s4e"
    /// [plans.free]
    /// limits = [{ per = "minute", limit = 0 }]
    /// "#, Nanos::ZERO).unwrap_err();
    /// assert_eq!(e.line, 7);
    /// assert!(e.to_string().contains("\"unlimited\""), "{e}");
    /// ```
    pub fn from_toml(src: &str, unix_at_zero: Nanos) -> Result<Engine, PolicyError> {
        let file: PolicyFile = toml::from_str(src).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(src, s.start));
            // The text the error points at, when it is a key or short value.
            let field = e
                .span()
                .and_then(|s| src.get(s))
                .filter(|t| t.len() <= 60 && !t.contains('\n'))
                .unwrap_or("")
                .to_owned();
            PolicyError {
                line,
                column,
                field,
                message: e.message().trim().to_owned(),
            }
        })?;
        Engine::compile(&file, src, unix_at_zero)
    }

    fn compile(file: &PolicyFile, src: &str, unix_at_zero: Nanos) -> Result<Engine, PolicyError> {
        let mut c = Compiler {
            src,
            next_id: 0,
            fixed: Vec::new(),
            sliding: Vec::new(),
        };
        let mut plans = HashMap::new();
        for (name, plan) in &file.plans {
            let mut rules = Vec::new();
            for (i, l) in plan.get_ref().limits.iter().enumerate() {
                rules.extend(c.rules(l, &format!("plans.{name}.limits[{i}]"))?);
            }
            let concurrency = match &plan.get_ref().concurrency {
                None => None,
                Some(n) if *n.get_ref() == 0 => {
                    return Err(c.err(
                        n.span(),
                        &format!("plans.{name}.concurrency"),
                        "must be at least 1 (or leave it out for no limit)".into(),
                    ));
                }
                Some(n) => Some(*n.get_ref()),
            };
            plans.insert(name.clone(), Plan { rules, concurrency });
        }
        let classes: Vec<&str> = plans
            .values()
            .flat_map(|p| p.rules.iter().map(|r| r.class.as_str()))
            .chain(std::iter::once("api"))
            .collect();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for (i, e) in file.endpoints.iter().enumerate() {
            let field = format!("endpoints[{i}]");
            let path = parse_pattern(e.path.get_ref())
                .map_err(|m| c.err(e.path.span(), &format!("{field}.path"), m))?;
            if let Some(prev) = endpoints
                .iter()
                .find(|p| methods_overlap(&p.method, &e.method) && overlap(&p.path, &path))
            {
                return Err(c.err(
                    e.path.span(),
                    &format!("{field}.path"),
                    format!(
                        "{} {} overlaps endpoint rule {} (a request would match both); \
                         make the patterns disjoint",
                        e.method,
                        e.path.get_ref(),
                        prev.id
                    ),
                ));
            }
            let class = e.class.clone().unwrap_or_else(|| "api".to_owned());
            if !classes.contains(&class.as_str()) {
                return Err(c.err(
                    e.path.span(),
                    &format!("{field}.class"),
                    format!("quota class \"{class}\" has no limit in any plan"),
                ));
            }
            let cost = match &e.cost {
                None => 1,
                Some(s) => {
                    let v = *s.get_ref();
                    if v == 0 {
                        return Err(c.err(
                            s.span(),
                            &format!("{field}.cost"),
                            "must be at least 1; list the route under `exempt` to make it free"
                                .into(),
                        ));
                    }
                    // A cost no plan limit could ever admit is a mistake.
                    for (pname, plan) in &plans {
                        if let Some(r) = plan
                            .rules
                            .iter()
                            .find(|r| r.class == class && capacity_of(r) < v)
                        {
                            return Err(c.err(
                                s.span(),
                                &format!("{field}.cost"),
                                format!(
                                    "cost {v} exceeds plan \"{pname}\"'s {} of {} per {}: \
                                     such a request could never pass",
                                    if r.visible { "limit" } else { "burst" },
                                    capacity_of(r),
                                    r.per.name()
                                ),
                            ));
                        }
                    }
                    v
                }
            };
            let mut limits = Vec::new();
            for (j, l) in e.limits.iter().enumerate() {
                limits.extend(c.rules(l, &format!("{field}.limits[{j}]"))?);
            }
            let (mut concurrency, mut concurrency_all) = (HashMap::new(), None);
            if let Some(spec) = &e.concurrency {
                let bad = |c: &Compiler<'_>, m: String| {
                    c.err(spec.span(), &format!("{field}.concurrency"), m)
                };
                match spec.get_ref() {
                    ConcurrencySpec::All(0) => {
                        return Err(bad(&c, "must be at least 1".into()));
                    }
                    ConcurrencySpec::All(n) => concurrency_all = Some(*n),
                    ConcurrencySpec::PerPlan(m) => {
                        for (p, &n) in m {
                            if !plans.contains_key(p) {
                                return Err(bad(&c, format!("plan \"{p}\" is not defined")));
                            }
                            if n == 0 {
                                return Err(bad(&c, format!("plan \"{p}\": must be at least 1")));
                            }
                            concurrency.insert(p.clone(), n);
                        }
                    }
                }
            }
            endpoints.push(Endpoint {
                id: u32::try_from(i).unwrap_or(u32::MAX),
                method: e.method.clone(),
                path,
                class,
                cost,
                limits,
                concurrency,
                concurrency_all,
            });
        }
        let mut exempt = Vec::new();
        for (i, r) in file.exempt.iter().enumerate() {
            let p = parse_pattern(r.path.get_ref())
                .map_err(|m| c.err(r.path.span(), &format!("exempt[{i}].path"), m))?;
            exempt.push((r.method.clone(), p));
        }
        let mut org_pool = Vec::new();
        for (i, l) in file.org_pool.iter().flatten().enumerate() {
            org_pool.extend(c.rules(l, &format!("org_pool[{i}]"))?);
        }
        // The pool binds only when it refuses; headers report the key's own
        // windows.
        for r in &mut org_pool {
            r.visible = false;
        }
        let anonymous_plan = match &file.anonymous {
            None => None,
            Some(a) => {
                if !plans.contains_key(a.plan.get_ref()) {
                    return Err(c.err(
                        a.plan.span(),
                        "anonymous.plan",
                        format!("plan \"{}\" is not defined", a.plan.get_ref()),
                    ));
                }
                Some(a.plan.get_ref().clone())
            }
        };
        let header_style = match file.response.headers {
            HeadersSpec::None => HeaderStyle::none(),
            HeadersSpec::XRatelimit => {
                let mut h = HeaderStyle::x_ratelimit();
                if let Some(w) = &file.response.window_name {
                    h = h.with_window_name(w);
                }
                if let Some(p) = &file.response.warning_at {
                    if *p.get_ref() == 0 || *p.get_ref() > 100 {
                        return Err(c.err(
                            p.span(),
                            "response.warning_at",
                            "a percentage from 1 to 100".into(),
                        ));
                    }
                    h = h.with_warning_at(*p.get_ref());
                }
                if file.response.ietf {
                    h = h.with_ietf(&file.name);
                }
                h
            }
        };
        let cap = file.capacity.max(1);
        let store_err = |e: KeyedError| PolicyError {
            line: 0,
            column: 0,
            field: "capacity".into(),
            message: e.to_string(),
        };
        let win_err = |e: WindowError| PolicyError {
            line: 0,
            column: 0,
            field: "capacity".into(),
            message: e.to_string(),
        };
        let fixed = c
            .fixed
            .iter()
            .map(|&per| {
                let alg = KeyedFixedWindow::new(per.nanos(), unix_at_zero).map_err(win_err)?;
                let s = KeyedLimiter::with_hasher(cap, alg, ahash::RandomState::new())
                    .map_err(store_err)?;
                Ok((per, s))
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let sliding = c
            .sliding
            .iter()
            .map(|&per| {
                let alg = KeyedSlidingWindow::new(per.nanos()).map_err(win_err)?;
                let s = KeyedLimiter::with_hasher(cap, alg, ahash::RandomState::new())
                    .map_err(store_err)?;
                Ok((per, s))
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Ok(Engine {
            name: file.name.clone(),
            scope: file.scope,
            anonymous_plan,
            plans,
            endpoints,
            exempt,
            org_pool,
            refund_status: file.refund_status.clone(),
            header_style,
            body_style: file.response.body,
            gcra: KeyedLimiter::new(cap).map_err(store_err)?,
            fixed,
            sliding,
            sem: KeyedSemaphore::new(cap).map_err(store_err)?,
            unix_at_zero,
            boosts: RwLock::new(HashMap::new()),
            any_boost: AtomicBool::new(false),
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plans, sorted by name.
    pub fn plans(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.plans.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Multiplies the limits of `id` (an API key, or an organisation under
    /// `scope = "org"`) by `factor` until `until` (CyberVault's temporary
    /// boosts). A factor of 1 or a past `until` removes the boost.
    pub fn boost(&self, id: &str, factor: u32, until: Nanos) {
        let mut b = self.boosts.write().unwrap_or_else(|e| e.into_inner());
        if factor <= 1 {
            b.remove(id);
        } else {
            b.insert(id.to_owned(), Boost { factor, until });
        }
        // Relaxed: a hint that lets checks skip the lock when no boost was
        // ever set; the map itself is read under the lock.
        self.any_boost.store(!b.is_empty(), Ordering::Relaxed);
    }

    fn boost_of(&self, id: &str, now: Nanos) -> u32 {
        if !self.any_boost.load(Ordering::Relaxed) {
            return 1;
        }
        let b = self.boosts.read().unwrap_or_else(|e| e.into_inner());
        b.get(id).filter(|b| now < b.until).map_or(1, |b| b.factor)
    }

    fn endpoint(&self, req: &Request<'_>) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| methods_overlap(&e.method, req.method) && matches(&e.path, req.path))
    }

    fn resolve<'r>(
        &self,
        req: &Request<'r>,
    ) -> Result<(Who<'r>, &str, Option<Who<'r>>), RequestError> {
        let org = req.org.map(Who::Org);
        let Some(key) = req.api_key else {
            let plan = self
                .anonymous_plan
                .as_deref()
                .ok_or(RequestError::Unauthenticated)?;
            let ip = req.client_ip.ok_or(RequestError::Unauthenticated)?;
            return Ok((Who::Ip(ip), plan, None));
        };
        let plan = req.plan.ok_or(RequestError::MissingPlan)?;
        let (plan, _) = self
            .plans
            .get_key_value(plan)
            .ok_or_else(|| RequestError::UnknownPlan(plan.to_owned()))?;
        let who = match (self.scope, req.org) {
            (ScopeSpec::Org, Some(o)) => Who::Org(o),
            _ => Who::Key(key),
        };
        Ok((who, plan.as_str(), org))
    }

    /// Decides `req` at `now`. See the [module docs](self) for the steps.
    pub fn check(&self, req: &Request<'_>, now: Nanos) -> Result<Outcome<'_>, RequestError> {
        if self
            .exempt
            .iter()
            .any(|(m, p)| methods_overlap(m, req.method) && matches(p, req.path))
        {
            return Ok(Outcome::Exempt);
        }
        let (who, plan_name, org) = self.resolve(req)?;
        let plan = &self.plans[plan_name];
        let endpoint = self.endpoint(req);
        let class = endpoint.map_or("api", |e| e.class.as_str());
        let cost = endpoint.map_or(1, |e| e.cost);
        let factor = match who {
            Who::Key(id) | Who::Org(id) => self.boost_of(id, now),
            Who::Ip(_) => 1,
        };
        // (rule, whose, units, boost factor, endpoint id or u32::MAX)
        let mut members: Vec<(&Rule, Who<'_>, u32, u32)> = Vec::with_capacity(8);
        members.extend(
            plan.rules
                .iter()
                .filter(|r| r.class == class)
                .map(|r| (r, who, cost, factor)),
        );
        if let Some(e) = endpoint {
            members.extend(e.limits.iter().map(|r| (r, who, 1, factor)));
        }
        if let Some(org) = org {
            members.extend(self.org_pool.iter().map(|r| (r, org, cost, 1)));
        }

        // Phase 1: probe everything read-only.
        let mut worst: Option<(usize, Decision)> = None;
        let mut decisions = Vec::with_capacity(members.len());
        for (i, &(r, w, units, f)) in members.iter().enumerate() {
            let d = self.apply(r, w, units, f, now, Op::Probe);
            if !d.is_allowed() && worst.is_none_or(|(_, wd)| wait(&d) > wait(&wd)) {
                worst = Some((i, d));
            }
            decisions.push(d);
        }
        if let Some((i, d)) = worst {
            return Ok(Outcome::Denied(
                self.deny_rate(&members, &decisions, i, d, now),
            ));
        }
        // Phase 2: charge; undo on a lost race.
        for (i, &(r, w, units, f)) in members.iter().enumerate() {
            let d = self.apply(r, w, units, f, now, Op::Charge);
            if !d.is_allowed() {
                for &(r, w, units, f) in &members[..i] {
                    self.refund(r, w, units, f, now);
                }
                return Ok(Outcome::Denied(
                    self.deny_rate(&members, &decisions, i, d, now),
                ));
            }
            decisions[i] = d;
        }
        // Concurrency: the plan's (all requests), then the endpoint's.
        let mut permits = Vec::new();
        let limits = [
            plan.concurrency.map(|m| (u32::MAX, m)),
            endpoint.and_then(|e| {
                let max = e.concurrency.get(plan_name).copied().or(e.concurrency_all);
                max.map(|m| (e.id, m))
            }),
        ];
        for (slot, max) in limits.into_iter().flatten() {
            match self.sem.try_acquire(&(who, slot), max, 1) {
                Ok(p) => permits.push(p),
                Err(refused) => {
                    drop(permits);
                    for &(r, w, units, f) in &members {
                        self.refund(r, w, units, f, now);
                    }
                    let (current, max) = match refused {
                        crate::keyed::ConcurrencyRefused::Full { in_use, max } => (in_use, max),
                        _ => (max, max),
                    };
                    return Ok(Outcome::Denied(self.deny_concurrency(current, max, now)));
                }
            }
        }
        let headers = self.render_allowed(&members, &decisions, now);
        let owned = OwnedWho {
            key: match who {
                Who::Key(k) => Some(k.to_owned()),
                _ => None,
            }
            .or_else(|| req.api_key.map(str::to_owned)),
            org: match (who, org) {
                (Who::Org(o), _) | (_, Some(Who::Org(o))) => Some(o.to_owned()),
                _ => None,
            },
            ip: match who {
                Who::Ip(ip) => Some(ip),
                _ => None,
            },
        };
        let charges = members
            .iter()
            .map(|&(r, w, units, f)| (r, erase(w), units, f))
            .collect();
        Ok(Outcome::Allowed(Admission {
            headers,
            charges,
            owned,
            permits,
        }))
    }

    /// Ends an admitted request with its response `status`: gives its units
    /// back if the policy says that status is free (S4E: 304), and releases
    /// its concurrency permit.
    pub fn complete(&self, admission: Admission<'_>, status: u16, now: Nanos) {
        if self.refund_status.contains(&status) {
            for &(rule, who, units, factor) in &admission.charges {
                let who = admission.owned.rebind(who);
                self.refund(rule, who, units, factor, now);
            }
        }
        drop(admission);
    }

    /// Whether a response with `status` gives its units back at
    /// [`complete`](Engine::complete) (the policy's `refund_status`).
    pub fn refunds(&self, status: u16) -> bool {
        self.refund_status.contains(&status)
    }

    /// Current usage of the plan limits for an identity: the API key (or
    /// organisation under `scope = "org"`) on `plan`.
    pub fn usage(&self, id: &str, plan: &str, now: Nanos) -> Result<Vec<Usage>, RequestError> {
        let p = self
            .plans
            .get(plan)
            .ok_or_else(|| RequestError::UnknownPlan(plan.to_owned()))?;
        let who = match self.scope {
            ScopeSpec::Key => Who::Key(id),
            ScopeSpec::Org => Who::Org(id),
        };
        let factor = self.boost_of(id, now);
        Ok(p.rules
            .iter()
            .filter(|r| r.visible)
            .map(|r| {
                let r = self.boosted(r, factor);
                let remaining = self.peek_remaining(&r, who, now);
                Usage {
                    class: r.class.clone(),
                    per: r.per,
                    used: r.limit.get().saturating_sub(remaining),
                    limit: r.limit.get(),
                }
            })
            .collect())
    }

    fn boosted(&self, r: &Rule, factor: u32) -> Rule {
        let mut r = r.clone();
        if factor > 1 {
            let f = NonZeroU32::new(factor).unwrap_or(NonZeroU32::MIN);
            r.limit = r.limit.saturating_mul(f);
            r.burst = r.burst.map(|b| b.saturating_mul(f));
        }
        r
    }

    fn quota(r: &Rule) -> Quota {
        let q = match r.per {
            Per::Second => Quota::per_second(r.limit),
            Per::Minute => Quota::per_minute(r.limit),
            Per::Hour => Quota::per_hour(r.limit),
            Per::Day => Quota::per_day(r.limit),
        };
        match r.burst {
            Some(b) => q.with_burst(b),
            None => q,
        }
    }

    fn apply(
        &self,
        r: &Rule,
        who: Who<'_>,
        units: u32,
        factor: u32,
        now: Nanos,
        op: Op,
    ) -> Decision {
        let boosted;
        let r = if factor > 1 {
            boosted = self.boosted(r, factor);
            &boosted
        } else {
            r
        };
        let key = (who, r.id);
        match r.store {
            Store::Gcra => run(&self.gcra, &key, &Self::quota(r), units, now, op),
            Store::Fixed(i) => run(&self.fixed[i].1, &key, &r.limit, units, now, op),
            Store::Sliding(i) => run(&self.sliding[i].1, &key, &r.limit, units, now, op),
        }
    }

    fn refund(&self, r: &Rule, who: Who<'_>, units: u32, factor: u32, now: Nanos) {
        let _ = self.apply(r, who, units, factor, now, Op::Refund);
    }

    fn peek_remaining(&self, r: &Rule, who: Who<'_>, now: Nanos) -> u32 {
        let key = (who, r.id);
        match r.store {
            Store::Gcra => self.gcra.peek(&key, &Self::quota(r), now).remaining,
            Store::Fixed(i) => self.fixed[i].1.peek(&key, &r.limit, now).remaining,
            Store::Sliding(i) => self.sliding[i].1.peek(&key, &r.limit, now).remaining,
        }
    }

    fn now_unix(&self, now: Nanos) -> Nanos {
        self.unix_at_zero + now
    }

    /// The header info of the window that binds: the visible member (a
    /// plan or endpoint window, not a burst or the org pool) with the least
    /// remaining (ties: the longer window), with its own limit, remaining and
    /// reset, so the three agree and `Warning` measures that window's use.
    fn info(
        &self,
        members: &[(&Rule, Who<'_>, u32, u32)],
        decisions: &[Decision],
    ) -> Option<RateLimitInfo> {
        let (i, _) = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.0.visible)
            .min_by_key(|&(i, m)| (remaining(&decisions[i]), std::cmp::Reverse(m.0.per)))?;
        let (r, _, _, f) = members[i];
        Some(RateLimitInfo::new(
            &decisions[i],
            boosted_limit(r, f),
            r.per.nanos(),
        ))
    }

    fn render_allowed(
        &self,
        members: &[(&Rule, Who<'_>, u32, u32)],
        decisions: &[Decision],
        now: Nanos,
    ) -> Vec<(&'static str, String)> {
        match self.info(members, decisions) {
            Some(info) => self.header_style.render(&info, self.now_unix(now)),
            None => Vec::new(),
        }
    }

    fn deny_rate(
        &self,
        members: &[(&Rule, Who<'_>, u32, u32)],
        decisions: &[Decision],
        i: usize,
        d: Decision,
        now: Nanos,
    ) -> Denial {
        let (r, _, _, f) = members[i];
        let r = self.boosted(r, f);
        let window = r.per.nanos();
        let retry_after = match d {
            Decision::Denied { retry_after, .. } => retry_after,
            // A cost above the capacity (only possible when a boost ends or
            // a plan is reloaded smaller): the whole window.
            _ => window,
        };
        // Limit/Reset of the binding window; the refusing member when it is
        // a visible window, else the visible member that binds.
        let mut info = if r.visible {
            RateLimitInfo::new(&d, r.limit.get(), window)
        } else {
            let mut decisions = decisions.to_vec();
            decisions[i] = d;
            self.info(members, &decisions)
                .unwrap_or_else(|| RateLimitInfo::new(&d, r.limit.get(), window))
        };
        info.remaining = 0;
        info.refused = true;
        info.retry_after = Some(retry_after);
        let now_unix = self.now_unix(now);
        Denial {
            status: 429,
            headers: self.header_style.render(&info, now_unix),
            body: body(self.body_style, &Refusal::Rate(info), now_unix),
            retry_after: Some(retry_after),
        }
    }

    fn deny_concurrency(&self, current: u32, max: u32, now: Nanos) -> Denial {
        Denial {
            status: 429,
            headers: Vec::new(),
            body: body(
                self.body_style,
                &Refusal::Concurrency { current, max },
                self.now_unix(now),
            ),
            retry_after: None,
        }
    }
}

/// Runs `op` for `units` of `key` in one keyed store. A refund answers an
/// `Allowed` nobody reads.
fn run<A: KeyedAlgorithm>(
    store: &KeyedLimiter<A>,
    key: &(Who<'_>, u32),
    quota: &A::Quota,
    units: u32,
    now: Nanos,
    op: Op,
) -> Decision {
    match op {
        Op::Probe => store.probe(key, quota, now, units),
        Op::Charge => match store.check_n(key, quota, now, units) {
            KeyedDecision::Decided(d) | KeyedDecision::Untracked(d) => d,
            // No slot for a new key: refuse (the store's default, see
            // `WhenFull`); a slot frees once some key's state is fresh.
            KeyedDecision::StoreFull => Decision::Denied {
                retry_after: Nanos::from_secs(1),
                remaining: 0,
                reset_after: Nanos::from_secs(1),
            },
        },
        Op::Refund => {
            let s = store.refund(key, quota, now, units);
            Decision::Allowed {
                remaining: s.remaining,
                reset_after: s.reset_after,
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Probe,
    Charge,
    Refund,
}

/// `r`'s limit under a boost `factor`.
fn boosted_limit(r: &Rule, factor: u32) -> u32 {
    r.limit.get().saturating_mul(factor.max(1))
}

fn remaining(d: &Decision) -> u32 {
    match *d {
        Decision::Allowed { remaining, .. } | Decision::Denied { remaining, .. } => remaining,
        Decision::ExceedsCapacity { .. } => 0,
    }
}

fn wait(d: &Decision) -> Nanos {
    d.retry_after().unwrap_or(Nanos::MAX)
}

/// Forgets the borrow of a `Who` (the strings are re-bound from the
/// admission's owned copies when refunding).
fn erase(w: Who<'_>) -> Who<'static> {
    match w {
        Who::Key(_) => Who::Key(""),
        Who::Org(_) => Who::Org(""),
        Who::Ip(ip) => Who::Ip(ip),
    }
}

impl OwnedWho {
    fn rebind(&self, w: Who<'static>) -> Who<'_> {
        match w {
            Who::Key(_) => Who::Key(self.key.as_deref().unwrap_or("")),
            Who::Org(_) => Who::Org(self.org.as_deref().unwrap_or("")),
            Who::Ip(ip) => Who::Ip(self.ip.unwrap_or(ip)),
        }
    }
}
