//! Identifiers in new orders: syntax, normal form, and how refusals become one problem
//! (RFC 8555 §7.1.3, §6.7.1; RFC 8738 §3).

use std::net::IpAddr;

use sceau_wire::{Identifier, ProblemType, Subproblem};

use crate::AcmeError;

/// Why an order's wildcard names are refused (see `normalise_identifier`).
pub(super) const NO_WILDCARDS: &str = "wildcard names are not issued (agency guide R42)";
pub(super) const WILDCARDS_NEED_BINDING: &str = "wildcard names are only issued to accounts bound to an external account that allows them (R42)";

/// Checks and normalises one identifier; the error is the subproblem to report.
/// `wildcard_refusal`: `None` if a leading `*.` label is allowed, else why it is not.
pub(super) fn normalise_identifier(
    id: &Identifier,
    wildcard_refusal: Option<&str>,
) -> Result<Identifier, Subproblem> {
    let refuse = |kind, detail: &str| Err(Subproblem::new(kind, detail, id.clone()));
    match id.kind.as_str() {
        Identifier::DNS => {
            let name = id.value.to_ascii_lowercase();
            if let Some(base) = name.strip_prefix("*.") {
                if let Some(why) = wildcard_refusal {
                    return refuse(ProblemType::RejectedIdentifier, why);
                }
                // RFC 8555 §7.1.3: the base name must itself be a valid name.
                return match normalise_identifier(&Identifier::dns(base), Some(NO_WILDCARDS)) {
                    Ok(b) => Ok(Identifier::dns(format!("*.{}", b.value))),
                    Err(sub) => Err(Subproblem {
                        identifier: Some(id.clone()),
                        ..sub
                    }),
                };
            }
            if name.is_empty() || name.len() > 253 || name.ends_with('.') {
                return refuse(ProblemType::RejectedIdentifier, "not a valid DNS name");
            }
            for label in name.split('.') {
                if !sceau_wire::is_ldh_label(label) {
                    return refuse(
                        ProblemType::RejectedIdentifier,
                        &format!("DNS label {label:?} is not a valid LDH label"),
                    );
                }
            }
            if name.parse::<IpAddr>().is_ok()
                || name
                    .split('.')
                    .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
            {
                return refuse(
                    ProblemType::RejectedIdentifier,
                    "an IP address must use the \"ip\" identifier type (RFC 8738)",
                );
            }
            Ok(Identifier::dns(name))
        }
        Identifier::IP => match id.value.parse::<IpAddr>() {
            // RFC 8738 §3: the textual form must be canonical (RFC 5952 for IPv6).
            Ok(ip) if ip.to_string() == id.value => Ok(Identifier::ip(ip.to_string())),
            Ok(_) => refuse(
                ProblemType::Malformed,
                "IP address is not in canonical form (RFC 8738 §3)",
            ),
            Err(_) => refuse(ProblemType::Malformed, "not a valid IP address"),
        },
        other => refuse(
            ProblemType::UnsupportedIdentifier,
            &format!("identifier type {other:?} is not supported"),
        ),
    }
}

/// One problem from several subproblems (RFC 8555 §6.7.1): their type if they agree, else
/// `compound`.
pub(super) fn identifiers_error(subproblems: Vec<Subproblem>) -> AcmeError {
    let first = subproblems[0].kind.clone();
    let kind = if subproblems.iter().all(|s| s.kind == first) {
        ProblemType::from_urn(&first).unwrap_or(ProblemType::RejectedIdentifier)
    } else {
        ProblemType::Compound
    };
    let names: Vec<_> = subproblems
        .iter()
        .filter_map(|s| s.identifier.as_ref().map(|i| i.value.clone()))
        .collect();
    AcmeError::new(kind, format!("cannot issue for {}", names.join(", ")))
        .with_subproblems(subproblems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised_or_refused() {
        assert_eq!(
            normalise_identifier(&Identifier::dns("WWW.Example.TEST"), Some(NO_WILDCARDS)).unwrap(),
            Identifier::dns("www.example.test")
        );
        assert!(
            normalise_identifier(&Identifier::dns("*.example.test"), Some(NO_WILDCARDS)).is_err()
        );
        assert!(
            normalise_identifier(&Identifier::dns("bad_label.test"), Some(NO_WILDCARDS)).is_err()
        );
        assert!(
            normalise_identifier(&Identifier::dns("trailing.dot."), Some(NO_WILDCARDS)).is_err()
        );
        assert!(normalise_identifier(&Identifier::dns("10.0.0.1"), Some(NO_WILDCARDS)).is_err());
        assert_eq!(
            normalise_identifier(&Identifier::ip("10.0.0.1"), Some(NO_WILDCARDS)).unwrap(),
            Identifier::ip("10.0.0.1")
        );
        assert!(
            normalise_identifier(&Identifier::ip("2001:DB8::1"), Some(NO_WILDCARDS)).is_err(),
            "IPv6 must be canonical"
        );
        assert_eq!(
            normalise_identifier(&Identifier::ip("2001:db8::1"), Some(NO_WILDCARDS))
                .unwrap()
                .value,
            "2001:db8::1"
        );
        assert_eq!(
            normalise_identifier(&Identifier::dns("*.Example.TEST"), None).unwrap(),
            Identifier::dns("*.example.test")
        );
        assert!(normalise_identifier(&Identifier::dns("*.*.example.test"), None).is_err());
        assert!(normalise_identifier(&Identifier::dns("*.bad_label.test"), None).is_err());
        let err = normalise_identifier(
            &Identifier {
                kind: "email".into(),
                value: "a@b".into(),
            },
            None,
        )
        .unwrap_err();
        assert_eq!(err.kind, ProblemType::UnsupportedIdentifier.urn());
    }
}
