//! What the core's property-test files share.

pub mod late_refunds;

/// Cases per property: `default`, unless `PROPTEST_CASES` says otherwise
/// (`ci/miri.sh` runs a handful).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Small, human-scale quotas where histories hit every branch often (the
/// GCRA and token-bucket property tests; the other files do not use it).
#[allow(dead_code)]
pub fn small_quota() -> impl proptest::strategy::Strategy<Value = tollgate_core::Quota> {
    use proptest::strategy::Strategy;
    use std::num::NonZeroU32;
    use std::time::Duration;
    (1u32..=10, 1u64..=10_000, 1u32..=12).prop_map(|(l, p, b)| {
        tollgate_core::Quota::new(
            NonZeroU32::new(l).unwrap(),
            Duration::from_nanos(p * l as u64),
        )
        .unwrap()
        .with_burst(NonZeroU32::new(b).unwrap())
    })
}
