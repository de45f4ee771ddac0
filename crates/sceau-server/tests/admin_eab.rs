//! External account binding against the real server (agency guide R9, R14, R19; RFC 8555
//! §7.3.4): required by default, verified against the AA's current MAC key, one AA for many
//! ACME accounts. Each refused case checks the problem type and that no account was created.

mod admin_support;
mod support;

use admin_support::*;
use sceau_store::Table;
use serde_json::{Value, json};
use support::{Raw, Server};

#[tokio::test(flavor = "multi_thread")]
async fn eab_is_required_by_default() {
    let server = Server::start(&[]);
    let http = support::http_client(&server.root_pem());
    let dir: Value = http
        .get(server.directory_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dir["meta"]["externalAccountRequired"], true);

    let mut c = Raw::new(&server).await;
    let url = c.dir.new_account.clone();
    let r = c
        .post(&url, Some(&json!({"termsOfServiceAgreed": true})))
        .await;
    assert_eq!(r.problem_type(), "externalAccountRequired", "{}", body(&r));
    assert_eq!(
        server.store().await.count(Table::Accounts).await.unwrap(),
        0
    );

    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let r = register_eab(&mut c, &kid, &key).await;
    assert_eq!(r.status, 201, "{}", body(&r));
    assert!(r.json()["externalAccountBinding"]["protected"].is_string());
    let store = server.store().await;
    let account = store.account_by_id(&account_id(&c)).await.unwrap();
    assert_eq!(account.eab_kid.as_deref(), Some(kid.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_mac_key_or_unknown_kid_is_refused() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let mut c = Raw::new(&server).await;
    let mut wrong = key.clone();
    wrong[0] ^= 1;
    let r = register_eab(&mut c, &kid, &wrong).await;
    assert_eq!(r.problem_type(), "unauthorized", "{}", body(&r));
    let r = register_eab(&mut c, "no-such-kid", &key).await;
    assert_eq!(r.problem_type(), "unauthorized", "{}", body(&r));
    let store = server.store().await;
    assert_eq!(store.count(Table::Accounts).await.unwrap(), 0);
    // Both refusals are in the audit trail.
    let audit = store.audit_events(None, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.event == "eab.refused" && e.detail["kid"] == "no-such-kid"),
        "{audit:?}"
    );
    // The right key still binds.
    assert_eq!(register_eab(&mut c, &kid, &key).await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn regenerated_key_stops_the_old_one_from_binding() {
    let server = Server::start(&[]);
    let (kid, old) = create_aa(&server, &["www.a.test"], &[]);
    let before = bound_client(&server, &kid, &old).await;

    let v: Value = serde_json::from_str(&admin_ok(
        &server,
        &["account", "regenerate-key", &kid, "--json"],
    ))
    .unwrap();
    let new = sceau_wire::b64::decode(v["hmac_key"].as_str().unwrap()).unwrap();
    assert_ne!(new, old);

    let mut c = Raw::new(&server).await;
    let r = register_eab(&mut c, &kid, &old).await;
    assert_eq!(
        r.problem_type(),
        "unauthorized",
        "old key still binds: {}",
        body(&r)
    );
    assert_eq!(
        server.store().await.count(Table::Accounts).await.unwrap(),
        1
    );
    assert_eq!(register_eab(&mut c, &kid, &new).await.status, 201);

    // The account bound with the old key keeps working.
    let r = before.new_order(&["www.a.test"]).await;
    assert_eq!(r.status, 201, "{}", body(&r));
    let shown: Value =
        serde_json::from_str(&admin_ok(&server, &["account", "show", &kid, "--json"])).unwrap();
    assert_eq!(shown["key_regenerations"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_external_account_many_acme_accounts() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let a = bound_client(&server, &kid, &key).await;
    let b = bound_client(&server, &kid, &key).await;
    assert_ne!(a.kid, b.kid);
    let shown: Value =
        serde_json::from_str(&admin_ok(&server, &["account", "show", &kid, "--json"])).unwrap();
    let ids: Vec<&str> = shown["acme_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&account_id(&a).as_str()) && ids.contains(&account_id(&b).as_str()));
    assert!(
        shown["acme_accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["status"] == "valid")
    );
    // The same key registered again returns the existing account (RFC 8555 §7.3.1), still one AA.
    let mut again = Raw::new(&server).await;
    again.key = sceau_wire::AccountKey::from_pem(&a.key.to_pem()).unwrap();
    let r = register_eab(&mut again, &kid, &key).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        server.store().await.count(Table::Accounts).await.unwrap(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_and_off_modes_remain() {
    let server = Server::start(&["--eab", "optional"]);
    let mut c = Raw::new(&server).await;
    c.register().await;
    let mut off = Server::start(&["--eab", "off"]);
    let (kid, key) = create_aa(&off, &["www.a.test"], &[]);
    let mut d = Raw::new(&off).await;
    let r = register_eab(&mut d, &kid, &key).await;
    assert_eq!(
        r.problem_type(),
        "malformed",
        "EAB sent to a server with EAB off: {}",
        body(&r)
    );
    off.kill();
}
