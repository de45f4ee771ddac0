//! RFC 8555 §11.1 both ways (issue 10): an account key is never certified (a CSR with the
//! account's own key, or another account's, is refused), and a certified key never becomes an
//! account key (newAccount, keyChange). Each refusal changes nothing.

mod support;

use sceau_store::Table;
use sceau_wire::jws::Signer;
use sceau_wire::{AccountKey, KeyKind};
use serde_json::json;
use support::*;

fn lab() -> Server {
    Server::start(&["--eab", "off", "--validation-allow", "127.0.0.0/8"])
}

/// An rcgen key pair and the same key as an ACME account key.
fn shared_key() -> (rcgen::KeyPair, AccountKey) {
    let key = rcgen::KeyPair::generate().unwrap();
    let account = AccountKey::from_pkcs8_der(&key.serialize_der()).unwrap();
    (key, account)
}

async fn finalize_with(c: &Raw, o: &serde_json::Value, name: &str, key: &rcgen::KeyPair) -> Resp {
    let (csr, _) = csr_with_key(&[name], key);
    c.finalize(o, &csr).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csr_with_an_account_key_is_refused() {
    let s = lab();
    s.add_host("own.test");
    s.add_host("other.test");
    let responder = Http01::start(s.http01_port).await;
    let (key, account_key) = shared_key();
    let mut c = Raw::new(&s).await;
    c.key = account_key;
    c.register().await;

    // The account's own key.
    let o = ready_order(&c, &responder, &["own.test"]).await;
    let r = finalize_with(&c, &o, "own.test", &key).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.problem_type(), "badCSR");
    assert!(r.json()["detail"].as_str().unwrap().contains("§11.1"));

    // Another account's key.
    let (other_key, other_account) = shared_key();
    let mut other = Raw::new(&s).await;
    other.key = other_account;
    other.register().await;
    let o2 = ready_order(&c, &responder, &["other.test"]).await;
    let r = finalize_with(&c, &o2, "other.test", &other_key).await;
    assert_eq!(
        r.problem_type(),
        "badCSR",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(s.store().await.count(Table::Certificates).await.unwrap(), 0);

    // Nothing changed: the order is still ready and a fresh key is certified.
    let again = c.post(o["_url"].as_str().unwrap(), None).await.json();
    assert_eq!(again["status"], "ready");
    let fresh = rcgen::KeyPair::generate().unwrap();
    assert_eq!(finalize_with(&c, &o, "own.test", &fresh).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certified_key_cannot_become_an_account_key() {
    let s = lab();
    s.add_host("cert.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let (key, as_account) = shared_key();
    let o = ready_order(&c, &responder, &["cert.test"]).await;
    assert_eq!(finalize_with(&c, &o, "cert.test", &key).await.status, 200);
    c.poll(o["_url"].as_str().unwrap(), &["processing"]).await;
    let accounts = s.store().await.count(Table::Accounts).await.unwrap();

    // newAccount signed with the certified key.
    let mut thief = Raw::new(&s).await;
    thief.key = as_account;
    let url = thief.dir.new_account.clone();
    let r = thief
        .post(&url, Some(&json!({"termsOfServiceAgreed": true})))
        .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.problem_type(), "badPublicKey");
    assert_eq!(
        s.store().await.count(Table::Accounts).await.unwrap(),
        accounts
    );

    // keyChange to the certified key (RFC 8555 §7.3.5).
    let new_key = AccountKey::from_pkcs8_der(&key.serialize_der()).unwrap();
    let url = c.dir.key_change.clone();
    let kid = c.kid.clone().unwrap();
    let inner = sceau_wire::jws::sign(
        &new_key,
        Signer::Jwk,
        None,
        &url,
        Some(
            json!({"account": kid, "oldKey": c.key.jwk()})
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    let r = c
        .post(&url, Some(&serde_json::to_value(&inner).unwrap()))
        .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.problem_type(), "badPublicKey");
    // The account still answers to its old key.
    let acct = c.post(&kid, None).await;
    assert_eq!(acct.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_account_key_kind_is_compared() {
    let s = lab();
    s.add_host("rsa.test");
    let responder = Http01::start(s.http01_port).await;
    for kind in [KeyKind::P384, KeyKind::Rsa2048, KeyKind::Ed25519] {
        let account = AccountKey::generate(kind).unwrap();
        let key = rcgen::KeyPair::try_from(account.to_pkcs8_der()).unwrap();
        let mut c = Raw::new(&s).await;
        c.key = account;
        c.register().await;
        let o = ready_order(&c, &responder, &["rsa.test"]).await;
        let r = finalize_with(&c, &o, "rsa.test", &key).await;
        assert_eq!(
            r.problem_type(),
            "badCSR",
            "{kind}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}
