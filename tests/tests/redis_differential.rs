//! The Redis script against the in-process core: the same costs at the same
//! times (passed into the script instead of the server's `TIME`) give the
//! same decisions — GCRA, fixed and sliding windows, refunds, all-or-nothing
//! composites — plus key expiry, the `EVAL` fallback and Cluster hash tags.

mod redis_support;

use std::num::NonZeroU32;
use std::time::Duration;

use redis_support::{Rng, Server, Value, runtime};
use tollgate::redis::{Member, RedisConfig, RedisLimiter, RedisRule, Source};
use tollgate::window::{FixedRule, SlidingRule};
use tollgate::{All, Decision, FixedWindow, Gcra, Nanos, Quota, SlidingWindow};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn limiter(server: &Server) -> RedisLimiter {
    let config = RedisConfig {
        // Generous: a slow CI machine must not turn into fail-closed answers.
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..RedisConfig::default()
    };
    RedisLimiter::new(&server.url(), config).unwrap()
}

/// An in-process limiter and its Redis rule.
trait Local {
    fn check(&self, now: Nanos, cost: u32) -> Decision;
    fn give_back(&self, now: Nanos, cost: u32) -> tollgate::Snapshot;
}

impl Local for Gcra {
    fn check(&self, now: Nanos, cost: u32) -> Decision {
        self.check_n(now, cost)
    }
    fn give_back(&self, now: Nanos, cost: u32) -> tollgate::Snapshot {
        self.refund(now, cost)
    }
}

impl Local for FixedWindow {
    fn check(&self, now: Nanos, cost: u32) -> Decision {
        self.check_n(now, cost)
    }
    fn give_back(&self, now: Nanos, cost: u32) -> tollgate::Snapshot {
        self.refund(now, cost)
    }
}

impl Local for SlidingWindow {
    fn check(&self, now: Nanos, cost: u32) -> Decision {
        self.check_n(now, cost)
    }
    fn give_back(&self, now: Nanos, cost: u32) -> tollgate::Snapshot {
        self.refund(now, cost)
    }
}

/// Runs `ops` random operations on `local` and on Redis under `rule`,
/// starting at `base` with steps around `unit`; with `back`, time also
/// steps backwards (and nothing is refunded: a refund to a fresh state
/// deletes the key, which a single in-process limiter does not do — the
/// keyed store does; see the module docs). Returns (checks, admitted).
#[allow(clippy::too_many_arguments)]
fn differential(
    rt: &tokio::runtime::Runtime,
    redis: &RedisLimiter,
    key: &str,
    rule: RedisRule,
    local: &dyn Local,
    capacity: u32,
    base: u64,
    unit: u64,
    back: bool,
    seed: u64,
    ops: usize,
) -> (usize, usize) {
    let mut rng = Rng(seed);
    let mut now = base;
    let (mut checks, mut admitted) = (0, 0);
    for op in 0..ops {
        match rng.below(10) {
            0 => now = now.saturating_add(rng.below(unit.saturating_mul(50))),
            1 if back => now = now.saturating_sub(rng.below(unit.saturating_mul(3))),
            2..=6 => now = now.saturating_add(rng.below(unit.saturating_mul(2))),
            _ => {}
        }
        let cost = match rng.below(12) {
            0 => 0,
            1 => capacity,
            2 => capacity.saturating_add(1),
            3 => u32::try_from(rng.below(u64::from(capacity) + 1)).unwrap(),
            _ => 1,
        };
        let t = Nanos::new(now);
        let m = [Member::new(key, rule, cost)];
        if !back && rng.below(6) == 0 {
            let want = local.give_back(t, cost);
            let got = rt.block_on(redis.refund_all_at("diff", &m, t));
            assert_eq!(got.source, Source::Redis);
            assert_eq!(
                got.members[0], want,
                "refund #{op} of {cost} at {now} ns ({rule:?})"
            );
        } else {
            let want = local.check(t, cost);
            let got = rt.block_on(redis.check_all_at("diff", &m, t));
            assert_eq!(got.source, Source::Redis);
            assert_eq!(got.now, t);
            assert_eq!(
                (got.decision, got.members[0]),
                (want, want),
                "check #{op} of {cost} at {now} ns ({rule:?})"
            );
            checks += 1;
            admitted += usize::from(want.is_allowed());
        }
    }
    (checks, admitted)
}

