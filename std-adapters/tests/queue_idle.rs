//! Requests waiting in a queue behind others sleep until they are first in
//! line instead of polling (found by review: every queued request polled its
//! ticket — a global lock — every millisecond, so the 10 000-deep queue a
//! CyberVault Enterprise key may fill cost one client's waiting requests
//! millions of lock acquisitions a second). Measured as the process's CPU
//! time while 2 000 requests wait behind one that holds the only slot: one
//! process (this file's single test), Linux `/proc/self/stat`.
#![cfg(all(feature = "tower", target_os = "linux"))]

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use tollgate::policy::Engine;
use tollgate::tower::{Caller, RateLimitLayer};
use tollgate::{ManualClock, Nanos};
use tower::{Layer, ServiceExt};

static CLOCK: ManualClock = ManualClock::new(Nanos::ZERO);

const POLICY: &str = r#"
name = "deep-line"
[response]
headers = "none"
body = "slim-io"
[plans.free]
concurrency = 1
queue = { on = "concurrency", line = "identity", depth = 5000, max_wait_secs = 600 }
"#;

/// User + system CPU time of this process so far, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command's closing parenthesis: state is field 3, so
    // utime (14) and stime (15) are the 12th and 13th after it.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn requests_waiting_behind_others_do_not_poll() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = Engine::from_toml(POLICY, Nanos::ZERO).unwrap();
        let layer = RateLimitLayer::new(engine, &CLOCK).plans(|_| Some(Caller::new("free")));
        let svc = layer.layer(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::from("body")))
        }));
        let get = || {
            Request::get("/x")
                .header("x-api-key", "k")
                .body(String::new())
                .unwrap()
        };
        // Its body holds the one slot.
        let first = svc.clone().oneshot(get()).await.unwrap();
        // Each served request ends at once (its body, which holds the
        // slot, is dropped with the response).
        let waiting: Vec<_> = (0..2_000)
            .map(|_| {
                let call = svc.clone().oneshot(get());
                tokio::spawn(async move { call.await.map(|r| r.status()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = cpu_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let spent = cpu_ticks() - before;
        eprintln!("CPU time of 2 000 waiting requests over 1 s: {spent} ticks");
        // Polling every millisecond: 2 000 000 polls in the second (over a
        // second of CPU here); sleeping until first, the head polls 1 000
        // times and the others wake every 100 ms at most (20 000 polls).
        assert!(
            spent < 30,
            "2 000 waiting requests spent {spent} ticks (1/100 s) of CPU in 1 s"
        );
        // The line still moves: all served, in turn, once the slot frees.
        drop(first);
        for w in waiting {
            let status = tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .expect("a queued request was never served")
                .unwrap()
                .unwrap();
            assert_eq!(status, 200);
        }
    });
}
