//! Identifier syntax as the signer accepts it: DNS names in lowercase A-label form (RFC 1035
//! §2.3.1 preferred syntax, RFC 5280 §4.2.1.6, valid IDNA A-labels: the rules of
//! [`sceau_wire::dns::check_dns_name`], shared with the order front end), IP addresses in
//! their canonical text form (RFC 8738 §3: IPv6 as RFC 5952 text), no wildcards (R42).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sceau_wire::Identifier;
use sceau_wire::dns::{NameError, check_dns_name};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameProblem {
    Wildcard,
    IpAddress,
    Invalid(NameError),
}

impl std::fmt::Display for NameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameProblem::Wildcard => f.write_str("wildcard names are not issued"),
            NameProblem::IpAddress => f.write_str("an IP address is not a DNS name"),
            NameProblem::Invalid(why) => write!(f, "{why}"),
        }
    }
}

/// Checks a DNS name and returns it lowercased: [`check_dns_name`], the one check the order
/// front end applies too, with no wildcard.
pub(crate) fn dns_name(name: &str) -> Result<String, NameProblem> {
    dns_name_or_wildcard(name, false)
}

/// [`dns_name`], which refuses wildcards, unless `allow_wildcard`: then one leading wildcard
/// label (`*.example.org`, RFC 6125 §6.4.3) is accepted, for CAs configured to issue them.
pub(crate) fn dns_name_or_wildcard(
    name: &str,
    allow_wildcard: bool,
) -> Result<String, NameProblem> {
    if name.parse::<IpAddr>().is_ok() {
        return Err(NameProblem::IpAddress);
    }
    check_dns_name(name, allow_wildcard).map_err(|e| match e {
        NameError::Wildcard => NameProblem::Wildcard,
        other => NameProblem::Invalid(other),
    })
}

/// An iPAddress GeneralName's octets (RFC 5280 §4.2.1.6: 4 or 16 octets).
pub(crate) fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(octets).ok()?,
        ))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(octets).ok()?,
        ))),
        _ => None,
    }
}

/// An identifier the signer will put in a SAN, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SanName {
    Dns(String),
    Ip(IpAddr),
}

impl SanName {
    pub(crate) fn identifier(&self) -> Identifier {
        match self {
            SanName::Dns(d) => Identifier::dns(d.clone()),
            SanName::Ip(ip) => Identifier::ip(ip.to_string()),
        }
    }
}

/// Checks an ACME identifier for the signer: known type, valid syntax, and for `ip` the
/// canonical text form, so the certificate matches what the order says byte for byte.
pub(crate) fn san_name(id: &Identifier, allow_wildcards: bool) -> Result<SanName, String> {
    if id.is_dns() {
        return dns_name_or_wildcard(&id.value, allow_wildcards)
            .map(SanName::Dns)
            .map_err(|p| format!("{}: {p}", id.value));
    }
    if id.is_ip() {
        let ip: IpAddr = id
            .value
            .parse()
            .map_err(|_| format!("{}: not an IP address", id.value))?;
        return Ok(SanName::Ip(ip));
    }
    Err(format!("identifier type {:?} is not supported", id.kind))
}

/// A name given on the command line or in configuration: IP if it parses as one, else DNS.
pub(crate) fn guess(name: &str) -> Result<SanName, String> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(SanName::Ip(ip)),
        Err(_) => dns_name(name)
            .map(SanName::Dns)
            .map_err(|p| format!("{name}: {p}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("WWW.Example.ORG"), Ok("www.example.org".into()));
        assert_eq!(
            dns_name("xn--bcher-kva.example"),
            Ok("xn--bcher-kva.example".into())
        );
        assert_eq!(dns_name("localhost"), Ok("localhost".into()));
        assert_eq!(dns_name("*.example.org"), Err(NameProblem::Wildcard));
        for bad in [
            "",
            "a..b",
            "a.b.",
            "-a.b",
            "a-.b",
            "a_b.c",
            "bücher.de",
            "10.0.0.1",
            "a.*.b",
            "a b",
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
        assert!(dns_name(&format!("{}.example", "a".repeat(64))).is_err());
        // IDNA rules (RFC 5891): the same as for orders.
        for bad in ["xn--zz.example", "ab--cd.example", "xn--caf-pia.example"] {
            let e = dns_name(bad).unwrap_err().to_string();
            assert!(e.contains("label") && !e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(
            dns_name("XN--CAF-DMA.example"),
            Ok("xn--caf-dma.example".into())
        );
    }

    #[test]
    fn ips_are_canonical() {
        let id = Identifier::ip("2001:db8:0:0:0:0:0:1");
        assert_eq!(
            san_name(&id, false).unwrap().identifier(),
            Identifier::ip("2001:db8::1")
        );
        assert_eq!(
            ip_from_octets(&[127, 0, 0, 1]),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(ip_from_octets(&[1, 2, 3]), None);
        assert!(
            san_name(
                &Identifier {
                    kind: "email".into(),
                    value: "a@b".into()
                },
                false
            )
            .is_err()
        );
        // Wildcards only when the CA allows them, and only as the whole first label.
        assert!(san_name(&Identifier::dns("*.example.org"), false).is_err());
        assert_eq!(
            san_name(&Identifier::dns("*.Example.org"), true).unwrap(),
            SanName::Dns("*.example.org".into())
        );
        assert!(san_name(&Identifier::dns("*.*.example.org"), true).is_err());
        assert!(san_name(&Identifier::dns("a*.example.org"), true).is_err());
    }
}
