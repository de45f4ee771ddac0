//! Account states (agency guide R15–R18, Annex A Table 2): an administrator suspends, resumes
//! and deactivates ACME accounts and AAs while the server runs; the holder's own deactivation
//! (RFC 8555 §7.3.6) and key rollover (§7.3.5) keep working on bound accounts.

mod admin_support;
mod support;

use admin_support::*;
use sceau_store::Table;
use sceau_wire::jws::Signer;
use sceau_wire::{AccountKey, KeyKind};
use serde_json::{Value, json};
use support::{Raw, Server};

fn statuses(server: &Server, kid: &str) -> Vec<String> {
    let shown: Value =
        serde_json::from_str(&admin_ok(server, &["account", "show", kid, "--json"])).unwrap();
    shown["acme_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_acme_account_is_refused_until_resumed() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    let url = c.kid.clone().unwrap();
    admin_ok(&server, &["acme-account", "suspend", &url]);

    let r = c.new_order(&["www.a.test"]).await;
    assert_eq!(r.problem_type(), "unauthorized", "{}", body(&r));
    assert!(
        r.json()["detail"].as_str().unwrap().contains("suspended"),
        "{}",
        body(&r)
    );
    assert_eq!(server.store().await.count(Table::Orders).await.unwrap(), 0);
    assert_eq!(statuses(&server, &kid), ["suspended"]);

    admin_ok(&server, &["acme-account", "resume", &account_id(&c)]);
    assert_eq!(c.new_order(&["www.a.test"]).await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_an_external_account_suspends_its_acme_accounts() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let a = bound_client(&server, &kid, &key).await;
    let b = bound_client(&server, &kid, &key).await;
    // b is also suspended on its own: resuming the AA must not resume it.
    admin_ok(&server, &["acme-account", "suspend", &account_id(&b)]);
    admin_ok(&server, &["account", "suspend", &kid]);
    assert_eq!(statuses(&server, &kid), ["suspended", "suspended"]);

    let r = a.post(a.kid.as_deref().unwrap(), None).await;
    assert_eq!(r.problem_type(), "unauthorized", "{}", body(&r));
    assert!(r.json()["detail"].as_str().unwrap().contains("suspended"));
    let mut newcomer = Raw::new(&server).await;
    let r = register_eab(&mut newcomer, &kid, &key).await;
    assert_eq!(
        r.problem_type(),
        "unauthorized",
        "a suspended AA bound an account: {}",
        body(&r)
    );
    assert_eq!(
        server.store().await.count(Table::Accounts).await.unwrap(),
        2
    );

    admin_ok(&server, &["account", "resume", &kid]);
    assert_eq!(a.new_order(&["www.a.test"]).await.status, 201);
    assert_eq!(
        b.new_order(&["www.a.test"]).await.problem_type(),
        "unauthorized"
    );
    assert_eq!(register_eab(&mut newcomer, &kid, &key).await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivating_an_external_account_is_final_and_cascades() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let a = bound_client(&server, &kid, &key).await;
    admin_ok(&server, &["account", "deactivate", &kid]);
    assert_eq!(statuses(&server, &kid), ["deactivated"]);
    let r = a.new_order(&["www.a.test"]).await;
    assert_eq!(r.problem_type(), "unauthorized", "{}", body(&r));
    for args in [
        ["account", "resume", kid.as_str()],
        ["account", "suspend", kid.as_str()],
    ] {
        let out = admin(&server, &args);
        assert!(
            !out.status.success(),
            "{args:?} accepted on a deactivated account"
        );
    }
    let out = admin(&server, &["acme-account", "resume", &account_id(&a)]);
    assert!(!out.status.success());
    let mut newcomer = Raw::new(&server).await;
    assert_eq!(
        register_eab(&mut newcomer, &kid, &key).await.problem_type(),
        "unauthorized"
    );
    assert_eq!(
        server.store().await.count(Table::Accounts).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rollover_and_holder_deactivation_keep_working() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let mut c = bound_client(&server, &kid, &key).await;
    let account_url = c.kid.clone().unwrap();

    // RFC 8555 §7.3.5: inner JWS signed by the new key, outer by the account key.
    let new_key = AccountKey::generate(KeyKind::P384).unwrap();
    let url = c.dir.key_change.clone();
    let inner = sceau_wire::jws::sign(
        &new_key,
        Signer::Jwk,
        None,
        &url,
        Some(&serde_json::to_vec(&json!({"account": account_url, "oldKey": c.key.jwk()})).unwrap()),
    )
    .unwrap();
    let r = c
        .post(&url, Some(&serde_json::to_value(&inner).unwrap()))
        .await;
    assert_eq!(r.status, 200, "keyChange: {}", body(&r));
    c.key = new_key;
    // Still bound to its AA: allowed names pass, others do not.
    assert_eq!(c.new_order(&["www.a.test"]).await.status, 201);
    assert_eq!(
        c.new_order(&["other.test"]).await.problem_type(),
        "rejectedIdentifier"
    );

    // RFC 8555 §7.3.6: the holder deactivates its account.
    let r = c
        .post(&account_url, Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(r.json()["status"], "deactivated");
    assert_eq!(
        c.new_order(&["www.a.test"]).await.problem_type(),
        "unauthorized"
    );
    assert_eq!(statuses(&server, &kid), ["deactivated"]);
}
