//! Window keys idle for a long time are fresh again (found by the tenth
//! session's review: window indexes are kept modulo 2^24 / 2^32, and a key
//! idle for half that range read as a later window — refused for as long
//! again, counted in `len()`, never reclaimed, so a store whose keys had
//! all gone idle refused new keys as full).

use std::num::NonZeroU32;

use tollgate::Nanos;
use tollgate::keyed::{KeyedFixedWindow, KeyedLimiter, KeyedSlidingWindow};

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

#[test]
fn sliding_keys_idle_97_days_are_fresh_and_leave_room() {
    let s = KeyedLimiter::with_hasher(
        100,
        KeyedSlidingWindow::new(Nanos::from_secs(1)).unwrap(),
        ahash::RandomState::new(),
    )
    .unwrap();
    for k in 1..=64u64 {
        assert!(s.check(&k, &one(), Nanos::ZERO).is_allowed());
    }
    assert_eq!(s.len(Nanos::from_secs(2)), 0);
    let later = Nanos::from_secs(1 << 23); // 97 days of 1 s windows
    assert_eq!(s.len(later), 0);
    for k in 1..=64u64 {
        assert!(s.check(&k, &one(), later).is_allowed(), "key {k}");
    }
    assert!(s.check(&1_000u64, &one(), later).is_allowed());
}

#[test]
fn fixed_keys_idle_25_days_of_1_ms_windows_are_fresh() {
    let w = KeyedFixedWindow::new(Nanos::from_millis(1), Nanos::ZERO).unwrap();
    let f = KeyedLimiter::with_hasher(100, w, ahash::RandomState::new()).unwrap();
    assert!(f.check(&7u64, &one(), Nanos::ZERO).is_allowed());
    let later = Nanos::from_millis(1 << 31);
    assert_eq!(f.len(later), 0);
    assert!(f.check(&7u64, &one(), later).is_allowed());
}
