//! Scenario tests for `policies/s4e.toml` against the S4E rate-limit page
//! (`shared/seeds/000_*.txt`): tiers with burst tokens, per-endpoint limits,
//! 5 concurrent SSE streams, exemptions, free 304s, `X-RateLimit-*` and
//! `Retry-After` headers and the `{"status":"error",...}` 429 body.
//!
//! The engine's zero is 2024-04-28T12:00:00Z (Unix 1 714 305 600), a whole
//! minute, so calendar minutes start at multiples of 60 s.

use serde_json::json;
use tollgate::Nanos;
use tollgate::policy::{Admission, Denial, Engine, Outcome, Request, RequestError};

const T0: u64 = 1_714_305_600;

fn engine() -> Engine {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/s4e.toml"))
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

/// `X-RateLimit-Limit/Remaining/Reset` of an allowed response.
fn ok_headers(limit: u32, remaining: u32, reset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("X-RateLimit-Limit", limit.to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset.to_string()),
    ]
}

/// The headers of a 429: the page's block (Limit, Remaining 0, Reset) and
/// `Retry-After`.
fn denied_headers(limit: u32, reset: u64, retry: u64) -> Vec<(&'static str, String)> {
    let mut h = ok_headers(limit, 0, reset);
    h.push(("Retry-After", retry.to_string()));
    h
}

/// The page's 429 body for a wait of `retry` seconds.
fn body(retry: u64) -> serde_json::Value {
    json!({
        "status": "error",
        "error": {
            "code": "rate_limited",
            "message": format!("Rate limit exceeded. Retry after {retry} seconds."),
            "retry_after": retry,
        }
    })
}

fn get<'a>(key: &'a str, plan: &'a str) -> Request<'a> {
    Request::new("GET", "/api/assets").key(key).plan(plan)
}

#[test]
fn s4e_standard_first_request_headers() {
    let e = engine();
    let a = admit(e.check(&get("k", "standard"), Nanos::ZERO).unwrap());
    assert_eq!(a.headers, ok_headers(100, 99, T0 + 60));
}

#[test]
fn s4e_standard_headers_match_page_example_87_remaining() {
    // Page: "X-RateLimit-Limit: 100 / Remaining: 87 / Reset: 1714305660".
    let e = engine();
    let mut last = None;
    for _ in 0..13 {
        last = Some(admit(e.check(&get("k", "standard"), secs(5)).unwrap()));
    }
    assert_eq!(last.unwrap().headers, ok_headers(100, 87, 1_714_305_660));
}

#[test]
fn s4e_standard_21st_burst_request_denied() {
    let e = engine();
    let req = get("k", "standard");
    for i in 0..20 {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(100, 99 - i, T0 + 60), "request {i}");
    }
    // The burst of 20 is spent; one token comes back every 60 s / 100 = 0.6 s.
    let d = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(d.status, 429);
    assert_eq!(d.retry_after, Some(ms(600)));
    assert_eq!(d.headers, denied_headers(100, T0 + 60, 1));
    assert_eq!(d.body, body(1));
    // Nothing was charged by the refusal; just before the token is back,
    // still refused.
    deny(e.check(&req, ms(599)).unwrap());
    // "Burst tokens are replenished at the per-minute rate": one at 0.6 s.
    let a = admit(e.check(&req, ms(600)).unwrap());
    assert_eq!(a.headers, ok_headers(100, 79, T0 + 60));
    deny(e.check(&req, ms(600)).unwrap());
    admit(e.check(&req, ms(1_200)).unwrap());
}

