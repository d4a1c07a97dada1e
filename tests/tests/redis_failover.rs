//! redis-server killed in the middle of a test, then restarted on the same
//! port: each fail mode answers as configured (without panicking, within
//! the command timeout), the health callback hears one `Degraded` and one
//! `Recovered`, and decisions come from Redis again once it is back. A paused
//! (slow) server gives timeouts and the same fail mode.

mod redis_support;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_support::{Server, runtime};
use tollgate::redis::{
    FailMode, HealthEvent, Member, RedisConfig, RedisLimiter, RedisRule, Source,
};
use tollgate::{Nanos, Quota};

fn quota() -> Quota {
    Quota::per_day(NonZeroU32::new(10).unwrap())
}

fn setup(server: &Server, mode: FailMode) -> (RedisLimiter, Arc<Mutex<Vec<HealthEvent>>>) {
    let config = RedisConfig {
        fail_mode: mode,
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        retry_interval: Duration::from_millis(100),
        ..RedisConfig::default()
    };
    let redis = RedisLimiter::new(&server.url(), config).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    redis.on_health(move |e| sink.lock().unwrap().push(e.clone()));
    (redis, events)
}

/// Kills the server after three checks, checks 20 times, restarts it, and
/// checks until Redis answers again. Returns the 20 degraded decisions.
fn outage(mode: FailMode) -> Option<Vec<tollgate::redis::RedisDecision>> {
    let mut server = Server::start(&format!("outage {mode:?}"))?;
    let rt = runtime();
    let (redis, events) = setup(&server, mode);
    let q = quota();
    for left in [9, 8, 7] {
        let d = rt.block_on(redis.check("k", &q, 1));
        assert_eq!(
            (d.source, d.decision.remaining()),
            (Source::Redis, left),
            "{d:?}"
        );
    }
    server.stop();
    let mut degraded = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        degraded.push(rt.block_on(redis.check("k", &q, 1)));
        slowest = slowest.max(t.elapsed());
    }
    // Bounded by the timeouts (connect + command), never hanging.
    assert!(
        slowest < Duration::from_millis(1_500),
        "a degraded check took {slowest:?}"
    );
    assert!(redis.is_degraded());
    server.restart();
    let start = Instant::now();
    let back = loop {
        let d = rt.block_on(redis.check("k", &q, 1));
        if d.source == Source::Redis {
            break d;
        }
        // A retry interval (100 ms), a timeout (300 ms), and slack.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no recovery within 3 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The restarted server kept nothing (no persistence): counting restarts.
    assert_eq!(back.decision.remaining(), 9, "{back:?}");
    assert!(!redis.is_degraded());
    let events = events.lock().unwrap().clone();
    let stats = redis.stats();
    eprintln!(
        "{mode:?}: slowest degraded check {slowest:?}, recovered after {:?}; events {events:?}; {stats:?}",
        start.elapsed()
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], HealthEvent::Degraded { mode: m, .. } if *m == mode));
    assert!(matches!(events[1], HealthEvent::Recovered { .. }));
    assert_eq!(stats.mismatches, 0);
    assert!(stats.failures >= 1 && stats.degraded >= 20);
    Some(degraded)
}

#[test]
fn fail_open_admits_during_the_outage() {
    let Some(d) = outage(FailMode::Open) else {
        return;
    };
    assert!(
        d.iter()
            .all(|d| d.source == Source::FailOpen && d.decision.is_allowed())
    );
}

#[test]
fn fail_closed_refuses_during_the_outage() {
    let Some(d) = outage(FailMode::Closed) else {
        return;
    };
    for d in &d {
        assert_eq!(d.source, Source::FailClosed);
        // Retry when the limiter next tries Redis.
        let wait = d.decision.retry_after().expect("a denial");
        assert!(
            wait > Nanos::ZERO && wait <= Nanos::from_millis(101),
            "{wait:?}"
        );
    }
}

