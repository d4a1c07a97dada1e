//! The policy file format (TOML) and its validation.
//!
//! See `policies/README.md` for the format with the five seed policies as
//! examples; every field is documented on the types below.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use crate::body::BodyStyle;
use tollgate_core::Nanos;

/// Why a policy could not be loaded: where (line and column, 1-based), which
/// field, and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// Line of the offending value (1-based), when known.
    pub line: usize,
    /// Column of the offending value (1-based), when known.
    pub column: usize,
    /// The field (dotted path where it helps).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: `{}`: {}",
            self.line, self.column, self.field, self.message
        )
    }
}

impl std::error::Error for PolicyError {}

/// 1-based (line, column) of byte `offset` in `src`.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// A whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The policy's name (IETF `RateLimit-Policy` name, demo output).
    pub name: String,
    /// Whose budget a request spends: `"key"` (per API key, the default) or
    /// `"org"` (all keys of an organisation or tenant share one budget).
    #[serde(default)]
    pub scope: ScopeSpec,
    /// Requests without an API key: their plan, keyed by client address.
    /// Without this section such requests are refused as unauthenticated.
    pub anonymous: Option<AnonymousSpec>,
    /// Keys tracked at once per store (default
    /// [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY), at most
    /// [`MAX_CAPACITY`](super::MAX_CAPACITY)).
    pub capacity: Option<Spanned<usize>>,
    /// Headers and 429 body.
    pub response: ResponseSpec,
    /// Plans (tiers) by name.
    pub plans: BTreeMap<String, Spanned<PlanSpec>>,
    /// Endpoint rules: extra limits, cost factors, quota class, concurrency.
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// Routes that are never counted (health checks, webhooks).
    #[serde(default)]
    pub exempt: Vec<RouteSpec>,
    /// One budget per organisation shared by all its keys, checked together
    /// with the per-key limits (CyberVault's global burst pool).
    pub org_pool: Option<Vec<LimitSpec>>,
    /// Response statuses that give the request's tokens back (S4E: 304).
    #[serde(default)]
    pub refund_status: Vec<u16>,
}

/// See [`PolicyFile::scope`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeSpec {
    /// Per API key.
    #[default]
    Key,
    /// Per organisation (falls back to the key when a request has no org).
    Org,
}

/// See [`PolicyFile::anonymous`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousSpec {
    /// The plan anonymous callers get (must be one of `plans`).
    pub plan: Spanned<String>,
    /// How many leading bits of an IPv6 client address key its budget
    /// (default 64: one budget per /64, the smallest block a site is
    /// assigned, so a client cannot mint fresh budgets from the 2^64
    /// addresses of its own subnet). 1 to 128; 128 keys every address.
    /// IPv4 addresses (and IPv4-mapped or `64:ff9b::/96` NAT64 IPv6 ones)
    /// are keyed per address.
    pub ipv6_prefix: Option<Spanned<u8>>,
}

/// See [`PolicyFile::response`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    /// `"x-ratelimit"` (Limit/Remaining/Reset + Retry-After) or `"none"`.
    pub headers: HeadersSpec,
    /// `X-RateLimit-Window` value (CyberVault: `sliding_60s`). Only with
    /// `headers = "x-ratelimit"`.
    pub window_name: Option<Spanned<String>>,
    /// Send `Warning` once this percentage of the quota is used. Only with
    /// `headers = "x-ratelimit"`.
    pub warning_at: Option<Spanned<u8>>,
    /// Add the IETF `RateLimit-Policy` / `RateLimit` fields (default
    /// `false`). Only with `headers = "x-ratelimit"`.
    pub ietf: Option<Spanned<bool>>,
    /// Whose 429 body to send.
    pub body: BodyStyle,
}

/// See [`ResponseSpec::headers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadersSpec {
    /// `X-RateLimit-*` and `Retry-After`.
    XRatelimit,
    /// No rate-limit headers at all (Slim.io), not even `Retry-After`.
    None,
}

/// A plan (tier).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Limits that all hold at once, per quota class.
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    /// Requests in flight at once per identity, over all endpoints (Slim.io:
    /// "burst refers to the maximum number of concurrent requests").
    pub concurrency: Option<Spanned<u32>>,
    /// Wait in line instead of being refused (Slim.io: past the concurrent
    /// burst; CyberVault: the async queue depth). One line per identity and
    /// endpoint rule, or per identity (see [`QueueSpec::line`]).
    pub queue: Option<Spanned<QueueSpec>>,
}

