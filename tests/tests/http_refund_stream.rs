//! A refunded status on a streaming response: the units go back at once,
//! but the request still runs, so its concurrency permit stays with the
//! body until the body ends or the client goes away (found by review: a
//! refunded status released the permit with the units, so a concurrency
//! limit of 1 admitted a second stream while the first was still open).

mod http_common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use futures_util::stream;
use http_common::{Streaming, T0, run, server, stream};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tollgate::policy::Engine;
use tollgate::tower::RateLimitLayer;
use tollgate::{ManualClock, Nanos};

/// One request at a time per key, one per minute, and a 202 is free.
const POLICY: &str = r#"
name = "refund-stream"
refund_status = [202]
[response]
headers = "x-ratelimit"
body = "blocksecops"
[plans.free]
concurrency = 1
limits = [{ per = "minute", limit = 1 }]
"#;

const PATH: &str = "/api/jobs/stream";
const KEY: [(&str, &str); 1] = [("x-api-key", "free-ann")];

/// 202 and an SSE stream that never ends: an event every 20 ms (so that a
/// client that goes away is noticed at the next write).
async fn accepted_stream() -> impl IntoResponse {
    let ticks = stream::unfold(0u64, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let event = Event::default().event("tick").data(n.to_string());
        Some((Ok::<_, Infallible>(event), n + 1))
    });
    (StatusCode::ACCEPTED, Sse::new(ticks))
}

/// The stream route behind a layer on `POLICY` (a manual clock that never
/// moves: a refund gives back the whole charge).
async fn start() -> (SocketAddr, JoinHandle<()>) {
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new(Nanos::ZERO)));
    let engine = Engine::from_toml(POLICY, Nanos::from_secs(T0)).unwrap();
    let layer = RateLimitLayer::new(engine, clock).plans(server::demo_caller);
    let app = Router::new().route(PATH, get(accepted_stream)).layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        server::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

/// A 429 of the concurrency limit (not of the rate limit).
async fn assert_concurrency_refusal(refused: Streaming, what: &str) {
    assert_eq!(refused.status, 429, "{what}");
    let body: serde_json::Value = serde_json::from_slice(&refused.rest().await).unwrap();
    assert_eq!(
        body["error"]["code"], "CONCURRENT_LIMIT",
        "{what}: refused for another reason: {body}"
    );
}

#[test]
fn a_refunded_stream_keeps_its_concurrency_slot_until_it_closes() {
    run(async {
        let (addr, task) = start().await;

        // The first stream: 202, its one unit of the minute given back at
        // once (the headers say so).
        let mut first = stream(addr, PATH, &KEY).await;
        assert_eq!(first.status, 202);
        assert_eq!(first.header_value("x-ratelimit-limit"), "1");
        assert_eq!(first.header_value("x-ratelimit-remaining"), "1");
        assert_eq!(first.next_data().await.as_deref(), Some("0"));

        // While it streams, a second request of the key is refused by the
        // concurrency limit: the slot is still taken. (A refusal by the
        // concurrency limit, not the rate limit: the 202's unit went back
        // at once.)
        let second = stream(addr, PATH, &KEY).await;
        assert_ne!(
            second.status, 202,
            "a second request was admitted while the first (refunded) stream still held the key's only concurrency slot"
        );
        assert_concurrency_refusal(second, "second request").await;
        assert_eq!(first.next_data().await.as_deref(), Some("1"));

        // The client goes away: once the server notices, the slot is free,
        // and the minute's one unit is still there (refunded).
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut third = loop {
            let s = stream(addr, PATH, &KEY).await;
            if s.status == 202 {
                break s;
            }
            assert_concurrency_refusal(s, "third request").await;
            assert!(Instant::now() < deadline, "no slot freed within 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Admitted (one per minute, the clock still): the first was refunded;
        // and this one's 202 is refunded too.
        assert_eq!(third.header_value("x-ratelimit-remaining"), "1");
        assert_eq!(third.next_data().await.as_deref(), Some("0"));
        task.abort();
    });
}
