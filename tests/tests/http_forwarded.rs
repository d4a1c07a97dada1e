//! `X-Forwarded-For` over real HTTP: ignored by default (a client cannot
//! pick a fresh rate-limit key by sending the header), honoured only for
//! the number of proxies the server is told to trust.

mod http_common;

use http_common::{run, send, send_raw, start};

/// Anonymous callers (keyed by client address): 3 a minute.
const POLICY: &str = r#"
name = "anon"
[anonymous]
plan = "anonymous"
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.anonymous]
limits = [{ per = "minute", limit = 3 }]
"#;

#[test]
fn spoofed_forwarded_for_does_not_change_the_key() {
    run(async {
        let s = start(POLICY, |l| l).await;
        for i in 0..3 {
            let xff = format!("203.0.113.{i}");
            let r = send(s.addr, "GET", "/api/assets", &[("x-forwarded-for", &xff)]).await;
            assert_eq!(r.status, 200, "call {i}");
            assert_eq!(r.header("x-ratelimit-remaining"), (2 - i).to_string());
        }
        // Every request came from 127.0.0.1, whatever the header said.
        for xff in ["203.0.113.99", "198.51.100.7, 10.0.0.1", "::1"] {
            let r = send(s.addr, "GET", "/api/assets", &[("x-forwarded-for", xff)]).await;
            assert_eq!(r.status, 429, "{xff}");
        }
        let r = send(s.addr, "GET", "/api/assets", &[]).await;
        assert_eq!(r.status, 429);
    });
}

#[test]
fn trusted_hops_pick_the_address_the_proxy_appended() {
    run(async {
        // One reverse proxy in front: it appends the address it saw.
        let s = start(POLICY, |l| l.trust_forwarded_hops(1)).await;
        let addr = s.addr;
        let get = move |xff: &'static str| async move {
            send(addr, "GET", "/api/assets", &[("x-forwarded-for", xff)]).await
        };
        for _ in 0..3 {
            assert_eq!(get("203.0.113.1").await.status, 200);
        }
        assert_eq!(get("203.0.113.1").await.status, 429);
        // Another client behind the proxy has its own budget.
        assert_eq!(get("203.0.113.2").await.status, 200);
        // What the client itself wrote left of the proxy's entry is ignored.
        assert_eq!(get("198.51.100.50, 203.0.113.1").await.status, 429);
        assert_eq!(get("203.0.113.1, 203.0.113.2").await.status, 200);
        // No header (or junk): the connection's address, 127.0.0.1.
        for _ in 0..3 {
            assert_eq!(send(s.addr, "GET", "/api/assets", &[]).await.status, 200);
        }
        assert_eq!(get("not-an-address").await.status, 429);
    });
}

#[test]
fn a_byte_that_is_no_text_left_of_the_proxy_entry_changes_nothing() {
    run(async {
        let s = start(POLICY, |l| l.trust_forwarded_hops(1)).await;
        let addr = s.addr;
        let get = move |xff: &'static [u8]| async move {
            send_raw(addr, "GET", "/api/assets", &[("x-forwarded-for", xff)]).await
        };
        for _ in 0..3 {
            assert_eq!(get(b"203.0.113.1").await.status, 200);
        }
        // The client wrote a byte 0xff, the proxy appended the client's
        // address: the client's budget, not a fresh one (the line used to be
        // unreadable as a whole, and the request keyed by the proxy).
        assert_eq!(get(b"\xff, 203.0.113.1").await.status, 429);
        // The trusted entry itself unreadable: the connection's address.
        let r = get(b"203.0.113.1, \xff").await;
        assert_eq!((r.status, r.header("x-ratelimit-remaining")), (200, "2"));
    });
}
