//! Rate limits over the wire (issue 10): each limit refuses with `rateLimited` (429) and a
//! `Retry-After`, changes nothing in the database, and leaves other clients alone.

mod admin_support;
mod support;

use std::net::IpAddr;

use admin_support::*;
use sceau_store::Table;
use serde_json::json;
use support::*;

const OTHER_ADDRESS: &str = "127.0.0.2";

fn retry_after(r: &Resp) -> u64 {
    r.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", body(r)))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn assert_limited(r: &Resp, setting: &str) {
    assert_eq!(r.status, 429, "{}", body(r));
    assert_eq!(r.problem_type(), "rateLimited", "{}", body(r));
    let detail = r.json()["detail"].as_str().unwrap_or("").to_owned();
    assert!(
        detail.contains(setting),
        "the detail names {setting}: {detail}"
    );
    assert!(retry_after(r) >= 1);
}

async fn count(s: &Server, t: Table) -> i64 {
    s.store().await.count(t).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn new_accounts_are_limited_per_client_address() {
    let s = Server::start(&["--eab", "off", "--limit-accounts-per-address", "3/1h"]);
    let mut first = None;
    for _ in 0..3 {
        let mut c = Raw::new(&s).await;
        c.register().await;
        first.get_or_insert(c);
    }
    let mut fourth = Raw::new(&s).await;
    let url = fourth.dir.new_account.clone();
    let r = fourth
        .post(&url, Some(&json!({"termsOfServiceAgreed": true})))
        .await;
    assert_limited(&r, "limit_accounts_per_address");
    let wait = retry_after(&r);
    assert!((3500..=3600).contains(&wait), "{wait}");
    assert_eq!(count(&s, Table::Accounts).await, 3, "nothing was created");

    // An existing account is still found (no account is created for it).
    let mut again = first.unwrap();
    again.kid = None;
    let r = again
        .post(&url, Some(&json!({"onlyReturnExisting": true})))
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));

    // Another address is not affected.
    let mut other = Raw::from_address(&s, OTHER_ADDRESS.parse().unwrap()).await;
    other.register().await;
    assert_eq!(count(&s, Table::Accounts).await, 4);
    fourth.key = sceau_wire::AccountKey::generate(sceau_wire::KeyKind::P256).unwrap();
    let r = fourth
        .post(&url, Some(&json!({"termsOfServiceAgreed": true})))
        .await;
    assert_eq!(r.status, 429, "still limited from 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_names_and_pending_authorizations_are_limited_per_account() {
    let s = Server::start(&[
        "--eab",
        "off",
        "--limit-orders-per-account",
        "3/1h",
        "--limit-names-per-account",
        "5/1h",
        "--limit-pending-authzs-per-account",
        "4",
    ]);
    // Orders per account.
    let mut a = Raw::new(&s).await;
    a.register().await;
    for i in 0..3 {
        let r = a.new_order(&[&format!("o{i}.test")]).await;
        assert_eq!(r.status, 201, "{}", body(&r));
    }
    let (orders, authzs) = (
        count(&s, Table::Orders).await,
        count(&s, Table::Authzs).await,
    );
    let r = a.new_order(&["o3.test"]).await;
    assert_limited(&r, "limit_orders_per_account");
    assert!(retry_after(&r) > 3500);
    assert_eq!(count(&s, Table::Orders).await, orders);
    assert_eq!(count(&s, Table::Authzs).await, authzs);

    // Names (new authorizations) per account: one order of 6 names is over 5.
    let mut b = Raw::new(&s).await;
    b.register().await;
    let names: Vec<String> = (0..6).map(|i| format!("n{i}.test")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = b.new_order(&refs).await;
    assert_limited(&r, "limit_names_per_account");
    assert_eq!(count(&s, Table::Authzs).await, authzs);

    // Pending authorizations: 4 pending, one more is refused until one is deactivated.
    let r = b.new_order(&refs[..4]).await;
    assert_eq!(r.status, 201, "{}", body(&r));
    let order = r.json();
    let r = b.new_order(&["p.test"]).await;
    assert_limited(&r, "limit_pending_authzs_per_account");
    let authz = order["authorizations"][0].as_str().unwrap().to_owned();
    let r = b
        .post(&authz, Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let r = b.new_order(&["p.test"]).await;
    assert_eq!(r.status, 201, "room again: {}", body(&r));
    // Now 5 names in the window: a sixth is over the names limit.
    let r = b.new_order(&["q.test"]).await;
    assert_limited(&r, "limit_names_per_account");

    // Another account is not affected.
    let mut c = Raw::new(&s).await;
    c.register().await;
    assert_eq!(c.new_order(&["c.test"]).await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_set_off_does_not_limit() {
    let s = Server::start(&["--eab", "off", "--limit-orders-per-account", "off"]);
    let mut a = Raw::new(&s).await;
    a.register().await;
    for i in 0..4 {
        assert_eq!(a.new_order(&[&format!("x{i}.test")]).await.status, 201);
    }
    // A bad setting is a one-line start-up error naming it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args(["serve", "--data-dir"])
        .arg(s.dir.path().join("unused"))
        .args(["--limit-orders-per-account", "300 per hour"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--limit-orders-per-account"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_external_account_bindings_are_audited_and_limited_per_key_id() {
    let s = Server::start(&["--eab", "required", "--limit-eab-failures-per-key", "3/1h"]);
    let (kid, mac) = create_aa(&s, &["web.test"], &[]);
    for _ in 0..3 {
        let mut c = Raw::new(&s).await;
        let r = register_eab(&mut c, &kid, b"a MAC key that is not this one!!").await;
        assert_eq!(r.status, 403, "{}", body(&r));
    }
    // Even the right MAC is refused now, from any address, until the window has room.
    let mut c = Raw::from_address(&s, OTHER_ADDRESS.parse().unwrap()).await;
    let r = register_eab(&mut c, &kid, &mac).await;
    assert_limited(&r, "limit_eab_failures_per_key");
    assert!(retry_after(&r) > 3500);
    assert_eq!(count(&s, Table::Accounts).await, 0);

    let events = s.store().await.audit_events(None, 0).await.unwrap();
    let failed: Vec<_> = events.iter().filter(|e| e.event == "eab.failed").collect();
    assert_eq!(failed.len(), 3, "each failure is audited once");
    assert!(failed.iter().all(|e| e.detail["kid"] == kid.as_str()
        && e.client_ip.as_deref() == Some("127.0.0.1")));

    // Another external account is not affected.
    let (kid2, mac2) = create_aa(&s, &["web2.test"], &[]);
    let mut ok = Raw::new(&s).await;
    assert_eq!(register_eab(&mut ok, &kid2, &mac2).await.status, 201);

    // Unknown key ids are counted per client address.
    for i in 0..3 {
        let mut c = Raw::new(&s).await;
        let r = register_eab(&mut c, &format!("no-such-kid-{i}"), &mac).await;
        assert_eq!(r.status, 403, "{}", body(&r));
    }
    let mut c = Raw::new(&s).await;
    let r = register_eab(&mut c, "no-such-kid-4", &mac).await;
    assert_limited(&r, "limit_eab_failures_per_key");
    let mut elsewhere = Raw::from_address(&s, OTHER_ADDRESS.parse().unwrap()).await;
    let r = register_eab(&mut elsewhere, "no-such-kid-5", &mac).await;
    assert_eq!(r.status, 403, "another address may still try: {}", body(&r));
    let events = s.store().await.audit_events(None, 0).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event == "eab.unknown_kid")
            .count(),
        4
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_nonces_are_limited_per_client_address_without_handing_one_out() {
    let s = Server::start(&["--eab", "off", "--limit-nonces-per-address", "5/1m"]);
    let c = Raw::new(&s).await;
    for _ in 0..5 {
        let r = c.http.head(&c.dir.new_nonce).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c.http.get(&c.dir.new_nonce).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers().get("replay-nonce").is_none(),
        "no nonce when refused"
    );
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=12).contains(&wait),
        "one token comes back every 12 s: {wait}"
    );
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "urn:ietf:params:acme:error:rateLimited");

    let other_ip: IpAddr = OTHER_ADDRESS.parse().unwrap();
    let other = Raw::from_address(&s, other_ip).await;
    let r = other.http.head(&other.dir.new_nonce).send().await.unwrap();
    assert_eq!(r.status(), 200, "another address is not affected");
    // Signed requests still get their fresh nonce in every response.
    let mut c = c;
    c.key = sceau_wire::AccountKey::generate(sceau_wire::KeyKind::P256).unwrap();
    let url = c.dir.new_account.clone();
    let jws = sceau_wire::jws::sign(
        &c.key,
        sceau_wire::jws::Signer::Jwk,
        Some(
            other
                .http
                .head(&other.dir.new_nonce)
                .send()
                .await
                .unwrap()
                .headers()["replay-nonce"]
                .to_str()
                .unwrap(),
        ),
        &url,
        Some(br#"{"termsOfServiceAgreed":true}"#),
    )
    .unwrap();
    let r = c.send(&url, &jws).await;
    assert_eq!(r.status, 201, "{}", body(&r));
    assert!(r.headers.get("replay-nonce").is_some());
}
