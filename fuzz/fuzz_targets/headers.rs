//! Response headers and 429 bodies from arbitrary `RateLimitInfo` (any
//! limit, remaining, reset, retry and window, raw or built from a
//! `Decision`), every `HeaderStyle` option (window names and IETF policy
//! names from arbitrary strings) and every `BodyStyle` × `Refusal`.
//!
//! What the renderer does with names, and what is asserted:
//! * IETF policy names go through a structured-field string: non-printable
//!   characters dropped, `"` and `\` escaped. So `RateLimit` and
//!   `RateLimit-Policy` are valid header values for *every* name, and the
//!   quoted string decodes back to the name's printable-ASCII characters.
//! * Window names keep only their printable-ASCII characters (found here:
//!   they used to be copied verbatim, so a name with CR LF gave an invalid
//!   header value that `write_headers` silently dropped): the
//!   `X-RateLimit-Window` value is always valid, and `write_headers` keeps
//!   every header.
//!
//! Also, for any input: no panic; every other value is a valid header value;
//! `X-RateLimit-Remaining <= X-RateLimit-Limit` (and `r <= q` in the IETF
//! fields); `Retry-After` appears exactly on a refusal (or an info carrying
//! a wait) and the style asking for it, is never "0", and in seconds is the wait rounded
//! up (at least 1); a `Warning` appears exactly when at least the threshold
//! is used; every rate-limit 429 body that carries a wait carries the same
//! one, never 0; concurrency bodies carry 1 or the BlockSecOps counts.
//!
//! Found here and fixed: a rate-limit refusal without a wait
//! (`RateLimitInfo::new` of `Decision::ExceedsCapacity`) got a body with
//! `"retry_after": 0`; it now announces the time until the limit is whole
//! again, at least 1 (seed `corpus/headers/exceeds-capacity-body-retry-after-0`).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate::body::{BodyStyle, Refusal, body};
use tollgate::headers::{
    HeaderStyle, RateLimitInfo, ResetFormat, RetryAfterFormat, retry_after_secs, write_headers,
};
use tollgate::{Decision, Nanos};

#[derive(Arbitrary, Debug)]
enum Info {
    Raw {
        limit: u32,
        remaining: u32,
        reset_after: u64,
        retry_after: Option<u64>,
        refused: bool,
        window: u64,
        used_percent: Option<u32>,
    },
    /// Through `RateLimitInfo::new`, as adapters build it.
    FromDecision {
        decision: Dec,
        limit: u32,
        window: u64,
    },
}

