//! Tower middleware (feature `tower`): [`RateLimitLayer`] enforces a
//! [policy](crate::policy) in front of any tower service — an axum
//! `Router`, a hyper service, tonic — with the policy's headers and 429
//! bodies on the wire.
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::get};
//! use tollgate::tower::{Caller, RateLimitLayer};
//! use tower::ServiceExt;
//!
//! const POLICY: &str = r#"
//!     name = "demo"
//!     [response]
//!     headers = "x-ratelimit"
//!     body = "s4e"
//!     [plans.standard]
//!     limits = [{ per = "minute", limit = 2 }]
//! "#;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = RateLimitLayer::from_toml(POLICY)
//!     .unwrap()
//!     .plans(|key: &str| (key == "k1").then(|| Caller::new("standard")));
//! let app = Router::new().route("/api/assets", get(|| async { "[]" })).layer(layer);
//!
//! let get = || Request::get("/api/assets").header("authorization", "Bearer k1").body(Body::empty()).unwrap();
//! let ok = app.clone().oneshot(get()).await.unwrap();
//! assert_eq!(ok.status(), 200);
//! assert_eq!(ok.headers()["x-ratelimit-limit"], "2");
//! assert_eq!(ok.headers()["x-ratelimit-remaining"], "1");
//! let _ = app.clone().oneshot(get()).await.unwrap();
//! let refused = app.clone().oneshot(get()).await.unwrap();
//! assert_eq!(refused.status(), 429);
//! assert!(refused.headers().contains_key("retry-after"));
//!
//! // No key, and the policy has no anonymous plan: 401, never a panic.
//! let anonymous = Request::get("/api/assets").body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(anonymous).await.unwrap().status(), 401);
//! # });
//! ```
//!
//! # What the layer does with a request
//!
//! 1. **Who is calling.** The API key comes from the first of
//!    [`KeyFrom`] sources that has one (default: `Authorization: Bearer`,
//!    then `X-API-Key`); its plan (and organisation) from a [`Caller`] an
//!    earlier auth layer put in the request's extensions, else from the
//!    [`plans`](RateLimitLayer::plans) callback. A `Caller` with an
//!    [`id`](Caller::id) is keyed by that id instead (and needs no key
//!    header): **an auth layer in front should set `id` to the identity it
//!    validated**, because otherwise the budget's key is the first header
//!    found (Authorization before X-API-Key), which a client can make up — a
//!    made-up bearer token next to a validated `X-API-Key` would get the
//!    auth layer's plan on a budget of its own. The client address (which
//!    keys anonymous callers) is the connection's peer: axum's
//!    `ConnectInfo<SocketAddr>` (feature `axum`) or a `SocketAddr`
//!    extension. `X-Forwarded-For` is **ignored** unless
//!    [`trust_forwarded_hops`](RateLimitLayer::trust_forwarded_hops) says how
//!    many proxies in front of the service append to it.
//! 2. **The check** ([`Engine::check`] with the method and path): an exempt
//!    route passes untouched; a refusal is answered at once with the
//!    policy's status, headers (`Retry-After`, `X-RateLimit-*`...) and JSON
//!    body; a request the policy queues waits (on tokio's timer, so the
//!    service must run on tokio) until it is served or refused, and leaves
//!    the line if the client goes away; an admitted request goes on to the
//!    service and its response gets the policy's headers.
//! 3. **After the response.** A status the policy refunds (S4E: 304) gives
//!    the request's units back at once. Either way the admission — and with
//!    it any concurrency permit (S4E: 5 SSE streams per key) — lives in the
//!    response body ([`RateLimitBody`]) until the body ends or is dropped,
//!    which is when a client that disconnects is noticed (a refunded
//!    response may still stream) — or longer, if the handler kept it for a
//!    background job (next section).
//!
//! Requests the engine cannot judge are answered, never a panic: no key and
//! no anonymous plan → 401; a key the callback does not know → 401; a plan
//! the policy does not have → 403 (bodies are JSON with a message).
//!
//! # Asynchronous jobs (BlockSecOps scans)
//!
//! Some APIs answer at once and work on: BlockSecOps' `POST /api/v1/scans`
//! returns `202 Accepted` and the scan runs in the background (results by
//! webhook or `GET /scans/{id}/results`), yet its page limits *concurrent
//! scans* per plan (Free 1, Developer 3, Startup 10, Professional 25; a
//! 429 `CONCURRENT_LIMIT`, "Please wait for a scan to complete"). Released
//! with the 202's body, such a limit would never bind. So an admitted
//! request carries its [`Permits`] in its extensions, and a handler that
//! starts a job calls [`Permits::keep`] before it returns and moves the
//! [`PermitGuard`] into the job: the permits are released when the body
//! has ended **and** every guard has been dropped (the job ended, failed or
//! was cancelled). With feature `axum`, a `PermitGuard` handler argument
//! does the same. A refunded status still gives the units back at once.
//!
//! Exempt requests, and requests the layer answers itself, carry no
//! `Permits` (the axum extractor then gives a guard that holds nothing,
//! [`PermitGuard::is_holding`] is false). A handler that keeps nothing
//! changes nothing: the permits go with the body, as above. The cost, used
//! or not, is one `Arc` allocation per admitted request and the
//! extension's entry in the request's `Extensions`.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Extension, Router, body::Body, http::{Request, StatusCode}, routing::post};
//! use tokio::sync::Notify;
//! use tollgate::tower::{Caller, Permits, RateLimitLayer};
//! use tower::ServiceExt;
//!
//! // The scan endpoint of `policies/blocksecops.toml`, in short.
//! const POLICY: &str = r#"
//!     name = "scans"
//!     [response]
//!     headers = "x-ratelimit"
//!     body = "blocksecops"
//!     [plans.free]
//!     limits = [{ per = "minute", limit = 10 }]
//!     [[endpoints]]
//!     method = "POST"
//!     path = "/api/v1/scans"
//!     concurrency = { free = 1 }
//! "#;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let scan_done = Arc::new(Notify::new());
//! let done = Arc::clone(&scan_done);
//! let create_scan = move |Extension(permits): Extension<Permits>| {
//!     let done = Arc::clone(&done);
//!     async move {
//!         let slot = permits.keep();
//!         tokio::spawn(async move {
//!             done.notified().await; // the scan runs ...
//!             drop(slot); // ... and completes: the plan's slot is free
//!         });
//!         StatusCode::ACCEPTED
//!     }
//! };
//! let layer = RateLimitLayer::from_toml(POLICY)
//!     .unwrap()
//!     .plans(|_: &str| Some(Caller::new("free")));
//! let app = Router::new().route("/api/v1/scans", post(create_scan)).layer(layer);
//! let scan = || Request::post("/api/v1/scans").header("x-api-key", "k1").body(Body::empty()).unwrap();
//!
//! let accepted = app.clone().oneshot(scan()).await.unwrap();
//! assert_eq!(accepted.status(), 202);
//! drop(accepted); // the response is over, the scan is not
//! let refused = app.clone().oneshot(scan()).await.unwrap();
//! assert_eq!(refused.status(), 429); // CONCURRENT_LIMIT
//!
//! scan_done.notify_one();
//! tokio::time::sleep(std::time::Duration::from_millis(10)).await; // the job drops its guard
//! assert_eq!(app.oneshot(scan()).await.unwrap().status(), 202);
//! # });
//! ```
//!
//! # CORS preflights
//!
//! Browsers send an `OPTIONS` preflight without credentials, so under a
//! policy with no anonymous plan it would get the 401 above and the
//! browser would never send the real request. Answer preflights before
//! this layer — put `tower_http::cors::CorsLayer` *outside* it (added after
//! it with `Router::layer`, so it runs first) — or exempt them in the
//! policy:
//!
//! ```toml
//! [[exempt]]
//! method = "OPTIONS"
//! path = "/*"
//! ```

