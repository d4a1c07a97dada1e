//! The rate-limit headers of a refunded response over HTTP (found by
//! review: a refunded response of a request with no limit of its own lost
//! every header it had, because the layer handed the admission's headers out
//! before the refund and the refund had none of its own to render).

mod http_common;

use http_common::{run, send, start};

/// `/api/assets` is in a quota class with no limit: its responses report the
/// plan's general window as it stands; 304 is refunded.
const UNLIMITED_CLASS_WITH_REFUNDS: &str = r#"
name = "refund-unlimited"
refund_status = [304]
[response]
headers = "x-ratelimit"
body = "s4e"
[plans.standard]
limits = [
    { per = "minute", limit = 10 },
    { class = "cached", per = "minute", limit = "unlimited" },
]
[[endpoints]]
method = "GET"
path = "/api/assets"
class = "cached"
"#;

#[test]
fn a_refunded_response_without_a_window_of_its_own_keeps_its_headers() {
    run(async {
        let s = start(UNLIMITED_CLASS_WITH_REFUNDS, |l| l).await;
        let h = [("x-api-key", "standard-ann")];
        let ok = send(s.addr, "GET", "/api/assets", &h).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("x-ratelimit-limit"), "10", "{ok:?}");

        let h304 = [("x-api-key", "standard-ann"), ("if-none-match", "\"v1\"")];
        let not_modified = send(s.addr, "GET", "/api/assets", &h304).await;
        assert_eq!(not_modified.status, 304);
        assert_eq!(
            not_modified.rate_headers(),
            ok.rate_headers(),
            "the 304 lost its rate-limit headers: {not_modified:?}"
        );
    });
}
