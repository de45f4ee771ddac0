//! Identifiers in new orders: syntax, normal form, and how refusals become one problem
//! (RFC 8555 §7.1.3, §6.7.1; RFC 8738 §3).
//!
//! Invariant: the syntax and normal form are [`sceau_wire::dns::normalise_identifier`]'s: a DNS
//! identifier passed [`sceau_wire::dns::check_dns_name`], the check the signer applies to CSR
//! names too, so an order never holds a name finalize would refuse for its syntax. This module
//! only turns a refusal into its ACME problem type.

use sceau_wire::dns::{IdentifierError, NameError, normalise_identifier as normalise};
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
    normalise(id, wildcard_refusal.is_none()).map_err(|e| {
        let kind = match e {
            IdentifierError::Name(_) | IdentifierError::IpAsDns => ProblemType::RejectedIdentifier,
            IdentifierError::NotIp | IdentifierError::NotCanonical => ProblemType::Malformed,
            IdentifierError::UnsupportedType(_) => ProblemType::UnsupportedIdentifier,
        };
        let detail = match (&e, wildcard_refusal) {
            (IdentifierError::Name(NameError::Wildcard), Some(why)) => why.to_owned(),
            _ => e.to_string(),
        };
        Subproblem::new(kind, detail, id.clone())
    })
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

    #[test]
    fn idna_rules_apply_to_order_names() {
        let check = |name: &str| normalise_identifier(&Identifier::dns(name), Some(NO_WILDCARDS));
        assert_eq!(
            check("XN--CAF-DMA.test").unwrap(),
            Identifier::dns("xn--caf-dma.test")
        );
        for bad in [
            "xn--zz.test",
            "ab--cd.test",
            "xn--caf-pia.test",
            "*.xn--zz.test",
        ] {
            let sub = check(bad).unwrap_err();
            assert_eq!(sub.kind, ProblemType::RejectedIdentifier.urn(), "{bad}");
            assert_eq!(sub.identifier, Some(Identifier::dns(bad)));
            let detail = sub.detail.unwrap();
            assert!(
                detail.starts_with("not a valid DNS name: label") || detail == NO_WILDCARDS,
                "{bad}: {detail}"
            );
            assert_eq!(detail.lines().count(), 1);
        }
        let sub = normalise_identifier(&Identifier::dns("*.xn--zz.test"), None).unwrap_err();
        assert!(sub.detail.unwrap().contains("Punycode"));
        assert_eq!(sub.identifier, Some(Identifier::dns("*.xn--zz.test")));
        let sub = check("10.0.0.1").unwrap_err();
        assert!(sub.detail.unwrap().contains("\"ip\" identifier type"));
    }
}
