//! Who is calling: the API key, its plan, the client address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderName, Request, header};

use super::Caller;
use super::Lookup;
use super::hold::Subject;

/// Where [`RateLimitLayer`](super::RateLimitLayer) reads the API key.
///
/// ```
/// use tollgate::tower::KeyFrom;
/// let sources = [KeyFrom::Bearer, KeyFrom::header("x-api-key")];
/// assert_eq!(sources[1], KeyFrom::Header(http::HeaderName::from_static("x-api-key")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFrom {
    /// `Authorization: Bearer <key>` (the scheme in any case).
    Bearer,
    /// The whole value of a header, e.g. `X-API-Key: <key>`.
    Header(HeaderName),
}

impl KeyFrom {
    /// The default sources: `Authorization: Bearer`, then `X-API-Key`.
    pub(crate) const DEFAULT: [KeyFrom; 2] = [
        KeyFrom::Bearer,
        KeyFrom::Header(HeaderName::from_static("x-api-key")),
    ];

    /// The header `name` (`HeaderName`'s rules: lower-case token
    /// characters; other spellings are lower-cased).
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name (a programming error in a
    /// constant, like `HeaderName::from_static`).
    ///
    /// ```
    /// use tollgate::tower::KeyFrom;
    /// assert_eq!(KeyFrom::header("X-Api-Key"), KeyFrom::header("x-api-key"));
    /// ```
    pub fn header(name: &str) -> KeyFrom {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => KeyFrom::Header(n),
            Err(_) => panic!("KeyFrom::header: {name:?} is not a valid header name"),
        }
    }

    fn read<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let key = match self {
            KeyFrom::Bearer => {
                let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
                let (scheme, token) = v.split_once(' ')?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return None;
                }
                token.trim()
            }
            KeyFrom::Header(name) => headers.get(name)?.to_str().ok()?.trim(),
        };
        (!key.is_empty()).then_some(key)
    }
}

/// Reads the request's identity for the engine.
pub(crate) fn subject<B>(
    request: &Request<B>,
    keys: &[KeyFrom],
    lookup: Option<&Lookup>,
    forwarded_hops: usize,
) -> Subject {
    let headers = request.headers();
    let header_key = keys.iter().find_map(|k| k.read(headers));
    let from_auth = request.extensions().get::<Caller>();
    let caller = match from_auth {
        // An identity an auth layer validated needs no header at all.
        Some(c) if c.id.is_some() => Some(c.clone()),
        // A key whose caller is unknown goes to the engine without a plan:
        // it still passes exempt routes, and is refused (401) everywhere
        // else.
        _ => header_key.and_then(|k| match from_auth {
            Some(c) => Some(c.clone()),
            None => lookup.and_then(|f| f(k)),
        }),
    };
    let (key, plan, org) = match caller {
        // The caller's id, when it has one, is the budget's key: the header
        // read first may be one nobody validated (a made-up bearer token
        // next to the X-API-Key an auth layer checked).
        Some(c) => (
            c.id.or_else(|| header_key.map(str::to_owned)),
            Some(c.plan),
            c.org,
        ),
        None => (header_key.map(str::to_owned), None, None),
    };
    Subject {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        key,
        plan,
        org,
        ip: client_ip(request, forwarded_hops),
    }
}

/// The connection's peer address, as the server recorded it.
fn peer_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    let ext = request.extensions();
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    ext.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The client's address: the peer, or with `hops` trusted proxies the
/// `hops`-th `X-Forwarded-For` entry from the right. IPv4-mapped IPv6
/// addresses count as the IPv4 address.
pub(crate) fn client_ip<B>(request: &Request<B>, hops: usize) -> Option<IpAddr> {
    let peer = peer_ip(request);
    let forwarded = match hops {
        0 => None,
        n => nth_forwarded_from_right(request.headers(), n),
    };
    forwarded.or(peer).map(|ip| ip.to_canonical())
}

