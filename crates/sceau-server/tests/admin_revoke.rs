//! Revocation rights (agency guide R44, R46) and the per-AA report (R49): the issuing account,
//! another account of the same AA, or the certificate's key may revoke; an account of another
//! AA may not, even holding valid authorizations for the names. The reason is recorded.

mod admin_support;
mod support;

use admin_support::*;
use sceau_wire::jws::Signer;
use sceau_wire::{AccountKey, b64};
use serde_json::{Value, json};
use support::{Http01, Raw, Server, issue};

fn der_of(chain: &str) -> Vec<u8> {
    sceau_wire::key::pem_decode_all(chain, "CERTIFICATE").remove(0)
}

async fn revoke(c: &Raw, der: &[u8], reason: u8) -> support::Resp {
    let url = c.dir.revoke_cert.clone();
    c.post(
        &url,
        Some(&json!({"certificate": b64::encode(der), "reason": reason})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn who_may_revoke() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("www.a.test");
    let (kid1, key1) = create_aa(&server, &["www.a.test"], &[]);
    let (kid2, key2) = create_aa(&server, &["www.a.test"], &[]);
    let issuer = bound_client(&server, &kid1, &key1).await;
    let sibling = bound_client(&server, &kid1, &key1).await;
    let stranger = bound_client(&server, &kid2, &key2).await;

    let (_, chain) = issue(&issuer, &responder, &["www.a.test"]).await;
    // The stranger holds a valid authorization for the name: RFC 8555 would let it revoke.
    issue(&stranger, &responder, &["www.a.test"]).await;
    let der = der_of(&chain);
    let r = revoke(&stranger, &der, 1).await;
    assert_eq!(r.problem_type(), "unauthorized", "{}", body(&r));
    let store = server.store().await;
    let serial = sceau_ca::inspect::cert_info(&der).unwrap().serial_hex;
    assert!(
        store
            .cert_by_serial(&serial)
            .await
            .unwrap()
            .revoked_at
            .is_none()
    );

    let r = revoke(&sibling, &der, 4).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let cert = store.cert_by_serial(&serial).await.unwrap();
    assert!(cert.revoked_at.is_some());
    assert_eq!(cert.revocation_reason, Some(4), "reason not recorded");
    let audit = store.audit_events(None, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.event == "certificate.revoked" && e.detail["reason"] == 4)
    );

    // The issuing account itself.
    let (_, chain2) = issue(&issuer, &responder, &["www.a.test"]).await;
    assert_eq!(revoke(&issuer, &der_of(&chain2), 0).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_certificate_key_may_revoke() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("www.a.test");
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    let o = support::ready_order(&c, &responder, &["www.a.test"]).await;
    let cert_key = rcgen::KeyPair::generate().unwrap();
    let (csr, _) = support::csr_with_key(&["www.a.test"], &cert_key);
    assert_eq!(c.finalize(&o, &csr).await.status, 200);
    let done = c.poll(o["_url"].as_str().unwrap(), &["processing"]).await;
    let chain = String::from_utf8(
        c.post(done["certificate"].as_str().unwrap(), None)
            .await
            .body,
    )
    .unwrap();
    let der = der_of(&chain);

    // Signed by another key with a jwk: refused.
    let mut other = Raw::new(&server).await;
    other.key = AccountKey::generate(sceau_wire::KeyKind::P256).unwrap();
    let url = c.dir.revoke_cert.clone();
    let payload =
        serde_json::to_vec(&json!({"certificate": b64::encode(&der), "reason": 1})).unwrap();
    let jws = sceau_wire::jws::sign(
        &other.key,
        Signer::Jwk,
        Some(&other.nonce().await),
        &url,
        Some(&payload),
    )
    .unwrap();
    assert_eq!(other.send(&url, &jws).await.problem_type(), "unauthorized");

    // Signed by the certificate's own key.
    let holder = AccountKey::from_pem(&cert_key.serialize_pem()).unwrap();
    let jws = sceau_wire::jws::sign(
        &holder,
        Signer::Jwk,
        Some(&other.nonce().await),
        &url,
        Some(&payload),
    )
    .unwrap();
    let r = other.send(&url, &jws).await;
    assert_eq!(r.status, 200, "{}", body(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn report_counts_certificates_failures_and_changes() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("www.a.test");
    server.add_host("fail.a.test");
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    assert!(
        admin_as(
            &server,
            "bob",
            &["account", "add-domain", &kid, "fail.a.test"]
        )
        .status
        .success()
    );
    let c = bound_client(&server, &kid, &key).await;
    let (_, first) = issue(&c, &responder, &["www.a.test"]).await;
    issue(&c, &responder, &["www.a.test"]).await;
    assert_eq!(revoke(&c, &der_of(&first), 1).await.status, 200);
    // One failed validation: an address but nobody answering for this name's token.
    let o = support::order(&c, &["fail.a.test"]).await;
    let (authz_url, ch) = c.first_challenge(&o, "http-01").await;
    c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(c.poll(&authz_url, &["pending"]).await["status"], "invalid");

    let report: Value = serde_json::from_str(&admin_ok(
        &server,
        &["report", "--account", &kid, "--since", "1d", "--json"],
    ))
    .unwrap();
    assert_eq!(report["issued"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["revoked"].as_array().unwrap().len(), 1);
    assert_eq!(report["revoked"][0]["revocation_reason"], 1);
    assert_eq!(report["valid"].as_array().unwrap().len(), 1);
    let failed = report["failed_validations"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["identifier"], "fail.a.test");
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[0]["action"].as_str(), changes[0]["actor"].as_str()),
        (Some("external_account.created"), Some("tester"))
    );
    assert_eq!(
        (changes[1]["action"].as_str(), changes[1]["actor"].as_str()),
        (Some("external_account.names_added"), Some("bob"))
    );
    // Text form for a person.
    let text = admin_ok(&server, &["report", "--account", &kid]);
    assert!(
        text.contains("Certificates issued: 2")
            && text.contains("Failed validations: 1")
            && text.contains("by bob"),
        "{text}"
    );
    // The report reading itself is an audited admin command.
    let audit = server.store().await.audit_events(None, 0).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.event == "admin.report_read" && e.detail["kid"] == kid.as_str())
    );
}
