//! Criterion: rate-limit response headers from a decision — the
//! `RateLimitInfo` built from it, then rendered as `(name, value)` pairs
//! (legacy `X-RateLimit-*`, the IETF `RateLimit-Policy` / `RateLimit` fields,
//! everything at once) or written into an `http::HeaderMap`, for an allowed
//! and a denied (`Retry-After`) decision.
//!
//! No governor equivalent: governor hands back the decision (a `NotUntil`
//! on refusal) and leaves the headers to the caller, so every group holds
//! tollgate's variants only.
//!
//! `cargo bench -p tollgate-benches --bench headers`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

mod common;

use std::hint::black_box;
use std::num::NonZeroU32;

use axum::http::HeaderMap;
use criterion::{Criterion, criterion_group, criterion_main};
use tollgate::headers::{HeaderStyle, RateLimitInfo, RetryAfterFormat, write_headers};
use tollgate::{Decision, Gcra, Nanos, Quota};

const LIMIT: u32 = 100;
const WINDOW: Nanos = Nanos::from_secs(60);
/// The request's Unix time, as a server would pass it in.
const NOW_UNIX: Nanos = Nanos::from_secs(1_714_305_600);

/// A decision of a 100-per-minute GCRA: the first request's (allowed, 99
/// left) or the 101st's in the same instant (denied, retry in 0.6 s).
fn decision(allowed: bool) -> Decision {
    let g = Gcra::new(Quota::per_minute(NonZeroU32::new(LIMIT).expect("non-zero")));
    let first = g.check(Nanos::ZERO);
    if allowed {
        return first;
    }
    let _ = g.check_n(Nanos::ZERO, LIMIT - 1);
    let d = g.check(Nanos::ZERO);
    assert!(!d.is_allowed());
    d
}

/// The styles measured, by function name.
fn styles() -> Vec<(&'static str, HeaderStyle)> {
    let mut http_date = HeaderStyle::x_ratelimit();
    http_date.retry_after = Some(RetryAfterFormat::HttpDate);
    vec![
        ("x_ratelimit_pairs", HeaderStyle::x_ratelimit()),
        ("ietf_pairs", HeaderStyle::none().with_ietf("per-minute")),
        (
            "all_fields_pairs",
            HeaderStyle::x_ratelimit()
                .with_window_name("sliding_60s")
                .with_warning_at(80)
                .with_ietf("per-minute"),
        ),
        ("x_ratelimit_http_date_pairs", http_date),
    ]
}

fn render(c: &mut Criterion) {
    for (name, allowed) in [("headers_allowed", true), ("headers_denied", false)] {
        let d = decision(allowed);
        let mut g = c.benchmark_group(name);
        for (fname, style) in styles() {
            // An HTTP date only appears in `Retry-After`: on an allowed
            // decision that variant would repeat `x_ratelimit_pairs`.
            if allowed && fname == "x_ratelimit_http_date_pairs" {
                continue;
            }
            g.bench_function(fname, |b| {
                b.iter(|| {
                    let info = RateLimitInfo::new(black_box(&d), LIMIT, WINDOW);
                    style.render(&info, black_box(NOW_UNIX))
                })
            });
        }
        // What a response carries: the legacy headers in a fresh map.
        let style = HeaderStyle::x_ratelimit();
        g.bench_function("x_ratelimit_header_map", |b| {
            b.iter(|| {
                let info = RateLimitInfo::new(black_box(&d), LIMIT, WINDOW);
                let mut map = HeaderMap::new();
                write_headers(&mut map, &style.render(&info, black_box(NOW_UNIX)));
                map
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // A few hundred nanoseconds each: short runs suffice.
    config = common::short();
    targets = render
}
criterion_main!(benches);
