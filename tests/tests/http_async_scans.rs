//! Asynchronous jobs behind the tower layer (BlockSecOps, `shared/seeds/003_*.txt`):
//! `POST /api/v1/scans` answers 202 at once and the scan runs on, yet the
//! page limits *concurrent scans* per plan (Free: 1; "Please wait for a
//! scan to complete"). Found by review: the layer released a request's
//! concurrency permit when its response body ended, so once the 202 was
//! sent the slot was free while the scan still ran, and the limit never
//! bound. A handler now keeps the permits for its job with
//! `tollgate::tower::Permits::keep` (or the `PermitGuard` axum extractor):
//! they are released when the body has ended *and* every guard is dropped.

mod http_common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_common::{Reply, T0, policy, run, send, server};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::policy::Engine;
use tollgate::tower::{Caller, PermitGuard, Permits, RateLimitLayer};
use tollgate::{ManualClock, Nanos};

const SCANS: &str = "/api/v1/scans";

/// `<plan>-<org>`: the BlockSecOps policy counts per organisation.
fn caller(key: &str) -> Option<Caller> {
    key.split_once('-')
        .map(|(plan, org)| Caller::new(plan).org(org))
}

/// The scans that are still running: each waits for its signal.
#[derive(Clone, Default)]
struct Jobs {
    running: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
}

impl Jobs {
    /// Starts a job that runs until [`finish_all`](Self::finish_all),
    /// holding `guard` (whatever it keeps) until then.
    fn spawn<G: Send + 'static>(&self, guard: G) {
        let (done, wait) = oneshot::channel();
        self.running.lock().unwrap().push(done);
        tokio::spawn(async move {
            let _ = wait.await;
            drop(guard);
        });
    }

    fn finish_all(&self) -> usize {
        let running: Vec<_> = std::mem::take(&mut *self.running.lock().unwrap());
        let n = running.len();
        for done in running {
            let _ = done.send(());
        }
        n
    }
}

/// 202 with the scan's id; the job keeps the request's permits (taken from
/// the request's extensions) until it ends.
async fn scan_keeping(
    State(jobs): State<Jobs>,
    permits: Option<Extension<Permits>>,
) -> impl IntoResponse {
    let guard = permits.map(|Extension(p)| p.keep());
    let holding = guard.as_ref().is_some_and(PermitGuard::is_holding);
    jobs.spawn(guard);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "scan_id": "scan_1", "status": "queued", "holding": holding })),
    )
}

/// The same, with the axum extractor.
async fn scan_extracting(State(jobs): State<Jobs>, guard: PermitGuard) -> impl IntoResponse {
    let holding = guard.is_holding();
    jobs.spawn(guard);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "scan_id": "scan_1", "status": "queued", "holding": holding })),
    )
}

/// A job that keeps nothing: the slot is the response body's only.
async fn scan_forgetting(State(jobs): State<Jobs>) -> impl IntoResponse {
    jobs.spawn(());
    (
        StatusCode::ACCEPTED,
        Json(json!({ "scan_id": "scan_1", "status": "queued" })),
    )
}

/// `scans` on `POST /api/v1/scans` (and an exempt `GET /health` that
/// reports whether its extractor holds anything) behind a layer on
/// `policy_src` (a manual clock that never moves).
async fn start<H, T>(policy_src: &str, scans: H) -> (SocketAddr, Jobs, JoinHandle<()>)
where
    H: axum::handler::Handler<T, Jobs>,
    T: 'static,
{
    let clock: &'static ManualClock = Box::leak(Box::new(ManualClock::new(Nanos::ZERO)));
    let engine = Engine::from_toml(policy_src, Nanos::from_secs(T0)).unwrap();
    let layer = RateLimitLayer::new(engine, clock).plans(caller);
    let jobs = Jobs::default();
    let app = Router::new()
        .route(SCANS, post(scans))
        .route(
            "/health",
            get(|guard: PermitGuard| async move { Json(json!({ "holding": guard.is_holding() })) }),
        )
        .with_state(jobs.clone())
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        server::serve(listener, app).await.unwrap();
    });
    (addr, jobs, task)
}

/// The seed's own policy, plus an exempt health check.
fn blocksecops() -> String {
    policy("blocksecops") + "\n[[exempt]]\nmethod = \"GET\"\npath = \"/health\"\n"
}

/// A refusal by the concurrent-scan limit (not the rate limit).
#[track_caller]
fn assert_concurrent_limit(r: &Reply, what: &str) {
    assert_eq!(r.status, 429, "{what}: {r:?}");
    let body = r.json();
    assert_eq!(
        body["error"]["code"], "CONCURRENT_LIMIT",
        "{what}: refused for another reason: {body}"
    );
}

