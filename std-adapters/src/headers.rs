//! Rate-limit response headers: `Retry-After`, `X-RateLimit-*`, the IETF
//! `RateLimit` / `RateLimit-Policy` fields, `X-RateLimit-Window` and an
//! opt-in `Warning`, in the styles the five seed APIs use.
//!
//! Rendering gives plain `(name, value)` pairs; with the `http` feature
//! `write_headers` puts them into an `http::HeaderMap`.

use tollgate_core::{Decision, Nanos};

use crate::time_fmt::{http_date, unix_secs_after};

/// What a response tells the client about the limit that binds.
///
/// With several windows checked together ([`All`](crate::All)), build it
/// from the member that binds ([`AllDecision::member`](crate::AllDecision))
/// alone: its limit and window, the decision's `remaining` (the binding
/// member's, the smallest), and **that member's own reset**, read with its
/// `peek` — not the combined decision's `reset_after`, which is the
/// *largest* of all members' (under a binding minute, the day's). Then
/// `Limit`, `Remaining` and `Reset` all describe the one window:
///
/// ```
/// use std::num::NonZeroU32;
/// use tollgate::headers::RateLimitInfo;
/// use tollgate::{All, Gcra, Nanos, Quota};
///
/// let nz = |n| NonZeroU32::new(n).unwrap();
/// let limits = All((
///     Gcra::new(Quota::per_minute(nz(60))),
///     Gcra::new(Quota::per_day(nz(10_000))),
/// ));
/// let now = Nanos::ZERO;
/// let d = limits.check_all(now, 1);
/// assert_eq!(d.member, 0); // the minute binds
/// // The binding member's own state and window.
/// let (binding, window) = match d.member {
///     0 => (limits.0.0.peek(now), Nanos::from_secs(60)),
///     _ => (limits.0.1.peek(now), Nanos::from_secs(86_400)),
/// };
/// let mut info = RateLimitInfo::new(&d.decision, binding.limit, window);
/// info.reset_after = binding.reset_after;
/// assert_eq!((info.limit, info.remaining), (60, 59));
/// // Full again in 1 s (one request of 60 a minute), the minute's reset;
/// // the combined decision's is the day's 8.64 s.
/// assert_eq!(info.reset_after, Nanos::from_secs(1));
/// assert_eq!(
///     RateLimitInfo::new(&d.decision, 60, window).reset_after,
///     Nanos::from_millis(8_640)
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// The limit of the binding window (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests left, never above `limit` (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Time until the limit is fully available again.
    pub reset_after: Nanos,
    /// Set on a refusal that a retry can cure: when to retry.
    pub retry_after: Option<Nanos>,
    /// Whether the request was refused (429).
    pub refused: bool,
    /// The window length, for `RateLimit-Policy` (`w=`).
    pub window: Nanos,
    /// The share of the quota used, in percent, for `Warning`, when it is
    /// not `(limit - remaining) / limit`: the most-used window of a
    /// decision over several (an hour 85 % used while the minute that binds
    /// is not), or a GCRA whose `remaining` counts its burst. `None`: from
    /// `limit` and `remaining`.
    pub used_percent: Option<u32>,
}

impl RateLimitInfo {
    /// From a limiter's decision and the limit and window it enforces.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tollgate::headers::RateLimitInfo;
    /// use tollgate::{Gcra, Nanos, Quota};
    ///
    /// let g = Gcra::new(Quota::per_minute(NonZeroU32::new(100).unwrap()));
    /// let d = g.check(Nanos::ZERO);
    /// let info = RateLimitInfo::new(&d, 100, Nanos::from_secs(60));
    /// assert_eq!((info.remaining, info.refused), (99, false));
    /// ```
    pub fn new(decision: &Decision, limit: u32, window: Nanos) -> RateLimitInfo {
        let (remaining, reset_after, retry_after, refused) = match *decision {
            Decision::Allowed {
                remaining,
                reset_after,
            } => (remaining, reset_after, None, false),
            Decision::Denied {
                retry_after,
                remaining,
                reset_after,
            } => (remaining, reset_after, Some(retry_after), true),
            Decision::ExceedsCapacity { .. } => (0, Nanos::ZERO, None, true),
        };
        RateLimitInfo {
            limit,
            remaining: remaining.min(limit),
            reset_after,
            retry_after,
            refused,
            window,
            used_percent: None,
        }
    }

