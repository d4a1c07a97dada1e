//! `RateLimitInfo` for several windows checked together (`All`): the recipe
//! in `RateLimitInfo`'s docs gives Limit, Remaining and Reset of the one
//! window that binds.

use std::num::NonZeroU32;

use tollgate::headers::RateLimitInfo;
use tollgate::{All, Gcra, Nanos, Quota};

/// The docs said to build the info from the binding member's limit and
/// window and the combined decision — whose `reset_after` is the largest of
/// all members' (here the day's 518.4 s under a binding minute's 60 s). The
/// recipe now takes Reset from the binding member's own state.
#[test]
fn all_recipe_gives_the_binding_windows_reset() {
    let nz = |n| NonZeroU32::new(n).unwrap();
    let limits = All((
        Gcra::new(Quota::per_minute(nz(60))),
        Gcra::new(Quota::per_day(nz(10_000))),
    ));
    let now = Nanos::ZERO;
    let mut d = limits.check_all(now, 1);
    for _ in 0..59 {
        d = limits.check_all(now, 1);
    }
    assert_eq!(d.member, 0, "the minute binds");
    // The recipe: the binding member's limit, window and own reset.
    let (binding, window) = match d.member {
        0 => (limits.0.0.peek(now), Nanos::from_secs(60)),
        _ => (limits.0.1.peek(now), Nanos::from_secs(86_400)),
    };
    let mut info = RateLimitInfo::new(&d.decision, binding.limit, window);
    info.reset_after = binding.reset_after;
    assert_eq!((info.limit, info.remaining), (60, 0));
    assert_eq!(info.reset_after, Nanos::from_secs(60), "the minute's reset");
    // What the old recipe gave: the day's reset with the minute's numbers.
    let mixed = RateLimitInfo::new(&d.decision, 60, window);
    assert_eq!(mixed.reset_after, Nanos::from_millis(518_400));
}
