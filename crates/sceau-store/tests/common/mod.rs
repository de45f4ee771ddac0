//! Records the store tests write: an account, an order with its authorization and challenges,
//! an issued certificate. Every id is fresh, so a test can create as many as it needs in one
//! database.
#![allow(dead_code)]

use sceau_store::{
    AccountRecord, AuditEntry, AuthzRecord, CertRecord, ChallengeRecord, OrderRecord, Store,
    new_id, now,
};
use sceau_wire::Identifier;

/// The backend under test: SQLite in a temp dir, or a real PostgreSQL server.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(sceau_testkit::Postgres),
}

impl Backend {
    pub fn url(&self) -> String {
        match self {
            Backend::Sqlite(dir) => format!("sqlite://{}", dir.path().join("t.db").display()),
            Backend::Postgres(pg) => pg.url.clone(),
        }
    }
}

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
        star: None,
    };
    (order, authz)
}

/// Issues a certificate for `names` to `account` through the order flow the server uses.
pub async fn issue(
    store: &Store,
    account: &str,
    names: &[&str],
    serial: &str,
    not_after: i64,
    created_at: i64,
) -> CertRecord {
    let (mut order, authz) = order(account, names[0], &["http-01"]);
    order.identifiers = names.iter().map(|n| Identifier::dns(*n)).collect();
    store
        .create_order(
            &order,
            &[authz],
            &AuditEntry {
                event: "order.created",
                account_id: None,
                client_ip: None,
                detail: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    store
        .set_order_status(&order.id, "pending", "ready", None)
        .await
        .unwrap();
    store.start_processing(&order.id, "csr").await.unwrap();
    let cert = CertRecord {
        id: new_id(),
        serial: serial.into(),
        account_id: account.into(),
        order_id: order.id.clone(),
        der: vec![0x30, 0x00],
        chain_pem: "PEM".into(),
        not_before: created_at,
        not_after,
        ari_id: format!("AQ.{serial}"),
        spki_sha256: serial.into(),
        issuer_id: Some("ab".into()),
        crl_shard: Some(1),
        revoked_at: None,
        revocation_reason: None,
        replaced_by: None,
        created_at,
        replaces: None,
    };
    let issued = AuditEntry {
        event: "certificate.issued",
        account_id: Some(account),
        client_ip: None,
        detail: serde_json::json!({"serial": serial}),
    };
    store.finish_order(&cert, &issued).await.unwrap();
    cert
}