    /// The whole seconds of its `Retry-After`: the exact wait rounded up,
    /// at least 1 ([`retry_after_secs`]). A refusal with no wait to state
    /// (one no wait can cure: the cost is above the capacity) announces the
    /// time until the limit is whole again, still at least 1 — every
    /// refusal has one, and the 429 body says the same. `None` when admitted
    /// with no wait to state.
    ///
    /// ```
    /// use tollgate::headers::RateLimitInfo;
    /// use tollgate::{Decision, Nanos};
    ///
    /// let over = Decision::ExceedsCapacity { cost: 9, capacity: 5 };
    /// let info = RateLimitInfo::new(&over, 5, Nanos::from_secs(60));
    /// assert_eq!(info.retry_after_secs(), Some(1));
    /// let denied = Decision::Denied {
    ///     retry_after: Nanos::from_millis(1_500),
    ///     remaining: 0,
    ///     reset_after: Nanos::from_secs(60),
    /// };
    /// assert_eq!(RateLimitInfo::new(&denied, 5, Nanos::from_secs(60)).retry_after_secs(), Some(2));
    /// ```
    pub fn retry_after_secs(&self) -> Option<u64> {
        match (self.retry_after, self.refused) {
            (Some(wait), _) => Some(retry_after_secs(wait)),
            (None, true) => Some(retry_after_secs(self.reset_after)),
            (None, false) => None,
        }
    }
}

/// `Retry-After` in whole seconds: the exact wait rounded **up**, and at
/// least 1, so a client that waits exactly that long is not refused again
/// and never sees 0.
///
/// ```
/// use tollgate::headers::retry_after_secs;
/// use tollgate::Nanos;
///
/// assert_eq!(retry_after_secs(Nanos::new(1)), 1);
/// assert_eq!(retry_after_secs(Nanos::from_millis(22_001)), 23);
/// assert_eq!(retry_after_secs(Nanos::ZERO), 1);
/// ```
pub fn retry_after_secs(retry_after: Nanos) -> u64 {
    retry_after.as_secs_ceil().max(1)
}

/// How `X-RateLimit-Reset` is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResetFormat {
    /// A Unix timestamp in seconds (every seed page).
    #[default]
    UnixSeconds,
    /// Seconds from now.
    DeltaSeconds,
}

/// How `Retry-After` is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetryAfterFormat {
    /// Whole seconds (every seed page).
    #[default]
    Seconds,
    /// An HTTP date.
    HttpDate,
}

/// Which headers a policy sends.
///
/// ```
/// use tollgate::headers::HeaderStyle;
///
/// let s4e = HeaderStyle::x_ratelimit();
/// let cybervault = HeaderStyle::x_ratelimit()
///     .with_window_name("sliding_60s")
///     .with_warning_at(80);
/// let slim_io = HeaderStyle::none();
/// assert!(slim_io.retry_after.is_none());
/// # let _ = (s4e, cybervault);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderStyle {
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`.
    pub x_ratelimit: bool,
    /// How `X-RateLimit-Reset` is written.
    pub reset: ResetFormat,
    /// `X-RateLimit-Window: <name>` (CyberVault: `sliding_60s`); `{window}`
    /// in it stands for the reported window's length in seconds.
    pub window_name: Option<String>,
    /// The IETF `RateLimit-Policy` and `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers) under this policy name.
    pub ietf_policy: Option<String>,
    /// `Warning: 299 - "Rate Limit" "N% of quota consumed"` once at least
    /// this percentage is used (CyberVault: 80). RFC 9111 obsoletes
    /// `Warning`; it is off unless asked for.
    pub warning_percent: Option<u8>,
    /// `Retry-After` in this form whenever the rendered decision carries a
    /// wait (a refusal); `None`: never. Render a refusal's headers only for
    /// its 429 (HTTP defines `Retry-After` on 429 and 503 responses).
    pub retry_after: Option<RetryAfterFormat>,
}

impl HeaderStyle {
    /// No headers at all (Slim.io).
    pub fn none() -> HeaderStyle {
        HeaderStyle {
            x_ratelimit: false,
            reset: ResetFormat::UnixSeconds,
            window_name: None,
            ietf_policy: None,
            warning_percent: None,
            retry_after: None,
        }
    }

    /// `X-RateLimit-Limit/Remaining/Reset` (Unix seconds) and `Retry-After`
    /// in seconds: S4E, the scanner API, BlockSecOps.
    pub fn x_ratelimit() -> HeaderStyle {
        HeaderStyle {
            x_ratelimit: true,
            retry_after: Some(RetryAfterFormat::Seconds),
            ..HeaderStyle::none()
        }
    }

