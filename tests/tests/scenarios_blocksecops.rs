//! Scenario tests for `policies/blocksecops.toml` against the BlockSecOps
//! rate-limit page (`shared/seeds/003_*.txt`): per-minute, per-hour and
//! per-day limits (unlimited for Professional), per-endpoint limits,
//! concurrent scans per plan with the `CONCURRENT_LIMIT` body, keys of one
//! organisation sharing limits, and the usage read-out.
//!
//! The engine's zero is 2024-04-28T00:00:00Z (Unix 1 714 262 400), a whole
//! UTC day, so calendar minutes, hours and days all start at multiples of
//! their length.

use serde_json::json;
use tollgate::Nanos;
use tollgate::policy::{Admission, Denial, Engine, Outcome, Per, Request, RequestError, Usage};

/// 2024-04-28T00:00:00Z.
const D0: u64 = 1_714_262_400;

fn engine() -> Engine {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/blocksecops.toml"
    ))
    .unwrap();
    Engine::from_toml(&src, Nanos::from_secs(D0)).unwrap()
}

fn secs(n: u64) -> Nanos {
    Nanos::from_secs(n)
}

#[track_caller]
fn admit(o: Outcome<'_>) -> Admission<'_> {
    match o {
        Outcome::Allowed(a) => a,
        other => panic!("expected Allowed, got {other:?}"),
    }
}

#[track_caller]
fn deny(o: Outcome<'_>) -> Denial {
    match o {
        Outcome::Denied(d) => d,
        other => panic!("expected Denied, got {other:?}"),
    }
}

fn ok_headers(limit: u32, remaining: u32, reset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("X-RateLimit-Limit", limit.to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset.to_string()),
    ]
}

fn denied_headers(limit: u32, reset: u64, retry: u64) -> Vec<(&'static str, String)> {
    let mut h = ok_headers(limit, 0, reset);
    h.push(("Retry-After", retry.to_string()));
    h
}

fn body(retry: u64) -> serde_json::Value {
    json!({
        "error": {
            "code": "RATE_LIMITED",
            "message": format!("Rate limit exceeded. Please retry after {retry} seconds."),
            "retry_after": retry,
        }
    })
}

fn concurrent_body(current: u32, max: u32) -> serde_json::Value {
    json!({
        "error": {
            "code": "CONCURRENT_LIMIT",
            "message": "Maximum concurrent scans reached. Please wait for a scan to complete.",
            "current_scans": current,
            "max_scans": max,
        }
    })
}

fn get<'a>(key: &'a str, org: &'a str, plan: &'a str) -> Request<'a> {
    Request::new("GET", "/api/v1/contracts")
        .key(key)
        .org(org)
        .plan(plan)
}

/// Sends `n` requests from second `start` on, `per_minute` at the start of
/// each calendar minute; all must pass. Returns the second after the last
/// minute used.
fn spend(e: &Engine, req: &Request<'_>, start: u64, n: u64, per_minute: u64) -> u64 {
    let mut t = start;
    let mut left = n;
    while left > 0 {
        for _ in 0..left.min(per_minute) {
            admit(e.check(req, secs(t)).unwrap());
        }
        left = left.saturating_sub(per_minute);
        t += 60;
    }
    t
}

/// The minute, hour and day rows of one plan: the request after each limit
/// is refused by that limit, at the calendar boundary.
fn minute_hour_day(plan: &str, minute: u32, hour: u32, day: u32) {
    let e = engine();
    let req = get("k", "org", plan);
    let (m, h, d) = (u64::from(minute), u64::from(hour), u64::from(day));
    // Minute: `minute` at 0 s, the next refused until 60 s.
    for i in 0..minute {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(minute, minute - 1 - i, D0 + 60));
    }
    let r = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after, Some(secs(60)));
    assert_eq!(r.headers, denied_headers(minute, D0 + 60, 60));
    assert_eq!(r.body, body(60));
    // Hour: fill it a minute at a time; the next is refused by the hour
    // (the minute has room) until the next calendar hour.
    let t = spend(&e, &req, 60, h - m, m);
    let r = deny(e.check(&req, secs(t)).unwrap());
    assert_eq!(r.headers, denied_headers(hour, D0 + 3600, 3600 - t));
    assert_eq!(r.body, body(3600 - t));
    // Day: fill the following hours; the next is refused by the day.
    let mut hour_start = 3600;
    let mut used = h;
    while used < d {
        let n = h.min(d - used);
        spend(&e, &req, hour_start, n, m);
        used += n;
        hour_start += 3600;
    }
    let r = deny(e.check(&req, secs(hour_start)).unwrap());
    assert_eq!(
        r.headers,
        denied_headers(day, D0 + 86_400, 86_400 - hour_start)
    );
    assert_eq!(r.body, body(86_400 - hour_start));
    // The next UTC day starts afresh.
    let a = admit(e.check(&req, secs(86_400)).unwrap());
    assert_eq!(a.headers, ok_headers(minute, minute - 1, D0 + 86_460));
}

