//! sceau-server on a real PostgreSQL server, and two instances sharing it: any request may go
//! to any instance (state is in the database; each instance's nonces are its own, so a client
//! gets `badNonce` and retries when it switches instances with an old nonce).

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_postgresql_database() {
    let pg = sceau_testkit::Postgres::start();
    let first = Server::start(&["--eab", "off", "--database", &pg.url]);
    first.add_host("pg.test");
    let base = first.base();
    let second = Server::start_sibling(
        &first,
        &["--eab", "off", "--database", &pg.url, "--base-url", &base],
    );
    let responder = Http01::start(first.http01_port).await;

    // Register and order on the first instance.
    let mut c = Raw::new(&first).await;
    c.register().await;
    let o = ready_order(&c, &responder, &["pg.test"]).await;

    // Finalize on the second: same URLs (one base URL), the nonce comes from the second.
    let finalize_url = o["finalize"].as_str().unwrap();
    let on_second = finalize_url.replace(&base, &second.base());
    let nonce = {
        let r = c
            .http
            .head(format!("{}/acme/new-nonce", second.base()))
            .send()
            .await
            .unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    };
    let (csr_b64, _) = csr(&["pg.test"]);
    let body = serde_json::to_vec(&json!({"csr": csr_b64})).unwrap();
    let jws = sceau_wire::jws::sign(
        &c.key,
        sceau_wire::jws::Signer::Kid(c.kid.as_ref().unwrap()),
        Some(&nonce),
        finalize_url,
        Some(&body),
    )
    .unwrap();
    let r = c.send(&on_second, &jws).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let done = r.json();
    assert_eq!(done["status"], "valid");

    // The certificate is downloadable from the first instance and chains to the shared root.
    let cert = c.post(done["certificate"].as_str().unwrap(), None).await;
    assert_eq!(cert.status, 200);
    openssl_verify(&first, &String::from_utf8(cert.body).unwrap());

    // A nonce from one instance is refused by the other with badNonce (so clients retry).
    let nonce = c.nonce().await; // from the first
    let acct = c.kid.clone().unwrap();
    let jws = sceau_wire::jws::sign(
        &c.key,
        sceau_wire::jws::Signer::Kid(&acct),
        Some(&nonce),
        &acct,
        None,
    )
    .unwrap();
    let r = c.send(&acct.replace(&base, &second.base()), &jws).await;
    assert_eq!(r.problem_type(), "badNonce");
}
