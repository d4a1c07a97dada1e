//! A policy engine's rules checked on Redis: two engines with their own
//! connections (two processes of a fleet) share every count — plan limits,
//! windows, the org pool — answer with the policy's headers and 429s, give
//! units back on a refunding status (only what the charge still weighs: a
//! late `304` gives a later minute or a refilled bucket nothing, as in
//! process), keep concurrency per process, and select rules by method as
//! the in-process engine does (a `HEAD` takes the `GET` rules).

mod redis_support;

use std::time::{Duration, Instant};

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
    rt.block_on(r.complete(a, 304, Nanos::ZERO)); // free: given back
    let b = rt.block_on(r.check_request(&e, &req, Nanos::ZERO)).unwrap();
    assert_eq!(remaining(&b), "19");
    let PolicyOutcome::Allowed(b) = b else {
        unreachable!()
    };
    rt.block_on(r.complete(b, 200, Nanos::ZERO)); // counted
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
    // Its headers: the binding window as it stands, the refused request's
    // units given back (17 left after `c` and `first`), then Retry-After —
    // as the in-process engine answers (S4E: "Every API response includes
    // rate limit headers").
    assert_eq!(header(&d.headers, "X-RateLimit-Limit"), Some("20"));
    assert_eq!(header(&d.headers, "X-RateLimit-Remaining"), Some("17"));
    assert!(header(&d.headers, "X-RateLimit-Reset").is_some());
    assert_eq!(header(&d.headers, "Retry-After"), Some("1"));
    assert_eq!(d.headers.last().map(|(k, _)| *k), Some("Retry-After"));
    // The same 429 as the in-process engine's, header for header.
    let local = Engine::from_toml(POLICY, Nanos::ZERO).unwrap();
    for _ in 0..2 {
        let _ = local.check(&req, Nanos::ZERO).unwrap(); // `b` and `c`
    }
    let _held = local.check(&stream, Nanos::ZERO).unwrap();
    match local.check(&stream, Nanos::ZERO).unwrap() {
        tollgate::policy::Outcome::Denied(l) => {
            let names =
                |h: &[(&'static str, String)]| h.iter().map(|(k, _)| *k).collect::<Vec<_>>();
            assert_eq!(names(&l.headers), names(&d.headers));
            assert_eq!(
                header(&l.headers, "X-RateLimit-Remaining"),
                header(&d.headers, "X-RateLimit-Remaining")
            );
        }
        other => panic!("{other:?}"),
    }
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

// Late refunds through the Redis policy engine: the in-process scenarios of
// tests/tests/scenarios_s4e.rs (policies/s4e.toml, standard: 100 per
// calendar minute, burst 20 refilled at 1 per 0.6 s), with Redis at the
// engine's clock (`check_request_at` / `complete_at`), then once on the
// server's own clock.

/// 2024-04-28T12:00:00Z, a whole minute: minute k is [60k s, 60(k + 1) s).
const T0: u64 = 1_714_305_600;

fn s4e() -> Engine {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/s4e.toml"))
        .unwrap();
    Engine::from_toml(&src, Nanos::from_secs(T0)).unwrap()
}

fn ms(n: u64) -> Nanos {
    Nanos::from_millis(n)
}

/// The admission of an outcome Redis decided.
#[track_caller]
fn admitted(o: PolicyOutcome<'_>) -> tollgate::redis::RedisAdmission<'_> {
    match o {
        PolicyOutcome::Allowed(a) => {
            assert_eq!(a.source, Source::Redis);
            a
        }
        other => panic!("expected Allowed, got {other:?}"),
    }
}

/// A 304 that comes back after its minute is over gives nothing back: its
/// unit expired with minute 0, and taking one off minute 1 would let minute
/// 1 admit 101 counted requests on a 100/min tier (the reviewed `complete`
/// refunded as of the response's time).
#[test]
fn a_304_completed_after_its_minute_rolled_over_gives_the_new_minute_nothing() {
    let Some(server) =
        Server::start("a_304_completed_after_its_minute_rolled_over_gives_the_new_minute_nothing")
    else {
        return;
    };
    let rt = runtime();
    let (e, r) = (s4e(), limiter(&server, FailMode::Closed));
    let req = Request::new("GET", "/api/assets").key("k").plan("standard");
    let check = |t| rt.block_on(r.check_request_at(&e, &req, t)).unwrap();
    // A slow conditional GET admitted at 59 s (minute 0).
    let slow = admitted(check(ms(59_000)));
    // Minute 1: 100 ordinary requests, one per 0.6 s (the burst's refill
    // rate, so only the minute can bind).
    for i in 0..100 {
        let t = ms(60_000 + 600 * i);
        let a = admitted(check(t));
        rt.block_on(r.complete_at(a, 200, t));
    }
    // The slow one ends with 304 at 119.5 s.
    rt.block_on(r.complete_at(slow, 304, ms(119_500)));
    let o = check(ms(119_500));
    assert!(
        matches!(o, PolicyOutcome::Denied(_)),
        "101st counted request of minute 1 admitted: {o:?}"
    );
}

/// The burst (GCRA) member: a 304 that ends after the bucket refilled gives
/// back only what its charge still weighs — here nothing — so 20 requests
/// at one instant stay the most a burst of 20 allows.
#[test]
fn a_304_completed_after_the_bucket_refilled_gives_nothing_back() {
    let Some(server) =
        Server::start("a_304_completed_after_the_bucket_refilled_gives_nothing_back")
    else {
        return;
    };
    let rt = runtime();
    let (e, r) = (s4e(), limiter(&server, FailMode::Closed));
    let req = Request::new("GET", "/api/assets").key("k").plan("standard");
    let check = |t| rt.block_on(r.check_request_at(&e, &req, t)).unwrap();
    // A slow conditional GET at 0 s; the bucket is full again by 30 s.
    let slow = admitted(check(Nanos::ZERO));
    let t = Nanos::from_secs(30);
    for _ in 0..20 {
        let a = admitted(check(t));
        rt.block_on(r.complete_at(a, 200, t));
    }
    rt.block_on(r.complete_at(slow, 304, t));
    let o = check(t);
    assert!(
        matches!(o, PolicyOutcome::Denied(_)),
        "21st request at one instant admitted on a burst of 20: {o:?}"
    );
}

/// A 304 that comes back within its minute, a moment after its request,
/// still costs nothing of the minute: a hundred of them leave the tier's
/// 100 counted requests free (the burst member keeps the 50 ms each took).
#[test]
fn a_prompt_304_still_costs_nothing_of_the_minute() {
    let Some(server) = Server::start("a_prompt_304_still_costs_nothing_of_the_minute") else {
        return;
    };
    let rt = runtime();
    let (e, r) = (s4e(), limiter(&server, FailMode::Closed));
    let req = Request::new("GET", "/api/assets").key("k").plan("standard");
    let check = |t| rt.block_on(r.check_request_at(&e, &req, t)).unwrap();
    for i in 0..100 {
        // A conditional GET answered 304 50 ms later, then an ordinary one.
        let t = ms(600 * i);
        let a = admitted(check(t));
        rt.block_on(r.complete_at(a, 304, t + ms(50)));
        let b = admitted(check(t + ms(100)));
        rt.block_on(r.complete_at(b, 200, t + ms(100)));
    }
    // The minute holds the 100 ordinary requests and nothing of the 304s.
    let o = check(ms(59_900));
    assert!(matches!(o, PolicyOutcome::Denied(_)), "{o:?}");
}

/// On the server's own clock (`check_request` / `complete`): the admission
/// keeps the server's time of its charge, and a 304 completed 0.7 s later
/// (the 0.6 s its burst unit weighed regenerated) gives nothing back: 20 at
/// once stay the most. Timed against the wall clock: the 20 and the 21st
/// must come within 0.45 s (else one more unit regenerates); a run that
/// was slower is retried with another key.
#[test]
fn a_late_304_on_the_servers_clock_gives_a_refilled_bucket_nothing() {
    let Some(server) =
        Server::start("a_late_304_on_the_servers_clock_gives_a_refilled_bucket_nothing")
    else {
        return;
    };
    let rt = runtime();
    let (e, r) = (s4e(), limiter(&server, FailMode::Closed));
    let now = || Nanos::ZERO; // the engine's clock: boosts only
    for attempt in 0..3 {
        let key = format!("k{attempt}");
        let req = Request::new("GET", "/api/assets")
            .key(&key)
            .plan("standard");
        let check = || rt.block_on(r.check_request(&e, &req, now())).unwrap();
        let slow = admitted(check());
        std::thread::sleep(Duration::from_millis(700));
        let start = Instant::now();
        for _ in 0..20 {
            let a = admitted(check());
            rt.block_on(r.complete(a, 200, now()));
        }
        rt.block_on(r.complete(slow, 304, now()));
        let o = check();
        if start.elapsed() > Duration::from_millis(450) {
            eprintln!("attempt {attempt}: too slow ({:?}), again", start.elapsed());
            continue;
        }
        assert!(
            matches!(o, PolicyOutcome::Denied(_)),
            "21st request within 0.45 s admitted on a burst of 20: {o:?}"
        );
        return;
    }
    panic!("three runs of 22 script calls took over 0.45 s each");
}

/// The Redis path selects rules by method as the engine does (RFC 9110
/// §9.3.2): a HEAD on an exempt GET route is exempt, a HEAD counts against
/// the GET endpoint's limit, and a HEAD rule of the policy's own wins.
#[test]
fn head_takes_the_get_exemptions_and_endpoint_limits() {
    let Some(server) = Server::start("head_takes_the_get_exemptions_and_endpoint_limits") else {
        return;
    };
    const METHODS: &str = include_str!("../fixtures/methods.toml");
    let rt = runtime();
    let e = Engine::from_toml(METHODS, Nanos::from_secs(T0)).unwrap();
    let r = limiter(&server, FailMode::Closed);
    let t = Nanos::from_secs(1);
    let outcome = |m, p| {
        let req = Request::new(m, p).key("k1").plan("standard");
        rt.block_on(r.check_request_at(&e, &req, t)).unwrap()
    };
    let allowed = |m, p| match outcome(m, p) {
        PolicyOutcome::Allowed(a) => {
            assert_eq!(a.source, Source::Redis);
            true
        }
        PolicyOutcome::Denied(_) => false,
        PolicyOutcome::Exempt => panic!("{m} {p} is not exempt"),
    };
    // Exempt: GET and HEAD /health; POST is not GET.
    for m in ["GET", "HEAD", "head"] {
        let o = outcome(m, "/health");
        assert!(matches!(o, PolicyOutcome::Exempt), "{m} /health: {o:?}");
    }
    assert!(matches!(
        outcome("POST", "/health"),
        PolicyOutcome::Allowed(_)
    ));
    // Two a minute on GET /findings, whichever of GET and HEAD spent them.
    assert!(allowed("GET", "/findings"));
    assert!(allowed("HEAD", "/findings"));
    assert!(!allowed("HEAD", "/findings"));
    assert!(!allowed("GET", "/findings"));
    assert!(!allowed("head", "/findings?x=1"));
    // GET /reports/{id}: 1 a minute; HEAD /reports/{id}: 5, apart.
    assert!(allowed("GET", "/reports/7"));
    assert!(!allowed("GET", "/reports/7"));
    for i in 0..5 {
        assert!(allowed("HEAD", "/reports/7"), "HEAD {i} of 5");
    }
    assert!(!allowed("HEAD", "/reports/7"));
}

/// The Redis keys a policy's limits live under are pinned: rule ids are in
/// them, and processes of a fleet that disagree on an id count the same
/// caller twice. A change of the id derivation (or of what goes into it)
/// fails here — if it is meant, the fleet must be upgraded all at once;
/// say so in the change. (Ids moved to FNV-1a once, 2026-12-03; a rule's
/// limit and burst left them on 2026-12-05, so a reload that changes only
/// those keeps the count.)
#[test]
fn the_redis_keys_of_a_policy_are_pinned() {
    let Some(server) = Server::start("the_redis_keys_of_a_policy_are_pinned") else {
        return;
    };
    let rt = runtime();
    let e = engine(0);
    let r = limiter(&server, FailMode::Closed);
    let req = Request::new("GET", "/a").key("k1").plan("free").org("acme");
    assert!(
        rt.block_on(r.check_request(&e, &req, Nanos::ZERO))
            .unwrap()
            .is_allowed()
    );
    let mut keys: Vec<String> = match server.cmd(&["KEYS", "*"]) {
        redis_support::Value::Array(v) => v
            .into_iter()
            .map(|k| match k {
                redis_support::Value::Bulk(Some(s)) => s,
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    };
    keys.sort();
    assert_eq!(
        keys, PINNED_KEYS,
        "rule ids changed: a fleet must upgrade at once"
    );
}

/// The org pool under the organisation, the three plan limits under the
/// key, all in the organisation's hash slot.
const PINNED_KEYS: [&str; 4] = [
    "tollgate:{o:acme}:2bce6cfc78fbc6b0:k:k1",
    "tollgate:{o:acme}:304853cd74dc1a17:k:k1",
    "tollgate:{o:acme}:6e13d69cd86d755c:k:k1",
    "tollgate:{o:acme}:fd7f37b87f646cdd:o:acme",
];

/// Sliding windows count the same windows in process and on Redis (found by
/// review: in process they were counted from the engine's zero, on Redis
/// from Unix time, so with an engine started 30 s into a minute the two
/// paths admitted differently). Both are Unix-aligned now.
#[test]
fn sliding_windows_decide_alike_in_process_and_on_redis() {
    let Some(server) = Server::start("sliding_windows_decide_alike") else {
        return;
    };
    const SLIDING: &str = r#"
name = "t"
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.free]
limits = [{ per = "minute", limit = 10, algorithm = "sliding" }]
"#;
    // An engine zero 30 s past a whole minute of Unix time.
    let zero = Nanos::from_secs(1_714_305_630);
    let in_process = Engine::from_toml(SLIDING, zero).unwrap();
    let on_redis = Engine::from_toml(SLIDING, zero).unwrap();
    let rt = runtime();
    let redis = limiter(&server, FailMode::Closed);
    let req = Request::new("GET", "/x").key("k1").plan("free");
    let s = Nanos::from_secs;
    // 10 at 25 s (Unix second 55 of a minute), then into the next minutes.
    let times = [
        [s(25); 10].as_slice(),
        &[s(40), s(55), s(61), s(75), s(89), s(95), s(100)],
    ]
    .concat();
    for (i, &t) in times.iter().enumerate() {
        let local = in_process.check(&req, t).unwrap().is_allowed();
        let shared = rt
            .block_on(redis.check_request_at(&on_redis, &req, t))
            .unwrap()
            .is_allowed();
        assert_eq!(
            shared, local,
            "request #{i} at {t:?}: Redis admitted {shared}, in process {local}"
        );
    }
}
