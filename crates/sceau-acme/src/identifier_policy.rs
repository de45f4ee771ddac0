//! Which identifiers may be certified at all, whatever an account can prove: applied at
//! newOrder to identifiers already in normal form, before any authorization is created.
//!
//! Invariants:
//! - Unspecified, multicast and broadcast addresses and names under `invalid` are never
//!   certified: they name no host.
//! - `localhost` names and loopback and link-local addresses are refused unless the operator
//!   allows local identifiers (a lab): a certificate for them from a CA that every machine
//!   trusts would let anyone impersonate each machine's own services to itself.
//! - The names and addresses of the server's own HTTPS certificate are refused unless the
//!   operator allows them, and so is a wildcard that covers one of them: whoever held such a
//!   certificate could stand in for the ACME server in front of every client.

use sceau_wire::special::{Special, ip_category, name_category};
use sceau_wire::{Identifier, ProblemType, Subproblem};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifierPolicy {
    /// Accept `localhost` names and loopback and link-local addresses.
    pub allow_local: bool,
    /// Accept the names of the server's own certificate.
    pub allow_server_names: bool,
    /// The names and addresses of the server's own HTTPS certificate, in normal form.
    pub server_names: Vec<Identifier>,
}

impl IdentifierPolicy {
    /// `Err` is the subproblem to report for `id` (`rejectedIdentifier`).
    pub fn check(&self, id: &Identifier) -> Result<(), Subproblem> {
        let refuse = |detail: String| {
            Err(Subproblem::new(
                ProblemType::RejectedIdentifier,
                &detail,
                id.clone(),
            ))
        };
        let special = if id.is_ip() {
            id.value.parse().ok().and_then(ip_category)
        } else {
            name_category(&id.value)
        };
        if let Some(kind) = special {
            if !kind.is_local() {
                return refuse(format!(
                    "{} is {}; it is never certified",
                    id.value,
                    kind.describe()
                ));
            }
            if !self.allow_local {
                return refuse(format!(
                    "{} is {}; this server does not certify local names or addresses{}",
                    id.value,
                    kind.describe(),
                    if kind == Special::Localhost {
                        ""
                    } else {
                        " (allow_local_identifiers is off)"
                    }
                ));
            }
        }
        if !self.allow_server_names && self.covers_server_name(id) {
            return refuse(format!(
                "{} is a name of this ACME server's own certificate; it is not issued to clients (allow_server_names is off)",
                id.value
            ));
        }
        Ok(())
    }

    fn covers_server_name(&self, id: &Identifier) -> bool {
        let (target, wildcard) = id.authorization_target();
        self.server_names.iter().any(|s| {
            s.kind == target.kind
                && (s.value == target.value
                    || (wildcard
                        && s.value
                            .split_once('.')
                            .is_some_and(|(_, parent)| parent == target.value)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IdentifierPolicy {
        IdentifierPolicy {
            allow_local: false,
            allow_server_names: false,
            server_names: vec![
                Identifier::dns("acme.corp.example"),
                Identifier::ip("10.1.2.3"),
                Identifier::dns("localhost"),
                Identifier::ip("127.0.0.1"),
            ],
        }
    }

    #[test]
    fn local_and_special_identifiers_are_refused_by_default() {
        let p = policy();
        for refused in [
            Identifier::dns("localhost"),
            Identifier::dns("app.localhost"),
            Identifier::dns("x.invalid"),
            Identifier::ip("127.0.0.1"),
            Identifier::ip("127.0.0.2"),
            Identifier::ip("::1"),
            Identifier::ip("0.0.0.0"),
            Identifier::ip("::"),
            Identifier::ip("169.254.169.254"),
            Identifier::ip("fe80::1"),
            Identifier::ip("224.0.0.1"),
            Identifier::ip("255.255.255.255"),
            Identifier::ip("::ffff:127.0.0.1"),
            Identifier::dns("acme.corp.example"),
            Identifier::dns("*.corp.example"),
            Identifier::ip("10.1.2.3"),
        ] {
            let sub = p.check(&refused).unwrap_err();
            assert_eq!(
                sub.kind,
                ProblemType::RejectedIdentifier.urn(),
                "{refused:?}"
            );
            let detail = sub.detail.unwrap_or_default();
            assert!(detail.contains(&refused.value), "{detail}");
        }
        for ok in [
            Identifier::dns("web.corp.example"),
            Identifier::dns("*.web.corp.example"),
            Identifier::dns("corp.example"),
            Identifier::ip("10.1.2.4"),
            Identifier::ip("192.168.0.1"),
        ] {
            assert!(p.check(&ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn operator_settings_lift_only_what_they_name() {
        let mut p = policy();
        p.allow_local = true;
        assert!(p.check(&Identifier::ip("127.0.0.2")).is_ok());
        assert!(p.check(&Identifier::dns("app.localhost")).is_ok());
        assert!(p.check(&Identifier::ip("169.254.1.1")).is_ok());
        // Still a server name, and still never certifiable.
        assert!(p.check(&Identifier::ip("127.0.0.1")).is_err());
        assert!(p.check(&Identifier::ip("0.0.0.0")).is_err());
        assert!(p.check(&Identifier::ip("224.0.0.1")).is_err());
        p.allow_server_names = true;
        assert!(p.check(&Identifier::ip("127.0.0.1")).is_ok());
        assert!(p.check(&Identifier::dns("acme.corp.example")).is_ok());
        assert!(p.check(&Identifier::dns("x.invalid")).is_err());
    }
}
