//! Special-use names and addresses: those that name the machine itself, its link, or nobody
//! (RFC 6761 §6.3 `localhost`, §6.4 `invalid`; RFC 6890 address registries; RFC 4291 §2.5 and
//! §2.7 for IPv6). A CA must not certify them by default, and validation must not connect to
//! the local ones: a certificate for `localhost` or `127.0.0.1` from a CA that every machine
//! trusts lets anyone impersonate every machine's own services to itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `localhost` and names below it (RFC 6761 §6.3).
    Localhost,
    /// The `invalid` top-level domain (RFC 6761 §6.4).
    Invalid,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 0.0.0.0/8 ("this network", RFC 6890), ::.
    Unspecified,
    /// 169.254.0.0/16 (where cloud metadata services answer), fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
}

impl Special {
    /// Names or addresses of this machine or its link: refusable by default, allowed by an
    /// operator's explicit lab setting.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            Special::Localhost | Special::Loopback | Special::LinkLocal
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Special::Localhost => "a localhost name (RFC 6761 §6.3)",
            Special::Invalid => "under the reserved top-level domain \"invalid\" (RFC 6761 §6.4)",
            Special::Loopback => "a loopback address",
            Special::Unspecified => "an unspecified address",
            Special::LinkLocal => "a link-local address",
            Special::Multicast => "a multicast address",
            Special::Broadcast => "the broadcast address",
        }
    }
}

/// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address it carries.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn v4_category(ip: Ipv4Addr) -> Option<Special> {
    let o = ip.octets();
    Some(match o[0] {
        127 => Special::Loopback,
        0 => Special::Unspecified,
        169 if o[1] == 254 => Special::LinkLocal,
        224..=239 => Special::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Special::Broadcast,
        _ => return None,
    })
}

fn v6_category(ip: Ipv6Addr) -> Option<Special> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        Special::Loopback
    } else if ip.is_unspecified() {
        Special::Unspecified
    } else if first & 0xffc0 == 0xfe80 {
        Special::LinkLocal
    } else if first & 0xff00 == 0xff00 {
        Special::Multicast
    } else {
        return None;
    })
}

/// The special use of an address, if any.
pub fn ip_category(ip: IpAddr) -> Option<Special> {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4_category(v4),
        IpAddr::V6(v6) => v6_category(v6),
    }
}

/// The special use of a DNS name (any case, with or without a trailing dot or a leading
/// wildcard label), if any.
pub fn name_category(name: &str) -> Option<Special> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let tld = name.rsplit('.').next().unwrap_or("");
    match tld {
        "localhost" => Some(Special::Localhost),
        "invalid" => Some(Special::Invalid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<Special> {
        ip_category(s.parse().unwrap())
    }

    #[test]
    fn addresses() {
        assert_eq!(ip("127.0.0.1"), Some(Special::Loopback));
        assert_eq!(ip("127.255.0.9"), Some(Special::Loopback));
        assert_eq!(ip("::1"), Some(Special::Loopback));
        assert_eq!(ip("::ffff:127.0.0.1"), Some(Special::Loopback));
        assert_eq!(ip("0.0.0.0"), Some(Special::Unspecified));
        assert_eq!(ip("::"), Some(Special::Unspecified));
        assert_eq!(ip("169.254.169.254"), Some(Special::LinkLocal));
        assert_eq!(ip("fe80::1"), Some(Special::LinkLocal));
        assert_eq!(ip("febf::1"), Some(Special::LinkLocal));
        assert_eq!(ip("224.0.0.1"), Some(Special::Multicast));
        assert_eq!(ip("ff02::1"), Some(Special::Multicast));
        assert_eq!(ip("255.255.255.255"), Some(Special::Broadcast));
        for ordinary in [
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "203.0.113.7",
            "fd00::1",
            "2001:db8::1",
            "fec0::1",
            "169.253.1.1",
            "128.0.0.1",
        ] {
            assert_eq!(ip(ordinary), None, "{ordinary}");
        }
    }

    #[test]
    fn names() {
        for local in ["localhost", "LOCALHOST.", "app.localhost", "*.localhost"] {
            assert_eq!(name_category(local), Some(Special::Localhost), "{local}");
        }
        assert_eq!(name_category("x.invalid"), Some(Special::Invalid));
        for ordinary in [
            "localhost.example",
            "mylocalhost",
            "invalid.example",
            "web.test",
        ] {
            assert_eq!(name_category(ordinary), None, "{ordinary}");
        }
    }
}