mod body;
mod client;
mod hold;
mod permits;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use tollgate_core::{Clock, Nanos};
use tower_layer::Layer;
use tower_service::Service;

use crate::MonotonicClock;
use crate::policy::{Engine, PolicyError, RequestError};

pub use body::RateLimitBody;
pub use client::KeyFrom;
use hold::{Hold, Verdict};
use permits::Shared;
pub use permits::{PermitGuard, Permits};

/// Who a caller is, beyond the API key: the plan the caller's account is on,
/// for policies with an organisation pool or `scope = "org"` its
/// organisation, and the identity it was authenticated as.
///
/// Return one from the [`plans`](RateLimitLayer::plans) callback, or insert
/// one into the request's extensions in an earlier (async) auth layer.
///
/// **An auth layer in front should set [`id`](Caller::id) to the identity it
/// validated** (the API key it checked, an account id). The budget is then
/// keyed by that id. Without an id the key is the first header the layer's
/// [`KeyFrom`] sources find (by default `Authorization: Bearer` before
/// `X-API-Key`), which nobody needs to have validated: a client that sends
/// its real `X-API-Key` and a made-up bearer token next to it gets the
/// auth layer's plan on a fresh budget per token.
///
/// ```
/// use tollgate::tower::Caller;
/// // What an auth layer inserts once it has validated the key "k1".
/// let c = Caller::new("premium").org("acme").id("k1");
/// assert_eq!(c.plan, "premium");
/// assert_eq!(c.org.as_deref(), Some("acme"));
/// assert_eq!(c.id.as_deref(), Some("k1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The plan (a `[plans.NAME]` of the policy).
    pub plan: String,
    /// The organisation, if any.
    pub org: Option<String>,
    /// The identity the caller was authenticated as, if any: when set, the
    /// budget's key (instead of the first [`KeyFrom`] header with a value),
    /// and the caller needs no key header at all (a session cookie, a client
    /// certificate). An auth layer in front should set it to what it
    /// validated; see [`Caller`].
    pub id: Option<String>,
}