#[test]
fn blocksecops_free_minute_hour_day() {
    minute_hour_day("free", 10, 100, 500);
}

#[test]
fn blocksecops_developer_minute_hour_day() {
    minute_hour_day("developer", 60, 1000, 10_000);
}

#[test]
fn blocksecops_startup_minute_hour_day() {
    minute_hour_day("startup", 120, 5000, 50_000);
}

#[test]
fn blocksecops_free_headers_report_the_window_with_fewest_left() {
    let e = engine();
    let req = get("k", "org", "free");
    // 9 minutes of 10, then 9 in minute 9: minute 1 left, hour 1 left, day
    // 401 left; tie broken towards the longer window.
    spend(&e, &req, 0, 90, 10);
    for _ in 0..8 {
        admit(e.check(&req, secs(540)).unwrap());
    }
    let a = admit(e.check(&req, secs(540)).unwrap());
    assert_eq!(a.headers, ok_headers(100, 1, D0 + 3600));
    // The 100th: both at 0, the hour reported.
    let a = admit(e.check(&req, secs(540)).unwrap());
    assert_eq!(a.headers, ok_headers(100, 0, D0 + 3600));
    // Minute and hour both refuse: the longer wait is announced.
    let r = deny(e.check(&req, secs(540)).unwrap());
    assert_eq!(r.headers, denied_headers(100, D0 + 3600, 3060));
}

#[test]
fn blocksecops_retry_after_45_matches_page() {
    let e = engine();
    let req = get("k", "org", "free");
    for _ in 0..10 {
        admit(e.check(&req, secs(15)).unwrap());
    }
    let r = deny(e.check(&req, secs(15)).unwrap());
    // Page: "Please retry after 45 seconds.", Retry-After: 45.
    assert_eq!(r.headers, denied_headers(10, D0 + 60, 45));
    assert_eq!(r.body, body(45));
}

#[test]
fn blocksecops_professional_hour_and_day_unlimited() {
    let e = engine();
    let req = get("k", "org", "professional");
    for i in 0..300 {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(300, 299 - i, D0 + 60));
    }
    let r = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(r.headers, denied_headers(300, D0 + 60, 60));
    // 300 a minute for 2 hours: 36 000, more than any limited plan's hour
    // or a startup's day... all pass.
    spend(&e, &req, 60, 300 * 119, 300);
    assert_eq!(
        e.usage("org", "professional", secs(7_140)).unwrap(),
        [Usage {
            class: "api".into(),
            per: Per::Minute,
            used: 300,
            limit: 300
        }]
    );
}

#[test]
fn blocksecops_enterprise_is_custom_and_not_shipped() {
    let e = engine();
    assert_eq!(
        e.check(&get("k", "org", "enterprise"), Nanos::ZERO)
            .unwrap_err(),
        RequestError::UnknownPlan("enterprise".into())
    );
    assert_eq!(e.plans(), ["developer", "free", "professional", "startup"]);
}

