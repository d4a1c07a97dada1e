//! Headers and 429 bodies against the examples printed on the five seed
//! pages (`shared/seeds/`), pasted here verbatim.
#![cfg(feature = "serde")]

use serde_json::{Value, json};
use tollgate::Nanos;
use tollgate::body::{BodyStyle, Refusal, body};
use tollgate::headers::{HeaderStyle, RateLimitInfo};

fn refused(limit: u32, retry_secs: u64, reset_after: Nanos) -> RateLimitInfo {
    RateLimitInfo {
        limit,
        remaining: 0,
        reset_after,
        retry_after: Some(Nanos::from_secs(retry_secs)),
        refused: true,
        window: Nanos::from_secs(60),
        used_percent: None,
    }
}

fn page(text: &str) -> Value {
    serde_json::from_str(text).expect("the page's example is JSON")
}

/// S4E: "429 Response" example body and headers.
#[test]
fn s4e_429_body_and_headers() {
    let now = Nanos::from_secs(1_714_305_660 - 60);
    let info = refused(100, 23, Nanos::from_secs(60));
    let want = page(
        r#"{
  "status": "error",
  "error": {
    "code": "rate_limited",
    "message": "Rate limit exceeded. Retry after 23 seconds.",
    "retry_after": 23
  }
}"#,
    );
    assert_eq!(body(BodyStyle::S4e, &Refusal::Rate(info), now), want);
    // HTTP/1.1 429 Too Many Requests
    // Retry-After: 23
    // X-RateLimit-Limit: 100
    // X-RateLimit-Remaining: 0
    // X-RateLimit-Reset: 1714305660
    let mut h = HeaderStyle::x_ratelimit().render(&info, now);
    h.sort();
    assert_eq!(
        h,
        [
            ("Retry-After", "23".to_string()),
            ("X-RateLimit-Limit", "100".to_string()),
            ("X-RateLimit-Remaining", "0".to_string()),
            ("X-RateLimit-Reset", "1714305660".to_string()),
        ]
    );
}

/// CyberVault: body with ISO-8601 `quota_reset_at`, sliding window header,
/// Warning past 80 %.
#[test]
fn cybervault_429_body_and_headers() {
    // quota_reset_at 2024-03-15T14:30:00Z = 1710513000; retry after 42 s.
    let now = Nanos::from_secs(1_710_513_000 - 42);
    let info = refused(300, 42, Nanos::from_secs(42));
    let want = page(
        r#"{
"error": {
"code": "RATE_LIMIT_EXCEEDED",
"message": "Request quota exhausted. Please retry after the specified window.",
"retry_after": 42,
"quota_reset_at": "2024-03-15T14:30:00Z"
}
}"#,
    );
    assert_eq!(body(BodyStyle::Cybervault, &Refusal::Rate(info), now), want);
    // X-RateLimit-Limit: 300 / Remaining: 247 / Reset: 1709827200 /
    // X-RateLimit-Window: sliding_60s / Warning when past 80 %.
    let style = HeaderStyle::x_ratelimit()
        .with_window_name("sliding_60s")
        .with_warning_at(80);
    let ok = RateLimitInfo {
        limit: 300,
        remaining: 247,
        reset_after: Nanos::from_secs(30),
        retry_after: None,
        refused: false,
        window: Nanos::from_secs(60),
        used_percent: None,
    };
    let h = style.render(&ok, Nanos::from_secs(1_709_827_170));
    assert_eq!(
        h,
        [
            ("X-RateLimit-Limit", "300".to_string()),
            ("X-RateLimit-Remaining", "247".to_string()),
            ("X-RateLimit-Reset", "1709827200".to_string()),
            ("X-RateLimit-Window", "sliding_60s".to_string()),
        ]
    );
    let hot = RateLimitInfo {
        remaining: 45,
        ..ok
    };
    assert!(style.render(&hot, Nanos::ZERO).contains(&(
        "Warning",
        "299 - \"Rate Limit\" \"85% of quota consumed\"".to_string()
    )));
}

/// The scanner API: camelCase `retryAfter`, `success: false`.
#[test]
fn scanner_api_429_body() {
    let want = page(
        r#"{
  "success": false,
  "error": {
    "code": "RATE_LIMIT_EXCEEDED",
    "message": "Too many requests. Please try again later.",
    "retryAfter": 30
  }
}"#,
    );
    let info = refused(60, 30, Nanos::from_secs(30));
    assert_eq!(
        body(BodyStyle::ScannerApi, &Refusal::Rate(info), Nanos::ZERO),
        want
    );
}

/// BlockSecOps: RATE_LIMITED and CONCURRENT_LIMIT bodies, headers.
#[test]
fn blocksecops_bodies_and_headers() {
    let now = Nanos::from_secs(1_705_323_600 - 45);
    let info = refused(1000, 45, Nanos::from_secs(45));
    let want = page(
        r#"{
  "error": {
    "code": "RATE_LIMITED",
    "message": "Rate limit exceeded. Please retry after 45 seconds.",
    "retry_after": 45
  }
}"#,
    );
    assert_eq!(
        body(BodyStyle::Blocksecops, &Refusal::Rate(info), now),
        want
    );
    let want = page(
        r#"{
  "error": {
    "code": "CONCURRENT_LIMIT",
    "message": "Maximum concurrent scans reached. Please wait for a scan to complete.",
    "current_scans": 3,
    "max_scans": 3
  }
}"#,
    );
    let refusal = Refusal::Concurrency { current: 3, max: 3 };
    assert_eq!(body(BodyStyle::Blocksecops, &refusal, now), want);
    // Retry-After: 45 / X-RateLimit-Remaining: 0 / X-RateLimit-Reset: 1705323600
    let h = HeaderStyle::x_ratelimit().render(&info, now);
    assert!(h.contains(&("Retry-After", "45".to_string())));
    assert!(h.contains(&("X-RateLimit-Remaining", "0".to_string())));
    assert!(h.contains(&("X-RateLimit-Reset", "1705323600".to_string())));
}

/// Slim.io: no headers at all, its own body.
#[test]
fn slim_io_429_body_and_no_headers() {
    let want = page(
        r#"{
"status": "error",
"error": {
"code": "RATE_LIMIT_EXCEEDED",
"message": "Rate limit exceeded. Please retry later."
}
}"#,
    );
    let info = refused(60, 5, Nanos::from_secs(5));
    assert_eq!(
        body(BodyStyle::SlimIo, &Refusal::Rate(info), Nanos::ZERO),
        want
    );
    assert!(HeaderStyle::none().render(&info, Nanos::ZERO).is_empty());
    let _ = json!(null);
}
