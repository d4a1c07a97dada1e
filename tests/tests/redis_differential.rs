//! The Redis script against the in-process core: the same costs at the same
//! times (passed into the script instead of the server's `TIME`) give the
//! same decisions — GCRA, fixed and sliding windows, refunds (made at once,
//! and late ones with the time of their charge, against the in-process
//! `KeyedAlgorithm::refunded_since`), all-or-nothing composites — plus key
//! expiry, the `EVAL` fallback and Cluster hash tags.

mod redis_support;

use std::cell::Cell;
use std::num::NonZeroU32;
use std::time::Duration;

use redis_support::{Rng, Server, Value, runtime};
use tollgate::keyed::{KeyedAlgorithm, KeyedFixedWindow, KeyedGcra, KeyedSlidingWindow};
use tollgate::redis::{Member, RedisConfig, RedisLimiter, RedisRule, Source};
use tollgate::window::{FixedRule, SlidingRule};
use tollgate::{All, Decision, FixedWindow, Gcra, Nanos, Quota, SlidingWindow, Snapshot};

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

/// The in-process reference: one state word under a keyed algorithm —
/// the core's own `decide` / `refunded` (as `Gcra`, `FixedWindow` and
/// `SlidingWindow` apply them) and `refunded_since`, the in-process rule
/// for a refund that comes after its charge.
struct Word<A: KeyedAlgorithm> {
    alg: A,
    quota: A::Quota,
    state: Cell<u64>,
}

impl<A: KeyedAlgorithm> Word<A> {
    fn new(alg: A, quota: A::Quota) -> Self {
        Word {
            alg,
            quota,
            state: Cell::new(0),
        }
    }
}

/// What the differential needs of the reference.
trait Local {
    fn check(&self, now: Nanos, cost: u32) -> Decision;
    /// Gives back `cost` charged at `charged_at`; also whether the plain
    /// refund (as of `now`) would have given back more (a late refund
    /// withheld).
    fn give_back_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> (Snapshot, bool);
}

impl<A: KeyedAlgorithm> Local for Word<A> {
    fn check(&self, now: Nanos, cost: u32) -> Decision {
        let (d, new) = self.alg.decide(&self.quota, self.state.get(), now, cost);
        if let Some(s) = new {
            self.state.set(s);
        }
        d
    }
    fn give_back_since(&self, charged_at: Nanos, now: Nanos, cost: u32) -> (Snapshot, bool) {
        let state = self.state.get();
        let plain = self.alg.refunded(&self.quota, state, now, cost);
        let since = self
            .alg
            .refunded_since(&self.quota, state, charged_at, now, cost);
        if let Some(s) = since {
            self.state.set(s);
        }
        let snap = |s: Option<u64>| self.alg.snapshot(&self.quota, s.unwrap_or(state), now);
        let got = snap(since);
        (got, snap(plain) != got)
    }
}

/// What one run did.
#[derive(Default)]
struct Counts {
    checks: usize,
    admitted: usize,
    /// Refunds with a `charged_at` before (or after) their own time.
    late: usize,
    /// Of those, ones that gave back less than a refund as of now would.
    withheld: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.checks += o.checks;
        self.admitted += o.admitted;
        self.late += o.late;
        self.withheld += o.withheld;
    }
}

