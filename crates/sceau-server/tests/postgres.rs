//! sceau-server on a real PostgreSQL server, and two instances sharing it: any request may go
//! to any instance (state is in the database, and so are the nonces' key and redemptions: a
//! nonce from one instance is good once on any of them).

mod support;

use serde_json::json;
use support::*;

/// A POST-as-GET of `url` by `c`'s account with `nonce`, as a JWS to send anywhere.
fn post_as_get(c: &Raw, nonce: &str, url: &str) -> sceau_wire::jws::Flattened {
    sceau_wire::jws::sign(
        &c.key,
        sceau_wire::jws::Signer::Kid(c.kid.as_ref().unwrap()),
        Some(nonce),
        url,
        None,
    )
    .unwrap()
}

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

    // A nonce from one instance is good on the other (one key, kept in the database)...
    let nonce = c.nonce().await; // from the first
    let acct = c.kid.clone().unwrap();
    let jws = post_as_get(&c, &nonce, &acct);
    let r = c.send(&acct.replace(&base, &second.base()), &jws).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // ...and once only, wherever it comes back.
    let again = c.send(&acct.replace(&base, &second.base()), &jws).await;
    assert_eq!(again.problem_type(), "badNonce");
    let elsewhere = c.send(&acct, &jws).await;
    assert_eq!(elsewhere.problem_type(), "badNonce");
    // A nonce the first issued and nobody redeemed yet is still good on the first.
    let nonce = c.nonce().await;
    let jws = post_as_get(&c, &nonce, &acct);
    assert_eq!(c.send(&acct, &jws).await.status, 200);
}

/// An http-01 responder that answers every request after `delay`, counting the requests.
async fn slow_responder(
    port: u16,
    delay: std::time::Duration,
    body: String,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::atomic::Ordering;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let (seen, body) = (seen.clone(), body.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
            });
        }
    });
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_starting_never_takes_a_live_instances_validation() {
    use std::sync::atomic::Ordering;
    let pg = sceau_testkit::Postgres::start();
    let first = Server::start(&["--eab", "off", "--database", &pg.url]);
    first.add_host("slow.test");
    let mut c = Raw::new(&first).await;
    c.register().await;
    let o = order(&c, &["slow.test"]).await;
    let authz = c
        .post(o["authorizations"][0].as_str().unwrap(), None)
        .await
        .json();
    let ch = challenge(&authz, "http-01");
    let token = ch["token"].as_str().unwrap();
    let requests = slow_responder(
        first.http01_port,
        std::time::Duration::from_secs(6),
        c.key_authz(token),
    )
    .await;
    // The first instance starts validating; its validation waits on the slow responder.
    let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A second instance starts meanwhile, on the same database: it must leave that
    // validation to the first (its lease is live), not run it again.
    let base = first.base();
    let second = Server::start_sibling(
        &first,
        &["--eab", "off", "--database", &pg.url, "--base-url", &base],
    );
    let done = c.poll(o["_url"].as_str().unwrap(), &["pending"]).await;
    // poll gives up after 10 s; the validation takes about 6.
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "one validation, by its own instance"
    );
    drop(second);
}

/// `psql` as `role` on the test server's database: (succeeded, what it printed on stderr).
fn psql_as(pg: &sceau_testkit::Postgres, role: &str, sql: &str) -> (bool, String) {
    let out = std::process::Command::new(sceau_testkit::require_tool("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(pg.port.to_string())
        .args(["-U", role, "-d", "sceau", "-c", sql])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_roles_serve_and_refuse_what_they_may_not() {
    let pg = sceau_testkit::Postgres::start();
    // The schema's owner migrates and sets up the roles (R33).
    let scratch = tempfile::tempdir().unwrap();
    assert!(make_db_roles(&pg.url, scratch.path()).contains("are set up"));
    let role_url = |role: &str| format!("postgres://{role}@127.0.0.1:{}/sceau", pg.port);
    let signer_file = scratch.path().join("signer-url");
    std::fs::write(&signer_file, role_url("sceau_signer")).unwrap();
    std::fs::set_permissions(
        &signer_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // The server runs on the front end's role, its signing gate on the signer's: a whole
    // issuance works with what they may do.
    let server = Server::start(&[
        "--eab",
        "off",
        "--database",
        &role_url("sceau_front"),
        "--signer-database-url-file",
        signer_file.to_str().unwrap(),
    ]);
    let responder = Http01::start(server.http01_port).await;
    let mut c = Raw::new(&server).await;
    c.register().await;
    server.add_host("roles");
    let (done, chain) = issue(&c, &responder, &["roles.test"]).await;
    assert_eq!(done["status"], "valid");
    openssl_verify(&server, &chain);

    // What each role may not do, refused by PostgreSQL itself.
    let (ok, err) = psql_as(&pg, "sceau_front", "CREATE TABLE stolen (a TEXT)");
    assert!(!ok && err.contains("permission denied"), "{err}");
    let (ok, err) = psql_as(&pg, "sceau_front", "DROP TABLE certificates");
    assert!(!ok && err.contains("must be owner"), "{err}");
    let (ok, err) = psql_as(&pg, "sceau_signer", "SELECT COUNT(*) FROM certificates");
    assert!(!ok && err.contains("permission denied"), "{err}");
    let (ok, err) = psql_as(&pg, "sceau_signer", "UPDATE accounts SET status = 'valid'");
    assert!(!ok && err.contains("permission denied"), "{err}");
    let (ok, err) = psql_as(
        &pg,
        "sceau_signer",
        "SELECT COUNT(*) FROM external_accounts",
    );
    assert!(ok, "the signer reads what its gate checks: {err}");
}
