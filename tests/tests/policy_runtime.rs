//! Run-time behaviour of the policy engine found wrong by review (eleventh
//! session): a queue line held up by a ticket nobody polls, and usage
//! shares of a huge boost.

use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Polled, Request};

/// A first-in-line ticket whose holder stops polling (kept alive, never
/// dropped) used to hold up its line for good: every later request of that
/// identity queued behind it and was refused at its own deadline, although
/// the concurrency slot was free. Tickets more than a grace (1 s) past
/// their deadline are taken out of the line's front now.
#[test]
fn an_expired_unpolled_first_ticket_does_not_block_its_line() {
    let e = Engine::from_toml(
        r#"
name = "q"
[response]
headers = "none"
body = "slim-io"
[plans.free]
concurrency = 1
queue = { depth = 5, max_wait_secs = 10 }
"#,
        Nanos::ZERO,
    )
    .unwrap();
    let r = Request::new("GET", "/x").key("t").plan("free");
    let Outcome::Allowed(running) = e.check(&r, Nanos::ZERO).unwrap() else {
        panic!("first request")
    };
    let Outcome::Queued(stuck) = e.check(&r, Nanos::ZERO).unwrap() else {
        panic!("second request queues")
    };
    drop(running); // the slot is free; `stuck` is never polled again
    let later = Nanos::from_secs(100);
    let served = match e.check(&r, later).unwrap() {
        Outcome::Allowed(_) => true,
        Outcome::Queued(t) => match t.poll(later.saturating_add(Nanos::from_secs(10))) {
            Polled::Ready(o) => o.is_allowed(),
            Polled::Pending(_) => false,
        },
        _ => false,
    };
    // The stuck ticket, polled at last, is refused (its deadline passed);
    // dropping it takes nothing out twice.
    match stuck.poll(later) {
        Polled::Ready(o) => assert!(!o.is_allowed()),
        Polled::Pending(_) => panic!("an expired ticket still pending"),
    }
    assert!(served, "a free slot, yet refused behind an expired ticket");
    // The line works as before: one runs, the next queues.
    let t = Nanos::from_secs(200);
    let Outcome::Allowed(_a) = e.check(&r, t).unwrap() else {
        panic!("after the purge")
    };
    assert!(matches!(e.check(&r, t).unwrap(), Outcome::Queued(_)));
}

/// A huge boost: usage is measured against the boosted limit as the
/// headers state it (saturated at `u32::MAX`), so a fresh key is not told
/// "99 % used", and a boost of `u32::MAX` does not overflow.
#[test]
fn a_huge_boost_neither_warns_on_a_fresh_key_nor_overflows() {
    let e = Engine::from_toml(
        r#"
name = "x"
[response]
headers = "x-ratelimit"
warning_at = 50
body = "cybervault"
[plans.pro]
limits = [{ per = "day", limit = 100000000 }]
"#,
        Nanos::ZERO,
    )
    .unwrap();
    let r = Request::new("GET", "/").key("k").plan("pro");
    e.boost("k", 10_000_000, Nanos::MAX);
    let Outcome::Allowed(a) = e.check(&r, Nanos::ZERO).unwrap() else {
        panic!("boosted key refused")
    };
    assert!(
        !a.headers.iter().any(|(k, _)| *k == "Warning"),
        "{:?}",
        a.headers
    );
    e.boost("k", u32::MAX, Nanos::MAX);
    assert!(e.check(&r, Nanos::ZERO).unwrap().is_allowed());
}
