//! Library tests against a real ACME server (Pebble by default; see `support::ServerFactory`)
//! resolving names through a real knot DNS server.

#[macro_use]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sceau_client::account::{Account, Eab, NewAccountOptions};
use sceau_client::events::{self, Event, EventSink};
use sceau_client::order::RevokeWith;
use sceau_client::solver::Method;
use sceau_client::{AcmeClient, Error, IssueRequest, Issued, KeySource, Plan};
use sceau_wire::{AccountKey, Identifier, KeyKind, ProblemType};
use support::{Env, ServerFactory};

async fn client(env: &Env) -> AcmeClient {
    let http = sceau_client::http::build_client(&sceau_client::http::HttpOptions {
        ca_bundle_pem: Some(env.ca_bundle_pem()),
        timeout: None,
    })
    .unwrap();
    AcmeClient::connect(&env.server.directory_url(), http)
        .await
        .unwrap()
}

async fn account(c: &AcmeClient) -> Account {
    let key = AccountKey::generate(KeyKind::P256).unwrap();
    let opts = NewAccountOptions {
        contact: vec!["mailto:pki@example.org".into()],
        terms_of_service_agreed: true,
        eab: None,
    };
    c.new_account(key, &opts).await.unwrap().0
}

fn http_method(env: &Env) -> Method {
    Method::Http01 {
        port: env.params.http_port,
        address: Some("127.0.0.1".parse().unwrap()),
    }
}

fn recorder() -> (EventSink, std::sync::Arc<std::sync::Mutex<Vec<Event>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    (
        std::sync::Arc::new(move |e: &Event| s.lock().unwrap().push(e.clone())),
        seen,
    )
}

async fn issue_with(
    env: &Env,
    c: &AcmeClient,
    a: &Account,
    names: &[&str],
    plan: Plan,
) -> Result<Issued, Error> {
    let req = IssueRequest {
        identifiers: names.iter().map(|n| Identifier::guess(n)).collect(),
        key: KeySource::Generate(KeyKind::P256),
        plan,
        replaces: None,
        profile: None,
        auto_renewal: None,
        timeout: Duration::from_secs(60),
    };
    let _ = env;
    sceau_client::issue(c, a, req, &events::discard()).await
}

fn check_issued(env: &Env, issued: &Issued, names: &[&str]) {
    let mut want: Vec<Identifier> = names.iter().map(|n| Identifier::guess(n)).collect();
    want.sort();
    let mut got = issued.info.names.clone();
    got.sort();
    assert_eq!(got, want);
    let certs = sceau_wire::key::pem_decode_all(&issued.chain_pem, "CERTIFICATE");
    assert!(certs.len() >= 2, "leaf and at least one intermediate");
    let leaf = sceau_wire::key::pem_encode("CERTIFICATE", &certs[0]);
    let chain: String = certs[1..]
        .iter()
        .map(|c| sceau_wire::key::pem_encode("CERTIFICATE", c))
        .collect();
    env.openssl_verify(&leaf, &chain);
}

async fn http01_listener_issues_for_two_names(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    let a = account(&c).await;
    let (sink, seen) = recorder();
    let req = IssueRequest {
        identifiers: vec![Identifier::dns("a.test"), Identifier::dns("b.test")],
        key: KeySource::Generate(KeyKind::P256),
        plan: Plan::single(http_method(&env)),
        replaces: None,
        profile: None,
        auto_renewal: None,
        timeout: Duration::from_secs(60),
    };
    let issued = sceau_client::issue(&c, &a, req, &sink).await.unwrap();
    check_issued(&env, &issued, &["a.test", "b.test"]);
    let key = AccountKey::from_pem(issued.key_pem.as_deref().unwrap()).unwrap();
    assert_eq!(
        sceau_client::issue::key_spki(&key).unwrap(),
        issued.info.public_key_der
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, Event::ChallengeValid { .. }))
            .count(),
        2
    );
    // The listener is gone once issuance returns (R64: nothing left answering challenges).
    assert!(std::net::TcpStream::connect(("127.0.0.1", env.params.http_port)).is_err());
}

async fn http01_for_an_ip_identifier(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    let a = account(&c).await;
    let issued = issue_with(
        &env,
        &c,
        &a,
        &["127.0.0.1"],
        Plan::single(http_method(&env)),
    )
    .await
    .unwrap();
    check_issued(&env, &issued, &["127.0.0.1"]);
}

