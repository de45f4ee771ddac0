//! The issuance policy end to end (agency guide R26, R27, R29, R34, R35, R37, R42): names on
//! the AA's list only, checked at newOrder, at finalize and at the signing gate; the failed
//! validation limit; no key certified twice. Refused cases check the problem type and that
//! nothing was created.

mod admin_support;
mod support;

use admin_support::*;
use sceau_store::Table;
use serde_json::json;
use support::{Http01, Raw, Server, csr, csr_with_key, openssl_verify, order, ready_order};

#[tokio::test(flavor = "multi_thread")]
async fn only_listed_names_exactly_or_explicit_subdomains() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(
        &server,
        &["www.a.test"],
        &["--with-subdomains", "corp.test"],
    );
    let c = bound_client(&server, &kid, &key).await;
    let store = server.store().await;

    let r = c
        .new_order(&["www.a.test", "x.corp.test", "corp.test", "a.b.corp.test"])
        .await;
    assert_eq!(r.status, 201, "{}", body(&r));
    assert_eq!(store.count(Table::Orders).await.unwrap(), 1);

    let r = c
        .new_order(&["www.a.test", "a.test", "sub.www.a.test", "other.test"])
        .await;
    assert_eq!(r.problem_type(), "rejectedIdentifier", "{}", body(&r));
    assert_eq!(
        refused_names(&r.json()),
        ["a.test", "other.test", "sub.www.a.test"],
        "one subproblem per refused name"
    );
    assert!(
        r.json()["subproblems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["type"] == "urn:ietf:params:acme:error:rejectedIdentifier")
    );
    assert_eq!(
        store.count(Table::Orders).await.unwrap(),
        1,
        "a refused order was created"
    );
    assert_eq!(store.count(Table::Authzs).await.unwrap(), 4);
    let audit = store.audit_events(Some(&account_id(&c)), 0).await.unwrap();
    assert!(
        audit.iter().any(|e| e.event == "policy.refused"),
        "refusal not audited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcards_are_refused() {
    let server = Server::start(&[]);
    let (kid, key) = create_aa(&server, &["www.a.test"], &["--with-subdomains", "a.test"]);
    let c = bound_client(&server, &kid, &key).await;
    let r = c.new_order(&["*.a.test"]).await;
    assert_eq!(r.problem_type(), "rejectedIdentifier", "{}", body(&r));
    assert_eq!(server.store().await.count(Table::Orders).await.unwrap(), 0);
    // Nor can an administrator list one.
    let out = admin(&server, &["account", "add-domain", &kid, "*.b.test"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("R42"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_removed_before_finalize_is_refused_there() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("www.a.test");
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    let o = ready_order(&c, &responder, &["www.a.test"]).await;

    admin_ok(&server, &["account", "remove-domain", &kid, "www.a.test"]);
    let (csr_b64, _) = csr(&["www.a.test"]);
    let r = c.finalize(&o, &csr_b64).await;
    assert_eq!(r.problem_type(), "rejectedIdentifier", "{}", body(&r));
    assert_eq!(
        server
            .store()
            .await
            .count(Table::Certificates)
            .await
            .unwrap(),
        0
    );

    // Listed again, the same order finalizes.
    admin_ok(&server, &["account", "add-domain", &kid, "www.a.test"]);
    let r = c.finalize(&o, &csr_b64).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    assert_eq!(
        server
            .store()
            .await
            .count(Table::Certificates)
            .await
            .unwrap(),
        1
    );
}

/// The signing gate: an order already past finalize's checks (left in `processing`, as a crash
/// would leave it) is issued at start-up only if its names are still allowed.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_removed_before_signing_is_refused_at_the_signing_gate() {
    let mut server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("keep.a.test");
    server.add_host("drop.a.test");
    let (kid, key) = create_aa(&server, &["keep.a.test", "drop.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    let store = server.store().await;
    let mut urls = Vec::new();
    for name in ["keep.a.test", "drop.a.test"] {
        let o = ready_order(&c, &responder, &[name]).await;
        let url = o["_url"].as_str().unwrap().to_owned();
        let id = url.rsplit('/').next().unwrap().to_owned();
        store.start_processing(&id, &csr(&[name]).0).await.unwrap();
        urls.push(url);
    }
    server.kill();
    admin_ok(&server, &["account", "remove-domain", &kid, "drop.a.test"]);
    server.spawn();
    let kept = c.poll(&urls[0], &["processing"]).await;
    assert_eq!(kept["status"], "valid", "{kept}");
    let dropped = c.poll(&urls[1], &["processing"]).await;
    assert_eq!(dropped["status"], "invalid", "{dropped}");
    assert_eq!(
        dropped["error"]["type"],
        "urn:ietf:params:acme:error:rejectedIdentifier"
    );
    assert_eq!(store.count(Table::Certificates).await.unwrap(), 1);
}

async fn fail_validation(c: &support::Raw, name: &str) -> support::Resp {
    let o = order(c, &[name]).await;
    let (authz_url, ch) = c.first_challenge(&o, "http-01").await;
    let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    if r.status == 200 {
        let done = c.poll(&authz_url, &["pending"]).await;
        assert_eq!(
            done["status"], "invalid",
            "validation with no responder succeeded: {done}"
        );
    }
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn sixth_failed_validation_in_an_hour_is_rate_limited() {
    let server = Server::start(&[]);
    // An address but no responder: every http-01 validation fails (connection refused).
    server.add_host("fail.a.test");
    server.add_host("other.a.test");
    let (kid, key) = create_aa(&server, &["fail.a.test", "other.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    for i in 0..5 {
        let r = fail_validation(&c, "fail.a.test").await;
        assert_eq!(r.status, 200, "attempt {}: {}", i + 1, body(&r));
    }
    let r = fail_validation(&c, "fail.a.test").await;
    assert_eq!(r.problem_type(), "rateLimited", "{}", body(&r));
    assert_eq!(r.status, 429);
    assert!(r.headers.get("retry-after").is_some(), "no Retry-After");
    // Per name: another name of the same account is not limited.
    let r = fail_validation(&c, "other.a.test").await;
    assert_eq!(r.status, 200, "{}", body(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_validation_limit_is_configurable() {
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("sceau.toml");
    std::fs::write(&path, "max_failed_validations_per_hour = 1\n").unwrap();
    let server = Server::start(&["--config", path.to_str().unwrap()]);
    server.add_host("fail.a.test");
    let (kid, key) = create_aa(&server, &["fail.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    assert_eq!(fail_validation(&c, "fail.a.test").await.status, 200);
    let r = fail_validation(&c, "fail.a.test").await;
    assert_eq!(r.problem_type(), "rateLimited", "{}", body(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_certified_once_is_refused_again() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("www.a.test");
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;
    let reused = rcgen::KeyPair::generate().unwrap();
    for attempt in 0..2 {
        let o = ready_order(&c, &responder, &["www.a.test"]).await;
        let (csr_b64, _) = csr_with_key(&["www.a.test"], &reused);
        let r = c.finalize(&o, &csr_b64).await;
        if attempt == 0 {
            assert_eq!(r.status, 200, "{}", body(&r));
        } else {
            assert_eq!(r.problem_type(), "badCSR", "{}", body(&r));
            assert!(r.json()["detail"].as_str().unwrap().contains("R37"));
            // A fresh key is accepted on the same order.
            let (fresh, _) = csr(&["www.a.test"]);
            let r = c.finalize(&o, &fresh).await;
            assert_eq!(r.status, 200, "{}", body(&r));
        }
    }
    assert_eq!(
        server
            .store()
            .await
            .count(Table::Certificates)
            .await
            .unwrap(),
        2
    );
}

/// R42's exception: a wildcard needs the server's `--allow-wildcards` AND the external
/// account's permission; it is proved with dns-01 on the base name only.
#[tokio::test(flavor = "multi_thread")]
async fn wildcards_only_where_server_and_external_account_allow_them() {
    let server = Server::start(&["--allow-wildcards"]);
    // Without the external account's permission: refused, nothing created.
    let (kid1, key1) = create_aa(&server, &["w1.test"], &[]);
    let c1 = bound_client(&server, &kid1, &key1).await;
    let r = c1.new_order(&["*.w1.test"]).await;
    assert_eq!(r.problem_type(), "rejectedIdentifier", "{}", body(&r));
    assert_eq!(server.store().await.count(Table::Orders).await.unwrap(), 0);

    // With it: one wildcard authorization for the base name, dns-01 only.
    let (kid2, key2) = create_aa(&server, &["w2.test"], &["--allow-wildcards"]);
    let c2 = bound_client(&server, &kid2, &key2).await;
    let o = order(&c2, &["*.w2.test"]).await;
    let authz_url = o["authorizations"][0].as_str().unwrap();
    let authz = c2.post(authz_url, None).await.json();
    assert_eq!(authz["wildcard"], true);
    assert_eq!(authz["identifier"]["value"], "w2.test");
    let kinds: Vec<&str> = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dns-01"]);
    let ch = &authz["challenges"][0];
    let digest = c2.dns01_txt(ch["token"].as_str().unwrap());
    server.dns.add_txt("_acme-challenge.w2.test", &digest);
    c2.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(c2.poll(authz_url, &["pending"]).await["status"], "valid");
    let (csr_b64, _) = csr(&["*.w2.test"]);
    let done = c2.finalize(&o, &csr_b64).await.json();
    assert_eq!(done["status"], "valid", "{done}");
    let chain = String::from_utf8(
        c2.post(done["certificate"].as_str().unwrap(), None)
            .await
            .body,
    )
    .unwrap();
    openssl_verify(&server, &chain);
    let der = sceau_wire::key::pem_decode(&chain, "CERTIFICATE").unwrap();
    let info = sceau_ca::inspect::cert_info(&der).unwrap();
    assert_eq!(
        info.identifiers,
        vec![sceau_wire::Identifier::dns("*.w2.test")]
    );

    // An account bound to no external account gets no wildcard, even with EAB optional.
    let open = Server::start(&["--eab", "optional", "--allow-wildcards"]);
    let mut c3 = Raw::new(&open).await;
    c3.register().await;
    let r = c3.new_order(&["*.w3.test"]).await;
    assert_eq!(r.problem_type(), "rejectedIdentifier");
    assert!(body(&r).contains("bound"), "{}", body(&r));
}
