//! Malformed policies are refused with an error that points at the line of
//! the offending value, names the field, and says what is allowed.

use tollgate::Nanos;
use tollgate::policy::{Engine, PolicyError, Request};

/// Lines 1–4 of every policy below; the case's own lines start at line 5.
const HEAD: &str = r#"name = "x"
[response]
headers = "x-ratelimit"
body = "s4e"
"#;

#[track_caller]
fn err(rest: &str) -> PolicyError {
    let src = format!("{HEAD}{rest}");
    match Engine::from_toml(&src, Nanos::ZERO) {
        Ok(_) => panic!("policy loaded, expected an error:\n{src}"),
        Err(e) => e,
    }
}

/// The error is on `line`, and its message contains every one of `says`.
#[track_caller]
fn check(e: &PolicyError, line: usize, says: &[&str]) {
    assert_eq!(e.line, line, "{e}");
    assert!(e.column >= 1, "{e}");
    for s in says {
        assert!(e.message.contains(s), "message lacks {s:?}: {e}");
    }
    // Display carries the same facts.
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("line {line}, column {}", e.column)));
}

#[test]
fn a_valid_policy_loads() {
    let src = format!("{HEAD}[plans.free]\nlimits = [{{ per = \"minute\", limit = 10 }}]\n");
    Engine::from_toml(&src, Nanos::ZERO).unwrap();
}

// ---- wrong types -----------------------------------------------------------

#[test]
fn limit_as_a_word_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = \"ten\" }]\n");
    check(&e, 6, &["\"ten\"", "positive integer", "\"unlimited\""]);
}

#[test]
fn limit_as_a_float_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = 1.5 }]\n");
    check(&e, 6, &["positive integer", "\"unlimited\""]);
}

#[test]
fn name_as_a_number_is_refused() {
    let src = "name = 5\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n[plans.free]\n";
    let e = Engine::from_toml(src, Nanos::ZERO).unwrap_err();
    check(&e, 1, &["string"]);
}

#[test]
fn plan_concurrency_as_a_string_is_refused() {
    let e = err("[plans.free]\nconcurrency = \"ten\"\n");
    check(&e, 6, &["u32"]);
}

#[test]
fn unknown_window_is_refused_with_the_allowed_ones() {
    let e = err("[plans.free]\nlimits = [{ per = \"week\", limit = 10 }]\n");
    check(&e, 6, &["week", "second", "minute", "hour", "day"]);
}

#[test]
fn unknown_algorithm_is_refused_with_the_allowed_ones() {
    let e =
        err("[plans.free]\nlimits = [{ per = \"minute\", limit = 10, algorithm = \"leaky\" }]\n");
    check(&e, 6, &["leaky", "fixed", "sliding", "gcra"]);
}

#[test]
fn unknown_body_style_is_refused_with_the_allowed_ones() {
    let src = "name = \"x\"\n[response]\nheaders = \"x-ratelimit\"\nbody = \"acme\"\n";
    let e = Engine::from_toml(src, Nanos::ZERO).unwrap_err();
    check(
        &e,
        4,
        &[
            "acme",
            "s4e",
            "cybervault",
            "scanner-api",
            "blocksecops",
            "slim-io",
        ],
    );
}

#[test]
fn unknown_header_style_is_refused_with_the_allowed_ones() {
    let src = "name = \"x\"\n[response]\nheaders = \"ietf\"\nbody = \"s4e\"\n";
    let e = Engine::from_toml(src, Nanos::ZERO).unwrap_err();
    check(&e, 3, &["ietf", "x-ratelimit", "none"]);
}

#[test]
fn unknown_scope_is_refused_with_the_allowed_ones() {
    let e = err("scope = \"tenant\"\n[plans.free]\n");
    // `scope` is a top-level key: it must come before the tables.
    let src = "name = \"x\"\nscope = \"tenant\"\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n";
    let e2 = Engine::from_toml(src, Nanos::ZERO).unwrap_err();
    check(&e2, 2, &["tenant", "key", "org"]);
    // Under [response] it is an unknown field of the response.
    check(&e, 5, &["scope"]);
}

