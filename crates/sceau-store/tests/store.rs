//! The storage seam on SQLite: compare-and-swap transitions, atomic multi-row changes, and
//! that what was committed is there after reopening.

mod common;

use common::Backend;

use common::account;
use sceau_store::*;
use sceau_wire::{Problem, ProblemType};

async fn open(b: &Backend) -> Store {
    Store::open(&b.url()).await.unwrap()
}

/// Runs each test body against both backends: the SQL is meant to be portable, so it is tested
/// on both.
macro_rules! both_backends {
    ($($name:ident => $body:ident;)*) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$body(super::Backend::Sqlite(tempfile::tempdir().unwrap())).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$body(super::Backend::Postgres(sceau_testkit::Postgres::start())).await })*
        }
    };
}

both_backends! {
    account_key_is_unique_and_status_is_cas => account_key_is_unique_and_status_is_cas;
    key_change_refuses_a_key_in_use => key_change_refuses_a_key_in_use;
    challenge_and_authz_move_together => challenge_and_authz_move_together;
    certificate_and_order_commit_together_and_survive_reopen => certificate_and_order_commit_together_and_survive_reopen;
}

fn audit(event: &'static str) -> AuditEntry<'static> {
    AuditEntry {
        event,
        account_id: Some("a1"),
        client_ip: Some("192.0.2.1"),
        detail: serde_json::json!({"test": event}),
    }
}

/// Audit events of account `a1` with this name.
async fn audited(store: &Store, event: &str) -> usize {
    let all = store.audit_events(Some("a1"), 0).await.unwrap();
    all.iter().filter(|e| e.event == event).count()
}

fn order_with_authz(account_id: &str) -> (OrderRecord, AuthzRecord) {
    common::order(account_id, "a.test", &["http-01"])
}

async fn account_key_is_unique_and_status_is_cas(dir: Backend) {
    let store = open(&dir).await;
    store.insert_account(&account("a1", "t1")).await.unwrap();
    assert!(matches!(
        store.insert_account(&account("a2", "t1")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count(Table::Accounts).await.unwrap(), 1);
    store
        .set_account_status("a1", "valid", "deactivated")
        .await
        .unwrap();
    assert!(matches!(
        store.set_account_status("a1", "valid", "deactivated").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.account_by_id("nope").await,
        Err(StoreError::NotFound)
    ));
}

async fn key_change_refuses_a_key_in_use(dir: Backend) {
    let store = open(&dir).await;
    store.insert_account(&account("a1", "t1")).await.unwrap();
    store.insert_account(&account("a2", "t2")).await.unwrap();
    assert!(matches!(
        store.change_account_key("a1", "t1", "t2", "{}").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .change_account_key("a1", "wrong-old", "t3", "{}")
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .change_account_key("a1", "t1", "t3", "{\"k\":1}")
        .await
        .unwrap();
    assert_eq!(store.account_by_thumbprint("t3").await.unwrap().id, "a1");
}

async fn challenge_and_authz_move_together(dir: Backend) {
    let store = open(&dir).await;
    let (order, authz) = order_with_authz("a1");
    store
        .create_order(
            &order,
            std::slice::from_ref(&authz),
            &audit("order.created"),
        )
        .await
        .unwrap();
    let ch = &authz.challenges[0];
    // finishing a challenge that never started is refused and changes nothing
    assert!(
        store
            .finish_challenge(
                &ch.id,
                &authz.id,
                None,
                now(),
                &audit("validation.succeeded")
            )
            .await
            .is_err()
    );
    assert_eq!(audited(&store, "order.created").await, 1);
    assert_eq!(
        audited(&store, "validation.succeeded").await,
        0,
        "a refused change left an audit row"
    );
    store
        .start_challenge(&ch.id, &authz.id, now() + 120)
        .await
        .unwrap();
    assert!(matches!(
        store.start_challenge(&ch.id, &authz.id, now() + 120).await,
        Err(StoreError::Conflict(_))
    ));
    let problem = Problem::new(ProblemType::IncorrectResponse, "wrong body");
    store
        .finish_challenge(
            &ch.id,
            &authz.id,
            Some(&problem),
            now(),
            &audit("validation.failed"),
        )
        .await
        .unwrap();
    assert_eq!(audited(&store, "validation.failed").await, 1);
    let got = store.authz_by_id(&authz.id).await.unwrap();
    assert_eq!(got.status, "invalid");
    assert_eq!(got.challenges[0].status, "invalid");
    assert_eq!(
        got.challenges[0].error.as_ref().unwrap().detail.as_deref(),
        Some("wrong body")
    );
}

async fn certificate_and_order_commit_together_and_survive_reopen(dir: Backend) {
    let (order, authz) = order_with_authz("a1");
    let cert = CertRecord {
        id: new_id(),
        serial: "0a0b".into(),
        account_id: "a1".into(),
        order_id: order.id.clone(),
        der: vec![0x30, 0x03, 1, 2, 3],
        chain_pem: "PEM".into(),
        not_before: now(),
        not_after: now() + 86400,
        ari_id: "AQ.Cg".into(),
        spki_sha256: "ff".into(),
        issuer_id: Some("ab".into()),
        crl_shard: Some(3),
        revoked_at: None,
        revocation_reason: None,
        replaced_by: None,
        created_at: now(),
        replaces: None,
    };
    {
        let store = open(&dir).await;
        store
            .create_order(&order, &[authz], &audit("order.created"))
            .await
            .unwrap();
        // not processing yet: refused, and no certificate row appears
        assert!(
            store
                .finish_order(&cert, &audit("certificate.issued"))
                .await
                .is_err()
        );
        assert_eq!(store.count(Table::Certificates).await.unwrap(), 0);
        assert_eq!(
            audited(&store, "certificate.issued").await,
            0,
            "a refused issuance was audited"
        );
        store
            .set_order_status(&order.id, "pending", "ready", None)
            .await
            .unwrap();
        store.start_processing(&order.id, "csr").await.unwrap();
        store
            .finish_order(&cert, &audit("certificate.issued"))
            .await
            .unwrap();
    }
    let store = open(&dir).await;
    let got = store.order_by_id(&order.id).await.unwrap();
    assert_eq!(got.status, "valid");
    assert_eq!(got.cert_id.as_deref(), Some(cert.id.as_str()));
    assert_eq!(audited(&store, "certificate.issued").await, 1);
    let c = store.cert_by_serial("0a0b").await.unwrap();
    assert_eq!(c.der, cert.der);
    assert!(store.spki_seen("ff").await.unwrap());
    store.revoke_cert(&c.id, 1, now()).await.unwrap();
    assert!(matches!(
        store.revoke_cert(&c.id, 1, now()).await,
        Err(StoreError::Conflict(_))
    ));
}

/// Under a steady stream of commits the SQLite WAL is checkpointed and started over, so it stays
/// bounded (a WAL that only grows makes every read slower and the disk fill up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_under_continuous_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let wal = dir.path().join("t.db-wal");
    let entry = AuditEntry {
        event: "load.test",
        account_id: Some("a1"),
        client_ip: None,
        detail: serde_json::json!({"padding": "x".repeat(2000)}),
    };
    let mut largest = 0;
    for i in 0..6000 {
        store.audit(&entry).await.unwrap();
        if i % 100 == 0 {
            // Let the background checkpoint take its turn, as request handling would.
            tokio::task::yield_now().await;
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
    }
    assert_eq!(store.count(Table::Audit).await.unwrap(), 6000);
    // Each commit appends about 30 KB (the row, its index pages, the header page): 180 MB for a
    // WAL that never starts over, about 31 MB with a checkpoint every 1000 commits.
    assert!(
        largest < 64 * 1024 * 1024,
        "the WAL grew to {largest} bytes"
    );
    assert!(largest > 0, "no WAL file was seen: not in WAL mode?");
}
