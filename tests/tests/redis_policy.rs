//! A policy engine's rules checked on Redis: two engines with their own
//! connections (two processes of a fleet) share every count — plan limits,
//! windows, the org pool — answer with the policy's headers and 429s, give
//! units back on a refunding status, and keep concurrency per process.

mod redis_support;

use std::time::Duration;

use redis_support::{Server, runtime};
use tollgate::Nanos;
use tollgate::policy::{Engine, Request};
use tollgate::redis::{FailMode, PolicyOutcome, RedisConfig, RedisLimiter, Source};

// Hourly GCRA limits bind (one unit back per 3 minutes: none during the
// test); the daily fixed and sliding windows run alongside, all shared.
const POLICY: &str = r#"
name = "fleet"
refund_status = [304]
org_pool = [{ per = "hour", limit = 30, algorithm = "gcra" }]

[response]
headers = "x-ratelimit"
body = "s4e"

[plans.free]
limits = [
    { per = "hour", limit = 20, algorithm = "gcra" },
    { per = "day", limit = 500 },
    { per = "day", limit = 400, algorithm = "sliding" },
]

[[endpoints]]
method = "GET"
path = "/stream"
concurrency = 1

[[exempt]]
method = "GET"
path = "/health"
"#;

fn engine(unix_at_zero: u64) -> Engine {
    Engine::from_toml(POLICY, Nanos::new(unix_at_zero)).unwrap()
}

fn limiter(server: &Server, mode: FailMode) -> RedisLimiter {
    let config = RedisConfig {
        fail_mode: mode,
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        retry_interval: Duration::from_millis(100),
        ..RedisConfig::default()
    };
    RedisLimiter::new(&server.url(), config).unwrap()
}

fn header<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
}

#[test]
fn two_engines_share_one_budget() {
    let Some(server) = Server::start("two_engines_share_one_budget") else {
        return;
    };
    let rt = runtime();
    // Two processes: their own engine (clock zero) and connection.
    let (e1, e2) = (
        engine(1_700_000_000_000_000_000),
        engine(1_700_000_123_000_000_000),
    );
    let (r1, r2) = (
        limiter(&server, FailMode::Closed),
        limiter(&server, FailMode::Closed),
    );
    let req = Request::new("GET", "/things").key("k1").plan("free");
    let mut remaining = Vec::new();
    for i in 0..25 {
        let (e, r) = if i % 2 == 0 { (&e1, &r1) } else { (&e2, &r2) };
        match rt.block_on(r.check_request(e, &req, Nanos::ZERO)).unwrap() {
            PolicyOutcome::Allowed(a) => {
                assert_eq!(a.source, Source::Redis);
                remaining.push(
                    header(&a.headers, "X-RateLimit-Remaining")
                        .unwrap()
                        .to_owned(),
                );
                assert_eq!(header(&a.headers, "X-RateLimit-Limit"), Some("20"));
            }
            PolicyOutcome::Denied(d) => {
                assert_eq!(d.status, 429);
                let wait: u64 = header(&d.headers, "Retry-After").unwrap().parse().unwrap();
                assert!((1..=180).contains(&wait), "Retry-After {wait}");
            }
            PolicyOutcome::Exempt => panic!("not exempt"),
        }
    }
    let want: Vec<String> = (0..20).rev().map(|n| n.to_string()).collect();
    assert_eq!(
        remaining, want,
        "one budget, counted down across both engines"
    );
    // The daily windows counted the same 20: fixed and sliding keys exist.
    let keys = server.cmd(&["KEYS", "tollgate:*"]);
    let redis_support::Value::Array(keys) = keys else {
        panic!("{keys:?}")
    };
    assert_eq!(keys.len(), 3, "{keys:?}");
    // An exempt route is not counted.
    let health = Request::new("GET", "/health").key("k1").plan("free");
    assert!(matches!(
        rt.block_on(r1.check_request(&e1, &health, Nanos::ZERO))
            .unwrap(),
        PolicyOutcome::Exempt
    ));
}