// ---- unknown fields --------------------------------------------------------

#[test]
fn unknown_field_in_a_limit_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = 10, bursts = 5 }]\n");
    check(&e, 6, &["bursts", "burst"]);
}

#[test]
fn unknown_field_in_a_plan_is_refused() {
    let e = err("[plans.free]\nlimitz = [{ per = \"minute\", limit = 10 }]\n");
    check(&e, 6, &["limitz", "limits", "concurrency"]);
}

#[test]
fn unknown_top_level_field_is_refused() {
    let src = "name = \"x\"\nrefund = [304]\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n";
    let e = Engine::from_toml(src, Nanos::ZERO).unwrap_err();
    check(&e, 2, &["refund", "refund_status"]);
}

#[test]
fn unknown_field_in_an_endpoint_is_refused() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }]\n\
         [[endpoints]]\nmethod = \"POST\"\npath = \"/scans\"\nweight = 5\n",
    );
    check(&e, 10, &["weight", "cost"]);
}

// ---- zero and negative values -------------------------------------------------

#[test]
fn zero_limit_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = 0 }]\n");
    check(&e, 6, &["at least 1", "\"unlimited\""]);
    assert_eq!(e.field, "plans.free.limits[0].limit");
    assert_eq!(e.column, 37);
}

#[test]
fn zero_limit_in_a_multiline_array_points_at_its_line() {
    let e = err(
        "[plans.free]\nlimits = [\n    { per = \"minute\", limit = 10 },\n    { per = \"hour\", limit = 0 },\n]\n",
    );
    check(&e, 8, &["at least 1"]);
    assert_eq!(e.field, "plans.free.limits[1].limit");
}

#[test]
fn negative_limit_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = -5 }]\n");
    check(&e, 6, &["-5", "\"unlimited\""]);
}

#[test]
fn zero_burst_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = 10, burst = 0 }]\n");
    check(&e, 6, &["at least 1"]);
    assert_eq!(e.field, "plans.free.limits[0].burst");
}

#[test]
fn negative_burst_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = 10, burst = -1 }]\n");
    // Refused by the type (u32), not with the "at least 1" wording.
    check(&e, 6, &["-1", "u32"]);
    assert_eq!(e.column, 49);
}

#[test]
fn zero_plan_concurrency_is_refused() {
    let e = err("[plans.free]\nconcurrency = 0\n");
    check(&e, 6, &["at least 1"]);
    assert_eq!(e.field, "plans.free.concurrency");
}

#[test]
fn zero_endpoint_concurrency_is_refused() {
    let e =
        err("[plans.free]\n[[endpoints]]\nmethod = \"GET\"\npath = \"/stream\"\nconcurrency = 0\n");
    check(&e, 9, &["at least 1"]);
    assert_eq!(e.field, "endpoints[0].concurrency");
}

#[test]
fn zero_per_plan_concurrency_is_refused() {
    let e = err(
        "[plans.free]\n[[endpoints]]\nmethod = \"POST\"\npath = \"/scans\"\nconcurrency = { free = 0 }\n",
    );
    check(&e, 9, &["free", "at least 1"]);
}

/// An endpoint `concurrency` of the wrong shape names the field and what is
/// allowed. It said only "data did not match any variant of untagged enum
/// ConcurrencySpec", with the value (`-1`) as the field.
#[test]
fn malformed_endpoint_concurrency_names_the_field_and_what_is_allowed() {
    let endpoint = "[plans.free]\n[[endpoints]]\nmethod = \"POST\"\npath = \"/scans\"\n";
    for (value, says) in [
        (
            "-1",
            &[
                "-1",
                "1 to 4294967295",
                "positive integer",
                "table of plan = integer",
            ][..],
        ),
        (
            "4294967296",
            &["4294967296", "positive integer", "table of plan = integer"],
        ),
        ("\"five\"", &["positive integer", "table of plan = integer"]),
        ("1.5", &["positive integer", "table of plan = integer"]),
        ("[1, 2]", &["positive integer", "table of plan = integer"]),
        (
            "{ free = -1 }",
            &["plan \"free\"", "-1", "table of plan = integer"],
        ),
        (
            "{ free = \"x\" }",
            &["positive integer", "table of plan = integer"],
        ),
    ] {
        let e = err(&format!("{endpoint}concurrency = {value}\n"));
        check(&e, 9, says);
        assert_eq!(e.column, 15, "{value}: {e}");
        assert_eq!(e.field, "endpoints.concurrency", "{value}: {e}");
        assert!(!e.message.contains("untagged"), "{value}: {e}");
    }
}

