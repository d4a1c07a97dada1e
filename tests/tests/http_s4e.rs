//! The S4E page over real HTTP: the example server with `policies/s4e.toml`
//! behind `tollgate::tower::RateLimitLayer` on 127.0.0.1, driven by a hyper
//! client. Headers and 429 bodies are the page's; the 6th concurrent SSE
//! stream of a key is refused until one closes (client disconnect) or ends;
//! 304s cost nothing; bad input gets a clear 4xx.
//!
//! The layer's clock is manual (frozen unless a test moves it), so calendar
//! windows never roll over mid-test; the SSE streams tick on real time.

mod http_common;

use std::time::{Duration, Instant};

use http_common::{T0, policy, run, send, send_raw, start, stream};
use serde_json::json;
use tollgate::Nanos;

/// The page's 429 body for a wait of `retry` seconds.
fn page_body(retry: u64) -> serde_json::Value {
    json!({
        "status": "error",
        "error": {
            "code": "rate_limited",
            "message": format!("Rate limit exceeded. Retry after {retry} seconds."),
            "retry_after": retry,
        }
    })
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

#[test]
fn headers_and_429_bodies_match_the_page() {
    run(async {
        let s = start(&policy("s4e"), |l| l).await;
        // 10 s into the minute, as in the scenario tests.
        s.clock.set(Nanos::from_secs(10));
        let reset = (T0 + 60).to_string();
        let (k, v) = bearer("standard-alice");
        let h = [(k, v.as_str())];

        let r = send(s.addr, "GET", "/api/assets", &h).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.rate_headers(), ["100", "99", reset.as_str()]);
        assert_eq!(r.header("etag"), "\"v1\"");

        // The X-API-Key header works too; the page's tier table: premium.
        let r = send(
            s.addr,
            "GET",
            "/api/findings",
            &[("x-api-key", "premium-bob")],
        )
        .await;
        assert_eq!(r.rate_headers(), ["1000", "999", reset.as_str()]);

        // "POST /api/findings/export 5 req/min": the 6th is the page's 429.
        for i in 0..5 {
            let r = send(s.addr, "POST", "/api/findings/export", &h).await;
            assert_eq!(r.status, 200, "call {i}: {r:?}");
            let left = (4 - i).to_string();
            assert_eq!(r.rate_headers(), ["5", left.as_str(), reset.as_str()]);
        }
        let r = send(s.addr, "POST", "/api/findings/export", &h).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("retry-after"), "50");
        assert_eq!(r.rate_headers(), ["5", "0", reset.as_str()]);
        assert_eq!(r.json(), page_body(50));

        // Burst allowance 20: the 21st back-to-back request of a new key is
        // refused with the burst's own wait (one token per 0.6 s: 1 s).
        let (k, v) = bearer("standard-carol");
        let h = [(k, v.as_str())];
        for i in 0..20 {
            let r = send(s.addr, "GET", "/api/assets", &h).await;
            assert_eq!(r.status, 200, "call {i}");
        }
        let r = send(s.addr, "GET", "/api/assets", &h).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), "1");
        assert_eq!(r.rate_headers(), ["100", "0", reset.as_str()]);
        assert_eq!(r.json(), page_body(1));
        // ... and "burst tokens are replenished at the per-minute rate".
        s.clock.advance(Nanos::from_millis(600));
        assert_eq!(send(s.addr, "GET", "/api/assets", &h).await.status, 200);

        // The health check is exempt: no key needed, no headers, no count.
        let r = send(s.addr, "GET", "/api/health", &[]).await;
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        assert_eq!(r.header("x-ratelimit-limit"), "");
    });
}

/// Polls until a new stream of `key` is admitted (a freed slot), within 5 s.
async fn reopen(addr: std::net::SocketAddr, key: &str) -> http_common::Streaming {
    reopen_at(addr, key, "/api/events/stream?every_ms=20").await
}

