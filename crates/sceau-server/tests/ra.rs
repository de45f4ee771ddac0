//! Registration-authority mode end to end (issue 13): the real sceau-server, its issuance queue
//! and its signing service in front of a real upstream CA, over ACME.
//!
//! Upstreams: a real `openssl ca` driven by the command upstream (a shell script the test
//! writes, as an operator would), and OpenSSL's own CMP server (`openssl cmp -port`, with its
//! `-pkistatus`, `-failure` and `-poll_count` switches). Each test asserts what a client and an
//! auditor see: the order's status and problem, the certificate chaining to the upstream root
//! (checked by `openssl verify`), what the upstream's own database says, and the audit trail.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sceau_testkit::cmp_mock::MockCmp;
use sceau_testkit::ra_upstream::{CommandUpstream, UpstreamPki};
use sceau_wire::b64;
use serde_json::{Value, json};
use support::{Http01, Raw, Server, csr, csr_with_key};

const CMP_SECRET: &str = "ra upstream shared secret";

fn private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// sceau-server with `config` (`extra` flags), an http-01 responder on its port, and a
/// registered client trusting the PKI that issued the server's HTTPS certificate.
async fn start_ra(config: &Path, pki: &UpstreamPki, extra: &[&str]) -> (Server, Http01, Raw) {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(extra);
    let server = Server::start(&args);
    let responder = Http01::start(server.http01_port).await;
    let c = client(&server, pki).await;
    (server, responder, c)
}

async fn client(server: &Server, pki: &UpstreamPki) -> Raw {
    let mut c = Raw::at(&server.directory_url(), &pki.path("tls.pem")).await;
    c.register().await;
    c
}

/// Polls the order until it leaves `processing` or `bound` passes.
async fn settle(c: &Raw, url: &str, bound: Duration) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let v = c.post(url, None).await.json();
        if v["status"] != "processing" || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// newOrder, http-01, finalize with `csr_b64`: the order once it left `processing`.
async fn order_and_finalize(
    server: &Server,
    c: &Raw,
    responder: &Http01,
    name: &str,
    csr_b64: &str,
    bound: Duration,
) -> Value {
    server.add_host(name.trim_end_matches(".test"));
    let o = support::ready_order(c, responder, &[name]).await;
    let url = o["_url"].as_str().unwrap().to_owned();
    let r = c.finalize(&o, csr_b64).await;
    assert_eq!(r.status, 200, "finalize: {}", r.text());
    let mut v = settle(c, &url, bound).await;
    v["_url"] = json!(url);
    v
}

/// [`order_and_finalize`], for an order that must end `invalid`: its problem detail.
async fn refused_with(
    server: &Server,
    c: &Raw,
    responder: &Http01,
    name: &str,
    csr_b64: &str,
    bound: Duration,
) -> String {
    let done = order_and_finalize(server, c, responder, name, csr_b64, bound).await;
    assert_eq!(done["status"], "invalid", "{done}");
    assert!(done.get("certificate").is_none(), "{done}");
    done["error"]["detail"].as_str().unwrap().to_owned()
}

fn verify_with_upstream_root(pki: &UpstreamPki, chain: &str) {
    sceau_testkit::openssl_ca::verify_server_chain(&pki.root_pem(), chain)
        .unwrap_or_else(|e| panic!("openssl verify against the upstream root: {e}"));
}

fn leaf_der(chain: &str) -> Vec<u8> {
    sceau_wire::key::pem_decode_all(chain, "CERTIFICATE").remove(0)
}

fn serial_of(chain: &str) -> String {
    sceau_ca::inspect::cert_info(&leaf_der(chain))
        .unwrap()
        .serial_hex
}

async fn download(c: &Raw, order: &Value) -> String {
    let r = c.post(order["certificate"].as_str().unwrap(), None).await;
    assert_eq!(r.status, 200);
    r.text()
}

/// `SELECT COUNT(*) …` on the server's database.
async fn count(store: &sceau_store::Store, sql: &'static str) -> i64 {
    store.scalar(sql).await.unwrap()
}

