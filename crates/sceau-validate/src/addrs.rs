//! Which addresses validation may connect to (RFC 8555 §10.4: validation must not become a way
//! to reach services the client itself cannot reach).
//!
//! Invariants:
//! - Every address is judged in its canonical form: an IPv4-mapped IPv6 address
//!   (`::ffff:127.0.0.1`) is the IPv4 address it carries, because that is where the kernel
//!   connects. Networks written in mapped form are stored as the IPv4 network they cover.
//! - Order of decision: the deny list refuses whatever it covers; otherwise the allow list
//!   permits whatever it covers; otherwise the default refusals apply (loopback, unspecified,
//!   link-local, multicast, broadcast, the server's own addresses); everything else, private
//!   ranges included, is allowed: this CA serves private networks.
//! - The server's own addresses are a snapshot taken when the policy is built: the listening
//!   address, or every interface address when it listens on an unspecified address.
//! - A refusal names the address and the reason, in words fit for a challenge's error detail.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use sceau_wire::ProblemType;

use crate::ValidationError;

/// An IP network in CIDR form: `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or
/// /128). Host bits must be zero, so that `10.0.0.1/8` is not silently read as `10.0.0.0/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A string that is not a network `IpNet` accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetParseError {
    #[error("{0:?} is not an IP address")]
    Address(String),
    #[error("{0:?} is not a prefix length (digits only)")]
    Prefix(String),
    #[error("prefix length {prefix} is longer than {max} for {addr}")]
    PrefixTooLong { addr: IpAddr, prefix: u8, max: u8 },
    #[error("{addr}/{prefix} has host bits set; the network is {network}")]
    HostBits {
        addr: IpAddr,
        prefix: u8,
        network: IpNet,
    },
}