/// Opens `path` for `key` once the server has noticed a dropped stream and
/// freed its slot (disconnects are seen asynchronously): 429s until then,
/// 200 within 5 s.
async fn reopen_at(addr: std::net::SocketAddr, key: &str, path: &str) -> http_common::Streaming {
    let (k, v) = bearer(key);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = stream(addr, path, &[(k, v.as_str())]).await;
        if s.status == 200 {
            return s;
        }
        assert_eq!(s.status, 429);
        assert!(Instant::now() < deadline, "no slot freed within 5 s");
        drop(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn sixth_sse_stream_refused_until_one_closes() {
    run(async {
        let s = start(&policy("s4e"), |l| l).await;
        let (k, v) = bearer("premium-dana");
        let h = [(k, v.as_str())];
        let path = "/api/events/stream?every_ms=20";
        let mut open = Vec::new();
        for i in 0..5 {
            let mut st = stream(s.addr, path, &h).await;
            assert_eq!(st.status, 200, "stream {i}");
            assert_eq!(st.header_value("content-type"), "text/event-stream");
            assert_eq!(st.next_data().await.as_deref(), Some("0"));
            open.push(st);
        }
        // The events keep coming on every stream.
        assert_eq!(open[0].next_data().await.as_deref(), Some("1"));

        let sixth = stream(s.addr, path, &h).await;
        assert_eq!(sixth.status, 429);
        assert_eq!(sixth.header_value("retry-after"), "1");
        let body: serde_json::Value = serde_json::from_slice(&sixth.rest().await).unwrap();
        assert_eq!(body, page_body(1));
        // Another key has its own five.
        let (k2, v2) = bearer("premium-erin");
        let mut other = stream(s.addr, path, &[(k2, v2.as_str())]).await;
        assert_eq!(other.status, 200);
        assert_eq!(other.next_data().await.as_deref(), Some("0"));

        // A client disconnects: its slot frees once the server notices.
        drop(open.pop());
        open.push(reopen(s.addr, "premium-dana").await);
        let refused = stream(s.addr, path, &h).await;
        assert_eq!(refused.status, 429, "only one slot was freed");
        drop(refused);

        // A stream that ends by itself frees its slot too.
        drop(open.pop());
        let mut short = reopen(s.addr, "premium-dana").await;
        drop(open.pop());
        let mut ending = reopen_at(
            s.addr,
            "premium-dana",
            "/api/events/stream?every_ms=10&count=2",
        )
        .await;
        while ending.next_data().await.is_some() {}
        // The ended stream's connection stays open; its slot is free anyway.
        let mut again = reopen(s.addr, "premium-dana").await;
        assert_eq!(again.next_data().await.as_deref(), Some("0"));
        assert_eq!(short.next_data().await.as_deref(), Some("0"));
        drop(ending);
    });
}

#[test]
fn not_modified_costs_nothing() {
    run(async {
        let s = start(&policy("s4e"), |l| l).await;
        let (k, v) = bearer("standard-fay");
        let h = [(k, v.as_str())];
        let conditional = [(k, v.as_str()), ("if-none-match", "\"v1\"")];
        // 50 conditional GETs at one instant, all 304: without the refund
        // the burst of 20 would refuse the 21st.
        for i in 0..50 {
            let r = send(s.addr, "GET", "/api/assets", &conditional).await;
            assert_eq!(r.status, 304, "call {i}: {r:?}");
            // "304 Not Modified without consuming a rate limit token": the
            // headers say the token is still there (found by review: they
            // reported the check, 99, made before the refund).
            assert_eq!(r.header("x-ratelimit-remaining"), "100");
        }
        let r = send(s.addr, "GET", "/api/assets", &h).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            "99",
            "the 304s cost nothing"
        );
        // A 200 is not refunded.
        let r = send(s.addr, "GET", "/api/findings", &h).await;
        assert_eq!(r.header("x-ratelimit-remaining"), "98");
    });
}

#[test]
fn bad_input_gets_a_clear_4xx() {
    run(async {
        let s = start(&policy("s4e"), |l| l).await;
        // No key, and S4E has no anonymous plan.
        let r = send(s.addr, "GET", "/api/assets", &[]).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), "Bearer");
        assert_eq!(r.json()["error"], "unauthorized");
        // A key the lookup does not know.
        let r = send(s.addr, "GET", "/api/assets", &[("x-api-key", "nodash")]).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["message"], "unknown API key");
        // A plan the policy does not have.
        let r = send(s.addr, "GET", "/api/assets", &[("x-api-key", "gold-x")]).await;
        assert_eq!(r.status, 403);
        assert!(
            r.json()["message"].as_str().unwrap().contains("\"gold\""),
            "{r:?}"
        );
        // Another auth scheme, an empty bearer, bytes that are no text.
        for h in [
            ("authorization", &b"Basic dXNlcjpwYXNz"[..]),
            ("authorization", &b"Bearer "[..]),
            ("x-api-key", &b"standard-\xff"[..]),
        ] {
            let r = send_raw(s.addr, "GET", "/api/assets", &[h]).await;
            assert_eq!(r.status, 401, "{h:?}");
        }
        // An exempt route passes with an unknown key.
        let r = send(s.addr, "GET", "/api/health", &[("x-api-key", "nodash")]).await;
        assert_eq!(r.status, 200);
        // The server is still fine.
        let (k, v) = bearer("standard-gus");
        let r = send(s.addr, "GET", "/api/assets", &[(k, v.as_str())]).await;
        assert_eq!(r.status, 200);
    });
}
