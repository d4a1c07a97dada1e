//! Reloading a changed policy at run time keeps the state of every limit
//! that did not change, and of concurrency slots and boosts.

use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Request};

const S4E: &str = include_str!("../../policies/s4e.toml");

fn remaining(o: &Outcome<'_>) -> String {
    match o {
        Outcome::Allowed(a) => a
            .headers
            .iter()
            .find(|(k, _)| *k == "X-RateLimit-Remaining")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        other => panic!("expected Allowed, got {other:?}"),
    }
}

#[test]
fn limits_keep_their_counts_across_a_reload_also_with_new_values() {
    let old = Engine::from_toml(S4E, Nanos::ZERO).unwrap();
    let standard = Request::new("GET", "/api/assets").key("s").plan("standard");
    let premium = Request::new("GET", "/api/assets").key("p").plan("premium");
    for _ in 0..10 {
        assert!(old.check(&standard, Nanos::ZERO).unwrap().is_allowed());
        assert!(old.check(&premium, Nanos::ZERO).unwrap().is_allowed());
    }
    // Premium's minute limit changes from 1000 to 2000; standard is as it was.
    let changed = S4E.replace(
        "limits = [{ per = \"minute\", limit = 1000, burst = 100 }]",
        "limits = [{ per = \"minute\", limit = 2000, burst = 100 }]",
    );
    assert_ne!(changed, S4E);
    let new = old.reload(&changed).unwrap();
    // Standard: 10 used of 100 before the reload, the 11th leaves 89.
    assert_eq!(remaining(&new.check(&standard, Nanos::ZERO).unwrap()), "89");
    // Premium's limit keeps its count under the new value: 11 of 2000 used
    // (it started fresh until the eleventh session: "1999").
    assert_eq!(
        remaining(&new.check(&premium, Nanos::ZERO).unwrap()),
        "1989"
    );
}

/// A limit cut in the middle of its window admits only what the new limit
/// leaves: never more in one window than the larger of the two policies
/// allows (found by review: 10 of 10/min spent, then 5 more of a new 5/min
/// in the same minute, 15 in all). A new window (`per`) starts fresh.
#[test]
fn a_limit_cut_mid_window_admits_only_what_the_new_limit_leaves() {
    let v1 = r#"
name = "x"
[response]
headers = "none"
body = "s4e"
[plans.free]
limits = [{ per = "minute", limit = 10 }]
"#;
    let admitted = |e: &Engine, at: u64| {
        let r = Request::new("GET", "/").key("k").plan("free");
        (0..20)
            .filter(|_| e.check(&r, Nanos::from_secs(at)).unwrap().is_allowed())
            .count()
    };
    let old = Engine::from_toml(v1, Nanos::ZERO).unwrap();
    assert_eq!(admitted(&old, 10), 10);
    let cut = old.reload(&v1.replace("limit = 10", "limit = 5")).unwrap();
    assert_eq!(admitted(&cut, 20), 0, "the same minute");
    assert_eq!(admitted(&cut, 60), 5, "the next minute: the new limit");
    let raised = cut.reload(&v1.replace("limit = 10", "limit = 12")).unwrap();
    assert_eq!(admitted(&raised, 61), 7, "12 in the minute, 5 spent");
    let hourly = raised
        .reload(&v1.replace("\"minute\", limit = 10", "\"hour\", limit = 10"))
        .unwrap();
    assert_eq!(admitted(&hourly, 62), 10, "a new window starts fresh");
}

#[test]
fn streams_opened_before_a_reload_still_count_after_it() {
    let old = Engine::from_toml(S4E, Nanos::ZERO).unwrap();
    let stream = Request::new("GET", "/api/events/stream")
        .key("k")
        .plan("standard");
    let open: Vec<_> = (0..5)
        .map(|_| match old.check(&stream, Nanos::ZERO).unwrap() {
            Outcome::Allowed(a) => a,
            other => panic!("{other:?}"),
        })
        .collect();
    let new = old.reload(S4E).unwrap();
    assert!(matches!(
        new.check(&stream, Nanos::ZERO).unwrap(),
        Outcome::Denied(_)
    ));
    // A stream admitted by the old engine ends: the new one may open one.
    drop(open);
    assert!(new.check(&stream, Nanos::ZERO).unwrap().is_allowed());
}

#[test]
fn boosts_carry_over_and_errors_leave_the_old_engine_working() {
    let old = Engine::from_toml(S4E, Nanos::ZERO).unwrap();
    old.boost("k", 2, Nanos::from_secs(3_600));
    let new = old.reload(S4E).unwrap();
    let u = new.usage("k", "standard", Nanos::ZERO).unwrap();
    assert_eq!(u[0].limit, 200, "the 2x boost survives the reload");
    // A broken policy is refused with its line; the old engine is untouched.
    let e = old.reload("name = 1").unwrap_err();
    assert_eq!(e.line, 1);
    let r = Request::new("GET", "/api/assets").key("k").plan("standard");
    assert!(old.check(&r, Nanos::ZERO).unwrap().is_allowed());
}

/// Found by review: renaming an endpoint's path parameter (`{id}` to
/// `{scan_id}`) gave its limits fresh state on reload — a free reset of
/// every caller's budget for that endpoint.
#[test]
fn renaming_a_path_parameter_keeps_the_endpoints_counts() {
    let src = "name = \"x\"\n[response]\nheaders = \"x-ratelimit\"\nbody = \"s4e\"\n\
               [plans.free]\nlimits = [{ per = \"minute\", limit = 100 }]\n\
               [[endpoints]]\nmethod = \"POST\"\npath = \"/scans/{id}/results\"\n\
               limits = [{ per = \"minute\", limit = 2 }]\n";
    let old = Engine::from_toml(src, Nanos::ZERO).unwrap();
    let r = Request::new("POST", "/scans/7/results")
        .key("k")
        .plan("free");
    for _ in 0..2 {
        assert!(old.check(&r, Nanos::ZERO).unwrap().is_allowed());
    }
    let renamed = src
        .replace("{id}", "{scan_id}")
        .replace("\"POST\"", "\"post\"");
    let new = old.reload(&renamed).unwrap();
    assert!(matches!(
        new.check(&r, Nanos::ZERO).unwrap(),
        Outcome::Denied(_)
    ));
    // A different path is a different endpoint: fresh.
    let moved = src.replace("/results", "/report");
    let new = old.reload(&moved).unwrap();
    let r = Request::new("POST", "/scans/7/report")
        .key("k")
        .plan("free");
    assert!(new.check(&r, Nanos::ZERO).unwrap().is_allowed());
}
