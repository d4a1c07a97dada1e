//! Which rules a request's method selects: a HEAD request is limited,
//! priced and exempted like the GET it runs (RFC 9110 §9.3.2: HEAD is GET
//! without the content, and servers — axum among them — run the GET handler
//! for it), unless the policy has a rule of its own for HEAD. Found by review:
//! HEAD matched no `method = "GET"` rule, so it ran the GET handler past the
//! endpoint's limit and was refused on exempt GET routes.

use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Request};

const POLICY: &str = include_str!("../fixtures/methods.toml");

fn engine() -> Engine {
    Engine::from_toml(POLICY, Nanos::ZERO).expect("policy loads")
}

fn req<'a>(method: &'a str, path: &'a str) -> Request<'a> {
    Request::new(method, path).key("k1").plan("standard")
}

fn allowed(o: &Outcome<'_>) -> bool {
    matches!(o, Outcome::Allowed(_) | Outcome::Exempt)
}

#[test]
fn head_counts_against_the_get_endpoint_limit() {
    let e = engine();
    let t = Nanos::from_secs(1);
    assert!(allowed(&e.check(&req("GET", "/findings"), t).unwrap()));
    assert!(allowed(&e.check(&req("HEAD", "/findings"), t).unwrap()));
    // Two a minute on GET /findings, whichever of GET and HEAD spent them.
    assert!(!allowed(&e.check(&req("HEAD", "/findings"), t).unwrap()));
    assert!(!allowed(&e.check(&req("GET", "/findings"), t).unwrap()));
    // Lower-case methods too.
    assert!(!allowed(
        &e.check(&req("head", "/findings?x=1"), t).unwrap()
    ));
}

#[test]
fn a_head_rule_of_its_own_takes_precedence() {
    let e = engine();
    let t = Nanos::from_secs(1);
    // GET /reports/{id}: 1 a minute; HEAD /reports/{id}: 5 a minute, apart.
    assert!(allowed(&e.check(&req("GET", "/reports/7"), t).unwrap()));
    assert!(!allowed(&e.check(&req("GET", "/reports/7"), t).unwrap()));
    for i in 0..5 {
        assert!(
            allowed(&e.check(&req("HEAD", "/reports/7"), t).unwrap()),
            "HEAD {i} of 5"
        );
    }
    assert!(!allowed(&e.check(&req("HEAD", "/reports/7"), t).unwrap()));
}

#[test]
fn head_of_an_exempt_get_route_is_exempt_and_other_methods_are_not() {
    let e = engine();
    let t = Nanos::from_secs(1);
    let anon = |m| Request::new(m, "/health");
    assert!(matches!(e.check(&anon("GET"), t), Ok(Outcome::Exempt)));
    assert!(matches!(e.check(&anon("HEAD"), t), Ok(Outcome::Exempt)));
    // POST is not GET: no exemption, and no key.
    assert!(e.check(&anon("POST"), t).is_err());
}
