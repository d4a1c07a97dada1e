//! Time as a value: [`Nanos`], the [`Clock`] trait and [`ManualClock`].
//!
//! The core never reads a clock. Every operation takes `now: Nanos`, the
//! nanoseconds since an epoch the caller chooses (process start, boot, a tick
//! counter). Only the adapters (`tollgate::clock`) read real clocks.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// A point in time or a span of time, in nanoseconds, as a `u64`.
///
/// `u64` nanoseconds cover 584 years. All arithmetic saturates: `a - b` is
/// zero when `b > a`, `a + b` is [`Nanos::MAX`] on overflow, so a clock that
/// repeats or steps backwards can never make a computation panic or wrap.
///
/// ```
/// use tollgate_core::Nanos;
///
/// let t = Nanos::from_millis(1_500);
/// assert_eq!(t.as_u64(), 1_500_000_000);
/// assert_eq!(t - Nanos::from_secs(2), Nanos::ZERO); // saturates
/// assert_eq!(Nanos::MAX + t, Nanos::MAX); // saturates
/// assert_eq!(t.as_secs_ceil(), 2);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

impl Nanos {
    /// Zero nanoseconds.
    pub const ZERO: Nanos = Nanos(0);
    /// The largest representable time, about 584 years.
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// Nanoseconds.
    #[inline]
    pub const fn new(nanos: u64) -> Nanos {
        Nanos(nanos)
    }

    /// Microseconds, saturating at [`Nanos::MAX`].
    #[inline]
    pub const fn from_micros(micros: u64) -> Nanos {
        Nanos(micros.saturating_mul(1_000))
    }

    /// Milliseconds, saturating at [`Nanos::MAX`].
    #[inline]
    pub const fn from_millis(millis: u64) -> Nanos {
        Nanos(millis.saturating_mul(1_000_000))
    }

    /// Seconds, saturating at [`Nanos::MAX`].
    #[inline]
    pub const fn from_secs(secs: u64) -> Nanos {
        Nanos(secs.saturating_mul(1_000_000_000))
    }

    /// A [`Duration`], saturating at [`Nanos::MAX`] (584 years).
    #[inline]
    pub const fn from_duration(d: Duration) -> Nanos {
        let n = d.as_nanos();
        if n > u64::MAX as u128 {
            Nanos::MAX
        } else {
            // Checked just above: n <= u64::MAX (try_from is not const).
            #[allow(clippy::cast_possible_truncation)]
            Nanos(n as u64)
        }
    }

    /// The number of nanoseconds.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// As a [`Duration`] (always exact).
    #[inline]
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Whole seconds, rounded **up**: what a `Retry-After` header must say so
    /// that a client that waits exactly that long is not refused again.
    #[inline]
    pub const fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1_000_000_000)
    }

    /// `self + rhs`, saturating at [`Nanos::MAX`].
    #[inline]
    pub const fn saturating_add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, saturating at [`Nanos::ZERO`].
    #[inline]
    pub const fn saturating_sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl Add for Nanos {
    type Output = Nanos;
    /// Saturating addition.
    #[inline]
    fn add(self, rhs: Nanos) -> Nanos {
        self.saturating_add(rhs)
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    /// Saturating subtraction.
    #[inline]
    fn sub(self, rhs: Nanos) -> Nanos {
        self.saturating_sub(rhs)
    }
}

impl From<Duration> for Nanos {
    #[inline]
    fn from(d: Duration) -> Nanos {
        Nanos::from_duration(d)
    }
}

impl From<Nanos> for Duration {
    #[inline]
    fn from(n: Nanos) -> Duration {
        n.as_duration()
    }
}

/// Formats like [`Duration`]'s `Debug`: `600ms`, `1.5s`, `3ns`.
impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_duration(), f)
    }
}

/// Formats like [`Duration`]'s `Debug`: `600ms`, `1.5s`, `3ns`.
impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_duration(), f)
    }
}

