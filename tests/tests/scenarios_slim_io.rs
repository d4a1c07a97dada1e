//! Scenario tests for `policies/slim-io.toml` against the Slim.io
//! rate-limit page (`shared/seeds/004_*.txt`): per-tenant limits per minute
//! and per hour, burst as concurrent requests, scan calls limited apart,
//! per-endpoint limits, no rate-limit headers at all, and the
//! `{"status":"error",...}` 429 body without a wait.
//!
//! Readings (see `policies/README.md`): the tenant is the request's
//! organisation; requests past the concurrency limit wait in one FIFO per
//! tenant, at most the per-minute limit in all, each for at most a minute;
//! scan limits are twice the general ones. The engine's zero is 2024-04-28T12:00:00Z (Unix 1 714 305 600), a
//! whole hour.

use serde_json::json;
use tollgate::Nanos;
use tollgate::policy::{Admission, Denial, Engine, Outcome, Per, Polled, Request, Ticket, Usage};

const T0: u64 = 1_714_305_600;

fn engine() -> Engine {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/slim-io.toml"
    ))
    .unwrap();
    Engine::from_toml(&src, Nanos::from_secs(T0)).unwrap()
}

fn secs(n: u64) -> Nanos {
    Nanos::from_secs(n)
}

#[track_caller]
fn admit(o: Outcome<'_>) -> Admission<'_> {
    match o {
        Outcome::Allowed(a) => {
            assert!(a.headers.is_empty(), "Slim.io sends no rate-limit headers");
            a
        }
        other => panic!("expected Allowed, got {other:?}"),
    }
}

/// A refusal: always the page's body, never a header.
#[track_caller]
fn deny(o: Outcome<'_>) -> Denial {
    match o {
        Outcome::Denied(d) => {
            assert_eq!(d.status, 429);
            assert_eq!(d.headers, [], "no headers, not even Retry-After");
            assert_eq!(d.body, body());
            d
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

fn body() -> serde_json::Value {
    json!({
        "status": "error",
        "error": {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Rate limit exceeded. Please retry later.",
        }
    })
}

fn req<'a>(method: &'a str, path: &'a str, tenant: &'a str, plan: &'a str) -> Request<'a> {
    Request::new(method, path)
        .key("key-1")
        .org(tenant)
        .plan(plan)
}

fn usage(class: &str, per: Per, used: u32, limit: u32) -> Usage {
    Usage {
        class: class.into(),
        per,
        used,
        limit,
    }
}

/// Sends `n` requests from second `start` on, `per_minute` at the start of
/// each minute, each finished at once; all must pass. Returns the second
/// after the last minute used.
fn spend(e: &Engine, r: &Request<'_>, start: u64, n: u64, per_minute: u64) -> u64 {
    let mut t = start;
    let mut left = n;
    while left > 0 {
        for _ in 0..left.min(per_minute) {
            let a = admit(e.check(r, secs(t)).unwrap());
            e.complete(a, 200, secs(t));
        }
        left = left.saturating_sub(per_minute);
        t += 60;
    }
    t
}

#[test]
fn slim_io_no_headers() {
    let e = engine();
    let r = req("GET", "/assets", "acme", "free");
    for _ in 0..60 {
        admit(e.check(&r, Nanos::ZERO).unwrap());
    }
    let d = deny(e.check(&r, secs(15)).unwrap());
    // The wait is known to the server, just not sent.
    assert_eq!(d.retry_after, Some(secs(45)));
}

/// Minute and hour of one plan's general limits, per tenant.
fn minute_and_hour(plan: &str, minute: u64, hour: u64) {
    let e = engine();
    let r = req("GET", "/assets", "acme", plan);
    spend(&e, &r, 0, minute, minute);
    assert_eq!(
        deny(e.check(&r, secs(20)).unwrap()).retry_after,
        Some(secs(40))
    );
    let t = spend(&e, &r, 60, hour - minute, minute);
    // The hour is spent; the minute has room.
    assert_eq!(
        deny(e.check(&r, secs(t)).unwrap()).retry_after,
        Some(secs(3600 - t))
    );
    admit(e.check(&r, secs(3600)).unwrap());
}

#[test]
fn slim_io_free_60_per_minute_1000_per_hour() {
    minute_and_hour("free", 60, 1000);
}

#[test]
fn slim_io_starter_300_per_minute_10000_per_hour() {
    minute_and_hour("starter", 300, 10_000);
}

#[test]
fn slim_io_professional_1000_per_minute_50000_per_hour() {
    minute_and_hour("professional", 1000, 50_000);
}

#[test]
fn slim_io_limits_are_per_tenant() {
    let e = engine();
    let a = Request::new("GET", "/assets")
        .key("a")
        .org("acme")
        .plan("free");
    let b = Request::new("GET", "/assets")
        .key("b")
        .org("acme")
        .plan("free");
    for _ in 0..30 {
        admit(e.check(&a, Nanos::ZERO).unwrap());
        admit(e.check(&b, Nanos::ZERO).unwrap());
    }
    deny(e.check(&a, Nanos::ZERO).unwrap());
    deny(e.check(&b, Nanos::ZERO).unwrap());
    assert_eq!(
        e.usage("acme", "free", Nanos::ZERO).unwrap()[0],
        usage("api", Per::Minute, 60, 60)
    );
    // Another tenant is untouched.
    admit(
        e.check(&req("GET", "/assets", "globex", "free"), Nanos::ZERO)
            .unwrap(),
    );
}

/// `max` requests in flight per tenant; the next is refused (and charged
/// nothing) until one finishes.
fn concurrency(plan: &str, max: u32, depth: u32) {
    let e = engine();
    let r = req("GET", "/assets", "acme", plan);
    let scan = req("POST", "/scans", "acme", plan);
    // In-flight requests of both classes share the tenant's slots.
    let mut held: Vec<Admission<'_>> = (0..max)
        .map(|i| {
            let which = if i % 2 == 0 { &r } else { &scan };
            admit(e.check(which, Nanos::ZERO).unwrap())
        })
        .collect();
    let before = e.usage("acme", plan, Nanos::ZERO).unwrap();
    // "Requests beyond the burst limit are queued, not rejected": one more
    // waits (one FIFO per tenant, all routes), charged nothing yet.
    let first = queued(e.check(&r, Nanos::ZERO).unwrap());
    assert_eq!(first.retry_at(), None, "waits for a slot, not for time");
    let scan_waits = queued(e.check(&scan, Nanos::ZERO).unwrap());
    // Another key of the tenant queues behind; another tenant is not held.
    let other_key = Request::new("GET", "/assets")
        .key("key-2")
        .org("acme")
        .plan(plan);
    let second = queued(e.check(&other_key, Nanos::ZERO).unwrap());
    let _g = admit(
        e.check(&req("GET", "/assets", "globex", plan), Nanos::ZERO)
            .unwrap(),
    );
    assert_eq!(e.usage("acme", plan, Nanos::ZERO).unwrap(), before);
    // Nothing ends: everyone keeps waiting.
    let first = pending(first, secs(1));
    let second = pending(second, secs(1));
    // One finishes: the first in line gets its slot, the second still waits.
    e.complete(held.pop().unwrap(), 200, secs(1));
    let second = pending(second, secs(1));
    held.push(admit(ready(first, secs(1))));
    let second = pending(second, secs(1));
    // A slot frees while the others wait: a newcomer does not take it but
    // queues behind (FIFO), and the scan, first in line (one line for all
    // the tenant's routes), gets it before the second.
    drop(held.pop());
    let newcomer = queued(e.check(&r, secs(2)).unwrap());
    let newcomer = pending(newcomer, secs(2));
    let second = pending(second, secs(2));
    held.push(admit(ready(scan_waits, secs(2))));
    // Cancelling leaves the line: the second is still served.
    drop(newcomer);
    drop(held.pop());
    held.push(admit(ready(second, secs(3))));
    // The queue holds at most `depth` in all, whatever the routes ("queued
    // ... up to the per-minute limit", per tenant; found by review: it was
    // `depth` per route): one more of either route is refused with the
    // page's body.
    let line: Vec<_> = (0..depth)
        .map(|i| {
            queued(
                e.check(if i % 2 == 0 { &r } else { &scan }, secs(4))
                    .unwrap(),
            )
        })
        .collect();
    deny(e.check(&r, secs(4)).unwrap());
    deny(e.check(&scan, secs(4)).unwrap());
    // A request that waited a minute without a slot is refused.
    let mut line = line.into_iter();
    let head = line.next().unwrap();
    let head = pending(head, secs(63));
    deny(ready(head, secs(64)));
}

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

#[test]
fn slim_io_burst_is_concurrency() {
    concurrency("free", 10, 60);
}

#[test]
fn slim_io_starter_burst_30_concurrent() {
    concurrency("starter", 30, 300);
}

#[test]
fn slim_io_professional_burst_100_concurrent() {
    concurrency("professional", 100, 1000);
}

#[test]
fn slim_io_scan_calls_limited_separately() {
    let e = engine();
    let api = req("GET", "/assets", "acme", "free");
    let trigger = req("POST", "/scans", "acme", "free");
    let worker = req("GET", "/workers/w-7/status", "acme", "free");
    spend(&e, &api, 0, 60, 60);
    deny(e.check(&api, Nanos::ZERO).unwrap());
    // Scan calls (triggering, worker status) have their own, higher limit.
    for _ in 0..60 {
        let a = admit(e.check(&trigger, Nanos::ZERO).unwrap());
        e.complete(a, 202, Nanos::ZERO);
        let a = admit(e.check(&worker, Nanos::ZERO).unwrap());
        e.complete(a, 200, Nanos::ZERO);
    }
    assert_eq!(
        deny(e.check(&worker, secs(10)).unwrap()).retry_after,
        Some(secs(50))
    );
    assert_eq!(
        e.usage("acme", "free", secs(10)).unwrap(),
        [
            usage("api", Per::Minute, 60, 60),
            usage("api", Per::Hour, 60, 1000),
            usage("scan", Per::Minute, 120, 120),
            usage("scan", Per::Hour, 120, 2000),
        ]
    );
    // `/workers` itself, and other methods, are general calls.
    deny(
        e.check(&req("GET", "/workers", "acme", "free"), secs(10))
            .unwrap(),
    );
    deny(
        e.check(&req("GET", "/scans", "acme", "free"), secs(10))
            .unwrap(),
    );
}

#[test]
fn slim_io_parallel_scans_5_per_hour() {
    let e = engine();
    let par = req("POST", "/scans/parallel", "acme", "professional");
    spend(&e, &par, 0, 5, 5);
    assert_eq!(
        deny(e.check(&par, secs(600)).unwrap()).retry_after,
        Some(secs(3000))
    );
    // They are scan calls: 5 of the scan minute, none of the general one.
    assert_eq!(
        e.usage("acme", "professional", Nanos::ZERO).unwrap(),
        [
            usage("api", Per::Minute, 0, 1000),
            usage("api", Per::Hour, 0, 50_000),
            usage("scan", Per::Minute, 5, 2000),
            usage("scan", Per::Hour, 5, 100_000),
        ]
    );
    // Single scans are not parallel scans.
    admit(
        e.check(&req("POST", "/scans", "acme", "professional"), secs(600))
            .unwrap(),
    );
    // Another tenant has its own 5.
    admit(
        e.check(
            &req("POST", "/scans/parallel", "globex", "professional"),
            secs(600),
        )
        .unwrap(),
    );
    admit(e.check(&par, secs(3600)).unwrap());
}

#[test]
fn slim_io_governance_reconcile_2_per_hour() {
    let e = engine();
    let r = req("POST", "/governance/reconcile", "acme", "starter");
    spend(&e, &r, 0, 2, 2);
    assert_eq!(
        deny(e.check(&r, secs(1)).unwrap()).retry_after,
        Some(secs(3599))
    );
    // A general call: it spends the general minute.
    assert_eq!(
        e.usage("acme", "starter", secs(1)).unwrap()[0],
        usage("api", Per::Minute, 2, 300)
    );
    admit(e.check(&r, secs(3600)).unwrap());
}

#[test]
fn slim_io_connectors_20_per_hour() {
    let e = engine();
    let r = req("POST", "/connectors", "acme", "free");
    spend(&e, &r, 0, 20, 20);
    assert_eq!(
        deny(e.check(&r, secs(1200)).unwrap()).retry_after,
        Some(secs(2400))
    );
    // Listing connectors is not creating them.
    admit(
        e.check(&req("GET", "/connectors", "acme", "free"), secs(1200))
            .unwrap(),
    );
}

#[test]
fn slim_io_classifiers_validate_30_per_minute() {
    let e = engine();
    let r = req("POST", "/classifiers/validate", "acme", "free");
    spend(&e, &r, 0, 30, 30);
    assert_eq!(
        deny(e.check(&r, secs(5)).unwrap()).retry_after,
        Some(secs(55))
    );
    // 30 of the general 60 are left for other calls.
    spend(&e, &req("GET", "/assets", "acme", "free"), 5, 30, 30);
    deny(
        e.check(&req("GET", "/assets", "acme", "free"), secs(5))
            .unwrap(),
    );
    admit(e.check(&r, secs(60)).unwrap());
}
