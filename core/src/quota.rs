//! [`Quota`]: how many requests per period, with what burst — validated once.

use core::fmt;
use core::num::NonZeroU32;
use core::time::Duration;

use crate::time::Nanos;

/// The largest capacity (burst × emission interval) a quota may hold:
/// 2^63 ns, about 292 years.
///
/// Keeping capacity at or below 2^63 means `cost × interval` never overflows
/// for any admissible cost, so the hot path needs no overflow checks beyond one
/// `checked_add` of the arrival time.
pub const MAX_CAPACITY: Nanos = Nanos::new(1 << 63);

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A rate limit: `limit` cost units per `period`, allowing bursts of up to
/// `burst` units at once (by default `burst == limit`).
///
/// A `Quota` is validated when it is built, so the limiters' hot paths never
/// check it again. Internally it is the GCRA pair (emission interval `T`,
/// capacity `burst × T`).
///
/// # Rounding
///
/// The emission interval is `period / limit` in whole nanoseconds, rounded
/// **up**, so a quota can only ever be stricter than asked, never looser. The
/// relative error is below `1 / T`: zero for every per-second rate that divides
/// 10^9 and every per-minute/hour/day rate that divides the period, and below
/// 0.1 % for anything up to 10^6 per second. [`Quota::emission_interval`]
/// shows the value in force.
///
/// # Examples
///
/// ```
/// use core::num::NonZeroU32;
/// use core::time::Duration;
/// use tollgate_core::{Nanos, Quota};
///
/// const TEN: NonZeroU32 = NonZeroU32::new(10).unwrap();
///
/// // 10 per second, bursts of 10 (the default).
/// let q = Quota::per_second(TEN);
/// assert_eq!(q.emission_interval(), Nanos::from_millis(100));
/// assert_eq!(q.burst().get(), 10);
///
/// // 600 per hour, but at most 5 at once.
/// let q = Quota::per_hour(NonZeroU32::new(600).unwrap())
///     .with_burst(NonZeroU32::new(5).unwrap());
/// assert_eq!(q.emission_interval(), Nanos::from_secs(6));
///
/// // Any period: 3 per 10 seconds.
/// let q = Quota::new(NonZeroU32::new(3).unwrap(), Duration::from_secs(10)).unwrap();
/// assert_eq!(q.emission_interval(), Nanos::new(3_333_333_334)); // rounded up
///
/// // Bad input is an error, not a panic.
/// assert!(Quota::new(TEN, Duration::ZERO).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// `T`: nanoseconds per cost unit, `1 ..= MAX_CAPACITY`.
    emission: u64,
    /// Effective burst, `burst × emission <= MAX_CAPACITY`.
    burst: NonZeroU32,
    /// `burst × emission`.
    capacity: u64,
    /// The limit as asked (for headers: `X-RateLimit-Limit`).
    limit: NonZeroU32,
    /// The period as asked, in nanoseconds.
    period: u64,
    /// `floor((2^64 - 1) / emission)`: turns `x / emission` into a multiply
    /// (see [`Quota::units_in`]).
    recip: u64,
}

/// Why a [`Quota`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// The period was zero.
    ZeroPeriod,
    /// More than one unit per nanosecond was asked for.
    RateTooHigh {
        /// The requested limit.
        limit: u32,
        /// The requested period in nanoseconds.
        period_nanos: u64,
    },
    /// The emission interval (`period / limit`) exceeds [`MAX_CAPACITY`]
    /// (about 292 years per unit).
    PeriodTooLong,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::ZeroPeriod => f.write_str("quota period must be greater than zero"),
            QuotaError::RateTooHigh {
                limit,
                period_nanos,
            } => write!(
                f,
                "quota of {limit} per {period_nanos} ns is more than one per nanosecond; \
                 use a longer period or a smaller limit (at most 10^9 per second)"
            ),
            QuotaError::PeriodTooLong => f.write_str(
                "quota period divided by limit exceeds 2^63 ns (about 292 years); \
                 use a shorter period or a larger limit",
            ),
        }
    }
}

impl core::error::Error for QuotaError {}