#[derive(Arbitrary, Debug)]
enum Dec {
    Allowed {
        remaining: u32,
        reset_after: u64,
    },
    Denied {
        retry_after: u64,
        remaining: u32,
        reset_after: u64,
    },
    ExceedsCapacity {
        cost: u32,
        capacity: u32,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    info: Info,
    x_ratelimit: bool,
    delta_reset: bool,
    retry: Option<bool>,
    window_name: Option<String>,
    ietf: Option<String>,
    warning_at: Option<u8>,
    now_unix: u64,
    current: u32,
    max: u32,
}

fuzz_target!(|input: Input| {
    let info = match input.info {
        Info::Raw {
            limit,
            remaining,
            reset_after,
            retry_after,
            refused,
            window,
            used_percent,
        } => RateLimitInfo {
            limit,
            remaining,
            reset_after: Nanos::new(reset_after),
            retry_after: retry_after.map(Nanos::new),
            refused,
            window: Nanos::new(window),
            used_percent,
        },
        Info::FromDecision {
            decision,
            limit,
            window,
        } => {
            let d = match decision {
                Dec::Allowed {
                    remaining,
                    reset_after,
                } => Decision::Allowed {
                    remaining,
                    reset_after: Nanos::new(reset_after),
                },
                Dec::Denied {
                    retry_after,
                    remaining,
                    reset_after,
                } => Decision::Denied {
                    retry_after: Nanos::new(retry_after),
                    remaining,
                    reset_after: Nanos::new(reset_after),
                },
                Dec::ExceedsCapacity { cost, capacity } => {
                    Decision::ExceedsCapacity { cost, capacity }
                }
            };
            let info = RateLimitInfo::new(&d, limit, Nanos::new(window));
            // Documented: never above the limit; refused unless allowed.
            assert!(info.remaining <= info.limit);
            assert_eq!(info.refused, !d.is_allowed());
            assert_eq!(info.retry_after, d.retry_after());
            info
        }
    };

    let mut style = if input.x_ratelimit {
        HeaderStyle::x_ratelimit()
    } else {
        HeaderStyle::none()
    };
    if input.delta_reset {
        style.reset = ResetFormat::DeltaSeconds;
    }
    if let Some(seconds) = input.retry {
        style.retry_after = Some(if seconds {
            RetryAfterFormat::Seconds
        } else {
            RetryAfterFormat::HttpDate
        });
    }
    if let Some(name) = &input.window_name {
        style = style.with_window_name(name);
    }
    if let Some(name) = &input.ietf {
        style = style.with_ietf(name);
    }
    if let Some(p) = input.warning_at {
        style = style.with_warning_at(p);
        assert!(style.warning_percent <= Some(100));
    }

    let now_unix = Nanos::new(input.now_unix);
    let headers = style.render(&info, now_unix);
    check_headers(
        &style,
        &info,
        &headers,
        input.window_name.as_deref(),
        input.ietf.as_deref(),
    );

    // Every body style, for both kinds of refusal.
    let styles = [
        BodyStyle::S4e,
        BodyStyle::Cybervault,
        BodyStyle::ScannerApi,
        BodyStyle::Blocksecops,
        BodyStyle::SlimIo,
    ];
    for style in styles {
        let b = body(style, &Refusal::Rate(info), now_unix);
        let err = &b["error"];
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{style:?}: {b}"
        );
        let wait = err.get("retry_after").or_else(|| err.get("retryAfter"));
        assert_eq!(wait.is_none(), style == BodyStyle::SlimIo, "{style:?}: {b}");
        if let Some(wait) = wait {
            let wait = wait.as_u64().expect("a number of seconds");
            match info.retry_after {
                // The header's rounding: the exact wait rounded up, >= 1.
                Some(r) => assert_eq!(wait, retry_after_secs(r), "{style:?}: {b}"),
                // A refusal without a wait announces the time until the limit
                // is whole again, never 0 (found here and fixed).
                None => {
                    assert!(wait >= 1, "{style:?}: a refusal announces a wait of 0: {b}");
                    assert_eq!(wait, retry_after_secs(info.reset_after), "{style:?}: {b}");
                }
            }
        }
        if style == BodyStyle::Cybervault {
            let at = err["quota_reset_at"].as_str().expect("a timestamp");
            assert!(at.ends_with('Z') && at.contains('T'), "{at}");
        }

        let c = body(
            style,
            &Refusal::Concurrency {
                current: input.current,
                max: input.max,
            },
            now_unix,
        );
        if style == BodyStyle::Blocksecops {
            assert_eq!(c["error"]["code"], "CONCURRENT_LIMIT");
            assert_eq!(
                c["error"]["current_scans"].as_u64(),
                Some(u64::from(input.current))
            );
            assert_eq!(c["error"]["max_scans"].as_u64(), Some(u64::from(input.max)));
        } else if let Some(wait) = c["error"]
            .get("retry_after")
            .or_else(|| c["error"].get("retryAfter"))
        {
            // No wait can be promised for a concurrency slot: 1, never 0.
            assert_eq!(wait.as_u64(), Some(1), "{style:?}: {c}");
        }
    }
});