#[test]
fn s4e_standard_101st_request_in_a_minute_denied_with_retry_after() {
    let e = engine();
    let req = get("k", "standard");
    // 20 at once, then one per 0.6 s: the 100th lands at 48 s.
    for i in 0..100u64 {
        let now = if i < 20 {
            Nanos::ZERO
        } else {
            ms((i - 19) * 600)
        };
        let a = admit(e.check(&req, now).unwrap());
        assert_eq!(
            a.headers,
            ok_headers(100, 99 - u32::try_from(i).unwrap(), T0 + 60),
            "request {i}"
        );
    }
    // The 101st at 48.6 s has a burst token but the minute is full: retry at
    // the next calendar minute, 11.4 s away, announced as 12 s.
    let d = deny(e.check(&req, ms(48_600)).unwrap());
    assert_eq!(d.retry_after, Some(ms(11_400)));
    assert_eq!(d.headers, denied_headers(100, T0 + 60, 12));
    assert_eq!(d.body, body(12));
    deny(e.check(&req, ms(59_999)).unwrap());
    // The new minute: a fresh window (and a full burst by then).
    let a = admit(e.check(&req, secs(60)).unwrap());
    assert_eq!(a.headers, ok_headers(100, 99, T0 + 120));
}

#[test]
fn s4e_retry_after_rounds_up_and_is_never_zero() {
    let e = engine();
    let req = get("k", "standard");
    for i in 0..100u64 {
        let now = if i < 20 {
            Nanos::ZERO
        } else {
            ms((i - 19) * 600)
        };
        admit(e.check(&req, now).unwrap());
    }
    // 1 ms before the window ends: the wait is 1 ms, announced as 1 s.
    let d = deny(e.check(&req, ms(59_999)).unwrap());
    assert_eq!(d.retry_after, Some(ms(1)));
    assert_eq!(d.headers, denied_headers(100, T0 + 60, 1));
    assert_eq!(d.body, body(1));
    // The page's example: 23 s before the reset, Retry-After: 23.
    let d = deny(e.check(&req, secs(37)).unwrap());
    assert_eq!(d.headers, denied_headers(100, 1_714_305_660, 23));
    assert_eq!(d.body, body(23));
}

#[test]
fn s4e_premium_burst_100_and_1000_per_minute() {
    let e = engine();
    let req = get("p", "premium");
    for _ in 0..100 {
        admit(e.check(&req, Nanos::ZERO).unwrap());
    }
    // 101st at once: the burst of 100 is spent, a token every 60 ms.
    let d = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(ms(60)));
    assert_eq!(d.headers, denied_headers(1000, T0 + 60, 1));
    // Then one per 60 ms: the 1000th at 54 s.
    for i in 100..1000u64 {
        let a = admit(e.check(&req, ms((i - 99) * 60)).unwrap());
        if i == 999 {
            assert_eq!(a.headers, ok_headers(1000, 0, T0 + 60));
        }
    }
    let d = deny(e.check(&req, ms(54_060)).unwrap());
    assert_eq!(d.retry_after, Some(ms(5_940)));
    assert_eq!(d.headers, denied_headers(1000, T0 + 60, 6));
    assert_eq!(d.body, body(6));
}

#[test]
fn s4e_premium_headers_match_page_example_942_remaining() {
    // Page: "X-RateLimit-Limit: 1000 / Remaining: 942 / Reset: 1714305660".
    let e = engine();
    let req = get("p", "premium");
    let mut last = None;
    for _ in 0..58 {
        last = Some(admit(e.check(&req, secs(30)).unwrap()));
    }
    assert_eq!(last.unwrap().headers, ok_headers(1000, 942, 1_714_305_660));
}