async fn audit_events(server: &Server, event: &str) -> i64 {
    let store = server.store().await;
    let sql: &'static str =
        Box::leak(format!("SELECT COUNT(*) FROM audit WHERE event = '{event}'").into_boxed_str());
    store.scalar(sql).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn command_upstream_signs_through_openssl_ca_and_revokes_there_first() {
    let up = CommandUpstream::new();
    let config = up.config("eab = \"off\"", 20);
    let (server, responder, c) = start_ra(&config, &up.pki, &[]).await;

    let (csr_b64, _) = csr(&["ra-one.test"]);
    let done = order_and_finalize(
        &server,
        &c,
        &responder,
        "ra-one.test",
        &csr_b64,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["status"], "valid", "{done}");
    let chain = download(&c, &done).await;
    verify_with_upstream_root(&up.pki, &chain);
    // The upstream chose the serial and keeps the record: openssl ca's database has it.
    let serial = serial_of(&chain);
    assert_eq!(
        up.pki.upstream_status(&serial),
        Some('V'),
        "serial {serial}"
    );
    // The chain is the upstream's: leaf then its issuing CA, no root.
    assert_eq!(
        sceau_wire::key::pem_decode_all(&chain, "CERTIFICATE").len(),
        2
    );
    // No CRL shard of ours: the upstream publishes revocation for what it signs.
    let store = server.store().await;
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM certificates WHERE crl_shard IS NULL"
        )
        .await,
        1
    );
    // The reserved attempt serial ended issued, naming the upstream's serial.
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM serials WHERE state = 'issued' AND detail LIKE 'upstream serial %'").await,
        1
    );

    // This server is not the OCSP responder of what the upstream signs.
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("leaf.pem"), &chain).unwrap();
    let ocsp = Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(&up.pki.issuing.cert)
        .arg("-cert")
        .arg(files.path().join("leaf.pem"))
        .args(["-url", &format!("{}/ocsp", server.revocation_url())])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&ocsp.stdout).to_string() + &String::from_utf8_lossy(&ocsp.stderr);
    assert!(said.contains("unauthorized"), "{said}");

    // A revocation the upstream refuses is not recorded here.
    let url = c.dir.revoke_cert.clone();
    let body = json!({"certificate": b64::encode(leaf_der(&chain)), "reason": 1});
    up.revoke_mode("refuse");
    let r = c.post(&url, Some(&body)).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("revocation desk closed"), "{}", r.text());
    assert_eq!(up.pki.upstream_status(&serial), Some('V'));
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL"
        )
        .await,
        0
    );
    // Once it takes it, the upstream revokes first, then Sceau records it.
    up.revoke_mode("ok");
    let r = c.post(&url, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.pki.upstream_status(&serial), Some('R'));
    assert_eq!(up.revoked(), vec![format!("{serial} 1")]);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL AND revocation_reason = 1").await,
        1
    );
    let again = c.post(&url, Some(&body)).await;
    assert_eq!(again.problem_type(), "alreadyRevoked");
    assert_eq!(up.revoked().len(), 1, "the upstream is not asked twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_upstream_returns_wrong_is_refused_and_never_handed_out() {
    let up = CommandUpstream::new();
    let config = up.config("eab = \"off\"", 20);
    let (server, responder, c) = start_ra(&config, &up.pki, &[]).await;
    let cases = [
        ("other-names", "are not the order's"),
        ("other-key", "another public key"),
        ("code-signing", "codeSigning"),
        ("long", "R39"),
        ("garbage", "printed no PEM certificate"),
        ("refuse", "openssl-ca-wrapper: policy forbids"),
    ];
    for (i, (mode, says)) in cases.iter().enumerate() {
        up.mode(mode);
        let name = format!("bad{i}.test");
        let (csr_b64, _) = csr(&[&name]);
        let done = order_and_finalize(
            &server,
            &c,
            &responder,
            &name,
            &csr_b64,
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(done["status"], "invalid", "{mode}: {done}");
        let detail = done["error"]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{mode}: {detail}");
        assert!(done.get("certificate").is_none(), "{mode}: {done}");
    }
    let store = server.store().await;
    assert_eq!(count(&store, "SELECT COUNT(*) FROM certificates").await, 0);
    // Every refusal is in the audit trail.
    assert_eq!(
        audit_events(&server, "certificate.refused").await,
        cases.len() as i64
    );
    // No attempt serial is left reserved.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM serials WHERE state = 'reserved'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_is_away_is_waited_for_then_the_order_completes_or_times_out() {
    let up = CommandUpstream::new();
    let config = up.config("eab = \"off\"", 2);
    let (server, responder, c) = start_ra(
        &config,
        &up.pki,
        &[
            "--issuance-deadline-secs",
            "12",
            "--issuance-wait-ms",
            "500",
        ],
    )
    .await;

    // Temporarily failing (EX_TEMPFAIL): the order stays processing, with Retry-After...
    up.mode("tempfail");
    server.add_host("later");
    let o = support::ready_order(&c, &responder, &["later.test"]).await;
    let url = o["_url"].as_str().unwrap().to_owned();
    let (csr_b64, _) = csr(&["later.test"]);
    let r = c.finalize(&o, &csr_b64).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "processing", "{}", r.text());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.post(&url, None).await.json()["status"], "processing");
    // ...and completes once the upstream is back.
    up.mode("ok");
    let done = settle(&c, &url, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "valid", "{done}");

    // Too slow every time: killed at its timeout, retried, invalid at the deadline with why.
    up.mode("slow");
    let (csr_b64, _) = csr(&["slow.test"]);
    let detail = refused_with(
        &server,
        &c,
        &responder,
        "slow.test",
        &csr_b64,
        Duration::from_secs(25),
    )
    .await;
    assert!(detail.contains("did not finish within 2 s"), "{detail}");
    // The killed program left no process behind: neither the script nor its sleep.
    assert!(up.work.join("slow.pids").exists());
    assert_eq!(up.slow_processes_alive(), Vec::<u32>::new(), "left running");
}

