//! RFC 8555 over the wire against the real sceau-server binary: the happy path, each refused
//! request with its problem type, and that a refused request changes nothing in the database.

mod support;

use sceau_wire::jws::{Flattened, Signer};
use sceau_wire::{AccountKey, KeyKind, b64};
use serde_json::{Value, json};
use support::*;

async fn ready_client(s: &Server) -> (Raw, Http01) {
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(s).await;
    c.register().await;
    (c, responder)
}

#[tokio::test(flavor = "multi_thread")]
async fn issues_a_certificate_that_openssl_verifies_and_survives_restart() {
    // The http-01 responder answers for the IP identifier on loopback, the server's own
    // address: both are refused unless a lab allows them.
    let mut s = Server::start(&[
        "--eab",
        "off",
        "--allow-local-identifiers",
        "--allow-server-names",
    ]);
    s.add_host("web1.test");
    s.add_host("web2.test");
    let (c, responder) = ready_client(&s).await;
    let (order, chain) = issue(&c, &responder, &["web1.test", "web2.test", "127.0.0.1"]).await;
    openssl_verify(&s, &chain);
    assert_eq!(order["identifiers"].as_array().unwrap().len(), 3);

    // Directory and meta.
    let dir: Value = c
        .http
        .get(s.directory_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(dir["renewalInfo"].is_string());
    assert!(dir["meta"]["profiles"]["tls-server"].is_string());

    // The account's order list contains it.
    let acct = c.post(c.kid.as_ref().unwrap(), None).await.json();
    let list = c.post(acct["orders"].as_str().unwrap(), None).await.json();
    assert_eq!(list["orders"][0], order["_url"]);

    // Restart: account, order and certificate are still there.
    s.restart();
    let again = c.post(order["_url"].as_str().unwrap(), None).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["status"], "valid");
    let cert = c.post(order["certificate"].as_str().unwrap(), None).await;
    assert_eq!(String::from_utf8(cert.body).unwrap(), chain);
    assert_eq!(
        cert.headers["content-type"],
        "application/pem-certificate-chain"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_requests_get_their_problem_type_and_change_nothing() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("ok.test");
    let (c, _responder) = ready_client(&s).await;
    let new_order = c.dir.new_order.clone();
    let payload = json!({"identifiers": [{"type": "dns", "value": "ok.test"}]});
    let before = counts(&s).await;

    // bad signature
    let mut jws = c.sign(&new_order, Some(&payload)).await;
    let mut sig = b64::decode(&jws.signature).unwrap();
    sig[0] ^= 1;
    jws.signature = b64::encode(sig);
    let r = c.send(&new_order, &jws).await;
    assert_eq!(
        (r.status, r.problem_type().as_str()),
        (400, "malformed"),
        "bad signature"
    );

    // url in the header is not the request URL
    let jws = c
        .sign(
            &c.dir.new_order.replace("new-order", "new-orders"),
            Some(&payload),
        )
        .await;
    let r = c.send(&new_order, &jws).await;
    assert_eq!(
        (r.status, r.problem_type().as_str()),
        (403, "unauthorized"),
        "wrong url"
    );

    // reused nonce: the first use works, the replay is refused
    let jws = c
        .sign(
            &new_order,
            Some(&json!({"identifiers": [{"type": "dns", "value": "ok.test"}]})),
        )
        .await;
    assert_eq!(c.send(&new_order, &jws).await.status, 201);
    let after_one = counts(&s).await;
    let r = c.send(&new_order, &jws).await;
    assert_eq!(r.problem_type(), "badNonce", "replayed nonce");
    assert!(
        r.headers.contains_key("replay-nonce"),
        "badNonce carries a fresh nonce for the retry"
    );
    assert_eq!(counts(&s).await, after_one);

    // both jwk and kid
    let nonce = c.nonce().await;
    let header =
        json!({"alg": "ES256", "nonce": nonce, "url": new_order, "kid": c.kid, "jwk": c.key.jwk()});
    let r = c
        .send(&new_order, &hand_signed(&c.key, &header, Some(&payload)))
        .await;
    assert_eq!(r.problem_type(), "malformed", "jwk and kid");

    // unknown account
    let nonce = c.nonce().await;
    let header = json!({"alg": "ES256", "nonce": nonce, "url": new_order, "kid": format!("{}/acme/acct/nobody", s.base())});
    let r = c
        .send(&new_order, &hand_signed(&c.key, &header, Some(&payload)))
        .await;
    assert_eq!(r.problem_type(), "accountDoesNotExist");

    // malformed body, not JSON
    let r = c.send_body(&new_order, b"{not json".to_vec()).await;
    assert_eq!(r.problem_type(), "malformed");
    // oversized body: refused from its Content-Length, before any of it is read. A client
    // still writing when the server closes may see the connection reset instead of the 413
    // (the kernel drops the unread bytes): try until the answer arrives, which it must.
    let mut answered = None;
    for _ in 0..5 {
        match c
            .http
            .post(&new_order)
            .header("content-type", "application/jose+json")
            .body(vec![b' '; 200_000])
            .send()
            .await
        {
            Ok(r) => {
                answered = Some(r);
                break;
            }
            Err(e) => assert!(e.is_request(), "{e}"),
        }
    }
    let r = answered.expect("no 413 in five tries");
    let close = r.headers()["connection"].clone();
    let r = support::Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    };
    assert_eq!((r.status, r.problem_type().as_str()), (413, "malformed"));
    // The unread body ends the connection: the client is told not to reuse it.
    assert_eq!(close, "close");
    // wrong content type
    let jws = c.sign(&new_order, Some(&payload)).await;
    let r = c
        .http
        .post(&new_order)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&jws).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // unsupported algorithm
    let nonce = c.nonce().await;
    let header = json!({"alg": "HS256", "nonce": nonce, "url": new_order, "kid": c.kid});
    let r = c
        .send(&new_order, &hand_signed(&c.key, &header, Some(&payload)))
        .await;
    assert_eq!(r.problem_type(), "badSignatureAlgorithm");
    assert!(
        r.json()["algorithms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "ES256")
    );
    // GET on a resource that requires POST-as-GET
    let r = c.http.get(c.kid.as_ref().unwrap()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);

    assert_eq!(
        counts(&s).await,
        after_one,
        "refused requests wrote nothing"
    );
    assert_eq!(
        after_one[1],
        before[1] + 1,
        "exactly the one accepted order was created"
    );
}