impl Quota {
    /// `limit` per `period`, burst = limit.
    ///
    /// Errors when the period is zero, when the rate exceeds one unit per
    /// nanosecond (10^9 per second), or when a single unit would take longer
    /// than 2^63 ns.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use core::time::Duration;
    /// use tollgate_core::{Quota, QuotaError};
    ///
    /// let five = NonZeroU32::new(5).unwrap();
    /// assert!(Quota::new(five, Duration::from_secs(1)).is_ok());
    /// assert_eq!(Quota::new(five, Duration::ZERO), Err(QuotaError::ZeroPeriod));
    /// assert!(matches!(
    ///     Quota::new(five, Duration::from_nanos(4)),
    ///     Err(QuotaError::RateTooHigh { .. })
    /// ));
    /// ```
    pub const fn new(limit: NonZeroU32, period: Duration) -> Result<Quota, QuotaError> {
        // The division is done on the exact period (u128): capping the period
        // at u64::MAX ns first would make periods beyond ~584 years yield an
        // emission interval shorter than asked, i.e. a looser limit.
        let exact = period.as_nanos();
        let period = Nanos::from_duration(period).as_u64(); // saturated, for display
        if exact == 0 {
            return Err(QuotaError::ZeroPeriod);
        }
        if (limit.get() as u128) > exact {
            return Err(QuotaError::RateTooHigh {
                limit: limit.get(),
                period_nanos: period,
            });
        }
        let emission = exact.div_ceil(limit.get() as u128);
        if emission > MAX_CAPACITY.as_u64() as u128 {
            return Err(QuotaError::PeriodTooLong);
        }
        // emission <= MAX_CAPACITY = 2^63 (checked above): fits in a u64.
        #[allow(clippy::cast_possible_truncation)]
        let emission = emission as u64;
        Ok(Quota::from_parts(limit, period, emission, limit))
    }

    /// `limit` per second, burst = limit.
    ///
    /// Rates above 10^9 per second (one per nanosecond, the resolution of
    /// [`Nanos`]) are clamped to 10^9 per second — stricter, never looser. Use
    /// [`Quota::new`] to get an error instead.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota};
    ///
    /// let q = Quota::per_second(NonZeroU32::new(1_000).unwrap());
    /// assert_eq!(q.emission_interval(), Nanos::from_millis(1));
    /// ```
    pub const fn per_second(limit: NonZeroU32) -> Quota {
        Quota::per_period_clamped(limit, NANOS_PER_SEC)
    }

    /// `limit` per minute, burst = limit.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota};
    ///
    /// let q = Quota::per_minute(NonZeroU32::new(60).unwrap());
    /// assert_eq!(q.emission_interval(), Nanos::from_secs(1));
    /// ```
    pub const fn per_minute(limit: NonZeroU32) -> Quota {
        Quota::per_period_clamped(limit, 60 * NANOS_PER_SEC)
    }

    /// `limit` per hour, burst = limit.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota};
    ///
    /// let q = Quota::per_hour(NonZeroU32::new(3_600).unwrap());
    /// assert_eq!(q.emission_interval(), Nanos::from_secs(1));
    /// ```
    pub const fn per_hour(limit: NonZeroU32) -> Quota {
        Quota::per_period_clamped(limit, 3_600 * NANOS_PER_SEC)
    }

    /// `limit` per day (86 400 s), burst = limit.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::{Nanos, Quota};
    ///
    /// let q = Quota::per_day(NonZeroU32::new(1).unwrap());
    /// assert_eq!(q.emission_interval(), Nanos::from_secs(86_400));
    /// ```
    pub const fn per_day(limit: NonZeroU32) -> Quota {
        Quota::per_period_clamped(limit, 86_400 * NANOS_PER_SEC)
    }

    /// `period` must be at least one second (so `emission <= period` is far
    /// below `MAX_CAPACITY`).
    const fn per_period_clamped(limit: NonZeroU32, period: u64) -> Quota {
        let emission = period.div_ceil(limit.get() as u64);
        // emission >= 1 because period >= 1 s > 0; emission <= period < 2^63.
        Quota::from_parts(limit, period, emission, limit)
    }

