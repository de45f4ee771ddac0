//! The fleet manager's storage on SQLite and on a real PostgreSQL server: enrolment tokens are
//! single-use and expire, every certificate transition is compare-and-swap with its audit row,
//! a key is accepted once, and a result computed for a replaced CSR never becomes current.

mod common;

use common::Backend;
use sceau_store::fleet::*;
use sceau_store::{StoreError, now};

#[tokio::test]
async fn sqlite() {
    transitions(Backend::Sqlite(tempfile::tempdir().unwrap())).await
}

#[tokio::test]
async fn postgres() {
    transitions(Backend::Postgres(sceau_testkit::Postgres::start())).await
}

fn audit(action: &str) -> FleetAudit {
    FleetAudit::new("test", action).about("web1", None)
}

fn archived(serial: &str, spki: &str, not_before: i64) -> ArchivedCert {
    ArchivedCert {
        serial: serial.into(),
        agent: "web1".into(),
        cert_name: "web".into(),
        names: vec!["www.example.org".into()],
        spki_sha256: spki.into(),
        not_before,
        not_after: not_before + 90 * 86400,
        renew_at: not_before + 60 * 86400,
        ari_id: None,
        ari_checked_at: None,
        chain_pem: format!("chain {serial}"),
        issued_at: now(),
        picked_up_at: None,
        revoked_at: None,
    }
}