/// Unix time in 2024 (ns), and a time near the end of u64 (the script's
/// two-part arithmetic and the core's overflow refusal).
const UNIX: u64 = 1_714_305_600_123_456_789;
const LATE: u64 = u64::MAX - 1_000_000_000_000;

#[test]
fn gcra_decides_as_the_core() {
    let Some(server) = Server::start("gcra_decides_as_the_core") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let quotas = [
        Quota::per_second(nz(10)),
        Quota::new(nz(3), Duration::from_secs(10)).unwrap(), // T rounded up
        Quota::per_day(nz(1)).with_burst(nz(5)),
        Quota::per_minute(nz(60)).with_burst(nz(1)),
        Quota::per_second(nz(1_000_000_000)).with_burst(nz(4_000_000_000)),
        Quota::per_hour(nz(7)).with_burst(nz(100_000)),
    ];
    let (mut checks, mut admitted) = (0, 0);
    for (i, q) in quotas.iter().enumerate() {
        for (j, (base, back)) in [(0, false), (UNIX, false), (UNIX, true), (LATE, true)]
            .into_iter()
            .enumerate()
        {
            let key = format!("gcra-{i}-{j}");
            let local = Gcra::new(*q);
            let (c, a) = differential(
                &rt,
                &redis,
                &key,
                RedisRule::gcra(*q),
                &local,
                q.burst().get(),
                base,
                q.emission_interval().as_u64(),
                back,
                0x9E37_79B9 + (i * 8 + j) as u64,
                250,
            );
            checks += c;
            admitted += a;
        }
    }
    let s = redis.stats();
    eprintln!("gcra: {checks} checks ({admitted} admitted) identical to the core; {s:?}");
    assert!(admitted > checks / 10 && admitted < checks * 9 / 10);
    assert_eq!((s.mismatches, s.failures), (0, 0));
}

#[test]
fn windows_decide_as_the_core() {
    let Some(server) = Server::start("windows_decide_as_the_core") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let (mut checks, mut admitted) = (0, 0);
    let windows = [(1, 5), (60, 100), (3_600, 7), (86_400, 1_000)];
    for (i, &(secs, limit)) in windows.iter().enumerate() {
        let w = Nanos::from_secs(secs);
        let unit = w.as_u64() / u64::from(limit);
        for (j, (base, back)) in [(0, false), (UNIX, false), (UNIX, true)]
            .into_iter()
            .enumerate()
        {
            let offset = Nanos::new(if j == 1 {
                7_000_000_123 % w.as_u64()
            } else {
                0
            });
            let fixed = FixedRule::new(nz(limit), w, offset).unwrap();
            let local = FixedWindow::new(nz(limit), w, offset).unwrap();
            let (c, a) = differential(
                &rt,
                &redis,
                &format!("fixed-{i}-{j}"),
                RedisRule::fixed(fixed).unwrap(),
                &local,
                limit,
                base,
                unit,
                back,
                0xF1 + (i * 8 + j) as u64,
                250,
            );
            checks += c;
            admitted += a;
            let sliding = SlidingRule::new(nz(limit), w).unwrap();
            let local = SlidingWindow::new(nz(limit), w).unwrap();
            let (c, a) = differential(
                &rt,
                &redis,
                &format!("sliding-{i}-{j}"),
                RedisRule::sliding(sliding).unwrap(),
                &local,
                limit,
                base,
                unit,
                back,
                0x51 + (i * 8 + j) as u64,
                250,
            );
            checks += c;
            admitted += a;
        }
    }
    let s = redis.stats();
    eprintln!("windows: {checks} checks ({admitted} admitted) identical to the core; {s:?}");
    assert!(admitted > checks / 10 && admitted < checks * 9 / 10);
    assert_eq!((s.mismatches, s.failures), (0, 0));
}

