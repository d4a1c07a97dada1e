//! Refunds give back exactly what a request was charged: at the boost it
//! was charged at (a boosted org pool charges less time per unit), and only
//! as far as the charge still weighs (see `scenarios_s4e.rs` for the late
//! 304s).

use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Request};

const POLICY: &str = r#"
name = "pool-refunds"
refund_status = [304]
org_pool = [{ per = "minute", limit = 60, algorithm = "gcra", burst = 10 }]
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.standard]
limits = [{ per = "minute", limit = 10000 }]
"#;

fn allowed(o: &Outcome<'_>) -> bool {
    matches!(o, Outcome::Allowed(_))
}

/// The org's pool is boosted 5x (burst 50); a 304 gives back one request's
/// worth of the *boosted* pool, so after the pool is spent, one 304 lets
/// exactly one more request through — not the five an unboosted refund
/// (one unboosted unit = five boosted ones) would give back.
#[test]
fn a_304_gives_a_boosted_pool_back_what_it_was_charged() {
    let e = Engine::from_toml(POLICY, Nanos::ZERO).expect("policy loads");
    let t = Nanos::from_secs(10);
    e.boost_org("acme", 5, Nanos::from_secs(3_600));
    let req = Request::new("GET", "/x")
        .key("k1")
        .org("acme")
        .plan("standard");
    // One conditional GET, then the rest of the boosted burst of 50.
    let slow = match e.check(&req, t).unwrap() {
        Outcome::Allowed(a) => a,
        other => panic!("{other:?}"),
    };
    let mut admitted = 1;
    while allowed(&e.check(&req, t).unwrap()) {
        admitted += 1;
        assert!(admitted <= 50, "the boosted pool admitted more than 50");
    }
    assert_eq!(admitted, 50);
    e.complete(slow, 304, t);
    assert!(allowed(&e.check(&req, t).unwrap()), "the refunded unit");
    assert!(
        !allowed(&e.check(&req, t).unwrap()),
        "a 304 gave the boosted pool more than it was charged"
    );
}