/// Runs `ops` random operations on `local` and on Redis under `rule`,
/// starting at `base` with steps around `unit`; with `back`, time also
/// steps backwards (and nothing is refunded: a refund to a fresh state
/// deletes the key, which a single state word does not do — the keyed
/// store does; see the module docs). Refunds are made at once
/// (`refund_all_at`) or late, with the time of an earlier admission, an
/// earlier instant or a later one (`refund_to_since_at`).
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
) -> Counts {
    let mut rng = Rng(seed);
    let mut now = base;
    let mut counts = Counts::default();
    // Times of recent admissions (the charges late refunds refer to).
    let mut charges: Vec<u64> = Vec::new();
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
        if !back && rng.below(4) == 0 {
            let charged_at = match rng.below(5) {
                0 | 1 => None,
                2 => charges
                    .len()
                    .checked_sub(1 + usize::try_from(rng.below(3)).unwrap())
                    .map(|i| charges[i]),
                3 => Some(now.saturating_sub(rng.below(unit.saturating_mul(4)))),
                _ => Some(now.saturating_add(rng.below(unit))),
            };
            let got = match charged_at {
                None => rt.block_on(redis.refund_all_at("diff", &m, t)),
                Some(c) => {
                    let r = rt.block_on(redis.refund_to_since_at(
                        Source::Redis,
                        "diff",
                        &m,
                        Nanos::new(c),
                        t,
                    ));
                    r.expect("Redis is up")
                }
            };
            let charged_at = Nanos::new(charged_at.unwrap_or(now));
            let (want, withheld) = local.give_back_since(charged_at, t, cost);
            assert_eq!(got.source, Source::Redis);
            assert_eq!(
                got.members[0],
                want,
                "refund #{op} of {cost} charged at {} ns, at {now} ns ({rule:?})",
                charged_at.as_u64()
            );
            if charged_at != t {
                counts.late += 1;
                counts.withheld += usize::from(withheld);
            }
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
            counts.checks += 1;
            if want.is_allowed() {
                counts.admitted += 1;
                charges.push(now);
            }
        }
    }
    counts
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
    let mut n = Counts::default();
    for (i, q) in quotas.iter().enumerate() {
        for (j, (base, back)) in [(0, false), (UNIX, false), (UNIX, true), (LATE, true)]
            .into_iter()
            .enumerate()
        {
            let key = format!("gcra-{i}-{j}");
            let local = Word::new(KeyedGcra, *q);
            n += differential(
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
        }
    }
    let s = redis.stats();
    let (checks, admitted) = (n.checks, n.admitted);
    eprintln!(
        "gcra: {checks} checks ({admitted} admitted) and {} late refunds ({} withheld) \
         identical to the core; {s:?}",
        n.late, n.withheld
    );
    assert!(admitted > checks / 10 && admitted < checks * 9 / 10);
    assert!(
        n.withheld > 10 && n.withheld < n.late,
        "{} of {}",
        n.withheld,
        n.late
    );
    assert_eq!((s.mismatches, s.failures), (0, 0));
}