#[test]
fn zero_cost_is_refused_and_points_to_exempt() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }]\n\
         [[endpoints]]\nmethod = \"GET\"\npath = \"/cheap\"\ncost = 0\n",
    );
    check(&e, 10, &["at least 1", "exempt"]);
    assert_eq!(e.field, "endpoints[0].cost");
}

#[test]
fn negative_cost_is_refused() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }]\n\
         [[endpoints]]\nmethod = \"GET\"\npath = \"/cheap\"\ncost = -2\n",
    );
    check(&e, 10, &["-2", "u32"]);
}

#[test]
fn warning_at_out_of_range_is_refused() {
    for (value, says) in [("0", "1 to 100"), ("101", "1 to 100")] {
        let src = format!(
            "name = \"x\"\n[response]\nheaders = \"x-ratelimit\"\nwarning_at = {value}\nbody = \"s4e\"\n[plans.free]\n"
        );
        let e = Engine::from_toml(&src, Nanos::ZERO).unwrap_err();
        check(&e, 4, &[says]);
    }
}

// ---- costs no limit could admit ---------------------------------------------

#[test]
fn cost_over_burst_is_refused() {
    let e = err(
        "[plans.developer]\nlimits = [{ per = \"minute\", limit = 60, burst = 10 }]\n\
         [[endpoints]]\nmethod = \"POST\"\npath = \"/reports\"\ncost = 11\n",
    );
    check(
        &e,
        10,
        &[
            "cost 11",
            "\"developer\"",
            "burst of 10 per minute",
            "never pass",
        ],
    );
    assert_eq!(e.field, "endpoints[0].cost");
}

#[test]
fn cost_over_limit_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"hour\", limit = 5 }]\n\
         [plans.pro]\nlimits = [{ per = \"hour\", limit = 500 }]\n\
         [[endpoints]]\nmethod = \"POST\"\npath = \"/reports\"\ncost = 8\n");
    check(&e, 12, &["cost 8", "\"free\"", "limit of 5 per hour"]);
}

#[test]
fn cost_equal_to_burst_is_allowed() {
    let src = format!(
        "{HEAD}[plans.developer]\nlimits = [{{ per = \"minute\", limit = 60, burst = 10 }}]\n\
         [[endpoints]]\nmethod = \"POST\"\npath = \"/reports\"\ncost = 10\n"
    );
    Engine::from_toml(&src, Nanos::ZERO).unwrap();
}

// ---- unlimited, sliding -------------------------------------------------------

#[test]
fn unlimited_with_a_burst_is_refused() {
    let e = err("[plans.free]\nlimits = [{ per = \"day\", limit = \"unlimited\", burst = 5 }]\n");
    check(&e, 6, &["unlimited", "remove `burst`"]);
}

#[test]
fn sliding_limit_too_large_is_refused() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"day\", limit = 4000000000, algorithm = \"sliding\" }]\n",
    );
    check(&e, 6, &["sliding", "\"fixed\"", "\"gcra\""]);
}

// ---- endpoint rules ------------------------------------------------------------

#[test]
fn overlapping_endpoint_rules_are_refused() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }]\n\
         [[endpoints]]\nmethod = \"GET\"\npath = \"/scans/{id}\"\n\
         [[endpoints]]\nmethod = \"*\"\npath = \"/scans/7\"\n",
    );
    check(&e, 12, &["overlaps", "disjoint"]);
    assert_eq!(e.field, "endpoints[1].path");
}