#[test]
fn s4e_enterprise_burst_500_and_10000_per_minute() {
    let e = engine();
    let req = get("e", "enterprise");
    for _ in 0..500 {
        admit(e.check(&req, Nanos::ZERO).unwrap());
    }
    let d = deny(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(d.retry_after, Some(ms(6)));
    assert_eq!(d.headers, denied_headers(10_000, T0 + 60, 1));
    // One per 6 ms: the 10 000th at 57 s.
    for i in 500..10_000u64 {
        admit(e.check(&req, ms((i - 499) * 6)).unwrap());
    }
    let d = deny(e.check(&req, ms(57_006)).unwrap());
    assert_eq!(d.retry_after, Some(ms(2_994)));
    assert_eq!(d.headers, denied_headers(10_000, T0 + 60, 3));
}

#[test]
fn s4e_keys_have_separate_budgets() {
    let e = engine();
    for _ in 0..20 {
        admit(e.check(&get("a", "standard"), Nanos::ZERO).unwrap());
    }
    deny(e.check(&get("a", "standard"), Nanos::ZERO).unwrap());
    let b = admit(e.check(&get("b", "standard"), Nanos::ZERO).unwrap());
    assert_eq!(b.headers, ok_headers(100, 99, T0 + 60));
}

/// `n` calls to `method path` pass at `now`, the next one is refused by the
/// endpoint's own per-minute limit, and the tier still has room.
fn endpoint_per_minute(method: &str, path: &str, n: u32) {
    let e = engine();
    let req = Request::new(method, path).key("k").plan("standard");
    let now = secs(10);
    for i in 0..n {
        let a = admit(e.check(&req, now).unwrap());
        // The endpoint's window binds: it has the fewest left.
        assert_eq!(a.headers, ok_headers(n, n - 1 - i, T0 + 60), "call {i}");
    }
    let d = deny(e.check(&req, now).unwrap());
    assert_eq!(d.retry_after, Some(secs(50)));
    assert_eq!(d.headers, denied_headers(n, T0 + 60, 50));
    assert_eq!(d.body, body(50));
    // The endpoint calls were also tier requests; the tier is not spent.
    let a = admit(e.check(&get("k", "standard"), now).unwrap());
    assert_eq!(a.headers, ok_headers(100, 99 - n, T0 + 60));
    // Next minute, the endpoint is open again.
    admit(e.check(&req, secs(60)).unwrap());
}

#[test]
fn s4e_scan_create_11th_in_a_minute_denied() {
    endpoint_per_minute("POST", "/api/scan/create", 10);
}

#[test]
fn s4e_findings_export_6th_in_a_minute_denied() {
    endpoint_per_minute("POST", "/api/findings/export", 5);
}

#[test]
fn s4e_assets_bulk_6th_in_a_minute_denied() {
    endpoint_per_minute("POST", "/api/assets/bulk", 5);
}

#[test]
fn s4e_login_11th_in_a_minute_denied() {
    endpoint_per_minute("POST", "/api/user/auth/login", 10);
}

#[test]
fn s4e_endpoint_limits_are_per_key() {
    let e = engine();
    let a = Request::new("POST", "/api/findings/export")
        .key("a")
        .plan("standard");
    for _ in 0..5 {
        admit(e.check(&a, Nanos::ZERO).unwrap());
    }
    deny(e.check(&a, Nanos::ZERO).unwrap());
    let b = Request::new("POST", "/api/findings/export")
        .key("b")
        .plan("standard");
    admit(e.check(&b, Nanos::ZERO).unwrap());
}

#[test]
fn s4e_other_endpoints_use_tier_default() {
    let e = engine();
    // Same paths with another method, and other paths: only the tier (burst
    // 20) applies, not the 5 or 10 per minute.
    for (method, path) in [
        ("GET", "/api/scan/create"),
        ("GET", "/api/findings/export"),
        ("POST", "/api/findings"),
        ("POST", "/api/assets/bulk/extra"),
    ] {
        let req = Request::new(method, path).key(path).plan("standard");
        for i in 0..20 {
            let a = admit(e.check(&req, Nanos::ZERO).unwrap());
            assert_eq!(
                a.headers,
                ok_headers(100, 99 - i, T0 + 60),
                "{method} {path}"
            );
        }
        let d = deny(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(d.retry_after, Some(ms(600)), "{method} {path}");
    }
}

#[test]
fn s4e_sixth_sse_stream_denied_and_freed_on_drop() {
    let e = engine();
    let stream = Request::new("GET", "/api/events/stream")
        .key("k")
        .plan("standard");
    let mut open: Vec<Admission<'_>> = (0..5)
        .map(|_| admit(e.check(&stream, Nanos::ZERO).unwrap()))
        .collect();
    // "The connection itself counts": 5 requests of the minute are used.
    assert_eq!(open[4].headers, ok_headers(100, 95, T0 + 60));
    let d = deny(e.check(&stream, secs(1)).unwrap());
    assert_eq!(d.status, 429);
    // A concurrency refusal: no exact wait can be promised; the page's
    // shapes still announce one, the shortest (never 0). "Every API
    // response includes rate limit headers": the minute as it stands (the
    // refused stream charged nothing: 95 left), then Retry-After.
    assert_eq!(d.retry_after, None);
    let mut expected = ok_headers(100, 95, T0 + 60);
    expected.push(("Retry-After", "1".to_string()));
    assert_eq!(d.headers, expected);
    assert_eq!(d.body, body(1));
    // Another key has its own 5 streams.
    let other = Request::new("GET", "/api/events/stream")
        .key("k2")
        .plan("standard");
    let _o = admit(e.check(&other, secs(1)).unwrap());
    // A stream ends: a sixth may open. The refused one was not charged.
    drop(open.pop());
    let a = admit(e.check(&stream, secs(2)).unwrap());
    assert_eq!(a.headers, ok_headers(100, 94, T0 + 60));
    open.push(a);
    deny(e.check(&stream, secs(2)).unwrap());
    // Completing a stream frees its slot too.
    e.complete(open.pop().unwrap(), 200, secs(3));
    open.push(admit(e.check(&stream, secs(3)).unwrap()));
    // Ordinary requests are not limited by open streams.
    admit(e.check(&get("k", "standard"), secs(3)).unwrap());
}

#[test]
fn s4e_304_costs_nothing() {
    let e = engine();
    let req = get("k", "standard");
    let mut a = admit(e.check(&req, Nanos::ZERO).unwrap());
    assert_eq!(a.headers, ok_headers(100, 99, T0 + 60));
    // Refunded before the response goes out, the headers say what it cost:
    // nothing ("without consuming a rate limit token").
    assert!(e.refund(&mut a, 304, Nanos::ZERO));
    assert_eq!(a.headers[..2], ok_headers(100, 100, T0 + 60)[..2]);
    assert!(!e.refund(&mut a, 304, Nanos::ZERO), "refunded once");
    e.complete(a, 304, secs(1));
    // The token came back: the next request sees 99 left again.
    let a = admit(e.check(&req, secs(1)).unwrap());
    assert_eq!(a.headers, ok_headers(100, 99, T0 + 60));
    // A 200 is counted.
    e.complete(a, 200, secs(1));
    let a = admit(e.check(&req, secs(1)).unwrap());
    assert_eq!(a.headers, ok_headers(100, 98, T0 + 60));
    assert!(e.refunds(304));
    assert!(!e.refunds(200));
    assert!(!e.refunds(429));
}

#[test]
fn s4e_304_gives_back_burst_tokens_too() {
    let e = engine();
    let req = get("k", "standard");
    // 50 conditional GETs at one instant, all 304: the burst of 20 never
    // runs out.
    for _ in 0..50 {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        e.complete(a, 304, Nanos::ZERO);
    }
    for i in 0..20 {
        let a = admit(e.check(&req, Nanos::ZERO).unwrap());
        assert_eq!(a.headers, ok_headers(100, 99 - i, T0 + 60));
    }
    deny(e.check(&req, Nanos::ZERO).unwrap());
}

#[test]
fn s4e_health_exempt() {
    let e = engine();
    let req = get("k", "standard");
    for _ in 0..20 {
        admit(e.check(&req, Nanos::ZERO).unwrap());
    }
    deny(e.check(&req, Nanos::ZERO).unwrap());
    // Health checks pass even with the budget spent, count nothing and need
    // no key.
    for _ in 0..1_000 {
        assert!(matches!(
            e.check(
                &Request::new("GET", "/api/health").key("k").plan("standard"),
                Nanos::ZERO
            )
            .unwrap(),
            Outcome::Exempt
        ));
    }
    assert!(matches!(
        e.check(&Request::new("GET", "/api/health"), Nanos::ZERO)
            .unwrap(),
        Outcome::Exempt
    ));
    assert!(matches!(
        e.check(&Request::new("GET", "/api/health?deep=1"), Nanos::ZERO)
            .unwrap(),
        Outcome::Exempt
    ));
    // Only GET /api/health.
    let post = Request::new("POST", "/api/health")
        .key("k")
        .plan("standard");
    deny(e.check(&post, Nanos::ZERO).unwrap());
    // A fresh key's health checks leave its budget whole.
    let fresh = get("f", "standard");
    let _ = e
        .check(
            &Request::new("GET", "/api/health").key("f").plan("standard"),
            Nanos::ZERO,
        )
        .unwrap();
    let a = admit(e.check(&fresh, Nanos::ZERO).unwrap());
    assert_eq!(a.headers, ok_headers(100, 99, T0 + 60));
}

#[test]
fn s4e_unknown_or_missing_plan_and_no_key_are_caller_errors() {
    let e = engine();
    assert_eq!(
        e.check(&get("k", "gold"), Nanos::ZERO).unwrap_err(),
        RequestError::UnknownPlan("gold".into())
    );
    assert_eq!(
        e.check(&Request::new("GET", "/api/assets").key("k"), Nanos::ZERO)
            .unwrap_err(),
        RequestError::MissingPlan
    );
    // S4E has no anonymous tier.
    assert_eq!(
        e.check(
            &Request::new("GET", "/api/assets").ip([10, 0, 0, 1].into()),
            Nanos::ZERO
        )
        .unwrap_err(),
        RequestError::Unauthenticated
    );
}

/// A 304 that comes back after its minute is over gives nothing back: the
/// token it was charged expired with minute 0, and taking one off minute 1
/// would let minute 1 admit 101 counted requests on a 100/min tier (found by
/// review: the refund was made as of the response's time).
#[test]
fn s4e_304_completed_in_a_later_minute_gives_the_new_minute_nothing() {
    let e = engine();
    let req = get("k", "standard");
    // A slow conditional GET admitted at 59 s (minute 0).
    let slow = admit(e.check(&req, ms(59_000)).unwrap());
    // Minute 1: 100 ordinary requests (200 OK), one per 0.6 s (the burst's
    // refill rate, so only the minute window can bind).
    for i in 0..100u64 {
        let t = ms(60_000 + 600 * i);
        let a = admit(e.check(&req, t).unwrap());
        e.complete(a, 200, t);
    }
    // The slow one ends with 304 at 119.5 s.
    e.complete(slow, 304, ms(119_500));
    // Minute 1 already holds 100 counted requests: a 101st is refused.
    let o = e.check(&req, ms(119_500)).unwrap();
    assert!(
        matches!(o, Outcome::Denied(_)),
        "101st counted request of minute 1 admitted: {o:?}"
    );
}

/// The same for the burst (GCRA) member: a 304 that ends after the bucket
/// refilled gives back only what its charge still weighs — here nothing — so
/// 20 requests at one instant stay the most a burst of 20 allows.
#[test]
fn s4e_304_completed_after_the_bucket_refilled_gives_nothing_back() {
    let e = engine();
    let req = get("k", "standard");
    // A slow conditional GET at 0 s; the bucket is full again by 30 s.
    let slow = admit(e.check(&req, Nanos::ZERO).unwrap());
    for _ in 0..20 {
        let a = admit(e.check(&req, secs(30)).unwrap());
        e.complete(a, 200, secs(30));
    }
    e.complete(slow, 304, secs(30));
    let o = e.check(&req, secs(30)).unwrap();
    assert!(
        matches!(o, Outcome::Denied(_)),
        "21st request at one instant admitted on a burst of 20: {o:?}"
    );
}

/// A 304 that comes back within its minute, a moment after its request,
/// still costs nothing of the minute: a hundred of them leave the tier's 100
/// counted requests free (the burst member keeps the 50 ms each one took:
/// a late refund gives back what the charge still weighs).
#[test]
fn s4e_304_completed_within_its_minute_still_costs_nothing() {
    let e = engine();
    let req = get("k", "standard");
    for i in 0..100u64 {
        // A conditional GET answered 304 50 ms later, then an ordinary one.
        let t = ms(600 * i);
        let a = admit(e.check(&req, t).unwrap());
        e.complete(a, 304, t + ms(50));
        let b = admit(e.check(&req, t + ms(100)).unwrap());
        e.complete(b, 200, t + ms(100));
    }
    // The minute holds the 100 ordinary requests and nothing of the 304s.
    let o = e.check(&req, ms(59_900)).unwrap();
    assert!(matches!(o, Outcome::Denied(_)), "{o:?}");
}