impl Caller {
    /// A caller on `plan`, without an organisation or an id.
    pub fn new(plan: impl Into<String>) -> Caller {
        Caller {
            plan: plan.into(),
            org: None,
            id: None,
        }
    }

    /// Sets the organisation.
    pub fn org(mut self, org: impl Into<String>) -> Caller {
        self.org = Some(org.into());
        self
    }

    /// Sets the identity the caller was authenticated as: the budget's key
    /// (see [`Caller::id`](Caller#structfield.id)).
    ///
    /// ```
    /// use tollgate::tower::Caller;
    /// // An auth layer validated X-API-Key "k1", or the session of account 7.
    /// assert_eq!(Caller::new("pro").id("k1").id.as_deref(), Some("k1"));
    /// assert_eq!(Caller::new("pro").id("acct-7").id.as_deref(), Some("acct-7"));
    /// ```
    pub fn id(mut self, id: impl Into<String>) -> Caller {
        self.id = Some(id.into());
        self
    }
}

type Lookup = dyn Fn(&str) -> Option<Caller> + Send + Sync;

/// A [`Layer`] that enforces a policy: see the [module docs](self).
///
/// ```
/// use tollgate::policy::Engine;
/// use tollgate::tower::{Caller, KeyFrom, RateLimitLayer};
/// use tollgate::{MonotonicClock, Nanos};
///
/// let clock = MonotonicClock::new();
/// let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/s4e.toml")).unwrap();
/// // The engine's zero is the clock's zero (calendar windows, X-RateLimit-Reset).
/// let engine = Engine::from_toml(&src, clock.unix_nanos_at(Nanos::ZERO)).unwrap();
/// let layer = RateLimitLayer::new(engine, clock)
///     .plans(|key: &str| key.starts_with("live_").then(|| Caller::new("standard")))
///     .key_from([KeyFrom::header("x-api-key")])
///     .trust_forwarded_hops(1); // one reverse proxy in front appends X-Forwarded-For
/// assert_eq!(layer.engine().name(), "s4e");
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    engine: Arc<Engine>,
    clock: Arc<dyn Clock + Send + Sync>,
    lookup: Option<Arc<Lookup>>,
    keys: Arc<[KeyFrom]>,
    forwarded_hops: usize,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("engine", &self.engine)
            .field("keys", &self.keys)
            .field("forwarded_hops", &self.forwarded_hops)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A layer enforcing `engine`, reading time from `clock`. The engine's
    /// `Nanos::ZERO` must be the clock's (build it with
    /// `clock.unix_nanos_at(Nanos::ZERO)` as its `unix_at_zero`).
    ///
    /// Until [`plans`](Self::plans) is set, every API key is unknown (401);
    /// anonymous callers get the policy's anonymous plan.
    ///
    /// ```
    /// use tollgate::policy::Engine;
    /// use tollgate::tower::RateLimitLayer;
    /// use tollgate::{ManualClock, Nanos};
    ///
    /// // A manual clock (tests, simulations) works as well as a real one.
    /// static CLOCK: ManualClock = ManualClock::new(Nanos::ZERO);
    /// let engine = Engine::from_toml(
    ///     "name = \"x\"\n[response]\nheaders = \"x-ratelimit\"\nbody = \"s4e\"\n[plans.free]\nlimits = []",
    ///     Nanos::from_secs(1_714_305_600),
    /// ).unwrap();
    /// let _layer = RateLimitLayer::new(engine, &CLOCK);
    /// ```
    pub fn new(
        engine: impl Into<Arc<Engine>>,
        clock: impl Clock + Send + Sync + 'static,
    ) -> RateLimitLayer {
        RateLimitLayer {
            engine: engine.into(),
            clock: Arc::new(clock),
            lookup: None,
            keys: Arc::from(KeyFrom::DEFAULT.to_vec()),
            forwarded_hops: 0,
        }
    }

    /// A layer for the policy `src` (TOML) on a new [`MonotonicClock`].
    ///
    /// ```
    /// use tollgate::tower::RateLimitLayer;
    /// let err = RateLimitLayer::from_toml("name = 3").unwrap_err();
    /// assert_eq!(err.line, 1);
    /// ```
    pub fn from_toml(src: &str) -> Result<RateLimitLayer, PolicyError> {
        let clock = MonotonicClock::new();
        let engine = Engine::from_toml(src, clock.unix_nanos_at(Nanos::ZERO))?;
        Ok(RateLimitLayer::new(engine, clock))
    }

    /// How to find an API key's plan: `lookup(key)` returns the [`Caller`],
    /// or `None` for a key that is not valid (answered 401). It runs on every
    /// request that has a key and no `Caller` extension, so keep it to a map
    /// look-up; resolve keys asynchronously in an earlier layer that inserts
    /// the `Caller` instead. A returned caller's [`id`](Caller::id), if set,
    /// is the budget's key in place of `key`.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use tollgate::tower::{Caller, RateLimitLayer};
    /// let plans: HashMap<String, Caller> =
    ///     HashMap::from([("k1".to_string(), Caller::new("standard"))]);
    /// let src = "name = \"x\"\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n[plans.standard]\nlimits = []";
    /// let _layer = RateLimitLayer::from_toml(src).unwrap()
    ///     .plans(move |key: &str| plans.get(key).cloned());
    /// ```
    pub fn plans(
        mut self,
        lookup: impl Fn(&str) -> Option<Caller> + Send + Sync + 'static,
    ) -> RateLimitLayer {
        self.lookup = Some(Arc::new(lookup));
        self
    }

    /// Where the API key is read from, first match wins (default:
    /// [`KeyFrom::Bearer`], then the `X-API-Key` header). A [`Caller`] with
    /// an [`id`](Caller::id) is keyed by its id, not by this header.
    ///
    /// ```
    /// use tollgate::tower::{KeyFrom, RateLimitLayer};
    /// let src = "name = \"x\"\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n[plans.standard]\nlimits = []";
    /// let _layer = RateLimitLayer::from_toml(src).unwrap().key_from([KeyFrom::header("x-tenant-key")]);
    /// ```
    pub fn key_from(mut self, sources: impl IntoIterator<Item = KeyFrom>) -> RateLimitLayer {
        self.keys = sources.into_iter().collect();
        self
    }

    /// Trusts `hops` reverse proxies in front of the service to append the
    /// address they received the request from to `X-Forwarded-For`: the
    /// client address is then the `hops`-th entry from the right, counted
    /// across all the header's lines (entries to its left are whatever the
    /// client sent, and are ignored: never decoded, so not even bytes that
    /// are no text change which entry counts). An entry is an address with
    /// or without a port, IPv6 bare or in brackets (`2001:db8::1`,
    /// `[2001:db8::1]`, `[2001:db8::1]:4711`; a zone such as `%eth0` is
    /// dropped). With fewer
    /// entries than `hops`, or an entry that is no address, the connection's
    /// peer address is used. The default, 0, never reads the header: a
    /// client cannot choose its own rate-limit key. `Forwarded` (RFC 7239)
    /// is never read.
    ///
    /// ```
    /// use tollgate::tower::RateLimitLayer;
    /// let src = "name = \"x\"\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n[plans.standard]\nlimits = []";
    /// // client -> load balancer -> this service
    /// let _layer = RateLimitLayer::from_toml(src).unwrap().trust_forwarded_hops(1);
    /// ```
    pub fn trust_forwarded_hops(mut self, hops: usize) -> RateLimitLayer {
        self.forwarded_hops = hops;
        self
    }

    /// The engine, for [`Engine::usage`] read-outs or [`Engine::boost`].
    ///
    /// ```
    /// use tollgate::tower::RateLimitLayer;
    /// let src = "name = \"x\"\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n[plans.standard]\nlimits = []";
    /// let layer = RateLimitLayer::from_toml(src).unwrap();
    /// assert_eq!(layer.engine().plans(), ["standard"]);
    /// ```
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            config: Arc::new(self.clone()),
        }
    }
}

