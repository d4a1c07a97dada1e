//! A simulated minute of traffic against one limiter, on a manual clock.
//!
//! The quota is S4E's "Standard" tier (100 requests per minute, burst 20,
//! see `shared/seeds`): a client fires 25 requests at once, is refused past
//! the burst, then retries as `Retry-After` tells it to. Everything runs on a
//! `ManualClock`, so the output is the same on every run.
//!
//! Run: `cargo run --release --example quickstart`

use std::num::NonZeroU32;

use tollgate::{Clock, Decision, Gcra, ManualClock, Nanos, Quota};

fn main() {
    let quota = Quota::per_minute(NonZeroU32::new(100).expect("non-zero"))
        .with_burst(NonZeroU32::new(20).expect("non-zero"));
    let limiter = Gcra::new(quota);
    let clock = ManualClock::new(Nanos::ZERO);

    println!("quota: {quota:?}");
    println!("\n-- t=0: a burst of 25 requests --");
    let (mut allowed, mut denied) = (0, 0);
    let mut first_retry = None;
    for i in 1..=25 {
        match limiter.check(clock.now()) {
            Decision::Allowed { remaining, .. } => {
                allowed += 1;
                if i % 5 == 0 {
                    println!("request {i:>2}: allowed, {remaining} left");
                }
            }
            Decision::Denied { retry_after, .. } => {
                denied += 1;
                first_retry.get_or_insert(retry_after);
                println!(
                    "request {i:>2}: 429, Retry-After: {} s (exact: {retry_after})",
                    retry_after.as_secs_ceil()
                );
            }
            Decision::ExceedsCapacity { .. } => unreachable!("cost 1 <= burst 20"),
        }
    }
    println!("allowed {allowed}, denied {denied}");

    println!("\n-- a well-behaved client: wait Retry-After, try again, for one minute --");
    let mut sent = 0;
    let mut ok = 0;
    while clock.now() < Nanos::from_secs(60) {
        sent += 1;
        match limiter.check(clock.now()) {
            Decision::Allowed { .. } => {
                ok += 1;
                // Send the next request right away.
            }
            Decision::Denied { retry_after, .. } => {
                clock.advance(retry_after);
            }
            Decision::ExceedsCapacity { .. } => unreachable!(),
        }
    }
    println!(
        "in 60 s after the burst: {ok} admitted of {sent} attempts \
         (the quota allows 100 per minute: 1 every {})",
        quota.emission_interval()
    );

    println!("\n-- cost and refund: an export costs 5 units; a 304 gives its unit back --");
    clock.advance(Nanos::from_secs(60)); // bucket full again
    let d = limiter.check_n(clock.now(), 5);
    println!("export (cost 5): {d:?}");
    let d = limiter.check(clock.now());
    println!("GET (cost 1):    {d:?}");
    let s = limiter.refund(clock.now(), 1);
    println!("304 refunded:    {s:?}");
    let d = limiter.check_n(clock.now(), 21);
    println!("cost 21 > burst: {d:?} (retrying can never help)");
}
