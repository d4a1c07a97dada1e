//! Policy files from arbitrary text: loading never panics, and a loaded
//! policy answers requests without panicking, refusing cleanly, and never
//! admits a request after a refusal at the same instant with nothing freed
//! in between (a refusal charges nothing and time does not move).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    // `capacity` sizes the stores (~23 bytes per key each): a fuzzed
    // capacity of 10^9 is a legitimate request for gigabytes, not a bug.
    if src.contains("capacity") {
        return;
    }
    let Ok(engine) = Engine::from_toml(src, Nanos::from_secs(1_714_305_600)) else {
        return;
    };
    let plans = engine.plans();
    let paths = ["/", "/api/scans", "/scans/1/results", "/a/b?x=1", ""];
    let methods = ["GET", "POST", "*"];
    let mut admitted = Vec::new();
    for (i, byte) in data.iter().take(64).enumerate() {
        let plan = plans.get(usize::from(*byte) % plans.len().max(1)).copied();
        let path = paths[i % paths.len()];
        let method = methods[usize::from(*byte >> 4) % methods.len()];
        let mut req = Request::new(method, path).key("k").org("o");
        if let Some(p) = plan {
            req = req.plan(p);
        }
        let now = Nanos::from_millis(u64::from(*byte) * 10);
        let Ok(first) = engine.check(&req, now) else {
            continue;
        };
        let refused = matches!(first, Outcome::Denied(_));
        match first {
            Outcome::Allowed(a) => admitted.push(a),
            Outcome::Queued(t) => drop(t),
            Outcome::Denied(d) => assert_eq!(d.status, 429),
            Outcome::Exempt => {}
        }
        if refused {
            // Nothing was charged and nothing freed: the same request at the
            // same instant is refused again.
            assert!(!matches!(engine.check(&req, now), Ok(Outcome::Allowed(_))));
        }
        if i % 7 == 0 {
            if let Some(a) = admitted.pop() {
                engine.complete(a, 304, now);
            }
        }
    }
});
