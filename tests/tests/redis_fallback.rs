//! The Redis backend's fail modes and refunds: what [`FailMode::Local`]
//! admits while Redis is down (never more than its `share` of a rule: GCRA
//! rules at `share` of their rate, windows never above `share` of their
//! limit in any window), and where a refund goes (only where the admission
//! was charged) and how much (only what the charge still weighs: a late
//! `304` gives a local bucket that regenerated the charge nothing).
//!
//! All but the last three need no server: they use an address nothing
//! listens on. The last three start a `redis-server` (as the other
//! `redis_*` tests: they skip loudly without one, or fail under
//! `TOLLGATE_REDIS_REQUIRED=1`).
//!
//! `cargo test -p tollgate-tests --features redis --test redis_fallback`

mod redis_support;

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis_support::{Rng, Server, runtime};
use tollgate::policy::{Engine, Request};
use tollgate::redis::{
    FailMode, Member, PolicyOutcome, RedisAdmission, RedisConfig, RedisLimiter, RedisRule, Source,
};
use tollgate::window::{FixedRule, SlidingRule};
use tollgate::{Nanos, Quota};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A port nothing listens on: bound, then closed.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("redis://127.0.0.1:{port}/")
}

/// A limiter on a dead address in `FailMode::Local { share }`; it tries
/// Redis once an hour, so every answer comes from the local store.
fn local(share: f64) -> RedisLimiter {
    let config = RedisConfig {
        fail_mode: FailMode::Local { share },
        timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(200),
        retry_interval: Duration::from_secs(3_600),
        ..RedisConfig::default()
    };
    RedisLimiter::new(&dead_url(), config).unwrap()
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn floor_share(n: u32, share: f64) -> u32 {
    (f64::from(n) * share).floor() as u32
}

/// A positive time in ns, truncated (for random gaps).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(ns: f64) -> u64 {
    ns as u64
}

/// A share below one unit of the limit (0.1 of 1 per minute: ten
/// processes) runs at that share of the rate — one per 10 minutes per
/// process — not at the full limit per process (the reviewed code floored
/// `limit × share` to 0 and clamped it to 1 per the *same* period).
#[test]
fn local_fallback_runs_a_sub_unit_share_at_that_share_of_the_rate() {
    let l = local(0.1);
    let rt = runtime();
    let members = [Member::new(
        "k",
        RedisRule::gcra(Quota::per_minute(nz(1))),
        1,
    )];
    let admitted: Vec<u64> = (0..30)
        .filter(|minute| {
            let d = rt.block_on(l.check_all_at("t", &members, Nanos::from_secs(60 * minute)));
            assert_eq!(d.source, Source::Local);
            d.decision.is_allowed()
        })
        .collect();
    // One a minute for 30 minutes: minutes 0, 10 and 20 (burst 1).
    assert_eq!(
        admitted,
        [0, 10, 20],
        "share 0.1 of 1/min admitted at these minutes"
    );
}

/// A rule whose local share cannot be represented (half of 2 per 2^64 − 1
/// ns: one unit per 2^64 ns, past the 2^63 ns a quota holds) is refused
/// locally until the next retry of Redis — never run at a looser stand-in
/// (the reviewed code fell back to `Quota::per_second`: 1 per second).
#[test]
fn local_fallback_refuses_a_share_it_cannot_represent() {
    let l = local(0.5);
    let rt = runtime();
    let q = Quota::new(nz(2), Duration::from_nanos(u64::MAX)).unwrap();
    let members = [Member::new("k", RedisRule::gcra(q), 1)];
    for s in 0..10 {
        let d = rt.block_on(l.check_all_at("t", &members, Nanos::from_secs(1_000 + s)));
        assert_eq!(d.source, Source::Local);
        let wait = d.decision.retry_after().expect("refused");
        assert!(
            wait > Nanos::from_secs(3_599) && wait <= Nanos::from_secs(3_601),
            "refused until the next retry (1 h), not {wait:?}"
        );
    }
    // With share 1 the rule itself fits: one admission (its burst is 1:
    // 2 × 2^63 ns is past what a quota holds).
    let full = local(1.0);
    let admitted = (0..10)
        .filter(|s| {
            rt.block_on(full.check_all_at("t", &members, Nanos::from_secs(1_000 + s)))
                .decision
                .is_allowed()
        })
        .count();
    assert_eq!(admitted, 1);
}