/// A source of time for adapters and simulations.
///
/// The core's limiters never call a clock; they take `now` as an argument.
/// `Clock` exists so code that *does* read time (the std adapters, a firmware
/// tick counter, a simulation) can be written once against any source.
///
/// ```
/// use tollgate_core::{Clock, Nanos};
///
/// /// A firmware clock: a 1 kHz tick counter.
/// struct Ticks(u64);
/// impl Clock for Ticks {
///     fn now(&self) -> Nanos {
///         Nanos::from_millis(self.0)
///     }
/// }
/// assert_eq!(Ticks(1_000).now(), Nanos::from_secs(1));
/// ```
pub trait Clock {
    /// The current time since this clock's epoch.
    fn now(&self) -> Nanos;
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn now(&self) -> Nanos {
        (**self).now()
    }
}

/// A clock that moves only when told to: tests, simulations, tick-counter
/// firmware.
///
/// Shareable between threads (`&ManualClock` is enough to advance it) and
/// constructible in a `static`.
///
/// # Memory ordering
///
/// The time is one `AtomicU64` accessed with `Relaxed`: it publishes no other
/// memory, and every reader only needs *some* recent value of that one word.
/// Per-location coherence still guarantees that a thread never sees time go
/// backwards after it has seen a later value, unless [`ManualClock::set`] moves
/// it back on purpose.
///
/// ```
/// use tollgate_core::{Clock, ManualClock, Nanos};
///
/// static CLOCK: ManualClock = ManualClock::new(Nanos::ZERO);
///
/// CLOCK.advance(Nanos::from_millis(250));
/// assert_eq!(CLOCK.now(), Nanos::from_millis(250));
/// CLOCK.set(Nanos::from_secs(10));
/// assert_eq!(CLOCK.now(), Nanos::from_secs(10));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start`.
    #[cfg(not(tollgate_loom))]
    pub const fn new(start: Nanos) -> ManualClock {
        ManualClock {
            nanos: AtomicU64::new(start.0),
        }
    }

    /// A clock reading `start` (loom build: loom atomics are not `const`).
    #[cfg(tollgate_loom)]
    pub fn new(start: Nanos) -> ManualClock {
        ManualClock {
            nanos: AtomicU64::new(start.0),
        }
    }

    /// Moves the clock forward by `by`, saturating at [`Nanos::MAX`], and
    /// returns the new time.
    pub fn advance(&self, by: Nanos) -> Nanos {
        // Relaxed: see the type's "Memory ordering" section.
        let prev = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(by.0))
            });
        // fetch_update with a closure that always returns Some cannot fail.
        Nanos(match prev {
            Ok(t) | Err(t) => t,
        })
        .saturating_add(by)
    }

    /// Sets the clock to `to`, forwards or backwards.
    pub fn set(&self, to: Nanos) {
        // Relaxed: see the type's "Memory ordering" section.
        self.nanos.store(to.0, Ordering::Relaxed);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(Nanos::ZERO)
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Nanos {
        // Relaxed: see the type's "Memory ordering" section.
        Nanos(self.nanos.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_arithmetic() {
        assert_eq!(Nanos::new(3) - Nanos::new(5), Nanos::ZERO);
        assert_eq!(Nanos::MAX + Nanos::new(1), Nanos::MAX);
        assert_eq!(Nanos::from_secs(u64::MAX), Nanos::MAX);
        assert_eq!(Nanos::from_duration(Duration::MAX), Nanos::MAX);
        assert_eq!(Nanos::from(Duration::from_millis(7)), Nanos::from_millis(7));
    }

    #[test]
    fn secs_ceil_never_rounds_a_wait_down() {
        assert_eq!(Nanos::ZERO.as_secs_ceil(), 0);
        assert_eq!(Nanos::new(1).as_secs_ceil(), 1);
        assert_eq!(Nanos::from_secs(1).as_secs_ceil(), 1);
        assert_eq!((Nanos::from_secs(1) + Nanos::new(1)).as_secs_ceil(), 2);
        assert_eq!(Nanos::MAX.as_secs_ceil(), 18_446_744_074);
    }

    #[test]
    fn manual_clock_moves_both_ways_and_saturates() {
        let c = ManualClock::new(Nanos::new(10));
        assert_eq!(c.advance(Nanos::new(5)), Nanos::new(15));
        c.set(Nanos::new(2));
        assert_eq!(c.now(), Nanos::new(2));
        c.set(Nanos::MAX - Nanos::new(1));
        assert_eq!(c.advance(Nanos::new(10)), Nanos::MAX);
        assert_eq!(c.now(), Nanos::MAX);
    }
}
