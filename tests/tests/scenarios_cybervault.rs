//! Scenario tests for `policies/cybervault.toml` against the CyberVault
//! rate-limit page (`shared/seeds/001_*.txt`): sliding 60 s windows per
//! minute and per hour, burst allowances, cost factors, the org-wide burst
//! pool, temporary boosts, the `Warning` header past 80 %,
//! `X-RateLimit-Window: sliding_60s` and the 429 body with `quota_reset_at`.
//!
//! The engine's zero is 2024-04-28T12:00:00Z (Unix 1 714 305 600). Sliding
//! windows count from the engine's zero; `X-RateLimit-Reset` is when the
//! sliding estimate is back to zero (the end of the next window).

use serde_json::json;
use tollgate::Nanos;
use tollgate::policy::{Admission, Denial, Engine, Outcome, Per, Polled, Request, Ticket, Usage};

const T0: u64 = 1_714_305_600;

fn engine() -> Engine {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/cybervault.toml"
    ))
    .unwrap();
    Engine::from_toml(&src, Nanos::from_secs(T0)).unwrap()
}

fn ms(n: u64) -> Nanos {
    Nanos::from_millis(n)
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

fn warning(pct: u32) -> String {
    format!("299 - \"Rate Limit\" \"{pct}% of quota consumed\"")
}

/// The headers of an allowed response; `Warning` from 80 % used.
fn ok_headers(limit: u32, remaining: u32, reset: u64) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("X-RateLimit-Limit", limit.to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset.to_string()),
        ("X-RateLimit-Window", "sliding_60s".to_string()),
    ];
    let used = limit - remaining;
    if used * 100 >= 80 * limit {
        h.push(("Warning", warning(used * 100 / limit)));
    }
    h
}

/// `h` with the window the hour's: `X-RateLimit-Window: sliding_3600s`.
fn hourly(mut h: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    for (name, value) in &mut h {
        if *name == "X-RateLimit-Window" {
            *value = "sliding_3600s".to_string();
        }
    }
    h
}

/// The headers of a 429: remaining 0 (so 100 % consumed) and `Retry-After`.
fn denied_headers(limit: u32, reset: u64, retry: u64) -> Vec<(&'static str, String)> {
    let mut h = ok_headers(limit, 0, reset);
    h.push(("Retry-After", retry.to_string()));
    h
}

fn body(retry: u64, quota_reset_at: &str) -> serde_json::Value {
    json!({
        "error": {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Request quota exhausted. Please retry after the specified window.",
            "retry_after": retry,
            "quota_reset_at": quota_reset_at,
        }
    })
}

fn get<'a>(key: &'a str, plan: &'a str) -> Request<'a> {
    Request::new("GET", "/api/v1/threats").key(key).plan(plan)
}

fn usage(class: &str, per: Per, used: u32, limit: u32) -> Usage {
    Usage {
        class: class.into(),
        per,
        used,
        limit,
    }
}

#[test]
fn cybervault_developer_first_request_headers() {
    let e = engine();
    let a = admit(e.check(&get("k", "developer"), Nanos::ZERO).unwrap());
    // Sliding: the estimate is zero again at the end of the next minute.
    assert_eq!(a.headers, ok_headers(60, 59, T0 + 120));
}

#[test]
fn cybervault_developer_11th_burst_request_denied() {
    let e = engine();
    let req = get("k", "developer");
    for i in 0..10 {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(60, 59 - i, T0 + 120));
    }
    // Burst of 10 spent; tokens come back at 60 per minute, one a second.
    let d = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(d.status, 429);
    assert_eq!(d.retry_after, Some(secs(1)));
    assert_eq!(d.headers, denied_headers(60, T0 + 120, 1));
    assert_eq!(d.body, body(1, "2024-04-28T12:02:00Z"));
    deny(e.check(&req, ms(999)).unwrap());
    let a = admit(e.check(&req, secs(1)).unwrap());
    assert_eq!(a.headers, ok_headers(60, 49, T0 + 120));
}