#[test]
fn overlapping_wildcard_endpoint_rules_are_refused() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }]\n\
         [[endpoints]]\nmethod = \"GET\"\npath = \"/workers/*\"\n\
         [[endpoints]]\nmethod = \"GET\"\npath = \"/workers/w1/status\"\n",
    );
    check(&e, 12, &["overlaps", "disjoint"]);
}

#[test]
fn same_path_different_methods_do_not_overlap() {
    let src = format!(
        "{HEAD}[plans.free]\nlimits = [{{ per = \"minute\", limit = 10 }}]\n\
         [[endpoints]]\nmethod = \"GET\"\npath = \"/scans\"\n\
         [[endpoints]]\nmethod = \"POST\"\npath = \"/scans\"\n"
    );
    Engine::from_toml(&src, Nanos::ZERO).unwrap();
}

#[test]
fn unknown_plan_in_concurrency_is_refused() {
    let e = err(
        "[plans.free]\n[[endpoints]]\nmethod = \"POST\"\npath = \"/scans\"\nconcurrency = { free = 1, gold = 3 }\n",
    );
    check(&e, 9, &["\"gold\"", "not defined"]);
    assert_eq!(e.field, "endpoints[0].concurrency");
}

/// The error points at `class = "scan"` (line 10), not at the rule's `path`
/// (line 9, where it pointed before `class` kept its place).
#[test]
fn unknown_quota_class_is_refused() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }]\n\
         [[endpoints]]\nmethod = \"POST\"\npath = \"/scans\"\nclass = \"scan\"\n",
    );
    check(&e, 10, &["\"scan\"", "not declared by any plan"]);
    assert_eq!(e.column, 9, "{e}");
    assert_eq!(e.field, "endpoints[0].class");
}

/// A class a plan declares only as `"unlimited"` (the scanner API's
/// Enterprise scans) is a declared class: the policy loads, and the class's
/// requests pass uncounted by the plan's `api` limits. It was refused as
/// "has no limit in any plan" (unlimited limits compile to no rule, and the
/// known classes were read from the compiled rules).
#[test]
fn class_declared_only_as_unlimited_loads() {
    let src = format!(
        "{HEAD}[plans.enterprise]\nlimits = [\n    {{ per = \"minute\", limit = 2 }},\n    \
         {{ class = \"scan\", per = \"hour\", limit = \"unlimited\" }},\n]\n\
         [[endpoints]]\nmethod = \"POST\"\npath = \"/api/scans\"\nclass = \"scan\"\n"
    );
    let e = Engine::from_toml(&src, Nanos::ZERO).unwrap_or_else(|e| panic!("{e}"));
    let scan = Request::new("POST", "/api/scans")
        .key("k")
        .plan("enterprise");
    for _ in 0..1000 {
        assert!(e.check(&scan, Nanos::ZERO).unwrap().is_allowed());
    }
    // The `api` minute is untouched by the scans.
    let get = Request::new("GET", "/api/assets")
        .key("k")
        .plan("enterprise");
    assert!(e.check(&get, Nanos::ZERO).unwrap().is_allowed());
    assert!(e.check(&get, Nanos::ZERO).unwrap().is_allowed());
    assert!(!e.check(&get, Nanos::ZERO).unwrap().is_allowed());
}

#[test]
fn unknown_anonymous_plan_is_refused() {
    let src = "name = \"x\"\n[anonymous]\nplan = \"guest\"\n[response]\nheaders = \"none\"\nbody = \"s4e\"\n[plans.free]\n";
    let e = Engine::from_toml(src, Nanos::ZERO).unwrap_err();
    check(&e, 3, &["\"guest\"", "not defined"]);
    assert_eq!(e.field, "anonymous.plan");
}

// ---- store capacity -----------------------------------------------------------------

/// A policy with `capacity = <n>` on its first line and one plan.
fn with_capacity(n: &str) -> String {
    format!("capacity = {n}\n{HEAD}[plans.free]\nlimits = [{{ per = \"minute\", limit = 1 }}]\n")
}