/// A bounded FIFO per identity and endpoint rule (or per identity, see
/// `line`): a request refused by a rate limit it could pass within
/// `max_wait_secs`, or by a concurrency limit (see `on`), waits its turn.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// Which refusals wait: `"concurrency"`, `"rate"` or `"any"` (default).
    #[serde(default)]
    pub on: QueueOn,
    /// Which requests may wait: `"all"` (default) or `"marked"` (only those
    /// of endpoint rules with `queued = true`, e.g. async endpoints).
    #[serde(default)]
    pub routes: QueueRoutes,
    /// Requests waiting at once per line (at least 1). With `line =
    /// "route"` (the default) each endpoint rule the queue takes has its own
    /// line of this depth for each identity, and the requests no endpoint
    /// rule matches share one more: one identity can have up to `depth`
    /// waiting on every queued route at once (CyberVault developer: 50 scans
    /// and 50 reports), and a full line on one route does not hold up
    /// another. With `line = "identity"` an identity has one line for all
    /// its routes, at most `depth` waiting in all (Slim.io: "queued ... up to
    /// the per-minute limit", per tenant).
    pub depth: u32,
    /// One FIFO line per identity and endpoint rule (`"route"`, default) or
    /// per identity (`"identity"`); see `depth`.
    #[serde(default)]
    pub line: QueueLine,
    /// The longest a request waits before it is refused after all (seconds,
    /// at least 1).
    pub max_wait_secs: u64,
}

/// See [`QueueSpec::line`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueLine {
    /// A line per identity and endpoint rule.
    #[default]
    Route,
    /// One line per identity, all routes in it.
    Identity,
}

/// See [`QueueSpec::routes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueRoutes {
    /// Every request of the plan.
    #[default]
    All,
    /// Only requests of endpoint rules marked `queued = true`.
    Marked,
}

/// See [`QueueSpec::on`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueOn {
    /// Only concurrency refusals (Slim.io: past the concurrent burst).
    Concurrency,
    /// Only rate refusals that clear within the wait (CyberVault).
    Rate,
    /// Both.
    #[default]
    Any,
}

/// One limit: `limit` per `per`, counted with `algorithm`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Quota class (`"api"` by default; e.g. `"scan"` counted apart).
    #[serde(default = "default_class")]
    pub class: String,
    /// `second`, `minute`, `hour` or `day`.
    pub per: Per,
    /// A positive count, or `"unlimited"`.
    pub limit: Spanned<LimitValue>,
    /// `fixed` (calendar-aligned window, the default), `sliding` (weighted
    /// sliding window) or `gcra` (smooth, burst = limit unless `burst`).
    pub algorithm: Option<Algorithm>,
    /// Burst: at most this many at once, refilled at `limit` per `per` — a
    /// GCRA checked together with the window.
    pub burst: Option<Spanned<u32>>,
}

fn default_class() -> String {
    "api".to_owned()
}

/// See [`LimitSpec::per`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Per {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (calendar day, UTC, for fixed windows).
    Day,
}

impl Per {
    /// The window length.
    pub fn nanos(self) -> Nanos {
        Nanos::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3_600,
            Per::Day => 86_400,
        })
    }

    /// `minute`, `hour`...
    pub fn name(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }
}

/// See [`LimitSpec::limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitValue {
    /// At most this many per window (0 is refused at load).
    Count(u32),
    /// No limit.
    Unlimited,
}

impl<'de> Deserialize<'de> for LimitValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a positive integer or \"unlimited\""))?
        {
            Raw::N(n) => u32::try_from(n).map(LimitValue::Count).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{n} is not a limit: use 1 to {} or \"unlimited\"",
                    u32::MAX
                ))
            }),
            Raw::S(s) if s == "unlimited" => Ok(LimitValue::Unlimited),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "\"{s}\" is not a limit: use a positive integer or \"unlimited\""
            ))),
        }
    }
}

/// See [`LimitSpec::algorithm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Calendar-aligned fixed window.
    Fixed,
    /// Approximate sliding window (previous window weighted by overlap).
    Sliding,
    /// GCRA (leaky bucket).
    Gcra,
}

