//! Without a server: fail modes against an address nothing listens on, the
//! breaker, the combination of member decisions. Tests against a real
//! `redis-server` are in `tests/tests/redis_*.rs` (`bash ci/redis.sh`).

use super::*;
use core::num::NonZeroU32;
use std::sync::Mutex;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A port nothing listens on: bound, then closed.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("redis://127.0.0.1:{port}/")
}

fn limiter(mode: FailMode) -> RedisLimiter {
    let config = RedisConfig {
        fail_mode: mode,
        timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(200),
        retry_interval: Duration::from_secs(3_600),
        ..RedisConfig::default()
    };
    RedisLimiter::new(&dead_url(), config).unwrap()
}

fn rule() -> RedisRule {
    RedisRule::gcra(Quota::per_minute(nz(10)))
}

#[test]
fn unreachable_redis_fails_closed_by_default_and_says_so() {
    let l = limiter(FailMode::Closed);
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    assert!(l.on_health(move |e| seen.lock().unwrap().push(e.clone())));
    assert!(!l.on_health(|_| {}));
    let rt = runtime();
    let d = rt.block_on(l.check("k", &Quota::per_minute(nz(10)), 1));
    assert_eq!(d.source, Source::FailClosed);
    assert!(d.decision.retry_after().unwrap() > Nanos::from_secs(3_599));
    // Inside the retry interval the breaker answers without trying Redis.
    let d = rt.block_on(l.check("k", &Quota::per_minute(nz(10)), 1));
    assert_eq!(d.source, Source::FailClosed);
    let s = l.stats();
    assert_eq!((s.redis, s.degraded, s.failures), (0, 2, 1));
    assert!(l.is_degraded());
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1, "one event per change: {events:?}");
    assert!(matches!(
        &events[0],
        HealthEvent::Degraded {
            mode: FailMode::Closed,
            ..
        }
    ));
}

#[test]
fn fail_open_admits_uncounted() {
    let l = limiter(FailMode::Open);
    let rt = runtime();
    for _ in 0..20 {
        let d = rt.block_on(l.check_all("t", &[Member::new("k", rule(), 1)]));
        assert_eq!(d.source, Source::FailOpen);
        assert!(d.decision.is_allowed());
    }
}

#[test]
fn local_fallback_admits_its_share_all_or_nothing() {
    let l = limiter(FailMode::Local { share: 0.5 });
    let rt = runtime();
    let now = Nanos::from_secs(1_000);
    let small = RedisRule::gcra(Quota::per_minute(nz(4)));
    let members = [
        Member::new("big", rule(), 1),
        Member::new("small", small, 1),
    ];
    let admitted = (0..10)
        .filter(|_| {
            let d = rt.block_on(l.check_all_at("t", &members, now));
            assert_eq!(d.source, Source::Local);
            d.decision.is_allowed()
        })
        .count();
    // Half of 4 binds; the refusals charged nothing to "big" (5 of 10).
    assert_eq!(admitted, 2);
    let d = rt.block_on(l.check_all_at("t", &members[..1], now));
    assert_eq!(d.decision.remaining(), 2);
    // A refund goes to the local store too.
    let r = rt.block_on(l.refund_all_at("t", &members[1..], now));
    assert_eq!((r.source, r.members[0].remaining), (Source::Local, 1));
}

#[test]
fn settings_are_checked() {
    let url = "redis://127.0.0.1:1/";
    let with = |c: RedisConfig| RedisLimiter::new(url, c).map(|_| ());
    assert!(
        with(RedisConfig {
            prefix: "a{".into(),
            ..RedisConfig::default()
        })
        .is_err()
    );
    assert!(
        with(RedisConfig {
            timeout: Duration::ZERO,
            ..RedisConfig::default()
        })
        .is_err()
    );
    for share in [0.0, -1.0, 1.5, f64::NAN] {
        let c = RedisConfig {
            fail_mode: FailMode::Local { share },
            ..RedisConfig::default()
        };
        let e = with(c).unwrap_err();
        assert!(e.to_string().contains("share"), "{e}");
    }
    let w = FixedRule::new(nz(1), Nanos::from_secs(MAX_WINDOW_SECS + 1), Nanos::ZERO).unwrap();
    let e = RedisRule::fixed(w).unwrap_err();
    assert!(e.to_string().contains("whole number of seconds"), "{e}");
    assert!(
        RedisRule::sliding(SlidingRule::new(nz(1), Nanos::from_secs(MAX_WINDOW_SECS)).unwrap())
            .is_ok()
    );
}

#[test]
fn combine_is_all_s() {
    let a = Decision::Allowed {
        remaining: 3,
        reset_after: Nanos::new(5),
    };
    let b = Decision::Allowed {
        remaining: 1,
        reset_after: Nanos::new(2),
    };
    let d = |w| Decision::Denied {
        retry_after: Nanos::new(w),
        remaining: 0,
        reset_after: Nanos::new(9),
    };
    let x = Decision::ExceedsCapacity {
        cost: 9,
        capacity: 2,
    };
    assert_eq!(
        combine(&[a, b]),
        (
            Decision::Allowed {
                remaining: 1,
                reset_after: Nanos::new(5)
            },
            1
        )
    );
    assert_eq!(
        combine(&[a, d(4), d(7)]),
        (
            Decision::Denied {
                retry_after: Nanos::new(7),
                remaining: 0,
                reset_after: Nanos::new(9)
            },
            2
        )
    );
    assert_eq!(combine(&[d(4), x]), (x, 1));
    assert_eq!(
        combine(&[]).0,
        Decision::Allowed {
            remaining: u32::MAX,
            reset_after: Nanos::ZERO
        }
    );
}
