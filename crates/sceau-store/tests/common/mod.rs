//! Records the store tests write: an account, an order with its authorization and challenges.
//! Every id is fresh, so a test can create as many as it needs in one database.

use sceau_store::{AccountRecord, AuthzRecord, ChallengeRecord, OrderRecord, new_id, now};
use sceau_wire::Identifier;

/// A valid account created from 192.0.2.1; `thumbprint` is its key's (unique in a store).
pub fn account(id: &str, thumbprint: &str) -> AccountRecord {
    AccountRecord {
        id: id.into(),
        thumbprint: thumbprint.into(),
        jwk: "{}".into(),
        status: "valid".into(),
        contact: vec![],
        tos_agreed: true,
        eab_kid: None,
        created_at: now(),
        created_ip: Some("192.0.2.1".into()),
    }
}

/// A pending order for `name` with one new pending authorization, which has a pending
/// challenge of each of `kinds`.
pub fn order(account_id: &str, name: &str, kinds: &[&str]) -> (OrderRecord, AuthzRecord) {
    let authz_id = new_id();
    let challenges = kinds
        .iter()
        .map(|kind| ChallengeRecord {
            id: new_id(),
            authz_id: authz_id.clone(),
            kind: (*kind).into(),
            status: "pending".into(),
            validated: None,
            error: None,
        })
        .collect();
    let authz = AuthzRecord {
        id: authz_id.clone(),
        account_id: account_id.into(),
        identifier: Identifier::dns(name),
        status: "pending".into(),
        expires: now() + 3600,
        token: new_id(),
        wildcard: false,
        created_at: now(),
        challenges,
    };
    let order = OrderRecord {
        id: new_id(),
        account_id: account_id.into(),
        status: "pending".into(),
        expires: now() + 3600,
        identifiers: vec![Identifier::dns(name)],
        authz_ids: vec![authz_id],
        not_before: None,
        not_after: None,
        profile: None,
        replaces: None,
        error: None,
        csr: None,
        cert_id: None,
        created_at: now(),
    };
    (order, authz)
}