/// With `share: 1.0`, a fixed window of 10 per calendar hour admits at
/// most 10 in one calendar hour locally (the reviewed code ran it as a GCRA
/// of 10 per hour with burst 10: 19 in the hour, a request a minute).
#[test]
fn local_fallback_keeps_a_fixed_window_within_its_limit() {
    let l = local(1.0);
    let rt = runtime();
    let hourly = FixedRule::new(nz(10), Nanos::from_secs(3_600), Nanos::ZERO).unwrap();
    let members = [Member::new("k", RedisRule::fixed(hourly).unwrap(), 1)];
    let hour = Nanos::from_secs(3_600 * 1_000);
    let admitted = (0..60)
        .filter(|m| {
            let d = rt.block_on(l.check_all_at("t", &members, hour + Nanos::from_secs(60 * m)));
            assert_eq!(d.source, Source::Local);
            d.decision.is_allowed()
        })
        .count();
    // Burst 5, then 6 per hour: 5 + one at minutes 10, 20, 30, 40, 50.
    assert_eq!(
        admitted, 10,
        "10/hour admitted {admitted} in one calendar hour"
    );
}

/// Over a long overloaded run (random request times, about 16 requests per
/// local emission interval, same-instant bursts, idle gaps that refill the
/// burst), the local fallback of a GCRA rule never
/// admits more than its share: at every instant, units admitted since the
/// first request ≤ `b' + elapsed / T'` with the local parameters
/// (`T' >= T / share`, `b' = max(1, floor(B × share))`), hence ≤
/// `ceil(share × (B + elapsed × limit / period)) + 1` of the rule. And not
/// much less: at least 85 % of `loaded time / T'` (the share is kept, not
/// starved).
#[test]
fn local_fallback_never_admits_more_than_its_share_of_a_gcra_rule() {
    // (limit, period ns, burst, share, largest cost)
    let cases: [(u32, u64, u32, f64, u32); 9] = [
        (1, 60_000_000_000, 1, 0.1, 1),
        (10, 60_000_000_000, 10, 0.25, 1),
        (7, 3_000_000_000, 7, 1.0 / 3.0, 2),
        (100, 3_600_000_000_000, 20, 0.5, 3),
        (3, 86_400_000_000_000, 3, 0.3, 1),
        (1_000, 1_000_000_000, 1_000, 0.01, 4),
        (5, 1_000_000, 5, 1.0, 2),
        (2, 10_000_000_000, 1, 0.07, 1),
        (1_000_000, 1_000_000_000, 50, 0.125, 5),
    ];
    let rt = runtime();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (limit, period, burst, share, max_cost) in cases {
        let q = Quota::new(nz(limit), Duration::from_nanos(period))
            .unwrap()
            .with_burst(nz(burst));
        let l = local(share);
        let members_of = |cost| [Member::new("k", RedisRule::gcra(q), cost)];
        let t_rule = q.emission_interval().as_u64() as f64;
        // The local emission interval, at least T / share.
        let t_local = t_rule / share;
        let b_local = f64::from(floor_share(q.burst().get(), share).max(1));
        let start = 1_000_000_000_000_u64;
        let mut now = start;
        let mut units = 0_u64;
        let mut idle = 0_u64;
        for i in 0..4_000 {
            let cost = 1 + u32::try_from(rng.below(u64::from(max_cost))).unwrap();
            let d = rt.block_on(l.check_all_at("t", &members_of(cost), Nanos::new(now)));
            assert_eq!(d.source, Source::Local);
            if d.decision.is_allowed() {
                units += u64::from(cost);
            }
            let elapsed = (now - start) as f64;
            let local_bound = b_local + (elapsed / t_local + 1e-6).floor();
            let rule_bound = (share
                * (f64::from(q.burst().get()) + elapsed * f64::from(limit) / period as f64))
                .ceil()
                + 1.0;
            assert!(
                units as f64 <= local_bound,
                "{limit} per {period} ns (burst {burst}) x {share}: {units} units by request \
                 #{i}, {elapsed} ns in; local bound {local_bound}"
            );
            assert!(
                units as f64 <= rule_bound,
                "{limit} per {period} ns (burst {burst}) x {share}: {units} units by request \
                 #{i}, {elapsed} ns in; share of the rule {rule_bound}"
            );
            // About 16 requests per local interval, some at one instant,
            // and now and then an idle gap that refills the burst.
            now += match rng.below(50) {
                0..=3 => 0,
                4 => {
                    let gap = rng.below(whole(3.0 * b_local * t_local) + 1);
                    idle += gap;
                    gap
                }
                _ => rng.below(whole(t_local / 8.0) + 1),
            };
        }
        // Not starved either: while loaded, a GCRA admits about one unit
        // per T' (a request comes at most T' / 8 after each is due).
        let busy = (now - start - idle) as f64;
        assert!(
            units as f64 >= 0.85 * (busy / t_local),
            "{limit} per {period} ns x {share}: only {units} units in {busy} ns loaded \
             (the share is {} units)",
            busy / t_local
        );
    }
}