/// The [`Service`] made by [`RateLimitLayer`]: checks each request against
/// the policy before `S` sees it.
///
/// ```
/// use tollgate::tower::{RateLimit, RateLimitLayer};
/// use tower_layer::Layer;
/// let src = "name = \"x\"\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n[plans.standard]\nlimits = []";
/// let svc: RateLimit<()> = RateLimitLayer::from_toml(src).unwrap().layer(());
/// assert_eq!(svc.get_ref(), &());
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    config: Arc<RateLimitLayer>,
}

impl<S> RateLimit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The future of [`RateLimit`]'s responses.
pub type ResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<RateLimitBody<B>>, E>> + Send>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<RateLimitBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        // The instance that was polled ready serves this request; a clone
        // stays for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let c = &self.config;
        let subject = client::subject(&request, &c.keys, c.lookup.as_deref(), c.forwarded_hops);
        let mut hold = Hold::check(Arc::clone(c), subject);
        let config = Arc::clone(c);
        Box::pin(async move {
            let headers = match std::future::poll_fn(|cx| hold.poll_verdict(cx)).await {
                Verdict::Allowed(headers) => headers,
                Verdict::Exempt => {
                    // Nothing to hold (and no `Permits` for the handler).
                    drop(hold);
                    let response = inner.call(request).await?;
                    return Ok(response.map(RateLimitBody::new));
                }
                Verdict::Denied(d) => {
                    let mut res = json_response(d.status, &d.body);
                    put_headers(res.headers_mut(), d.headers);
                    return Ok(res);
                }
                Verdict::Invalid(e) => return Ok(invalid(&e)),
                Verdict::Lost => {
                    let msg = "the rate limiter lost this request's admission";
                    return Ok(error_response(500, "internal", msg));
                }
            };
            // Admitted: the admission is shared by this future (then the
            // response body) and any guard the handler keeps for a job that
            // outlives the response; the last of them releases the permits.
            let shared = Shared::new(hold);
            request.extensions_mut().insert(Permits::new(&shared));
            let response = inner.call(request).await?;
            let (mut parts, body) = response.into_parts();
            let status = parts.status.as_u16();
            // A refunded status: the units go back now, and the headers say
            // so (S4E: a 304 consumes no token); the permits stay with the
            // body and any kept guard (a refunded stream or job still runs).
            let headers = if config.engine.refunds(status) {
                let refunded = shared.hold().refund(status);
                refunded.unwrap_or(headers)
            } else {
                headers
            };
            put_headers(&mut parts.headers, headers);
            Ok(Response::from_parts(
                parts,
                RateLimitBody::holding(body, shared),
            ))
        })
    }
}