/// A method and path pattern: segments match literally, `{name}` matches
/// one segment, a final `*` matches the rest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// HTTP method (an RFC 9110 token, matched without regard to case), or
    /// `*` for any.
    pub method: Spanned<String>,
    /// Path pattern.
    pub path: Spanned<String>,
}

/// An endpoint rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// HTTP method (an RFC 9110 token, matched without regard to case), or
    /// `*` for any.
    pub method: Spanned<String>,
    /// Path pattern (see [`RouteSpec`]).
    pub path: Spanned<String>,
    /// The quota class the request spends (default `"api"`); some plan must
    /// declare it with a limit of that class (`"unlimited"` counts).
    pub class: Option<Spanned<String>>,
    /// Units of the plan's limits one request costs (default 1).
    pub cost: Option<Spanned<u32>>,
    /// Extra limits for this endpoint, per key (counted in requests).
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    /// Requests in flight at once per key: a number, or a table per plan.
    pub concurrency: Option<Spanned<ConcurrencySpec>>,
    /// May wait in the plan's queue when it only takes marked routes
    /// (`queue = { routes = "marked", .. }`).
    #[serde(default)]
    pub queued: bool,
}

/// See [`EndpointSpec::concurrency`]: a positive integer, or a table of
/// plan = positive integer (`{ free = 1, pro = 3 }`).
#[derive(Clone, Debug)]
pub enum ConcurrencySpec {
    /// The same for every plan.
    All(u32),
    /// Per plan; plans not listed have no concurrency limit.
    PerPlan(BTreeMap<String, u32>),
}

impl<'de> Deserialize<'de> for ConcurrencySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            PerPlan(BTreeMap<String, i64>),
        }
        const ALLOWED: &str = "a positive integer or a table of plan = integer \
                               (e.g. `concurrency = 5` or `concurrency = { free = 1, pro = 3 }`)";
        // 0 passes here and is refused at compile time, with the field.
        let count = |n: i64, what: &str| {
            u32::try_from(n).map_err(|_| {
                <D::Error as serde::de::Error>::custom(format!(
                    "{what}{n} is not a concurrency limit: use 1 to {}; \
                     `concurrency` is {ALLOWED}",
                    u32::MAX
                ))
            })
        };
        match Raw::deserialize(d).map_err(|_| {
            <D::Error as serde::de::Error>::custom(format!("`concurrency` must be {ALLOWED}"))
        })? {
            Raw::N(n) => count(n, "").map(ConcurrencySpec::All),
            Raw::PerPlan(m) => m
                .into_iter()
                .map(|(plan, n)| {
                    let n = count(n, &format!("plan \"{plan}\": "))?;
                    Ok((plan, n))
                })
                .collect::<Result<_, D::Error>>()
                .map(ConcurrencySpec::PerPlan),
        }
    }
}

/// A parsed path pattern segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Lit(String),
    Param,
    Rest,
}

pub(crate) fn parse_pattern(p: &str) -> Result<Vec<Seg>, String> {
    if !p.starts_with('/') {
        return Err(format!("path \"{p}\" must start with '/'"));
    }
    let parts: Vec<&str> = p.split('/').skip(1).collect();
    let mut out = Vec::with_capacity(parts.len());
    for (i, s) in parts.iter().enumerate() {
        out.push(if *s == "*" {
            if i + 1 != parts.len() {
                return Err(format!("in \"{p}\", '*' may only be the last segment"));
            }
            Seg::Rest
        } else if s.starts_with('{') && s.ends_with('}') && s.len() > 2 {
            Seg::Param
        } else if s.contains(['{', '}', '*']) {
            return Err(format!(
                "in \"{p}\", segment \"{s}\" must be literal, `{{name}}` or a final `*`"
            ));
        } else {
            Seg::Lit((*s).to_owned())
        });
    }
    Ok(out)
}

/// Whether `pattern` matches `path` (query string ignored).
pub(crate) fn matches(pattern: &[Seg], path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    let mut segs = path.split('/').skip(1);
    for p in pattern {
        match p {
            Seg::Rest => return true,
            Seg::Param => match segs.next() {
                Some(s) if !s.is_empty() => {}
                _ => return false,
            },
            Seg::Lit(l) => {
                if segs.next() != Some(l.as_str()) {
                    return false;
                }
            }
        }
    }
    segs.next().is_none()
}

