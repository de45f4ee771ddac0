//! The issuance policy of the agency guide, as the ACME services' [`Policy`]: EAB MAC keys of
//! usable AAs only (R9, R14, R19), names on the AA's list only (R26, R27, R34, R35, R42), and the
//! AA's certificate profiles only.
//!
//! Invariants:
//! - Nothing is cached: every hook reads the AA from the store, so a name removed, a key
//!   regenerated or an AA suspended by an admin command (another process) counts from the next
//!   request on, at newOrder, at finalize and at the signing gate alike.
//! - Every refusal is written to the audit trail (`policy.refused`, `eab.refused`) before it
//!   is returned.
//! - Unless EAB is off, revocation follows R44/R46 ([`Policy::strict_revocation`]): the issuing
//!   account, an account of the same AA, or the certificate's key; authorizations do not suffice.
//! - An ACME account without an AA is refused everything when EAB is `required` (accounts made
//!   before the switch); under `optional` or `off` it is not restricted by this policy.

use sceau_acme::{AcmeError, AcmeResult, BoxFuture, EabMode, Policy};
use sceau_store::{AccountRecord, AuditEntry, ExternalAccountRecord, now};
use std::sync::Arc;

use sceau_wire::eab::MacInput;
use sceau_wire::{Identifier, ProblemType, Subproblem};
use serde_json::json;

use crate::Registry;
use crate::names::refusal;

/// Why an AA authorises nothing now (suspended, deactivated, expired), or `None`: the one rule,
/// for the front end's policy and the signing gate alike.
pub(crate) fn unusable(aa: &ExternalAccountRecord) -> Option<String> {
    let kid = &aa.kid;
    if aa.status != "valid" {
        Some(format!(
            "the external account {kid} of this account is {}",
            aa.status
        ))
    } else if aa.not_after <= now() {
        Some(format!(
            "the external account {kid} of this account has expired; ask your administrator to renew it"
        ))
    } else {
        None
    }
}

/// Checks a binding's MAC where the MAC keys are (the signer of a split deployment): `None`
/// if the external account cannot bind now, or the reason it could not be asked.
pub type MacOracle =
    Arc<dyn Fn(String, MacInput) -> BoxFuture<'static, Result<Option<bool>, String>> + Send + Sync>;

pub struct AdminPolicy {
    registry: Registry,
    eab: EabMode,
    /// Where MACs are checked when this process holds no MAC key.
    oracle: Option<MacOracle>,
}

impl AdminPolicy {
    pub fn new(registry: Registry, eab: EabMode) -> Self {
        AdminPolicy {
            registry,
            eab,
            oracle: None,
        }
    }

    /// A policy whose MAC checks go to `oracle` (the registry then needs no wrap key).
    pub fn with_mac_oracle(registry: Registry, eab: EabMode, oracle: MacOracle) -> Self {
        AdminPolicy {
            registry,
            eab,
            oracle: Some(oracle),
        }
    }

    async fn refuse(&self, account: Option<&str>, what: &str, detail: serde_json::Value) {
        let entry = AuditEntry {
            event: what,
            account_id: account,
            client_ip: None,
            detail,
        };
        entry.log();
        if let Err(e) = self.registry.store().audit(&entry).await {
            tracing::error!(error = %e, "could not write the audit trail");
        }
    }

    /// The usable AA of an ACME account, or the refusal to return.
    async fn external_of(
        &self,
        account: &AccountRecord,
    ) -> AcmeResult<Option<sceau_store::ExternalAccountRecord>> {
        let Some(kid) = &account.eab_kid else {
            if self.eab == EabMode::Required {
                let err = AcmeError::unauthorized(
                    "this account is not bound to an external account, which this server requires; create a new account with your EAB key id and MAC key",
                );
                self.refuse(
                    Some(&account.id),
                    "policy.refused",
                    json!({"reason": "unbound"}),
                )
                .await;
                return Err(err);
            }
            return Ok(None);
        };
        let aa = self
            .registry
            .get(kid)
            .await
            .map_err(|e| AcmeError::internal("reading the external account", e))?;
        if let Some(why) = unusable(&aa) {
            self.refuse(
                Some(&account.id),
                "policy.refused",
                json!({"kid": kid, "reason": why}),
            )
            .await;
            return Err(AcmeError::unauthorized(why));
        }
        Ok(Some(aa))
    }
}

