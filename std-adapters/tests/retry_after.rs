//! Retry-After is never 0 and never early, for any refusal.

use proptest::prelude::*;
use tollgate::headers::{HeaderStyle, RateLimitInfo, retry_after_secs};
use tollgate::{Decision, Nanos};

proptest! {
    #[test]
    fn retry_after_is_at_least_one_and_never_early(wait in 1u64..=u64::MAX, remaining in any::<u32>(), limit in 1u32..=u32::MAX) {
        let d = Decision::Denied {
            retry_after: Nanos::new(wait),
            remaining: remaining % limit,
            reset_after: Nanos::new(wait),
        };
        let info = RateLimitInfo::new(&d, limit, Nanos::from_secs(60));
        let headers = HeaderStyle::x_ratelimit().render(&info, Nanos::ZERO);
        let value = &headers.iter().find(|(n, _)| *n == "Retry-After").unwrap().1;
        let secs: u64 = value.parse().unwrap();
        prop_assert!(secs >= 1);
        prop_assert!(u128::from(secs) * 1_000_000_000 >= u128::from(wait));
        prop_assert_eq!(secs, retry_after_secs(Nanos::new(wait)));
        // Header values are plain printable ASCII.
        prop_assert!(headers.iter().all(|(_, v)| v.bytes().all(|b| (b' '..=b'~').contains(&b))));
    }
}

/// Every refusal's headers carry `Retry-After`, at least 1, including one no
/// wait can cure (cost above the capacity: no exact wait), and the 429 body
/// states the same seconds (found by review: the header was left out while
/// the body said 1).
#[test]
fn every_refusal_has_a_retry_after_and_the_body_agrees() {
    let window = Nanos::from_secs(60);
    let refusals = [
        Decision::ExceedsCapacity {
            cost: 9,
            capacity: 5,
        },
        Decision::Denied {
            retry_after: Nanos::from_millis(2_500),
            remaining: 0,
            reset_after: window,
        },
    ];
    for d in refusals {
        let info = RateLimitInfo::new(&d, 5, window);
        let headers = HeaderStyle::x_ratelimit().render(&info, Nanos::ZERO);
        let header = headers
            .iter()
            .find(|(n, _)| *n == "Retry-After")
            .map(|(_, v)| v.parse::<u64>().unwrap());
        assert!(header.is_some_and(|s| s >= 1), "{d:?}: {headers:?}");
        #[cfg(feature = "serde")]
        {
            use tollgate::body::{BodyStyle, Refusal, body};
            for style in [BodyStyle::S4e, BodyStyle::Cybervault, BodyStyle::ScannerApi] {
                let b = body(style, &Refusal::Rate(info), Nanos::ZERO);
                let field = if style == BodyStyle::ScannerApi {
                    "retryAfter"
                } else {
                    "retry_after"
                };
                assert_eq!(b["error"][field].as_u64(), header, "{d:?} {style:?}: {b}");
            }
        }
    }
    // An admission states no wait.
    let ok = RateLimitInfo::new(
        &Decision::Allowed {
            remaining: 4,
            reset_after: window,
        },
        5,
        window,
    );
    let headers = HeaderStyle::x_ratelimit().render(&ok, Nanos::ZERO);
    assert!(headers.iter().all(|(n, _)| *n != "Retry-After"));
}

/// A reset or retry time past `Nanos::MAX` from now (2554-07-21) is written
/// as itself, not as that earlier date (found by review: the sum saturated).
#[test]
fn far_future_reset_and_retry_dates_are_never_early() {
    use tollgate::headers::RetryAfterFormat;
    use tollgate::time_fmt::http_date;
    let now_unix = Nanos::from_secs(1_714_305_600); // 2024-04-28T12:00:00Z
    let wait = Nanos::new(17_000_000_000_000_000_000); // ~539 years
    let mut style = HeaderStyle::x_ratelimit();
    style.retry_after = Some(RetryAfterFormat::HttpDate);
    let info = RateLimitInfo::new(
        &Decision::Denied {
            retry_after: wait,
            remaining: 0,
            reset_after: wait,
        },
        1,
        Nanos::from_secs(60),
    );
    let h = style.render(&info, now_unix);
    let get = |name: &str| h.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let at = 1_714_305_600 + 17_000_000_000;
    assert_eq!(get("Retry-After"), http_date(at));
    assert_eq!(get("X-RateLimit-Reset"), at.to_string());
    #[cfg(feature = "serde")]
    {
        use tollgate::body::{BodyStyle, Refusal, body};
        use tollgate::time_fmt::rfc3339;
        let b = body(BodyStyle::Cybervault, &Refusal::Rate(info), now_unix);
        assert_eq!(b["error"]["quota_reset_at"], rfc3339(at).as_str());
    }
    // The clock's own conversion too.
    let clock = tollgate::MonotonicClock::new();
    assert!(clock.unix_secs_at(Nanos::MAX) > clock.unix_secs_at(Nanos::ZERO) + 18_000_000_000);
}
