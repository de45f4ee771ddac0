//! The AA registry and policy over a real SQLite store: each rule with its refused case next to
//! the allowed one, and that a refused command changed nothing.

use std::sync::Arc;

use sceau_acme::{EabMode, Policy};
use sceau_admin::{AdminError, AdminPolicy, NewExternalAccount, Registry, WrapKey};
use sceau_store::{AccountRecord, Store, Table, new_id, now};
use sceau_wire::{Identifier, ProblemType};

struct Env {
    _dir: tempfile::TempDir,
    registry: Registry,
    store: Store,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let wrap = Arc::new(WrapKey::load_or_create(dir.path()).unwrap());
    Env {
        registry: Registry::new(store.clone(), wrap),
        store,
        _dir: dir,
    }
}

fn request(names: &[&str]) -> NewExternalAccount {
    NewExternalAccount {
        owner: "Alice Martin <alice@example.org>".into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        valid_for_secs: 365 * 86400,
        ..Default::default()
    }
}

async fn bind(store: &Store, kid: &str) -> AccountRecord {
    let a = AccountRecord {
        id: new_id(),
        thumbprint: new_id(),
        jwk: "{}".into(),
        status: "valid".into(),
        contact: vec![],
        tos_agreed: true,
        eab_kid: Some(kid.into()),
        created_at: now(),
        created_ip: None,
    };
    store.insert_account(&a).await.unwrap();
    a
}

async fn status(store: &Store, id: &str) -> String {
    store.account_by_id(id).await.unwrap().status
}

#[tokio::test]
async fn create_requires_owner_names_and_at_most_three_years() {
    let e = env().await;
    let mut no_owner = request(&["a.test"]);
    no_owner.owner = String::new();
    assert!(matches!(
        e.registry.create(&no_owner, "op").await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        e.registry.create(&request(&[]), "op").await,
        Err(AdminError::Invalid(_))
    ));
    let mut too_long = request(&["a.test"]);
    too_long.valid_for_secs = sceau_admin::parse_duration("4y").unwrap();
    let err = e.registry.create(&too_long, "op").await.unwrap_err();
    assert!(err.to_string().contains("3 years"), "{err}");
    assert!(matches!(
        e.registry.create(&request(&["*.a.test"]), "op").await,
        Err(AdminError::Invalid(_))
    ));
    assert!(
        e.registry.list().await.unwrap().is_empty(),
        "a refused create left a row"
    );

    let mut three = request(&["A.Test", "b.test"]);
    three.valid_for_secs = sceau_admin::parse_duration("3y").unwrap();
    let created = e.registry.create(&three, "op").await.unwrap();
    assert_eq!(created.mac_key.len(), 32);
    let aa = e.registry.get(&created.account.kid).await.unwrap();
    assert_eq!(
        aa.names.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["a.test", "b.test"]
    );
    assert_eq!(aa.owner, "Alice Martin <alice@example.org>");
    assert_eq!(aa.profiles, ["tls-server"]);
    assert!(
        !aa.mac_key_sealed
            .windows(32)
            .any(|w| w == created.mac_key.as_slice()),
        "MAC key stored in clear"
    );
    let history = e.store.external_changes(&aa.kid, 0).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].actor.as_str(), history[0].action.as_str()),
        ("op", "external_account.created")
    );
}

#[tokio::test]
async fn regenerated_key_replaces_the_old_one() {
    let e = env().await;
    let c = e
        .registry
        .create(&request(&["a.test"]), "op")
        .await
        .unwrap();
    let kid = &c.account.kid;
    assert_eq!(
        e.registry.usable_mac_key(kid).await.unwrap().unwrap(),
        c.mac_key
    );
    let (new_key, count) = e.registry.regenerate_key(kid, "op").await.unwrap();
    assert_eq!(count, 1);
    assert_ne!(new_key, c.mac_key);
    assert_eq!(
        e.registry.usable_mac_key(kid).await.unwrap().unwrap(),
        new_key
    );
    assert_eq!(e.registry.get(kid).await.unwrap().key_regenerations, 1);
}