impl IpNet {
    /// `addr/prefix`; fails when the prefix is too long or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet, NetParseError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(NetParseError::PrefixTooLong { addr, prefix, max });
        }
        let network = IpNet {
            addr: mask(addr, prefix),
            prefix,
        };
        if network.addr != addr {
            return Err(NetParseError::HostBits {
                addr,
                prefix,
                network,
            });
        }
        // A mapped network covers IPv4 addresses, and addresses are judged as IPv4.
        if let IpAddr::V6(v6) = addr
            && prefix >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Ok(IpNet {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(network)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` (canonicalised) is in this network; IPv4 and IPv6 never match each other.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for IpNet {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<IpNet, NetParseError> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| NetParseError::Address(addr_text.to_owned()))?;
        let prefix = match prefix_text {
            None => max_prefix(addr),
            Some(p) => {
                // u8's parser takes "+8" and "008"; a network setting should be written plainly.
                let plain = !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                if !plain {
                    return Err(NetParseError::Prefix(p.to_owned()));
                }
                p.parse().map_err(|_| NetParseError::Prefix(p.to_owned()))?
            }
        };
        IpNet::new(addr, prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an address is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// Covered by the operator's deny list.
    Denied(IpNet),
    Loopback,
    /// `0.0.0.0/8` or `::`: Linux connects these to the local host.
    Unspecified,
    /// `169.254.0.0/16` (cloud metadata services live there) or `fe80::/10`.
    LinkLocal,
    Multicast,
    Broadcast,
    /// An address the server itself listens on.
    OwnAddress,
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::Denied(net) => write!(f, "is in the denied network {net}"),
            RefusalReason::Loopback => f.write_str("is loopback"),
            RefusalReason::Unspecified => f.write_str("is unspecified (it means this host)"),
            RefusalReason::LinkLocal => f.write_str("is link-local"),
            RefusalReason::Multicast => f.write_str("is multicast"),
            RefusalReason::Broadcast => f.write_str("is broadcast"),
            RefusalReason::OwnAddress => f.write_str("is one of the CA's own addresses"),
        }
    }
}

/// An address validation may not connect to, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("address {addr} {reason}; the CA does not connect there")]
pub struct AddressRefused {
    /// The canonical address (IPv4 for a mapped IPv6 address).
    pub addr: IpAddr,
    pub reason: RefusalReason,
}

/// The machine's interface addresses could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list the machine's interface addresses: {0}")]
pub struct InterfacesError(#[from] std::io::Error);

/// Which addresses validation may connect to. `Default` is the safe default with no own
/// addresses; the server adds its listener with [`AddressPolicy::listening_on`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl AddressPolicy {
    /// Permits `net` although the default refuses it (a lab allowing `127.0.0.0/8`).
    pub fn allow(mut self, net: IpNet) -> Self {
        self.allow.push(net);
        self
    }

    /// Refuses `net`, whatever the allow list says.
    pub fn deny(mut self, net: IpNet) -> Self {
        self.deny.push(net);
        self
    }

    /// Refuses `ip` as one of the server's own addresses.
    pub fn own_address(mut self, ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        if !self.own.contains(&ip) {
            self.own.push(ip);
        }
        self
    }

    /// Refuses the addresses of a listener bound to `ip`: `ip` itself, or every address of the
    /// machine's interfaces when `ip` is unspecified (the listener answers on all of them).
    pub fn listening_on(self, ip: IpAddr) -> Result<Self, InterfacesError> {
        if !ip.to_canonical().is_unspecified() {
            return Ok(self.own_address(ip));
        }
        Ok(interface_addresses()?
            .into_iter()
            .fold(self, AddressPolicy::own_address))
    }

    /// The server's own addresses this policy refuses.
    pub fn own_addresses(&self) -> &[IpAddr] {
        &self.own
    }

    /// May validation connect to `ip`?
    pub fn check(&self, ip: IpAddr) -> Result<(), AddressRefused> {
        let addr = ip.to_canonical();
        let refuse = |reason| Err(AddressRefused { addr, reason });
        if let Some(net) = self.deny.iter().find(|n| n.contains(addr)) {
            return refuse(RefusalReason::Denied(*net));
        }
        if self.allow.iter().any(|n| n.contains(addr)) {
            return Ok(());
        }
        if let Some(reason) = default_refusal(addr) {
            return refuse(reason);
        }
        if self.own.contains(&addr) {
            return refuse(RefusalReason::OwnAddress);
        }
        Ok(())
    }

    /// The addresses of `host` validation may connect to, in their order; a `connection`
    /// problem naming every refused address when none is left.
    pub(crate) fn connectable(
        &self,
        host: &str,
        ips: Vec<IpAddr>,
    ) -> Result<Vec<IpAddr>, ValidationError> {
        let mut refused = Vec::new();
        let allowed: Vec<IpAddr> = ips
            .into_iter()
            .filter(|ip| match self.check(*ip) {
                Ok(()) => true,
                Err(r) => {
                    refused.push(r.to_string());
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(ValidationError::new(
                ProblemType::Connection,
                format!(
                    "{host} has no address the CA may connect to: {}",
                    refused.join("; ")
                ),
            ));
        }
        Ok(allowed)
    }
}

/// The refusals that hold unless the operator allows the address explicitly.
fn default_refusal(addr: IpAddr) -> Option<RefusalReason> {
    match addr {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some(RefusalReason::Loopback)
            } else if v4.octets()[0] == 0 {
                // 0.0.0.0/8, "this network" (RFC 1122 §3.2.1.3).
                Some(RefusalReason::Unspecified)
            } else if v4.is_link_local() {
                Some(RefusalReason::LinkLocal)
            } else if v4.is_multicast() {
                Some(RefusalReason::Multicast)
            } else if v4.is_broadcast() {
                Some(RefusalReason::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(RefusalReason::Loopback)
            } else if v6.is_unspecified() {
                Some(RefusalReason::Unspecified)
            } else if v6.is_unicast_link_local() {
                Some(RefusalReason::LinkLocal)
            } else if v6.is_multicast() {
                Some(RefusalReason::Multicast)
            } else {
                None
            }
        }
    }
}

/// Every IPv4 and IPv6 address of the machine's interfaces, from getifaddrs(3).
fn interface_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we own until freeifaddrs; on failure it writes nothing.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family tells its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            match family {
                libc::AF_INET => {
                    // SAFETY: AF_INET means the sockaddr is a sockaddr_in.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    // SAFETY: AF_INET6 means the sockaddr is a sockaddr_in6.
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once; no reference outlives it.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_in_cidr_form_and_as_bare_addresses() {
        let n = net("10.0.0.0/8");
        assert_eq!((n.addr(), n.prefix_len()), (ip("10.0.0.0"), 8));
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.0")));
        let n = net("2001:db8::/32");
        assert!(n.contains(ip("2001:db8:ffff::1")));
        assert!(!n.contains(ip("2001:db9::1")));
        // A bare address is a single host.
        assert_eq!(net("192.0.2.7"), net("192.0.2.7/32"));
        assert!(net("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!net("192.0.2.7").contains(ip("192.0.2.8")));
        assert_eq!(net("::1").prefix_len(), 128);
        // /0 covers its whole family and only it.
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn mapped_networks_and_addresses_are_ipv4() {
        // Written in mapped form, the network is the IPv4 one it covers.
        assert_eq!(net("::ffff:127.0.0.0/104"), net("127.0.0.0/8"));
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(!net("::/0").contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn bad_networks_are_refused_with_the_reason() {
        let cases = [
            ("", "is not an IP address"),
            ("10.0.0.0/", "is not a prefix length"),
            ("/8", "is not an IP address"),
            ("example.test/8", "is not an IP address"),
            ("10.0.0/8", "is not an IP address"),
            ("10.0.0.0/33", "longer than 32"),
            ("2001:db8::/129", "longer than 128"),
            ("10.0.0.0/+8", "is not a prefix length"),
            ("10.0.0.0/08", "is not a prefix length"),
            ("10.0.0.0/8/8", "is not a prefix length"),
            ("10.0.0.0/ 8", "is not a prefix length"),
            ("10.0.0.1/8", "host bits set; the network is 10.0.0.0/8"),
            ("2001:db8::1/32", "the network is 2001:db8::/32"),
        ];
        for (text, want) in cases {
            let err = text.parse::<IpNet>().unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn default_refuses_local_categories_and_allows_private_ranges() {
        let p = AddressPolicy::default();
        let refused = [
            ("127.0.0.1", RefusalReason::Loopback),
            ("127.255.255.254", RefusalReason::Loopback),
            ("::1", RefusalReason::Loopback),
            ("0.0.0.0", RefusalReason::Unspecified),
            ("0.1.2.3", RefusalReason::Unspecified),
            ("::", RefusalReason::Unspecified),
            ("169.254.169.254", RefusalReason::LinkLocal),
            ("fe80::1", RefusalReason::LinkLocal),
            ("febf::1", RefusalReason::LinkLocal),
            ("224.0.0.1", RefusalReason::Multicast),
            ("239.255.255.250", RefusalReason::Multicast),
            ("ff02::1", RefusalReason::Multicast),
            ("255.255.255.255", RefusalReason::Broadcast),
            // Mapped addresses are judged as the IPv4 address they carry.
            ("::ffff:127.0.0.1", RefusalReason::Loopback),
            ("::ffff:169.254.169.254", RefusalReason::LinkLocal),
            ("::ffff:0.0.0.0", RefusalReason::Unspecified),
        ];
        for (text, reason) in refused {
            let err = p.check(ip(text)).unwrap_err();
            assert_eq!(err.reason, reason, "{text}");
            assert_eq!(err.addr, ip(text).to_canonical(), "{text}");
        }
        for ok in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "fc00::1",
            "fd12:3456::1",
            "192.0.2.10",
            "2001:db8::1",
            "1.1.1.1",
            "fec0::1",
            "::ffff:10.0.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.1",
        ] {
            assert_eq!(p.check(ip(ok)), Ok(()), "{ok}");
        }
        assert_eq!(
            p.check(ip("::ffff:127.0.0.1")).unwrap_err().to_string(),
            "address 127.0.0.1 is loopback; the CA does not connect there"
        );
    }

    #[test]
    fn allow_wins_over_defaults_and_deny_wins_over_everything() {
        let p = AddressPolicy::default()
            .allow(net("127.0.0.0/8"))
            .deny(net("127.0.0.2"))
            .deny(net("10.9.0.0/16"));
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("::ffff:127.0.0.1")), Ok(()));
        // Only the allowed network: ::1 stays refused.
        assert_eq!(
            p.check(ip("::1")).unwrap_err().reason,
            RefusalReason::Loopback
        );
        let err = p.check(ip("127.0.0.2")).unwrap_err();
        assert_eq!(err.reason, RefusalReason::Denied(net("127.0.0.2/32")));
        assert_eq!(
            err.to_string(),
            "address 127.0.0.2 is in the denied network 127.0.0.2/32; the CA does not connect there"
        );
        assert_eq!(
            p.check(ip("10.9.8.7")).unwrap_err().reason,
            RefusalReason::Denied(net("10.9.0.0/16"))
        );
        assert_eq!(p.check(ip("10.8.0.1")), Ok(()));
        // A deny list covering the allow list.
        let p = AddressPolicy::default()
            .deny(net("0.0.0.0/0"))
            .allow(net("192.0.2.0/24"));
        assert!(matches!(
            p.check(ip("192.0.2.1")).unwrap_err().reason,
            RefusalReason::Denied(_)
        ));
    }

    #[test]
    fn own_addresses_are_refused_unless_allowed() {
        let p = AddressPolicy::default()
            .listening_on(ip("10.1.2.3"))
            .unwrap();
        assert_eq!(p.own_addresses(), &[ip("10.1.2.3")]);
        assert_eq!(
            p.check(ip("10.1.2.3")).unwrap_err().reason,
            RefusalReason::OwnAddress
        );
        assert_eq!(
            p.check(ip("::ffff:10.1.2.3")).unwrap_err().reason,
            RefusalReason::OwnAddress
        );
        assert_eq!(p.check(ip("10.1.2.4")), Ok(()));
        let p = p.allow(net("10.1.2.3"));
        assert_eq!(p.check(ip("10.1.2.3")), Ok(()));
    }

    #[test]
    fn unspecified_listener_refuses_every_interface_address() {
        let ifaces = interface_addresses().expect("getifaddrs");
        // Every Linux machine has loopback: the list really comes from the interfaces.
        assert!(ifaces.contains(&ip("127.0.0.1")), "{ifaces:?}");
        for any in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
            let p = AddressPolicy::default().listening_on(ip(any)).unwrap();
            for a in &ifaces {
                assert!(p.check(*a).is_err(), "{any}: {a} must be refused");
                assert!(p.own_addresses().contains(a), "{any}: {a}");
            }
        }
        // The non-local addresses of this machine are refused as its own.
        let p = AddressPolicy::default().listening_on(ip("::")).unwrap();
        for a in ifaces.iter().filter(|a| default_refusal(**a).is_none()) {
            assert_eq!(p.check(*a).unwrap_err().reason, RefusalReason::OwnAddress);
        }
    }

    #[test]
    fn connectable_keeps_allowed_addresses_in_order_and_names_refused_ones() {
        let p = AddressPolicy::default();
        let got = p
            .connectable(
                "mixed.test",
                vec![ip("127.0.0.1"), ip("10.0.0.2"), ip("::1"), ip("10.0.0.1")],
            )
            .unwrap();
        assert_eq!(got, vec![ip("10.0.0.2"), ip("10.0.0.1")]);
        let err = p
            .connectable(
                "internal.test",
                vec![ip("127.0.0.1"), ip("169.254.169.254")],
            )
            .unwrap_err();
        assert_eq!(err.kind, ProblemType::Connection);
        assert_eq!(
            err.detail,
            "internal.test has no address the CA may connect to: address 127.0.0.1 is \
             loopback; the CA does not connect there; address 169.254.169.254 is link-local; \
             the CA does not connect there"
        );
    }
}
