//! What the criterion bench files share (a module, not a bench target).

use std::time::Duration;

use criterion::Criterion;

/// Settings for cases of a few nanoseconds to a few hundred: 0.5 s of
/// warm-up and 1.5 s of samples (tens of millions of calls) are plenty, and
/// keep the whole suite within a few minutes.
pub fn short() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1_500))
}