/// A web server serving a document root: python's http.server, a real one.
struct WebServer(std::process::Child);
impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn web_server(root: &Path, port: u16) -> WebServer {
    let child = std::process::Command::new(sceau_testkit::require_tool("python3"))
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "web server did not start"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    WebServer(child)
}

async fn webroot_writes_only_the_challenge_file_and_removes_it(server: ServerFactory) {
    let env = Env::start(server);
    let root = env.path("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "site").unwrap();
    let _web = web_server(&root, env.params.http_port);
    let c = client(&env).await;
    let a = account(&c).await;
    let issued = issue_with(
        &env,
        &c,
        &a,
        &["web.test"],
        Plan::single(Method::Webroot { dir: root.clone() }),
    )
    .await
    .unwrap();
    check_issued(&env, &issued, &["web.test"]);
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("index.html")],
        "no .well-known left behind"
    );
}

async fn tls_alpn01_listener(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    let a = account(&c).await;
    let plan = Plan::single(Method::TlsAlpn01 {
        port: env.params.tls_port,
        address: Some("127.0.0.1".parse().unwrap()),
    });
    let issued = issue_with(&env, &c, &a, &["alpn.test", "127.0.0.1"], plan)
        .await
        .unwrap();
    check_issued(&env, &issued, &["alpn.test", "127.0.0.1"]);
}

fn dns_method(env: &Env, key: Option<&Path>) -> Method {
    Method::Dns01Update {
        server: env.dns.addr,
        tsig_key_file: key.map(Path::to_owned),
        check_servers: vec![],
        propagation_timeout_secs: 10,
    }
}

async fn dns01_rfc2136_with_tsig_follows_cname_and_cleans_up(server: ServerFactory) {
    let env = Env::start(server);
    let key = env.path("tsig.key");
    env.dns.write_tsig_key_file(&key).unwrap();
    // cname.test delegates its challenge to a dedicated name (R62).
    env.dns
        .set_cname("_acme-challenge.cname", "cname.acme-delegated");
    let c = client(&env).await;
    let a = account(&c).await;
    let issued = issue_with(
        &env,
        &c,
        &a,
        &["d.test", "cname.test"],
        Plan::single(dns_method(&env, Some(&key))),
    )
    .await
    .unwrap();
    check_issued(&env, &issued, &["d.test", "cname.test"]);
    assert!(
        env.dns.txt("_acme-challenge.d").is_empty(),
        "TXT removed (R64)"
    );
    // Had the CNAME not been followed, knot would have refused a TXT next to the CNAME.
    assert!(
        env.dns.txt("cname.acme-delegated").is_empty(),
        "TXT removed at the CNAME target"
    );
}

async fn dns01_update_with_a_wrong_tsig_key_fails_clearly(server: ServerFactory) {
    let env = Env::start(server);
    let key = env.path("bad.key");
    std::fs::write(
        &key,
        format!(
            "key \"{}\" {{ algorithm hmac-sha256; secret \"d3Jvbmcgc2VjcmV0IQ==\"; }};\n",
            env.dns.tsig.name
        ),
    )
    .unwrap();
    let c = client(&env).await;
    let a = account(&c).await;
    let err = issue_with(
        &env,
        &c,
        &a,
        &["d.test"],
        Plan::single(dns_method(&env, Some(&key))),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Challenge { .. }), "{msg}");
    assert!(msg.contains("d.test") && msg.contains("dns-01"), "{msg}");
    // Without a key at all, knot refuses the update too.
    let err = issue_with(
        &env,
        &c,
        &a,
        &["d.test"],
        Plan::single(dns_method(&env, None)),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("d.test"), "{err}");
}