#[test]
fn windows_decide_as_the_core() {
    let Some(server) = Server::start("windows_decide_as_the_core") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let mut n = Counts::default();
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
            let local = Word::new(KeyedFixedWindow::new(w, offset).unwrap(), nz(limit));
            n += differential(
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
            let sliding = SlidingRule::new(nz(limit), w).unwrap();
            let local = Word::new(KeyedSlidingWindow::new(w).unwrap(), nz(limit));
            n += differential(
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
        }
    }
    let s = redis.stats();
    let (checks, admitted) = (n.checks, n.admitted);
    eprintln!(
        "windows: {checks} checks ({admitted} admitted) and {} late refunds ({} withheld) \
         identical to the core; {s:?}",
        n.late, n.withheld
    );
    assert!(admitted > checks / 10 && admitted < checks * 9 / 10);
    assert!(
        n.withheld > 10 && n.withheld < n.late,
        "{} of {}",
        n.withheld,
        n.late
    );
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
    // (+1 ms: the script's margin for Redis timing `PX` from the script's start.)
    assert!((150..=301).contains(&t), "PTTL {t} ms, expected 301");
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
        (fixed_ms - 1_000..=fixed_ms + 2).contains(&f),
        "fixed PTTL {f}, expected {fixed_ms}"
    );
    assert!(
        (fixed_ms + 60_000 - 1_000..=fixed_ms + 60_002).contains(&s),
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

/// One unit a second, as a fixed and as a sliding window.
fn one_per_second_windows() -> [RedisRule; 2] {
    let second = Nanos::from_secs(1);
    [
        RedisRule::fixed(FixedRule::new(nz(1), second, Nanos::ZERO).unwrap()).unwrap(),
        RedisRule::sliding(SlidingRule::new(nz(1), second).unwrap()).unwrap(),
    ]
}

/// Refunds `m`'s units charged at `charged` in Redis at `now`; what the
/// first member has left after.
fn refund_in_redis(
    rt: &tokio::runtime::Runtime,
    redis: &RedisLimiter,
    tag: &str,
    m: &[Member<'_>],
    charged: Nanos,
    now: Nanos,
) -> u32 {
    let back = rt
        .block_on(redis.refund_to_since_at(Source::Redis, tag, m, charged, now))
        .expect("Redis answers");
    back.members[0].remaining
}

/// A refund whose `now` is still in its charge's window while the key
/// already holds a later window (another caller's fresher time, or a clock
/// stepping back) gives nothing from that later window — in the script as
/// in the core's `refunded_since` (the script lacked the check when the
/// core gained it; the random differential never reached this corner).
#[test]
fn a_stale_refund_gives_nothing_from_a_later_window() {
    let Some(server) = Server::start("a_stale_refund_gives_nothing_from_a_later_window") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let rules = one_per_second_windows();
    for (i, rule) in rules.into_iter().enumerate() {
        let tag = format!("stale{i}");
        let m = [Member::new("k", rule, 1)];
        let charged = Nanos::from_millis(1_500);
        // The sliding window still weighs window 1 during window 2.
        let later = Nanos::from_millis(if i == 0 { 2_001 } else { 3_000 });
        let check = |t: Nanos| rt.block_on(redis.check_all_at(&tag, &m, t)).decision;
        assert!(check(charged).is_allowed(), "{i}");
        assert!(check(later).is_allowed(), "{i}");
        let left = refund_in_redis(&rt, &redis, &tag, &m, charged, Nanos::from_millis(1_999));
        assert_eq!(left, 0, "{i}: the mirror gave back");
        assert!(
            !check(later).is_allowed(),
            "{i}: the later window admitted twice"
        );
    }
}

/// A GCRA refund whose `now` was read before another caller's later check
/// (a client preempted between its clock and its refund) gives back nothing
/// that check's refill restored: the script counts from `TAT − burst × T`,
/// as the core's `gcra::refunded_since`. Without it, a burst of 10 spent at
/// t0, refilled and spent again at t0 + 2 s, then refunded as of t0, gave
/// the 10 back — 20 admitted at t0 + 2 s.
#[test]
fn a_stale_gcra_refund_gives_back_nothing_refilled() {
    let Some(server) = Server::start("a_stale_gcra_refund_gives_back_nothing_refilled") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let q = Quota::per_second(nz(10));
    let m = [Member::new("k", RedisRule::gcra(q), 10)];
    let one = [Member::new("k", RedisRule::gcra(q), 1)];
    let t0 = Nanos::from_secs(5);
    let t1 = t0 + Nanos::from_secs(2);
    let check =
        |m: &[Member<'_>], t: Nanos| rt.block_on(redis.check_all_at("stale", m, t)).decision;
    assert!(check(&m, t0).is_allowed());
    assert!(check(&m, t1).is_allowed());
    let left = refund_in_redis(&rt, &redis, "stale", &m, t0, t0);
    assert_eq!(left, 0, "the mirror gave back");
    assert!(
        !check(&one, t1).is_allowed(),
        "the refill was given back twice"
    );
}

/// Found by review: a refund that brought a window's count to 0 deleted the
/// key, forgetting the window index the core keeps. A check with an older
/// time (a caller whose clock is behind, passing its own time) then started
/// an earlier window, which callers with fresher clocks ignore as over:
/// one more admitted in the current window than its limit. Kept, the stale
/// check counts against the stored window, as in process.
#[test]
fn a_refund_to_zero_keeps_the_window() {
    let Some(server) = Server::start("a_refund_to_zero_keeps_the_window") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let rules = one_per_second_windows();
    for (i, rule) in rules.into_iter().enumerate() {
        let tag = format!("zero{i}");
        let m = [Member::new("k", rule, 1)];
        let charged = Nanos::from_millis(1_500);
        let check = |t: Nanos| rt.block_on(redis.check_all_at(&tag, &m, t)).decision;
        assert!(check(charged).is_allowed(), "{i}");
        let left = refund_in_redis(&rt, &redis, &tag, &m, charged, Nanos::from_millis(1_600));
        assert_eq!(left, 1, "{i}: the refund gave back");
        // A caller whose clock is a second behind.
        assert!(check(Nanos::from_millis(500)).is_allowed(), "{i}");
        // The sliding window's previous count still weighs in the next one.
        let later = Nanos::from_millis(if i == 0 { 1_700 } else { 2_100 });
        assert!(
            !check(later).is_allowed(),
            "{i}: the stale admission was forgotten"
        );
    }
}

/// A caller's clock far behind the latest time a window saw — more than the
/// core's clock-back tolerance (`SLIDING_MAX_BACK` / `FIXED_MAX_BACK`
/// windows): the script reads the stored window as over, as the core does
/// (found by review: the script counted against it, the client's read-out
/// disagreed and blamed the first member of the call).
#[test]
fn a_clock_far_behind_decides_as_the_core() {
    let Some(server) = Server::start("clock_far_behind") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let w = Nanos::from_secs(1);
    let t1 = Nanos::from_secs(1_714_305_600);
    let pool = RedisRule::gcra(Quota::per_second(nz(100)));
    let sliding = RedisRule::sliding(SlidingRule::new(nz(1), w).unwrap()).unwrap();
    let fixed = RedisRule::fixed(FixedRule::new(nz(1), w, Nanos::ZERO).unwrap()).unwrap();
    let core_sliding = SlidingWindow::new(nz(1), w).unwrap();
    let core_fixed = FixedWindow::new(nz(1), w, Nanos::ZERO).unwrap();
    for (name, rule, core, back) in [
        (
            "s",
            sliding,
            &core_sliding as &dyn tollgate::Limiter,
            5_000u64,
        ),
        ("f", fixed, &core_fixed as &dyn tollgate::Limiter, 1_100_000),
    ] {
        let m = [Member::new("other", pool, 1), Member::new(name, rule, 1)];
        assert!(core.check_n(t1, 1).is_allowed());
        let first = rt.block_on(redis.check_all_at("far", &m[1..], t1));
        assert!(first.decision.is_allowed(), "{first:?}");
        // Within the tolerance both count against the later window.
        let near = t1 - Nanos::from_secs(3);
        let want = core.check_n(near, 1);
        let got = rt.block_on(redis.check_all_at("far", &m[1..], near));
        assert!(!want.is_allowed());
        assert_eq!(got.members[0], want, "{name}: {got:?}");
        // Past it both read the later window as over.
        let t0 = t1 - Nanos::from_secs(back);
        let want = core.check_n(t0, 1);
        let got = rt.block_on(redis.check_all_at("far", &m, t0));
        assert_eq!(redis.stats().mismatches, 0, "{name}: {got:?}");
        assert_eq!(got.members[1], want, "{name}: {got:?}");
    }
}

/// A GCRA refunded back to `now` with callers' clocks: a caller whose clock
/// is behind is still held by it, as by the core (found by review: the key
/// was deleted as fresh, so a caller 300 ms behind got 10 where the core
/// gives 7).
#[test]
fn a_gcra_refunded_to_now_still_holds_a_caller_behind() {
    let Some(server) = Server::start("gcra_refund_to_now") else {
        return;
    };
    let rt = runtime();
    let redis = limiter(&server);
    let q = Quota::per_second(nz(10)); // T = 100 ms, burst 10
    let core = Gcra::new(q);
    let m = |c| [Member::new("k", RedisRule::gcra(q), c)];
    let t = Nanos::from_secs(1_714_305_600);
    let behind = t - Nanos::from_millis(300);
    assert!(core.check_n(t, 10).is_allowed());
    assert!(
        rt.block_on(redis.check_all_at("lag", &m(10), t))
            .decision
            .is_allowed()
    );
    let _ = core.refund_since(t, t, 10);
    let _ = rt.block_on(redis.refund_to_since_at(Source::Redis, "lag", &m(10), t, t));
    let (mut in_core, mut in_redis) = (0, 0);
    for _ in 0..10 {
        in_core += u32::from(core.check(behind).is_allowed());
        let d = rt.block_on(redis.check_all_at("lag", &m(1), behind));
        in_redis += u32::from(d.decision.is_allowed());
    }
    assert_eq!(in_core, 7);
    assert_eq!(in_redis, in_core, "admitted to the caller behind");
}
