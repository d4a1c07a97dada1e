//! HEAD through the HTTP layer: axum runs the GET handler for HEAD, so the
//! layer must limit and exempt it like that GET (see `policy_methods.rs` for
//! the engine's rule). Found by review: HEAD ran past the GET endpoint's
//! limit, and a HEAD health probe on an exempt GET route got 401.

mod http_common;

use http_common::{policy, run, send, start};

/// A GET endpoint rule of 1 a minute on top of a plan of 100 a minute.
const HEAD_POLICY: &str = r#"
name = "head"
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.standard]
limits = [{ per = "minute", limit = 100 }]
[[endpoints]]
method = "GET"
path = "/api/findings"
limits = [{ per = "minute", limit = 1 }]
"#;

/// axum serves HEAD with the GET handler (RFC 9110 §9.3.2: HEAD is GET
/// without the content), but the layer hands the engine "HEAD", which no
/// `method = "GET"` rule matches: the handler runs (its ETag and
/// Content-Length are on the reply) past the endpoint's limit.
#[test]
fn head_runs_the_get_handler_past_the_get_endpoint_limit() {
    run(async {
        let s = start(HEAD_POLICY, |l| l).await;
        let h = [("x-api-key", "standard-h")];
        assert_eq!(send(s.addr, "GET", "/api/findings", &h).await.status, 200);
        assert_eq!(send(s.addr, "GET", "/api/findings", &h).await.status, 429);
        for i in 0..5 {
            let r = send(s.addr, "HEAD", "/api/findings", &h).await;
            assert_eq!(r.status, 429, "HEAD {i} ran the GET handler: {r:?}");
        }
    });
}

/// The same for exemptions: S4E's `GET /api/health` is exempt, a HEAD
/// health probe (same handler) is refused 401.
#[test]
fn head_on_an_exempt_get_route_is_not_exempt() {
    run(async {
        let s = start(&policy("s4e"), |l| l).await;
        assert_eq!(send(s.addr, "GET", "/api/health", &[]).await.status, 200);
        let r = send(s.addr, "HEAD", "/api/health", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
    });
}

// ---- 2. A 304 refund lands in a window the request never counted in --------

// ---- 3. A path whose rule changes once normalised ----------------------------

/// A path that selects one endpoint rule as written and another once its
/// dot segments are resolved is refused by the engine as ambiguous; the
/// layer answers 400 with a JSON error, and runs no handler.
#[test]
fn an_ambiguous_path_is_a_400() {
    const POLICY: &str = r#"
name = "ambiguous"
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.standard]
limits = [{ per = "minute", limit = 100 }]
[[endpoints]]
method = "GET"
path = "/api/*"
limits = [{ per = "minute", limit = 1 }]
"#;
    run(async {
        let s = start(POLICY, |l| l).await;
        let h = [("x-api-key", "standard-a")];
        let r = send(s.addr, "GET", "/api/../findings", &h).await;
        assert_eq!(r.status, 400, "{r:?}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "bad_request", "{body}");
    });
}
