//! An S4E-shaped API (the page in `shared/seeds/000_*.txt`) behind
//! `tollgate::tower::RateLimitLayer`:
//!
//! ```sh
//! cargo run --release --features axum --example server -- policies/s4e.toml
//! curl -i -H 'Authorization: Bearer standard-alice' http://127.0.0.1:8080/api/assets
//! curl -N -H 'Authorization: Bearer standard-alice' http://127.0.0.1:8080/api/events/stream
//! ```
//!
//! Options: `--addr 127.0.0.1:8080`, `--trust-forwarded-hops N` (reverse
//! proxies in front that append to `X-Forwarded-For`; default 0: ignored).
//!
//! An API key `<plan>-<anything>` is on plan `<plan>` (`standard-alice`,
//! `premium-ci`); a key without a `-` is unknown (401), a plan the policy
//! does not have is refused (403).
//!
//! | route | what |
//! |---|---|
//! | `GET /api/health` | exempt |
//! | `GET /api/assets`, `GET /api/findings` | tier limits; `If-None-Match: "v1"` answers 304, which the policy refunds |
//! | `POST /api/scan/create` | 10/min per key, with the tier limits |
//! | `POST /api/findings/export` | 5/min per key |
//! | `GET /api/events/stream` | SSE, 5 concurrent per key; `?every_ms=` between events (default 1000), `?count=` events then end |
//!
//! The integration tests (`tests/tests/http_*.rs`) start this same router.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::net::TcpListener;
use tollgate::tower::{Caller, RateLimitLayer};

/// The demo's API keys: `<plan>-<anything>` is on `<plan>`.
pub fn demo_caller(key: &str) -> Option<Caller> {
    key.split_once('-').map(|(plan, _)| Caller::new(plan))
}

/// The S4E-shaped routes behind `layer`.
pub fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/api/health", get(|| async { "ok" }))
        .route("/api/assets", get(assets))
        .route("/api/findings", get(findings))
        .route("/api/scan/create", post(scan_create))
        .route("/api/findings/export", post(export))
        .route("/api/events/stream", get(events))
        .layer(layer)
}

/// Serves `app` on `listener`, recording each connection's peer address
/// (the layer keys anonymous callers by it).
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// The entity tag of every cached resource in the demo.
const ETAG: &str = "\"v1\"";

/// 304 when the client already has the current version.
fn cached(headers: &HeaderMap, body: serde_json::Value) -> Response {
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == ETAG.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, ETAG)]).into_response();
    }
    ([(header::ETAG, ETAG)], Json(body)).into_response()
}

async fn assets(headers: HeaderMap) -> Response {
    cached(
        &headers,
        json!([{ "id": 1, "host": "example.com" }, { "id": 2, "host": "api.example.com" }]),
    )
}

async fn findings(headers: HeaderMap) -> Response {
    cached(&headers, json!([{ "id": 7, "severity": "critical" }]))
}

async fn scan_create() -> impl IntoResponse {
    (StatusCode::ACCEPTED, Json(json!({ "status": "queued" })))
}

async fn export() -> impl IntoResponse {
    Json(json!({ "status": "ok", "url": "/exports/1.csv" }))
}

/// The number after `name=` in the query string, if any.
fn query_number(uri: &Uri, name: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// One `tick` event at once, then one every `every_ms`, `count` in all (or
/// until the client goes away).
async fn events(uri: Uri) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let every = Duration::from_millis(query_number(&uri, "every_ms").unwrap_or(1000).max(10));
    let count = query_number(&uri, "count").unwrap_or(u64::MAX);
    let ticks = stream::unfold(0u64, move |n| async move {
        if n >= count {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(every).await;
        }
        let event = Event::default().event("tick").data(n.to_string());
        Some((Ok(event), n + 1))
    });
    Sse::new(ticks).keep_alive(KeepAlive::default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut policy = String::from("policies/s4e.toml");
    let mut addr = String::from("127.0.0.1:8080");
    let mut hops = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            "--trust-forwarded-hops" => {
                hops = args
                    .next()
                    .ok_or("--trust-forwarded-hops needs a value")?
                    .parse()?
            }
            _ if !a.starts_with("--") => policy = a,
            _ => return Err(format!("unknown option {a}").into()),
        }
    }
    let src = std::fs::read_to_string(&policy).map_err(|e| format!("{policy}: {e}"))?;
    let layer = RateLimitLayer::from_toml(&src)
        .map_err(|e| format!("{policy}: {e}"))?
        .plans(demo_caller)
        .trust_forwarded_hops(hops);
    let listener = TcpListener::bind(&addr).await?;
    println!(
        "policy {:?} ({policy}) on http://{}; try: curl -i -H 'Authorization: Bearer standard-alice' http://{}/api/assets",
        layer.engine().name(),
        listener.local_addr()?,
        listener.local_addr()?,
    );
    serve(listener, app(layer)).await?;
    Ok(())
}