#[test]
fn the_org_pool_spans_keys_and_processes() {
    let Some(server) = Server::start("the_org_pool_spans_keys_and_processes") else {
        return;
    };
    let rt = runtime();
    let (e1, e2) = (engine(0), engine(0));
    let (r1, r2) = (
        limiter(&server, FailMode::Closed),
        limiter(&server, FailMode::Closed),
    );
    let mut admitted = [0; 3];
    for i in 0..60 {
        let key = ["k1", "k2", "k3"][i % 3];
        let req = Request::new("GET", "/x").key(key).org("acme").plan("free");
        let (e, r) = if i % 2 == 0 { (&e1, &r1) } else { (&e2, &r2) };
        if rt
            .block_on(r.check_request(e, &req, Nanos::ZERO))
            .unwrap()
            .is_allowed()
        {
            admitted[i % 3] += 1;
        }
    }
    assert_eq!(
        admitted,
        [10, 10, 10],
        "the pool of 30 binds before the keys' 20"
    );
    // Another organisation has its own pool.
    let other = Request::new("GET", "/x")
        .key("k9")
        .org("globex")
        .plan("free");
    assert!(
        rt.block_on(r1.check_request(&e1, &other, Nanos::ZERO))
            .unwrap()
            .is_allowed()
    );
}

#[test]
fn refunds_and_concurrency() {
    let Some(server) = Server::start("refunds_and_concurrency") else {
        return;
    };
    let rt = runtime();
    let e = engine(0);
    let r = limiter(&server, FailMode::Closed);
    let req = Request::new("GET", "/a").key("k1").plan("free");
    let remaining = |o: &PolicyOutcome<'_>| match o {
        PolicyOutcome::Allowed(a) => header(&a.headers, "X-RateLimit-Remaining")
            .unwrap()
            .to_owned(),
        other => panic!("{other:?}"),
    };
    let a = rt.block_on(r.check_request(&e, &req, Nanos::ZERO)).unwrap();
    assert_eq!(remaining(&a), "19");
    let PolicyOutcome::Allowed(a) = a else {
        unreachable!()
    };
    rt.block_on(r.complete(a, 304)); // free: given back
    let b = rt.block_on(r.check_request(&e, &req, Nanos::ZERO)).unwrap();
    assert_eq!(remaining(&b), "19");
    let PolicyOutcome::Allowed(b) = b else {
        unreachable!()
    };
    rt.block_on(r.complete(b, 200)); // counted
    let c = rt.block_on(r.check_request(&e, &req, Nanos::ZERO)).unwrap();
    assert_eq!(remaining(&c), "18");
    // Concurrency is per process: one stream at a time on this engine.
    let stream = Request::new("GET", "/stream").key("k1").plan("free");
    let first = rt
        .block_on(r.check_request(&e, &stream, Nanos::ZERO))
        .unwrap();
    assert!(first.is_allowed());
    let second = rt
        .block_on(r.check_request(&e, &stream, Nanos::ZERO))
        .unwrap();
    let PolicyOutcome::Denied(d) = second else {
        panic!("{second:?}")
    };
    assert_eq!(d.status, 429);
    // The refused request's rate units were given back.
    drop(first);
    let third = rt
        .block_on(r.check_request(&e, &stream, Nanos::ZERO))
        .unwrap();
    assert_eq!(remaining(&third), "16");
}

#[test]
fn a_dead_redis_answers_in_the_policys_fail_mode() {
    let Some(mut server) = Server::start("a_dead_redis_answers_in_the_policys_fail_mode") else {
        return;
    };
    let rt = runtime();
    let e = engine(0);
    let closed = limiter(&server, FailMode::Closed);
    let local = limiter(&server, FailMode::Local { share: 0.5 });
    let req = Request::new("GET", "/a").key("k1").plan("free");
    assert!(
        rt.block_on(closed.check_request(&e, &req, Nanos::ZERO))
            .unwrap()
            .is_allowed()
    );
    server.stop();
    match rt
        .block_on(closed.check_request(&e, &req, Nanos::ZERO))
        .unwrap()
    {
        PolicyOutcome::Denied(d) => {
            assert_eq!(d.status, 429);
            assert_eq!(header(&d.headers, "Retry-After"), Some("1"));
        }
        other => panic!("{other:?}"),
    }
    // Half of the hourly 20 from this process alone, then 429s.
    let admitted = (0..15)
        .filter(|_| {
            match rt
                .block_on(local.check_request(&e, &req, Nanos::from_secs(1)))
                .unwrap()
            {
                PolicyOutcome::Allowed(a) => {
                    assert_eq!(a.source, Source::Local);
                    true
                }
                _ => false,
            }
        })
        .count();
    assert_eq!(admitted, 10);
}