    /// Builds the quota; clamps the burst so that capacity <= MAX_CAPACITY.
    /// Requires `1 <= emission <= MAX_CAPACITY`.
    const fn from_parts(limit: NonZeroU32, period: u64, emission: u64, burst: NonZeroU32) -> Quota {
        let max_burst = MAX_CAPACITY.as_u64() / emission; // >= 1
        let burst = if (burst.get() as u64) > max_burst {
            // max_burst < burst <= u32::MAX, so it fits in u32 and is >= 1
            // (try_from is not const).
            #[allow(clippy::cast_possible_truncation)]
            match NonZeroU32::new(max_burst as u32) {
                Some(b) => b,
                None => NonZeroU32::MIN,
            }
        } else {
            burst
        };
        Quota {
            emission,
            burst,
            capacity: burst.get() as u64 * emission,
            limit,
            period,
            recip: u64::MAX / emission,
        }
    }

    /// The same rate with a different burst: how many units may be admitted
    /// at once from a full bucket.
    ///
    /// The burst is clamped so that the bucket holds at most [`MAX_CAPACITY`]
    /// (2^63 ns ≈ 292 years) of emission time — e.g. at most 106 751 for one
    /// per day. [`Quota::burst`] reports the value in force.
    ///
    /// ```
    /// use core::num::NonZeroU32;
    /// use tollgate_core::Quota;
    ///
    /// let q = Quota::per_minute(NonZeroU32::new(100).unwrap())
    ///     .with_burst(NonZeroU32::new(20).unwrap());
    /// assert_eq!(q.burst().get(), 20);
    /// assert_eq!(q.limit().get(), 100);
    ///
    /// let huge = Quota::per_day(NonZeroU32::MIN).with_burst(NonZeroU32::MAX);
    /// assert_eq!(huge.burst().get(), 106_751);
    /// ```
    pub const fn with_burst(self, burst: NonZeroU32) -> Quota {
        Quota::from_parts(self.limit, self.period, self.emission, burst)
    }

    /// The limit as given (`X-RateLimit-Limit`).
    #[inline]
    pub const fn limit(&self) -> NonZeroU32 {
        self.limit
    }

    /// The period as given, in nanoseconds (saturated at `u64::MAX` ns, about
    /// 584 years; the emission interval is computed from the exact period).
    #[inline]
    pub const fn period(&self) -> Nanos {
        Nanos::new(self.period)
    }

    /// The burst in force: the most cost that can be admitted at one instant.
    #[inline]
    pub const fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// `T`, the time one cost unit occupies: `period / limit`, rounded up.
    #[inline]
    pub const fn emission_interval(&self) -> Nanos {
        Nanos::new(self.emission)
    }

    /// `burst × T`: how long a full bucket takes to refill from empty.
    #[inline]
    pub const fn capacity(&self) -> Nanos {
        Nanos::new(self.capacity)
    }

    /// `floor(ns / T)`: how many whole emission intervals fit in `ns`,
    /// without a hardware division (a 64-bit `div` costs 30–90 cycles on
    /// the x86 parts this runs on; this is two multiplies and a compare).
    ///
    /// With `M = floor((2^64 - 1) / T)`, `q = floor(ns × M / 2^64)` is the
    /// exact quotient or one less (`M` is below `2^64 / T` by less than 1,
    /// so `ns × M / 2^64` is below `ns / T` by less than `ns / 2^64 < 1`);
    /// one comparison corrects it. Tested against `/` in `core/tests/model.rs`.
    #[inline]
    pub(crate) const fn units_in(&self, ns: u64) -> u64 {
        // The high half of a u64 × u64 product fits a u64.
        #[allow(clippy::cast_possible_truncation)]
        let q = ((ns as u128 * self.recip as u128) >> 64) as u64;
        // q <= ns / T, so q × T <= ns: no underflow, no overflow.
        if ns - q * self.emission >= self.emission {
            q + 1
        } else {
            q
        }
    }

    #[inline]
    pub(crate) const fn emission_raw(&self) -> u64 {
        self.emission
    }

