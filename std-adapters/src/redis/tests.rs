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

/// The local quota of a GCRA rule: one unit per exactly `ceil(T / share)`,
/// burst `max(1, floor(B × share))`, for the f64 `share` as it is.
#[test]
fn local_quota_of_a_gcra_rule_is_its_share() {
    let cases: [(u32, u64, u32, f64); 8] = [
        (1, 60_000_000_000, 1, 0.1),
        (10, 60_000_000_000, 10, 0.25),
        (7, 3_000_000_000, 7, 1.0 / 3.0),
        (100, 3_600_000_000_000, 20, 0.5),
        (3, 86_400_000_000_000, 3, 0.3),
        (1_000, 1_000_000_000, 1_000, 0.01),
        (5, 1_000_000, 5, 1.0),
        (u32::MAX, 1 << 40, u32::MAX, 0.001),
    ];
    for (limit, period, burst, share) in cases {
        let q = Quota::new(nz(limit), Duration::from_nanos(period))
            .unwrap()
            .with_burst(nz(burst));
        let local = RedisRule::gcra(q).local_quota(share).unwrap();
        let t = u128::from(q.emission_interval().as_u64());
        let e = u128::from(local.emission_interval().as_u64());
        // share = m / 2^k exactly; e is the least with e × share >= t.
        let (m, k) = exact(share);
        assert!(
            e * m >= t << k,
            "{limit}/{period} x {share}: {e} < T / share"
        );
        assert!(
            (e - 1) * m < t << k,
            "{limit}/{period} x {share}: {e} not rounded up by < 1"
        );
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let b = ((f64::from(q.burst().get()) * share).floor() as u32).max(1);
        assert_eq!(local.burst().get(), b, "{limit}/{period} x {share}");
    }
}

/// `share` as m / 2^k (only for shares >= 2^-60 here, so it fits a u128
/// product with a u64).
fn exact(share: f64) -> (u128, u32) {
    let mut k = 0;
    let mut s = share;
    while s.fract() != 0.0 {
        s *= 2.0;
        k += 1;
    }
    assert!(k <= 60);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (s as u128, k)
}

/// Window rules: a burst of `ceil(n / 2)` and `floor(n / 2) + 1` per
/// window (n = floor(L × share)), or one per `ceil(W / (L × share))`.
#[test]
fn local_quota_of_a_window_rule_fits_every_window() {
    let w = Nanos::from_secs(60);
    let cases: [(u32, f64, u32, u64); 6] = [
        (10, 1.0, 5, 10_000_000_000),       // n 10: b 5, r 6
        (7, 0.5, 2, 30_000_000_000),        // n 3: b 2, r 2
        (5, 0.3, 1, 60_000_000_000),        // n 1: b 1, r 1
        (3, 0.25, 1, 80_000_000_000),       // l 0.75: one per 80 s
        (1, 1.0 / 3.0, 1, 180_000_000_001), // l a hair below 1/3
        (2, 1.0, 1, 30_000_000_000),        // n 2: b 1, r 2
    ];
    for (limit, share, burst, emission) in cases {
        let fixed = FixedRule::new(nz(limit), w, Nanos::ZERO).unwrap();
        let sliding = SlidingRule::new(nz(limit), w).unwrap();
        for rule in [
            RedisRule::fixed(fixed).unwrap(),
            RedisRule::sliding(sliding).unwrap(),
        ] {
            let q = rule.local_quota(share).unwrap();
            assert_eq!(
                (q.burst().get(), q.emission_interval().as_u64()),
                (burst, emission),
                "{limit} per minute x {share}"
            );
        }
    }
}

/// One unit per more than 2^63 ns cannot be represented: no local quota
/// (the member is refused), never a looser stand-in.
#[test]
fn an_unrepresentable_local_quota_is_none() {
    let q = Quota::new(nz(2), Duration::from_nanos(u64::MAX)).unwrap();
    assert_eq!(RedisRule::gcra(q).local_quota(0.5), None);
    assert!(RedisRule::gcra(q).local_quota(1.0).is_some());
    let day = Quota::per_day(nz(1));
    assert_eq!(RedisRule::gcra(day).local_quota(1e-12), None);
    assert_eq!(RedisRule::gcra(day).local_quota(f64::MIN_POSITIVE), None);
    let long = SlidingRule::new(nz(1), Nanos::from_secs(MAX_WINDOW_SECS)).unwrap();
    assert_eq!(RedisRule::sliding(long).unwrap().local_quota(1e-9), None);
    assert!(RedisRule::sliding(long).unwrap().local_quota(1.0).is_some());
}

/// A member without a local quota is refused until the next retry, and
/// (all or nothing) charges nothing to the others.
#[test]
fn local_fallback_refuses_what_it_cannot_represent() {
    let l = limiter(FailMode::Local { share: 0.5 });
    let rt = runtime();
    let now = Nanos::from_secs(1_000);
    let huge = RedisRule::gcra(Quota::new(nz(2), Duration::from_nanos(u64::MAX)).unwrap());
    let members = [Member::new("ok", rule(), 1), Member::new("huge", huge, 1)];
    for _ in 0..3 {
        let d = rt.block_on(l.check_all_at("t", &members, now));
        assert_eq!((d.source, d.member), (Source::Local, 1));
        assert!(d.decision.retry_after().unwrap() > Nanos::from_secs(3_599));
    }
    let d = rt.block_on(l.check_all_at("t", &members[..1], now));
    assert_eq!(
        d.decision.remaining(),
        4,
        "the refusals charged nothing: {d:?}"
    );
}