/// Posts a scan until one is accepted (the slot frees once the server has
/// dropped the earlier request's permits); every refusal on the way must
/// be the concurrency limit's.
async fn post_until_accepted(addr: SocketAddr, key: &str, what: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = send(addr, "POST", SCANS, &[("authorization", key)]).await;
        if r.status == 202 {
            return r;
        }
        assert_concurrent_limit(&r, what);
        assert!(
            Instant::now() < deadline,
            "{what}: no scan slot freed within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_running_scan_keeps_its_concurrency_slot_after_the_202() {
    run(async {
        let (addr, jobs, task) = start(&blocksecops(), scan_keeping).await;
        let key = "Bearer free-acme";

        // The scan is accepted at once; its response is complete (read to
        // the end), but the scan runs on.
        let first = send(addr, "POST", SCANS, &[("authorization", key)]).await;
        assert_eq!(first.status, 202, "{first:?}");
        assert_eq!(first.header("x-ratelimit-limit"), "10");
        assert_eq!(first.header("x-ratelimit-remaining"), "9");
        // Give the server time to drop the finished body's share.
        tokio::time::sleep(Duration::from_millis(100)).await;

        // Free plan: one concurrent scan. "Please wait for a scan to complete."
        let second = send(addr, "POST", SCANS, &[("authorization", key)]).await;
        assert_ne!(
            second.status, 202,
            "a second scan was accepted while the first still ran (the free plan allows 1 concurrent scan)"
        );
        assert_concurrent_limit(&second, "second scan");
        let body = second.json();
        assert_eq!(body["error"]["current_scans"], 1, "{body}");
        assert_eq!(body["error"]["max_scans"], 1, "{body}");
        // The handler found the request's permits and kept them.
        assert_eq!(first.json()["holding"], true, "{first:?}");
        // Another organisation has a slot of its own.
        let other = send(
            addr,
            "POST",
            SCANS,
            &[("authorization", "Bearer free-globex")],
        )
        .await;
        assert_eq!(other.status, 202, "{other:?}");

        // The scans complete: the slot is free again.
        assert_eq!(jobs.finish_all(), 2);
        let third = post_until_accepted(addr, key, "third scan").await;
        // The refused scan was not charged: 2 of the minute's 10 spent.
        assert_eq!(third.header("x-ratelimit-remaining"), "8");
        jobs.finish_all();
        task.abort();
    });
}

#[test]
fn a_handler_that_keeps_nothing_frees_the_slot_when_its_body_ends() {
    run(async {
        let (addr, jobs, task) = start(&blocksecops(), scan_forgetting).await;
        let key = "Bearer free-acme";
        let first = send(addr, "POST", SCANS, &[("authorization", key)]).await;
        assert_eq!(first.status, 202, "{first:?}");
        // The job still runs, but nothing kept the permit: once the server
        // has dropped the finished body, a second scan is accepted.
        let second = post_until_accepted(addr, key, "second scan").await;
        assert_eq!(second.status, 202);
        assert_eq!(jobs.finish_all(), 2);
        task.abort();
    });
}

#[test]
fn the_axum_extractor_keeps_the_slot_and_holds_nothing_on_an_exempt_route() {
    run(async {
        let (addr, jobs, task) = start(&blocksecops(), scan_extracting).await;
        let key = "Bearer developer-acme";
        // Developer: 3 concurrent scans.
        for n in 0..3 {
            let r = send(addr, "POST", SCANS, &[("authorization", key)]).await;
            assert_eq!(r.status, 202, "scan {n}: {r:?}");
            assert_eq!(r.json()["holding"], true, "scan {n}: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fourth = send(addr, "POST", SCANS, &[("authorization", key)]).await;
        assert_concurrent_limit(&fourth, "fourth scan");
        assert_eq!(fourth.json()["error"]["max_scans"], 3);

        // An exempt route has no admission: its guard holds nothing.
        let health = send(addr, "GET", "/health", &[]).await;
        assert_eq!(health.status, 200, "{health:?}");
        assert_eq!(health.json()["holding"], false);

        assert_eq!(jobs.finish_all(), 3);
        post_until_accepted(addr, key, "scan after the three ended").await;
        jobs.finish_all();
        task.abort();
    });
}

/// One scan at a time and one request a minute, but a 202 is refunded.
const REFUNDING: &str = r#"
name = "refunding-scans"
refund_status = [202]
[response]
headers = "x-ratelimit"
body = "blocksecops"
[plans.free]
limits = [{ per = "minute", limit = 1 }]
[[endpoints]]
method = "POST"
path = "/api/v1/scans"
concurrency = { free = 1 }
"#;

#[test]
fn a_refunded_202_gives_its_unit_back_at_once_while_the_job_keeps_the_slot() {
    run(async {
        let (addr, jobs, task) = start(REFUNDING, scan_keeping).await;
        let key = "Bearer free-acme";
        let first = send(addr, "POST", SCANS, &[("authorization", key)]).await;
        assert_eq!(first.status, 202, "{first:?}");
        // The minute's one unit went back at once (the headers say so).
        assert_eq!(first.header("x-ratelimit-limit"), "1");
        assert_eq!(first.header("x-ratelimit-remaining"), "1");
        tokio::time::sleep(Duration::from_millis(100)).await;

        // The slot is still the job's: refused by the concurrency limit,
        // not the (refunded) rate limit.
        let second = send(addr, "POST", SCANS, &[("authorization", key)]).await;
        assert_concurrent_limit(&second, "second scan");

        assert_eq!(jobs.finish_all(), 1);
        let third = post_until_accepted(addr, key, "third scan").await;
        assert_eq!(third.header("x-ratelimit-remaining"), "1");
        jobs.finish_all();
        task.abort();
    });
}
