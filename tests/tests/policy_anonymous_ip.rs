//! How anonymous callers are keyed by address (found by review: IPv6
//! callers were keyed per /128, so one client with a /64 — the smallest
//! block a site is given — could mint 2^64 fresh anonymous budgets). An IPv6
//! caller is now keyed by its /64 (or `anonymous.ipv6_prefix`), an
//! IPv4-mapped IPv6 address like its IPv4 address.

use std::net::IpAddr;

use tollgate::Nanos;
use tollgate::policy::{Engine, Outcome, Request};

const SCANNER: &str = include_str!("../../policies/scanner-api.toml");

fn with_prefix(prefix: Option<&str>) -> Engine {
    let src = match prefix {
        None => SCANNER.to_owned(),
        Some(p) => SCANNER.replace(
            "plan = \"anonymous\"\n",
            &format!("plan = \"anonymous\"\nipv6_prefix = {p}\n"),
        ),
    };
    Engine::from_toml(&src, Nanos::ZERO).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Whether an anonymous `GET /api/servers` from `addr` is admitted.
fn admitted(e: &Engine, addr: &str) -> bool {
    let r = Request::new("GET", "/api/servers").ip(ip(addr));
    matches!(e.check(&r, Nanos::ZERO).unwrap(), Outcome::Allowed(_))
}

#[test]
fn one_budget_per_ipv6_slash_64_by_default() {
    let e = with_prefix(None);
    // 30 a minute, spent from 30 different addresses of one /64.
    for i in 0..30 {
        assert!(admitted(&e, &format!("2001:db8:1:2:{i:x}::{i:x}")), "{i}");
    }
    assert!(!admitted(&e, "2001:db8:1:2:ffff:ffff:ffff:ffff"));
    assert!(!admitted(&e, "2001:db8:1:2::"));
    // The neighbouring /64 has its own budget.
    assert!(admitted(&e, "2001:db8:1:3::1"));
}

#[test]
fn ipv4_mapped_addresses_share_the_ipv4_budget() {
    let e = with_prefix(None);
    for _ in 0..15 {
        assert!(admitted(&e, "192.0.2.7"));
        assert!(admitted(&e, "::ffff:192.0.2.7"));
    }
    assert!(!admitted(&e, "192.0.2.7"));
    assert!(!admitted(&e, "::ffff:192.0.2.7"));
    // Other IPv4 clients, mapped or not, are not lumped in with it.
    assert!(admitted(&e, "::ffff:192.0.2.8"));
    assert!(admitted(&e, "192.0.2.9"));
}

/// Found by review: behind NAT64/SIIT every IPv4 client arrives under
/// `64:ff9b::/96`, one /64 — all would have shared one budget. The
/// well-known prefix is keyed by the IPv4 address it carries.
#[test]
fn nat64_addresses_are_keyed_by_the_ipv4_address_they_carry() {
    let e = with_prefix(None);
    for _ in 0..30 {
        assert!(admitted(&e, "64:ff9b::198.51.100.1"));
    }
    assert!(!admitted(&e, "64:ff9b::198.51.100.1"));
    assert!(!admitted(&e, "198.51.100.1"));
    // Another IPv4 client behind the same translator: its own budget.
    assert!(admitted(&e, "64:ff9b::198.51.100.2"));
}

#[test]
fn the_policy_chooses_the_prefix() {
    let per_address = with_prefix(Some("128"));
    for _ in 0..30 {
        assert!(admitted(&per_address, "2001:db8::1"));
    }
    assert!(!admitted(&per_address, "2001:db8::1"));
    assert!(admitted(&per_address, "2001:db8::2"));

    let per_48 = with_prefix(Some("48"));
    for i in 0..30 {
        assert!(admitted(&per_48, &format!("2001:db8:7:{i:x}::1")), "{i}");
    }
    assert!(!admitted(&per_48, "2001:db8:7:ffff::9"));
    assert!(admitted(&per_48, "2001:db8:8::1"));
}

#[test]
fn a_prefix_out_of_range_is_refused_at_its_line() {
    for bad in ["0", "129"] {
        let err = match Engine::from_toml(
            &SCANNER.replace(
                "plan = \"anonymous\"\n",
                &format!("plan = \"anonymous\"\nipv6_prefix = {bad}\n"),
            ),
            Nanos::ZERO,
        ) {
            Err(e) => e,
            Ok(_) => panic!("ipv6_prefix = {bad} loaded"),
        };
        assert_eq!(err.field, "anonymous.ipv6_prefix", "{err}");
        assert_eq!(err.line, 7, "{err}");
        assert!(err.message.contains("1 to 128"), "{err}");
    }
    // Not a u8 at all: refused by the parser, also at its line.
    let err = match Engine::from_toml(
        &SCANNER.replace(
            "plan = \"anonymous\"\n",
            "plan = \"anonymous\"\nipv6_prefix = 300\n",
        ),
        Nanos::ZERO,
    ) {
        Err(e) => e,
        Ok(_) => panic!("ipv6_prefix = 300 loaded"),
    };
    assert_eq!(err.line, 7, "{err}");
}

/// A 6to4 host holds the /48 of its IPv4 address (65 536 /64s): keyed per
/// /64 it could mint that many budgets. Keyed by the IPv4 address it
/// carries, every subnet of it spends one budget, the IPv4 address's.
#[test]
fn six_to_four_addresses_are_keyed_by_their_ipv4_address() {
    let e = with_prefix(None);
    // 2002:c633:6401::/48 is 198.51.100.1's.
    for i in 0..30 {
        assert!(admitted(&e, &format!("2002:c633:6401:{i:x}::1")), "{i}");
    }
    assert!(!admitted(&e, "2002:c633:6401:ffff::1"));
    assert!(!admitted(&e, "198.51.100.1"));
    // Another IPv4 address's 6to4 block: its own budget.
    assert!(admitted(&e, "2002:c633:6402::1"));
}

/// Teredo clients of one server share its /64; each is keyed by its own
/// (obfuscated) public IPv4 address instead, so one cannot spend the others'
/// budget and one client gets one budget whatever its port.
#[test]
fn teredo_clients_are_keyed_by_their_public_ipv4_address() {
    let e = with_prefix(None);
    // Server 192.0.2.1 (c000:0201); client 198.51.100.9 = !39cc:9bf6, on
    // different mapped ports.
    for port in 0..30u16 {
        let addr = format!("2001:0:c000:201:0:{:x}:39cc:9bf6", !port);
        assert!(admitted(&e, &addr), "{port}");
    }
    assert!(!admitted(&e, "2001:0:c000:201:8000:ffff:39cc:9bf6"));
    assert!(!admitted(&e, "198.51.100.9"));
    // Another client of the same server: its own budget.
    assert!(admitted(&e, "2001:0:c000:201:0:f227:39cc:9bf5"));
}