#[tokio::test]
async fn suspension_cascades_and_keeps_individual_holds() {
    let e = env().await;
    let c = e
        .registry
        .create(&request(&["a.test"]), "op")
        .await
        .unwrap();
    let kid = c.account.kid.clone();
    let a1 = bind(&e.store, &kid).await;
    let a2 = bind(&e.store, &kid).await;

    // a2 suspended on its own, then the AA suspended and resumed: a2 stays suspended.
    e.registry.suspend_acme_account(&a2.id, "op").await.unwrap();
    assert!(matches!(
        e.registry.suspend_acme_account(&a2.id, "op").await,
        Err(AdminError::State(_))
    ));
    e.registry.suspend(&kid, "op").await.unwrap();
    assert_eq!(status(&e.store, &a1.id).await, "suspended");
    assert_eq!(
        e.registry.usable_mac_key(&kid).await.unwrap().unwrap_err(),
        "suspended"
    );
    assert!(matches!(
        e.registry.suspend(&kid, "op").await,
        Err(AdminError::State(_))
    ));
    // Resuming a2 alone while its AA is suspended keeps it suspended.
    let r = e.registry.resume_acme_account(&a2.id, "op").await.unwrap();
    assert!(r.still_held_by_external);
    e.registry.suspend_acme_account(&a2.id, "op").await.unwrap();
    e.registry.resume(&kid, "op").await.unwrap();
    assert_eq!(status(&e.store, &a1.id).await, "valid");
    assert_eq!(status(&e.store, &a2.id).await, "suspended");
    let r = e.registry.resume_acme_account(&a2.id, "op").await.unwrap();
    assert_eq!(r.status, "valid");

    // Deactivation cascades and is final.
    e.registry.deactivate(&kid, "op").await.unwrap();
    assert_eq!(status(&e.store, &a1.id).await, "deactivated");
    assert_eq!(status(&e.store, &a2.id).await, "deactivated");
    assert!(matches!(
        e.registry.resume(&kid, "op").await,
        Err(AdminError::State(_))
    ));
    assert!(matches!(
        e.registry
            .add_names(&kid, &["b.test".into()], false, "op")
            .await,
        Err(AdminError::State(_))
    ));
    assert!(matches!(
        e.registry.regenerate_key(&kid, "op").await,
        Err(AdminError::State(_))
    ));
    assert!(matches!(
        e.registry.resume_acme_account(&a1.id, "op").await,
        Err(AdminError::State(_))
    ));
    assert_eq!(
        e.registry.usable_mac_key(&kid).await.unwrap().unwrap_err(),
        "deactivated"
    );
    assert!(matches!(
        e.registry.suspend("nope", "op").await,
        Err(AdminError::UnknownExternalAccount(_))
    ));
    assert!(matches!(
        e.registry.suspend_acme_account("nope", "op").await,
        Err(AdminError::UnknownAcmeAccount(_))
    ));

    let actions: Vec<String> = e
        .store
        .external_changes(&kid, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.action)
        .collect();
    for a in [
        "external_account.suspended",
        "external_account.resumed",
        "external_account.deactivated",
        "acme_account.suspended",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    let audit = e.store.audit_events(None, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event == "admin.acme_account.suspended"
                && r.account_id.as_deref() == Some(a2.id.as_str()))
    );
}

