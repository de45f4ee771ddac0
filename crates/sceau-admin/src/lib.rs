//! External admin accounts of sceau-server ("AA" in the security agency's ACME guide, the
//! external accounts of RFC 8555 §7.3.4): the registry administrators drive from the command
//! line, the sealing of MAC keys at rest, the issuance [`policy::AdminPolicy`] the ACME services
//! consult, and per-AA reports.
//!
//! Invariants:
//! - A MAC key exists in clear only in memory: when it is generated (handed once to the
//!   administrator) and when the policy verifies a binding. At rest it is sealed ([`wrap`]).
//! - Every registry operation names its actor and lands in the change history and the audit
//!   trail in the same transaction as the change (see `sceau_store::external`).
//! - An AA is valid at most [`MAX_VALIDITY_SECS`] (agency guide R8); an expired, suspended or
//!   deactivated AA binds no new ACME account and authorises no issuance.

pub mod gate;
pub mod names;
pub mod policy;
pub mod registry;
pub mod report;
pub mod wrap;

use sceau_store::StoreError;

pub use policy::{AdminPolicy, MacOracle};
pub use registry::{Created, NewExternalAccount, Registry};
pub use report::Report;
pub use wrap::WrapKey;

/// R8: three years (with one leap day).
pub const MAX_VALIDITY_SECS: i64 = (3 * 365 + 1) * 86400;
/// Default validity of a new AA.
pub const DEFAULT_VALIDITY_SECS: i64 = 365 * 86400;
/// The certificate profiles sceau-server offers (draft-ietf-acme-profiles); the first is the
/// default every AA may use.
pub const PROFILES: [&str; 2] = ["tls-server", "tls-server-client"];

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The administrator's input is not acceptable; the text says why and what to do.
    #[error("{0}")]
    Invalid(String),
    #[error("no external account {0:?} (see `sceau-server admin account list`)")]
    UnknownExternalAccount(String),
    #[error("no ACME account {0:?} (see `sceau-server admin account show KID`)")]
    UnknownAcmeAccount(String),
    /// The object is not in a state that allows the operation.
    #[error("{0}")]
    State(String),
    #[error("EAB wrap key: {0}")]
    WrapKey(String),
    #[error(
        "the MAC key of external account {0} does not open with this server's eab-wrap.key (was the file replaced, or the database copied from another server?)"
    )]
    Unseal(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

pub(crate) use sceau_wire::hex::encode as hex;

/// Parses a duration such as `90d`, `2w`, `12h` or `3y` into seconds; a year is 365 days.
pub fn parse_duration(text: &str) -> Result<i64, AdminError> {
    let d = sceau_wire::duration::parse(text).map_err(AdminError::Invalid)?;
    i64::try_from(d.as_secs()).map_err(|_| AdminError::Invalid(format!("{text:?} is too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3y").unwrap(), 3 * 365 * 86400);
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86400);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86400);
        assert_eq!(parse_duration("12h").unwrap(), 12 * 3600);
        for bad in [
            "",
            "3",
            "y",
            "0d",
            "-1d",
            "3 years",
            "1.5y",
            "99999999999999999y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
