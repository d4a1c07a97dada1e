//! Queueing over real HTTP: a plan that waits instead of refusing holds the
//! request (on tokio's timer) until a slot frees, in order, and refuses
//! once its line is full.

mod http_common;

use std::time::{Duration, Instant};

use http_common::{run, send, start, stream};

/// One request at a time per key; up to 2 more wait in line.
const POLICY: &str = r#"
name = "queue"
[response]
headers = "none"
body = "slim-io"
[plans.free]
concurrency = 1
queue = { on = "concurrency", routes = "all", depth = 2, max_wait_secs = 30 }
"#;

#[test]
fn a_queued_request_is_served_when_the_slot_frees() {
    run(async {
        let s = start(POLICY, |l| l).await;
        let h = [("x-api-key", "free-ann")];
        // Holds the key's one slot: 5 events, 150 ms apart.
        let mut slow = stream(s.addr, "/api/events/stream?every_ms=150&count=5", &h).await;
        assert_eq!(slow.status, 200);
        assert_eq!(slow.next_data().await.as_deref(), Some("0"));

        let started = Instant::now();
        let addr = s.addr;
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(async move {
                    send(addr, "GET", "/api/assets", &[("x-api-key", "free-ann")]).await
                })
            })
            .collect();
        // Give both time to join the line; the third finds it full.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let full = send(s.addr, "GET", "/api/assets", &h).await;
        assert_eq!(full.status, 429);
        assert_eq!(full.json()["error"]["code"], "RATE_LIMIT_EXCEEDED");

        // The stream ends (~600 ms): the two waiting requests are served.
        while slow.next_data().await.is_some() {}
        for w in waiting {
            let r = w.await.unwrap();
            assert_eq!(r.status, 200, "{r:?}");
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400),
            "served after {waited:?}, before the slot freed"
        );
        // Nothing is left holding the slot.
        assert_eq!(send(s.addr, "GET", "/api/assets", &h).await.status, 200);
    });
}