/// Whether some path matches both patterns.
pub(crate) fn overlap(a: &[Seg], b: &[Seg]) -> bool {
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(Seg::Rest), _) | (_, Some(Seg::Rest)) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(Seg::Lit(x)), Some(Seg::Lit(y))) if x != y => return false,
            _ => i += 1,
        }
    }
}

/// Why `method` cannot be a rule's method (`None`: it can): `*`, or an
/// RFC 9110 token (`GET`, `PATCH`, `PROPFIND`: letters, digits and
/// ``!#$%&'*+-.^_`|~``). A method with a space, or an empty one, would
/// never match a request, so its rule would silently never apply.
pub(crate) fn invalid_method(method: &str) -> Option<String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if method == "*" || (!method.is_empty() && method.chars().all(tchar)) {
        return None;
    }
    Some(format!(
        "{method:?} is not an HTTP method: use a method such as \"GET\" or \"POST\" \
         (letters, digits and !#$%&'*+-.^_`|~, no spaces), or \"*\" for any"
    ))
}

pub(crate) fn methods_overlap(a: &str, b: &str) -> bool {
    a == "*" || b == "*" || a.eq_ignore_ascii_case(b)
}

/// The methods whose rules apply to a request made with `method`, in order
/// of precedence: its own, then, for `HEAD`, `GET`. RFC 9110 §9.3.2: HEAD is
/// GET without the content, and servers (axum among them) run the GET
/// handler for it — so a HEAD must be limited, priced and exempted like the
/// GET it runs, unless the policy has a rule of its own for HEAD.
pub(crate) fn request_methods(method: &str) -> impl Iterator<Item = &str> {
    let head = method.eq_ignore_ascii_case("HEAD");
    std::iter::once(method).chain(head.then_some("GET"))
}

/// Whether a rule for `rule` (a method or `*`) applies to a request made
/// with `method` (see [`request_methods`]).
pub(crate) fn method_applies(rule: &str, method: &str) -> bool {
    request_methods(method).any(|m| methods_overlap(rule, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Vec<Seg> {
        parse_pattern(p).unwrap()
    }

    #[test]
    fn rule_methods_are_tokens_or_star() {
        for ok in ["GET", "post", "*", "PROPFIND", "M-SEARCH"] {
            assert_eq!(invalid_method(ok), None, "{ok}");
        }
        for bad in ["", " ", "POST ", "GET,POST", "G\u{e9}T", "**x y"] {
            assert!(invalid_method(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn head_requests_take_get_rules() {
        assert!(method_applies("GET", "HEAD"));
        assert!(method_applies("get", "head"));
        assert!(method_applies("HEAD", "HEAD"));
        assert!(method_applies("*", "HEAD"));
        assert!(!method_applies("HEAD", "GET"));
        assert!(!method_applies("POST", "HEAD"));
        assert!(!method_applies("GET", "POST"));
        assert_eq!(request_methods("HEAD").collect::<Vec<_>>(), ["HEAD", "GET"]);
        assert_eq!(request_methods("GET").collect::<Vec<_>>(), ["GET"]);
    }

    #[test]
    fn patterns_match_and_overlap() {
        assert!(matches(&pat("/scans/{id}/results"), "/scans/42/results"));
        assert!(!matches(&pat("/scans/{id}/results"), "/scans/42"));
        assert!(!matches(&pat("/scans/{id}/results"), "/scans//results"));
        assert!(matches(&pat("/api/*"), "/api/a/b"));
        assert!(matches(&pat("/scans"), "/scans?page=2"));
        assert!(!matches(&pat("/scans"), "/scans/1"));
        assert!(overlap(&pat("/scans/{id}"), &pat("/scans/7")));
        assert!(overlap(&pat("/a/*"), &pat("/a/b/c")));
        assert!(!overlap(&pat("/scans/{id}"), &pat("/scans/{id}/results")));
        assert!(!overlap(&pat("/a/b"), &pat("/a/c")));
        assert!(parse_pattern("scans").is_err());
        assert!(parse_pattern("/a/*/b").is_err());
        assert!(parse_pattern("/a/{x").is_err());
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