/// The `n`-th (1-based) `X-Forwarded-For` entry from the right, across all
/// the header's lines in order; `None` when there are fewer, or when that
/// entry is not readable as an address.
///
/// The lines are split as raw bytes and only the chosen entry is decoded:
/// whatever a client wrote left of it (even bytes that are no text) cannot
/// make the entry a trusted proxy appended unreadable.
fn nth_forwarded_from_right(headers: &HeaderMap, n: usize) -> Option<IpAddr> {
    let entry = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
        .nth(n.checked_sub(1)?)?;
    let entry = std::str::from_utf8(entry.trim_ascii()).ok()?;
    parse_entry(entry)
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`. An IPv6 zone
/// (`fe80::1%eth0`, `[fe80::1%25eth0]:80`: RFC 4007, RFC 6874) names the
/// proxy's link, not the client: it is dropped.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Some(ip) = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
    {
        return Some(ip);
    }
    // IPv6 in brackets without a port, or with a zone std does not read.
    let v6 = match s.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            let port = after.strip_prefix(':');
            (after.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_ok())).then_some(inner)?
        }
        None => s,
    };
    let addr = match v6.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() => addr,
        Some(_) => return None,
        None => v6,
    };
    addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], peer: Option<&str>) -> Request<()> {
        let mut b = Request::get("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = b.body(()).unwrap();
        if let Some(p) = peer {
            r.extensions_mut().insert(p.parse::<SocketAddr>().unwrap());
        }
        r
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted() {
        let r = req(&[("x-forwarded-for", "6.6.6.6")], Some("10.0.0.1:5000"));
        assert_eq!(client_ip(&r, 0), ip("10.0.0.1"));
        assert_eq!(client_ip(&r, 1), ip("6.6.6.6"));
    }

    #[test]
    fn trusted_hops_count_from_the_right_across_lines() {
        // The client wrote "1.1.1.1, 2.2.2.2"; proxy A appended the client's
        // real address 3.3.3.3, proxy B appended A's address.
        let r = req(
            &[
                ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
                ("x-forwarded-for", "3.3.3.3:4711, [2001:db8::1]:80"),
            ],
            Some("10.0.0.2:1"),
        );
        assert_eq!(client_ip(&r, 1), ip("2001:db8::1"));
        assert_eq!(client_ip(&r, 2), ip("3.3.3.3"));
        assert_eq!(client_ip(&r, 4), ip("1.1.1.1"));
        // Fewer entries than trusted hops, or junk: the peer.
        assert_eq!(client_ip(&r, 5), ip("10.0.0.2"));
        let junk = req(&[("x-forwarded-for", "unknown")], Some("10.0.0.3:1"));
        assert_eq!(client_ip(&junk, 1), ip("10.0.0.3"));
    }

    #[test]
    fn bytes_left_of_the_chosen_entry_are_never_decoded() {
        let mut r = req(&[], Some("10.0.0.4:1"));
        let xff = |v: &[u8]| http::HeaderValue::from_bytes(v).unwrap();
        // The client wrote a byte that is no text; the proxy appended 3.3.3.3.
        r.headers_mut()
            .append("x-forwarded-for", xff(b"1.1.1.1, \xff, 3.3.3.3"));
        assert_eq!(client_ip(&r, 1), ip("3.3.3.3"));
        // Across lines: the unreadable line is left of the chosen entry.
        r.headers_mut().append("x-forwarded-for", xff(b"4.4.4.4"));
        assert_eq!(client_ip(&r, 2), ip("3.3.3.3"));
        // The chosen entry itself unreadable: the peer, as before.
        assert_eq!(client_ip(&r, 3), ip("10.0.0.4"));
        assert_eq!(client_ip(&r, 4), ip("1.1.1.1"));
    }

    #[test]
    fn ipv6_entries_in_the_forms_proxies_write() {
        let at = |entry: &str| {
            let r = req(&[("x-forwarded-for", entry)], Some("10.0.0.5:1"));
            client_ip(&r, 1)
        };
        // With a port or without, bracketed or bare, any spelling: one client.
        for entry in [
            "2001:db8::1",
            "[2001:db8::1]",
            "[2001:db8::1]:4711",
            "2001:DB8:0::0001",
        ] {
            assert_eq!(at(entry), ip("2001:db8::1"), "{entry}");
        }
        // A zone (RFC 4007; `%25` in a URI, RFC 6874) says which of the
        // proxy's links the client is on, not who it is: dropped.
        for entry in [
            "fe80::1%eth0",
            "[fe80::1%eth0]",
            "[fe80::1%25eth0]:80",
            "fe80::1%4",
            "[fe80::1%4]:80",
        ] {
            assert_eq!(at(entry), ip("fe80::1"), "{entry}");
        }
        for entry in ["::ffff:1.2.3.4", "[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]:80"] {
            assert_eq!(at(entry), ip("1.2.3.4"), "{entry}");
        }
        // No address (RFC 7239's `unknown` and obfuscated names, broken
        // brackets, an IPv4 address in brackets, a bad port): the peer.
        for entry in [
            "unknown",
            "_hidden",
            "[2001:db8::1",
            "2001:db8::1]",
            "[2001:db8::1]:",
            "[2001:db8::1]:x",
            "[2001:db8::1]:70000",
            "[2001:db8::1]x",
            "[1.2.3.4]",
            "1.2.3.4%eth0",
            "fe80::1%",
            "[fe80::1%]:80",
        ] {
            assert_eq!(at(entry), ip("10.0.0.5"), "{entry}");
        }
        // `Forwarded` (RFC 7239) is not read: only `X-Forwarded-For` is
        // what the trusted proxies are said to append to.
        let r = req(
            &[("forwarded", "for=\"[2001:db8::1]:4711\"")],
            Some("10.0.0.5:1"),
        );
        assert_eq!(client_ip(&r, 1), ip("10.0.0.5"));
    }

    #[test]
    fn mapped_addresses_are_canonical_and_no_peer_is_none() {
        let r = req(&[], Some("[::ffff:127.0.0.1]:80"));
        assert_eq!(client_ip(&r, 0), ip("127.0.0.1"));
        assert_eq!(client_ip(&req(&[], None), 0), None);
    }

    #[test]
    fn keys_from_bearer_then_header() {
        let keys = KeyFrom::DEFAULT;
        let r = req(
            &[("authorization", "bearer  k1 "), ("x-api-key", "k2")],
            None,
        );
        assert_eq!(subject(&r, &keys, None, 0).key.as_deref(), Some("k1"));
        let r = req(&[("authorization", "Basic abc"), ("x-api-key", "k2")], None);
        assert_eq!(subject(&r, &keys, None, 0).key.as_deref(), Some("k2"));
        let r = req(&[("authorization", "Bearer "), ("x-api-key", "")], None);
        assert_eq!(subject(&r, &keys, None, 0).key, None);
    }

    #[test]
    fn caller_extension_wins_over_the_lookup() {
        let lookup = |k: &str| (k == "k1").then(|| Caller::new("free"));
        let mut r = req(&[("x-api-key", "k1")], None);
        assert_eq!(
            subject(&r, &KeyFrom::DEFAULT, Some(&lookup), 0)
                .plan
                .as_deref(),
            Some("free")
        );
        r.extensions_mut().insert(Caller::new("pro").org("acme"));
        let s = subject(&r, &KeyFrom::DEFAULT, Some(&lookup), 0);
        assert_eq!(
            (s.plan.as_deref(), s.org.as_deref()),
            (Some("pro"), Some("acme"))
        );
        let unknown = req(&[("x-api-key", "nope")], None);
        assert_eq!(
            subject(&unknown, &KeyFrom::DEFAULT, Some(&lookup), 0).plan,
            None
        );
    }

    #[test]
    fn an_authenticated_id_is_the_key() {
        let keys = KeyFrom::DEFAULT;
        let made_up = [("authorization", "Bearer made-up"), ("x-api-key", "k1")];
        // An auth layer validated X-API-Key: its id, not the made-up token.
        let mut r = req(&made_up, None);
        r.extensions_mut().insert(Caller::new("pro").id("k1"));
        let s = subject(&r, &keys, None, 0);
        assert_eq!(
            (s.key.as_deref(), s.plan.as_deref()),
            (Some("k1"), Some("pro"))
        );
        // It needs no header at all (a cookie, a client certificate).
        let mut r = req(&[], None);
        r.extensions_mut().insert(Caller::new("pro").id("acct-7"));
        assert_eq!(subject(&r, &keys, None, 0).key.as_deref(), Some("acct-7"));
        // Without an id: the first header with a key, as documented.
        let mut r = req(&made_up, None);
        r.extensions_mut().insert(Caller::new("pro"));
        assert_eq!(subject(&r, &keys, None, 0).key.as_deref(), Some("made-up"));
        // The lookup's caller may name an id too.
        let lookup = |k: &str| (k == "made-up").then(|| Caller::new("free").id("acct-8"));
        let s = subject(&req(&made_up, None), &keys, Some(&lookup), 0);
        assert_eq!(
            (s.key.as_deref(), s.plan.as_deref()),
            (Some("acct-8"), Some("free"))
        );
    }
}
