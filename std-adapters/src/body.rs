//! 429 response bodies in the exact shapes of the five seed APIs (feature
//! `serde`).

use serde_json::{Value, json};

use crate::headers::{RateLimitInfo, retry_after_secs};
use crate::time_fmt::{rfc3339, unix_secs_after};
use tollgate_core::Nanos;

/// Whose 429 body to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BodyStyle {
    /// S4E: `{"status":"error","error":{"code":"rate_limited","message":..,"retry_after":n}}`.
    S4e,
    /// CyberVault: `{"error":{"code":"RATE_LIMIT_EXCEEDED",..,"retry_after":n,"quota_reset_at":ISO-8601}}`.
    Cybervault,
    /// The scanner API: `{"success":false,"error":{"code":"RATE_LIMIT_EXCEEDED",..,"retryAfter":n}}`.
    ScannerApi,
    /// BlockSecOps: `{"error":{"code":"RATE_LIMITED",..,"retry_after":n}}`.
    Blocksecops,
    /// Slim.io: `{"status":"error","error":{"code":"RATE_LIMIT_EXCEEDED","message":..}}`.
    SlimIo,
}

/// Why the request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A rate limit: retry after the wait in `info`.
    Rate(RateLimitInfo),
    /// A concurrency limit (BlockSecOps `CONCURRENT_LIMIT`).
    Concurrency {
        /// Requests in flight (`current_scans`).
        current: u32,
        /// The limit (`max_scans`).
        max: u32,
    },
}

/// The 429 body for `refusal` in `style`, with `now_unix` the current Unix
/// time (CyberVault's `quota_reset_at`).
///
/// ```
/// use tollgate::body::{body, BodyStyle, Refusal};
/// use tollgate::headers::RateLimitInfo;
/// use tollgate::Nanos;
///
/// let info = RateLimitInfo {
///     limit: 100,
///     remaining: 0,
///     reset_after: Nanos::from_secs(60),
///     retry_after: Some(Nanos::from_secs(23)),
///     refused: true,
///     window: Nanos::from_secs(60),
///     used_percent: None,
/// };
/// let b = body(BodyStyle::S4e, &Refusal::Rate(info), Nanos::ZERO);
/// assert_eq!(
///     b.to_string(),
///     r#"{"error":{"code":"rate_limited","message":"Rate limit exceeded. Retry after 23 seconds.","retry_after":23},"status":"error"}"#
/// );
/// ```
pub fn body(style: BodyStyle, refusal: &Refusal, now_unix: Nanos) -> Value {
    let (wait, reset_after) = match refusal {
        Refusal::Rate(info) => (
            // The headers' `Retry-After` (`RateLimitInfo::retry_after_secs`):
            // the exact wait rounded up, at least 1; for a refusal no wait
            // can cure, the time until the limit is whole again.
            retry_after_secs(info.retry_after.unwrap_or(info.reset_after)),
            info.reset_after,
        ),
        Refusal::Concurrency { current, max } => {
            if style == BodyStyle::Blocksecops {
                return json!({
                    "error": {
                        "code": "CONCURRENT_LIMIT",
                        "message": "Maximum concurrent scans reached. Please wait for a scan to complete.",
                        "current_scans": current,
                        "max_scans": max,
                    }
                });
            }
            // The other pages define no concurrency body: their rate-limit
            // body. No wait can be promised (a slot frees when a request
            // ends); announce the shortest sensible one, never 0.
            (1, Nanos::ZERO)
        }
    };
    match style {
        BodyStyle::S4e => json!({
            "status": "error",
            "error": {
                "code": "rate_limited",
                "message": format!("Rate limit exceeded. Retry after {wait} seconds."),
                "retry_after": wait,
            }
        }),
        BodyStyle::Cybervault => json!({
            "error": {
                "code": "RATE_LIMIT_EXCEEDED",
                "message": "Request quota exhausted. Please retry after the specified window.",
                "retry_after": wait,
                "quota_reset_at": rfc3339(unix_secs_after(now_unix, reset_after)),
            }
        }),
        BodyStyle::ScannerApi => json!({
            "success": false,
            "error": {
                "code": "RATE_LIMIT_EXCEEDED",
                "message": "Too many requests. Please try again later.",
                "retryAfter": wait,
            }
        }),
        BodyStyle::Blocksecops => json!({
            "error": {
                "code": "RATE_LIMITED",
                "message": format!("Rate limit exceeded. Please retry after {wait} seconds."),
                "retry_after": wait,
            }
        }),
        BodyStyle::SlimIo => json!({
            "status": "error",
            "error": {
                "code": "RATE_LIMIT_EXCEEDED",
                "message": "Rate limit exceeded. Please retry later.",
            }
        }),
    }
}
