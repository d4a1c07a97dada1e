//! What the core's property-test files share.

/// Cases per property: `default`, unless `PROPTEST_CASES` says otherwise
/// (`ci/miri.sh` runs a handful).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