#[test]
fn cybervault_developer_61st_in_sliding_minute_denied() {
    let e = engine();
    let req = get("k", "developer");
    // 10 at once, then one a second: the 60th at 50 s.
    for k in 0..60u64 {
        admit(e.check(&req, secs(k.saturating_sub(9))).unwrap());
    }
    // The 61st at 51 s: the burst has a token, the minute is full. One more
    // fits once the previous minute's 60 weigh 59: 1 s into the next one.
    let d = deny(e.check(&req, secs(51)).unwrap());
    assert_eq!(d.retry_after, Some(secs(10)));
    assert_eq!(d.headers, denied_headers(60, T0 + 120, 10));
    assert_eq!(d.body, body(10, "2024-04-28T12:02:00Z"));
    // Sliding, not fixed: at the minute's turn the old minute still counts.
    deny(e.check(&req, secs(60)).unwrap());
    deny(e.check(&req, ms(60_999)).unwrap());
    let a = admit(e.check(&req, secs(61)).unwrap());
    assert_eq!(a.headers, ok_headers(60, 0, T0 + 180));
    deny(e.check(&req, secs(61)).unwrap());
    // A second later the weight of the old minute drops by one more.
    admit(e.check(&req, secs(62)).unwrap());
}

#[test]
fn cybervault_developer_1001st_in_sliding_hour_denied() {
    let e = engine();
    let req = get("k", "developer");
    // One every 2 s keeps the sliding minute at 30: 1 000 in 1 998 s.
    for i in 0..1000u64 {
        let a = admit(e.check(&req, secs(2 * i)).unwrap());
        if i == 999 {
            // The hour has the fewest left: it binds, and the Window header
            // names it (found by review: it said sliding_60s).
            assert_eq!(a.headers, hourly(ok_headers(1000, 0, T0 + 7200)));
        }
    }
    // One more fits once the first hour's 1 000 weigh 999: 3.6 s into the
    // next hour, 1 603.6 s from now.
    let d = deny(e.check(&req, secs(2000)).unwrap());
    assert_eq!(d.retry_after, Some(ms(1_603_600)));
    assert_eq!(d.headers, hourly(denied_headers(1000, T0 + 7200, 1604)));
    assert_eq!(d.body, body(1604, "2024-04-28T14:00:00Z"));
    deny(e.check(&req, ms(3_603_599)).unwrap());
    admit(e.check(&req, ms(3_603_600)).unwrap());
}

#[test]
fn cybervault_professional_burst_50_and_page_headers() {
    let e = engine();
    let req = get("p", "professional");
    for _ in 0..50 {
        admit(e.check(&req, Nanos::ZERO).unwrap());
    }
    let d = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(ms(200)));
    assert_eq!(d.headers, denied_headers(300, T0 + 120, 1));
    // The page's example block: Limit 300, Remaining 247, sliding_60s.
    let mut last = None;
    for i in 1..=3u64 {
        last = Some(admit(e.check(&req, ms(200 * i)).unwrap()));
    }
    assert_eq!(last.unwrap().headers, ok_headers(300, 247, T0 + 120));
}

#[test]
fn cybervault_enterprise_burst_200() {
    let e = engine();
    let req = get("e", "enterprise");
    for i in 0..200 {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(2000, 1999 - i, T0 + 120));
    }
    let d = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(ms(30)));
    assert_eq!(d.headers, denied_headers(2000, T0 + 120, 1));
}

#[test]
fn cybervault_threat_scan_costs_5() {
    let e = engine();
    let scan = Request::new("POST", "/api/v1/threats/scan")
        .key("k")
        .plan("developer");
    let a = admit(e.check(&scan, Nanos::ZERO).unwrap());
    // The plan's minute has the fewest scans left: 55 of 60 units, 11 scans
    // of 5 (the endpoint's own 20/min has 19). Headers count in scans of 5
    // units: Limit 60 / 5 = 12, Remaining 55 / 5 = 11.
    assert_eq!(a.headers, ok_headers(12, 11, T0 + 120));
    // One scan is 5 units of the plan's minute and hour.
    assert_eq!(
        e.usage("k", "developer", Nanos::ZERO).unwrap(),
        [
            usage("api", Per::Minute, 5, 60),
            usage("api", Per::Hour, 5, 1000)
        ]
    );
    admit(e.check(&scan, Nanos::ZERO).unwrap());
    // Two scans take the developer burst of 10 units; a third needs 5 more,
    // 5 s of refill. Scans are async ("async queue depth"): it waits in the
    // key's queue instead of a 429, and is served at 5 s exactly.
    let t = queued(e.check(&scan, Nanos::ZERO).unwrap());
    assert_eq!(t.retry_at(), Some(secs(5)));
    let t = pending(t, ms(4_999));
    let a = admit(ready(t, secs(5)));
    // 45 of 60 units left: 9 scans (the endpoint has 17).
    assert_eq!(a.headers, ok_headers(12, 9, T0 + 120));
    // The burst is empty again; a synchronous request is refused (not
    // queued), and a second later sees 60 − 15 − 1 left.
    deny(e.check(&get("k", "developer"), secs(5)).unwrap());
    let a = admit(e.check(&get("k", "developer"), secs(6)).unwrap());
    assert_eq!(a.headers, ok_headers(60, 44, T0 + 120));
}