async fn dns01_hook_program(server: ServerFactory) {
    let env = Env::start(server);
    let keyfile = env.path("knot.key");
    env.dns.write_knot_key_file(&keyfile).unwrap();
    let calls = env.path("calls.log");
    let hook = env.path("hook.sh");
    let knsupdate = sceau_testkit::require_tool("knsupdate");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\necho \"$1 $SCEAU_ACTION $SCEAU_DOMAIN $SCEAU_RECORD_NAME\" >> {calls}\n\
             if [ \"$1\" = present ]; then op=add; ttl=1; else op=del; ttl=; fi\n\
             printf 'server 127.0.0.1 {port}\\nzone test.\\nupdate %s %s. %s TXT \"%s\"\\nsend\\n' \
             \"$op\" \"$SCEAU_RECORD_NAME\" \"$ttl\" \"$SCEAU_TXT_VALUE\" | {knsupdate} -k {key}\n",
            calls = calls.display(),
            port = env.dns.addr.port(),
            knsupdate = knsupdate.display(),
            key = keyfile.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&hook).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let c = client(&env).await;
    let a = account(&c).await;
    let issued = issue_with(
        &env,
        &c,
        &a,
        &["hook.test"],
        Plan::single(Method::Dns01Hook {
            program: hook.clone(),
        }),
    )
    .await
    .unwrap();
    check_issued(&env, &issued, &["hook.test"]);
    let log = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec![
            "present present hook.test _acme-challenge.hook.test",
            "cleanup cleanup hook.test _acme-challenge.hook.test"
        ]
    );
    assert!(env.dns.txt("_acme-challenge.hook").is_empty());
}

async fn mixed_methods_per_name(server: ServerFactory) {
    let env = Env::start(server);
    let key = env.path("tsig.key");
    env.dns.write_tsig_key_file(&key).unwrap();
    let c = client(&env).await;
    let a = account(&c).await;
    let mut plan = Plan::single(http_method(&env));
    plan.per_identifier
        .insert("dns.test".into(), dns_method(&env, Some(&key)));
    let issued = issue_with(&env, &c, &a, &["http.test", "dns.test"], plan)
        .await
        .unwrap();
    check_issued(&env, &issued, &["http.test", "dns.test"]);
}