/// A capacity past `MAX_CAPACITY` is refused at its value (line 1, column
/// 12). Before, a capacity the stores refused was reported at line 0,
/// column 0.
#[test]
fn capacity_above_the_maximum_is_refused_at_its_value() {
    use tollgate::policy::MAX_CAPACITY;
    // 10^18 first: it fails before any allocation even without the bound.
    for n in [1_000_000_000_000_000_000, MAX_CAPACITY + 1] {
        let e = Engine::from_toml(&with_capacity(&n.to_string()), Nanos::ZERO).unwrap_err();
        check(&e, 1, &[&n.to_string(), "at most 268435456"]);
        assert_eq!((e.column, e.field.as_str()), (12, "capacity"), "{e}");
    }
    // `reload` checks the value the same way (though it keeps the first
    // load's stores).
    let ok = Engine::from_toml(&with_capacity("1000"), Nanos::ZERO).unwrap();
    let e = ok.reload(&with_capacity("1000000000000")).unwrap_err();
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (1, 12, "capacity"),
        "{e}"
    );
}

/// Run in a child process by `huge_capacity_is_an_error_not_an_abort`;
/// does nothing unless asked to, so an abort cannot take this whole test
/// binary down.
#[test]
fn child_huge_capacity() {
    if std::env::var_os("TOLLGATE_HUGE_CAPACITY_CHILD").is_none() {
        return;
    }
    let e = Engine::from_toml(&with_capacity("1000000000000"), Nanos::ZERO).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (1, "capacity"), "{e}");
}