#[test]
fn cybervault_threat_scan_21st_in_a_minute_denied() {
    let e = engine();
    let scan = Request::new("POST", "/api/v1/threats/scan")
        .key("k")
        .plan("enterprise");
    for i in 0..20 {
        let a = admit(e.check(&scan, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(20, 19 - i, T0 + 120));
    }
    // 20 scans (100 units) fit the enterprise burst; the endpoint's 20 per
    // sliding minute do not let a 21st in until the old 20 weigh 19: 3 s
    // into the next minute, longer than the queue's 60 s wait: a 429.
    let d = deny(e.check(&scan, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(secs(63)));
    assert_eq!(d.headers, denied_headers(20, T0 + 120, 63));
    assert_eq!(d.body, body(63, "2024-04-28T12:02:00Z"));
    // Three seconds later the wait is 60 s: it queues, and is served then.
    let t = queued(e.check(&scan, secs(3)).unwrap());
    assert_eq!(t.retry_at(), Some(secs(63)));
    drop(t); // cancelled: it took nothing
    assert_eq!(
        e.usage("k", "enterprise", Nanos::ZERO).unwrap(),
        [
            usage("api", Per::Minute, 100, 2000),
            usage("api", Per::Hour, 100, 100_000)
        ]
    );
    // A millisecond before the slot opens, a scan waits for it and gets it.
    let t = queued(e.check(&scan, ms(62_999)).unwrap());
    let t = pending(t, ms(62_999));
    admit(ready(t, secs(63)));
}

#[test]
fn cybervault_report_costs_8() {
    let e = engine();
    let report = Request::new("POST", "/api/v1/reports/generate")
        .key("k")
        .plan("developer");
    let a = admit(e.check(&report, Nanos::ZERO).unwrap());
    assert_eq!(a.headers, ok_headers(5, 4, T0 + 120));
    assert_eq!(
        e.usage("k", "developer", Nanos::ZERO).unwrap(),
        [
            usage("api", Per::Minute, 8, 60),
            usage("api", Per::Hour, 8, 1000)
        ]
    );
    // 8 of the 10-unit burst used: another 8 need 6 s of refill. Reports are
    // async: the second waits in the queue and is served at 6 s.
    let t = queued(e.check(&report, Nanos::ZERO).unwrap());
    assert_eq!(t.retry_at(), Some(secs(6)));
    let t = pending(t, ms(5_999));
    admit(ready(t, secs(6)));
}

#[test]
fn cybervault_report_6th_in_a_minute_denied() {
    let e = engine();
    let report = Request::new("POST", "/api/v1/reports/generate")
        .key("k")
        .plan("enterprise");
    for _ in 0..5 {
        admit(e.check(&report, Nanos::ZERO).unwrap());
    }
    // 5 in the minute; a 6th once the old 5 weigh 4: 12 s into the next.
    let d = deny(e.check(&report, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(secs(72)));
    assert_eq!(d.headers, denied_headers(5, T0 + 120, 72));
    assert_eq!(e.usage("k", "enterprise", Nanos::ZERO).unwrap()[0].used, 40);
}

#[test]
fn cybervault_webhooks_polling_120_per_minute_cost_1() {
    let e = engine();
    let poll = Request::new("GET", "/api/v1/webhooks")
        .key("k")
        .plan("enterprise");
    for _ in 0..120 {
        admit(e.check(&poll, Nanos::ZERO).unwrap());
    }
    let d = deny(e.check(&poll, Nanos::ZERO).unwrap());
    // The old 120 weigh 119 half a second into the next minute.
    assert_eq!(d.retry_after, Some(ms(60_500)));
    assert_eq!(d.headers, denied_headers(120, T0 + 120, 61));
    assert_eq!(
        e.usage("k", "enterprise", Nanos::ZERO).unwrap(),
        [
            usage("api", Per::Minute, 120, 2000),
            usage("api", Per::Hour, 120, 100_000)
        ]
    );
}

/// "Async Queue Depth" 50 (Developer) is per key *and endpoint*, as every
/// queue is (`QueueSpec::depth` said "per identity"): with the burst taken,
/// a developer key queues 50 scans and, on its own line, 50 reports; the
/// 51st of each is refused; another key has lines of its own.
#[test]
fn cybervault_queue_depth_is_per_key_and_endpoint() {
    let e = engine();
    let scan = Request::new("POST", "/api/v1/threats/scan")
        .key("k")
        .plan("developer");
    let report = Request::new("POST", "/api/v1/reports/generate")
        .key("k")
        .plan("developer");
    // Two scans take the developer burst (10 units); everything after waits.
    let _a = admit(e.check(&scan, Nanos::ZERO).unwrap());
    let _b = admit(e.check(&scan, Nanos::ZERO).unwrap());
    let mut waiting = Vec::new();
    for r in [&scan, &report] {
        for _ in 0..50 {
            waiting.push(queued(e.check(r, Nanos::ZERO).unwrap()));
        }
        // The line is full: refused, nothing charged.
        let d = deny(e.check(r, Nanos::ZERO).unwrap());
        assert_eq!(d.status, 429);
        // "Every API response includes rate limit headers": the binding
        // window as it stands, then the queue's longest wait (found by
        // review: only Retry-After was sent).
        let names: Vec<&str> = d.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "X-RateLimit-Window",
                "Retry-After"
            ],
            "{:?}",
            d.headers
        );
        assert_eq!(d.headers[4].1, "60");
    }
    assert_eq!(waiting.len(), 100);
    // Another developer key: its own lines.
    let other = Request::new("POST", "/api/v1/threats/scan")
        .key("o")
        .plan("developer");
    admit(e.check(&other, Nanos::ZERO).unwrap());
    admit(e.check(&other, Nanos::ZERO).unwrap());
    let _t = queued(e.check(&other, Nanos::ZERO).unwrap());
}

#[test]
fn cybervault_compliance_audit_costs_3_and_10_per_minute() {
    let e = engine();
    let audit = Request::new("GET", "/api/v1/compliance/audit")
        .key("k")
        .plan("enterprise");
    for _ in 0..10 {
        admit(e.check(&audit, Nanos::ZERO).unwrap());
    }
    let d = deny(e.check(&audit, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(secs(66)));
    assert_eq!(d.headers, denied_headers(10, T0 + 120, 66));
    assert_eq!(e.usage("k", "enterprise", Nanos::ZERO).unwrap()[0].used, 30);
    // Developer: 3 audits are 9 of the 10-unit burst; a 4th waits 2 s.
    let dev = Request::new("GET", "/api/v1/compliance/audit")
        .key("d")
        .plan("developer");
    for _ in 0..3 {
        admit(e.check(&dev, Nanos::ZERO).unwrap());
    }
    assert_eq!(
        deny(e.check(&dev, Nanos::ZERO).unwrap()).retry_after,
        Some(secs(2))
    );
}

#[test]
fn cybervault_org_pool_shared_by_two_keys() {
    let e = engine();
    let a = get("a", "enterprise").org("acme");
    let b = get("b", "enterprise").org("acme");
    // Key a takes its own burst of 200 — and the org's pool of 200.
    for _ in 0..200 {
        admit(e.check(&a, Nanos::ZERO).unwrap());
    }
    // Key b has its own quota untouched, but the org pool is empty: refused,
    // with b's own window in the headers and the pool's wait (2 000 per
    // minute: 30 ms per unit).
    let d = deny(e.check(&b, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(ms(30)));
    assert_eq!(d.headers, denied_headers(2000, T0 + 120, 1));
    assert_eq!(d.body, body(1, "2024-04-28T12:02:00Z"));
    deny(e.check(&b, ms(29)).unwrap());
    let ok = admit(e.check(&b, ms(30)).unwrap());
    assert_eq!(ok.headers, ok_headers(2000, 1999, T0 + 120));
    // Another organisation, and a key with no organisation, are not in
    // acme's pool.
    admit(
        e.check(&get("c", "enterprise").org("other"), ms(30))
            .unwrap(),
    );
    admit(e.check(&get("d", "enterprise"), ms(30)).unwrap());
    // The pool charged a refused request nothing: b's refusals left it
    // with exactly the one unit refilled at 30 ms, now spent.
    deny(e.check(&b, ms(30)).unwrap());
}

#[test]
fn cybervault_one_key_exhausted_others_keep_their_quota() {
    let e = engine();
    let a = get("a", "developer").org("acme");
    let b = get("b", "developer").org("acme");
    for _ in 0..10 {
        admit(e.check(&a, Nanos::ZERO).unwrap());
    }
    deny(e.check(&a, Nanos::ZERO).unwrap());
    let ok = admit(e.check(&b, Nanos::ZERO).unwrap());
    assert_eq!(ok.headers, ok_headers(60, 59, T0 + 120));
}

#[test]
fn cybervault_boost_5x_then_expires() {
    let e = engine();
    let req = get("k", "developer");
    e.boost("k", 5, secs(30));
    // 5x: 300 per minute, 5 000 per hour, a burst of 50.
    for i in 0..50 {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(300, 299 - i, T0 + 120));
    }
    let d = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(ms(200)));
    assert_eq!(d.headers, denied_headers(300, T0 + 120, 1));
    assert_eq!(
        e.usage("k", "developer", ms(29_999)).unwrap(),
        [
            usage("api", Per::Minute, 50, 300),
            usage("api", Per::Hour, 50, 5000)
        ]
    );
    // Only this key is boosted.
    let other = admit(e.check(&get("o", "developer"), Nanos::ZERO).unwrap());
    assert_eq!(other.headers, ok_headers(60, 59, T0 + 120));
    // At `until` the boost is over: back to 60, with the 50 already used,
    // and the page's "85% of quota consumed" warning.
    assert_eq!(
        e.usage("k", "developer", secs(30)).unwrap(),
        [
            usage("api", Per::Minute, 50, 60),
            usage("api", Per::Hour, 50, 1000)
        ]
    );
    let a = admit(e.check(&req, secs(30)).unwrap());
    assert_eq!(a.headers, ok_headers(60, 9, T0 + 120));
    assert!(a.headers.contains(&("Warning", warning(85))));
}

#[test]
fn cybervault_boost_factor_1_removes_it() {
    let e = engine();
    e.boost("k", 3, secs(3600));
    assert_eq!(
        e.usage("k", "developer", Nanos::ZERO).unwrap()[0],
        usage("api", Per::Minute, 0, 180)
    );
    e.boost("k", 1, secs(3600));
    assert_eq!(
        e.usage("k", "developer", Nanos::ZERO).unwrap()[0],
        usage("api", Per::Minute, 0, 60)
    );
}

#[test]
fn cybervault_warning_header_past_80_percent() {
    let e = engine();
    let req = get("k", "developer");
    // 10 at once, then one a second; request k leaves 59 − k of the minute.
    for k in 0..51u64 {
        let a = admit(e.check(&req, secs(k.saturating_sub(9))).unwrap());
        let warn = a
            .headers
            .iter()
            .find(|(n, _)| *n == "Warning")
            .map(|(_, v)| v.clone());
        match k {
            // 47 of 60 used: 78 %, no warning.
            0..=46 => assert_eq!(warn, None, "request {k}"),
            // 48 of 60: exactly 80 %.
            47 => assert_eq!(warn, Some(warning(80))),
            // 51 of 60: the page's 85 %.
            50 => {
                assert_eq!(warn, Some(warning(85)));
                assert_eq!(a.headers, ok_headers(60, 9, T0 + 120));
            }
            _ => assert!(warn.is_some(), "request {k}"),
        }
    }
}

/// "Temporary 5x boost": for an Enterprise key in an organisation the org
/// pool (200 at once) capped the boosted key at what it had unboosted; the
/// pool is now charged at the larger of the org's and the key's boost, so
/// the key gets 5x its burst of 200. An unboosted key of the organisation
/// still sees the pool at its own size: empty after the boosted key's 1 000.
#[test]
fn cybervault_boost_5x_lifts_the_org_pool_for_the_boosted_key() {
    let e = engine();
    let k = get("k", "enterprise").org("acme");
    e.boost("k", 5, secs(3_600));
    let admitted = (0..1001)
        .filter(|_| e.check(&k, Nanos::ZERO).unwrap().is_allowed())
        .count();
    assert_eq!(admitted, 1000, "5x-boosted enterprise key: burst 1 000");
    // The unboosted pool: 6 s of its 2 000 a minute taken, more than its
    // burst of 200 allows: refused, with the key's own window in the headers.
    let d = deny(
        e.check(&get("b", "enterprise").org("acme"), Nanos::ZERO)
            .unwrap(),
    );
    assert_eq!(d.headers, denied_headers(2000, T0 + 120, 1));
}

/// Boosting the organisation lifts its pool for every key: five unboosted
/// Enterprise keys of a 5x-boosted org take 200 each (their own bursts)
/// from a pool of 1 000; a sixth finds it empty.
#[test]
fn cybervault_org_boost_lifts_the_pool_for_all_its_keys() {
    let e = engine();
    e.boost_org("acme", 5, secs(3_600));
    for key in ["a", "b", "c", "d", "e"] {
        let r = get(key, "enterprise").org("acme");
        let admitted = (0..201)
            .filter(|_| e.check(&r, Nanos::ZERO).unwrap().is_allowed())
            .count();
        assert_eq!(admitted, 200, "key {key}");
    }
    deny(
        e.check(&get("f", "enterprise").org("acme"), Nanos::ZERO)
            .unwrap(),
    );
    // Another organisation's pool is not boosted: its first key takes all
    // 200, its second none.
    let admitted = (0..201)
        .filter(|_| {
            e.check(&get("o1", "enterprise").org("other"), Nanos::ZERO)
                .unwrap()
                .is_allowed()
        })
        .count();
    assert_eq!(admitted, 200);
    deny(
        e.check(&get("o2", "enterprise").org("other"), Nanos::ZERO)
            .unwrap(),
    );
}

/// The page shows `Warning: 299-"Rate Limit" "85% of quota consumed"` and
/// calls it an "RFC 7234 warning header"; RFC 7234 §5.5 writes a warning as
/// `warn-code SP warn-agent SP warn-text [SP warn-date]`, where the agent is
/// required (`-` when unknown). The page's text has neither the space nor
/// the agent, so we send the RFC form, a deliberate reading recorded in
/// `policies/README.md`: `299 - "Rate Limit" "85% of quota consumed"`.
#[test]
fn cybervault_warning_header_has_the_rfc_7234_form() {
    let e = engine();
    let req = get("k", "developer");
    // 10 at once, then one a second: the 51st leaves 9 of 60 (85 % used).
    let mut last = None;
    for k in 0..51u64 {
        last = Some(admit(e.check(&req, secs(k.saturating_sub(9))).unwrap()));
    }
    let a = last.unwrap();
    let w = a
        .headers
        .iter()
        .find(|(n, _)| *n == "Warning")
        .map(|(_, v)| v.as_str())
        .unwrap();
    assert_eq!(w, "299 - \"Rate Limit\" \"85% of quota consumed\"");
    assert_ne!(
        w, "299-\"Rate Limit\" \"85% of quota consumed\"",
        "the page's form"
    );
    // warn-code SP warn-agent SP warn-text: three parts, the text quoted.
    let mut parts = w.splitn(3, ' ');
    assert_eq!(parts.next(), Some("299"));
    assert_eq!(parts.next(), Some("-"));
    assert_eq!(
        parts.next(),
        Some("\"Rate Limit\" \"85% of quota consumed\"")
    );
}

#[test]
fn cybervault_window_header_on_every_response() {
    let e = engine();
    for (i, plan) in ["developer", "professional", "enterprise"]
        .into_iter()
        .enumerate()
    {
        let key = format!("k{i}");
        let a = admit(e.check(&get(&key, plan), Nanos::ZERO).unwrap());
        assert!(
            a.headers
                .contains(&("X-RateLimit-Window", "sliding_60s".into())),
            "{plan}: {:?}",
            a.headers
        );
    }
}