async fn transitions(b: Backend) {
    let store = FleetStore::open(&b.url()).await.unwrap();
    // Opening again finds the schema applied.
    let store2 = FleetStore::open(&b.url()).await.unwrap();
    let allowed = vec!["*.example.org".to_owned()];

    // Tokens: an expired one enrols nobody; a good one once.
    store
        .invite_agent(
            "old",
            &allowed,
            "tok-old",
            now() - 1,
            &audit("agent.invited"),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.enrol("tok-old", "fp-old").await,
        Err(StoreError::NotFound)
    ));
    store
        .invite_agent(
            "web1",
            &allowed,
            "tok1",
            now() + 600,
            &audit("agent.invited"),
        )
        .await
        .unwrap();
    let a = store.enrol("tok1", "fp1").await.unwrap();
    assert_eq!(
        (a.status.as_str(), a.fingerprint.as_deref()),
        ("active", Some("fp1"))
    );
    assert!(matches!(
        store2.enrol("tok1", "fp2").await,
        Err(StoreError::NotFound)
    ));
    // An enrolled agent is not invited again.
    assert!(matches!(
        store
            .invite_agent(
                "web1",
                &allowed,
                "tok9",
                now() + 600,
                &audit("agent.invited")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.agent_by_fingerprint("fp1").await.unwrap().name,
        "web1"
    );

    // First CSR, then the same key again: refused, nothing changed.
    let names = vec!["www.example.org".to_owned()];
    store
        .submit_csr(
            "web1",
            "web",
            &names,
            "csr1",
            "k1",
            Replace::WhenDue,
            &audit("csr.submitted"),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.submit_csr("web1", "web", &names, "csr1b", "k1", Replace::WhenDue, &audit("x")).await,
        Err(StoreError::Conflict(w)) if w == "key reused"
    ));
    assert_eq!(
        store.cert("web1", "web").await.unwrap().csr.as_deref(),
        Some("csr1")
    );
    // A pending CSR may be replaced; the worker's result for the old one is archived but not
    // made current.
    store
        .submit_csr(
            "web1",
            "web",
            &names,
            "csr2",
            "k2",
            Replace::WhenDue,
            &audit("csr.submitted"),
        )
        .await
        .unwrap();
    let t = now();
    assert!(
        !store
            .record_issued("csr1", &archived("01", "k1", t))
            .await
            .unwrap()
    );
    assert_eq!(store.cert("web1", "web").await.unwrap().state, "pending");
    assert!(
        store
            .record_issued("csr2", &archived("02", "k2", t))
            .await
            .unwrap()
    );
    let c = store.cert("web1", "web").await.unwrap();
    assert_eq!(
        (c.state.as_str(), c.serial.as_deref(), c.csr),
        ("issued", Some("02"), None)
    );

    // Issued and not due: a new CSR is refused unless it asks to replace.
    assert!(matches!(
        store.submit_csr("web1", "web", &names, "csr3", "k3", Replace::WhenDue, &audit("x")).await,
        Err(StoreError::Conflict(s)) if s == "issued"
    ));
    // The refused attempt must not have burnt its key either.
    store
        .submit_csr(
            "web1",
            "web",
            &names,
            "csr3",
            "k3",
            Replace::Always,
            &audit("csr.submitted"),
        )
        .await
        .unwrap();
    // A transient failure retries; a refusal drops the CSR and asks for a new one.
    store
        .record_failure("web1", "web", "csr3", "down", Some(now() + 60))
        .await
        .unwrap();
    let c = store.cert("web1", "web").await.unwrap();
    assert_eq!((c.state.as_str(), c.attempts), ("pending", 1));
    assert!(
        store.pending(10).await.unwrap().is_empty(),
        "retry time not reached"
    );
    store
        .record_failure("web1", "web", "csr3", "badCSR", None)
        .await
        .unwrap();
    let c = store.cert("web1", "web").await.unwrap();
    assert_eq!((c.state.as_str(), c.csr), ("failed", None));
    // A failure reported for a CSR that is no longer pending changes nothing.
    store
        .record_failure("web1", "web", "csr3", "late", Some(0))
        .await
        .unwrap();
    assert_eq!(
        store
            .cert("web1", "web")
            .await
            .unwrap()
            .last_error
            .as_deref(),
        Some("badCSR")
    );

    // Renewal marking: only the current serial, only from issued.
    store
        .submit_csr(
            "web1",
            "web",
            &names,
            "csr4",
            "k4",
            Replace::WhenDue,
            &audit("csr.submitted"),
        )
        .await
        .unwrap();
    assert!(
        store
            .record_issued("csr4", &archived("04", "k4", t))
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_due("web1", "web", "02", "old serial")
            .await
            .unwrap()
    );
    assert!(store.mark_due("web1", "web", "04", "test").await.unwrap());
    assert!(!store.mark_due("web1", "web", "04", "again").await.unwrap());
    let current = store.current().await.unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(
        (current[0].0.state.as_str(), current[0].1.serial.as_str()),
        ("due", "04")
    );

    // Pickup, archive, revocation.
    store.picked_up("web1", "04").await.unwrap();
    assert!(store.archived("04").await.unwrap().picked_up_at.is_some());
    assert!(matches!(
        store.picked_up("someone", "04").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.archive(Some("web1"), None).await.unwrap().len(), 3);
    store
        .record_revoked("04", 4, &audit("certificate.revoked"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .record_revoked("04", 4, &audit("certificate.revoked"))
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Revoking the agent drops its pending CSRs and keeps it known.
    store
        .submit_csr(
            "web1",
            "api",
            &names,
            "csr5",
            "k5",
            Replace::WhenDue,
            &audit("csr.submitted"),
        )
        .await
        .unwrap();
    store
        .revoke_agent("web1", &audit("agent.revoked"))
        .await
        .unwrap();
    assert_eq!(store.cert("web1", "api").await.unwrap().state, "failed");
    assert_eq!(
        store.agent_by_fingerprint("fp1").await.unwrap().status,
        "revoked"
    );
    assert!(
        store
            .revoke_agent("web1", &audit("agent.revoked"))
            .await
            .is_err()
    );

    let actions: Vec<String> = store
        .audit_events(Some("web1"), 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "agent.enrolled",
        "certificate.issued",
        "issuance.retry",
        "issuance.refused",
        "renewal.due",
        "certificate.installed",
        "agent.revoked",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
}