/// The local fallback of a fixed or sliding window (L per W) never lets
/// any calendar window (of the rule's offset, or any other) or any sliding
/// window of length W see more than `floor(L × share)` units (1 when that
/// is 0), over random request times: dense stretches, same-instant bursts
/// and idle gaps that refill it before a window's end; nor ever more than
/// `share` of the rule's rate over time. It still admits about half the
/// share while loaded (`floor(n / 2) + 1` per W sustained).
#[test]
fn local_fallback_never_lets_a_window_see_more_than_its_share() {
    enum W {
        Fixed(u64),
        Sliding,
    }
    // (rule, limit, window s, share)
    let cases: [(W, u32, u64, f64); 9] = [
        (W::Fixed(0), 10, 3_600, 1.0),
        (W::Fixed(0), 7, 60, 0.5),
        (W::Fixed(17), 7, 60, 0.5),
        (W::Sliding, 5, 60, 0.3),
        (W::Fixed(0), 3, 60, 0.25),
        (W::Sliding, 100, 10, 0.33),
        (W::Fixed(0), 2, 1, 1.0),
        (W::Sliding, 1, 1, 0.5),
        (W::Sliding, 1_000, 86_400, 1.0 / 3.0),
    ];
    let rt = runtime();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for (kind, limit, window_s, share) in cases {
        let w = window_s * 1_000_000_000;
        let (rule, offset) = match kind {
            W::Fixed(offset_s) => {
                let offset = offset_s * 1_000_000_000;
                let r = FixedRule::new(nz(limit), Nanos::new(w), Nanos::new(offset)).unwrap();
                (RedisRule::fixed(r).unwrap(), offset)
            }
            W::Sliding => {
                let r = SlidingRule::new(nz(limit), Nanos::new(w)).unwrap();
                (RedisRule::sliding(r).unwrap(), 0)
            }
        };
        let l = local(share);
        let members = [Member::new("k", rule, 1)];
        let n = floor_share(limit, share);
        let cap = n.max(1) as usize;
        // Mean gap: a quarter of the local interval (four per admission).
        let gap = w / (4 * u64::from(n.max(1)));
        let start = 1_000 * w;
        let mut now = start;
        let mut admitted: Vec<u64> = Vec::new();
        let mut idle = 0;
        for _ in 0..4_000 {
            let d = rt.block_on(l.check_all_at("t", &members, Nanos::new(now)));
            assert_eq!(d.source, Source::Local);
            if d.decision.is_allowed() {
                admitted.push(now);
            }
            now += match rng.below(40) {
                0..=3 => 0, // same-instant burst
                4 => {
                    // Idle: refilled, at any phase of the next window.
                    let g = w + rng.below(2 * w);
                    idle += g;
                    g
                }
                _ => rng.below(2 * gap + 1), // dense
            };
        }
        let what = format!("{limit} per {window_s} s x {share} (cap {cap})");
        // Every calendar window: [offset + kW, offset + (k + 1)W).
        let mut i = 0;
        while i < admitted.len() {
            let k = (admitted[i] - offset) / w;
            let end = offset + (k + 1) * w;
            let j = admitted[i..].iter().take_while(|&&t| t < end).count();
            assert!(
                j <= cap,
                "{what}: {j} in the calendar window from {} ns",
                offset + k * w
            );
            i += j;
        }
        // Every sliding window [t, t + W): the fullest starts at an
        // admission.
        for (i, &t) in admitted.iter().enumerate() {
            let j = admitted[i..].iter().take_while(|&&u| u < t + w).count();
            assert!(j <= cap, "{what}: {j} in the sliding window from {t} ns");
        }
        // Over time, never above the share of the rule's rate either: by
        // each admission, at most `cap + elapsed × L × share / W` (for
        // n >= 1 the windows imply it; for n == 0 it is the rate 1 per
        // `W / (L × share)`).
        for (i, &t) in admitted.iter().enumerate() {
            let bound = cap as f64
                + ((t - admitted[0]) as f64 * f64::from(limit) * share / w as f64 + 1e-6).floor();
            assert!(
                (i + 1) as f64 <= bound,
                "{what}: {} admitted by {t} ns, above the share {bound}",
                i + 1
            );
        }
        // And it admits: at least half of the sustained rate while loaded.
        let sustained = if n == 0 {
            f64::from(limit) * share
        } else {
            f64::from(n / 2 + 1)
        };
        let windows = (now - start - idle) as f64 / w as f64;
        assert!(
            admitted.len() as f64 >= 0.5 * sustained * windows,
            "{what}: only {} admitted in {windows} windows",
            admitted.len()
        );
    }
}

