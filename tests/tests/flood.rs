//! A flood of 10 000 000 distinct keys into a store sized for 1 000 000:
//! memory stays at the table's fixed size (measured as resident memory), the
//! store keeps working, and keys already tracked keep their exact state.

use std::num::NonZeroU32;

use tollgate::keyed::{KeyedDecision, KeyedLimiter};
use tollgate::{Nanos, Quota};

/// Resident set size in bytes (Linux `/proc/self/statm`), if available.
fn rss() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn ten_million_keys_into_one_million_slots() {
    let q = Quota::per_minute(NonZeroU32::new(10).unwrap());
    let before = rss();
    let store = KeyedLimiter::new(1_000_000).unwrap();
    let table = store.memory_bytes();
    assert!(table <= 24 * 1_000_000, "table {table} bytes");
    let now = Nanos::from_secs(1);

    // A legitimate client, tracked before the flood.
    for _ in 0..5 {
        assert!(store.check("legit", &q, now).is_allowed());
    }
    let mut full = 0u64;
    for key in 0..10_000_000u64 {
        if store.check(&key, &q, now) == KeyedDecision::StoreFull {
            full += 1;
        }
    }
    // At most ~1.4 M slots exist: most of the flood is refused, not stored.
    assert!(full >= 8_000_000, "only {full} refused");
    assert!(store.occupied() <= store.memory_bytes() / 16);
    // The tracked client kept its exact state: 5 of 10 used.
    assert_eq!(store.peek("legit", &q, now).remaining, 5);

    if let (Some(before), Some(after)) = (before, rss()) {
        let growth = after.saturating_sub(before);
        // The table, plus slack for the test harness's own allocations.
        assert!(
            growth <= table + 8 * 1024 * 1024,
            "RSS grew by {growth} bytes for a {table}-byte table"
        );
        println!("RSS growth {growth} bytes, table {table} bytes, {full} refused");
    }
}
