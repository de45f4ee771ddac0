//! CRLs as relying parties use them (RFC 5280 §5, issue 12), over the real binary and checked
//! by OpenSSL: each leaf names its shard's CRL, whose critical issuingDistributionPoint is that
//! same URL; the CRL verifies under the CA, lists a revoked certificate with its reason within
//! the bound after the revocation (`openssl verify -crl_check` then fails with error 23), its
//! cRLNumber goes forward across instances and after the database is restored from a backup,
//! expired certificates leave it after the lookback, and the root's authority CRL lists a
//! revoked issuing CA.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sceau_testkit::require_tool;
use sceau_wire::b64;
use serde_json::{Value, json};
use support::{Http01, Raw, Server, issue};

fn openssl(args: &[&str]) -> Output {
    Command::new(require_tool("openssl"))
        .args(args)
        .output()
        .unwrap()
}

#[track_caller]
fn openssl_out(args: &[&str]) -> String {
    let o = openssl(args);
    assert!(
        o.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// A leaf and the CA certificates above it, as files for openssl.
struct Issued {
    dir: tempfile::TempDir,
    chain: String,
}

impl Issued {
    fn new(chain: String) -> Issued {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<&str> = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        std::fs::write(dir.path().join("leaf.pem"), blocks[0]).unwrap();
        std::fs::write(dir.path().join("chain.pem"), blocks[1..].concat()).unwrap();
        Issued { dir, chain }
    }
    fn leaf(&self) -> PathBuf {
        self.dir.path().join("leaf.pem")
    }
    fn intermediates(&self) -> PathBuf {
        self.dir.path().join("chain.pem")
    }
    fn der(&self) -> Vec<u8> {
        sceau_wire::key::pem_decode_all(&self.chain, "CERTIFICATE").remove(0)
    }
    fn serial_hex(&self) -> String {
        sceau_ca::inspect::cert_info(&self.der())
            .unwrap()
            .serial_hex
    }
    /// The leaf's CRL distribution point, as OpenSSL reads it.
    fn cdp(&self) -> String {
        let text = openssl_out(&[
            "x509",
            "-noout",
            "-ext",
            "crlDistributionPoints",
            "-in",
            self.leaf().to_str().unwrap(),
        ]);
        let uris: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("URI:"))
            .collect();
        assert_eq!(uris.len(), 1, "one distribution point: {text}");
        uris[0].to_owned()
    }
}

async fn fetch(url: &str) -> reqwest::Response {
    plain().get(url).send().await.unwrap()
}

/// A client for the plain-HTTP revocation listener.
fn plain() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::new()
}

