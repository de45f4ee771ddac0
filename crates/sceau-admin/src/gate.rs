//! The signing gate of the signing process (agency guide R35): before the CA signs, it checks
//! for itself, from its own connection to the database, what the front end already checked:
//! the ACME account is valid, its external account (AA) is valid and not expired, every name
//! is on the AA's list and the profile is one the AA allows.
//!
//! Invariants:
//! - It reads only: the account, then its AA. It needs no MAC key and writes nothing; the front
//!   end audits its own refusals, the signing process logs its own.
//! - A front end that sends a name the AA does not allow, for an account that is suspended or
//!   whose AA is suspended or expired, is refused here even if the front end let it through.

use sceau_acme::EabMode;
use sceau_store::{Store, StoreError};
use sceau_wire::Identifier;

use crate::names::refusal;

/// Why the gate refused, in one line; `Storage` when it could not read (retry later).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{0}")]
    Refused(String),
    #[error("the signing gate could not read the database: {0}")]
    Storage(StoreError),
}

/// Checks an issuance for `account_id` (see the module invariants). `profile`: the order's
/// profile name, `None` for the default.
pub async fn signing_gate(
    store: &Store,
    eab: EabMode,
    account_id: &str,
    identifiers: &[Identifier],
    profile: Option<&str>,
) -> Result<(), GateError> {
    let refused = |why: String| Err(GateError::Refused(format!("R35 signing gate: {why}")));
    let account = match store.account_by_id(account_id).await {
        Ok(a) => a,
        Err(StoreError::NotFound) => return refused(format!("no ACME account {account_id}")),
        Err(e) => return Err(GateError::Storage(e)),
    };
    if account.status != "valid" {
        return refused(format!(
            "the ACME account {account_id} is {}",
            account.status
        ));
    }
    let Some(kid) = &account.eab_kid else {
        return if eab == EabMode::Required {
            refused(format!(
                "the ACME account {account_id} is bound to no external account"
            ))
        } else {
            Ok(())
        };
    };
    let aa = match store.external_account(kid).await {
        Ok(aa) => aa,
        Err(StoreError::NotFound) => return refused(format!("no external account {kid}")),
        Err(e) => return Err(GateError::Storage(e)),
    };
    if let Some(why) = crate::policy::unusable(&aa) {
        return refused(why);
    }
    let off_list: Vec<String> = identifiers
        .iter()
        .filter_map(|id| {
            refusal(&aa.names, aa.wildcards, id).map(|why| format!("{}: {why}", id.value))
        })
        .collect();
    if !off_list.is_empty() {
        return refused(format!(
            "not allowed for external account {kid}: {}",
            off_list.join("; ")
        ));
    }
    if let Some(p) = profile
        && !aa.profiles.iter().any(|a| a == p)
    {
        return refused(format!(
            "profile {p:?} is not allowed for external account {kid}"
        ));
    }
    Ok(())
}
