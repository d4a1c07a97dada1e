//! Several independent clients — threads with their own runtime and their
//! own connection, and separate OS processes — hammering one key through one
//! Redis admit exactly the bound in total: the burst, with a rate slow
//! enough (one unit per 86.4 s) that no unit comes back during the test.

mod redis_support;

use std::num::NonZeroU32;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use redis_support::{Rng, Server, runtime};
use tollgate::Quota;
use tollgate::redis::{Member, RedisConfig, RedisLimiter, RedisRule, Source};

const BURST: u32 = 1_000;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn quota() -> Quota {
    // 1000 per day: bursts of 1000, then one unit every 86.4 s.
    Quota::per_day(nz(BURST))
}

fn client(url: &str) -> RedisLimiter {
    let config = RedisConfig {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..RedisConfig::default()
    };
    RedisLimiter::new(url, config).unwrap()
}

/// `attempts` checks of `key` from a fresh client; the number admitted.
fn hammer(url: &str, key: &str, attempts: usize) -> u32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = client(url);
    let q = quota();
    let mut admitted = 0;
    for _ in 0..attempts {
        let d = rt.block_on(redis.check(key, &q, 1));
        assert_eq!(d.source, Source::Redis, "{d:?}");
        admitted += u32::from(d.decision.is_allowed());
    }
    admitted
}

#[test]
fn threads_with_their_own_connections_admit_exactly_the_burst() {
    let Some(server) = Server::start("threads_with_their_own_connections_admit_exactly_the_burst")
    else {
        return;
    };
    let url = server.url();
    let (threads, attempts) = (8, 400);
    let barrier = Arc::new(Barrier::new(threads));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (url, barrier) = (url.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                hammer(&url, "hot", attempts)
            })
        })
        .collect();
    let per: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total: u32 = per.iter().sum();
    eprintln!(
        "{threads} clients x {attempts} checks in {:?}: admitted {per:?} = {total} (bound {BURST})",
        start.elapsed()
    );
    assert_eq!(total, BURST);
    assert!(
        per.iter().filter(|&&n| n > 0).count() > 1,
        "clients interleaved: {per:?}"
    );
}

/// The child side of [`processes_admit_exactly_the_burst`]: run only as a
/// child process (it reads its server from the environment).
#[test]
#[ignore = "child process of processes_admit_exactly_the_burst"]
fn child_hammer() {
    let url = std::env::var("TOLLGATE_REDIS_CHILD_URL").expect("run as a child");
    let attempts = std::env::var("TOLLGATE_REDIS_CHILD_ATTEMPTS")
        .unwrap()
        .parse()
        .unwrap();
    println!("ADMITTED {}", hammer(&url, "hot-processes", attempts));
}

#[test]
fn processes_admit_exactly_the_burst() {
    let Some(server) = Server::start("processes_admit_exactly_the_burst") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let (processes, attempts) = (4, 500);
    let start = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_hammer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("TOLLGATE_REDIS_CHILD_URL", server.url())
                .env("TOLLGATE_REDIS_CHILD_ATTEMPTS", attempts.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let per: Vec<u32> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "child failed: {out:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines()
                .find_map(|l| l.split("ADMITTED ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no count from the child: {text}"))
                .parse()
                .unwrap()
        })
        .collect();
    let total: u32 = per.iter().sum();
    eprintln!(
        "{processes} processes x {attempts} checks in {:?}: admitted {per:?} = {total} (bound {BURST})",
        start.elapsed()
    );
    assert_eq!(total, BURST);
}

#[test]
fn keys_and_their_org_pool_hold_together() {
    let Some(server) = Server::start("keys_and_their_org_pool_hold_together") else {
        return;
    };
    // 12 API keys of one organisation, 30 per day each, and the org pool of
    // 200 per day: 6 clients pick keys at random; the pool binds.
    let (keys, per_key, pool) = (12, 30, 200);
    let url = server.url();
    let rt = runtime();
    let counts = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..6u64 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let redis = client(&url);
                let key_rule = RedisRule::gcra(Quota::per_day(nz(per_key)));
                let pool_rule = RedisRule::gcra(Quota::per_day(nz(pool)));
                let mut rng = Rng(c + 1);
                let mut admitted = vec![0u32; keys];
                for _ in 0..150 {
                    let k = usize::try_from(rng.below(keys as u64)).unwrap();
                    let name = format!("k:{k}");
                    let d = redis
                        .check_all(
                            "o:acme",
                            &[
                                Member::new(&name, key_rule, 1),
                                Member::new("pool", pool_rule, 1),
                            ],
                        )
                        .await;
                    assert_eq!(d.source, Source::Redis);
                    if d.decision.is_allowed() {
                        admitted[k] += 1;
                    }
                }
                admitted
            }));
        }
        let mut total = vec![0u32; keys];
        for t in tasks {
            for (k, n) in t.await.unwrap().into_iter().enumerate() {
                total[k] += n;
            }
        }
        total
    });
    eprintln!("per key {counts:?}, total {}", counts.iter().sum::<u32>());
    assert!(counts.iter().all(|&n| n <= per_key), "{counts:?}");
    assert_eq!(counts.iter().sum::<u32>(), pool);
}