#[test]
fn composites_decide_as_all() {
    let Some(server) = Server::start("composites_decide_as_all") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let q = Quota::per_second(nz(20)).with_burst(nz(6));
    let (w, l) = (Nanos::from_secs(1), 9);
    let local = All((
        Gcra::new(q),
        FixedWindow::new(nz(l), w, Nanos::ZERO).unwrap(),
        SlidingWindow::new(nz(12), w).unwrap(),
    ));
    let rules = [
        RedisRule::gcra(q),
        RedisRule::fixed(FixedRule::new(nz(l), w, Nanos::ZERO).unwrap()).unwrap(),
        RedisRule::sliding(SlidingRule::new(nz(12), w).unwrap()).unwrap(),
    ];
    let mut rng = Rng(7);
    let mut now = UNIX;
    let mut binding = [0; 3];
    for op in 0..1_500 {
        now += rng.below(60_000_000);
        let cost = [0, 1, 1, 1, 2, 3, 7][usize::try_from(rng.below(7)).unwrap()];
        let want = local.check_all(Nanos::new(now), cost);
        let members = [
            Member::new("g", rules[0], cost),
            Member::new("f", rules[1], cost),
            Member::new("s", rules[2], cost),
        ];
        let got = rt.block_on(redis.check_all_at("all", &members, Nanos::new(now)));
        assert_eq!(
            (got.decision, got.member),
            (want.decision, want.member),
            "op #{op}"
        );
        binding[want.member] += 1;
    }
    eprintln!("composite: 1500 checks identical to All; binding member counts {binding:?}");
    assert!(
        binding.iter().all(|&b| b > 0),
        "every member bound sometimes: {binding:?}"
    );
    assert_eq!(redis.stats().mismatches, 0);
}

fn pttl(server: &Server, key: &str) -> i64 {
    server.cmd(&["PTTL", key]).int()
}

#[test]
fn keys_expire_when_their_state_is_fresh() {
    let Some(server) = Server::start("keys_expire_when_their_state_is_fresh") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    // GCRA, 10/s: three units keep the key 300 ms.
    let q = Quota::per_second(nz(10));
    let d = rt.block_on(redis.check_all("ttl", &[Member::new("g", RedisRule::gcra(q), 3)]));
    assert_eq!(d.source, Source::Redis);
    assert_eq!(d.decision.remaining(), 7);
    let key = redis.key("ttl", "g");
    let t = pttl(&server, &key);
    // Read back a moment later: up to 150 ms of scheduling delay allowed.
    assert!((150..=300).contains(&t), "PTTL {t} ms, expected 300");
    // A refund of all three: fresh, so the key is gone.
    let r = rt.block_on(redis.refund_all("ttl", &[Member::new("g", RedisRule::gcra(q), 3)]));
    assert_eq!(r.members[0].remaining, 10);
    assert_eq!(pttl(&server, &key), -2, "a fresh state is deleted");
    // A refused check writes nothing: no key appears.
    let one = Quota::per_hour(nz(1));
    let _ = rt.block_on(redis.check_all("ttl", &[Member::new("h", RedisRule::gcra(one), 2)]));
    assert_eq!(pttl(&server, &redis.key("ttl", "h")), -2);
    // Windows: until the end of the window (fixed), or of the next one
    // (sliding), as measured from the server's clock. Not within 3 s of a
    // minute's end (the fixed key would expire before it is read).
    let Value::Array(t) = server.cmd(&["TIME"]) else {
        panic!("TIME")
    };
    let Value::Bulk(Some(secs)) = &t[0] else {
        panic!("{t:?}")
    };
    let secs: u64 = secs.parse().unwrap();
    if secs % 60 >= 57 {
        std::thread::sleep(Duration::from_secs(60 - secs % 60));
    }
    let w = Nanos::from_secs(60);
    let fixed = RedisRule::fixed(FixedRule::new(nz(5), w, Nanos::ZERO).unwrap()).unwrap();
    let sliding = RedisRule::sliding(SlidingRule::new(nz(5), w).unwrap()).unwrap();
    let d = rt.block_on(redis.check_all(
        "ttl",
        &[Member::new("f", fixed, 1), Member::new("s", sliding, 1)],
    ));
    assert!(d.decision.is_allowed());
    let into = (d.now.as_u64() % w.as_u64()) / 1_000_000; // ms into the window
    let (f, s) = (
        pttl(&server, &redis.key("ttl", "f")),
        pttl(&server, &redis.key("ttl", "s")),
    );
    let fixed_ms = 60_000 - into as i64;
    assert!(
        (fixed_ms - 1_000..=fixed_ms + 1).contains(&f),
        "fixed PTTL {f}, expected {fixed_ms}"
    );
    assert!(
        (fixed_ms + 60_000 - 1_000..=fixed_ms + 60_001).contains(&s),
        "sliding PTTL {s}, expected {}",
        fixed_ms + 60_000
    );
    // And a key really disappears once fresh: 3 units of 100/s live 30 ms.
    let fast = Quota::per_second(nz(100));
    let _ = rt.block_on(redis.check_all("ttl", &[Member::new("x", RedisRule::gcra(fast), 3)]));
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(pttl(&server, &redis.key("ttl", "x")), -2);
}

