//! Which endpoint rule a path selects when it is spelled with extra
//! slashes (found by review: `/findings/` or `//findings` matched no rule,
//! so on a router that merges slashes or ignores a trailing one — many do,
//! or run behind a normalising proxy — the endpoint's handler ran past its
//! limit). A path that matches no rule as written is matched again
//! normalised (empty and dot segments resolved, percent-encoded unreserved
//! characters decoded); exemptions match the path as written only.

use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Request, RequestError};

const POLICY: &str = include_str!("../fixtures/methods.toml");

fn engine() -> Engine {
    Engine::from_toml(POLICY, Nanos::ZERO).expect("policy loads")
}

fn outcome<'e>(e: &'e Engine, method: &str, path: &str) -> Outcome<'e> {
    let r = Request::new(method, path).key("k1").plan("standard");
    e.check(&r, Nanos::from_secs(1)).unwrap()
}

fn allowed(o: &Outcome<'_>) -> bool {
    matches!(o, Outcome::Allowed(_) | Outcome::Exempt)
}

#[test]
fn extra_slashes_count_against_the_endpoint_limit() {
    let e = engine();
    // Two a minute on GET /findings, however the path is spelled.
    assert!(allowed(&outcome(&e, "GET", "/findings/")));
    assert!(allowed(&outcome(&e, "GET", "//findings?x=1")));
    for spelled in ["/findings", "/findings/", "//findings//", "/findings//?q"] {
        assert!(!allowed(&outcome(&e, "GET", spelled)), "{spelled}");
    }
}

#[test]
fn extra_slashes_in_a_patterned_path_count_too() {
    let e = engine();
    assert!(allowed(&outcome(&e, "GET", "/reports//7/")));
    assert!(!allowed(&outcome(&e, "GET", "/reports/8")));
    // The empty segment is dropped, not taken as an empty `{id}`: `/reports//`
    // is `/reports`, which no rule names (the plan's limit only).
    assert!(allowed(&outcome(&e, "GET", "/reports//")));
}

#[test]
fn other_paths_are_not_pulled_in() {
    let e = engine();
    for _ in 0..2 {
        assert!(allowed(&outcome(&e, "GET", "/findings")));
    }
    // Neighbours of the endpoint keep the plan's limit only.
    for path in ["/findings/x", "/findingsx", "/x/findings", "/"] {
        assert!(allowed(&outcome(&e, "GET", path)), "{path}");
    }
}

#[test]
fn exemptions_match_the_path_as_written() {
    let e = engine();
    assert!(matches!(outcome(&e, "GET", "/health"), Outcome::Exempt));
    // Not exempt (stricter): counted under the plan's limit.
    assert!(matches!(
        outcome(&e, "GET", "/health/"),
        Outcome::Allowed(_)
    ));
}

/// The CORS recipe in the tower module's docs: an `OPTIONS` exemption on
/// `/*` lets a preflight (no credentials) through uncounted, and nothing
/// else.
#[test]
fn an_options_exemption_on_every_path_passes_keyless_preflights() {
    let src = format!("{POLICY}\n[[exempt]]\nmethod = \"OPTIONS\"\npath = \"/*\"\n");
    let e = Engine::from_toml(&src, Nanos::ZERO).unwrap();
    for path in ["/findings", "/reports/7", "/"] {
        let preflight = Request::new("OPTIONS", path);
        assert!(matches!(
            e.check(&preflight, Nanos::ZERO).unwrap(),
            Outcome::Exempt
        ));
    }
    // A keyless GET is still refused (no anonymous plan).
    assert!(
        e.check(&Request::new("GET", "/findings"), Nanos::ZERO)
            .is_err()
    );
}