/// Moves rendered headers into `map` (as
/// [`write_headers`](crate::headers::write_headers), without parsing the
/// names or copying the values).
fn put_headers(map: &mut http::HeaderMap, headers: Vec<(&'static str, String)>) {
    map.reserve(headers.len());
    for (name, value) in headers {
        let name = match name {
            "X-RateLimit-Limit" => HeaderName::from_static("x-ratelimit-limit"),
            "X-RateLimit-Remaining" => HeaderName::from_static("x-ratelimit-remaining"),
            "X-RateLimit-Reset" => HeaderName::from_static("x-ratelimit-reset"),
            "Retry-After" => header::RETRY_AFTER,
            other => match HeaderName::from_bytes(other.as_bytes()) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        // Values are digits and printable ASCII (see `write_headers`).
        if let Ok(value) = HeaderValue::try_from(value) {
            map.insert(name, value);
        }
    }
}

/// A response with a JSON body.
fn json_response<B>(status: u16, body: &serde_json::Value) -> Response<RateLimitBody<B>> {
    let bytes = Bytes::from(body.to_string());
    let mut res = Response::new(RateLimitBody::refusal(bytes));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The layer's own error answer: `{"error": code, "message": ...}`.
fn error_response<B>(status: u16, code: &str, message: &str) -> Response<RateLimitBody<B>> {
    json_response(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

/// The answer to a request the engine cannot judge.
fn invalid<B>(e: &RequestError) -> Response<RateLimitBody<B>> {
    match e {
        RequestError::Unauthenticated => {
            let mut res = error_response(401, "unauthorized", "an API key is required");
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        // The layer passes a key without a plan only when the key is unknown.
        RequestError::MissingPlan => {
            let mut res = error_response(401, "unauthorized", "unknown API key");
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        RequestError::UnknownPlan(_) => error_response(403, "forbidden", &e.to_string()),
        RequestError::AmbiguousPath(_) => error_response(400, "bad_request", &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use tollgate_core::ManualClock;
    use tower::ServiceExt;

    use super::*;

    static CLOCK: ManualClock = ManualClock::new(Nanos::ZERO);

    /// One request at a time, one more may wait.
    const POLICY: &str = r#"
        name = "q"
        [response]
        headers = "none"
        body = "slim-io"
        [plans.free]
        concurrency = 1
        queue = { on = "concurrency", routes = "all", depth = 1, max_wait_secs = 30 }
    "#;

    fn get(path: &str) -> Request<String> {
        Request::get(path)
            .header("x-api-key", "k")
            .body(String::new())
            .unwrap()
    }

    #[tokio::test]
    async fn a_queued_request_that_goes_away_leaves_the_line() {
        let engine = Engine::from_toml(POLICY, Nanos::ZERO).unwrap();
        let layer = RateLimitLayer::new(engine, &CLOCK).plans(|_| Some(Caller::new("free")));
        let svc = layer.layer(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::from("body")))
        }));
        // Its body holds the one slot.
        let first = svc.clone().oneshot(get("/x")).await.unwrap();
        assert_eq!(first.status(), 200);
        // The second waits in line; its client goes away.
        let mut second = svc.clone().oneshot(get("/x"));
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut second).await;
        assert!(waited.is_err(), "served while the slot was held");
        drop(second);
        // The line is empty again: a third may wait (depth 1) and is served
        // as soon as the first response's body is dropped.
        let third = tokio::spawn(svc.clone().oneshot(get("/x")));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third request was never served")
            .unwrap()
            .unwrap();
        assert_eq!(third.status(), 200);
    }

    /// One request at a time, no line; `/health` is exempt.
    const ONE_AT_A_TIME: &str = r#"
        name = "one"
        [response]
        headers = "none"
        body = "blocksecops"
        [plans.free]
        concurrency = 1
        [[exempt]]
        method = "GET"
        path = "/health"
    "#;

    #[tokio::test]
    async fn the_permits_go_with_the_last_of_the_body_and_the_kept_guards() {
        // The handler keeps every request's permits in `kept`.
        let kept = Arc::new(std::sync::Mutex::new(Vec::<PermitGuard>::new()));
        let engine = Engine::from_toml(ONE_AT_A_TIME, Nanos::ZERO).unwrap();
        let layer = RateLimitLayer::new(engine, &CLOCK).plans(|_| Some(Caller::new("free")));
        let stash = Arc::clone(&kept);
        let svc = layer.layer(tower::service_fn(move |req: Request<String>| {
            let guard = req.extensions().get::<Permits>().map(Permits::keep);
            stash.lock().unwrap().push(guard.unwrap_or_default());
            async { Ok::<_, Infallible>(Response::new(String::from("accepted"))) }
        }));
        let status = |r: Response<RateLimitBody<String>>| r.status().as_u16();

        // The body ends first: the guard still holds the slot.
        let first = svc.clone().oneshot(get("/x")).await.unwrap();
        assert_eq!(status(first), 200);
        let guard = kept.lock().unwrap().pop().unwrap();
        assert!(guard.is_holding());
        let clone = guard.clone();
        assert_eq!(status(svc.clone().oneshot(get("/x")).await.unwrap()), 429);
        drop(guard);
        // A clone keeps it as well.
        assert_eq!(status(svc.clone().oneshot(get("/x")).await.unwrap()), 429);
        drop(clone);
        kept.lock().unwrap().clear();

        // The guard goes first: the body still holds the slot.
        let second = svc.clone().oneshot(get("/x")).await.unwrap();
        assert_eq!(second.status(), 200);
        drop(kept.lock().unwrap().pop().unwrap());
        assert_eq!(status(svc.clone().oneshot(get("/x")).await.unwrap()), 429);
        kept.lock().unwrap().clear();
        drop(second);
        let third = svc.clone().oneshot(get("/x")).await.unwrap();
        assert_eq!(third.status(), 200);
        kept.lock().unwrap().clear();
        drop(third);

        // An exempt request has no permits to keep.
        let health = svc.clone().oneshot(get("/health")).await.unwrap();
        assert_eq!(health.status(), 200);
        assert!(!kept.lock().unwrap().pop().unwrap().is_holding());
    }

    #[tokio::test]
    async fn permits_kept_after_the_request_is_over_hold_nothing() {
        let permits = Arc::new(std::sync::Mutex::new(None));
        let engine = Engine::from_toml(ONE_AT_A_TIME, Nanos::ZERO).unwrap();
        let layer = RateLimitLayer::new(engine, &CLOCK).plans(|_| Some(Caller::new("free")));
        let stash = Arc::clone(&permits);
        let svc = layer.layer(tower::service_fn(move |req: Request<String>| {
            *stash.lock().unwrap() = req.extensions().get::<Permits>().cloned();
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
        let res = svc.clone().oneshot(get("/x")).await.unwrap();
        // The extension itself holds nothing: the body is the only owner.
        let late = permits
            .lock()
            .unwrap()
            .take()
            .expect("an admitted request has Permits");
        drop(res);
        assert!(!late.keep().is_holding());
        assert_eq!(svc.oneshot(get("/x")).await.unwrap().status(), 200);
    }

    /// Two requests a minute on plan `pro`.
    const PRO: &str = r#"
        name = "pro"
        [response]
        headers = "none"
        body = "s4e"
        [plans.pro]
        limits = [{ per = "minute", limit = 2 }]
    "#;

    #[tokio::test]
    async fn a_made_up_bearer_token_next_to_an_authenticated_key_mints_no_budget() {
        let engine = Engine::from_toml(PRO, Nanos::ZERO).unwrap();
        // No `plans` callback: only the auth layer's `Caller` says who calls.
        let svc = RateLimitLayer::new(engine, &CLOCK).layer(tower::service_fn(
            |_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) },
        ));
        // What an auth layer in front does once it has validated X-API-Key.
        let request = |bearer: Option<&str>| {
            let mut b = Request::get("/x").header("x-api-key", "real-key");
            if let Some(token) = bearer {
                b = b.header("authorization", format!("Bearer {token}"));
            }
            let mut r = b.body(String::new()).unwrap();
            r.extensions_mut().insert(Caller::new("pro").id("real-key"));
            r
        };
        let status = |r: Response<RateLimitBody<String>>| r.status().as_u16();
        for _ in 0..2 {
            assert_eq!(
                status(svc.clone().oneshot(request(None)).await.unwrap()),
                200
            );
        }
        assert_eq!(
            status(svc.clone().oneshot(request(None)).await.unwrap()),
            429
        );
        // Authorization is read before X-API-Key, and nobody validated it:
        // the budget stays the authenticated key's.
        let made_up = request(Some("made-up-1"));
        assert_eq!(status(svc.oneshot(made_up).await.unwrap()), 429);
    }
}