#[test]
fn script_is_reloaded_after_a_flush() {
    let Some(server) = Server::start("script_is_reloaded_after_a_flush") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let q = Quota::per_minute(nz(3));
    let m = [Member::new("k", RedisRule::gcra(q), 1)];
    assert!(
        rt.block_on(redis.check_all("flush", &m))
            .decision
            .is_allowed()
    );
    // A restart, failover or SCRIPT FLUSH forgets the script: EVALSHA
    // answers NOSCRIPT and the limiter sends it with EVAL.
    assert_eq!(server.cmd(&["SCRIPT", "FLUSH"]), Value::Simple("OK".into()));
    let d = rt.block_on(redis.check_all("flush", &m));
    assert_eq!((d.source, d.decision.remaining()), (Source::Redis, 1));
    assert_eq!(redis.stats().failures, 0);
}

#[test]
fn one_call_is_one_cluster_slot() {
    // A one-node cluster owning every slot: commands whose keys hash to
    // different slots are refused with CROSSSLOT, as on any Cluster.
    let Some(server) = Server::start_with(
        "one_call_is_one_cluster_slot",
        &["--cluster-enabled", "yes"],
    ) else {
        return;
    };
    let rt = runtime();
    let v = server.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    assert_eq!(v, Value::Simple("OK".into()), "{v:?}");
    let start = std::time::Instant::now();
    while !matches!(server.cmd(&["CLUSTER", "INFO"]), Value::Bulk(Some(ref s)) if s.contains("cluster_state:ok"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cluster never became ok"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let redis = limiter(&server);
    let q = RedisRule::gcra(Quota::per_minute(nz(10)));
    // Key, org pool and a window of one request: three keys, one tag.
    let d = rt.block_on(redis.check_all(
        "o:acme",
        &[
            Member::new("k:k1", q, 1),
            Member::new("pool", q, 1),
            Member::new("k:k1:hour", q, 1),
        ],
    ));
    assert_eq!(d.source, Source::Redis, "{d:?}");
    assert!(d.decision.is_allowed());
    // Without a shared tag the same keys span slots: the server refuses.
    let v = server.cmd(&["EVAL", "return 1", "2", "tollgate:a:k1", "tollgate:b:pool"]);
    assert!(
        matches!(&v, Value::Error(e) if e.starts_with("CROSSSLOT")),
        "{v:?}"
    );
    // Tags with braces and empty tags stay one slot.
    for tag in ["", "a}b", "{x}", "%7D"] {
        let d =
            rt.block_on(redis.check_all(tag, &[Member::new("1", q, 1), Member::new("2", q, 1)]));
        assert_eq!(d.source, Source::Redis, "tag {tag:?}: {d:?}");
    }
}
