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
//!    without a key, the `anonymous` plan keyed by client address (an IPv6
//!    address by its /64, or the `anonymous.ipv6_prefix` given; see
//!    [`client_block`]).
//! 3. The members: the plan's limits of the request's quota class (charged
//!    the endpoint's `cost`), the endpoint's own limits (one per request),
//!    the org pool (charged `cost`, per organisation). A limit with a
//!    `burst` adds a GCRA member at the same rate. A [boost](Engine::boost)
//!    multiplies the identity's limits, and the org pool's by the larger of
//!    the organisation's boost and the identity's.
//! 4. All-or-nothing: every member is probed read-only first; any refusal is
//!    a 429 with the longest wait of all refusing members and nothing is
//!    charged. Then all are charged; one losing a race in between is rolled
//!    back by refunding the others (a concurrent caller may briefly see
//!    those units taken — stricter, never looser).
//! 5. Concurrency (if the endpoint has it for the plan): a permit held by
//!    the [`Admission`] until it is dropped or [`Engine::complete`]d.

mod model;
// The Redis backend's view of compiled rules (a child, to read them; the
// file lives with the backend).
#[cfg(feature = "redis")]
#[path = "../redis/policy.rs"]
pub(crate) mod external;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Wake, Waker};

use serde_json::Value;
use tollgate_core::{Clock, Decision, Nanos, Quota};

use crate::body::{BodyStyle, Refusal, body};
use crate::headers::{HeaderStyle, RateLimitInfo};
use crate::keyed::{
    ConcurrencyRefused, KeyedAlgorithm, KeyedDecision, KeyedError, KeyedFixedWindow, KeyedGcra,
    KeyedLimiter, KeyedPermit, KeyedSemaphore, KeyedSlidingWindow,
};
pub use model::{
    Algorithm, AnonymousSpec, ConcurrencySpec, EndpointSpec, HeadersSpec, LimitSpec, LimitValue,
    Per, PlanSpec, PolicyError, PolicyFile, QueueLine, QueueOn, QueueRoutes, QueueSpec,
    ResponseSpec, RouteSpec, ScopeSpec,
};
use model::{
    Seg, invalid_method, line_col, matches, method_applies, methods_overlap, overlap,
    parse_pattern, request_methods,
};

/// Most members one request can be checked against (plan windows, bursts,
/// endpoint limits, org pool); more is refused at load.
pub const MAX_MEMBERS: usize = 16;