/// `capacity = 1000000000000` (10^12 keys, 22.5 TB of tables) aborted the
/// process (`memory allocation of 22535211268608 bytes failed`): the stores
/// were allocated before anything bounded the value. It is an error now.
#[test]
fn huge_capacity_is_an_error_not_an_abort() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_huge_capacity", "--test-threads=1"])
        .env("TOLLGATE_HUGE_CAPACITY_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Engine::from_toml with `capacity = 1000000000000`: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran no test: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

// ---- path patterns ----------------------------------------------------------------

#[test]
fn path_without_leading_slash_is_refused() {
    let e = err("[plans.free]\n[[endpoints]]\nmethod = \"GET\"\npath = \"scans\"\n");
    check(&e, 8, &["must start with '/'"]);
    assert_eq!(e.field, "endpoints[0].path");
}

#[test]
fn star_not_last_is_refused() {
    let e = err("[plans.free]\n[[endpoints]]\nmethod = \"GET\"\npath = \"/a/*/b\"\n");
    check(&e, 8, &["'*' may only be the last segment"]);
}

#[test]
fn unclosed_parameter_is_refused() {
    let e = err("[plans.free]\n[[endpoints]]\nmethod = \"GET\"\npath = \"/scans/{id\"\n");
    check(&e, 8, &["{id", "literal", "{name}", "final `*`"]);
}

#[test]
fn bad_exempt_path_is_refused() {
    let e = err("[plans.free]\n[[exempt]]\nmethod = \"GET\"\npath = \"/health*\"\n");
    check(&e, 8, &["health*", "literal"]);
    assert_eq!(e.field, "exempt[0].path");
}

// ---- syntax -------------------------------------------------------------------------

#[test]
fn toml_syntax_error_points_at_its_line() {
    let e = err("[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }\n");
    check(&e, 6, &["expected `]`"]);
}

// ---- missing fields -------------------------------------------------------------

#[test]
fn missing_window_points_at_its_limit() {
    let e = err("[plans.free]\nlimits = [{ limit = 10 }]\n");
    check(&e, 6, &["missing field `per`"]);
    let e = err(
        "[plans.free]\nlimits = [\n  { per = \"minute\", limit = 10 },\n  { limit = 10 },\n]\n",
    );
    check(&e, 8, &["missing field `per`"]);
}

#[test]
fn missing_endpoint_path_points_at_its_table() {
    let e = err("[plans.free]\n[[endpoints]]\nmethod = \"GET\"\n");
    check(&e, 6, &["missing field `path`"]);
}

#[test]
fn missing_response_section_is_refused() {
    let e = Engine::from_toml("name = \"x\"\n[plans.free]\n", Nanos::ZERO).unwrap_err();
    check(&e, 1, &["missing field `response`"]);
}

#[test]
fn warning_at_past_a_byte_is_refused() {
    let src =
        "name = \"x\"\n[response]\nheaders = \"x-ratelimit\"\nwarning_at = 300\nbody = \"s4e\"\n";
    let e = Engine::from_toml(src, Nanos::ZERO).unwrap_err();
    // The range named is the type's (0 to 255), not "1 to 100".
    check(&e, 4, &["300", "u8"]);
}

// ---- methods and capacity that could never work ------------------------------

/// A rule's method with a space, or an empty one, would never match a
/// request: the endpoint's limit would silently not apply (found by review).
#[test]
fn an_endpoint_method_that_is_not_a_token_is_refused_at_its_line() {
    for bad in ["", "POST ", "GET,POST"] {
        let e = err(&format!(
            "[plans.free]\nlimits = [{{ per = \"minute\", limit = 10 }}]\n\
             [[endpoints]]\nmethod = \"{bad}\"\npath = \"/x\"\nlimits = [{{ per = \"minute\", limit = 1 }}]\n"
        ));
        check(&e, 8, &["not an HTTP method", "\"*\""]);
        assert_eq!(e.field, "endpoints[0].method", "{e}");
    }
}

#[test]
fn an_exempt_method_that_is_not_a_token_is_refused_at_its_line() {
    let e = err(
        "[plans.free]\nlimits = [{ per = \"minute\", limit = 10 }]\n\
         [[exempt]]\nmethod = \"GET \"\npath = \"/health\"\n",
    );
    check(&e, 8, &["not an HTTP method"]);
    assert_eq!(e.field, "exempt[0].method", "{e}");
}

#[test]
fn methods_that_are_tokens_or_star_load() {
    for ok in ["get", "PATCH", "M-SEARCH", "*"] {
        let src = format!(
            "{HEAD}[plans.free]\nlimits = [{{ per = \"minute\", limit = 10 }}]\n\
             [[endpoints]]\nmethod = \"{ok}\"\npath = \"/x\"\nlimits = [{{ per = \"minute\", limit = 1 }}]\n"
        );
        Engine::from_toml(&src, Nanos::ZERO).unwrap();
    }
}

/// `capacity = 0` was silently raised to 1: a store of one key refuses
/// almost every client, which is never what a policy means.
#[test]
fn a_capacity_of_zero_is_refused_at_its_value() {
    let src = format!(
        "capacity = 0\n{HEAD}[plans.free]\nlimits = [{{ per = \"minute\", limit = 10 }}]\n"
    );
    let e = Engine::from_toml(&src, Nanos::ZERO).unwrap_err();
    check(&e, 1, &["at least 1"]);
    assert_eq!(e.field, "capacity", "{e}");
}

/// Found by review: `ietf = true` (and `window_name`, `warning_at`) were
/// silently ignored with `headers = "none"`; each is now refused at its
/// line, and `ietf = false` there is harmless.
#[test]
fn header_options_without_headers_are_refused() {
    for (line, option) in [
        ("ietf = true", "ietf"),
        ("window_name = \"sliding_60s\"", "window_name"),
        ("warning_at = 80", "warning_at"),
    ] {
        let src = format!(
            "name = \"x\"\n[response]\nheaders = \"none\"\n{line}\nbody = \"s4e\"\n[plans.free]\n"
        );
        let e = Engine::from_toml(&src, Nanos::ZERO).unwrap_err();
        assert_eq!(e.field, format!("response.{option}"), "{e}");
        check(&e, 4, &["x-ratelimit"]);
    }
    let src = "name = \"x\"\n[response]\nheaders = \"none\"\nietf = false\nbody = \"s4e\"\n[plans.free]\n";
    assert!(Engine::from_toml(src, Nanos::ZERO).is_ok());
    // With headers, all three load.
    let src = "name = \"x\"\n[response]\nheaders = \"x-ratelimit\"\nietf = true\n\
               window_name = \"w\"\nwarning_at = 80\nbody = \"s4e\"\n[plans.free]\n";
    assert!(Engine::from_toml(src, Nanos::ZERO).is_ok());
}

// ---- found in the tenth session's review -----------------------------------

/// A plan that leaves out a quota class some endpoint spends used to make
/// that class unlimited for it (10 000 scans at one instant admitted).
#[test]
fn a_plan_without_a_class_in_use_is_refused() {
    let e = err(concat!(
        "[plans.pro]\n",
        "limits = [{ per = \"minute\", limit = 60 }, { class = \"scan\", per = \"hour\", limit = 5 }]\n",
        "[plans.team]\n",
        "limits = [{ per = \"minute\", limit = 120 }]\n",
        "[[endpoints]]\n",
        "method = \"POST\"\n",
        "path = \"/scans\"\n",
        "class = \"scan\"\n",
    ));
    check(
        &e,
        7,
        &[
            "plan \"team\"",
            "quota class \"scan\"",
            "endpoints[0]",
            "\"unlimited\"",
        ],
    );
}

/// The default class too: a plan whose limits are all for another class.
#[test]
fn a_plan_without_the_api_class_is_refused() {
    let e = err(concat!(
        "[plans.pro]\n",
        "limits = [{ class = \"scan\", per = \"hour\", limit = 5 }]\n",
    ));
    check(
        &e,
        5,
        &["plan \"pro\"", "quota class \"api\"", "no endpoint rule"],
    );
}

/// "unlimited" written out still loads.
#[test]
fn a_class_left_unlimited_in_writing_loads() {
    let src = format!(
        "{HEAD}{}",
        concat!(
            "[plans.pro]\n",
            "limits = [{ per = \"minute\", limit = 60 }, { class = \"scan\", per = \"hour\", limit = \"unlimited\" }]\n",
            "[[endpoints]]\n",
            "method = \"POST\"\n",
            "path = \"/scans\"\n",
            "class = \"scan\"\n",
        )
    );
    let e = Engine::from_toml(&src, Nanos::ZERO).unwrap();
    let scan = Request::new("POST", "/scans").key("k").plan("pro");
    assert!((0..1_000).all(|_| e.check(&scan, Nanos::ZERO).unwrap().is_allowed()));
}

/// `class` inside `org_pool` was accepted and ignored: a pool written for
/// scans throttled every request of the organisation.
#[test]
fn a_class_on_the_org_pool_is_refused() {
    let e = err_with_pool(
        "org_pool = [{ class = \"scan\", per = \"hour\", limit = 2 }]\n",
        "[plans.pro]\nlimits = [{ per = \"minute\", limit = 60 }]\n",
    );
    check(&e, 1, &["\"scan\"", "every request"]);
    assert!(e.to_string().contains("org_pool[0].class"), "{e}");
}

/// A cost above the organisation pool's burst loaded, and that endpoint
/// could then never pass (queued, then refused, blaming an unused window).
#[test]
fn a_cost_above_the_org_pools_burst_is_refused() {
    let e = err_with_pool(
        "org_pool = [{ per = \"minute\", limit = 2000, algorithm = \"gcra\", burst = 4 }]\n",
        concat!(
            "[plans.pro]\n",
            "limits = [{ per = \"minute\", limit = 60 }]\n",
            "[[endpoints]]\n",
            "method = \"POST\"\n",
            "path = \"/scan\"\n",
            "cost = 5\n",
        ),
    );
    check(
        &e,
        11,
        &["cost 5", "organisation pool", "burst of 4", "never pass"],
    );
}

/// `pool` (a top-level line, so before `HEAD`'s tables: line 1), then `HEAD`
/// (lines 2–5), then `rest` from line 6.
#[track_caller]
fn err_with_pool(pool: &str, rest: &str) -> PolicyError {
    let src = format!("{pool}{HEAD}{rest}");
    match Engine::from_toml(&src, Nanos::ZERO) {
        Ok(_) => panic!("policy loaded, expected an error:\n{src}"),
        Err(e) => e,
    }
}