// Late refunds in the local fallback, through the policy engine: an
// admission charged in the local store (Redis down) and completed with a
// 304 gives back only what its charge still weighs at completion, on the
// engine's clock (the local store is GCRA: `cost × T'` less the time since
// the charge). policies/s4e.toml, standard (100 per minute, burst 20) at
// share 1: locally a burst member of 1 per 0.6 s, burst 20, and the
// minute's window-safe GCRA (burst 50, 51 per minute).

fn s4e() -> Engine {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/s4e.toml"))
        .unwrap();
    Engine::from_toml(&src, Nanos::from_secs(1_714_305_600)).unwrap()
}

fn ms(n: u64) -> Nanos {
    Nanos::from_millis(n)
}

/// Checks `req` at `t` (engine clock) until the first refusal: the
/// admissions, completed with 200 at `t`.
fn admit_until_refused(
    rt: &tokio::runtime::Runtime,
    l: &RedisLimiter,
    e: &Engine,
    req: &Request<'_>,
    t: Nanos,
) -> usize {
    let mut n = 0;
    loop {
        match rt.block_on(l.check_request(e, req, t)).unwrap() {
            PolicyOutcome::Allowed(a) => {
                assert_eq!(a.source, Source::Local);
                rt.block_on(l.complete_at(a, 200, t));
                n += 1;
                assert!(n <= 100, "no refusal at {t:?}");
            }
            PolicyOutcome::Denied(_) => return n,
            PolicyOutcome::Exempt => panic!("not exempt"),
        }
    }
}

fn admit_local<'e>(
    rt: &tokio::runtime::Runtime,
    l: &RedisLimiter,
    e: &'e Engine,
    req: &Request<'_>,
    t: Nanos,
) -> RedisAdmission<'e> {
    match rt.block_on(l.check_request(e, req, t)).unwrap() {
        PolicyOutcome::Allowed(a) => {
            assert_eq!(a.source, Source::Local);
            a
        }
        other => panic!("expected a local admission at {t:?}, got {other:?}"),
    }
}

