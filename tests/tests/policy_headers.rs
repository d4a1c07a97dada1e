//! Which window the engine's rate-limit headers report, and in what unit,
//! when a request is checked against windows charged different units (a
//! plan window charged an endpoint's cost factor, the endpoint's own window
//! charged one call).

use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Request};

/// 2024-04-28T12:00:00Z, a whole hour.
const T0: u64 = 1_714_305_600;

/// CyberVault's shape: a plan of 60 units a minute, a scan endpoint of
/// cost 5 with its own 20 calls a minute.
const COST_5: &str = r#"
name = "c"
[response]
headers = "x-ratelimit"
warning_at = 80
body = "cybervault"
[plans.developer]
limits = [{ per = "minute", limit = 60 }]
[[endpoints]]
method = "POST"
path = "/api/v1/threats/scan"
cost = 5
limits = [{ per = "minute", limit = 20 }]
"#;

fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

fn allowed_headers(o: Outcome<'_>) -> Vec<(&'static str, String)> {
    match o {
        Outcome::Allowed(a) => a.headers.clone(),
        other => panic!("expected Allowed, got {other:?}"),
    }
}

/// After 9 scans the plan has 15 units left (3 scans), the endpoint 11
/// calls. The headers said "Limit 20, Remaining 11" (the endpoint: the
/// least raw `remaining` of members charged different units); they report
/// the plan's minute now, in scans: Limit 60 / 5 = 12, Remaining 15 / 5 = 3,
/// and exactly 3 more scans pass.
#[test]
fn headers_report_the_window_that_binds_under_a_cost_factor() {
    let e = Engine::from_toml(COST_5, Nanos::from_secs(T0)).unwrap();
    let scan = Request::new("POST", "/api/v1/threats/scan")
        .key("k")
        .plan("developer");
    let mut last = Vec::new();
    for _ in 0..9 {
        last = allowed_headers(e.check(&scan, Nanos::ZERO).unwrap());
    }
    assert_eq!(
        last,
        [
            ("X-RateLimit-Limit", "12".to_string()),
            ("X-RateLimit-Remaining", "3".to_string()),
            // The plan's calendar minute.
            ("X-RateLimit-Reset", (T0 + 60).to_string()),
        ]
    );
    let remaining: usize = header(&last, "X-RateLimit-Remaining")
        .unwrap()
        .parse()
        .unwrap();
    let mut more = 0;
    while e.check(&scan, Nanos::ZERO).unwrap().is_allowed() {
        more += 1;
    }
    assert_eq!(more, remaining, "headers after the 9th scan: {last:?}");
    // A call without a cost factor (another key) sees the plan's own 60.
    let plain = Request::new("GET", "/api/v1/threats")
        .key("k2")
        .plan("developer");
    let h = allowed_headers(e.check(&plain, Nanos::ZERO).unwrap());
    assert_eq!(header(&h, "X-RateLimit-Limit"), Some("60"));
    assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("59"));
}

/// `Warning` measures the binding window's share used, the same in scans as
/// in units: 9 scans are 45 of 60 units (75 %, none), 10 are 50 (83 %).
#[test]
fn warning_under_a_cost_factor_measures_the_binding_window() {
    let e = Engine::from_toml(COST_5, Nanos::from_secs(T0)).unwrap();
    let scan = Request::new("POST", "/api/v1/threats/scan")
        .key("k")
        .plan("developer");
    for _ in 0..8 {
        let _ = allowed_headers(e.check(&scan, Nanos::ZERO).unwrap());
    }
    let h = allowed_headers(e.check(&scan, Nanos::ZERO).unwrap());
    assert_eq!(header(&h, "Warning"), None, "{h:?}");
    let h = allowed_headers(e.check(&scan, Nanos::ZERO).unwrap());
    assert_eq!(
        header(&h, "Warning"),
        Some("299 - \"Rate Limit\" \"83% of quota consumed\""),
        "{h:?}"
    );
    // The refusal reports the same window: Limit 12, Remaining 0.
    for _ in 0..2 {
        let _ = allowed_headers(e.check(&scan, Nanos::ZERO).unwrap());
    }
    match e.check(&scan, Nanos::ZERO).unwrap() {
        Outcome::Denied(d) => {
            assert_eq!(header(&d.headers, "X-RateLimit-Limit"), Some("12"));
            assert_eq!(header(&d.headers, "X-RateLimit-Remaining"), Some("0"));
            assert_eq!(
                header(&d.headers, "X-RateLimit-Reset"),
                Some((T0 + 60).to_string().as_str())
            );
        }
        other => panic!("expected Denied, got {other:?}"),
    }
}