#[tokio::test]
async fn policy_checks_names_status_expiry_and_profiles() {
    let e = env().await;
    let c = e
        .registry
        .create(&request(&["www.a.test"]), "op")
        .await
        .unwrap();
    let kid = c.account.kid.clone();
    e.registry
        .add_names(&kid, &["corp.test".into()], true, "op")
        .await
        .unwrap();
    let acct = bind(&e.store, &kid).await;
    let policy = AdminPolicy::new(e.registry.clone(), EabMode::Required);

    assert!(
        policy
            .check_identifiers(
                &acct,
                &[
                    Identifier::dns("www.a.test"),
                    Identifier::dns("x.corp.test")
                ]
            )
            .await
            .is_ok()
    );
    let audit_before = e.store.count(Table::Audit).await.unwrap();
    let err = policy
        .check_identifiers(
            &acct,
            &[
                Identifier::dns("www.a.test"),
                Identifier::dns("a.test"),
                Identifier::dns("sub.www.a.test"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::RejectedIdentifier);
    let refused: Vec<_> = err
        .subproblems
        .iter()
        .map(|s| s.identifier.clone().unwrap().value)
        .collect();
    assert_eq!(
        refused,
        ["a.test", "sub.www.a.test"],
        "one subproblem per refused name"
    );
    assert_eq!(
        e.store.count(Table::Audit).await.unwrap(),
        audit_before + 1,
        "refusal not audited"
    );

    // Removing a name takes effect on the next check.
    e.registry
        .remove_names(&kid, &["WWW.a.test".into()], "op")
        .await
        .unwrap();
    assert!(
        policy
            .check_identifiers(&acct, &[Identifier::dns("www.a.test")])
            .await
            .is_err()
    );
    assert!(
        e.registry
            .remove_names(&kid, &["never.test".into()], "op")
            .await
            .is_err()
    );

    // Profiles.
    assert!(policy.check_profile(&acct, "tls-server").await.is_ok());
    assert_eq!(
        policy
            .check_profile(&acct, "tls-server-client")
            .await
            .unwrap_err()
            .kind,
        ProblemType::InvalidProfile
    );
    e.registry
        .set_profile(&kid, "tls-server-client", true, "op")
        .await
        .unwrap();
    assert!(
        policy
            .check_profile(&acct, "tls-server-client")
            .await
            .is_ok()
    );

    // An unbound account under `required`; allowed under `optional`.
    let unbound = AccountRecord {
        eab_kid: None,
        ..bind(&e.store, &kid).await
    };
    assert_eq!(
        policy
            .check_identifiers(&unbound, &[Identifier::dns("x.corp.test")])
            .await
            .unwrap_err()
            .kind,
        ProblemType::Unauthorized
    );
    let optional = AdminPolicy::new(e.registry.clone(), EabMode::Optional);
    assert!(
        optional
            .check_identifiers(&unbound, &[Identifier::dns("anything.test")])
            .await
            .is_ok()
    );

    // MACs: the AA's key makes a good one, another key a bad one; an unknown kid gives no
    // answer and is audited.
    let mac_over = |key: &[u8]| {
        let account = sceau_wire::AccountKey::generate(sceau_wire::KeyKind::P256)
            .unwrap()
            .jwk();
        let url = "https://ca.test/acme/new-account";
        let b = sceau_wire::eab::sign(&kid, key, url, &account);
        sceau_wire::eab::check(&b, url, &account).unwrap()
    };
    let good = mac_over(&c.mac_key);
    assert_eq!(policy.check_mac(&kid, &good).await.unwrap(), Some(true));
    let forged = mac_over(&[9u8; 32]);
    assert_eq!(policy.check_mac(&kid, &forged).await.unwrap(), Some(false));
    assert!(
        policy
            .check_mac("unknown-kid", &good)
            .await
            .unwrap()
            .is_none()
    );
    let audit = e.store.audit_events(None, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event == "eab.refused" && r.detail["kid"] == "unknown-kid")
    );

    // A suspended AA authorises nothing.
    e.registry.suspend(&kid, "op").await.unwrap();
    assert_eq!(
        policy
            .check_identifiers(&acct, &[Identifier::dns("x.corp.test")])
            .await
            .unwrap_err()
            .kind,
        ProblemType::Unauthorized
    );
    assert!(policy.check_mac(&kid, &good).await.unwrap().is_none());
}

#[tokio::test]
async fn report_lists_changes_with_actor() {
    let e = env().await;
    let c = e
        .registry
        .create(&request(&["a.test"]), "alice")
        .await
        .unwrap();
    let kid = c.account.kid.clone();
    e.registry
        .add_names(&kid, &["b.test".into()], false, "bob")
        .await
        .unwrap();
    let report = e.registry.report(&kid, 0).await.unwrap();
    assert_eq!(report.changes.len(), 2);
    assert_eq!(report.changes[1].actor, "bob");
    assert_eq!(report.changes[1].action, "external_account.names_added");
    assert!(
        report.issued.is_empty() && report.valid.is_empty() && report.failed_validations.is_empty()
    );
    let text = report.to_text();
    assert!(text.contains("by bob"), "{text}");
    // A later `since` leaves older changes out.
    assert!(
        e.registry
            .report(&kid, now() + 10)
            .await
            .unwrap()
            .changes
            .is_empty()
    );
}

#[tokio::test]
async fn report_lists_the_accounts_star_series() {
    let e = env().await;
    let kid = e
        .registry
        .create(&request(&["a.test"]), "alice")
        .await
        .unwrap()
        .account
        .kid;
    let other = e
        .registry
        .create(&request(&["b.test"]), "alice")
        .await
        .unwrap()
        .account
        .kid;
    let mine = bind(&e.store, &kid).await;
    let theirs = bind(&e.store, &other).await;
    let series = |account: &AccountRecord, name: &str, status: &str| sceau_store::OrderRecord {
        id: new_id(),
        account_id: account.id.clone(),
        status: status.into(),
        expires: now() + 86_400,
        identifiers: vec![Identifier::dns(name)],
        authz_ids: vec![],
        not_before: None,
        not_after: None,
        profile: None,
        replaces: None,
        error: None,
        csr: None,
        cert_id: None,
        created_at: now(),
        star: Some(sceau_store::StarTerms {
            start: None,
            end: now() + 86_400,
            lifetime: 3600,
            adjust: 2400,
            allow_get: false,
            next: None,
            due: None,
        }),
    };
    for (account, name, status) in [
        (&mine, "s1.a.test", "valid"),
        (&mine, "s2.a.test", "canceled"),
        (&theirs, "s3.b.test", "valid"),
    ] {
        let audit = sceau_store::AuditEntry {
            event: "order.created",
            account_id: Some(&account.id),
            client_ip: None,
            detail: serde_json::json!({}),
        };
        e.store
            .create_order(&series(account, name, status), &[], &audit)
            .await
            .unwrap();
    }
    let report = e.registry.report(&kid, 0).await.unwrap();
    let mut lines: Vec<(&str, &str)> = report
        .star_series
        .iter()
        .map(|t| (t.names[0].as_str(), t.state.as_str()))
        .collect();
    lines.sort();
    assert_eq!(lines, [("s1.a.test", "active"), ("s2.a.test", "canceled")]);
    assert!(
        report
            .star_series
            .iter()
            .all(|t| t.lifetime == 3600 && t.certificates == 0)
    );
    let text = report.to_text();
    assert!(text.contains("STAR series (RFC 8739): 2"), "{text}");
    assert!(
        text.contains("s1.a.test  active  lifetime 3600 s"),
        "{text}"
    );
    assert!(!text.contains("s3.b.test"), "another AA's series: {text}");
}