/// A 304 charged locally at 59 s and completed at 119.5 s, after a minute
/// of load that exhausted the local store: nothing comes back (the reviewed
/// `complete` refunded as of 119.5 s, a unit the store had already
/// regenerated, so one more was admitted).
#[test]
fn a_local_304_completed_a_minute_later_gives_the_local_store_nothing() {
    let rt = runtime();
    let (e, l) = (s4e(), local(1.0));
    let req = Request::new("GET", "/api/assets").key("k").plan("standard");
    let slow = admit_local(&rt, &l, &e, &req, ms(59_000));
    // Minute 1 at one request per 0.6 s, then at 119.5 s until refused.
    let mut admitted = 0;
    for i in 0..100 {
        let t = ms(60_000 + 600 * i);
        if let PolicyOutcome::Allowed(a) = rt.block_on(l.check_request(&e, &req, t)).unwrap() {
            rt.block_on(l.complete_at(a, 200, t));
            admitted += 1;
        }
    }
    admitted += admit_until_refused(&rt, &l, &e, &req, ms(119_500));
    assert!(admitted <= 100, "{admitted} in minute 1");
    rt.block_on(l.complete_at(slow, 304, ms(119_500)));
    let o = rt.block_on(l.check_request(&e, &req, ms(119_500))).unwrap();
    assert!(
        matches!(o, PolicyOutcome::Denied(_)),
        "the late 304 gave the exhausted local store a unit: {o:?}"
    );
}

/// A 304 charged locally at 0 s and completed at 30 s, when the bucket has
/// refilled: nothing back, so 20 at one instant stay the most the local
/// burst of 20 allows.
#[test]
fn a_local_304_completed_after_the_bucket_refilled_gives_nothing_back() {
    let rt = runtime();
    let (e, l) = (s4e(), local(1.0));
    let req = Request::new("GET", "/api/assets").key("k").plan("standard");
    let slow = admit_local(&rt, &l, &e, &req, Nanos::ZERO);
    let t = Nanos::from_secs(30);
    assert_eq!(admit_until_refused(&rt, &l, &e, &req, t), 20);
    rt.block_on(l.complete_at(slow, 304, t));
    let o = rt.block_on(l.check_request(&e, &req, t)).unwrap();
    assert!(
        matches!(o, PolicyOutcome::Denied(_)),
        "21st request at one instant admitted on a local burst of 20: {o:?}"
    );
}

/// A 304 answered 50 ms after its local admission still costs nothing but
/// those 50 ms: with the burst of 20 spent, its unit comes back (one more
/// is admitted 10 ms later, then none).
#[test]
fn a_prompt_local_304_still_costs_nothing() {
    let rt = runtime();
    let (e, l) = (s4e(), local(1.0));
    let req = Request::new("GET", "/api/assets").key("k").plan("standard");
    let t = Nanos::from_secs(1);
    let held: Vec<RedisAdmission<'_>> =
        (0..19).map(|_| admit_local(&rt, &l, &e, &req, t)).collect();
    let slow = admit_local(&rt, &l, &e, &req, t);
    assert!(matches!(
        rt.block_on(l.check_request(&e, &req, t)).unwrap(),
        PolicyOutcome::Denied(_)
    ));
    rt.block_on(l.complete_at(slow, 304, t + ms(50)));
    assert_eq!(admit_until_refused(&rt, &l, &e, &req, t + ms(60)), 1);
    drop(held);
}

fn unix_now() -> Nanos {
    Nanos::from_duration(SystemTime::now().duration_since(UNIX_EPOCH).unwrap())
}

const POLICY: &str = r#"
name = "t"
refund_status = [304]
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.free]
limits = [{ per = "hour", limit = 3, algorithm = "gcra" }]
"#;

fn limiter(server: &Server, fail_mode: FailMode) -> RedisLimiter {
    let config = RedisConfig {
        fail_mode,
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        retry_interval: Duration::from_millis(100),
        ..RedisConfig::default()
    };
    RedisLimiter::new(&server.url(), config).unwrap()
}