    /// Adds `X-RateLimit-Window: name`. `{window}` in `name` is replaced by
    /// the length in seconds of the window the headers report (the one that
    /// binds), so `"sliding_{window}s"` says `sliding_60s` while the minute
    /// binds and `sliding_3600s` when the hour does — Limit, Remaining,
    /// Reset and Window then always describe one window.
    ///
    /// Characters outside printable ASCII (control characters such as CR and
    /// LF, non-ASCII) are dropped, so the value is always a valid header
    /// value.
    ///
    /// ```
    /// use tollgate::headers::{HeaderStyle, RateLimitInfo};
    /// use tollgate::Nanos;
    ///
    /// let h = HeaderStyle::x_ratelimit().with_window_name("sliding_60s\r\nX-Evil: 1");
    /// assert_eq!(h.window_name.as_deref(), Some("sliding_60sX-Evil: 1"));
    ///
    /// let h = HeaderStyle::x_ratelimit().with_window_name("sliding_{window}s");
    /// let hour = RateLimitInfo {
    ///     limit: 1000,
    ///     remaining: 10,
    ///     reset_after: Nanos::from_secs(600),
    ///     retry_after: None,
    ///     refused: false,
    ///     window: Nanos::from_secs(3600),
    ///     used_percent: None,
    /// };
    /// let out = h.render(&hour, Nanos::from_secs(1_700_000_000));
    /// assert!(out.contains(&("X-RateLimit-Window", "sliding_3600s".to_string())));
    /// ```
    pub fn with_window_name(mut self, name: &str) -> HeaderStyle {
        self.window_name = Some(name.chars().filter(|c| (' '..='~').contains(c)).collect());
        self
    }

    /// Adds the `Warning` header from `percent` % used.
    pub fn with_warning_at(mut self, percent: u8) -> HeaderStyle {
        self.warning_percent = Some(percent.min(100));
        self
    }

    /// Adds the IETF `RateLimit-Policy` / `RateLimit` fields.
    pub fn with_ietf(mut self, policy_name: &str) -> HeaderStyle {
        self.ietf_policy = Some(policy_name.to_owned());
        self
    }

    /// The headers for `info`, with `now_unix` the current Unix time (for
    /// `X-RateLimit-Reset` timestamps and HTTP dates).
    ///
    /// ```
    /// use tollgate::headers::{HeaderStyle, RateLimitInfo};
    /// use tollgate::Nanos;
    ///
    /// let info = RateLimitInfo {
    ///     limit: 100,
    ///     remaining: 0,
    ///     reset_after: Nanos::from_secs(60),
    ///     retry_after: Some(Nanos::from_millis(22_400)),
    ///     refused: true,
    ///     window: Nanos::from_secs(60),
    ///     used_percent: None,
    /// };
    /// let h = HeaderStyle::x_ratelimit().render(&info, Nanos::from_secs(1_714_305_600));
    /// assert_eq!(
    ///     h,
    ///     [
    ///         ("X-RateLimit-Limit", "100".to_string()),
    ///         ("X-RateLimit-Remaining", "0".to_string()),
    ///         ("X-RateLimit-Reset", "1714305660".to_string()),
    ///         ("Retry-After", "23".to_string()),
    ///     ]
    /// );
    /// ```
    pub fn render(&self, info: &RateLimitInfo, now_unix: Nanos) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(8);
        let remaining = info.remaining.min(info.limit);
        let reset_delta = info.reset_after.as_secs_ceil();
        if self.x_ratelimit {
            out.push(("X-RateLimit-Limit", info.limit.to_string()));
            out.push(("X-RateLimit-Remaining", remaining.to_string()));
            let reset = match self.reset {
                ResetFormat::UnixSeconds => unix_secs_after(now_unix, info.reset_after),
                ResetFormat::DeltaSeconds => reset_delta,
            };
            out.push(("X-RateLimit-Reset", reset.to_string()));
        }
        if let Some(name) = &self.window_name {
            let secs = info.window.as_secs_ceil().to_string();
            out.push(("X-RateLimit-Window", name.replace("{window}", &secs)));
        }
        if let Some(name) = &self.ietf_policy {
            let name = sf_string(name);
            let w = info.window.as_secs_ceil();
            out.push(("RateLimit-Policy", format!("{name};q={};w={w}", info.limit)));
            out.push(("RateLimit", format!("{name};r={remaining};t={reset_delta}")));
        }
        if let Some(threshold) = self.warning_percent {
            // The share used, rounded down (for a whole threshold, comparing
            // the rounded share is exact: ⌊a / b⌋ >= t ⇔ a >= t × b).
            let pct = match info.used_percent {
                Some(p) => Some(u64::from(p.min(100))),
                None => {
                    let used = u64::from(info.limit - remaining);
                    let limit = u64::from(info.limit);
                    (limit > 0).then(|| used * 100 / limit)
                }
            };
            if let Some(pct) = pct.filter(|&p| p >= u64::from(threshold)) {
                out.push((
                    "Warning",
                    format!("299 - \"Rate Limit\" \"{pct}% of quota consumed\""),
                ));
            }
        }
        if let (Some(format), Some(secs)) = (self.retry_after, info.retry_after_secs()) {
            let value = match format {
                RetryAfterFormat::Seconds => secs.to_string(),
                RetryAfterFormat::HttpDate => {
                    http_date(now_unix.as_secs_ceil().saturating_add(secs))
                }
            };
            out.push(("Retry-After", value));
        }
        out
    }
}

