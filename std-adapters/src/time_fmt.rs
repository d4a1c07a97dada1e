//! Unix seconds as calendar text: RFC 3339 / ISO-8601 UTC (`quota_reset_at`)
//! and the IMF-fixdate of HTTP (`Retry-After` as a date).
//!
//! Both formats have a four-digit year, so times after
//! 9999-12-31T23:59:59Z ([`MAX_UNIX_SECS`]) are written as that instant, the
//! last one either can express: a valid date a little early rather than an
//! invalid one (reached only by waits of thousands of years).

use tollgate_core::Nanos;

/// The Unix time, in whole seconds rounded up (never announced early), that
/// lies `after` past `now_unix`. Summed in `u128`: adding in [`Nanos`] would
/// saturate at `Nanos::MAX` (2554-07-21), writing a later reset or retry
/// time as that earlier date.
pub(crate) fn unix_secs_after(now_unix: Nanos, after: Nanos) -> u64 {
    let sum = u128::from(now_unix.as_u64()) + u128::from(after.as_u64());
    // At most 2 × u64::MAX / 10^9, far below u64::MAX: never saturates.
    u64::try_from(sum.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// 9999-12-31T23:59:59Z, the last second with a four-digit year: later
/// times are written as this one.
pub const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// `(year, month 1-12, day 1-31)` of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, valid for every `u64` seconds value / 86400).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    weekday: usize,
}

fn civil(unix_secs: u64) -> Civil {
    let unix_secs = unix_secs.min(MAX_UNIX_SECS);
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    Civil {
        year,
        month,
        day,
        hour: rem / 3_600,
        minute: rem % 3_600 / 60,
        second: rem % 60,
        // 1970-01-01 was a Thursday.
        weekday: usize::try_from((days + 4) % 7).unwrap_or(0),
    }
}

/// `2024-03-15T14:30:00Z` for a Unix time in seconds (at most
/// [`MAX_UNIX_SECS`]; later times are written as that one).
///
/// ```
/// assert_eq!(tollgate::time_fmt::rfc3339(1_710_513_000), "2024-03-15T14:30:00Z");
/// assert_eq!(tollgate::time_fmt::rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(tollgate::time_fmt::rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
/// ```
pub fn rfc3339(unix_secs: u64) -> String {
    let c = civil(unix_secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// The HTTP date (`IMF-fixdate`, RFC 9110 §5.6.7) for a Unix time in seconds
/// (at most [`MAX_UNIX_SECS`]; later times are written as that one).
///
/// ```
/// assert_eq!(tollgate::time_fmt::http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
/// assert_eq!(tollgate::time_fmt::http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
/// ```
pub fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(unix_secs);
    let month = MONTHS[usize::try_from(c.month.saturating_sub(1)).unwrap_or(0) % 12];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday], c.day, month, c.year, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z"); // leap day
        assert_eq!(rfc3339(1_709_827_200), "2024-03-07T16:00:00Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_705_312_800), "Mon, 15 Jan 2024 10:00:00 GMT");
        // No panic at the end of u64 seconds (year ~5.8e11).
        let _ = (rfc3339(u64::MAX), http_date(u64::MAX));
    }

    /// RFC 3339 `date-fullyear = 4DIGIT`, RFC 9110 IMF-fixdate `year =
    /// 4DIGIT`: past 9999-12-31T23:59:59Z both printed a five-digit year
    /// (`10000-01-01T00:00:00Z`), neither format. They stop at that second.
    #[test]
    fn years_past_9999_are_clamped_to_the_last_four_digit_second() {
        assert_eq!(rfc3339(MAX_UNIX_SECS), "9999-12-31T23:59:59Z");
        assert_eq!(http_date(MAX_UNIX_SECS), "Fri, 31 Dec 9999 23:59:59 GMT");
        for t in [MAX_UNIX_SECS + 1, 253_402_300_800 + 86_400 * 366, u64::MAX] {
            assert_eq!(rfc3339(t), "9999-12-31T23:59:59Z", "{t}");
            assert_eq!(http_date(t), "Fri, 31 Dec 9999 23:59:59 GMT", "{t}");
        }
        // The shapes of both formats, for every clamped value.
        let s = rfc3339(u64::MAX);
        assert_eq!(
            (s.len(), s.find('-')),
            ("2024-03-15T14:30:00Z".len(), Some(4))
        );
        let d = http_date(u64::MAX);
        assert_eq!(d.len(), "Sun, 06 Nov 1994 08:49:37 GMT".len());
    }
}