#[test]
fn local_fallback_admits_its_share_during_the_outage() {
    let Some(d) = outage(FailMode::Local { share: 0.5 }) else {
        return;
    };
    assert!(d.iter().all(|d| d.source == Source::Local));
    // Half of the burst of 10, counted in this process alone.
    assert_eq!(d.iter().filter(|d| d.decision.is_allowed()).count(), 5);
}

#[test]
fn a_paused_server_times_out_into_the_fail_mode() {
    let Some(server) = Server::start("a_paused_server_times_out_into_the_fail_mode") else {
        return;
    };
    let rt = runtime();
    let (redis, events) = setup(&server, FailMode::Closed);
    let q = quota();
    assert_eq!(rt.block_on(redis.check("k", &q, 1)).source, Source::Redis);
    // Every client's commands wait 1.5 s: slower than the 300 ms timeout.
    server.cmd(&["CLIENT", "PAUSE", "1500", "ALL"]);
    let t = Instant::now();
    let d = rt.block_on(redis.check("k", &q, 1));
    assert_eq!(d.source, Source::FailClosed, "{d:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1_000),
        "waited {:?}",
        t.elapsed()
    );
    assert_eq!(redis.stats().timeouts, 1);
    // Once the pause ends, Redis answers again (the timed-out call ran
    // after the pause too: stricter, never looser).
    let start = Instant::now();
    let back = loop {
        let d = rt.block_on(redis.check("k", &q, 1));
        if d.source == Source::Redis {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(back.decision.remaining() <= 7, "{back:?}");
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], HealthEvent::Degraded { error, .. } if error.contains("timed out"))
    );
}

/// A key the script cannot read — a hash where a state should be, or text
/// that is no state of its kind — is refused on its own (found by review:
/// the script raised an error, the client took it for Redis being down and
/// answered *every* key by the fail mode until the retry interval passed,
/// so under `FailMode::Open` a healthy key was admitted past its limit, and
/// under `Closed` every key was refused).
#[test]
fn one_unreadable_key_is_refused_alone() {
    let poisons: [&[&str]; 3] = [
        &["HSET", "f", "1"],
        &["SET", "not-a-number-state"],
        &["SET", "12:3"],
    ];
    for poison in poisons {
        let Some(server) = Server::start("one_unreadable_key_is_refused_alone") else {
            return;
        };
        let rt = runtime();
        let config = RedisConfig {
            fail_mode: FailMode::Open,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ..RedisConfig::default()
        };
        let redis = RedisLimiter::new(&server.url(), config).unwrap();
        let q = quota(); // 10 per day
        for _ in 0..10 {
            let d = rt.block_on(redis.check("good", &q, 1));
            assert_eq!((d.source, d.decision.is_allowed()), (Source::Redis, true));
        }
        let bad = redis.key("bad", "");
        let mut cmd = vec![poison[0], bad.as_str()];
        cmd.extend_from_slice(&poison[1..]);
        server.cmd(&cmd);
        let d = rt.block_on(redis.check("bad", &q, 1));
        assert_eq!(
            (d.source, d.decision.is_allowed()),
            (Source::Redis, false),
            "{poison:?}: the unreadable key: {d:?}"
        );
        let d = rt.block_on(redis.check("good", &q, 1));
        assert_eq!(
            (d.source, d.decision.is_allowed()),
            (Source::Redis, false),
            "{poison:?}: an 11th of 10/day on a healthy key: {d:?}"
        );
        // A refund of the unreadable key leaves it as it is.
        let before = server.cmd(&["DUMP", bad.as_str()]);
        let member = [Member::new("", RedisRule::gcra(q), 1)];
        let r = rt.block_on(redis.refund_all("bad", &member));
        assert_eq!(server.cmd(&["DUMP", bad.as_str()]), before, "{poison:?}");
        // ... and reads out as refusing, as its checks do, not as full.
        assert_eq!(r.members[0].remaining, 0, "{poison:?}: {r:?}");
    }
}