    #[inline]
    pub(crate) const fn capacity_raw(&self) -> u64 {
        self.capacity
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("limit", &self.limit)
            .field("period", &Nanos::new(self.period))
            .field("burst", &self.burst)
            .field("emission_interval", &Nanos::new(self.emission))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn emission_interval_rounds_up() {
        assert_eq!(Quota::per_second(nz(3)).emission_raw(), 333_333_334);
        assert_eq!(Quota::per_second(nz(1_000_000_000)).emission_raw(), 1);
        assert_eq!(Quota::per_day(nz(1)).emission_raw(), 86_400 * NANOS_PER_SEC);
    }

    #[test]
    fn per_second_clamps_beyond_one_per_nanosecond() {
        let q = Quota::per_second(NonZeroU32::MAX);
        assert_eq!(q.emission_raw(), 1);
        assert_eq!(q.limit(), NonZeroU32::MAX);
        assert_eq!(
            Quota::new(NonZeroU32::MAX, Duration::from_secs(1)),
            Err(QuotaError::RateTooHigh {
                limit: u32::MAX,
                period_nanos: NANOS_PER_SEC
            })
        );
    }

    #[test]
    fn extreme_periods() {
        assert_eq!(
            Quota::new(nz(1), Duration::MAX),
            Err(QuotaError::PeriodTooLong)
        );
        let q = Quota::new(nz(1), Duration::from_nanos(1 << 63)).unwrap();
        assert_eq!(q.capacity_raw(), 1 << 63);
        assert_eq!(q.with_burst(NonZeroU32::MAX).burst(), nz(1));
    }

    /// Periods beyond u64::MAX ns (~584 years) are divided exactly: capping
    /// the period first would give a shorter interval than asked (a looser
    /// limit). Found by review.
    #[test]
    fn periods_beyond_u64_nanos_are_divided_exactly() {
        const YEAR: u64 = 365 * 86_400;
        let q = Quota::new(nz(1000), Duration::from_secs(1000 * YEAR)).unwrap();
        assert_eq!(q.emission_raw(), YEAR * NANOS_PER_SEC);
        assert_eq!(q.period().as_u64(), u64::MAX);
        // Duration::MAX / u32::MAX ≈ 4.3e18 ns: fits, and is exact (rounded up).
        let q = Quota::new(NonZeroU32::MAX, Duration::MAX).unwrap();
        assert_eq!(
            q.emission_raw() as u128,
            Duration::MAX.as_nanos().div_ceil(u32::MAX as u128)
        );
        assert_eq!(
            Quota::new(nz(2), Duration::MAX),
            Err(QuotaError::PeriodTooLong)
        );
    }

    #[test]
    fn a_limiter_on_a_millennial_quota_denies_within_the_year() {
        const YEAR: u64 = 365 * 86_400;
        let q = Quota::new(nz(1000), Duration::from_secs(1000 * YEAR))
            .unwrap()
            .with_burst(nz(1));
        let g = crate::Gcra::new(q);
        assert!(g.check(Nanos::ZERO).is_allowed());
        assert!(!g.check(Nanos::from_secs(214 * 86_400)).is_allowed());
        assert!(g.check(Nanos::from_secs(YEAR)).is_allowed());
    }

    #[test]
    fn burst_is_clamped_to_max_capacity() {
        for q in [
            Quota::per_day(nz(1)),
            Quota::per_second(nz(1)),
            Quota::per_second(nz(1_000_000_000)),
            Quota::per_hour(NonZeroU32::MAX),
        ] {
            let b = q.with_burst(NonZeroU32::MAX);
            assert!(b.capacity_raw() <= MAX_CAPACITY.as_u64());
            assert_eq!(b.capacity_raw(), b.burst().get() as u64 * b.emission_raw());
            assert!(
                b.capacity_raw() + b.emission_raw() > MAX_CAPACITY.as_u64()
                    || b.burst() == NonZeroU32::MAX
            );
        }
    }

    #[test]
    fn units_in_is_exact_division() {
        use proptest::prelude::*;
        let check = |t: u64, ns: u64| {
            let q = Quota::new(NonZeroU32::MIN, Duration::from_nanos(t)).unwrap();
            assert_eq!(q.emission_raw(), t);
            assert_eq!(q.units_in(ns), ns / t, "{ns} / {t}");
        };
        for t in [1, 2, 3, 7, 1_000, 999_999_999, (1 << 63) - 1, 1 << 63] {
            for ns in [0, 1, t - 1, t, t + 1, u64::MAX - 1, u64::MAX] {
                check(t, ns);
            }
        }
        proptest!(|(t in 1u64..=1 << 63, ns in any::<u64>(), small in 1u64..=10_000)| {
            check(t, ns);
            check(small, ns);
        });
    }

    #[test]
    fn errors_say_what_to_change() {
        extern crate std;
        use std::string::ToString;
        assert!(
            QuotaError::ZeroPeriod
                .to_string()
                .contains("greater than zero")
        );
        assert!(
            QuotaError::PeriodTooLong
                .to_string()
                .contains("shorter period")
        );
    }
}