/// Waits until `r` answers from Redis (`true`) or from its fail mode
/// (`false`), probing with cost 0 under another tag (charges nothing).
fn wait_until(rt: &tokio::runtime::Runtime, r: &RedisLimiter, redis: bool) {
    let probe = RedisRule::gcra(Quota::per_second(nz(1)));
    for _ in 0..100 {
        let d = rt.block_on(r.check_all("probe", &[Member::new("p", probe, 0)]));
        if (d.source == Source::Redis) == redis {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no answer from {} in 5 s",
        if redis { "Redis" } else { "the fail mode" }
    );
}

/// A policy engine whose clock starts now, and the runtime to call Redis.
struct Setup {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    zero: Nanos,
}

impl Setup {
    fn new() -> Setup {
        let zero = unix_now();
        Setup {
            rt: runtime(),
            engine: Engine::from_toml(POLICY, zero).unwrap(),
            zero,
        }
    }

    /// One check of key k1: the admission (from `source`), or `None` for a
    /// refusal (by Redis when `source` is `Redis`, else by the fail mode).
    fn admit(&self, r: &RedisLimiter, source: Source) -> Option<RedisAdmission<'_>> {
        let req = Request::new("GET", "/x").key("k1").plan("free");
        // The engine's clock (the local fallback's), as `complete` reads it.
        let now = unix_now().saturating_sub(self.zero);
        match self
            .rt
            .block_on(r.check_request(&self.engine, &req, now))
            .unwrap()
        {
            PolicyOutcome::Allowed(a) => {
                assert_eq!(a.source, source);
                Some(a)
            }
            PolicyOutcome::Denied(d) => {
                assert_eq!(r.is_degraded(), source != Source::Redis, "{d:?}");
                None
            }
            PolicyOutcome::Exempt => panic!("not exempt"),
        }
    }

    /// Admissions from `source` until the first refusal (at most `limit`).
    fn admit_all(&self, r: &RedisLimiter, source: Source, limit: usize) -> Vec<RedisAdmission<'_>> {
        let mut out = Vec::new();
        while let Some(a) = self.admit(r, source) {
            out.push(a);
            assert!(
                out.len() <= limit,
                "{source:?} admitted {} of {limit}",
                out.len()
            );
        }
        out
    }

    fn complete(&self, r: &RedisLimiter, a: RedisAdmission<'_>, status: u16) {
        let now = unix_now().saturating_sub(self.zero);
        self.rt.block_on(r.complete(a, status, now));
    }
}

/// A refund of a local (outage) admission is timed on the clock the charge
/// was counted on — the engine's, which `complete` now takes — not on the
/// system clock (found by review: `complete` read `SystemTime`; with the
/// engine's clock an hour ahead of it, a 304 after 29 s gave back the whole
/// 30 s of its charge instead of 1 s, and 2 per minute admitted a third
/// within the minute).
#[test]
fn a_local_refund_is_timed_on_the_engine_clock() {
    let Some(mut server) = Server::start("a_local_refund_is_timed_on_the_engine_clock") else {
        return;
    };
    const TWO_PER_MINUTE: &str = r#"
name = "t"
refund_status = [304]
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.free]
limits = [{ per = "minute", limit = 2, algorithm = "gcra" }]
"#;
    let rt = runtime();
    let engine = Engine::from_toml(TWO_PER_MINUTE, unix_now()).unwrap();
    let r = limiter(&server, FailMode::Local { share: 1.0 });
    server.stop();
    wait_until(&rt, &r, false);
    let req = Request::new("GET", "/x").key("k1").plan("free");
    // The engine's clock, an hour ahead of the system clock.
    let t0 = Nanos::from_secs(3_600);
    let check = |t: Nanos| match rt.block_on(r.check_request(&engine, &req, t)).unwrap() {
        PolicyOutcome::Allowed(a) => {
            assert_eq!(a.source, Source::Local);
            Some(a)
        }
        _ => None,
    };
    let first = check(t0).expect("first");
    let second = check(t0).expect("second");
    drop(second);
    // A 304 for the first, 29 s after its charge: 1 s of it still weighs
    // (the bucket regenerated 29 s of its 30 s on its own).
    let later = t0 + Nanos::from_secs(29);
    rt.block_on(r.complete(first, 304, later));
    assert!(check(later).is_some(), "the refund gave back nothing");
    assert!(
        check(later + Nanos::from_secs(1)).is_none(),
        "a third admitted within the minute under 2 per minute"
    );
}

