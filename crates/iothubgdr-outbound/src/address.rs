//! Which IP addresses a tenant's host may never resolve to.
//!
//! Hand-written because std's `IpAddr::is_global` is still unstable and no small, well-kept
//! crate covers the whole list; the ranges come from IANA's IPv4 and IPv6 Special-Purpose
//! Address Registries (RFC 6890 and its updates) plus the cloud metadata addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is off limits, as a phrase for messages ("a loopback address").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    Unspecified,
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    /// Instance metadata services (169.254.169.254, AWS's fd00:ec2::254, …).
    CloudMetadata,
    /// Documentation, benchmarking, IETF protocol assignments, reserved, deprecated
    /// site-local: never a real service's address.
    Reserved,
}

impl AddressClass {
    pub fn phrase(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::SharedCgnat => "a shared (carrier-grade NAT) address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::UniqueLocal => "a unique-local address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::CloudMetadata => "a cloud metadata service address",
            AddressClass::Reserved => "a reserved address",
        }
    }
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.phrase())
    }
}

/// The class that forbids `ip`, or `None` for a public address.
pub fn forbidden_class(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass as C;
    let [a, b, c, _] = ip.octets();
    let class = if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(168, 63, 129, 16)
    {
        // Azure's wire server 168.63.129.16 answers instance metadata-like requests too.
        C::CloudMetadata
    } else if a == 0 {
        C::Unspecified
    } else if a == 127 {
        C::Loopback
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        C::Private
    } else if a == 100 && (64..=127).contains(&b) {
        C::SharedCgnat
    } else if a == 169 && b == 254 {
        C::LinkLocal
    } else if ip.is_broadcast() {
        C::Broadcast
    } else if (224..=239).contains(&a) {
        C::Multicast
    } else if a >= 240
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 192 && b == 88 && c == 99)
    {
        C::Reserved
    } else {
        return None;
    };
    Some(class)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass as C;
    // Addresses that carry an IPv4 address are judged by it: ::ffff:a.b.c.d (mapped),
    // ::a.b.c.d (deprecated compatible), 64:ff9b::/96 (NAT64) and 2002::/16 (6to4).
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    let class = if ip.is_unspecified() {
        C::Unspecified
    } else if ip.is_loopback() {
        C::Loopback
    } else if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        C::CloudMetadata
    } else if s[0] & 0xfe00 == 0xfc00 {
        C::UniqueLocal
    } else if s[0] & 0xffc0 == 0xfe80 {
        C::LinkLocal
    } else if s[0] & 0xffc0 == 0xfec0 {
        // Deprecated site-local (RFC 3879): private in practice.
        C::Private
    } else if s[0] & 0xff00 == 0xff00 {
        C::Multicast
    } else if (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)
        || (s[0] == 0x2001 && s[1] < 0x0200)
        || s[0] & 0xe000 != 0x2000
    {
        // Documentation, discard-only, IETF protocol assignments (Teredo, ORCHID, …), and
        // everything outside 2000::/3 (the only global unicast space allocated).
        C::Reserved
    } else {
        return None;
    };
    Some(class)
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail());
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass as C;

    fn class(text: &str) -> Option<AddressClass> {
        forbidden_class(text.parse().expect("address"))
    }

    #[test]
    fn every_forbidden_ipv4_class() {
        let cases = [
            ("0.0.0.0", C::Unspecified),
            ("0.1.2.3", C::Unspecified),
            ("127.0.0.1", C::Loopback),
            ("127.255.255.254", C::Loopback),
            ("10.0.0.1", C::Private),
            ("172.16.0.1", C::Private),
            ("172.31.255.255", C::Private),
            ("192.168.1.1", C::Private),
            ("100.64.0.1", C::SharedCgnat),
            ("100.127.255.255", C::SharedCgnat),
            ("169.254.0.1", C::LinkLocal),
            ("169.254.169.254", C::CloudMetadata),
            ("168.63.129.16", C::CloudMetadata),
            ("224.0.0.1", C::Multicast),
            ("239.255.255.250", C::Multicast),
            ("255.255.255.255", C::Broadcast),
            ("240.0.0.1", C::Reserved),
            ("192.0.0.8", C::Reserved),
            ("192.0.2.1", C::Reserved),
            ("198.18.0.1", C::Reserved),
            ("198.51.100.1", C::Reserved),
            ("203.0.113.1", C::Reserved),
        ];
        for (text, expected) in cases {
            assert_eq!(class(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn public_ipv4_is_allowed() {
        for text in [
            "20.42.65.92",
            "52.239.0.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.0.1",
            "192.169.0.1",
        ] {
            assert_eq!(class(text), None, "{text}");
        }
    }

    #[test]
    fn every_forbidden_ipv6_class() {
        let cases = [
            ("::", C::Unspecified),
            ("::1", C::Loopback),
            ("fd00:ec2::254", C::CloudMetadata),
            ("fd12:3456::1", C::UniqueLocal),
            ("fc00::1", C::UniqueLocal),
            ("fe80::1", C::LinkLocal),
            ("fec0::1", C::Private),
            ("ff02::1", C::Multicast),
            ("2001:db8::1", C::Reserved),
            ("100::1", C::Reserved),
            ("2001::1", C::Reserved),
            ("4000::1", C::Reserved),
            // IPv4 inside IPv6 is judged by the IPv4 address.
            ("::ffff:127.0.0.1", C::Loopback),
            ("::ffff:169.254.169.254", C::CloudMetadata),
            ("::10.0.0.1", C::Private),
            ("64:ff9b::192.168.0.1", C::Private),
            ("2002:7f00:1::", C::Loopback),
            ("2002:a9fe:a9fe::", C::CloudMetadata),
        ];
        for (text, expected) in cases {
            assert_eq!(class(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for text in [
            "2603:1030:20e:3::23c",
            "2a01:111:f100:3000::a83e:1",
            "::ffff:20.42.65.92",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert_eq!(class(text), None, "{text}");
        }
    }
}