/// Spellings a normalising router or proxy runs the same handler for (RFC
/// 3986 6.2.2: percent-encoded unreserved characters, dot segments) count
/// against the endpoint's limit too (found by review: `/findings` spelled
/// `/%66indings` passed the endpoint's limit).
#[test]
fn dot_segments_and_encoded_unreserved_characters_count_against_the_endpoint() {
    let e = engine();
    assert!(allowed(&outcome(&e, "GET", "/%66indings")));
    assert!(allowed(&outcome(&e, "GET", "/x/../findings")));
    for spelled in [
        "/findings",
        "/%66%69ndings",
        "/./findings",
        "/reports/../findings/.",
        "/../findings",
        "/FINDINGS/../%66indings",
    ] {
        assert!(!allowed(&outcome(&e, "GET", spelled)), "{spelled}");
    }
    // Patterned rules too.
    assert!(allowed(&outcome(&e, "GET", "/reports/%37")));
    assert!(!allowed(&outcome(&e, "GET", "/reports/./8")));
}

#[test]
fn encoded_reserved_characters_and_odd_escapes_stay_as_written() {
    let e = engine();
    for _ in 0..2 {
        assert!(allowed(&outcome(&e, "GET", "/findings")));
    }
    // `%2F` is a reserved `/` kept encoded (a segment `a%2Ffindings`, not
    // two), malformed escapes and non-ASCII stay as written: other paths,
    // under the plan's limit only; none panics.
    for path in [
        "/a%2Ffindings",
        "/findings%2F",
        "/%6",
        "/%",
        "/%zz/findings",
        "/%é",
        "é/findings",
        "/%+6indings",
    ] {
        assert!(allowed(&outcome(&e, "GET", path)), "{path}");
    }
}

/// A wildcard exemption's `*` matches `..`: `/public/../api/scans` is exempt
/// as written but is `/api/scans` to a normalising router. Exempt only when
/// the path normalised is exempt too (found by review: passed uncounted).
#[test]
fn a_wildcard_exemption_does_not_cover_a_path_climbing_out_of_it() {
    let e = Engine::from_toml(
        r#"
name = "x"
[response]
headers = "none"
body = "s4e"
[plans.free]
limits = [{ per = "minute", limit = 100 }]
[[endpoints]]
method = "POST"
path = "/api/scans"
limits = [{ per = "minute", limit = 1 }]
[[exempt]]
method = "*"
path = "/public/*"
"#,
        Nanos::ZERO,
    )
    .unwrap();
    let at = |p: &str| e.check(&Request::new("POST", p).key("k").plan("free"), Nanos::ZERO);
    assert!(at("/api/scans").unwrap().is_allowed());
    assert!(!at("/api/scans").unwrap().is_allowed());
    for p in ["/public/../api/scans", "/public/%2e%2e/api/scans"] {
        let o = at(p);
        assert!(!matches!(o, Ok(Outcome::Exempt)), "{p}: {o:?}");
        assert!(!o.is_ok_and(|o| o.is_allowed()), "{p}");
    }
    // Still exempt: paths that stay inside it.
    assert!(matches!(at("/public/a/../b"), Ok(Outcome::Exempt)));
}

/// A path whose rule as written differs from its rule once normalised is
/// refused as ambiguous (a 400 in the tower layer): on the Slim.io policy,
/// `GET /workers/../reports` took the scan-class rule `GET /workers/*`
/// (its `*` matching `..`) while a normalising router runs `/reports` —
/// general requests past their limit on the scan quota (found by review).
#[test]
fn a_path_that_changes_rule_when_normalised_is_refused_as_ambiguous() {
    let src = include_str!("../../policies/slim-io.toml");
    let e = Engine::from_toml(src, Nanos::ZERO).unwrap();
    let t = Nanos::from_secs(1);
    let general = Request::new("GET", "/reports")
        .key("k")
        .org("acme")
        .plan("free");
    for _ in 0..60 {
        let Ok(Outcome::Allowed(a)) = e.check(&general, t) else {
            panic!("general request")
        };
        e.complete(a, 200, t);
    }
    assert!(!e.check(&general, t).unwrap().is_allowed(), "61st general");
    for p in [
        "/workers/../reports",
        "/workers/%2E%2E/reports",
        "/workers/./x/../../reports",
    ] {
        let sneaky = Request::new("GET", p).key("k").org("acme").plan("free");
        assert_eq!(
            e.check(&sneaky, t).err(),
            Some(RequestError::AmbiguousPath(p.to_owned())),
            "{p}"
        );
    }
}
