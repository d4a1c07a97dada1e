//! Real clocks for the std world.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tollgate_core::{Clock, Nanos};

/// A monotonic clock: nanoseconds since the clock was created, from
/// [`Instant`] (never goes backwards, unaffected by wall-clock changes).
///
/// It also remembers the wall-clock time at its epoch so adapters can turn a
/// `reset_after` into a Unix timestamp (`X-RateLimit-Reset` epochs).
///
/// ```
/// use tollgate::{Clock, MonotonicClock, Nanos};
///
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// // Unix time (seconds) at which something 30 s from now happens.
/// let at = clock.unix_secs_at(clock.now() + Nanos::from_secs(30));
/// assert!(at > 1_600_000_000);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    epoch: Instant,
    epoch_unix: Nanos,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> MonotonicClock {
        let epoch = Instant::now();
        let epoch_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(Nanos::from_duration)
            .unwrap_or(Nanos::ZERO);
        MonotonicClock { epoch, epoch_unix }
    }

    /// The Unix time, in nanoseconds, of a point `at` on this clock.
    pub fn unix_nanos_at(&self, at: Nanos) -> Nanos {
        self.epoch_unix + at
    }

    /// The Unix time, in whole seconds rounded up, of a point `at` on this
    /// clock (rounded up so a reset time is never announced early).
    pub fn unix_secs_at(&self, at: Nanos) -> u64 {
        self.unix_nanos_at(at).as_secs_ceil()
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Nanos {
        Nanos::from_duration(self.epoch.elapsed())
    }
}