/// A cost the rule holds but the local burst cannot: refused for now, not
/// `ExceedsCapacity` (which says "never").
#[test]
fn local_fallback_refuses_a_cost_above_its_burst_for_now() {
    let l = limiter(FailMode::Local { share: 0.25 });
    let rt = runtime();
    let d = rt.block_on(l.check_all_at("t", &[Member::new("k", rule(), 5)], Nanos::ZERO));
    assert!(
        d.decision.retry_after().unwrap() > Nanos::from_secs(3_599),
        "{d:?}"
    );
    let d = rt.block_on(l.check_all_at("t", &[Member::new("k", rule(), 11)], Nanos::ZERO));
    assert!(matches!(
        d.decision,
        Decision::ExceedsCapacity {
            cost: 11,
            capacity: 10
        }
    ));
}

/// `refund_to` gives units back only where they were charged.
#[test]
fn refund_to_goes_where_the_charge_went() {
    let rt = runtime();
    let now = Nanos::from_secs(1_000);
    let members = [Member::new("k", rule(), 1)];
    let local = limiter(FailMode::Local { share: 0.5 });
    for _ in 0..5 {
        assert!(
            rt.block_on(local.check_all_at("t", &members, now))
                .decision
                .is_allowed()
        );
    }
    // Charged by Redis (say): Redis is unreachable, so nothing goes back,
    // least of all to the local store.
    assert_eq!(
        rt.block_on(local.refund_to_at(Source::Redis, "t", &members, now)),
        None
    );
    assert!(
        !rt.block_on(local.check_all_at("t", &members, now))
            .decision
            .is_allowed()
    );
    for nothing in [Source::FailOpen, Source::FailClosed] {
        assert_eq!(
            rt.block_on(local.refund_to_at(nothing, "t", &members, now)),
            None
        );
    }
    let r = rt
        .block_on(local.refund_to_at(Source::Local, "t", &members, now))
        .unwrap();
    assert_eq!((r.source, r.members[0].remaining), (Source::Local, 1));
    assert!(
        rt.block_on(local.check_all_at("t", &members, now))
            .decision
            .is_allowed()
    );
    // Without a local store, a local refund has nowhere to go.
    let open = limiter(FailMode::Open);
    assert_eq!(
        rt.block_on(open.refund_to_at(Source::Local, "t", &members, now)),
        None
    );
}

/// `refund_to_since` gives the local store back only what a charge still
/// weighs: all of it at once (also through `check_all`'s own clock, whose
/// time `RedisDecision::now` reports as Unix time), nothing once the
/// bucket regenerated it (a late 304 must not let a refilled bucket admit
/// one more than its burst).
#[test]
fn refund_to_since_gives_back_only_what_the_local_charge_still_weighs() {
    let rt = runtime();
    // Locally 1 per 6 s, burst 10.
    let members = [Member::new("k", rule(), 1)];
    let l = limiter(FailMode::Local { share: 1.0 });
    // On the limiter's clock: ten at once, then refused.
    let mut last = None;
    for _ in 0..10 {
        let d = rt.block_on(l.check_all("c", &members));
        assert_eq!(d.source, Source::Local);
        assert!(d.decision.is_allowed());
        last = Some(d);
    }
    let last = last.unwrap();
    assert!(unix_now().as_u64().abs_diff(last.now.as_u64()) < 60_000_000_000);
    assert!(
        !rt.block_on(l.check_all("c", &members))
            .decision
            .is_allowed()
    );
    // Refunded a moment later: the unit comes back.
    let r = rt
        .block_on(l.refund_to_since(Source::Local, "c", &members, last.now))
        .unwrap();
    assert_eq!(r.members[0].remaining, 1);
    assert!(
        rt.block_on(l.check_all("c", &members))
            .decision
            .is_allowed()
    );
    // On the caller's clock: ten at 1 000 s; the bucket gives one back by
    // itself at 1 006 s.
    let t0 = Nanos::from_secs(1_000);
    let at = |s| Nanos::from_secs(s);
    for _ in 0..10 {
        assert!(
            rt.block_on(l.check_all_at("t", &members, t0))
                .decision
                .is_allowed()
        );
    }
    // 3 s late: half the unit's 6 s is owed (remaining 1 at 1 003 s).
    let r = rt
        .block_on(l.refund_to_since_at(Source::Local, "t", &members, t0, at(1_003)))
        .unwrap();
    assert_eq!(r.members[0].remaining, 1);
    // 7 s late (a second charge at 1 000 s): nothing owed.
    let r = rt
        .block_on(l.refund_to_since_at(Source::Local, "t", &members, t0, at(1_007)))
        .unwrap();
    assert_eq!(r.members[0].remaining, 1);
    let admitted = (0..3)
        .filter(|_| {
            rt.block_on(l.check_all_at("t", &members, at(1_007)))
                .decision
                .is_allowed()
        })
        .count();
    assert_eq!(admitted, 1, "the late refund gave a regenerated unit back");
    // Charged at the refund's time (refund_to_at): the whole unit.
    let r = rt
        .block_on(l.refund_to_at(Source::Local, "t", &members, at(1_007)))
        .unwrap();
    assert_eq!(r.members[0].remaining, 1);
}