/// OpenSSL's CMP mock server answers every request with one fixed certificate: the happy path
/// enrolls the key of that certificate, and any other key must be refused.
struct CmpUpstream {
    pki: UpstreamPki,
    key_pem: String,
    mock: Option<MockCmp>,
    port: u16,
    args: Vec<String>,
}

impl CmpUpstream {
    fn start(extra: &[&str]) -> CmpUpstream {
        let mut up = Self::prepared(extra);
        up.bring_up();
        up
    }

    /// Everything but the running server: the upstream is down until [`CmpUpstream::bring_up`].
    fn prepared(extra: &[&str]) -> CmpUpstream {
        let mut pki = UpstreamPki::new();
        let leaf = pki.leaf("cmp", "cmp.test", "DNS:cmp.test");
        let issuing = pki.path("issuing.pem");
        std::fs::write(&issuing, pki.issuing.chain_pem()).unwrap();
        let mut args: Vec<String> = vec![
            "-srv_ref".into(),
            "upstream".into(),
            "-srv_secret".into(),
            format!("pass:{CMP_SECRET}"),
            "-rsp_cert".into(),
            leaf.to_str().unwrap().into(),
            "-rsp_extracerts".into(),
            issuing.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let key_pem = std::fs::read_to_string(pki.path("cmp.key")).unwrap();
        CmpUpstream {
            pki,
            key_pem,
            mock: None,
            port: sceau_testkit::free_port(),
            args,
        }
    }

    fn bring_up(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.mock = Some(MockCmp::start_on(self.port, &args));
    }

    fn mock(&self) -> &MockCmp {
        self.mock.as_ref().expect("the CMP upstream is up")
    }

    /// The server's TOML file: `head` (top-level settings), then `[ra]` with `[ra.cmp]`.
    fn config(&self, head: &str) -> PathBuf {
        self.config_with(head, 20)
    }

    /// [`CmpUpstream::config`] with one attempt lasting at most `attempt_secs`.
    fn config_with(&self, head: &str, attempt_secs: u64) -> PathBuf {
        let secret = self.pki.path("cmp-secret");
        private(&secret, CMP_SECRET);
        let text = format!(
            "eab = \"off\"\n{head}\n{}[ra.cmp]\nurl = {:?}\nmac_reference = \"sceau-ra\"\nmac_secret_file = {secret:?}\n",
            self.pki.ra_table(attempt_secs),
            format!("http://127.0.0.1:{}/pkix/", self.port),
        );
        let p = self.pki.path("sceau.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn key(&self) -> rcgen::KeyPair {
        rcgen::KeyPair::from_pem(&self.key_pem).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cmp_upstream_enrolls_polls_and_refuses_a_certificate_for_another_key() {
    let up = CmpUpstream::start(&["-poll_count", "2", "-check_after", "1"]);
    // The mock hands out one certificate: R37's fresh-key check would stop the repeat order
    // before it reaches the upstream.
    let config = up.config("refuse_key_reuse = false");
    let (server, responder, c) = start_ra(&config, &up.pki, &[]).await;

    // The mock makes us poll twice (pollReq / pollRep, checkAfter 1 s), then issues.
    let (csr_b64, _) = csr_with_key(&["cmp.test"], &up.key());
    let done = order_and_finalize(
        &server,
        &c,
        &responder,
        "cmp.test",
        &csr_b64,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(done["status"], "valid", "{done}");
    let chain = download(&c, &done).await;
    verify_with_upstream_root(&up.pki, &chain);
    // p10cr, two pollReq, certConf.
    assert_eq!(up.mock().requests(), 4, "{}", up.mock().log_text());

    // The same certificate again, for the same key: the upstream handed it out already, so it
    // is not handed out twice.
    let (csr_b64, _) = csr_with_key(&["cmp.test"], &up.key());
    let detail = refused_with(
        &server,
        &c,
        &responder,
        "cmp.test",
        &csr_b64,
        Duration::from_secs(30),
    )
    .await;
    assert!(detail.contains("already handed out"), "{detail}");

    // Same certificate for a CSR with another key: refused, never handed out.
    let (csr_b64, _) = csr(&["cmp.test"]);
    let detail = refused_with(
        &server,
        &c,
        &responder,
        "cmp.test",
        &csr_b64,
        Duration::from_secs(30),
    )
    .await;
    assert!(detail.contains("CMP upstream"), "{detail}");
    assert!(detail.to_lowercase().contains("key"), "{detail}");
    let store = server.store().await;
    assert_eq!(count(&store, "SELECT COUNT(*) FROM certificates").await, 1);

    // Revocation goes upstream with rr; the mock accepts, then it is recorded.
    let url = c.dir.revoke_cert.clone();
    let before = up.mock().requests();
    let r = c
        .post(
            &url,
            Some(&json!({"certificate": b64::encode(leaf_der(&chain)), "reason": 4})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.mock().requests(),
        before + 1,
        "one rr: {}",
        up.mock().log_text()
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM certificates WHERE revocation_reason = 4"
        )
        .await,
        1
    );
}

/// The RA with `config` (finalize waits 500 ms, orders have 120 s), an order for `cmp.test`
/// finalized with the key of the CMP upstream's certificate and still `processing` (with
/// Retry-After): the server, responder, client and the order's URL.
async fn finalized_processing(up: &CmpUpstream, config: &Path) -> (Server, Http01, Raw, String) {
    let wait = [
        "--issuance-wait-ms",
        "500",
        "--issuance-deadline-secs",
        "120",
    ];
    let (server, responder, c) = start_ra(config, &up.pki, &wait).await;
    server.add_host("cmp");
    let o = support::ready_order(&c, &responder, &["cmp.test"]).await;
    let url = o["_url"].as_str().unwrap().to_owned();
    let (csr_b64, _) = csr_with_key(&["cmp.test"], &up.key());
    let r = c.finalize(&o, &csr_b64).await;
    assert_eq!(r.json()["status"], "processing", "{}", r.text());
    assert!(
        r.headers.get("retry-after").is_some(),
        "Retry-After while processing"
    );
    (server, responder, c, url)
}

/// A CA that makes the RA wait longer than one attempt (a manual approval, a busy CA): the
/// transaction it has is saved with the job and continued with pollReq by later attempts, even
/// after sceau-server was killed and started again, so the CA sees one request and issues once.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_cmp_transaction_is_continued_across_a_restart_never_sent_twice() {
    // Four pollReq before the certificate, each answered "check after 3 s"; an attempt gives
    // up after 1 s, so only a continued transaction can ever complete.
    let up = CmpUpstream::start(&["-poll_count", "4", "-check_after", "3"]);
    let config = up.config_with("", 1);
    let (mut server, _responder, c, url) = finalized_processing(&up, &config).await;
    let order_id = url.rsplit('/').next().unwrap().to_owned();

    // The first attempt leaves the CA's transaction with the job.
    let store = server.store().await;
    let bound = Instant::now() + Duration::from_secs(20);
    let ticket = loop {
        if let Some(t) = store.issuance_ticket(&order_id).await.unwrap() {
            break t;
        }
        assert!(
            Instant::now() < bound,
            "no ticket saved: {}",
            up.mock().log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // It holds the transaction, not the shared secret.
    let saved =
        String::from_utf8(b64::decode(ticket.strip_prefix("cmp:").unwrap()).unwrap()).unwrap();
    assert!(saved.contains("\"id\""), "{saved}");
    assert!(!saved.contains(CMP_SECRET), "{saved}");
    let (_, _, _, _, error) = store.issuance_state(&order_id).await.unwrap();
    assert!(
        error.as_deref().unwrap_or("").contains("still working"),
        "{error:?}"
    );
    assert_eq!(c.post(&url, None).await.json()["status"], "processing");

    // Killed while the CA still works on it, then started again on the same database.
    drop(store);
    server.kill();
    let before_restart = up.mock().requests();
    server.restart();
    let done = settle(&c, &url, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "valid", "{done}\n{}", up.mock().log_text());
    verify_with_upstream_root(&up.pki, &download(&c, &done).await);

    // One p10cr, the four pollReq, one certConf: nothing sent twice, and the restarted server
    // did send some of them.
    let log = up.mock().log_text();
    assert_eq!(up.mock().requests(), 6, "{log}");
    assert!(up.mock().requests() > before_restart, "{log}");
    let store = server.store().await;
    assert_eq!(store.issuance_ticket(&order_id).await.unwrap(), None);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM certificates").await, 1);
    // Every attempt's serial is accounted for: the last issued (naming the upstream's serial),
    // the waiting ones failed with the CA's wait, none left reserved.
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM serials WHERE state = 'issued' AND detail LIKE 'upstream serial %'").await,
        1
    );
    assert!(
        count(
            &store,
            "SELECT COUNT(*) FROM serials WHERE state = 'failed' AND detail LIKE '%still working%'"
        )
        .await
            >= 2
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM serials WHERE state NOT IN ('issued', 'failed')"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cmp_upstream_rejection_makes_the_order_invalid_with_the_cas_own_words() {
    let up = CmpUpstream::start(&[
        "-pkistatus",
        "2",
        "-failurebits",
        "8388608",
        "-statusstring",
        "name not allowed by the RA profile",
    ]);
    let config = up.config("");
    let (server, responder, c) = start_ra(&config, &up.pki, &[]).await;
    let (csr_b64, _) = csr_with_key(&["cmp.test"], &up.key());
    let detail = refused_with(
        &server,
        &c,
        &responder,
        "cmp.test",
        &csr_b64,
        Duration::from_secs(20),
    )
    .await;
    assert!(detail.contains("rejection"), "{detail}");
    assert!(detail.contains("notAuthorized"), "{detail}");
    assert!(
        detail.contains("name not allowed by the RA profile"),
        "{detail}"
    );
    assert_eq!(audit_events(&server, "certificate.refused").await, 1);
}

#[test]
fn ra_settings_that_cannot_work_are_refused_at_start_in_one_line() {
    let up = CommandUpstream::new();
    let check = |text: &str, says: &str| {
        let p = up.pki.path("bad.toml");
        std::fs::write(&p, text).unwrap();
        let data = up.pki.path("data-refused");
        let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .args([
                "serve",
                "--config",
                p.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--revocation-listen",
                "127.0.0.1:0",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(err.contains(says), "{says}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        err.into_owned()
    };
    let base = up.pki.ra_table(10);
    check(&base, "names no upstream");
    // A secret file others may read is refused, and the secret is never printed.
    let secret = up.pki.path("loose-secret");
    std::fs::write(&secret, "do-not-print-me").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = check(
        &format!(
            "{base}[ra.cmp]\nurl = \"http://127.0.0.1:9/\"\nmac_reference = \"r\"\nmac_secret_file = {secret:?}\n"
        ),
        "chmod 600",
    );
    assert!(!err.contains("do-not-print-me"));
    check(
        &format!("{base}[ra.command]\nissue = [\"/nonexistent/sign\"]\n"),
        "does not exist",
    );
    let roots = up.pki.path("not-a-cert.pem");
    std::fs::write(&roots, "nothing here").unwrap();
    check(
        &format!(
            "[ra]\nupstream_roots = {roots:?}\ntls_cert = {:?}\ntls_key = {:?}\n[ra.command]\nissue = [\"/bin/true\"]\n",
            up.pki.path("tls.pem"),
            up.pki.path("tls.key")
        ),
        "holds no PEM certificate",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cmp_upstream_that_is_down_is_waited_for_and_the_order_completes_once_it_is_back() {
    let mut up = CmpUpstream::prepared(&[]);
    let config = up.config("");
    let (server, _responder, c, url) = finalized_processing(&up, &config).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = c.post(&url, None).await.json();
    assert_eq!(waiting["status"], "processing", "{waiting}");
    // The attempts so far are recorded with the upstream's fault.
    let store = server.store().await;
    assert!(
        count(
            &store,
            "SELECT COUNT(*) FROM orders WHERE issue_error LIKE '%unreachable%'"
        )
        .await
            == 1
    );
    up.bring_up();
    let done = settle(&c, &url, Duration::from_secs(40)).await;
    assert_eq!(done["status"], "valid", "{done}");
    verify_with_upstream_root(&up.pki, &download(&c, &done).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acme_upstream_that_never_answers_ends_the_order_invalid_at_the_deadline_with_why() {
    let pki = UpstreamPki::new();
    let dead = sceau_testkit::free_port();
    let config = pki.path("sceau.toml");
    std::fs::write(
        &config,
        format!(
            "eab = \"off\"\n{}[ra.acme]\ndirectory = \"https://127.0.0.1:{dead}/directory\"\ntls_roots = {:?}\naccount_key_file = {:?}\n",
            pki.ra_table(5),
            pki.root_pem(),
            pki.path("account.pem"),
        ),
    )
    .unwrap();
    let (server, responder, c) = start_ra(&config, &pki, &["--issuance-deadline-secs", "6"]).await;
    let (csr_b64, _) = csr(&["gone.test"]);
    let detail = refused_with(
        &server,
        &c,
        &responder,
        "gone.test",
        &csr_b64,
        Duration::from_secs(30),
    )
    .await;
    assert!(detail.contains("within 6 s"), "{detail}");
    assert!(detail.contains("cannot reach the ACME server"), "{detail}");
    assert_eq!(
        server
            .store()
            .await
            .scalar("SELECT COUNT(*) FROM certificates")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_revocation_goes_upstream_first_and_a_refusal_records_nothing() {
    let up = CommandUpstream::new();
    let config = up.config("eab = \"off\"", 20);
    let (server, responder, c) = start_ra(&config, &up.pki, &[]).await;
    let (csr_b64, _) = csr(&["adm.test"]);
    let done = order_and_finalize(
        &server,
        &c,
        &responder,
        "adm.test",
        &csr_b64,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["status"], "valid", "{done}");
    let serial = serial_of(&download(&c, &done).await);
    let admin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .arg("admin")
            .args(["--config", config.to_str().unwrap()])
            .arg("--data-dir")
            .arg(server.data_dir())
            .args(["--actor", "test"])
            .args(args)
            .output()
            .unwrap()
    };
    let revoke = [
        "cert",
        "revoke",
        "--serial",
        &serial,
        "--reason",
        "keyCompromise",
    ];
    up.revoke_mode("refuse");
    let out = admin(&revoke);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("revocation desk closed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let store = server.store().await;
    let revoked = "SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL";
    assert_eq!(store.scalar(revoked).await.unwrap(), 0);
    assert_eq!(up.pki.upstream_status(&serial), Some('V'));
    up.revoke_mode("ok");
    let out = admin(&revoke);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(up.pki.upstream_status(&serial), Some('R'));
    assert_eq!(up.revoked(), vec![format!("{serial} 1")]);
    assert_eq!(store.scalar(revoked).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cmp_upstream_with_signature_protection_both_ways() {
    let mut pki = UpstreamPki::new();
    let leaf = pki.leaf("cmp", "cmp.test", "DNS:cmp.test");
    let ra = pki.leaf("ra", "Sceau RA", "DNS:ra.example");
    let signer = pki.leaf("signer", "Upstream CMP signer", "DNS:cmp-signer.example");
    let stranger = pki.leaf("stranger", "Someone else", "DNS:stranger.example");
    let issuing = pki.path("issuing.pem");
    std::fs::write(&issuing, pki.issuing.chain_pem()).unwrap();
    let ra_chain = pki.path("ra-chain.pem");
    std::fs::write(
        &ra_chain,
        std::fs::read_to_string(&ra).unwrap() + &pki.issuing.chain_pem(),
    )
    .unwrap();
    let root = pki.root_pem();
    let signer_key = pki.path("signer.key");
    let mock = MockCmp::start(&[
        "-srv_cert",
        signer.to_str().unwrap(),
        "-srv_key",
        signer_key.to_str().unwrap(),
        "-srv_trusted",
        root.to_str().unwrap(),
        "-srv_untrusted",
        issuing.to_str().unwrap(),
        "-rsp_cert",
        leaf.to_str().unwrap(),
        "-rsp_extracerts",
        issuing.to_str().unwrap(),
    ]);
    let config = |name: &str, response_signer: &Path| {
        let p = pki.path(name);
        std::fs::write(
            &p,
            format!(
                "eab = \"off\"\n{}[ra.cmp]\nurl = {:?}\nkey_file = {:?}\ncert_file = {ra_chain:?}\nresponse_signers = {response_signer:?}\n",
                pki.ra_table(20),
                mock.url(),
                pki.path("ra.key"),
            ),
        )
        .unwrap();
        p
    };
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.path("cmp.key")).unwrap()).unwrap();

    // Our requests signed with the RA's key, its responses by the pinned CMP signer.
    let good = config("good.toml", &signer);
    let (server, responder, c) = start_ra(&good, &pki, &[]).await;
    let (csr_b64, _) = csr_with_key(&["cmp.test"], &key);
    let done = order_and_finalize(
        &server,
        &c,
        &responder,
        "cmp.test",
        &csr_b64,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["status"], "valid", "{done}");
    verify_with_upstream_root(&pki, &download(&c, &done).await);
    drop(server);

    // Pinned to another certificate: the same, validly signed, answer is refused.
    let pinned_elsewhere = config("stranger.toml", &stranger);
    let (server, responder, c) = start_ra(&pinned_elsewhere, &pki, &[]).await;
    let detail = refused_with(
        &server,
        &c,
        &responder,
        "cmp.test",
        &csr_b64,
        Duration::from_secs(20),
    )
    .await;
    assert!(detail.contains("protection"), "{detail}");
}
