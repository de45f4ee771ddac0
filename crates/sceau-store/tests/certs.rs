//! Administrators' certificate queries and the one revocation statement set, on SQLite and on a
//! real PostgreSQL server: every filter (wildcard coverage included), and a revocation that
//! commits its audit row and CRL dirty mark with it, or nothing at all.

mod common;

use common::Backend;

use std::collections::BTreeSet;

use sceau_store::*;

#[tokio::test]
async fn sqlite() {
    queries_and_revocation(Backend::Sqlite(tempfile::tempdir().unwrap())).await
}

#[tokio::test]
async fn postgres() {
    queries_and_revocation(Backend::Postgres(sceau_testkit::Postgres::start())).await
}

async fn found(store: &Store, q: CertQuery) -> BTreeSet<String> {
    store
        .find_certs(&CertQuery { now: now(), ..q })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.cert.serial)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

async fn queries_and_revocation(b: Backend) {
    let store = Store::open(&b.url()).await.unwrap();
    let mut a1 = common::account("a1", "t1");
    a1.eab_kid = Some("kid1".into());
    store.insert_account(&a1).await.unwrap();
    store
        .insert_account(&common::account("a2", "t2"))
        .await
        .unwrap();
    let t = now();
    common::issue(&store, "a1", &["www.a.test"], "01", t + 86400, t - 100).await;
    common::issue(&store, "a1", &["*.w.test", "a.test"], "02", t + 86400, t).await;
    common::issue(&store, "a1", &["old.a.test"], "03", t - 10, t - 200).await;
    let c4 = common::issue(&store, "a2", &["www_x.a.test"], "04", t + 9 * 86400, t).await;

    let q = CertQuery::default;
    assert_eq!(found(&store, q()).await, set(&["01", "02", "03", "04"]));
    // Names: exact, case-insensitive, through a wildcard (one label only); `_` matches itself.
    let by_name = |n: &str| CertQuery {
        name: Some(n.into()),
        ..q()
    };
    assert_eq!(found(&store, by_name("WWW.a.test")).await, set(&["01"]));
    assert_eq!(found(&store, by_name("x.w.test")).await, set(&["02"]));
    assert_eq!(found(&store, by_name("*.w.test")).await, set(&["02"]));
    assert!(found(&store, by_name("y.x.w.test")).await.is_empty());
    assert!(found(&store, by_name("w.test")).await.is_empty());
    assert_eq!(found(&store, by_name("a.test")).await, set(&["02"]));
    assert_eq!(found(&store, by_name("www_x.a.test")).await, set(&["04"]));
    assert!(found(&store, by_name("wwwyx.a.test")).await.is_empty());
    // Serial, account, external account, status, expiry, issuance time; combined.
    let serial = CertQuery {
        serial: Some("04".into()),
        ..q()
    };
    assert_eq!(found(&store, serial).await, set(&["04"]));
    let account = CertQuery {
        account_id: Some("a2".into()),
        ..q()
    };
    assert_eq!(found(&store, account).await, set(&["04"]));
    let external = CertQuery {
        external_kid: Some("kid1".into()),
        ..q()
    };
    assert_eq!(found(&store, external).await, set(&["01", "02", "03"]));
    let status = |s| CertQuery {
        status: Some(s),
        ..q()
    };
    assert_eq!(
        found(&store, status(CertStatus::Expired)).await,
        set(&["03"])
    );
    assert_eq!(
        found(&store, status(CertStatus::Valid)).await,
        set(&["01", "02", "04"])
    );
    assert!(found(&store, status(CertStatus::Revoked)).await.is_empty());
    let expiring = CertQuery {
        expires_before: Some(t + 2 * 86400),
        ..q()
    };
    assert_eq!(found(&store, expiring).await, set(&["01", "02", "03"]));
    let since = CertQuery {
        issued_since: Some(t - 100),
        account_id: Some("a1".into()),
        ..q()
    };
    assert_eq!(found(&store, since).await, set(&["01", "02"]));

    // A revocation: its audit row and the shard's dirty mark commit with it.
    store.add_crl_placeholder("ab", 1).await.unwrap();
    let dirty = |rows: Vec<CrlState>| rows.iter().map(|r| r.dirty).sum::<i64>();
    let before = dirty(store.crl_states().await.unwrap());
    let revoked = AuditEntry {
        event: "certificate.revoked",
        account_id: Some("a2"),
        client_ip: None,
        detail: serde_json::json!({"serial": "04", "reason": 1, "actor": "alice"}),
    };
    store
        .revoke_cert_audited(&c4.id, 1, now(), Some(&revoked))
        .await
        .unwrap();
    assert_eq!(dirty(store.crl_states().await.unwrap()), before + 1);
    assert_eq!(
        found(&store, status(CertStatus::Revoked)).await,
        set(&["04"])
    );
    let events = store.cert_audit_events("04").await.unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["certificate.issued", "certificate.revoked"]);
    assert_eq!(events[1].detail["actor"], "alice");
    assert!(store.cert_audit_events("0").await.unwrap().is_empty());
    assert!(store.cert_audit_events("%").await.unwrap().is_empty());
    // Again: refused, and neither an audit row nor a dirty mark is added.
    assert!(matches!(
        store
            .revoke_cert_audited(&c4.id, 4, now(), Some(&revoked))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.cert_audit_events("04").await.unwrap().len(), 2);
    assert_eq!(dirty(store.crl_states().await.unwrap()), before + 1);
    let c = store.cert_by_serial("04").await.unwrap();
    assert_eq!(c.revocation_reason, Some(1));
}