/// Keys tracked at once per store when a policy sets no `capacity`.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The largest `capacity` a policy may ask for: 2^28 = 268 435 456 keys.
///
/// Each store takes about 24 bytes per key of capacity (16-byte slots at
/// most 71 % full, plus a control word per 128-byte bucket), allocated
/// up front: about 6 GiB per store at this maximum, and a policy uses up to
/// ten stores (GCRA, concurrency, and a fixed and a sliding window store per
/// window length). A larger value is a mistake (a few zeros too many), and
/// asking the allocator for it would not fail but abort the process, so it is
/// refused at load with the line and column of the value.
pub const MAX_CAPACITY: usize = 1 << 28;

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
    /// The path selects one endpoint rule as written and another (or none)
    /// once normalised — `/workers/../reports`, `/reports/%73ummary`: a
    /// router that normalises paths runs one handler, one that does not
    /// runs the other, so no rule can be charged safely. Clients do not
    /// send such paths (RFC 3986 asks them to resolve dot segments and not
    /// to encode unreserved characters); the tower layer answers 400.
    AmbiguousPath(String),
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
            RequestError::AmbiguousPath(p) => write!(
                f,
                "path \"{p}\" selects another rule once its dot segments or \
                 percent-encoded characters are resolved"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// The IPv6 prefix length that keys an anonymous caller unless the policy
/// says otherwise (see [`AnonymousSpec::ipv6_prefix`]).
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The address an anonymous caller's budget is kept under: an IPv4 address
/// as is, an IPv6 address with all but its first `prefix` bits cleared.
///
/// IPv6 addresses that carry an IPv4 client's address are keyed by that
/// IPv4 address, so IPv4 clients are keyed alike however they arrive and
/// one IPv4 host gets one budget:
///
/// * IPv4-mapped (`::ffff:a.b.c.d`) and the well-known NAT64/SIIT prefix
///   `64:ff9b::/96` (RFC 6052): the last 32 bits;
/// * 6to4 (`2002::/16`, RFC 3056): bits 16–47. A 6to4 host holds the whole
///   `2002:AABB:CCDD::/48` of its IPv4 address — 65 536 /64s — so keying it
///   per /64 would give one IPv4 host 65 536 budgets;
/// * Teredo (`2001:0::/32`, RFC 4380): the last 32 bits inverted (the
///   client's public IPv4 address, obfuscated). Every Teredo client of one
///   server shares the server's /64; keyed per /64 they would share one
///   budget, and any one of them could spend it for all.
///
/// A network's own NAT64 prefix (RFC 6052 §2.2) cannot be told from a
/// native address; its clients are keyed as IPv6 blocks and share one
/// budget (stricter, never looser).
///
/// ```
/// use std::net::IpAddr;
/// use tollgate::policy::client_block;
///
/// let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
/// let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
/// assert_eq!(client_block(a, 64), client_block(b, 64));
/// assert_eq!(client_block(a, 64).to_string(), "2001:db8:1:2::");
/// assert_ne!(client_block(a, 128), client_block(b, 128));
/// let key = |s: &str| client_block(s.parse().unwrap(), 64).to_string();
/// assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
/// assert_eq!(key("64:ff9b::192.0.2.7"), "192.0.2.7");
/// // 6to4: 2002:c000:0207::/48 is 192.0.2.7's, every subnet of it.
/// assert_eq!(key("2002:c000:207:1234::1"), "192.0.2.7");
/// // Teredo: server 192.0.2.1, client 198.51.100.9 (inverted: 39cc:9bf6).
/// assert_eq!(key("2001:0:c000:201:0:f227:39cc:9bf6"), "198.51.100.9");
/// ```
pub fn client_block(ip: IpAddr, prefix: u8) -> IpAddr {
    let ip = match ip {
        IpAddr::V6(v6) => match embedded_ipv4(u128::from(v6)) {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    };
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = match u32::from(prefix.min(128)) {
                0 => 0,
                n => u128::MAX << (128 - n),
            };
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// The IPv4 client address a NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) or
/// Teredo (`2001:0::/32`) address carries (IPv4-mapped addresses are left
/// to `to_canonical`).
fn embedded_ipv4(bits: u128) -> Option<std::net::Ipv4Addr> {
    // Each shift leaves at most 32 bits: the casts keep all of them.
    #[allow(clippy::cast_possible_truncation)]
    let v4 = if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        bits as u32
    } else if bits >> 112 == 0x2002 {
        (bits >> 80) as u32
    } else if bits >> 96 == 0x2001_0000 {
        !(bits as u32)
    } else {
        return None;
    };
    Some(std::net::Ipv4Addr::from(v4))
}

/// `path` as routers that normalise it see it (`None`: nothing to change):
/// percent-encoded unreserved characters decoded (`%73` is `s`, RFC 3986
/// 6.2.2.2; an encoded `/` or other reserved byte stays encoded), empty and
/// `.` segments dropped, `..` taking the segment before it away (6.2.2.3;
/// never above the root), so repeated slashes are merged and a trailing
/// slash removed; `/` is kept as is.
fn normalized_path(path: &str) -> Option<String> {
    // Most paths are already normal: tell without allocating (this runs
    // on every check).
    let plain = path.starts_with('/')
        && !path.contains("//")
        && !path.contains('%')
        && (path.len() == 1 || !path.ends_with('/'))
        && !path.split('/').any(|s| s == "." || s == "..");
    if plain {
        return None;
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            seg => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    (out != path).then_some(out)
}

/// `path` with every `%XX` that encodes an unreserved character (letters,
/// digits, `-`, `.`, `_`, `~`) replaced by it; anything else as written.
fn decode_unreserved(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let unreserved = rest
            .get(at + 1..at + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .map(char::from)
            .filter(|c| c.is_ascii_alphanumeric() || "-._~".contains(*c));
        match unreserved {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Whose budget a member is kept under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who<'a> {
    Key(&'a str),
    Org(&'a str),
    Ip(IpAddr),
}

/// An owned [`Who`] (queues and admissions outlive the request).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OwnedWho {
    Key(String),
    Org(String),
    Ip(IpAddr),
}

impl OwnedWho {
    fn of(w: Who<'_>) -> OwnedWho {
        match w {
            Who::Key(k) => OwnedWho::Key(k.to_owned()),
            Who::Org(o) => OwnedWho::Org(o.to_owned()),
            Who::Ip(ip) => OwnedWho::Ip(ip),
        }
    }

    fn as_who(&self) -> Who<'_> {
        match self {
            OwnedWho::Key(k) => Who::Key(k),
            OwnedWho::Org(o) => Who::Org(o),
            OwnedWho::Ip(ip) => Who::Ip(*ip),
        }
    }
}

/// Which store a member lives in (window stores by [`per_index`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Gcra,
    Fixed(usize),
    Sliding(usize),
}

fn per_index(per: Per) -> usize {
    match per {
        Per::Second => 0,
        Per::Minute => 1,
        Per::Hour => 2,
        Per::Day => 3,
    }
}

/// The GCRA quota of `limit` per `per` with `burst`.
fn quota_of(per: Per, limit: NonZeroU32, burst: Option<NonZeroU32>) -> Quota {
    let q = match per {
        Per::Second => Quota::per_second(limit),
        Per::Minute => Quota::per_minute(limit),
        Per::Hour => Quota::per_hour(limit),
        Per::Day => Quota::per_day(limit),
    };
    match burst {
        Some(b) => q.with_burst(b),
        None => q,
    }
}

/// A compiled limit.
#[derive(Clone, Debug)]
struct Rule {
    /// The GCRA quota (computed once; used by GCRA rules).
    quota: Quota,
    /// Derived from where the limit is written and what it says, so a
    /// reloaded policy finds the state of every limit it did not change.
    id: u64,
    store: Store,
    per: Per,
    limit: NonZeroU32,
    /// GCRA only: at most this many at once.
    burst: Option<NonZeroU32>,
    /// Reported in headers (bursts and the org pool are not).
    visible: bool,
    class: String,
}

/// What one (plan, endpoint rule) checks: its members and concurrency
/// limits `(stable id, max)` (the plan's, then the endpoint's).
#[derive(Debug)]
struct Combo {
    members: Vec<Member>,
    concurrency: [Option<(u64, u32)>; 2],
}

/// One member of a request's check: a rule, whose budget (the subject's or
/// the org pool's) and how many units.
#[derive(Clone, Copy, Debug)]
struct Member {
    rule: usize,
    pool: bool,
    units: u32,
}

#[derive(Debug)]
struct Endpoint {
    method: String,
    path: Vec<Seg>,
    /// Stable concurrency key (method and path pattern).
    concurrency_id: u64,
    concurrency: HashMap<String, u32>,
    concurrency_all: Option<u32>,
    /// May use a plan queue that takes marked routes only.
    queued: bool,
}

#[derive(Debug)]
struct Plan {
    name: String,
    /// Visible rules, for [`Engine::usage`].
    usage: Vec<usize>,
    concurrency: Option<u32>,
    queue: Option<QueuePlan>,
}

/// A plan's queue: depth, longest wait, which refusals wait.
#[derive(Clone, Copy, Debug)]
struct QueuePlan {
    depth: u32,
    max_wait: Nanos,
    on: QueueOn,
    routes: QueueRoutes,
    line: QueueLine,
}

impl QueuePlan {
    /// Whether refusal `d` may wait in line: per `on`, a concurrency
    /// refusal, or a rate refusal that clears within `wait`.
    fn takes(&self, d: &Denial, wait: Nanos) -> bool {
        match d.retry_after {
            None => self.on != QueueOn::Rate,
            Some(r) => self.on != QueueOn::Concurrency && r <= wait,
        }
    }
}

struct Boost {
    factor: u32,
    until: Nanos,
}

/// Boosts of API keys and of organisations, kept apart as the stores keep
/// their budgets apart: a key named like an organisation shares no boost
/// with it. Client addresses are never boosted.
#[derive(Default)]
struct Boosts {
    keys: HashMap<String, Boost>,
    orgs: HashMap<String, Boost>,
}

/// A queue line: (identity, endpoint rule's stable id; `None` for requests
/// no endpoint rule matches, and for the one line of a plan with `line =
/// "identity"`).
type QueueKey = (OwnedWho, Option<u64>);

/// One line: ticket ids in order, each with the waker to wake when it
/// becomes first (registered by [`Ticket::poll_waking`]).
type Line = VecDeque<(u64, Option<Waker>, Nanos)>;

/// What outlives a reload: the keyed stores, boosts and queues.
struct Stores {
    capacity: usize,
    unix_at_zero: Nanos,
    gcra: KeyedLimiter<KeyedGcra>,
    fixed: [OnceLock<KeyedLimiter<KeyedFixedWindow>>; 4],
    sliding: [OnceLock<KeyedLimiter<KeyedSlidingWindow>>; 4],
    sem: KeyedSemaphore,
    boosts: RwLock<Boosts>,
    any_boost: AtomicBool,
    /// FIFO of tickets per line (see [`QueueKey`]).
    queues: Mutex<HashMap<QueueKey, Line>>,
    /// Tickets waiting in all queues (lets checks skip the queue lock).
    queued: AtomicUsize,
    next_ticket: AtomicU64,
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
    /// Waiting in the identity's queue (plans with `queue`): drive the
    /// [`Ticket`] to an `Allowed` or `Denied`.
    Queued(Ticket<'e>),
}

impl Outcome<'_> {
    /// Whether the request may proceed now.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Outcome::Allowed(_) | Outcome::Exempt)
    }
}

/// What an admission gives back on a refunding status.
struct Refund<'e> {
    engine: &'e Engine,
    members: &'e [Member],
    who: OwnedWho,
    org: Option<String>,
    /// The boosts the units were charged at: (the identity's, the org pool's).
    factors: (u32, u32),
    /// When the units were charged: a refund gives back only what the
    /// charge still weighs at completion (see [`Engine::complete`]).
    charged_at: Nanos,
}

/// An admitted request: its headers, what it was charged, and its
/// concurrency permits (released on drop).
pub struct Admission<'e> {
    /// Rate-limit headers for the response.
    pub headers: Vec<(&'static str, String)>,
    refund: Option<Refund<'e>>,
    permits: [Option<KeyedPermit<'e>>; 2],
}

impl fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("headers", &self.headers)
            .field("refundable", &self.refund.is_some())
            .field("permits", &self.permits.iter().flatten().count())
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

/// One line of [`Engine::usage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Quota class.
    pub class: String,
    /// Window.
    pub per: Per,
    /// Units used in the current window (for an `algorithm = "gcra"`
    /// limit: of its burst, the units not yet refilled).
    pub used: u32,
    /// The limit (for an `algorithm = "gcra"` limit: its burst, what it
    /// admits at once).
    pub limit: u32,
}

/// Loads a policy and enforces it. See the [module docs](self).
pub struct Engine {
    name: String,
    scope: ScopeSpec,
    anonymous_plan: Option<usize>,
    /// Leading bits of an IPv6 client address that key its budget.
    ipv6_prefix: u8,
    plans: Vec<Plan>,
    plan_index: HashMap<String, usize, ahash::RandomState>,
    endpoints: Vec<Endpoint>,
    exempt: Vec<(String, Vec<Seg>)>,
    rules: Vec<Rule>,
    /// Members per (plan, endpoint): index `plan × (endpoints + 1) + e`,
    /// `e = 0` for no endpoint rule, else endpoint index + 1.
    combos: Vec<Combo>,
    /// Endpoint rules without parameters by exact path, for a lookup
    /// without pattern matching: path → (method, endpoint index).
    exact: HashMap<String, Vec<(String, usize)>, ahash::RandomState>,
    /// Endpoint rules with parameters or `*`, tried in order.
    patterned: Vec<usize>,
    refund_status: Vec<u16>,
    header_style: HeaderStyle,
    body_style: BodyStyle,
    stores: Arc<Stores>,
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

/// A 64-bit id of `text` that every process computes alike, whatever
/// compiler built it: FNV-1a. Rule ids are part of the Redis keys, so the
/// processes of a fleet — built by different toolchains during a rolling
/// upgrade — must agree on them (`std`'s `DefaultHasher` promises no such
/// thing across releases); they also decide which limits keep their state
/// across a reload.
fn stable_id(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where an endpoint's rules are written, for their ids: the method in
/// upper case and the path with each `{name}` as `{}`, so renaming a path
/// parameter (or the method's case) keeps the rules' state across a reload.
///
/// Ids changed twice: when they moved from `std`'s `DefaultHasher` to
/// FNV-1a of this text (2026-12-03), and when a rule's limit and burst left
/// its id (2026-12-05, so that a changed value keeps the count): processes
/// of a fleet on either side of such a change count the same caller under
/// different Redis keys, so upgrade a fleet's processes together across
/// it, or expect each limit to start fresh once.
fn endpoint_location(method: &str, pattern: &[Seg]) -> String {
    let mut out = format!("endpoint {} ", method.to_ascii_uppercase());
    for seg in pattern {
        out.push('/');
        match seg {
            Seg::Lit(l) => out.push_str(l),
            Seg::Param => out.push_str("{}"),
            Seg::Rest => out.push('*'),
        }
    }
    out
}

/// Compiles limit specs into rules, remembering where each came from.
struct Compiler<'s> {
    src: &'s str,
    rules: Vec<Rule>,
}

/// An error about the value at `span` of `src`.
fn error_at(src: &str, span: std::ops::Range<usize>, field: &str, message: String) -> PolicyError {
    let (line, column) = line_col(src, span.start);
    PolicyError {
        line,
        column,
        field: field.to_owned(),
        message,
    }
}

/// The store capacity `file` asks for: [`DEFAULT_CAPACITY`] when it sets
/// none; more than [`MAX_CAPACITY`] is refused at the value.
fn checked_capacity(file: &PolicyFile, src: &str) -> Result<usize, PolicyError> {
    let Some(c) = &file.capacity else {
        return Ok(DEFAULT_CAPACITY);
    };
    let n = *c.get_ref();
    if n > MAX_CAPACITY {
        return Err(error_at(
            src,
            c.span(),
            "capacity",
            format!(
                "{n} keys is more than the {MAX_CAPACITY} a policy may track per store \
                 (about 24 bytes per key, allocated up front for each of up to ten stores); \
                 use at most {MAX_CAPACITY}"
            ),
        ));
    }
    if n == 0 {
        return Err(error_at(
            src,
            c.span(),
            "capacity",
            "a store must track at least 1 key: use a capacity of 1 or more (or leave it out \
             for the default)"
                .into(),
        ));
    }
    Ok(n)
}

/// A store could not be built for the policy's capacity: at the `capacity`
/// value when the file sets one (line and column 0 for the default).
fn capacity_error(file: &PolicyFile, src: &str, message: String) -> PolicyError {
    match &file.capacity {
        Some(c) => error_at(src, c.span(), "capacity", message),
        None => PolicyError {
            line: 0,
            column: 0,
            field: "capacity".into(),
            message,
        },
    }
}

impl Compiler<'_> {
    fn err(&self, span: std::ops::Range<usize>, field: &str, message: String) -> PolicyError {
        error_at(self.src, span, field, message)
    }

    /// Adds the rules of `spec` (none if unlimited; two with a burst on a
    /// window), written at `location`; returns their indexes.
    fn rules(
        &mut self,
        spec: &LimitSpec,
        field: &str,
        location: &str,
    ) -> Result<Vec<usize>, PolicyError> {
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
            Algorithm::Fixed => Store::Fixed(per_index(spec.per)),
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
                Store::Sliding(per_index(spec.per))
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
        let mut out = Vec::with_capacity(2);
        let mut push = |c: &mut Self, store: Store, burst: Option<NonZeroU32>, visible: bool| {
            // Every field that changes what the rule's state *means*: where
            // it is, its class, window and algorithm. Not its limit or
            // burst: the stores take the quota with every call, so a reload
            // that changes only those keeps each key's count (or TAT) and
            // judges it against the new values — starting fresh let a key
            // that had spent 10 of 10/min take 5 more of a new 5/min in the
            // same minute (found by review). Free text (location, class)
            // goes in raw with its length in front, never through `Debug`,
            // whose escaping follows the compiler's Unicode tables; `Per`
            // and `Algorithm` by their variant names.
            let what = format!(
                "{}:{location}{}:{}|{:?}|{:?}|{visible}",
                location.len(),
                spec.class.len(),
                spec.class,
                spec.per,
                algorithm,
            );
            let mut id = stable_id(&what);
            // The same limit written twice at one place: its own state.
            while c.rules.iter().any(|r| r.id == id) {
                id = stable_id(&format!("{id:016x} again"));
            }
            c.rules.push(Rule {
                quota: quota_of(spec.per, limit, burst),
                id,
                store,
                per: spec.per,
                limit,
                burst,
                visible,
                class: spec.class.clone(),
            });
            out.push(c.rules.len() - 1);
        };
        if algorithm == Algorithm::Gcra {
            push(self, store, burst, true);
        } else {
            push(self, store, None, true);
            if let Some(b) = burst {
                push(self, Store::Gcra, Some(b), false);
            }
        }
        Ok(out)
    }
}

/// At most this many units can pass `rule` at once.
fn capacity_of(rule: &Rule) -> u32 {
    rule.burst.map_or(rule.limit.get(), NonZeroU32::get)
}

/// What a rule's `remaining` counts down from: a window's limit, a GCRA's
/// burst (a GCRA's `remaining` is what it admits at once).
fn gauge_of(rule: &Rule) -> u32 {
    match rule.store {
        Store::Gcra => capacity_of(rule),
        _ => rule.limit.get(),
    }
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
        let file = parse(src)?;
        let capacity = checked_capacity(&file, src)?;
        let store_err = |e: KeyedError| capacity_error(&file, src, e.to_string());
        let stores = Stores {
            capacity,
            unix_at_zero,
            gcra: KeyedLimiter::new(capacity).map_err(store_err)?,
            fixed: Default::default(),
            sliding: Default::default(),
            sem: KeyedSemaphore::new(capacity).map_err(store_err)?,
            boosts: RwLock::new(Boosts::default()),
            any_boost: AtomicBool::new(false),
            queues: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            next_ticket: AtomicU64::new(0),
        };
        Engine::compile(&file, src, Arc::new(stores))
    }

    /// A new engine for a changed policy that shares this one's state: every
    /// limit the new policy keeps at its place (same endpoint or plan,
    /// class, window and algorithm) keeps each key's count, judged against
    /// its new `limit` and `burst` if those changed (a limit cut mid-window
    /// admits only what the new limit leaves); a limit with a new window or
    /// algorithm, or a new place, starts fresh; boosts, queues and
    /// concurrency permits carry over. Swap it in (e.g. behind an
    /// `ArcSwap`) while admissions of the old engine finish. The store
    /// capacity and `unix_at_zero` stay those of the first load.
    ///
    /// ```
    /// use tollgate::policy::{Engine, Request};
    /// use tollgate::Nanos;
    /// let v1 = r#"
    /// name = "x"
    /// [response]
    /// headers = "x-ratelimit"
    /// body = "s4e"
    /// [plans.free]
    /// limits = [{ per = "minute", limit = 2 }]
    /// "#;
    /// let old = Engine::from_toml(v1, Nanos::ZERO).unwrap();
    /// let r = Request::new("GET", "/").key("k").plan("free");
    /// assert!(old.check(&r, Nanos::ZERO).unwrap().is_allowed());
    /// // Add a plan; `free` is unchanged, so `k` still has 1 left.
    /// let new = old.reload(&format!("{v1}\n[plans.pro]\nlimits = [{{ per = \"minute\", limit = 9 }}]")).unwrap();
    /// assert!(new.check(&r, Nanos::ZERO).unwrap().is_allowed());
    /// assert!(!new.check(&r, Nanos::ZERO).unwrap().is_allowed());
    /// ```
    pub fn reload(&self, src: &str) -> Result<Engine, PolicyError> {
        let file = parse(src)?;
        // Checked like a first load's (the value itself is not used).
        checked_capacity(&file, src)?;
        Engine::compile(&file, src, Arc::clone(&self.stores))
    }

    fn compile(file: &PolicyFile, src: &str, stores: Arc<Stores>) -> Result<Engine, PolicyError> {
        let mut c = Compiler {
            src,
            rules: Vec::new(),
        };
        let mut plans = Vec::new();
        let mut plan_rules = Vec::new();
        for (name, plan) in &file.plans {
            let spec = plan.get_ref();
            let mut rules = Vec::new();
            for (i, l) in spec.limits.iter().enumerate() {
                rules.extend(c.rules(
                    l,
                    &format!("plans.{name}.limits[{i}]"),
                    &format!("plan {name}"),
                )?);
            }
            let concurrency = match &spec.concurrency {
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
            let queue = match &spec.queue {
                None => None,
                Some(q) => {
                    let QueueSpec {
                        on,
                        routes,
                        depth,
                        line,
                        max_wait_secs,
                    } = *q.get_ref();
                    if depth == 0 || max_wait_secs == 0 {
                        return Err(c.err(
                            q.span(),
                            &format!("plans.{name}.queue"),
                            "`depth` and `max_wait_secs` must be at least 1 \
                             (leave `queue` out to refuse instead of queueing)"
                                .into(),
                        ));
                    }
                    Some(QueuePlan {
                        depth,
                        max_wait: Nanos::from_secs(max_wait_secs),
                        on,
                        routes,
                        line,
                    })
                }
            };
            plans.push(Plan {
                name: name.clone(),
                usage: rules
                    .iter()
                    .copied()
                    .filter(|&r| c.rules[r].visible)
                    .collect(),
                concurrency,
                queue,
            });
            plan_rules.push(rules);
        }
        // The quota classes some plan declares, from the limits as written:
        // a class whose every limit is "unlimited" compiles to no rule but is
        // still declared (scanner API: Enterprise scans).
        let classes: Vec<&str> = file
            .plans
            .values()
            .flat_map(|p| p.get_ref().limits.iter().map(|l| l.class.as_str()))
            .chain(std::iter::once("api"))
            .collect();

        let mut org_pool = Vec::new();
        for (i, l) in file.org_pool.iter().flatten().enumerate() {
            if l.class != "api" {
                return Err(c.err(
                    l.limit.span(),
                    &format!("org_pool[{i}].class"),
                    format!(
                        "the organisation pool counts every request of the organisation; \
                         class \"{}\" has no meaning here (remove it)",
                        l.class
                    ),
                ));
            }
            org_pool.extend(c.rules(l, &format!("org_pool[{i}]"), "org pool")?);
        }
        // The pool binds only when it refuses; headers report the key's own
        // windows.
        for &r in &org_pool {
            c.rules[r].visible = false;
        }

        let mut endpoints: Vec<Endpoint> = Vec::new();
        // Per endpoint: (class, cost, its own rules).
        let mut endpoint_rules: Vec<(String, u32, Vec<usize>)> = Vec::new();
        for (i, e) in file.endpoints.iter().enumerate() {
            let field = format!("endpoints[{i}]");
            if let Some(m) = invalid_method(e.method.get_ref()) {
                return Err(c.err(e.method.span(), &format!("endpoints[{i}].method"), m));
            }
            let path = parse_pattern(e.path.get_ref())
                .map_err(|m| c.err(e.path.span(), &format!("{field}.path"), m))?;
            if let Some((j, _)) = endpoints.iter().enumerate().find(|(_, p)| {
                methods_overlap(&p.method, e.method.get_ref()) && overlap(&p.path, &path)
            }) {
                return Err(c.err(
                    e.path.span(),
                    &format!("{field}.path"),
                    format!(
                        "{} {} overlaps endpoints[{j}] ({} {}): a request would match both; \
                         make the patterns disjoint",
                        e.method.get_ref(),
                        e.path.get_ref(),
                        file.endpoints[j].method.get_ref(),
                        file.endpoints[j].path.get_ref(),
                    ),
                ));
            }
            let class = e
                .class
                .as_ref()
                .map_or_else(|| "api".to_owned(), |c| c.get_ref().clone());
            if let Some(spec) = e
                .class
                .as_ref()
                .filter(|_| !classes.contains(&class.as_str()))
            {
                return Err(c.err(
                    spec.span(),
                    &format!("{field}.class"),
                    format!(
                        "quota class \"{class}\" is not declared by any plan: add a limit \
                         with class = \"{class}\" to a plan (\"unlimited\" counts)"
                    ),
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
                    // A cost no plan limit, nor the organisation pool (which
                    // counts every request), could ever admit is a mistake.
                    let plan_limits = plans
                        .iter()
                        .zip(&plan_rules)
                        .flat_map(|(p, rules)| rules.iter().map(move |&r| (Some(p), r)))
                        .filter(|&(_, r)| c.rules[r].class == class);
                    let pool_limits = org_pool.iter().map(|&r| (None, r));
                    if let Some((plan, r)) = plan_limits
                        .chain(pool_limits)
                        .map(|(plan, r)| (plan, &c.rules[r]))
                        .find(|(_, r)| capacity_of(r) < v)
                    {
                        let what = match plan {
                            Some(p) => format!(
                                "plan \"{}\"'s {}",
                                p.name,
                                if r.visible { "limit" } else { "burst" }
                            ),
                            None => format!(
                                "the organisation pool's {}",
                                if r.burst.is_some() { "burst" } else { "limit" }
                            ),
                        };
                        return Err(c.err(
                            s.span(),
                            &format!("{field}.cost"),
                            format!(
                                "cost {v} exceeds {what} of {} per {}: \
                                 such a request could never pass",
                                capacity_of(r),
                                r.per.name()
                            ),
                        ));
                    }
                    v
                }
            };
            let location = endpoint_location(e.method.get_ref(), &path);
            let mut limits = Vec::new();
            for (j, l) in e.limits.iter().enumerate() {
                limits.extend(c.rules(l, &format!("{field}.limits[{j}]"), &location)?);
            }
            let (mut concurrency, mut concurrency_all) = (HashMap::new(), None);
            if let Some(spec) = &e.concurrency {
                let bad = |c: &Compiler<'_>, m: String| {
                    c.err(spec.span(), &format!("{field}.concurrency"), m)
                };
                match spec.get_ref() {
                    ConcurrencySpec::All(0) => return Err(bad(&c, "must be at least 1".into())),
                    ConcurrencySpec::All(n) => concurrency_all = Some(*n),
                    ConcurrencySpec::PerPlan(m) => {
                        for (p, &n) in m {
                            if !file.plans.contains_key(p) {
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
                method: e.method.get_ref().clone(),
                path,
                concurrency_id: stable_id(&location),
                concurrency,
                concurrency_all,
                queued: e.queued,
            });
            endpoint_rules.push((class, cost, limits));
        }
        let mut exempt = Vec::new();
        for (i, r) in file.exempt.iter().enumerate() {
            if let Some(m) = invalid_method(r.method.get_ref()) {
                return Err(c.err(r.method.span(), &format!("exempt[{i}].method"), m));
            }
            let p = parse_pattern(r.path.get_ref())
                .map_err(|m| c.err(r.path.span(), &format!("exempt[{i}].path"), m))?;
            exempt.push((r.method.get_ref().clone(), p));
        }
        // Every plan says what each quota class in use costs it: a class a
        // plan does not mention would be unlimited for that plan without
        // anyone having written "unlimited".
        for (name, plan) in &file.plans {
            let declared: Vec<&str> = plan
                .get_ref()
                .limits
                .iter()
                .map(|l| l.class.as_str())
                .collect();
            if declared.is_empty() {
                continue; // a plan with no limits at all is unlimited as written
            }
            let used = endpoint_rules
                .iter()
                .enumerate()
                .map(|(i, (class, _, _))| (Some(i), class.as_str()))
                .chain(std::iter::once((None, "api")));
            for (endpoint, class) in used {
                if !declared.contains(&class) {
                    let by = endpoint.map_or_else(
                        || "requests matching no endpoint rule".to_owned(),
                        |i| format!("endpoints[{i}]"),
                    );
                    return Err(c.err(
                        plan.span(),
                        &format!("plans.{name}.limits"),
                        format!(
                            "plan \"{name}\" has no limit for quota class \"{class}\" (spent by \
                             {by}): add one, or limit = \"unlimited\" to leave it unlimited"
                        ),
                    ));
                }
            }
        }
        let anonymous_plan = match &file.anonymous {
            None => None,
            Some(a) => Some(
                plans
                    .iter()
                    .position(|p| &p.name == a.plan.get_ref())
                    .ok_or_else(|| {
                        c.err(
                            a.plan.span(),
                            "anonymous.plan",
                            format!("plan \"{}\" is not defined", a.plan.get_ref()),
                        )
                    })?,
            ),
        };

        let ipv6_prefix = match file.anonymous.as_ref().and_then(|a| a.ipv6_prefix.as_ref()) {
            None => DEFAULT_IPV6_PREFIX,
            Some(p) if (1..=128).contains(p.get_ref()) => *p.get_ref(),
            Some(p) => {
                return Err(c.err(
                    p.span(),
                    "anonymous.ipv6_prefix",
                    "a prefix length from 1 to 128 bits".into(),
                ));
            }
        };

        // Every (plan, endpoint) member list, checked against MAX_MEMBERS.
        let mut combos = Vec::with_capacity(plans.len() * (endpoints.len() + 1));
        for (p, rules) in plans.iter().zip(&plan_rules) {
            for e in 0..=endpoints.len() {
                let (class, cost, limits) = match e {
                    0 => ("api", 1, &[][..]),
                    _ => {
                        let (class, cost, limits) = &endpoint_rules[e - 1];
                        (class.as_str(), *cost, &limits[..])
                    }
                };
                let mut m: Vec<Member> = rules
                    .iter()
                    .filter(|&&r| c.rules[r].class == class)
                    .map(|&rule| Member {
                        rule,
                        pool: false,
                        units: cost,
                    })
                    .collect();
                m.extend(limits.iter().map(|&rule| Member {
                    rule,
                    pool: false,
                    units: 1,
                }));
                m.extend(org_pool.iter().map(|&rule| Member {
                    rule,
                    pool: true,
                    units: cost,
                }));
                if m.len() > MAX_MEMBERS {
                    let at = file.plans[&p.name].span();
                    return Err(c.err(
                        at,
                        &format!("plans.{}", p.name),
                        format!(
                            "a request would be checked against {} limits (at most {MAX_MEMBERS})",
                            m.len()
                        ),
                    ));
                }
                let concurrency = [
                    p.concurrency.map(|m| (0u64, m)),
                    e.checked_sub(1).and_then(|e| {
                        let e = &endpoints[e];
                        let max = e.concurrency.get(&p.name).copied().or(e.concurrency_all);
                        max.map(|m| (e.concurrency_id, m))
                    }),
                ];
                combos.push(Combo {
                    members: m,
                    concurrency,
                });
            }
        }

        let response = &file.response;
        let header_style = match response.headers {
            HeadersSpec::None => {
                // Header options with no headers to go in: refused rather
                // than silently ignored.
                let given = [
                    response
                        .window_name
                        .as_ref()
                        .map(|w| ("window_name", w.span())),
                    response
                        .warning_at
                        .as_ref()
                        .map(|w| ("warning_at", w.span())),
                    response
                        .ietf
                        .as_ref()
                        .filter(|i| *i.get_ref())
                        .map(|i| ("ietf", i.span())),
                ];
                if let Some((field, span)) = given.into_iter().flatten().next() {
                    return Err(c.err(
                        span,
                        &format!("response.{field}"),
                        "only with headers = \"x-ratelimit\" (headers = \"none\" sends no \
                         rate-limit headers)"
                            .into(),
                    ));
                }
                HeaderStyle::none()
            }
            HeadersSpec::XRatelimit => {
                let mut h = HeaderStyle::x_ratelimit();
                if let Some(w) = &response.window_name {
                    h = h.with_window_name(w.get_ref());
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
                if response.ietf.as_ref().is_some_and(|i| *i.get_ref()) {
                    h = h.with_ietf(&file.name);
                }
                h
            }
        };
        // The window stores this policy needs (kept across reloads).
        for r in &c.rules {
            let err = |e: String| capacity_error(file, src, e);
            let (cap, unix) = (stores.capacity, stores.unix_at_zero);
            match r.store {
                Store::Gcra => {}
                Store::Fixed(i) if stores.fixed[i].get().is_none() => {
                    let alg = KeyedFixedWindow::new(r.per.nanos(), unix)
                        .map_err(|e| err(e.to_string()))?;
                    let s = KeyedLimiter::with_hasher(cap, alg, ahash::RandomState::new())
                        .map_err(|e| err(e.to_string()))?;
                    let _ = stores.fixed[i].set(s);
                }
                Store::Sliding(i) if stores.sliding[i].get().is_none() => {
                    // Unix-aligned, as the Redis script counts them.
                    let alg = KeyedSlidingWindow::aligned(r.per.nanos(), unix)
                        .map_err(|e| err(e.to_string()))?;
                    let s = KeyedLimiter::with_hasher(cap, alg, ahash::RandomState::new())
                        .map_err(|e| err(e.to_string()))?;
                    let _ = stores.sliding[i].set(s);
                }
                _ => {}
            }
        }
        let (mut exact, mut patterned) =
            (HashMap::with_hasher(ahash::RandomState::new()), Vec::new());
        for (i, e) in endpoints.iter().enumerate() {
            if e.path.iter().all(|s| matches!(s, Seg::Lit(_))) {
                let path = file.endpoints[i].path.get_ref().clone();
                exact
                    .entry(path)
                    .or_insert_with(Vec::new)
                    .push((e.method.clone(), i));
            } else {
                patterned.push(i);
            }
        }
        let plan_index = plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        Ok(Engine {
            name: file.name.clone(),
            scope: file.scope,
            anonymous_plan,
            ipv6_prefix,
            plans,
            plan_index,
            endpoints,
            exempt,
            rules: c.rules,
            combos,
            exact,
            patterned,
            refund_status: file.refund_status.clone(),
            header_style,
            body_style: file.response.body,
            stores,
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plans, sorted by name.
    pub fn plans(&self) -> Vec<&str> {
        self.plans.iter().map(|p| p.name.as_str()).collect()
    }

    /// Multiplies the limits of the API key `id` by `factor` until `until`
    /// (CyberVault's temporary boosts). A factor of 1 removes the boost.
    ///
    /// Keys and organisations are boosted apart (an organisation with
    /// [`boost_org`](Engine::boost_org)), as their budgets are kept apart:
    /// a key named like an organisation shares no boost with it. Under
    /// `scope = "org"` a request with an organisation is keyed, and boosted,
    /// by its organisation. Client addresses are never boosted.
    ///
    /// The org pool is shared, and boosted per request: a request of an
    /// organisation's member is charged against the pool with the larger of
    /// the organisation's own boost (`boost_org(org, ..)`) and the boost of
    /// the identity charged. So a boosted key is not capped by the
    /// unboosted pool (a 5x Enterprise key gets 5x its burst, and the pool
    /// 5x for its requests), and boosting the organisation lifts the pool
    /// for all its keys; an unboosted key still sees the pool's own size,
    /// including what the boosted key took from it.
    ///
    /// ```
    /// use tollgate::policy::{Engine, Request};
    /// use tollgate::Nanos;
    /// let e = Engine::from_toml(r#"
    /// name = "x"
    /// org_pool = [{ per = "minute", limit = 20, algorithm = "gcra", burst = 2 }]
    /// [response]
    /// headers = "x-ratelimit"
    /// body = "cybervault"
    /// [plans.pro]
    /// limits = [{ per = "minute", limit = 60, algorithm = "gcra", burst = 4 }]
    /// "#, Nanos::ZERO).unwrap();
    /// let k = Request::new("GET", "/").key("k").org("acme").plan("pro");
    /// let burst = |e: &Engine| (0..30).filter(|_| e.check(&k, Nanos::ZERO).unwrap().is_allowed()).count();
    /// // Unboosted, the pool's burst of 2 binds.
    /// assert_eq!(burst(&e), 2);
    /// // Boosted 5x (from 1 minute on, with the pool full again): the pool's
    /// // burst is 10 for this key's requests, its own 20.
    /// e.boost("k", 5, Nanos::from_secs(3_600));
    /// let later = Nanos::from_secs(60);
    /// let n = (0..30).filter(|_| e.check(&k, later).unwrap().is_allowed()).count();
    /// assert_eq!(n, 10);
    /// ```
    pub fn boost(&self, id: &str, factor: u32, until: Nanos) {
        self.set_boost(Who::Key(id), factor, until);
    }

    /// Multiplies the limits of the organisation `org` by `factor` until
    /// `until`: its org pool, for the requests of all its keys, and under
    /// `scope = "org"` the budget its requests are keyed by (there
    /// [`boost`](Engine::boost) reaches only requests without an
    /// organisation, keyed by their key). A factor of 1 removes the boost.
    ///
    /// ```
    /// use tollgate::policy::{Engine, Request};
    /// use tollgate::Nanos;
    /// let e = Engine::from_toml(r#"
    /// name = "x"
    /// scope = "org"
    /// [response]
    /// headers = "none"
    /// body = "s4e"
    /// [plans.pro]
    /// limits = [{ per = "minute", limit = 60, algorithm = "gcra", burst = 4 }]
    /// "#, Nanos::ZERO).unwrap();
    /// let r = Request::new("GET", "/").key("k").org("acme").plan("pro");
    /// e.boost_org("acme", 5, Nanos::from_secs(3_600));
    /// let n = (0..30).filter(|_| e.check(&r, Nanos::ZERO).unwrap().is_allowed()).count();
    /// assert_eq!(n, 20);
    /// ```
    pub fn boost_org(&self, org: &str, factor: u32, until: Nanos) {
        self.set_boost(Who::Org(org), factor, until);
    }

    fn set_boost(&self, who: Who<'_>, factor: u32, until: Nanos) {
        let s = &self.stores;
        let mut b = s.boosts.write().unwrap_or_else(|e| e.into_inner());
        let (map, id) = match who {
            Who::Key(k) => (&mut b.keys, k),
            Who::Org(o) => (&mut b.orgs, o),
            Who::Ip(_) => return,
        };
        if factor <= 1 {
            map.remove(id);
        } else {
            map.insert(id.to_owned(), Boost { factor, until });
        }
        // Relaxed: a hint that lets checks skip the lock when no boost is
        // set; the maps themselves are read under the lock.
        let any = !(b.keys.is_empty() && b.orgs.is_empty());
        s.any_boost.store(any, Ordering::Relaxed);
    }

    /// The boost the org pool of `org` is charged with for an identity
    /// boosted by `factor`: the larger of the two (see [`Engine::boost`]).
    pub(crate) fn pool_factor(&self, org: &str, factor: u32, now: Nanos) -> u32 {
        self.boost_of(Who::Org(org), now).max(factor)
    }

    fn boost_of(&self, who: Who<'_>, now: Nanos) -> u32 {
        let s = &self.stores;
        if matches!(who, Who::Ip(_)) || !s.any_boost.load(Ordering::Relaxed) {
            return 1;
        }
        let b = s.boosts.read().unwrap_or_else(|e| e.into_inner());
        let boost = match who {
            Who::Key(k) => b.keys.get(k),
            Who::Org(o) => b.orgs.get(o),
            Who::Ip(_) => None,
        };
        boost.filter(|b| now < b.until).map_or(1, |b| b.factor)
    }

    /// The endpoint rule `req` matches: rules of one method never overlap,
    /// so at most one for its own method; a HEAD without a rule of its own
    /// takes the GET rule (see `model::request_methods`).
    ///
    /// A path that matches no rule as written is tried once more normalised
    /// (`//api//scans/`, `/api/./scans`, `/api/v1/../scans` and
    /// `/api/%73cans` as `/api/scans`; see `normalized_path`): routers that
    /// merge slashes, ignore a trailing one, resolve dot segments or decode
    /// unreserved characters — or a normalising proxy in front — run the
    /// endpoint's handler for those spellings, so its limit must apply to
    /// them too. A path that matches a rule as written and another rule (or
    /// none) normalised is refused ([`RequestError::AmbiguousPath`]):
    /// charging either could let the other handler run under the wrong
    /// limit (found by review: `/workers/../reports` took the scan quota's
    /// rule, its `*` matching `..`).
    fn endpoint(&self, req: &Request<'_>) -> Result<Option<usize>, RequestError> {
        let path = req.path.split_once('?').map_or(req.path, |(p, _)| p);
        let written = self.endpoint_at(req.method, path);
        let Some(normal) = normalized_path(path) else {
            return Ok(written);
        };
        let resolved = self.endpoint_at(req.method, &normal);
        match written {
            None => Ok(resolved),
            Some(_) if written == resolved => Ok(written),
            Some(_) => Err(RequestError::AmbiguousPath(path.to_owned())),
        }
    }

    /// Whether `req` is exempt: its path as written *and* normalised match
    /// an exemption (a wildcard exemption's `*` matches `..`, so
    /// `/public/../api/scans` as written would otherwise pass uncounted;
    /// found by review).
    fn exempt(&self, req: &Request<'_>) -> bool {
        let at = |path: &str| {
            self.exempt
                .iter()
                .any(|(m, p)| method_applies(m, req.method) && matches(p, path))
        };
        let path = req.path.split_once('?').map_or(req.path, |(p, _)| p);
        at(req.path) && normalized_path(path).is_none_or(|n| at(&n))
    }

    fn endpoint_at(&self, method: &str, path: &str) -> Option<usize> {
        request_methods(method).find_map(|method| {
            let exact = self.exact.get(path).and_then(|v| {
                v.iter()
                    .find(|(m, _)| methods_overlap(m, method))
                    .map(|&(_, i)| i)
            });
            exact.or_else(|| {
                self.patterned.iter().copied().find(|&i| {
                    let e = &self.endpoints[i];
                    methods_overlap(&e.method, method) && matches(&e.path, path)
                })
            })
        })
    }

    fn resolve<'r>(
        &self,
        req: &Request<'r>,
    ) -> Result<(Who<'r>, usize, Option<&'r str>), RequestError> {
        let Some(key) = req.api_key else {
            let plan = self.anonymous_plan.ok_or(RequestError::Unauthenticated)?;
            let ip = req.client_ip.ok_or(RequestError::Unauthenticated)?;
            return Ok((Who::Ip(client_block(ip, self.ipv6_prefix)), plan, None));
        };
        let name = req.plan.ok_or(RequestError::MissingPlan)?;
        let plan = *self
            .plan_index
            .get(name)
            .ok_or_else(|| RequestError::UnknownPlan(name.to_owned()))?;
        let who = match (self.scope, req.org) {
            (ScopeSpec::Org, Some(o)) => Who::Org(o),
            _ => Who::Key(key),
        };
        Ok((who, plan, req.org))
    }

    /// Decides `req` at `now`. See the [module docs](self) for the steps.
    pub fn check(&self, req: &Request<'_>, now: Nanos) -> Result<Outcome<'_>, RequestError> {
        if self.exempt(req) {
            return Ok(Outcome::Exempt);
        }
        let (who, plan, org) = self.resolve(req)?;
        let endpoint = self.endpoint(req)?;
        let queue = self.plans[plan].queue.filter(|q| {
            q.routes == QueueRoutes::All || endpoint.is_some_and(|e| self.endpoints[e].queued)
        });
        // FIFO: while others of this identity wait, a newcomer waits behind
        // them. Relaxed: a hint; the queue itself is read under its lock.
        if let Some(q) = queue {
            if self.stores.queued.load(Ordering::Relaxed) > 0
                && self.queue_len(who, endpoint, q, now) > 0
            {
                return Ok(self.enqueue(who, plan, endpoint, org, q, now, None));
            }
        }
        match self.decide(who, plan, endpoint, org, now) {
            Ok(a) => Ok(Outcome::Allowed(a)),
            Err(d) => match queue {
                Some(q) if q.takes(&d, q.max_wait) => {
                    Ok(self.enqueue(who, plan, endpoint, org, q, now, Some(d)))
                }
                _ => Ok(Outcome::Denied(d)),
            },
        }
    }

    /// The whole decision without queueing: probe, charge, permits.
    fn decide<'e>(
        &'e self,
        who: Who<'_>,
        plan: usize,
        endpoint: Option<usize>,
        org: Option<&str>,
        now: Nanos,
    ) -> Result<Admission<'e>, Denial> {
        let combo = self.combo(plan, endpoint);
        let members = &combo.members[..];
        let factor = self.boost_of(who, now);
        let pool_factor = org.map_or(1, |o| self.pool_factor(o, factor, now));
        let subject = |m: &Member| subject(m, who, org, (factor, pool_factor));
        let probe = |charge: bool| {
            self.probe_members(members, who, org, (factor, pool_factor), charge, now)
        };
        // Phase 1: probe everything read-only; the refusal with the longest
        // wait binds (the first of equal ones).
        let mut decisions = probe(true);
        let mut worst: Option<(usize, Decision)> = None;
        for (i, &d) in decisions.iter().enumerate().take(members.len()) {
            if !d.is_allowed() && worst.is_none_or(|(_, wd)| wait(&d) > wait(&wd)) {
                worst = Some((i, d));
            }
        }
        if let Some((i, d)) = worst {
            return Err(self.deny_rate(members, &decisions, (factor, pool_factor), i, d, now));
        }
        // Phase 2: charge; undo on a lost race.
        for (i, m) in members.iter().enumerate() {
            let Some((w, f)) = subject(m) else { continue };
            let d = self.apply(&self.rules[m.rule], w, m.units, f, now, Op::Charge);
            if !d.is_allowed() {
                self.refund_all(&members[..i], who, org, (factor, pool_factor), now, now);
                return Err(self.deny_rate(members, &decisions, (factor, pool_factor), i, d, now));
            }
            decisions[i] = d;
        }
        // Concurrency: the plan's (all requests), then the endpoint's.
        let mut permits = [None, None];
        for (slot, limit) in combo.concurrency.into_iter().enumerate() {
            let Some((id, max)) = limit else { continue };
            match self.stores.sem.try_acquire(&(who, id), max, 1) {
                Ok(permit) => permits[slot] = Some(permit),
                Err(refused) => {
                    drop(permits);
                    self.refund_all(members, who, org, (factor, pool_factor), now, now);
                    let (current, max) = match refused {
                        ConcurrencyRefused::Full { in_use, max } => (in_use, max),
                        _ => (max, max),
                    };
                    // The binding window as it stands, this request refunded.
                    let window = self.standing_of(members, who, org, (factor, pool_factor), now);
                    return Err(self.deny_concurrency(current, max, window, now));
                }
            }
        }
        let headers = match self.info(members, &decisions, factor) {
            Some(info) => self.header_style.render(&info, self.now_unix(now)),
            // No limit of this request's to report (an "unlimited" class,
            // e.g. the scanner API's Enterprise scans): "every API response
            // includes headers", so report the plan's general limits as they
            // stand, which this request did not spend.
            None if endpoint.is_some() => {
                let general = self.standing(who, plan, None, org, now);
                self.render_standing(general, now)
            }
            None => Vec::new(),
        };
        let refund = (!self.refund_status.is_empty()).then(|| Refund {
            engine: self,
            members,
            who: OwnedWho::of(who),
            org: org.map(str::to_owned),
            factors: (factor, pool_factor),
            charged_at: now,
        });
        Ok(Admission {
            headers,
            refund,
            permits,
        })
    }

    /// The members and concurrency limits of `plan` on `endpoint`.
    fn combo(&self, plan: usize, endpoint: Option<usize>) -> &Combo {
        &self.combos[plan * (self.endpoints.len() + 1) + endpoint.map_or(0, |e| e + 1)]
    }

    /// Every member's read-only decision at `now` for its units (`charge`)
    /// or for none (its standing); members without a subject (see
    /// [`subject`]) read as untouched.
    fn probe_members(
        &self,
        members: &[Member],
        who: Who<'_>,
        org: Option<&str>,
        factors: (u32, u32),
        charge: bool,
        now: Nanos,
    ) -> [Decision; MAX_MEMBERS] {
        let mut out = [Decision::Allowed {
            remaining: u32::MAX,
            reset_after: Nanos::ZERO,
        }; MAX_MEMBERS];
        for (i, m) in members.iter().enumerate() {
            let Some((w, f)) = subject(m, who, org, factors) else {
                continue;
            };
            let units = if charge { m.units } else { 0 };
            out[i] = self.apply(&self.rules[m.rule], w, units, f, now, Op::Probe);
        }
        out
    }

    /// The binding window of `who` on `plan`/`endpoint` as it stands at
    /// `now` (read-only), at the boosts in force: for the headers of a
    /// refusal that binds no window (a full queue), and of a request with no
    /// limit of its own to report.
    fn standing(
        &self,
        who: Who<'_>,
        plan: usize,
        endpoint: Option<usize>,
        org: Option<&str>,
        now: Nanos,
    ) -> Option<RateLimitInfo> {
        let members = &self.combo(plan, endpoint).members[..];
        let factor = self.boost_of(who, now);
        let pool_factor = org.map_or(1, |o| self.pool_factor(o, factor, now));
        self.standing_of(members, who, org, (factor, pool_factor), now)
    }

    /// The binding window among `members` as it stands at `now`, at the
    /// boosts `factors` (a cost-0 probe of each: read-only).
    fn standing_of(
        &self,
        members: &[Member],
        who: Who<'_>,
        org: Option<&str>,
        factors: (u32, u32),
        now: Nanos,
    ) -> Option<RateLimitInfo> {
        let decisions = self.probe_members(members, who, org, factors, false, now);
        self.info(members, &decisions, factors.0)
    }

    /// The headers of a window as it stands, for a response that is not its
    /// refusal: no `Retry-After` (a window counted past its limit — a boost
    /// ended, a reload shrank it — reads as refusing even at cost 0).
    fn render_standing(
        &self,
        window: Option<RateLimitInfo>,
        now: Nanos,
    ) -> Vec<(&'static str, String)> {
        let mut headers = window
            .map(|info| self.header_style.render(&info, self.now_unix(now)))
            .unwrap_or_default();
        headers.retain(|(k, _)| *k != "Retry-After");
        headers
    }

    /// Gives back at `now` what `members` were charged at `charged_at`, as
    /// far as it still weighs (a window that rolled over since, or a bucket
    /// that refilled, gets nothing back).
    #[allow(clippy::too_many_arguments)]
    fn refund_all(
        &self,
        members: &[Member],
        who: Who<'_>,
        org: Option<&str>,
        (factor, pool_factor): (u32, u32),
        charged_at: Nanos,
        now: Nanos,
    ) {
        for m in members {
            // The boosts the units were charged at (see `decide`): a refund
            // at another factor would give back a different number of units.
            let Some((w, f)) = subject(m, who, org, (factor, pool_factor)) else {
                continue;
            };
            let _ = self.apply(
                &self.rules[m.rule],
                w,
                m.units,
                f,
                now,
                Op::Refund { charged_at },
            );
        }
    }

    /// Ends an admitted request with its response `status`: gives its units
    /// back if the policy says that status is free (S4E: 304), and releases
    /// its concurrency permits.
    ///
    /// The units go back as far as the charge still weighs at `now`
    /// ([`KeyedLimiter::refund_since`](crate::keyed::KeyedLimiter::refund_since)):
    /// a window member gets its units back while its window is the one the
    /// request was counted in, and nothing once that window is over (the
    /// next window's count is not the request's); a burst (GCRA) member gets
    /// back the charge less the time since the request was admitted, since
    /// the bucket has regenerated that much on its own. So a 304 answered at
    /// once costs nothing, and a slow one can never make a later window or a
    /// refilled bucket admit more than its limit.
    pub fn complete(&self, mut admission: Admission<'_>, status: u16, now: Nanos) {
        self.refund(&mut admission, status, now);
        drop(admission);
    }

    /// Gives an admitted request's units back, as [`complete`](Engine::complete)
    /// does for `status`, but keeps its concurrency permits: they are
    /// released when `admission` is dropped (or completed). For a response
    /// whose status is known before it is over (a refunded SSE stream: the
    /// request still runs). Returns whether the policy refunds `status` (and
    /// this admission had not been refunded yet): then its units went back
    /// as far as the charge still weighs, which may be nothing (see
    /// [`complete`](Engine::complete)); they go back once (a later `refund`
    /// or `complete` gives nothing more).
    ///
    /// When units went back, `admission.headers` is rendered again as the
    /// binding window stands after the refund, so the response can say what
    /// it cost (S4E: a `304` "without consuming a rate limit token" reports
    /// the token as still there).
    pub fn refund(&self, admission: &mut Admission<'_>, status: u16, now: Nanos) -> bool {
        let refunds = |r: &mut Refund<'_>| r.engine.refund_status.contains(&status);
        let Some(r) = admission.refund.take_if(refunds) else {
            return false;
        };
        let (e, who, org) = (r.engine, r.who.as_who(), r.org.as_deref());
        e.refund_all(r.members, who, org, r.factors, r.charged_at, now);
        // (No window of its own: the headers it has report limits it did not
        // spend, and stay.)
        let window = e.standing_of(r.members, who, org, r.factors, now);
        if window.is_some() {
            admission.headers = e.render_standing(window, now);
        }
        true
    }

    /// Whether a response with `status` gives its units back at
    /// [`complete`](Engine::complete) (the policy's `refund_status`).
    pub fn refunds(&self, status: u16) -> bool {
        self.refund_status.contains(&status)
    }

    /// Current usage of the plan limits for an identity: the API key (or
    /// organisation under `scope = "org"`) on `plan`. Under `scope = "org"`
    /// a key that belongs to no organisation has its own budget, which this
    /// cannot name: use [`usage_of`](Engine::usage_of) with the request's
    /// identity.
    pub fn usage(&self, id: &str, plan: &str, now: Nanos) -> Result<Vec<Usage>, RequestError> {
        let plan = *self
            .plan_index
            .get(plan)
            .ok_or_else(|| RequestError::UnknownPlan(plan.to_owned()))?;
        let who = match self.scope {
            ScopeSpec::Key => Who::Key(id),
            ScopeSpec::Org => Who::Org(id),
        };
        Ok(self.usage_at(who, plan, now))
    }

    /// Current usage of the plan limits of the identity `req` is counted
    /// under, resolved as [`check`](Engine::check) resolves it (API key,
    /// organisation under `scope = "org"`, a key without one on its own,
    /// an anonymous client by its address block). Only the identity and
    /// plan of `req` are read.
    ///
    /// ```
    /// use tollgate::Nanos;
    /// use tollgate::policy::{Engine, Request};
    ///
    /// let e = Engine::from_toml(r#"
    /// name = "x"
    /// scope = "org"
    /// [response]
    /// headers = "none"
    /// body = "blocksecops"
    /// [plans.developer]
    /// limits = [{ per = "minute", limit = 60 }]
    /// "#, Nanos::ZERO).unwrap();
    /// let solo = Request::new("GET", "/api/v1/contracts").key("solo").plan("developer");
    /// for _ in 0..3 {
    ///     assert!(e.check(&solo, Nanos::ZERO).unwrap().is_allowed());
    /// }
    /// assert_eq!(e.usage_of(&solo, Nanos::ZERO).unwrap()[0].used, 3);
    /// ```
    pub fn usage_of(&self, req: &Request<'_>, now: Nanos) -> Result<Vec<Usage>, RequestError> {
        let (who, plan, _) = self.resolve(req)?;
        Ok(self.usage_at(who, plan, now))
    }

    fn usage_at(&self, who: Who<'_>, plan: usize, now: Nanos) -> Vec<Usage> {
        let factor = self.boost_of(who, now);
        self.plans[plan]
            .usage
            .iter()
            .map(|&r| {
                let r = boosted(&self.rules[r], factor);
                let remaining = self.peek_remaining(&r, who, now);
                let gauge = gauge_of(&r);
                Usage {
                    class: r.class.clone(),
                    per: r.per,
                    used: gauge.saturating_sub(remaining),
                    limit: gauge,
                }
            })
            .collect()
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
        let b;
        let r = if factor > 1 {
            b = boosted(r, factor);
            &b
        } else {
            r
        };
        let key = (who, r.id);
        let s = &self.stores;
        match r.store {
            Store::Gcra => run(&s.gcra, &key, &r.quota, units, now, op),
            Store::Fixed(i) => match s.fixed[i].get() {
                Some(store) => run(store, &key, &r.limit, units, now, op),
                None => missing_store(),
            },
            Store::Sliding(i) => match s.sliding[i].get() {
                Some(store) => run(store, &key, &r.limit, units, now, op),
                None => missing_store(),
            },
        }
    }

    fn peek_remaining(&self, r: &Rule, who: Who<'_>, now: Nanos) -> u32 {
        let key = (who, r.id);
        let s = &self.stores;
        match r.store {
            Store::Gcra => s.gcra.peek(&key, &r.quota, now).remaining,
            Store::Fixed(i) => s.fixed[i]
                .get()
                .map_or(0, |st| st.peek(&key, &r.limit, now).remaining),
            Store::Sliding(i) => s.sliding[i]
                .get()
                .map_or(0, |st| st.peek(&key, &r.limit, now).remaining),
        }
    }

    fn now_unix(&self, now: Nanos) -> Nanos {
        self.stores.unix_at_zero + now
    }

    /// The header info of the window that binds: among the visible members
    /// (plan and endpoint windows, not bursts or the org pool), the one with
    /// the fewest *requests* left, `remaining / units` (ties: the longer
    /// window). Members are charged different units per request — a plan
    /// window `cost` units, an endpoint window one — so the least raw
    /// `remaining` can be a window that is not the first to run out (a 5x
    /// scan with 15 of 60 plan units and 11 of 20 endpoint calls left has 3
    /// scans left, not 11).
    ///
    /// That member's limit, remaining and reset are reported together (see
    /// `member_info`: in requests of this kind).
    fn info(
        &self,
        members: &[Member],
        decisions: &[Decision],
        factor: u32,
    ) -> Option<RateLimitInfo> {
        let (i, m) = members
            .iter()
            .enumerate()
            .filter(|(_, m)| self.rules[m.rule].visible)
            .min_by_key(|&(i, m)| {
                (
                    remaining(&decisions[i]) / m.units.max(1),
                    std::cmp::Reverse(self.rules[m.rule].per),
                )
            })?;
        let mut info = self.member_info(m, &decisions[i], factor);
        // `Warning` from the most-used window, not only the one that binds:
        // an hour 85 % used warned nothing while the minute had room.
        info.used_percent = members
            .iter()
            .enumerate()
            .filter(|(_, m)| self.rules[m.rule].visible)
            .map(|(j, m)| self.used_percent(m, &decisions[j], factor))
            .max();
        Some(info)
    }

    /// The share of member `m`'s capacity (boosted by `factor`) used after
    /// `d`, in percent rounded down: a window's of its limit, a GCRA's of its
    /// burst (its `remaining` counts the burst: a fresh `60/min, burst 10`
    /// read as 50 of 60 used and warned on its first request).
    fn used_percent(&self, m: &Member, d: &Decision, factor: u32) -> u32 {
        let r = &self.rules[m.rule];
        // As `boosted` saturates the limit at u32::MAX (found by review: a
        // huge boost warned "99 %" on a fresh key; `u32::MAX` overflowed).
        let cap = (u64::from(gauge_of(r)) * u64::from(factor.max(1))).min(u64::from(u32::MAX));
        if cap == 0 {
            return 0;
        }
        let used = cap - u64::from(remaining(d)).min(cap);
        u32::try_from(used * 100 / cap).unwrap_or(100)
    }

    /// The header info of one member (boosted by `factor`) after decision
    /// `d`, counted in requests of the kind being checked: `Limit` is the
    /// window's limit over the units one request takes, `Remaining` its
    /// units left over the same (rounded down: a request needs all of its
    /// units), `Reset` the window's own. The pages define Remaining as
    /// "requests left before throttling", so a client learns how many more
    /// of *this* call it can make; Limit in the same unit keeps
    /// Remaining ≤ Limit. (`Warning`'s share is set apart by `info`: the
    /// most-used window's, see `used_percent`.) For a member charged
    /// one unit (every call without a cost factor) these are the window's
    /// own numbers.
    fn member_info(&self, m: &Member, d: &Decision, factor: u32) -> RateLimitInfo {
        let r = &self.rules[m.rule];
        let units = m.units.max(1);
        let mut info = RateLimitInfo::new(
            d,
            r.limit.get().saturating_mul(factor.max(1)),
            r.per.nanos(),
        );
        info.limit /= units;
        info.remaining /= units;
        info
    }

    /// The 429 for member `i` refusing with `d`; `factors`: the boost of
    /// the identity's members and of the org pool's.
    fn deny_rate(
        &self,
        members: &[Member],
        decisions: &[Decision],
        (factor, pool_factor): (u32, u32),
        i: usize,
        d: Decision,
        now: Nanos,
    ) -> Denial {
        let r = &self.rules[members[i].rule];
        let f = if members[i].pool { pool_factor } else { factor };
        let limit = r.limit.get().saturating_mul(f.max(1));
        let window = r.per.nanos();
        let retry_after = match d {
            Decision::Denied { retry_after, .. } => retry_after,
            // A cost above the capacity (only possible when a boost ends or
            // a reload shrinks a plan): the whole window.
            _ => window,
        };
        // Limit/Reset of the binding window: the refusing member when it is
        // a visible window, else the visible member that binds.
        let mut info = if r.visible {
            self.member_info(&members[i], &d, f)
        } else {
            let mut decisions = decisions.to_vec();
            decisions[i] = d;
            self.info(members, &decisions, factor)
                .unwrap_or_else(|| RateLimitInfo::new(&d, limit, window))
        };
        info.remaining = 0;
        // A refusal reads as all used, as Remaining 0 says.
        info.used_percent = None;
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

    /// The 429 for a concurrency limit at `max` with `current` in use;
    /// `window`: the binding rate window as it stands (`None`: not known),
    /// whose headers go along — S4E: "Every API response includes rate
    /// limit headers" (found by review: the 6th SSE stream's 429 had only
    /// `Retry-After`).
    pub(crate) fn deny_concurrency(
        &self,
        current: u32,
        max: u32,
        window: Option<RateLimitInfo>,
        now: Nanos,
    ) -> Denial {
        let now_unix = self.now_unix(now);
        // "Every API response includes rate limit information" (BlockSecOps,
        // S4E): the binding window as it stands.
        let mut headers = self.render_standing(window, now);
        // BlockSecOps' CONCURRENT_LIMIT answer carries no wait ("wait for a
        // scan to complete"); the other styles announce the shortest one.
        if self.body_style != BodyStyle::Blocksecops {
            headers.extend(self.retry_after_only(Nanos::from_secs(1), now_unix));
        }
        Denial {
            status: 429,
            headers,
            body: body(
                self.body_style,
                &Refusal::Concurrency { current, max },
                now_unix,
            ),
            retry_after: None,
        }
    }

    /// Just the style's `Retry-After` for a wait of `wait` (refusals that
    /// bind no window: concurrency, a full queue).
    fn retry_after_only(&self, wait: Nanos, now_unix: Nanos) -> Vec<(&'static str, String)> {
        let info = RateLimitInfo {
            limit: 0,
            remaining: 0,
            reset_after: wait,
            retry_after: Some(wait),
            refused: true,
            window: wait,
            used_percent: None,
        };
        self.header_style
            .render(&info, now_unix)
            .into_iter()
            .filter(|(k, _)| *k == "Retry-After")
            .collect()
    }
}

// ---- queueing ---------------------------------------------------------------

impl Engine {
    /// The line of `who` for requests matching `endpoint` in `queue`: one
    /// per endpoint rule, or one for all (`line = "identity"`).
    fn queue_key(&self, who: Who<'_>, endpoint: Option<usize>, queue: QueuePlan) -> QueueKey {
        let route = match queue.line {
            QueueLine::Route => endpoint.map(|e| self.endpoints[e].concurrency_id),
            QueueLine::Identity => None,
        };
        (OwnedWho::of(who), route)
    }

    /// Tickets waiting in the line of `who` (and `endpoint`), after taking
    /// out expired ones at its front (`purge_expired`).
    fn queue_len(
        &self,
        who: Who<'_>,
        endpoint: Option<usize>,
        queue: QueuePlan,
        now: Nanos,
    ) -> usize {
        let mut q = self.stores.queues.lock().unwrap_or_else(|e| e.into_inner());
        let key = self.queue_key(who, endpoint, queue);
        let Some(line) = q.get_mut(&key) else {
            return 0;
        };
        purge_expired(line, &self.stores.queued, now);
        let n = line.len();
        if n == 0 {
            q.remove(&key);
        }
        n
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue<'e>(
        &'e self,
        who: Who<'_>,
        plan: usize,
        endpoint: Option<usize>,
        org: Option<&str>,
        queue: QueuePlan,
        now: Nanos,
        refusal: Option<Denial>,
    ) -> Outcome<'e> {
        let s = &self.stores;
        let key = self.queue_key(who, endpoint, queue);
        let max_wait = queue.max_wait;
        let mut queues = s.queues.lock().unwrap_or_else(|e| e.into_inner());
        let q = queues.entry(key.clone()).or_default();
        if q.len() >= queue.depth as usize {
            drop(queues);
            // Full: refused, with the refusal that sent it here, or (when it
            // only lined up behind others) a refusal for the longest wait.
            // Nothing is charged either way.
            let d = refusal.unwrap_or_else(|| {
                let window = self.standing(who, plan, endpoint, org, now);
                self.deny_queue_full(max_wait, window, now)
            });
            return Outcome::Denied(d);
        }
        // Relaxed: ticket ids only need to be unique.
        let id = s.next_ticket.fetch_add(1, Ordering::Relaxed);
        purge_expired(q, &s.queued, now);
        q.push_back((id, None, now.saturating_add(max_wait)));
        let first = q.len() == 1;
        s.queued.fetch_add(1, Ordering::Relaxed);
        drop(queues);
        Outcome::Queued(Ticket {
            engine: self,
            id,
            queue: key,
            queue_plan: queue,
            org: org.map(str::to_owned),
            plan,
            endpoint,
            enqueued_at: now,
            deadline: now.saturating_add(max_wait),
            retry_at: refusal
                .and_then(|d| d.retry_after)
                .map(|r| now.saturating_add(r)),
            first,
            queued: true,
        })
    }

    /// A 429 for a full queue (or a ticket whose deadline passed before it
    /// reached the head of the line): the queue's longest wait, and the
    /// binding window's headers as it stands ("every API response includes
    /// rate limit headers").
    fn deny_queue_full(
        &self,
        max_wait: Nanos,
        window: Option<RateLimitInfo>,
        now: Nanos,
    ) -> Denial {
        let info = RateLimitInfo {
            limit: 0,
            remaining: 0,
            reset_after: max_wait,
            retry_after: Some(max_wait),
            refused: true,
            window: max_wait,
            used_percent: None,
        };
        let now_unix = self.now_unix(now);
        let mut headers = self.render_standing(window, now);
        headers.extend(self.retry_after_only(max_wait, now_unix));
        Denial {
            status: 429,
            headers,
            body: body(self.body_style, &Refusal::Rate(info), now_unix),
            retry_after: Some(max_wait),
        }
    }
}

/// Whose budget member `m` spends, at what boost: the caller's, or its
/// organisation's for the org pool; `None` for the org pool of a request
/// without an organisation (skipped).
fn subject<'w>(
    m: &Member,
    who: Who<'w>,
    org: Option<&'w str>,
    (factor, pool_factor): (u32, u32),
) -> Option<(Who<'w>, u32)> {
    match (m.pool, org) {
        (false, _) => Some((who, factor)),
        (true, Some(o)) => Some((Who::Org(o), pool_factor)),
        (true, None) => None,
    }
}

/// A request waiting in its identity's FIFO queue. Poll it with the current
/// time ([`Ticket::poll`]) or block on a clock ([`Ticket::wait`]); dropping
/// it leaves the queue (cancel-safe: it was charged nothing).
///
/// ```
/// use tollgate::policy::{Engine, Outcome, Polled, Request};
/// use tollgate::Nanos;
/// let e = Engine::from_toml(r#"
/// name = "q"
/// [response]
/// headers = "none"
/// body = "slim-io"
/// [plans.free]
/// concurrency = 1
/// queue = { depth = 5, max_wait_secs = 10 }
/// "#, Nanos::ZERO).unwrap();
/// let r = Request::new("GET", "/x").key("t").plan("free");
/// let Outcome::Allowed(first) = e.check(&r, Nanos::ZERO).unwrap() else { panic!() };
/// let Outcome::Queued(ticket) = e.check(&r, Nanos::ZERO).unwrap() else { panic!() };
/// let Polled::Pending(ticket) = ticket.poll(Nanos::from_secs(1)) else { panic!() }; // still in use
/// drop(first); // the first request ends
/// let Polled::Ready(served) = ticket.poll(Nanos::from_secs(2)) else { panic!() };
/// assert!(served.is_allowed());
/// ```
pub struct Ticket<'e> {
    engine: &'e Engine,
    id: u64,
    /// Its queue.
    queue: QueueKey,
    queue_plan: QueuePlan,
    org: Option<String>,
    plan: usize,
    endpoint: Option<usize>,
    enqueued_at: Nanos,
    deadline: Nanos,
    retry_at: Option<Nanos>,
    /// First in line at the last poll.
    first: bool,
    queued: bool,
}

impl fmt::Debug for Ticket<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("enqueued_at", &self.enqueued_at)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<'e> Ticket<'e> {
    /// When the request joined the queue.
    pub fn enqueued_at(&self) -> Nanos {
        self.enqueued_at
    }

    /// When it gives up and is refused: polled after it, it is refused
    /// without being tried, unless its turn came by then (first in line,
    /// held only by a rate limit that clears by the deadline: a late poll
    /// still tries it).
    pub fn deadline(&self) -> Nanos {
        self.deadline
    }

    /// The earliest time polling can help, when a rate limit (not a
    /// concurrency slot) holds it; `None`: when a request ends.
    pub fn retry_at(&self) -> Option<Nanos> {
        self.retry_at
    }

    /// Tries to be served at `now`: [`Polled::Ready`] with `Allowed` (first
    /// in line and admitted) or `Denied` (its [deadline](Self::deadline)
    /// passed, or it can no longer pass); [`Polled::Pending`] gives the
    /// ticket back to poll again later.
    pub fn poll(self, now: Nanos) -> Polled<'e> {
        self.poll_inner(now, None)
    }

    /// [`poll`](Self::poll), and while the ticket is not first in line,
    /// `waker` is woken when it becomes first (the one before it was
    /// served, refused or went away): until then polling cannot serve it,
    /// so a caller may sleep until that wake or the
    /// [`deadline`](Self::deadline), whichever comes first, instead of
    /// polling. A ticket that is first is not woken: poll it at
    /// [`retry_at`](Self::retry_at), or every millisecond or so while it
    /// waits for a concurrency slot. See [`is_first`](Self::is_first).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::task::{Wake, Waker};
    /// use tollgate::policy::{Engine, Outcome, Polled, Request};
    /// use tollgate::Nanos;
    ///
    /// struct Count(AtomicUsize);
    /// impl Wake for Count {
    ///     fn wake(self: Arc<Self>) { self.0.fetch_add(1, Ordering::Relaxed); }
    /// }
    /// let e = Engine::from_toml(r#"
    /// name = "q"
    /// [response]
    /// headers = "none"
    /// body = "slim-io"
    /// [plans.free]
    /// concurrency = 1
    /// queue = { depth = 5, max_wait_secs = 10 }
    /// "#, Nanos::ZERO).unwrap();
    /// let r = Request::new("GET", "/x").key("t").plan("free");
    /// let Outcome::Allowed(running) = e.check(&r, Nanos::ZERO).unwrap() else { panic!() };
    /// let Outcome::Queued(first) = e.check(&r, Nanos::ZERO).unwrap() else { panic!() };
    /// let Outcome::Queued(second) = e.check(&r, Nanos::ZERO).unwrap() else { panic!() };
    /// let woken = Arc::new(Count(AtomicUsize::new(0)));
    /// let waker = Waker::from(woken.clone());
    /// let Polled::Pending(second) = second.poll_waking(Nanos::ZERO, &waker) else { panic!() };
    /// assert!(!second.is_first());
    /// drop(first); // its client went away: `second` is first now
    /// assert_eq!(woken.0.load(Ordering::Relaxed), 1);
    /// drop(running);
    /// let Polled::Ready(served) = second.poll(Nanos::ZERO) else { panic!() };
    /// assert!(served.is_allowed());
    /// ```
    pub fn poll_waking(self, now: Nanos, waker: &Waker) -> Polled<'e> {
        self.poll_inner(now, Some(waker))
    }

    /// Whether the ticket was first in line when it was queued or last
    /// polled.
    pub fn is_first(&self) -> bool {
        self.first
    }

    fn poll_inner(mut self, now: Nanos, waker: Option<&Waker>) -> Polled<'e> {
        let e = self.engine;
        let head = {
            let mut q = e.stores.queues.lock().unwrap_or_else(|p| p.into_inner());
            let mut line = q.get_mut(&self.queue);
            if let Some(l) = line.as_deref_mut() {
                purge_expired(l, &e.stores.queued, now);
            }
            let head = line.as_ref().and_then(|q| q.front()).map(|t| t.0) == Some(self.id);
            // Registered under the lock `leave` wakes under: no wake is
            // lost between this check and the registration.
            if let (false, Some(w), Some(line)) = (head, waker, line) {
                if let Some(t) = line.iter_mut().find(|t| t.0 == self.id) {
                    t.1 = Some(w.clone());
                }
            }
            head
        };
        // Its turn came in time if, first in line at the last poll, it waited
        // only for a rate limit that clears by its deadline (`retry_at` is
        // never past it): polled late (a timer fires after the deadline it
        // was set for), it is still tried. Any other ticket past its deadline
        // is refused untried: it was not first by then, or waited for a slot
        // that may have freed only after (the slot goes to the next in line).
        let turn_came = self.first && self.retry_at.is_some();
        self.first = head;
        if head && (now <= self.deadline || turn_came) {
            let who = self.queue.0.as_who();
            match e.decide(who, self.plan, self.endpoint, self.org.as_deref(), now) {
                Ok(a) => {
                    self.leave();
                    return Polled::Ready(Outcome::Allowed(a));
                }
                Err(d) => {
                    let wait = self.deadline.saturating_sub(now);
                    if now >= self.deadline || !self.queue_plan.takes(&d, wait) {
                        self.leave();
                        return Polled::Ready(Outcome::Denied(d));
                    }
                    self.retry_at = d.retry_after.map(|r| now.saturating_add(r));
                }
            }
        } else if now >= self.deadline {
            // Its deadline passed before its turn came.
            self.leave();
            let max_wait = self.deadline.saturating_sub(self.enqueued_at);
            let who = self.queue.0.as_who();
            let window = e.standing(who, self.plan, self.endpoint, self.org.as_deref(), now);
            return Polled::Ready(Outcome::Denied(e.deny_queue_full(max_wait, window, now)));
        }
        Polled::Pending(self)
    }

    /// Blocks the thread until served or refused: while not first in line
    /// it sleeps until it becomes first or its deadline; first, it polls at
    /// the hinted time (every millisecond while a concurrency slot is
    /// awaited).
    pub fn wait(mut self, clock: &impl Clock) -> Outcome<'e> {
        // Registered by the first poll; it stays until the ticket is first.
        let mut waker = Some(Waker::from(Arc::new(Unpark(std::thread::current()))));
        loop {
            let now = clock.now();
            let polled = match waker.take() {
                Some(w) => self.poll_waking(now, &w),
                None => self.poll(now),
            };
            match polled {
                Polled::Ready(o) => return o,
                Polled::Pending(t) => self = t,
            }
            let until = self.nap_until(now);
            // A wake (an unpark) before this park makes it return at once.
            std::thread::park_timeout(
                until
                    .saturating_sub(now)
                    .as_duration()
                    .max(std::time::Duration::from_micros(50)),
            );
        }
    }

    /// Until when a ticket that was just polled at `now` can sleep: its
    /// deadline when it is not first (it is woken when it becomes first),
    /// else its `retry_at`, or 1 ms on while it waits for a concurrency
    /// slot (a released slot wakes no one). Never past the deadline.
    pub fn nap_until(&self, now: Nanos) -> Nanos {
        let until = match (self.first, self.retry_at) {
            (false, _) => self.deadline,
            (true, Some(at)) => at,
            (true, None) => now.saturating_add(Nanos::from_millis(1)),
        };
        until.min(self.deadline)
    }

    fn leave(&mut self) {
        if !std::mem::take(&mut self.queued) {
            return;
        }
        let s = &self.engine.stores;
        let mut queues = s.queues.lock().unwrap_or_else(|p| p.into_inner());
        let mut wake = None;
        if let Some(q) = queues.get_mut(&self.queue) {
            if let Some(i) = q.iter().position(|t| t.0 == self.id) {
                q.remove(i);
                s.queued.fetch_sub(1, Ordering::Relaxed);
                if i == 0 {
                    // The next one is first now: wake it.
                    wake = q.front_mut().and_then(|t| t.1.take());
                }
            }
            if q.is_empty() {
                queues.remove(&self.queue);
            }
        }
        drop(queues);
        if let Some(w) = wake {
            w.wake();
        }
    }
}

/// Takes out of `line` the tickets at its front whose deadline passed more
/// than a grace (1 s) ago: their holders stopped polling (polled now, they
/// would be refused at once), and left in place they would hold up the
/// whole line until dropped (found by review: an unpolled first ticket kept
/// its identity's requests queued and refused with a slot free). Wakes the
/// new first. A purged ticket polled later is not in line, so it is refused
/// at its deadline; dropped, it finds nothing to take out.
fn purge_expired(line: &mut Line, queued: &AtomicUsize, now: Nanos) {
    const GRACE: Nanos = Nanos::from_secs(1);
    let mut purged = false;
    while line
        .front()
        .is_some_and(|t| t.2.saturating_add(GRACE) < now)
    {
        line.pop_front();
        // Relaxed: a hint (see `Stores::queued`).
        queued.fetch_sub(1, Ordering::Relaxed);
        purged = true;
    }
    if purged {
        if let Some(w) = line.front_mut().and_then(|t| t.1.take()) {
            w.wake();
        }
    }
}

/// Wakes a thread blocked in [`Ticket::wait`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// What [`Ticket::poll`] found.
#[derive(Debug)]
#[must_use]
pub enum Polled<'e> {
    /// Served (`Allowed`) or refused (`Denied`).
    Ready(Outcome<'e>),
    /// Still waiting: the ticket, to poll again.
    Pending(Ticket<'e>),
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

// ---- store operations -------------------------------------------------------

/// `r` with its limit and burst multiplied by a boost `factor`.
fn boosted(r: &Rule, factor: u32) -> Rule {
    let mut r = r.clone();
    if factor > 1 {
        let f = NonZeroU32::new(factor).unwrap_or(NonZeroU32::MIN);
        r.limit = r.limit.saturating_mul(f);
        r.burst = r.burst.map(|b| b.saturating_mul(f));
        r.quota = quota_of(r.per, r.limit, r.burst);
    }
    r
}

/// A window store the policy needs was not created (cannot happen: the
/// compile step creates every store its rules name); refuse rather than
/// admit uncounted.
fn missing_store() -> Decision {
    Decision::Denied {
        retry_after: Nanos::from_secs(1),
        remaining: 0,
        reset_after: Nanos::from_secs(1),
    }
}

/// Runs `op` for `units` of `key` in one keyed store. A refund answers with
/// the state after it.
fn run<A: KeyedAlgorithm, S: BuildHasher>(
    store: &KeyedLimiter<A, S>,
    key: &(Who<'_>, u64),
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
        Op::Refund { charged_at } => {
            let s = store.refund_since(key, quota, charged_at, now, units);
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
    /// Give back units charged at `charged_at` (as far as they still
    /// weigh: [`KeyedLimiter::refund_since`]).
    Refund {
        charged_at: Nanos,
    },
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

/// Parses a policy file, mapping TOML errors to a [`PolicyError`].
///
/// The field is the dotted key path of the value the error is about, as the
/// TOML reader reports it (tables and keys, without array indexes: the line
/// and column tell which element), e.g. `endpoints.concurrency`; when it
/// reports none (syntax errors), the text the error points at, if short.
fn parse(src: &str) -> Result<PolicyFile, PolicyError> {
    toml::from_str(src).map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(src, s.start));
        let field = toml_key_path(&e).unwrap_or_else(|| {
            e.span()
                .and_then(|s| src.get(s))
                .filter(|t| t.len() <= 60 && !t.contains('\n'))
                .unwrap_or("")
                .to_owned()
        });
        PolicyError {
            line,
            column,
            field,
            message: e.message().trim().to_owned(),
        }
    })
}

/// The dotted key path a TOML deserialization error is about. `toml` keeps
/// it private and prints it (as "in `a.b.c`") only when the error has no
/// source text to quote, so it is read from that rendering.
fn toml_key_path(e: &toml::de::Error) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let path = shown
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))?;
    (!path.is_empty()).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_ids_are_fnv1a_whatever_the_build() {
        // The published FNV-1a 64 test vectors: a different algorithm (or
        // std's DefaultHasher) would move every Redis key of a fleet.
        assert_eq!(stable_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_id("foobar"), 0x8594_4171_f739_67e8);
    }

    /// How many of 200 requests `r` at one instant are admitted: its burst.
    fn admitted_at_once(e: &Engine, r: &Request<'_>) -> usize {
        (0..200)
            .filter(|_| e.check(r, Nanos::ZERO).unwrap().is_allowed())
            .count()
    }

    #[test]
    fn a_key_and_an_organisation_of_one_name_share_no_boost() {
        let e = Engine::from_toml(
            r#"
name = "x"
org_pool = [{ per = "minute", limit = 60, algorithm = "gcra", burst = 2 }]
[anonymous]
plan = "anonymous"
[response]
headers = "none"
body = "s4e"
[plans.pro]
limits = [{ per = "minute", limit = 600, algorithm = "gcra", burst = 20 }]
[plans.anonymous]
limits = [{ per = "minute", limit = 60, algorithm = "gcra", burst = 3 }]
"#,
            Nanos::ZERO,
        )
        .unwrap();
        let burst = |r: &Request<'_>| admitted_at_once(&e, r);
        let until = Nanos::from_secs(3_600);
        // The API key "acme" is boosted 5x: its own burst is 100...
        e.boost("acme", 5, until);
        assert_eq!(
            burst(&Request::new("GET", "/").key("acme").plan("pro")),
            100
        );
        // ...and the pool of the organisation "acme" is not lifted for its
        // other keys: its burst of 2 binds.
        let member = Request::new("GET", "/").key("k").org("acme").plan("pro");
        assert_eq!(burst(&member), 2);
        // The organisation "beta" is boosted 5x: its pool's burst is 10 for
        // its keys, and a key named "beta" keeps its own burst of 20.
        e.boost_org("beta", 5, until);
        let member = Request::new("GET", "/").key("b1").org("beta").plan("pro");
        assert_eq!(burst(&member), 10);
        assert_eq!(burst(&Request::new("GET", "/").key("beta").plan("pro")), 20);
        // A boost of a name is no boost of the client address it spells.
        e.boost("192.0.2.1", 5, until);
        e.boost_org("192.0.2.1", 5, until);
        let ip = "192.0.2.1".parse().unwrap();
        assert_eq!(burst(&Request::new("GET", "/").ip(ip)), 3);
    }

    #[test]
    fn under_org_scope_an_organisation_is_boosted_as_one() {
        let e = Engine::from_toml(
            r#"
name = "x"
scope = "org"
[response]
headers = "none"
body = "s4e"
[plans.pro]
limits = [{ per = "minute", limit = 600, algorithm = "gcra", burst = 20 }]
"#,
            Nanos::ZERO,
        )
        .unwrap();
        let burst = |r: &Request<'_>| admitted_at_once(&e, r);
        let until = Nanos::from_secs(3_600);
        let member = |o| Request::new("GET", "/").key("k").org(o).plan("pro");
        let key = |k| Request::new("GET", "/").key(k).plan("pro");
        // The organisation's budget is boosted by `boost_org`...
        e.boost_org("beta", 5, until);
        assert_eq!(burst(&member("beta")), 100);
        // ...not by a boost of a key of its name, which boosts that key
        // (keyed as a key: it has no organisation), and only it.
        e.boost("acme", 5, until);
        assert_eq!(burst(&member("acme")), 20);
        assert_eq!(burst(&key("acme")), 100);
        assert_eq!(burst(&key("beta")), 20);
    }

    #[test]
    fn endpoint_locations_ignore_parameter_names_and_method_case() {
        let at = |m: &str, p: &str| endpoint_location(m, &parse_pattern(p).unwrap());
        assert_eq!(
            at("post", "/scans/{id}/results"),
            at("POST", "/scans/{scan_id}/results")
        );
        assert_eq!(at("GET", "/a/{x}/*"), "endpoint GET /a/{}/*");
        assert_eq!(at("GET", "/"), "endpoint GET /");
        assert_ne!(at("GET", "/scans/{id}"), at("GET", "/scans/id"));
    }

    /// One slot, a line of 5 that waits up to 10 s for it.
    const ONE_SLOT: &str = r#"
        name = "q"
        [response]
        headers = "none"
        body = "slim-io"
        [plans.free]
        concurrency = 1
        queue = { depth = 5, max_wait_secs = 10 }
    "#;

    #[track_caller]
    fn queued(o: Outcome<'_>) -> Ticket<'_> {
        match o {
            Outcome::Queued(t) => t,
            other => panic!("expected Queued, got {other:?}"),
        }
    }

    #[track_caller]
    fn pending(t: Ticket<'_>, now: Nanos) -> Ticket<'_> {
        match t.poll(now) {
            Polled::Pending(t) => t,
            Polled::Ready(o) => panic!("expected to still wait, got {o:?}"),
        }
    }

    #[track_caller]
    fn ready(t: Ticket<'_>, now: Nanos) -> Outcome<'_> {
        match t.poll(now) {
            Polled::Ready(o) => o,
            Polled::Pending(t) => panic!("expected an answer, still waiting: {t:?}"),
        }
    }

    #[track_caller]
    fn refused(o: Outcome<'_>) -> Denial {
        match o {
            Outcome::Denied(d) => d,
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    /// "The longest a request waits before it is refused after all": a
    /// ticket first in line whose slot frees only after its deadline is
    /// refused when polled then, not served (it took the slot from the
    /// next in line, which had not waited that long).
    #[test]
    fn a_first_ticket_polled_past_its_deadline_is_refused() {
        let e = Engine::from_toml(ONE_SLOT, Nanos::ZERO).unwrap();
        let r = Request::new("GET", "/x").key("t").plan("free");
        let Outcome::Allowed(running) = e.check(&r, Nanos::ZERO).unwrap() else {
            panic!("the first request takes the slot");
        };
        let t = queued(e.check(&r, Nanos::ZERO).unwrap());
        assert_eq!(t.deadline(), Nanos::from_secs(10));
        let t = pending(t, Nanos::from_secs(9)); // still in use
        drop(running);
        let d = refused(ready(t, Nanos::from_secs(10).saturating_add(Nanos::new(1))));
        assert_eq!(d.status, 429);
        assert_eq!(d.retry_after, Some(Nanos::from_secs(10)));
        // Nothing was charged: the slot is free for the next request.
        assert!(e.check(&r, Nanos::from_secs(11)).unwrap().is_allowed());
    }

    /// A ticket that becomes first only after its deadline (the one before
    /// it went away late) is refused, not served.
    #[test]
    fn a_ticket_first_only_past_its_deadline_is_refused() {
        let e = Engine::from_toml(ONE_SLOT, Nanos::ZERO).unwrap();
        let r = Request::new("GET", "/x").key("t").plan("free");
        let Outcome::Allowed(running) = e.check(&r, Nanos::ZERO).unwrap() else {
            panic!("the first request takes the slot");
        };
        let ahead = queued(e.check(&r, Nanos::ZERO).unwrap());
        let t = queued(e.check(&r, Nanos::from_secs(1)).unwrap());
        let t = pending(t, Nanos::from_secs(2));
        assert!(!t.is_first());
        drop(running);
        drop(ahead); // at 12 s, say: `t` waited past its 11 s deadline
        let d = refused(ready(t, Nanos::from_secs(12)));
        assert_eq!(d.retry_after, Some(Nanos::from_secs(10)));
    }

    /// Up to the deadline included, a first ticket is served once it passes
    /// ("wait up to max_wait").
    #[test]
    fn a_first_ticket_is_served_at_its_deadline() {
        let e = Engine::from_toml(ONE_SLOT, Nanos::ZERO).unwrap();
        let r = Request::new("GET", "/x").key("t").plan("free");
        let Outcome::Allowed(running) = e.check(&r, Nanos::ZERO).unwrap() else {
            panic!("the first request takes the slot");
        };
        let t = queued(e.check(&r, Nanos::ZERO).unwrap());
        let t = pending(t, Nanos::from_millis(9_999));
        drop(running);
        assert!(ready(t, Nanos::from_secs(10)).is_allowed());
    }

    /// A ticket first in line held by a rate limit that clears at its
    /// deadline exactly had its turn in time: polled a little late (a
    /// timer never fires at the nanosecond), it is still served, not
    /// refused after waiting the whole `max_wait` for that turn.
    #[test]
    fn a_rate_held_first_ticket_whose_turn_came_by_its_deadline_is_served_late() {
        let e = Engine::from_toml(
            r#"
            name = "q"
            [response]
            headers = "none"
            body = "slim-io"
            [plans.free]
            limits = [{ per = "minute", limit = 1 }]
            queue = { on = "rate", depth = 5, max_wait_secs = 60 }
            "#,
            Nanos::ZERO,
        )
        .unwrap();
        let r = Request::new("GET", "/x").key("t").plan("free");
        assert!(e.check(&r, Nanos::ZERO).unwrap().is_allowed());
        // The next minute opens at 60 s: the refusal clears within the 60 s
        // wait, at the deadline itself.
        let t = queued(e.check(&r, Nanos::ZERO).unwrap());
        assert_eq!(t.retry_at(), Some(t.deadline()));
        assert!(t.is_first());
        assert!(ready(t, Nanos::from_millis(60_001)).is_allowed());
    }
}