#[test]
fn blocksecops_keys_of_one_org_share_limits() {
    let e = engine();
    let k1 = get("k1", "acme", "free");
    let k2 = get("k2", "acme", "free");
    for i in 0..5 {
        let a = admit(e.check(&k1, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(10, 9 - 2 * i, D0 + 60));
        let a = admit(e.check(&k2, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(10, 8 - 2 * i, D0 + 60));
    }
    deny(e.check(&k1, Nanos::ZERO).unwrap());
    deny(e.check(&k2, Nanos::ZERO).unwrap());
    // A third key of the org is refused too; another org is not.
    deny(e.check(&get("k3", "acme", "free"), Nanos::ZERO).unwrap());
    let a = admit(e.check(&get("k4", "globex", "free"), Nanos::ZERO).unwrap());
    assert_eq!(a.headers, ok_headers(10, 9, D0 + 60));
    // The usage read-out is per organisation.
    assert_eq!(e.usage("acme", "free", Nanos::ZERO).unwrap()[0].used, 10);
}

#[test]
fn blocksecops_key_without_org_is_its_own_budget() {
    let e = engine();
    let lone = Request::new("GET", "/api/v1/contracts")
        .key("lone")
        .plan("free");
    for _ in 0..10 {
        admit(e.check(&lone, Nanos::ZERO).unwrap());
    }
    deny(e.check(&lone, Nanos::ZERO).unwrap());
    admit(e.check(&get("other", "acme", "free"), Nanos::ZERO).unwrap());
}

/// `max` scans of one org run at once; the next is refused with the
/// `CONCURRENT_LIMIT` body and no charge; a finished scan frees a slot.
fn concurrent_scans(plan: &str, max: u32) {
    let e = engine();
    let scan = |key| {
        Request::new("POST", "/api/v1/scans")
            .key(key)
            .org("acme")
            .plan(plan)
    };
    // The org's keys share the slots.
    let mut running: Vec<Admission<'_>> = (0..max)
        .map(|i| {
            let key = if i % 2 == 0 { "k1" } else { "k2" };
            admit(e.check(&scan(key), Nanos::ZERO).unwrap())
        })
        .collect();
    let before = e.usage("acme", plan, Nanos::ZERO).unwrap();
    assert_eq!(before[0].used, max);
    for key in ["k1", "k2"] {
        let r = deny(e.check(&scan(key), secs(1)).unwrap());
        assert_eq!(r.status, 429);
        assert_eq!(r.body, concurrent_body(max, max));
        assert_eq!(r.retry_after, None);
        assert!(r.headers.iter().all(|(n, _)| *n != "Retry-After"));
        // "Every API response includes rate limit information" (found by
        // review: this 429 had none).
        for name in [
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ] {
            assert!(
                r.headers.iter().any(|(n, _)| *n == name),
                "{name} missing: {:?}",
                r.headers
            );
        }
    }
    // Refusals charged nothing.
    assert_eq!(e.usage("acme", plan, secs(1)).unwrap(), before);
    // Other requests of the org, and other orgs' scans, are not held back.
    admit(e.check(&get("k1", "acme", plan), secs(1)).unwrap());
    let other = Request::new("POST", "/api/v1/scans")
        .key("x")
        .org("globex")
        .plan(plan);
    let _o = admit(e.check(&other, secs(1)).unwrap());
    // A scan completes: one slot.
    e.complete(running.pop().unwrap(), 201, secs(2));
    running.push(admit(e.check(&scan("k1"), secs(2)).unwrap()));
    deny(e.check(&scan("k2"), secs(2)).unwrap());
    // Dropping frees a slot too.
    drop(running.pop());
    running.push(admit(e.check(&scan("k2"), secs(3)).unwrap()));
}

#[test]
fn blocksecops_concurrent_scans_body_current_and_max() {
    // The page's example body: current_scans 3, max_scans 3 (Developer).
    concurrent_scans("developer", 3);
}

#[test]
fn blocksecops_free_one_concurrent_scan() {
    let e = engine();
    let scan = Request::new("POST", "/api/v1/scans")
        .key("k")
        .org("acme")
        .plan("free");
    let first = admit(e.check(&scan, Nanos::ZERO).unwrap());
    let r = deny(e.check(&scan, Nanos::ZERO).unwrap());
    assert_eq!(r.body, concurrent_body(1, 1));
    drop(first);
    admit(e.check(&scan, Nanos::ZERO).unwrap());
}

#[test]
fn blocksecops_startup_ten_concurrent_scans() {
    concurrent_scans("startup", 10);
}

#[test]
fn blocksecops_professional_25_concurrent_scans() {
    concurrent_scans("professional", 25);
}

#[test]
fn blocksecops_contracts_upload_50_per_hour() {
    let e = engine();
    let upload = Request::new("POST", "/api/v1/contracts/upload")
        .key("k")
        .org("acme")
        .plan("developer");
    for i in 0..50 {
        let a = admit(e.check(&upload, secs(120)).unwrap());
        // Minute: 59 − i left; the upload hour: 49 − i, fewer: it binds.
        assert_eq!(a.headers, ok_headers(50, 49 - i, D0 + 3600));
    }
    let r = deny(e.check(&upload, secs(120)).unwrap());
    assert_eq!(r.headers, denied_headers(50, D0 + 3600, 3480));
    assert_eq!(r.body, body(3480));
    // The general minute still has 10.
    let a = admit(e.check(&get("k", "acme", "developer"), secs(120)).unwrap());
    assert_eq!(a.headers, ok_headers(60, 9, D0 + 180));
    admit(e.check(&upload, secs(3600)).unwrap());
}

#[test]
fn blocksecops_scan_results_100_per_minute() {
    let e = engine();
    let results = Request::new("GET", "/api/v1/scans/abc123/results")
        .key("k")
        .org("acme")
        .plan("professional");
    for i in 0..100 {
        let a = admit(e.check(&results, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(100, 99 - i, D0 + 60));
    }
    let r = deny(e.check(&results, secs(20)).unwrap());
    assert_eq!(r.headers, denied_headers(100, D0 + 60, 40));
    assert_eq!(r.body, body(40));
    // Another scan's results share the limit (per org, not per scan).
    let other = Request::new("GET", "/api/v1/scans/def456/results")
        .key("k")
        .org("acme")
        .plan("professional");
    deny(e.check(&other, secs(20)).unwrap());
    admit(e.check(&results, secs(60)).unwrap());
}

#[test]
fn blocksecops_webhooks_10_per_hour() {
    let e = engine();
    let hook = Request::new("POST", "/api/v1/webhooks")
        .key("k")
        .org("acme")
        .plan("developer");
    for i in 0..10 {
        let a = admit(e.check(&hook, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(10, 9 - i, D0 + 3600));
    }
    let r = deny(e.check(&hook, secs(1800)).unwrap());
    assert_eq!(r.headers, denied_headers(10, D0 + 3600, 1800));
    assert_eq!(r.body, body(1800));
    // Listing webhooks is not webhook creation.
    admit(
        e.check(
            &Request::new("GET", "/api/v1/webhooks")
                .key("k")
                .org("acme")
                .plan("developer"),
            secs(1800),
        )
        .unwrap(),
    );
}

#[test]
fn blocksecops_usage_readout() {
    let e = engine();
    let req = get("k", "acme", "developer");
    // The page's example: current_usage minute 45, hour 823.
    // 12 full minutes (720), 58 in minute 12, then 45 in minute 13.
    spend(&e, &req, 0, 720, 60);
    for _ in 0..58 {
        admit(e.check(&req, secs(720)).unwrap());
    }
    for _ in 0..45 {
        admit(e.check(&req, secs(780)).unwrap());
    }
    let u = |per, used, limit| Usage {
        class: "api".into(),
        per,
        used,
        limit,
    };
    assert_eq!(
        e.usage("acme", "developer", secs(800)).unwrap(),
        [
            u(Per::Minute, 45, 60),
            u(Per::Hour, 823, 1000),
            u(Per::Day, 823, 10_000)
        ]
    );
    // Read-only, and the windows roll over on their calendar boundaries.
    assert_eq!(
        e.usage("acme", "developer", secs(840)).unwrap(),
        [
            u(Per::Minute, 0, 60),
            u(Per::Hour, 823, 1000),
            u(Per::Day, 823, 10_000)
        ]
    );
    assert_eq!(
        e.usage("acme", "developer", secs(3600)).unwrap(),
        [
            u(Per::Minute, 0, 60),
            u(Per::Hour, 0, 1000),
            u(Per::Day, 823, 10_000)
        ]
    );
    // By organisation: the key's name reads nothing.
    assert_eq!(e.usage("k", "developer", secs(800)).unwrap()[1].used, 0);
}