/// The CRL at `url` once it exists and satisfies `ok`, within `bound`.
async fn crl_when(url: &str, bound: Duration, ok: impl Fn(&str) -> bool) -> (Vec<u8>, String) {
    let deadline = Instant::now() + bound;
    loop {
        let r = fetch(url).await;
        if r.status() == 200 {
            let der = r.bytes().await.unwrap().to_vec();
            let text = crl_text(&der);
            if ok(&text) {
                return (der, text);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no such CRL at {url} in {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `openssl crl -text` of a DER CRL.
fn crl_text(der: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.crl");
    std::fs::write(&f, der).unwrap();
    openssl_out(&[
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-text",
        "-in",
        f.to_str().unwrap(),
    ])
}

fn crl_number(text: &str) -> u128 {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.contains("X509v3 CRL Number") {
            return lines.next().unwrap().trim().parse().unwrap();
        }
    }
    panic!("no cRLNumber: {text}")
}

/// Serial as openssl prints it on a CRL (uppercase hex).
fn listed(text: &str, serial_hex: &str) -> bool {
    text.contains(&format!(
        "Serial Number: {}",
        serial_hex.to_ascii_uppercase()
    ))
}

fn write_pem_crl(dir: &Path, der: &[u8]) -> PathBuf {
    let der_path = dir.join("shard.der");
    std::fs::write(&der_path, der).unwrap();
    let pem = dir.join("shard.crl.pem");
    openssl_out(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der_path.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
    pem
}

/// `openssl verify -crl_check` of the leaf against the CRL.
fn verify_with_crl(server: &Server, cert: &Issued, crl_der: &[u8]) -> Output {
    let pem = write_pem_crl(cert.dir.path(), crl_der);
    openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        pem.to_str().unwrap(),
        "-CAfile",
        server.root_pem().to_str().unwrap(),
        "-untrusted",
        cert.intermediates().to_str().unwrap(),
        cert.leaf().to_str().unwrap(),
    ])
}

async fn revoke(c: &Raw, cert: &Issued, reason: u8) {
    let url = c.dir.revoke_cert.clone();
    let r = c
        .post(
            &url,
            Some(&json!({"certificate": b64::encode(cert.der()), "reason": reason})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn client(server: &Server) -> Raw {
    let mut c = Raw::new(server).await;
    c.register().await;
    c
}

async fn issue_for(server: &Server, c: &Raw, responder: &Http01, label: &str) -> Issued {
    server.add_host(label);
    let (_, chain) = issue(c, responder, &[&format!("{label}.test")]).await;
    Issued::new(chain)
}

/// The bound between a revocation and the CRL that lists it.
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn shard_crls_verify_and_list_revocations_with_their_reason() {
    let publish = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        "--eab",
        "off",
        "--crl-shards",
        "4",
        "--crl-dir",
        publish.path().to_str().unwrap(),
    ]);
    let responder = Http01::start(server.http01_port).await;
    let c = client(&server).await;
    let a = issue_for(&server, &c, &responder, "crl-a").await;
    let b = issue_for(&server, &c, &responder, "crl-b").await;

    // The distribution point is under the revocation listener's URL, one of the shards.
    let cdp = a.cdp();
    let base = server.revocation_url();
    let rest = cdp
        .strip_prefix(&format!("{base}/crl/"))
        .unwrap_or_else(|| panic!("{cdp} is not under {base}/crl/"));
    let (issuer, file) = rest.split_once('/').unwrap();
    let shard: u32 = file.strip_suffix(".crl").unwrap().parse().unwrap();
    assert!(shard < 4, "{cdp}");

    let (der, text) = crl_when(&cdp, BOUND, |_| true).await;
    // The IDP is critical, says only user certificates, and names exactly the CDP.
    assert!(
        text.contains("X509v3 Issuing Distribution Point: critical"),
        "{text}"
    );
    assert!(text.contains(&format!("URI:{cdp}")), "{text}");
    assert!(text.contains("Only User Certificates"), "{text}");
    assert!(text.contains("Next Update:"), "{text}");
    let first_number = crl_number(&text);
    assert!(!listed(&text, &a.serial_hex()));

    // Signed by the issuing CA (openssl crl -CAfile checks the signature).
    let pem = write_pem_crl(a.dir.path(), &der);
    let ca_file = a.dir.path().join("ca-all.pem");
    std::fs::write(
        &ca_file,
        std::fs::read_to_string(a.intermediates()).unwrap()
            + &std::fs::read_to_string(server.root_pem()).unwrap(),
    )
    .unwrap();
    let out = openssl_out(&[
        "crl",
        "-noout",
        "-in",
        pem.to_str().unwrap(),
        "-CAfile",
        ca_file.to_str().unwrap(),
    ]);
    assert!(out.contains("verify OK"), "{out}");
    let good = verify_with_crl(&server, &a, &der);
    assert!(
        good.status.success(),
        "a good certificate verifies with its CRL: {}",
        String::from_utf8_lossy(&good.stderr)
    );

    // HTTP: DER, the media type, caching, conditional requests.
    let r = fetch(&cdp).await;
    assert_eq!(r.headers()["content-type"], "application/pkix-crl");
    let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
    let max_age: i64 = cache.split("max-age=").nth(1).unwrap().parse().unwrap();
    assert!((1..=3600 + 10).contains(&max_age), "{cache}");
    assert!(r.headers().contains_key("last-modified"));
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let again = plain()
        .get(&cdp)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // The published copy is the same CRL.
    let published = publish.path().join(issuer).join(file);
    assert_eq!(std::fs::read(&published).unwrap(), der);

    // Revoked with keyCompromise: on the CRL within the bound, with its reason.
    revoke(&c, &a, 1).await;
    let serial = a.serial_hex();
    let (der, text) = crl_when(&cdp, BOUND, |t| listed(t, &serial)).await;
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(crl_number(&text) > first_number);
    let bad = verify_with_crl(&server, &a, &der);
    assert!(!bad.status.success());
    let said =
        String::from_utf8_lossy(&bad.stdout).into_owned() + &String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("error 23") && said.contains("certificate revoked"),
        "{said}"
    );
    // The other certificate verifies against its own shard, which does not list it.
    let (b_der, b_text) = crl_when(&b.cdp(), BOUND, |_| true).await;
    assert!(!listed(&b_text, &b.serial_hex()));
    assert!(verify_with_crl(&server, &b, &b_der).status.success());

    // Revoked with the reason left out (unspecified): listed without a reason extension.
    let plain = issue_for(&server, &c, &responder, "crl-c").await;
    revoke(&c, &plain, 0).await;
    let serial = plain.serial_hex();
    let (_, text) = crl_when(&plain.cdp(), BOUND, |t| listed(t, &serial)).await;
    let entry = text
        .split("Serial Number: ")
        .find(|e| e.starts_with(&serial.to_ascii_uppercase()))
        .unwrap();
    assert!(!entry.contains("CRL Reason Code"), "{entry}");

    // What names no CRL is a plain 404.
    for path in [
        format!("/crl/{issuer}/4.crl"),
        format!("/crl/{issuer}/0.pem"),
        format!("/crl/{issuer}/-1.crl"),
        format!("/crl/{issuer}/00000000000001.crl"),
        format!("/crl/{}/0.crl", issuer.to_ascii_uppercase()),
        "/crl/0000/0.crl".to_owned(),
        "/crl/../sceau.db".to_owned(),
        "/crl/root.crl".to_owned(),
    ] {
        let r = fetch(&format!("{base}{path}")).await;
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crl_numbers_go_forward_across_instances_and_after_a_restore() {
    let mut first = Server::start(&["--eab", "off", "--crl-shards", "1"]);
    let second = Server::start_sibling(&first, &["--eab", "off", "--crl-shards", "1"]);
    let responder = Http01::start(first.http01_port).await;
    let c = client(&first).await;
    let certs = [
        issue_for(&first, &c, &responder, "restore-a").await,
        issue_for(&first, &c, &responder, "restore-b").await,
        issue_for(&first, &c, &responder, "restore-c").await,
    ];
    let cdp = certs[0].cdp();
    let path = cdp.split_once("/crl/").unwrap().1.to_owned();
    let (_, text) = crl_when(&cdp, BOUND, |_| true).await;
    let n0 = crl_number(&text);

    // A backup taken now, both instances stopped (the files are then consistent).
    let mut second = second;
    let db = first.data_dir().join("sceau.db");
    let backup = tempfile::tempdir().unwrap();
    second.kill();
    first.kill();
    let files = ["sceau.db", "sceau.db-wal", "sceau.db-shm"];
    for f in files {
        let from = first.data_dir().join(f);
        if from.exists() {
            std::fs::copy(&from, backup.path().join(f)).unwrap();
        }
    }
    first.spawn();
    second.spawn();

    // A revocation through one instance is on the CRL the other serves.
    revoke(&c, &certs[0], 4).await;
    let serial = certs[0].serial_hex();
    let other = format!("{}/crl/{path}", second.revocation_url());
    let (_, text) = crl_when(&other, BOUND, |t| listed(t, &serial)).await;
    let n1 = crl_number(&text);
    assert!(n1 > n0);
    assert!(text.contains("Superseded"), "{text}");

    // Both instances stopped, the database restored from the backup, one started again.
    drop(second);
    first.kill();
    for f in files {
        let _ = std::fs::remove_file(first.data_dir().join(f));
        let saved = backup.path().join(f);
        if saved.exists() {
            std::fs::copy(&saved, first.data_dir().join(f)).unwrap();
        }
    }
    assert!(db.exists());
    first.spawn();
    revoke(&c, &certs[1], 5).await;
    let serial = certs[1].serial_hex();
    let cdp = format!("{}/crl/{path}", first.revocation_url());
    let (_, text) = crl_when(&cdp, BOUND, |t| listed(t, &serial)).await;
    assert!(
        crl_number(&text) > n1,
        "after the restore the cRLNumber went back: {} after {n1}",
        crl_number(&text)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_certificates_leave_the_crl_after_the_lookback() {
    let server = Server::start(&[
        "--eab",
        "off",
        "--crl-shards",
        "1",
        "--crl-lookback-secs",
        "3600",
    ]);
    let responder = Http01::start(server.http01_port).await;
    let c = client(&server).await;
    let cert = issue_for(&server, &c, &responder, "lookback").await;
    let cdp = cert.cdp();
    let issuer = cdp
        .split("/crl/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let now = sceau_store::now();
    let store = server.store().await;
    let row = |serial: &str, not_after: i64| sceau_store::SyntheticRevoked {
        serial: serial.to_owned(),
        issuer_id: issuer.to_owned(),
        crl_shard: 0,
        not_after,
        revoked_at: now - 7200,
        reason: Some(1),
    };
    store
        .prefill_revoked(
            [
                row("7a01", now - 1800),
                row("7a02", now - 7200),
                row("7a03", now + 86400),
            ],
            |_| {},
        )
        .await
        .unwrap();
    // The revocation of a real certificate brings the next CRL.
    revoke(&c, &cert, 3).await;
    let serial = cert.serial_hex();
    let (_, text) = crl_when(&cdp, BOUND, |t| listed(t, &serial)).await;
    assert!(text.contains("Affiliation Changed"), "{text}");
    assert!(listed(&text, "7A03"), "unexpired: listed");
    assert!(
        listed(&text, "7A01"),
        "expired within the lookback: still listed"
    );
    assert!(!listed(&text, "7A02"), "expired before the lookback: gone");
}

#[test]
fn settings_under_which_a_crl_could_lapse_are_refused() {
    for (args, says) in [
        (
            ["--crl-update-secs", "3600", "--crl-validity-secs", "3600"],
            "twice",
        ),
        (
            ["--crl-update-secs", "1", "--crl-validity-secs", "3600"],
            "at least 10 seconds",
        ),
        (
            [
                "--crl-update-secs",
                "3600",
                "--crl-validity-secs",
                "999999999",
            ],
            "10 days",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--revocation-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .env_remove("SCEAU_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(says), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
        assert_eq!(
            std::fs::read_dir(data.path()).unwrap().count(),
            0,
            "a refused start left files behind"
        );
    }
}

/// `sceau-server ca <args> --data-dir <data>`.
fn ca(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("ca")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .current_dir(data)
        .env_remove("SCEAU_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[track_caller]
fn ca_ok(data: &Path, args: &[&str]) -> String {
    let out = ca(data, args);
    assert!(
        out.status.success(),
        "ca {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[track_caller]
fn ca_refused(data: &Path, args: &[&str], says: &str) {
    let before = std::fs::read(data.join("ca.json")).unwrap();
    let crl_before = std::fs::read(data.join("root.crl")).ok();
    let out = ca(data, args);
    assert!(!out.status.success(), "ca {args:?} accepted");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(says), "{stderr}");
    assert_eq!(std::fs::read(data.join("ca.json")).unwrap(), before);
    assert_eq!(std::fs::read(data.join("root.crl")).ok(), crl_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authority_crl_lists_a_revoked_issuing_ca() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    ca_ok(data, &["init"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(data.join("ca.json")).unwrap()).unwrap();
    let old = manifest["issuers"][0]["id"].as_str().unwrap().to_owned();
    let old_cert = data
        .join(manifest["issuers"][0]["cert"].as_str().unwrap())
        .to_str()
        .unwrap()
        .to_owned();

    ca_refused(
        data,
        &["revoke-issuer", &old, "--reason", "keyCompromise"],
        "active issuer",
    );
    ca_ok(data, &["rotate"]);
    ca_refused(
        data,
        &["revoke-issuer", &old, "--reason", "certificateHold"],
        "certificateHold",
    );
    ca_refused(
        data,
        &["revoke-issuer", &old, "--reason", "sometimes"],
        "unknown revocation reason",
    );
    ca_refused(
        data,
        &["revoke-issuer", "0badc0de", "--reason", "superseded"],
        "no issuer 0badc0de",
    );
    ca_ok(data, &["revoke-issuer", &old, "--reason", "cACompromise"]);
    ca_refused(
        data,
        &["revoke-issuer", &old, "--reason", "superseded"],
        "already revoked",
    );
    ca_refused(data, &["arl", "--validity-days", "0"], "--validity-days");
    let record = ca_ok(data, &["arl", "--validity-days", "30"]);
    assert!(record.contains(&old), "{record}");

    // Served by the running server, signed by the root, listing the old issuer's certificate.
    let server = {
        let mut s = Server::unstarted(&["--eab", "off"]);
        s.shared_data_dir = Some(data.to_path_buf());
        s.spawn();
        s
    };
    let r = fetch(&format!("{}/crl/root.crl", server.revocation_url())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pkix-crl");
    let der = r.bytes().await.unwrap().to_vec();
    let text = crl_text(&der);
    let tmp = tempfile::tempdir().unwrap();
    let pem = write_pem_crl(tmp.path(), &der);
    let out = openssl_out(&[
        "crl",
        "-noout",
        "-in",
        pem.to_str().unwrap(),
        "-CAfile",
        server.root_pem().to_str().unwrap(),
    ]);
    assert!(out.contains("verify OK"), "{out}");
    let old_serial = openssl_out(&["x509", "-noout", "-serial", "-in", &old_cert]);
    let old_serial = old_serial.trim().strip_prefix("serial=").unwrap();
    assert!(
        text.contains(&format!("Serial Number: {old_serial}")),
        "{text}"
    );
    assert!(text.contains("CA Compromise"), "{text}");
    // The old issuer with its certificate on the ARL is refused by OpenSSL with the ARL.
    let check = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        pem.to_str().unwrap(),
        "-CAfile",
        server.root_pem().to_str().unwrap(),
        &old_cert,
    ]);
    let said = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{said}");
    assert!(said.contains("error 23"), "{said}");

    // The server issues from the new issuer and its leaves verify.
    let responder = Http01::start(server.http01_port).await;
    let c = client(&server).await;
    let cert = issue_for(&server, &c, &responder, "after-arl").await;
    support::openssl_verify(&server, &cert.chain);
    assert!(!cert.cdp().contains(&old));
}