/// An admission made while Redis was down (`FailOpen`: charged nowhere;
/// `Local`: charged in this process) and completed with a refunding status
/// after Redis came back gives Redis nothing: Redis, whose 3 per hour went
/// to requests it counted, still refuses a 4th (the reviewed `complete`
/// refunded into Redis whatever the admission's source). A `Local` one
/// goes back to the local store.
#[test]
fn completing_an_outage_admission_refunds_nothing_in_redis() {
    for (mode, source) in [
        (FailMode::Open, Source::FailOpen),
        (FailMode::Local { share: 1.0 }, Source::Local),
    ] {
        let Some(mut server) =
            Server::start("completing_an_outage_admission_refunds_nothing_in_redis")
        else {
            return;
        };
        let t = Setup::new();
        let r = limiter(&server, mode);
        server.stop();
        wait_until(&t.rt, &r, false);
        let during = t.admit(&r, source).expect("admitted in the outage");
        server.restart();
        wait_until(&t.rt, &r, true);
        let by_redis = t.admit_all(&r, Source::Redis, 3);
        assert_eq!(by_redis.len(), 3, "{mode:?}");
        drop(by_redis); // served (no refund)
        t.complete(&r, during, 304);
        assert!(
            t.admit(&r, Source::Redis).is_none(),
            "{mode:?}: Redis admitted a 4th within the hour under 3/hour"
        );
        if source == Source::Local {
            // The unit went back to the local store, where it was charged:
            // in the next outage this process admits its full 3 again.
            server.stop();
            wait_until(&t.rt, &r, false);
            let local = t.admit_all(&r, Source::Local, 3);
            assert_eq!(local.len(), 3, "the local refund was lost");
        }
    }
}

/// An admission Redis charged, completed with a refunding status while
/// Redis is down, gives nothing to the local store (which never charged
/// it): the local fallback, having admitted its 3 per hour, still refuses
/// (the reviewed `complete` refunded into the fail mode's store).
#[test]
fn completing_a_redis_admission_during_an_outage_refunds_nothing_locally() {
    let Some(mut server) =
        Server::start("completing_a_redis_admission_during_an_outage_refunds_nothing_locally")
    else {
        return;
    };
    let t = Setup::new();
    let r = limiter(&server, FailMode::Local { share: 1.0 });
    let charged = t.admit(&r, Source::Redis).expect("admitted by Redis");
    server.stop();
    wait_until(&t.rt, &r, false);
    let local = t.admit_all(&r, Source::Local, 3);
    assert_eq!(local.len(), 3);
    t.complete(&r, charged, 304);
    assert!(
        t.admit(&r, Source::Local).is_none(),
        "the local store admitted a 4th: it was given a unit Redis charged"
    );
}

/// A Redis-charged admission completed with a refunding status while
/// Redis is up still gets its unit back in Redis (the rule is "where it
/// was charged", not "never").
#[test]
fn completing_a_redis_admission_refunds_it_in_redis() {
    let Some(server) = Server::start("completing_a_redis_admission_refunds_it_in_redis") else {
        return;
    };
    let t = Setup::new();
    let r = limiter(&server, FailMode::Closed);
    let mut held = t.admit_all(&r, Source::Redis, 3);
    assert_eq!(held.len(), 3);
    t.complete(&r, held.pop().unwrap(), 304);
    assert!(t.admit(&r, Source::Redis).is_some());
    assert!(t.admit(&r, Source::Redis).is_none());
}

/// `FailMode::Open` admits what a rule could ever admit, not a cost above
/// its capacity: that stays `ExceedsCapacity`, as Redis, the core and the
/// other fail modes say (found by review).
#[test]
fn fail_open_still_refuses_a_cost_above_capacity() {
    let rt = runtime();
    let config = RedisConfig {
        fail_mode: FailMode::Open,
        timeout: Duration::from_millis(50),
        connect_timeout: Duration::from_millis(50),
        ..RedisConfig::default()
    };
    let open = RedisLimiter::new(&dead_url(), config).unwrap();
    let q = Quota::per_minute(nz(5));
    let over = rt.block_on(open.check_all("t", &[Member::new("k", RedisRule::gcra(q), 6)]));
    assert_eq!(over.source, Source::FailOpen);
    assert_eq!(
        over.decision,
        tollgate::Decision::ExceedsCapacity {
            cost: 6,
            capacity: 5
        }
    );
    let fits = rt.block_on(open.check_all("t", &[Member::new("k", RedisRule::gcra(q), 5)]));
    assert!(fits.decision.is_allowed(), "{fits:?}");
}