async fn failed_challenge_names_the_identifier_method_and_server_detail(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    let a = account(&c).await;
    // Our listener on another port than the one the CA connects to: validation fails.
    let wrong = Method::Http01 {
        port: sceau_testkit::free_port(),
        address: Some("127.0.0.1".parse().unwrap()),
    };
    let err = issue_with(&env, &c, &a, &["fail.test"], Plan::single(wrong))
        .await
        .unwrap_err();
    let Error::Challenge {
        identifier,
        method,
        problem,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(identifier, "fail.test");
    assert_eq!(method, "http-01 (listener)");
    let problem = problem.as_ref().expect("the server's problem document");
    assert!(problem.detail.is_some());
    assert!(
        err.to_string().contains(problem.detail.as_deref().unwrap()),
        "{err}"
    );
}

async fn key_rollover_then_old_key_is_unknown(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    let a = account(&c).await;
    let url = a.url.clone();
    let old_pem = a.key.to_pem();
    let a = c
        .key_change(a, AccountKey::generate(KeyKind::P384).unwrap())
        .await
        .unwrap();
    assert_eq!(a.url, url);
    // The new key works for orders; the old key no longer finds the account.
    issue_with(
        &env,
        &c,
        &a,
        &["roll.test"],
        Plan::single(http_method(&env)),
    )
    .await
    .unwrap();
    let err = c
        .find_account(AccountKey::from_pem(&old_pem).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.problem()
            .is_some_and(|p| p.is(ProblemType::AccountDoesNotExist)),
        "{err}"
    );
    assert_eq!(
        c.find_account(AccountKey::from_pem(&a.key.to_pem()).unwrap())
            .await
            .unwrap()
            .url,
        url
    );
}

async fn account_key_types(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    // Pebble 2.4 has no EdDSA; Ed25519 accounts are exercised against sceau-server
    // (`ed25519_and_p384_accounts_end_to_end`).
    for kind in [KeyKind::P256, KeyKind::P384, KeyKind::Rsa2048] {
        let key = AccountKey::generate(kind).unwrap();
        let opts = NewAccountOptions {
            terms_of_service_agreed: true,
            ..Default::default()
        };
        let (a, obj) = c.new_account(key, &opts).await.unwrap();
        assert_eq!(obj.status, sceau_wire::AccountStatus::Valid, "{kind}");
        assert_eq!(
            c.account_info(&a).await.unwrap().status,
            sceau_wire::AccountStatus::Valid
        );
    }
}

async fn deactivated_account_cannot_order(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    let a = account(&c).await;
    let obj = c.deactivate_account(&a).await.unwrap();
    assert_eq!(obj.status, sceau_wire::AccountStatus::Deactivated);
    let err = issue_with(&env, &c, &a, &["x.test"], Plan::single(http_method(&env)))
        .await
        .unwrap_err();
    assert!(
        err.problem()
            .is_some_and(|p| p.is(ProblemType::Unauthorized)),
        "{err}"
    );
}

async fn revoke_by_account_and_by_certificate_key(server: ServerFactory) {
    let env = Env::start(server);
    let c = client(&env).await;
    let a = account(&c).await;
    let one = issue_with(
        &env,
        &c,
        &a,
        &["rev1.test"],
        Plan::single(http_method(&env)),
    )
    .await
    .unwrap();
    c.revoke(
        RevokeWith::Account(&a),
        &one.info.der,
        Some(sceau_wire::reason::SUPERSEDED),
    )
    .await
    .unwrap();
    let (status, reason) = env.server.revocation_status(&one.info.serial_hex).unwrap();
    assert_eq!((status.as_str(), reason), ("Revoked", Some(4)));
    // Revoking twice is refused with alreadyRevoked.
    let err = c
        .revoke(RevokeWith::Account(&a), &one.info.der, None)
        .await
        .unwrap_err();
    assert!(
        err.problem()
            .is_some_and(|p| p.is(ProblemType::AlreadyRevoked)),
        "{err}"
    );

    let two = issue_with(
        &env,
        &c,
        &a,
        &["rev2.test"],
        Plan::single(http_method(&env)),
    )
    .await
    .unwrap();
    let cert_key = AccountKey::from_pem(two.key_pem.as_deref().unwrap()).unwrap();
    c.revoke(
        RevokeWith::CertificateKey(&cert_key),
        &two.info.der,
        Some(sceau_wire::reason::KEY_COMPROMISE),
    )
    .await
    .unwrap();
    let (status, reason) = env.server.revocation_status(&two.info.serial_hex).unwrap();
    assert_eq!((status.as_str(), reason), ("Revoked", Some(1)));
    // A key that is not the certificate's cannot revoke it.
    let three = issue_with(
        &env,
        &c,
        &a,
        &["rev3.test"],
        Plan::single(http_method(&env)),
    )
    .await
    .unwrap();
    let stranger = AccountKey::generate(KeyKind::P256).unwrap();
    assert!(
        c.revoke(RevokeWith::CertificateKey(&stranger), &three.info.der, None)
            .await
            .is_err()
    );
}

async fn external_account_binding(server: ServerFactory) {
    let env = Env::start_with(server, |p| p.eab_required = true);
    let (kid, hmac) = env.server.eab_credentials().expect("an EAB key");
    let c = client(&env).await;
    assert!(
        c.directory()
            .meta
            .as_ref()
            .unwrap()
            .external_account_required
    );
    let opts = |eab| NewAccountOptions {
        terms_of_service_agreed: true,
        eab,
        ..Default::default()
    };
    // Without binding: refused before anything is sent, with a message saying what to give.
    let err = c
        .new_account(AccountKey::generate(KeyKind::P256).unwrap(), &opts(None))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("external account binding"),
        "{err}"
    );
    // Wrong MAC key: the server refuses.
    let wrong = Eab {
        key_id: kid.clone(),
        hmac_key: vec![1u8; 32],
    };
    let err = c
        .new_account(
            AccountKey::generate(KeyKind::P256).unwrap(),
            &opts(Some(wrong)),
        )
        .await
        .unwrap_err();
    assert!(err.problem().is_some(), "{err}");
    // Unknown key id: refused too.
    let unknown = Eab {
        key_id: format!("{kid}-unknown"),
        hmac_key: Eab::decode_hmac_key(&hmac).unwrap(),
    };
    let err = c
        .new_account(
            AccountKey::generate(KeyKind::P256).unwrap(),
            &opts(Some(unknown)),
        )
        .await
        .unwrap_err();
    assert!(err.problem().is_some(), "{err}");
    // Right one: bound.
    let good = Eab {
        key_id: kid.clone(),
        hmac_key: Eab::decode_hmac_key(&hmac).unwrap(),
    };
    assert!(!format!("{good:?}").contains(&hmac));
    let (a, obj) = c
        .new_account(
            AccountKey::generate(KeyKind::P256).unwrap(),
            &opts(Some(good)),
        )
        .await
        .unwrap();
    assert_eq!(obj.status, sceau_wire::AccountStatus::Valid);
    issue_with(&env, &c, &a, &["eab.test"], Plan::single(http_method(&env)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_nonce_is_retried_pebble() {
    // Pebble rejects 30% of the valid nonces: every request must still go through (RFC 8555 §6.5).
    let env = Env::start_with(support::pebble, |p| p.nonce_reject = 30);
    let c = client(&env).await;
    let a = account(&c).await;
    for name in ["n1.test", "n2.test"] {
        issue_with(&env, &c, &a, &[name], Plan::single(http_method(&env)))
            .await
            .unwrap();
    }
}

async fn untrusted_server_certificate_is_refused(server: ServerFactory) {
    let env = Env::start(server);
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = support::https_identity(other.path());
    let http = sceau_client::http::build_client(&sceau_client::http::HttpOptions {
        ca_bundle_pem: Some(std::fs::read_to_string(other_ca).unwrap()),
        timeout: None,
    })
    .unwrap();
    let err = AcmeClient::connect(&env.server.directory_url(), http)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let _: SocketAddr = env.dns.addr;
}

both_servers!(async:
    http01_listener_issues_for_two_names,
    http01_for_an_ip_identifier,
    webroot_writes_only_the_challenge_file_and_removes_it,
    tls_alpn01_listener,
    dns01_rfc2136_with_tsig_follows_cname_and_cleans_up,
    dns01_update_with_a_wrong_tsig_key_fails_clearly,
    dns01_hook_program,
    mixed_methods_per_name,
    failed_challenge_names_the_identifier_method_and_server_detail,
    key_rollover_then_old_key_is_unknown,
    account_key_types,
    deactivated_account_cannot_order,
    revoke_by_account_and_by_certificate_key,
    external_account_binding,
    untrusted_server_certificate_is_refused,
);

/// Ed25519 (RFC 8037; Pebble has no EdDSA) and P-384 account keys: register, issue, roll over
/// to the other type, issue again, revoke, deactivate.
async fn account_key_end_to_end(first: KeyKind, second: KeyKind) {
    let env = Env::start(support::sceau_server);
    let c = client(&env).await;
    let opts = NewAccountOptions {
        terms_of_service_agreed: true,
        ..Default::default()
    };
    let (a, obj) = c
        .new_account(AccountKey::generate(first).unwrap(), &opts)
        .await
        .unwrap();
    assert_eq!(obj.status, sceau_wire::AccountStatus::Valid);
    assert_eq!(a.key.kind(), first);
    // The same key finds the same account (RFC 8555 §7.3.1 onlyReturnExisting).
    assert_eq!(
        c.find_account(AccountKey::from_pem(&a.key.to_pem()).unwrap())
            .await
            .unwrap()
            .url,
        a.url
    );
    let one = issue_with(&env, &c, &a, &["k1.test"], Plan::single(http_method(&env)))
        .await
        .unwrap();
    check_issued(&env, &one, &["k1.test"]);
    let a = c
        .key_change(a, AccountKey::generate(second).unwrap())
        .await
        .unwrap();
    assert_eq!(a.key.kind(), second);
    let two = issue_with(&env, &c, &a, &["k2.test"], Plan::single(http_method(&env)))
        .await
        .unwrap();
    check_issued(&env, &two, &["k2.test"]);
    // Certificates ordered under the first key still belong to the account.
    c.revoke(RevokeWith::Account(&a), &one.info.der, None)
        .await
        .unwrap();
    assert_eq!(
        env.server
            .revocation_status(&one.info.serial_hex)
            .unwrap()
            .0,
        "Revoked"
    );
    assert_eq!(
        c.deactivate_account(&a).await.unwrap().status,
        sceau_wire::AccountStatus::Deactivated
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ed25519_then_p384_account_sceau_server() {
    account_key_end_to_end(KeyKind::Ed25519, KeyKind::P384).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn p384_then_ed25519_account_sceau_server() {
    account_key_end_to_end(KeyKind::P384, KeyKind::Ed25519).await;
}