fn check_headers(
    style: &HeaderStyle,
    info: &RateLimitInfo,
    headers: &[(&'static str, String)],
    window_name: Option<&str>,
    ietf: Option<&str>,
) {
    let get = |n: &str| {
        headers
            .iter()
            .find(|(name, _)| *name == n)
            .map(|(_, v)| v.as_str())
    };
    for (name, value) in headers {
        assert!(
            http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
            "{name}"
        );
        let valid = http::HeaderValue::from_str(value).is_ok();
        if *name == "X-RateLimit-Window" {
            // The name's printable-ASCII characters, in order, with
            // `{window}` standing for the window's length in seconds.
            let given = window_name.expect("a window name was set");
            let printable: String = given.chars().filter(|c| (' '..='~').contains(c)).collect();
            let secs = info.window.as_secs_ceil().to_string();
            assert_eq!(value, &printable.replace("{window}", &secs));
        }
        assert!(valid, "{name}: {value:?} is not a valid header value");
    }

    // write_headers keeps every header whose value is valid.
    let mut map = http::HeaderMap::new();
    write_headers(&mut map, headers);
    for (name, value) in headers {
        let kept = map
            .get(*name)
            .is_some_and(|v| v.as_bytes() == value.as_bytes());
        assert_eq!(
            kept,
            http::HeaderValue::from_str(value).is_ok(),
            "{name}: {value:?}"
        );
    }

    let num = |n: &str| get(n).map(|v| v.parse::<u64>().expect("a number"));
    match (num("X-RateLimit-Limit"), num("X-RateLimit-Remaining")) {
        (Some(limit), Some(remaining)) => {
            assert!(style.x_ratelimit);
            assert_eq!(limit, u64::from(info.limit));
            assert!(remaining <= limit, "Remaining {remaining} > Limit {limit}");
            assert!(num("X-RateLimit-Reset").is_some());
        }
        (None, None) => assert!(!style.x_ratelimit),
        other => panic!("Limit and Remaining come together: {other:?}"),
    }

    match ietf {
        Some(name) => {
            let policy = get("RateLimit-Policy").expect("RateLimit-Policy");
            let fields = get("RateLimit").expect("RateLimit");
            // Structured-field string: the printable characters, escaped.
            let printable: String = name.chars().filter(|c| (' '..='~').contains(c)).collect();
            let (p_name, p_rest) = sf_decode(policy);
            let (f_name, f_rest) = sf_decode(fields);
            assert_eq!(p_name, printable);
            assert_eq!(f_name, printable);
            let q = param(p_rest, "q");
            let r = param(f_rest, "r");
            assert_eq!(q, u64::from(info.limit));
            assert!(r <= q, "RateLimit r={r} > q={q}");
            let _ = (param(p_rest, "w"), param(f_rest, "t"));
        }
        None => assert!(get("RateLimit-Policy").is_none() && get("RateLimit").is_none()),
    }

    let remaining = info.remaining.min(info.limit);
    let used = u64::from(info.limit - remaining);
    // The share used: given (`used_percent`, the most-used of several
    // windows), else from limit and remaining.
    let warn = style.warning_percent.is_some_and(|p| match info.used_percent {
        Some(u) => u >= u32::from(p),
        None => info.limit > 0 && used * 100 >= u64::from(p) * u64::from(info.limit),
    });
    if let (true, Some(u)) = (warn, info.used_percent) {
        let want = format!("299 - \"Rate Limit\" \"{}% of quota consumed\"", u.min(100));
        assert_eq!(get("Warning"), Some(want.as_str()));
    }
    assert_eq!(
        get("Warning").is_some(),
        warn,
        "Warning at {:?}",
        style.warning_percent
    );

    let retry = get("Retry-After");
    // A refusal with no exact wait (cost above the capacity) announces the
    // time until the limit is whole again, as its 429 body does.
    let wait = info.retry_after.or(info.refused.then_some(info.reset_after));
    match (style.retry_after, wait) {
        (Some(format), Some(wait)) => {
            let v = retry.expect("Retry-After on a refusal with a wait");
            assert_ne!(v, "0", "Retry-After: 0");
            let secs = retry_after_secs(wait);
            assert!(secs >= 1 && u128::from(secs) * 1_000_000_000 >= u128::from(wait.as_u64()));
            match format {
                RetryAfterFormat::Seconds => assert_eq!(v.parse::<u64>().ok(), Some(secs)),
                RetryAfterFormat::HttpDate => assert!(v.ends_with(" GMT"), "{v}"),
            }
        }
        _ => assert!(retry.is_none(), "Retry-After without a wait: {retry:?}"),
    }
}

/// Decodes a leading structured-field string: `(content, rest)`.
fn sf_decode(v: &str) -> (String, &str) {
    let mut chars = v.char_indices();
    assert_eq!(chars.next(), Some((0, '"')), "{v}");
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next().expect("an escaped character");
                assert!(e == '"' || e == '\\', "bad escape in {v}");
                out.push(e);
            }
            '"' => return (out, &v[i + 1..]),
            c => {
                assert!((' '..='~').contains(&c), "unescaped {c:?} in {v}");
                out.push(c);
            }
        }
    }
    panic!("unterminated string in {v}");
}

/// The value of `;key=<u64>` in structured-field parameters.
fn param(rest: &str, key: &str) -> u64 {
    rest.split(';')
        .find_map(|p| p.strip_prefix(key).and_then(|p| p.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {rest}"))
}
