//! Which resolved addresses a connector may connect to.
//!
//! A name under an allowed domain can still resolve to an address inside
//! the embedder's network: loopback, a private range, or the cloud metadata
//! service at 169.254.169.254. IPv6 has several ways of spelling an IPv4
//! address (mapped, compatible, translated, NAT64, 6to4), so each of those
//! is judged by the IPv4 address it carries; a check on the plain IPv4 form
//! alone would let `64:ff9b::a9fe:a9fe` through to the metadata service on
//! a network with a NAT64 gateway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a connector must not connect to `ip`: loopback, private,
/// link-local (cloud metadata lives there), shared (CGNAT), benchmarking,
/// reserved, unspecified, multicast or broadcast addresses, in IPv4, IPv6
/// or any IPv6 form that embeds an IPv4 address.
pub(crate) fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_forbidden_v4(v4),
            None => is_forbidden_v6(v6),
        },
    }
}

fn is_forbidden_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_multicast()
        || a == 0
        // Shared address space (RFC 6598): carrier NAT, and Alibaba Cloud's
        // metadata service at 100.100.100.200.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments (RFC 6890).
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking (RFC 2544), often used for internal networks.
        || (a == 198 && (b & 0xfe) == 18)
        // Reserved (240.0.0.0/4), the broadcast address included.
        || a >= 240
}

fn is_forbidden_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        // Unique local (fc00::/7): AWS's IPv6 metadata service is fd00:ec2::254.
        || (s[0] & 0xfe00) == 0xfc00
        // Link-local (fe80::/10) and the deprecated site-local (fec0::/10).
        || (s[0] & 0xff80) == 0xfe80
        // NAT64 for a local network (64:ff9b:1::/48, RFC 8215): the IPv4
        // address sits where the operator's prefix length puts it.
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        // Teredo (2001::/32): the IPv4 address of the far end is obfuscated.
        || (s[0] == 0x2001 && s[1] == 0)
        // Discard-only (100::/64).
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
}

/// The IPv4 address an IPv6 address stands for, where it has a fixed place:
/// IPv4-mapped (`::ffff:a.b.c.d`) and the deprecated IPv4-compatible
/// (`::a.b.c.d`), SIIT-translated (`::ffff:0:a.b.c.d`), well-known-prefix
/// NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // `to_ipv4` covers ::/96 and ::ffff:0:0/96; `::` and `::1` are
        // judged as IPv6, where they are forbidden too.
        [0, 0, 0, 0, 0, 0 | 0xffff, ..] => v6.to_ipv4(),
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(ip: &str) -> bool {
        is_forbidden(ip.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "100.100.100.200",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "64:ff9b:1::a00:1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
        ] {
            assert!(forbidden(ip), "{ip}");
        }
    }

    #[test]
    fn an_ipv4_address_inside_ipv6_is_judged_as_ipv4() {
        for ip in [
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "::169.254.169.254",
            "::127.0.0.1",
            "::ffff:0:169.254.169.254",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2002:c0a8:101:1::1",
        ] {
            assert!(forbidden(ip), "{ip}");
        }
        for ip in [
            "::ffff:8.8.8.8",
            "::8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(!forbidden(ip), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "203.0.113.9",
            "8.8.8.8",
            "34.120.0.1",
            "100.128.0.1",
            "100.63.255.255",
            "198.17.255.255",
            "198.20.0.1",
            "2606:4700::1",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
        ] {
            assert!(!forbidden(ip), "{ip}");
        }
    }
}