impl Policy for AdminPolicy {
    fn strict_revocation(&self) -> bool {
        // With EAB off there are no AAs to share rights through: RFC 8555 §7.6 alone applies.
        self.eab != EabMode::Off
    }

    fn check_mac<'a>(
        &'a self,
        kid: &'a str,
        input: &'a MacInput,
    ) -> BoxFuture<'a, AcmeResult<Option<bool>>> {
        Box::pin(async move {
            if let Some(oracle) = &self.oracle {
                return match oracle(kid.to_owned(), input.clone()).await {
                    Ok(None) => {
                        self.refuse(
                            None,
                            "eab.refused",
                            json!({"kid": kid, "reason": "unknown or not usable (the signer's answer)"}),
                        )
                        .await;
                        Ok(None)
                    }
                    Ok(answer) => Ok(answer),
                    Err(e) => Err(AcmeError::internal(
                        "checking the binding with the signer",
                        e,
                    )),
                };
            }
            match self.registry.usable_mac_key(kid).await {
                Ok(Ok(key)) => Ok(Some(input.matches(&key))),
                Ok(Err(why)) => {
                    self.refuse(None, "eab.refused", json!({"kid": kid, "reason": why}))
                        .await;
                    Ok(None)
                }
                Err(e) => Err(AcmeError::internal("reading the external account", e)),
            }
        })
    }

    fn check_identifiers<'a>(
        &'a self,
        account: &'a AccountRecord,
        identifiers: &'a [Identifier],
    ) -> BoxFuture<'a, AcmeResult<()>> {
        Box::pin(async move {
            let Some(aa) = self.external_of(account).await? else {
                return Ok(());
            };
            let subproblems: Vec<Subproblem> = identifiers
                .iter()
                .filter_map(|id| {
                    refusal(&aa.names, aa.wildcards, id).map(|why| {
                        Subproblem::new(
                            ProblemType::RejectedIdentifier,
                            format!("{why} of external account {}", aa.kid),
                            id.clone(),
                        )
                    })
                })
                .collect();
            if subproblems.is_empty() {
                return Ok(());
            }
            let refused: Vec<&str> = subproblems
                .iter()
                .filter_map(|s| s.identifier.as_ref().map(|i| i.value.as_str()))
                .collect();
            let detail = format!(
                "not allowed for external account {}: {}",
                aa.kid,
                refused.join(", ")
            );
            self.refuse(
                Some(&account.id),
                "policy.refused",
                json!({"kid": aa.kid, "reason": "names", "identifiers": refused}),
            )
            .await;
            Err(AcmeError::new(ProblemType::RejectedIdentifier, detail)
                .with_subproblems(subproblems))
        })
    }

    fn check_profile<'a>(
        &'a self,
        account: &'a AccountRecord,
        profile: &'a str,
    ) -> BoxFuture<'a, AcmeResult<()>> {
        Box::pin(async move {
            let Some(aa) = self.external_of(account).await? else {
                return Ok(());
            };
            if aa.profiles.iter().any(|p| p == profile) {
                return Ok(());
            }
            self.refuse(
                Some(&account.id),
                "policy.refused",
                json!({"kid": aa.kid, "reason": "profile", "profile": profile}),
            )
            .await;
            Err(AcmeError::new(
                ProblemType::InvalidProfile,
                format!(
                    "profile {profile:?} is not allowed for external account {}; allowed: {}",
                    aa.kid,
                    aa.profiles.join(", ")
                ),
            ))
        })
    }
}
