//! Identifiers as validation targets: a lower-case domain without trailing dot, or an IP.
//!
//! Wildcards (`*.`) are only meaningful for dns-01 and CAA (RFC 8555 §7.1.3); IP identifiers are
//! never validated with dns-01 (RFC 8738 §7).

use std::fmt::Write as _;
use std::net::IpAddr;

use sceau_wire::{Identifier, ProblemType};

use crate::ValidationError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Domain(String),
    Ip(IpAddr),
}

/// A validated domain: lower case, no trailing dot, optional leading `*.` kept in `value`.
pub(crate) fn domain(id: &Identifier) -> Result<String, ValidationError> {
    let lower = id.value.trim_end_matches('.').to_ascii_lowercase();
    let base = lower.strip_prefix("*.").unwrap_or(&lower);
    if !is_hostname(base) {
        return Err(malformed(format!(
            "{:?} is not a valid domain name",
            id.value
        )));
    }
    Ok(lower)
}

fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Where http-01 and tls-alpn-01 connect: a domain (no wildcard) or an IP address.
pub(crate) fn connect_target(id: &Identifier, method: &str) -> Result<Target, ValidationError> {
    match id.kind.as_str() {
        Identifier::DNS => {
            let d = domain(id)?;
            if d.starts_with("*.") {
                return Err(malformed(format!(
                    "{method} cannot validate the wildcard {d}: wildcards need dns-01"
                )));
            }
            Ok(Target::Domain(d))
        }
        Identifier::IP => Ok(Target::Ip(ip(id)?)),
        other => Err(unsupported(other)),
    }
}

/// The domain whose `_acme-challenge` label dns-01 checks (a wildcard's base domain).
pub(crate) fn dns01_domain(id: &Identifier) -> Result<String, ValidationError> {
    match id.kind.as_str() {
        Identifier::DNS => {
            let d = domain(id)?;
            Ok(d.strip_prefix("*.").map(str::to_owned).unwrap_or(d))
        }
        Identifier::IP => Err(malformed(format!(
            "dns-01 cannot validate the IP address {} (RFC 8738 §7)",
            id.value
        ))),
        other => Err(unsupported(other)),
    }
}

fn ip(id: &Identifier) -> Result<IpAddr, ValidationError> {
    id.value
        .parse()
        .map_err(|_| malformed(format!("{:?} is not a valid IP address", id.value)))
}

/// RFC 8738 §6: the reverse-mapping name used as SNI for an IP identifier.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                let _ = write!(out, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}

fn malformed(detail: String) -> ValidationError {
    ValidationError::new(ProblemType::Malformed, detail)
}

fn unsupported(kind: &str) -> ValidationError {
    ValidationError::new(
        ProblemType::UnsupportedIdentifier,
        format!("identifier type {kind:?} cannot be validated"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn domains() {
        assert_eq!(
            domain(&Identifier::dns("WWW.Example.test.")).unwrap(),
            "www.example.test"
        );
        assert_eq!(
            dns01_domain(&Identifier::dns("*.example.test")).unwrap(),
            "example.test"
        );
        for bad in ["", "a..b", "-a.test", "a b.test", "*.", "x.*.test"] {
            assert_eq!(
                domain(&Identifier::dns(bad)).unwrap_err().kind,
                ProblemType::Malformed,
                "{bad}"
            );
        }
        assert_eq!(
            connect_target(&Identifier::dns("*.example.test"), "http-01")
                .unwrap_err()
                .kind,
            ProblemType::Malformed
        );
        assert_eq!(
            dns01_domain(&Identifier::ip("192.0.2.1")).unwrap_err().kind,
            ProblemType::Malformed
        );
        assert_eq!(
            connect_target(&Identifier::ip("192.0.2.300"), "http-01")
                .unwrap_err()
                .kind,
            ProblemType::Malformed
        );
    }
}