/// Ties in requests left go to the longer window: a plan hour of 20 units
/// at cost 2 and an endpoint minute of 10 calls both have 9 calls left
/// after one (raw: 18 units and 9 calls); the hour is reported.
#[test]
fn ties_in_requests_left_report_the_longer_window() {
    let e = Engine::from_toml(
        r#"
name = "t"
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.free]
limits = [{ per = "hour", limit = 20 }]
[[endpoints]]
method = "POST"
path = "/scans"
cost = 2
limits = [{ per = "minute", limit = 10 }]
"#,
        Nanos::from_secs(T0),
    )
    .unwrap();
    let scan = Request::new("POST", "/scans").key("k").plan("free");
    let h = allowed_headers(e.check(&scan, Nanos::ZERO).unwrap());
    assert_eq!(
        h,
        [
            ("X-RateLimit-Limit", "10".to_string()),
            ("X-RateLimit-Remaining", "9".to_string()),
            ("X-RateLimit-Reset", (T0 + 3_600).to_string()),
        ]
    );
}

/// Found in the tenth session's review: `Warning` came from the window that
/// binds only, so a CyberVault Developer key with 851 of its 1 000 hourly
/// calls spent (85 %) got none while the minute had room. It now reports the
/// most-used window's share.
#[test]
fn warning_reports_the_most_used_window() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/cybervault.toml"
    ))
    .unwrap();
    let e = Engine::from_toml(&src, Nanos::from_secs(T0)).unwrap();
    let r = Request::new("GET", "/api/v1/threats")
        .key("k")
        .plan("developer");
    for m in 0..17u64 {
        for j in 0..50u64 {
            let o = e.check(&r, Nanos::from_secs(m * 60 + j)).unwrap();
            assert!(o.is_allowed(), "minute {m} call {j}: {o:?}");
        }
    }
    let h = allowed_headers(e.check(&r, Nanos::from_secs(1_800)).unwrap());
    // The minute binds (59 of 60 left); the hour is 851 / 1000 used.
    assert_eq!(header(&h, "X-RateLimit-Remaining"), Some("59"), "{h:?}");
    assert_eq!(
        header(&h, "Warning"),
        Some("299 - \"Rate Limit\" \"85% of quota consumed\""),
        "{h:?}"
    );
}

/// A plan limit with `algorithm = "gcra"` and a burst below the limit: its
/// `remaining` counts the burst, so a fresh key read as 50 of 60 used and
/// got a `Warning` on its first request.
#[test]
fn a_gcra_limits_usage_and_warning_count_its_burst() {
    let src = r#"
name = "x"
[response]
headers = "x-ratelimit"
warning_at = 80
body = "cybervault"
[plans.pro]
limits = [{ per = "minute", limit = 60, algorithm = "gcra", burst = 10 }]
"#;
    let e = Engine::from_toml(src, Nanos::from_secs(T0)).unwrap();
    let u = e.usage("k", "pro", Nanos::ZERO).unwrap();
    assert_eq!((u[0].used, u[0].limit), (0, 10), "{u:?}");
    let r = Request::new("GET", "/").key("k").plan("pro");
    let h = allowed_headers(e.check(&r, Nanos::ZERO).unwrap());
    assert_eq!(header(&h, "Warning"), None, "first request: {h:?}");
    // Eight of the burst of ten spent: 80 %.
    for _ in 0..7 {
        assert!(e.check(&r, Nanos::ZERO).unwrap().is_allowed());
    }
    let u = e.usage("k", "pro", Nanos::ZERO).unwrap();
    assert_eq!((u[0].used, u[0].limit), (8, 10), "{u:?}");
    let h = allowed_headers(e.check(&r, Nanos::ZERO).unwrap());
    assert_eq!(
        header(&h, "Warning"),
        Some("299 - \"Rate Limit\" \"90% of quota consumed\""),
        "{h:?}"
    );
}
