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
//!    [`plans`](RateLimitLayer::plans) callback. The client address (which
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
//!    response may still stream).
//!
//! Requests the engine cannot judge are answered, never a panic: no key and
//! no anonymous plan → 401; a key the callback does not know → 401; a plan
//! the policy does not have → 403 (bodies are JSON with a message).
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

/// Who a caller is, beyond the API key: the plan the caller's account is on
/// and, for policies with an organisation pool or `scope = "org"`, its
/// organisation.
///
/// Return one from the [`plans`](RateLimitLayer::plans) callback, or insert
/// one into the request's extensions in an earlier (async) auth layer.
///
/// ```
/// use tollgate::tower::Caller;
/// let c = Caller::new("premium").org("acme");
/// assert_eq!(c.plan, "premium");
/// assert_eq!(c.org.as_deref(), Some("acme"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The plan (a `[plans.NAME]` of the policy).
    pub plan: String,
    /// The organisation, if any.
    pub org: Option<String>,
}

impl Caller {
    /// A caller on `plan`, without an organisation.
    pub fn new(plan: impl Into<String>) -> Caller {
        Caller {
            plan: plan.into(),
            org: None,
        }
    }

    /// Sets the organisation.
    pub fn org(mut self, org: impl Into<String>) -> Caller {
        self.org = Some(org.into());
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
    /// the `Caller` instead.
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
    /// [`KeyFrom::Bearer`], then the `X-API-Key` header).
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
    /// client address is then the `hops`-th entry from the right (entries to
    /// its left are whatever the client sent, and are ignored). With fewer
    /// entries than `hops`, or an entry that is no address, the connection's
    /// peer address is used. The default, 0, never reads the header: a
    /// client cannot choose its own rate-limit key.
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

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
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
                Verdict::Allowed(headers) => Some(headers),
                Verdict::Exempt => None,
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
            let response = inner.call(request).await?;
            let (mut parts, body) = response.into_parts();
            let Some(headers) = headers else {
                return Ok(Response::from_parts(parts, RateLimitBody::new(body)));
            };
            let status = parts.status.as_u16();
            // A refunded status: the units go back now, and the headers say
            // so (S4E: a 304 consumes no token); the permits stay with the
            // body (a refunded stream still runs until it ends).
            let headers = if config.engine.refunds(status) {
                hold.refund(status).unwrap_or(headers)
            } else {
                headers
            };
            put_headers(&mut parts.headers, headers);
            Ok(Response::from_parts(
                parts,
                RateLimitBody::holding(body, Some(hold)),
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

    fn request() -> Request<String> {
        Request::get("/x")
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
        let first = svc.clone().oneshot(request()).await.unwrap();
        assert_eq!(first.status(), 200);
        // The second waits in line; its client goes away.
        let mut second = svc.clone().oneshot(request());
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut second).await;
        assert!(waited.is_err(), "served while the slot was held");
        drop(second);
        // The line is empty again: a third may wait (depth 1) and is served
        // as soon as the first response's body is dropped.
        let third = tokio::spawn(svc.clone().oneshot(request()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third request was never served")
            .unwrap()
            .unwrap();
        assert_eq!(third.status(), 200);
    }
}
