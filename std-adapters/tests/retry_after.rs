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