/// A structured-field string (`"name"`), with `\` and `"` escaped and
/// non-printable characters dropped, so a policy name can never break the
/// header.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Writes rendered headers into an `http::HeaderMap` (feature `http`).
///
/// ```
/// use tollgate::headers::{write_headers, HeaderStyle, RateLimitInfo};
/// use tollgate::Nanos;
///
/// let info = RateLimitInfo {
///     limit: 60,
///     remaining: 45,
///     reset_after: Nanos::from_secs(20),
///     retry_after: None,
///     refused: false,
///     window: Nanos::from_secs(60),
///     used_percent: None,
/// };
/// let mut map = http::HeaderMap::new();
/// write_headers(&mut map, &HeaderStyle::x_ratelimit().render(&info, Nanos::ZERO));
/// assert_eq!(map["x-ratelimit-remaining"], "45");
/// ```
#[cfg(feature = "http")]
pub fn write_headers(map: &mut http::HeaderMap, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        // Names are fixed ASCII tokens; values are built from digits and
        // printable ASCII above, so neither conversion can fail.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            map.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(limit: u32, remaining: u32, refused: bool) -> RateLimitInfo {
        RateLimitInfo {
            limit,
            remaining,
            reset_after: Nanos::from_secs(30),
            retry_after: refused.then(|| Nanos::from_secs(30)),
            refused,
            window: Nanos::from_secs(60),
            used_percent: None,
        }
    }

    #[test]
    fn cybervault_warning_and_window() {
        let style = HeaderStyle::x_ratelimit()
            .with_window_name("sliding_60s")
            .with_warning_at(80);
        let h = style.render(&info(300, 45, false), Nanos::from_secs(1_709_827_170));
        assert!(h.contains(&("X-RateLimit-Window", "sliding_60s".into())));
        assert!(h.contains(&("X-RateLimit-Reset", "1709827200".into())));
        assert!(h.contains(&(
            "Warning",
            "299 - \"Rate Limit\" \"85% of quota consumed\"".into()
        )));
        // 79 % used: no warning; no Retry-After on a 200.
        let h = style.render(&info(100, 21, false), Nanos::ZERO);
        assert!(
            h.iter()
                .all(|(n, _)| *n != "Warning" && *n != "Retry-After")
        );
    }

    #[test]
    fn none_is_empty_and_ietf_fields() {
        assert!(
            HeaderStyle::none()
                .render(&info(1, 0, true), Nanos::ZERO)
                .is_empty()
        );
        let h = HeaderStyle::none()
            .with_ietf("per-minute")
            .render(&info(100, 42, false), Nanos::ZERO);
        assert_eq!(
            h,
            [
                ("RateLimit-Policy", "\"per-minute\";q=100;w=60".to_string()),
                ("RateLimit", "\"per-minute\";r=42;t=30".to_string()),
            ]
        );
        assert_eq!(sf_string("a\"b\\c\n"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn remaining_never_exceeds_limit_and_exceeds_capacity_has_no_retry() {
        let d = Decision::ExceedsCapacity {
            cost: 9,
            capacity: 5,
        };
        let i = RateLimitInfo::new(&d, 5, Nanos::from_secs(1));
        assert!(i.refused && i.retry_after.is_none());
        let i = RateLimitInfo::new(
            &Decision::Allowed {
                remaining: 10,
                reset_after: Nanos::ZERO,
            },
            5,
            Nanos::from_secs(1),
        );
        assert_eq!(i.remaining, 5);
    }

    #[test]
    fn retry_after_as_http_date() {
        let mut style = HeaderStyle::x_ratelimit();
        style.retry_after = Some(RetryAfterFormat::HttpDate);
        let h = style.render(&info(10, 0, true), Nanos::from_secs(784_111_747));
        assert!(h.contains(&("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT".into())));
    }
}