fn hand_signed(key: &AccountKey, header: &Value, payload: Option<&Value>) -> Flattened {
    let payload = payload.map(Value::to_string).unwrap_or_default();
    signed_bytes(key, header.to_string().as_bytes(), payload.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivated_account_is_refused() {
    let s = Server::start(&["--eab", "off"]);
    let (c, _r) = ready_client(&s).await;
    let kid = c.kid.clone().unwrap();
    let r = c.post(&kid, Some(&json!({"status": "deactivated"}))).await;
    assert_eq!(r.json()["status"], "deactivated");
    let before = counts(&s).await;
    let r = c.new_order(&["x.test"]).await;
    assert_eq!((r.status, r.problem_type().as_str()), (403, "unauthorized"));
    // newAccount with the same key does not resurrect it
    let r = c
        .post(
            &c.dir.new_account.clone(),
            Some(&json!({"onlyReturnExisting": true})),
        )
        .await;
    assert!(r.status >= 400);
    assert_eq!(counts(&s).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_return_existing_and_contact_rules() {
    let s = Server::start(&["--eab", "off"]);
    let c = Raw::new(&s).await;
    let url = c.dir.new_account.clone();
    let r = c
        .post(&url, Some(&json!({"onlyReturnExisting": true})))
        .await;
    assert_eq!(r.problem_type(), "accountDoesNotExist");
    let r = c
        .post(
            &url,
            Some(&json!({"contact": ["tel:+33100000000"], "termsOfServiceAgreed": true})),
        )
        .await;
    assert_eq!(r.problem_type(), "unsupportedContact");
    let r = c
        .post(
            &url,
            Some(&json!({"contact": ["mailto:not-an-address"], "termsOfServiceAgreed": true})),
        )
        .await;
    assert_eq!(r.problem_type(), "invalidContact");
    assert_eq!(counts(&s).await[0], 0);
    let r = c
        .post(&url, Some(&json!({"termsOfServiceAgreed": true})))
        .await;
    assert_eq!(r.status, 201);
    let r = c
        .post(&url, Some(&json!({"onlyReturnExisting": true})))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn finalize_rules_bad_csrs_and_not_ready() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("f.test");
    let (c, responder) = ready_client(&s).await;
    let o = order(&c, &["f.test"]).await;
    let (csr_ok, _) = csr(&["f.test"]);
    // not ready yet
    let r = c.finalize(&o, &csr_ok).await;
    assert_eq!(
        (r.status, r.problem_type().as_str()),
        (403, "orderNotReady")
    );

    let ready = c.solve_http01(&o, &responder).await;
    assert_eq!(ready["status"], "ready");
    let before = counts(&s).await;
    // a name not in the order
    let (csr_extra, _) = csr(&["f.test", "other.test"]);
    let r = c.finalize(&o, &csr_extra).await;
    assert_eq!(r.problem_type(), "badCSR");
    assert!(r.json()["detail"].as_str().unwrap().contains("other.test"));
    // a weak key, made by a second implementation (openssl)
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(sceau_testkit::require_tool("openssl"))
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-subj",
            "/CN=f.test",
            "-outform",
            "DER",
            "-keyout",
        ])
        .arg(dir.path().join("k.pem"))
        .arg("-out")
        .arg(dir.path().join("r.der"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weak = b64::encode(std::fs::read(dir.path().join("r.der")).unwrap());
    let r = c.finalize(&o, &weak).await;
    assert_eq!(r.problem_type(), "badCSR");
    // garbage
    let r = c
        .post(
            o["finalize"].as_str().unwrap(),
            Some(&json!({"csr": "AAAA"})),
        )
        .await;
    assert_eq!(r.problem_type(), "badCSR");
    assert_eq!(counts(&s).await, before);
    let after = c.post(o["_url"].as_str().unwrap(), None).await.json();
    assert_eq!(
        after["status"], "ready",
        "a refused CSR leaves the order ready"
    );
    // and the right CSR still works
    let r = c.finalize(&o, &csr_ok).await;
    assert_eq!(r.json()["status"], "valid");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_challenge_answer_invalidates_with_reason() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("w.test");
    let (c, responder) = ready_client(&s).await;
    let o = order(&c, &["w.test"]).await;
    let (authz_url, ch) = c.first_challenge(&o, "http-01").await;
    responder.set(ch["token"].as_str().unwrap(), "not-the-key-authorization");
    c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    let authz = c.poll(&authz_url, &["pending"]).await;
    assert_eq!(authz["status"], "invalid");
    let failed = challenge(&authz, "http-01");
    assert_eq!(failed["status"], "invalid");
    let err = &failed["error"];
    assert!(
        err["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:ietf:params:acme:error:"),
        "{authz}"
    );
    assert!(!err["detail"].as_str().unwrap().is_empty());
    let order = c.post(o["_url"].as_str().unwrap(), None).await.json();
    assert_eq!(order["status"], "invalid");
    assert_eq!(
        order["error"]["subproblems"][0]["identifier"]["value"],
        "w.test"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dns01_through_a_real_dns_server() {
    let s = Server::start(&["--eab", "off"]);
    let (c, _r) = ready_client(&s).await;
    let o = order(&c, &["d.test"]).await;
    let (authz_url, ch) = c.first_challenge(&o, "dns-01").await;
    let digest = c.dns01_txt(ch["token"].as_str().unwrap());
    s.dns.add_txt("_acme-challenge.d.test", &digest);
    c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    let authz = c.poll(&authz_url, &["pending"]).await;
    assert_eq!(authz["status"], "valid", "{authz}");
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_rights_and_reasons() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("r.test");
    let (c, responder) = ready_client(&s).await;
    let (order, chain) = issue(&c, &responder, &["r.test"]).await;
    let _ = order;
    let der = rustls_pki_types_first_der(&chain);
    let revoke = c.dir.revoke_cert.clone();
    let body = json!({"certificate": b64::encode(&der), "reason": 1});

    // a stranger account may not revoke it
    let mut stranger = Raw::new(&s).await;
    stranger.register().await;
    let r = stranger.post(&revoke, Some(&body)).await;
    assert_eq!((r.status, r.problem_type().as_str()), (403, "unauthorized"));
    // a reason code outside RFC 5280's list
    let r = c
        .post(
            &revoke,
            Some(&json!({"certificate": b64::encode(&der), "reason": 7})),
        )
        .await;
    assert_eq!(r.problem_type(), "badRevocationReason");
    // reasons RFC 5280 defines but that are refused for a leaf here (the one check in
    // sceau_wire::reason): certificateHold (no removal from hold), cACompromise,
    // removeFromCRL, aACompromise; each says why and leaves the certificate unrevoked
    for (code, why) in [
        (6, "certificateHold (6) is refused"),
        (2, "cACompromise (2) does not apply to an end-entity"),
        (8, "removeFromCRL (8) does not apply"),
        (10, "aACompromise (10) does not apply"),
    ] {
        let r = c
            .post(
                &revoke,
                Some(&json!({"certificate": b64::encode(&der), "reason": code})),
            )
            .await;
        assert_eq!(
            (r.status, r.problem_type().as_str()),
            (400, "badRevocationReason")
        );
        let detail = r.json()["detail"].as_str().unwrap_or("").to_owned();
        assert!(detail.contains(why), "{code}: {detail}");
    }
    // the issuing account may
    let r = c.post(&revoke, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = c.post(&revoke, Some(&body)).await;
    assert_eq!(r.problem_type(), "alreadyRevoked");
    let store = s.store().await;
    let serial: String = {
        let info = sceau_ca::inspect::cert_info(&der).unwrap();
        info.serial_hex
    };
    let rec = store.cert_by_serial(&serial).await.unwrap();
    assert_eq!(rec.revocation_reason, Some(1));
    // ARI says renew now for a revoked certificate
    let info = sceau_ca::inspect::cert_info(&der).unwrap();
    let ari = c
        .http
        .get(format!(
            "{}/{}",
            c.dir.renewal_info.as_ref().unwrap(),
            info.ari_id.unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ari.status().as_u16(), 200);
    let window: Value = ari.json().await.unwrap();
    let end = time::OffsetDateTime::parse(
        window["suggestedWindow"]["end"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(end <= time::OffsetDateTime::now_utc());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_that_validated_an_ip_address_may_revoke_its_certificate() {
    // RFC 8555 §7.6: an account holding authorizations for every identifier may revoke.
    let s = Server::start(&[
        "--eab",
        "off",
        "--allow-local-identifiers",
        "--allow-server-names",
    ]);
    let (issuer, responder) = ready_client(&s).await;
    let (_, chain) = issue(&issuer, &responder, &["127.0.0.1"]).await;
    let der = rustls_pki_types_first_der(&chain);
    let revoke = issuer.dir.revoke_cert.clone();
    let body = json!({"certificate": b64::encode(&der), "reason": 4});

    let mut holder = Raw::new(&s).await;
    holder.register().await;
    let r = holder.post(&revoke, Some(&body)).await;
    assert_eq!((r.status, r.problem_type().as_str()), (403, "unauthorized"));
    issue(&holder, &responder, &["127.0.0.1"]).await;
    let r = holder.post(&revoke, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let serial = sceau_ca::inspect::cert_info(&der).unwrap().serial_hex;
    let rec = s.store().await.cert_by_serial(&serial).await.unwrap();
    assert_eq!(rec.revocation_reason, Some(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_signed_by_the_certificate_key() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("k.test");
    let (c, responder) = ready_client(&s).await;
    let o = order(&c, &["k.test"]).await;
    c.solve_http01(&o, &responder).await;
    // The certificate key doubles as a JWS key: generate it with sceau-wire, CSR with rcgen.
    let cert_key = AccountKey::generate(KeyKind::P256).unwrap();
    let rc_key = rcgen::KeyPair::try_from(cert_key.to_pkcs8_der().as_slice()).unwrap();
    let (csr_b64, _) = csr_with_key(&["k.test"], &rc_key);
    let done = c.finalize(&o, &csr_b64).await.json();
    let chain = String::from_utf8(
        c.post(done["certificate"].as_str().unwrap(), None)
            .await
            .body,
    )
    .unwrap();
    let der = rustls_pki_types_first_der(&chain);
    let revoke = c.dir.revoke_cert.clone();
    let body = serde_json::to_vec(&json!({"certificate": b64::encode(&der)})).unwrap();
    // signed by some other key with jwk: refused
    let other = AccountKey::generate(KeyKind::P256).unwrap();
    let jws = sceau_wire::jws::sign(
        &other,
        Signer::Jwk,
        Some(&c.nonce().await),
        &revoke,
        Some(&body),
    )
    .unwrap();
    assert_eq!(c.send(&revoke, &jws).await.problem_type(), "unauthorized");
    // signed by the certificate's key: accepted
    let jws = sceau_wire::jws::sign(
        &cert_key,
        Signer::Jwk,
        Some(&c.nonce().await),
        &revoke,
        Some(&body),
    )
    .unwrap();
    let r = c.send(&revoke, &jws).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn rustls_pki_types_first_der(chain: &str) -> Vec<u8> {
    sceau_wire::key::pem_decode(chain, "CERTIFICATE").unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn key_change_moves_the_account_to_the_new_key() {
    let s = Server::start(&["--eab", "off"]);
    let (mut c, _r) = ready_client(&s).await;
    let kid = c.kid.clone().unwrap();
    let url = c.dir.key_change.clone();
    let new_key = AccountKey::generate(KeyKind::Ed25519).unwrap();
    let inner_payload =
        serde_json::to_vec(&json!({"account": kid, "oldKey": c.key.jwk()})).unwrap();
    let inner =
        sceau_wire::jws::sign(&new_key, Signer::Jwk, None, &url, Some(&inner_payload)).unwrap();
    let r = c
        .post(&url, Some(&serde_json::to_value(&inner).unwrap()))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // the old P-256 key no longer signs for the account, now an Ed25519 one; the new one does
    let r = c.post(&kid, None).await;
    assert_eq!(
        (r.status, r.problem_type().as_str()),
        (400, "badSignatureAlgorithm")
    );
    c.key = new_key;
    let r = c.post(&kid, None).await;
    assert_eq!(r.status, 200);
    // an inner JWS carrying a nonce is refused (RFC 8555 §7.3.5)
    let newer = AccountKey::generate(KeyKind::P256).unwrap();
    let inner_payload =
        serde_json::to_vec(&json!({"account": kid, "oldKey": c.key.jwk()})).unwrap();
    let inner =
        sceau_wire::jws::sign(&newer, Signer::Jwk, Some("n"), &url, Some(&inner_payload)).unwrap();
    let r = c
        .post(&url, Some(&serde_json::to_value(&inner).unwrap()))
        .await;
    assert_eq!(r.problem_type(), "malformed");
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_info_and_replaces() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("ari.test");
    let (c, responder) = ready_client(&s).await;
    let (_o, chain) = issue(&c, &responder, &["ari.test"]).await;
    let der = rustls_pki_types_first_der(&chain);
    let info = sceau_ca::inspect::cert_info(&der).unwrap();
    let ari_id = info.ari_id.unwrap();
    let r = c
        .http
        .get(format!(
            "{}/{}",
            c.dir.renewal_info.as_ref().unwrap(),
            ari_id
        ))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("retry-after"));
    let w: Value = r.json().await.unwrap();
    let start = time::OffsetDateTime::parse(
        w["suggestedWindow"]["start"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(start > info.not_before + (info.not_after - info.not_before) / 2);
    // a replacing order reflects `replaces`; a second one gets alreadyReplaced once the first is valid
    let ids = json!({"identifiers": [{"type": "dns", "value": "ari.test"}], "replaces": ari_id});
    let r = c.post(&c.dir.new_order.clone(), Some(&ids)).await;
    assert_eq!(r.json()["replaces"], json!(ari_id));
    let url = r.location();
    let o = r.json();
    assert_eq!(o["status"], "ready", "valid authorization reused");
    let (csr_b64, _) = csr(&["ari.test"]);
    c.finalize(&o, &csr_b64).await;
    assert_eq!(c.post(&url, None).await.json()["status"], "valid");
    let r = c.post(&c.dir.new_order.clone(), Some(&ids)).await;
    assert_eq!(
        (r.status, r.problem_type().as_str()),
        (409, "alreadyReplaced")
    );
    // unknown certificate id
    let r = c
        .http
        .get(format!(
            "{}/AAAA.AAAA",
            c.dir.renewal_info.as_ref().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn account_update_and_authorization_deactivation() {
    let s = Server::start(&["--eab", "off"]);
    let (c, _r) = ready_client(&s).await;
    let kid = c.kid.clone().unwrap();
    let r = c
        .post(&kid, Some(&json!({"contact": ["mailto:new@example.test"]})))
        .await;
    assert_eq!(r.json()["contact"], json!(["mailto:new@example.test"]));
    let r = c
        .post(&kid, Some(&json!({"contact": ["mailto:broken"]})))
        .await;
    assert_eq!(r.problem_type(), "invalidContact");
    assert_eq!(
        c.post(&kid, None).await.json()["contact"],
        json!(["mailto:new@example.test"]),
        "refused update changed nothing"
    );
    // status other than deactivated is refused
    let r = c.post(&kid, Some(&json!({"status": "revoked"}))).await;
    assert_eq!(r.problem_type(), "malformed");

    let o = order(&c, &["gone.test"]).await;
    let authz_url = o["authorizations"][0].as_str().unwrap();
    let r = c.post(authz_url, Some(&json!({"status": "valid"}))).await;
    assert_eq!(r.problem_type(), "malformed");
    let r = c
        .post(authz_url, Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(r.json()["status"], "deactivated");
    // deactivating twice is refused; the order can no longer become ready
    let r = c
        .post(authz_url, Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(r.problem_type(), "malformed");
    assert_eq!(
        c.post(o["_url"].as_str().unwrap(), None).await.json()["status"],
        "invalid"
    );
    // another account cannot see it
    let mut other = Raw::new(&s).await;
    other.register().await;
    assert_eq!(other.post(authz_url, None).await.status, 404);
}

/// The CA keys live in a child signing process; it never outlives a killed front end.
#[tokio::test(flavor = "multi_thread")]
async fn signing_runs_in_a_child_process_that_dies_with_the_front_end() {
    let mut s = Server::start(&["--eab", "off"]);
    let front = s.child.as_ref().unwrap().id();
    let children: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(front)
        })
        .collect();
    let signer: Vec<u32> = children
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|a| a == b"sign-service")
        })
        .collect();
    assert_eq!(signer.len(), 1, "one sign-service child");
    s.kill(); // SIGKILL
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !std::path::Path::new(&format!("/proc/{}", signer[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", signer[0]))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    });
    assert!(gone, "the signing service outlived its front end");
}

/// R39: more than 90 days only with the explicit override.
#[tokio::test(flavor = "multi_thread")]
async fn validity_above_90_days_needs_an_explicit_override() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args([
            "serve",
            "--eab",
            "off",
            "--validation-allow",
            "127.0.0.0/8",
            "--cert-validity-days",
            "120",
            "--listen",
            "127.0.0.1:1",
            "--data-dir",
        ])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(err.contains("--allow-long-validity"), "{err}");
    assert!(
        !dir.path().join("d").exists(),
        "a refused start writes nothing"
    );

    let s = Server::start(&[
        "--eab",
        "off",
        "--cert-validity-days",
        "120",
        "--allow-long-validity",
    ]);
    s.add_host("long.test");
    let (c, responder) = ready_client(&s).await;
    let (_, chain) = issue(&c, &responder, &["long.test"]).await;
    let info = sceau_ca::inspect::cert_info(&rustls_pki_types_first_der(&chain)).unwrap();
    assert_eq!((info.not_after - info.not_before).whole_days(), 120);
}
