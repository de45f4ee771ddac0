//! The CA modes end to end over the real binary: `sceau-server ca init|import|rotate|show`
//! with a real `openssl ca` as the existing PKI, `serve` refusing a CA that is not ready in one
//! line, issuing from an offline-root, delegated, rotated, cross-signed and staging CA, and
//! every certificate checked with `openssl verify` against the root its users trust.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use sceau_testkit::openssl_ca::{
    ISSUING_CA_EXT, POLICY_CA_EXT, sha256_fingerprint, subject_key_id, verify_server_chain,
};
use sceau_testkit::{KnotDns, OpenSslCa, Validity, free_port, require_tool};
use serde_json::Value;
use support::*;

const SUBJECT: &str = "CN=Example Issuing CA,O=Example,C=FR";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sceau-server")
}

/// `sceau-server ca <args> --data-dir <data>`, run from `cwd`.
fn ca(cwd: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("ca")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .current_dir(cwd)
        .env_remove("SCEAU_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[track_caller]
fn ca_ok(cwd: &Path, data: &Path, args: &[&str]) -> String {
    let out = ca(cwd, data, args);
    assert!(
        out.status.success(),
        "ca {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A refused command: non-zero exit, nothing on stdout, one line on stderr, which it returns.
#[track_caller]
fn ca_refused(cwd: &Path, data: &Path, args: &[&str]) -> String {
    let out = ca(cwd, data, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "ca {args:?} was accepted");
    assert!(out.stdout.is_empty(), "ca {args:?} printed a record");
    one_line(&stderr);
    stderr.trim().to_owned()
}

#[track_caller]
fn one_line(text: &str) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{text}");
}

/// A refusal says what is wrong, not which internal error carried it.
fn clean(line: &str) -> bool {
    !line.contains("refused to sign") && !line.contains("signing failed")
}

fn show_json(data: &Path) -> Value {
    serde_json::from_str(&ca_ok(data, data, &["show", "--json"])).unwrap()
}

/// `serve` that must refuse to start: its exit status and everything it wrote.
fn serve_refused(data: &Path, extra: &[&str]) -> String {
    let dns = KnotDns::start("test.").expect("knot DNS");
    let mut child = Command::new(bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--revocation-listen", "127.0.0.1:0"])
        .args(["--dns-server", &dns.addr.to_string()])
        .args(["--eab", "off"])
        .args(extra)
        .env_remove("SCEAU_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("ready"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    one_line(&stderr);
    assert!(clean(&stderr), "{stderr}");
    stderr.trim().to_owned()
}

/// A server on a data directory the test prepared.
fn serve(data: &Path, extra: &[&str]) -> Server {
    let args: Vec<&str> = ["--eab", "off"].iter().chain(extra).copied().collect();
    let mut s = Server::unstarted(&args);
    s.shared_data_dir = Some(data.to_path_buf());
    s.spawn();
    s
}

/// Issues a certificate for `label.test` with a new account, its http-01 answered by
/// `responder` (one per server: it holds the server's http-01 port), and returns (certificate
/// URL, PEM chain).
async fn issue_one(server: &Server, responder: &Http01, label: &str) -> (String, String) {
    let mut c = Raw::new(server).await;
    c.register().await;
    server.add_host(label);
    let name = format!("{label}.test");
    let (done, chain) = issue(&c, responder, &[&name]).await;
    (done["certificate"].as_str().unwrap().to_owned(), chain)
}

/// A server's http-01 responder.
async fn responder(server: &Server) -> Http01 {
    Http01::start(server.http01_port).await
}

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
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn subject_of_pem(pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.pem");
    std::fs::write(&f, pem).unwrap();
    openssl_out(&["x509", "-noout", "-subject", "-in", f.to_str().unwrap()])
}

fn blocks(chain: &str) -> Vec<String> {
    chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(|b| b.trim_start().to_owned())
        .collect()
}

/// Every file of the data directory but the database (the audit trail records refusals).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with("sceau.db"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

async fn audit_events(data: &Path) -> Vec<(String, Value)> {
    let store = sceau_store::Store::open(&format!("sqlite://{}", data.join("sceau.db").display()))
        .await
        .unwrap();
    store
        .audit_events(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.detail))
        .collect()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86400)
}

/// `ca import` of `cert` (PEM) with `chain`, the PEM certificates above it up to the root.
fn import_args<'a>(cert: &'a Path, chain: &'a Path) -> [&'a str; 5] {
    let (cert, chain) = (cert.to_str().unwrap(), chain.to_str().unwrap());
    ["import", "--cert", cert, "--chain", chain]
}

/// `ca import --alternate`: a cross-signed certificate of the active issuer, with its chain.
fn import_alternate_args<'a>(cert: &'a Path, chain: &'a Path) -> [&'a str; 6] {
    let (cert, chain) = (cert.to_str().unwrap(), chain.to_str().unwrap());
    ["import", "--alternate", "--cert", cert, "--chain", chain]
}

/// A delegated CA made with `ca init --delegated`; returns its CSR.
fn init_delegated(tmp: &Path, data: &Path) -> PathBuf {
    let out = ca_ok(tmp, data, &["init", "--delegated", "--subject", SUBJECT]);
    let csr = data.join("intermediate.csr");
    assert!(out.contains(csr.to_str().unwrap()), "{out}");
    assert!(out.contains("Example Issuing CA"), "{out}");
    csr
}

#[tokio::test]
async fn dedicated_with_an_offline_root_issues_without_the_root_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(tmp.path().join("vault")).unwrap();
    // A path relative to where the operator stands.
    let record = ca_ok(
        tmp.path(),
        &data,
        &[
            "init",
            "--root-key-out",
            "vault/root.key",
            "--actor",
            "alice",
        ],
    );
    let key = tmp.path().join("vault/root.key");
    assert_eq!(mode(&key), 0o600);
    assert!(
        !data.join("vault").exists() && !data.join("root.key").exists(),
        "the root key went into the data directory"
    );
    let key_bytes = std::fs::read(&key).unwrap();
    for (name, bytes) in snapshot(&data) {
        assert_ne!(bytes, key_bytes, "{name} holds the root key");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("vault"),
            "{name} names the vault"
        );
    }
    // The ceremony record: subjects, key ids and fingerprints as openssl reads them, where
    // the keys are.
    let (root, int) = (data.join("root.pem"), data.join("intermediate.pem"));
    for needle in [
        sha256_fingerprint(&root),
        sha256_fingerprint(&int),
        subject_key_id(&root),
        subject_key_id(&int),
        "Sceau Root CA".to_owned(),
        "Sceau Issuing CA".to_owned(),
        "file intermediate.key".to_owned(),
        format!(
            "offline: written to {}",
            key.canonicalize().unwrap().display()
        ),
    ] {
        assert!(
            record.contains(&needle),
            "{needle:?} not in the record:\n{record}"
        );
    }
    let shown = show_json(&data);
    assert_eq!(shown["mode"], "dedicated");
    assert!(
        shown["root_key"].as_str().unwrap().starts_with("offline"),
        "{shown}"
    );
    assert_eq!(
        shown["root"]["sha256_fingerprint"],
        sha256_fingerprint(&root)
    );
    assert_eq!(
        shown["issuers"][0]["certificate"]["key_id"],
        subject_key_id(&int)
    );
    assert_eq!(shown["issuers"][0]["state"], "active");

    let server = serve(&data, &[]);
    let http01 = responder(&server).await;
    let (_, chain) = issue_one(&server, &http01, "web").await;
    verify_server_chain(&root, &chain).unwrap();
    drop(server);
    assert!(!data.join("root.key").exists());
    let events = audit_events(&data).await;
    let init = events
        .iter()
        .find(|(e, _)| e == "ca.init")
        .expect("ca.init audited");
    assert_eq!(init.1["actor"], "alice");
    assert!(events.iter().any(|(e, _)| e == "ca.show"), "{events:?}");
}

#[tokio::test]
async fn serve_without_ca_init_still_makes_a_dedicated_ca() {
    let server = Server::start(&["--eab", "off"]);
    let http01 = responder(&server).await;
    let data = server.data_dir();
    let shown = show_json(&data);
    assert_eq!(shown["mode"], "dedicated");
    assert_eq!(shown["root_key"], "file root.key");
    assert_eq!(shown["staging"], false);
    let (_, chain) = issue_one(&server, &http01, "web").await;
    verify_server_chain(&data.join("root.pem"), &chain).unwrap();
    assert!(!subject_of_pem(&blocks(&chain)[0]).contains("TEST"));
}

/// `levels` 1: the PKI's root signs Sceau's CSR; 2: a policy CA under the root does.
async fn delegated_flow(levels: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let csr = init_delegated(tmp.path(), &data);
    let shown = show_json(&data);
    assert_eq!(shown["mode"], "delegated");
    assert_eq!(shown["issuers"][0]["state"], "pending");

    let refusal = serve_refused(&data, &[]);
    assert!(
        refusal.contains("sceau-server ca import") && refusal.contains("intermediate.csr"),
        "{refusal}"
    );

    let mut root = OpenSslCa::root(&tmp.path().join("pki-root"), "Example Root CA").unwrap();
    let mut signer = if levels == 2 {
        root.subordinate(
            &tmp.path().join("pki-policy"),
            "Example Policy CA",
            POLICY_CA_EXT,
        )
        .unwrap()
    } else {
        root.clone()
    };
    let cert = tmp.path().join("issuing.pem");
    signer
        .sign(&csr, &cert, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let chain_file = tmp.path().join("pki-chain.pem");
    std::fs::write(&chain_file, signer.chain_pem()).unwrap();
    let record = ca_ok(tmp.path(), &data, &import_args(&cert, &chain_file));
    assert!(record.contains(&sha256_fingerprint(&root.cert)), "{record}");
    assert!(record.contains(&sha256_fingerprint(&cert)), "{record}");
    assert_eq!(show_json(&data)["issuers"][0]["state"], "active");

    let server = serve(&data, &[]);
    let http01 = responder(&server).await;
    let (_, chain) = issue_one(&server, &http01, "web").await;
    let b = blocks(&chain);
    assert_eq!(
        b.len(),
        1 + levels,
        "leaf, issuing CA and the PKI's CAs but its root"
    );
    assert_eq!(b[1], std::fs::read_to_string(&cert).unwrap());
    verify_server_chain(&root.cert, &chain).unwrap();
    // Sceau's own root is not involved: the PKI's root is what clients trust.
    assert_eq!(
        std::fs::read_to_string(server.root_pem()).unwrap(),
        std::fs::read_to_string(&root.cert).unwrap()
    );
}

#[tokio::test]
async fn delegated_under_an_openssl_root() {
    delegated_flow(1).await;
}

#[tokio::test]
async fn delegated_under_an_openssl_policy_ca() {
    delegated_flow(2).await;
}

#[tokio::test]
async fn refused_imports_say_why_in_one_line_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let csr = init_delegated(tmp.path(), &data);
    let other = tmp.path().join("other");
    let other_csr = init_delegated(tmp.path(), &other);
    let mut pki = OpenSslCa::root(&tmp.path().join("pki"), "Example Root CA").unwrap();
    let mut policy = pki
        .subordinate(
            &tmp.path().join("policy"),
            "Example Policy CA",
            POLICY_CA_EXT,
        )
        .unwrap();
    let impostor = OpenSslCa::root(&tmp.path().join("impostor"), "Example Root CA").unwrap();
    let write = |name: &str, text: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let chain = write("chain.pem", pki.chain_pem().as_bytes());
    let now = SystemTime::now();
    let mut n = 0;
    let mut sign = |ca: &mut OpenSslCa, csr: &Path, ext: &str, validity: Validity| {
        n += 1;
        let out = tmp.path().join(format!("cert-{n}.pem"));
        ca.sign(csr, &out, ext, validity).unwrap();
        out
    };
    let bc = |v: &str| {
        format!(
            "basicConstraints = {v}\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
        )
    };
    let ku = |v: &str| {
        format!(
            "basicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = {v}\nsubjectKeyIdentifier = hash\n"
        )
    };
    let year = Validity::Days(365);
    let good = sign(&mut pki, &csr, ISSUING_CA_EXT, year);
    let under_policy = sign(&mut policy, &csr, ISSUING_CA_EXT, year);
    // A policy CA whose pathlen forbids a CA below it, and an expired one.
    let mut tight = pki
        .subordinate(
            &tmp.path().join("tight"),
            "Tight Policy CA",
            &POLICY_CA_EXT.replace("pathlen:1", "pathlen:0"),
        )
        .unwrap();
    let mut stale = pki
        .subordinate_with(
            &tmp.path().join("stale"),
            "Stale Policy CA",
            POLICY_CA_EXT,
            Validity::Between(now - days(730), now - days(1)),
        )
        .unwrap();
    let under_tight = sign(&mut tight, &csr, ISSUING_CA_EXT, year);
    let under_stale = sign(&mut stale, &csr, ISSUING_CA_EXT, year);
    let tight_chain = write("tight-chain.pem", tight.chain_pem().as_bytes());
    let stale_chain = write("stale-chain.pem", stale.chain_pem().as_bytes());
    let policy_only = write(
        "policy-only.pem",
        std::fs::read(&policy.cert).unwrap().as_slice(),
    );
    let cases: Vec<(&str, PathBuf, PathBuf)> = vec![
        (
            "another key",
            sign(&mut pki, &other_csr, ISSUING_CA_EXT, year),
            chain.clone(),
        ),
        (
            "not a CA certificate",
            sign(
                &mut pki,
                &csr,
                "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n",
                year,
            ),
            chain.clone(),
        ),
        (
            "pathLenConstraint is 1",
            sign(&mut pki, &csr, &bc("critical, CA:TRUE, pathlen:1"), year),
            chain.clone(),
        ),
        (
            "no pathLenConstraint",
            sign(&mut pki, &csr, &bc("critical, CA:TRUE"), year),
            chain.clone(),
        ),
        (
            "basicConstraints are not critical",
            sign(&mut pki, &csr, &bc("CA:TRUE, pathlen:0"), year),
            chain.clone(),
        ),
        (
            "lacks keyCertSign",
            sign(
                &mut pki,
                &csr,
                &ku("critical, cRLSign, digitalSignature"),
                year,
            ),
            chain.clone(),
        ),
        (
            "keyUsage is not critical",
            sign(&mut pki, &csr, &ku("keyCertSign, cRLSign"), year),
            chain.clone(),
        ),
        (
            "expired",
            sign(
                &mut pki,
                &csr,
                ISSUING_CA_EXT,
                Validity::Between(now - days(730), now - days(1)),
            ),
            chain.clone(),
        ),
        (
            "not valid before",
            sign(
                &mut pki,
                &csr,
                ISSUING_CA_EXT,
                Validity::Between(now + days(1), now + days(730)),
            ),
            chain.clone(),
        ),
        ("self-signed root", under_policy.clone(), policy_only),
        (
            "certificate 1 of the chain has pathLenConstraint 0",
            under_tight,
            tight_chain,
        ),
        (
            "certificate 1 of the chain expired",
            under_stale,
            stale_chain,
        ),
        (
            "not signed by certificate 1",
            good.clone(),
            write("impostor.pem", impostor.chain_pem().as_bytes()),
        ),
        (
            "not signed by certificate 2",
            under_policy,
            write(
                "mixed.pem",
                (std::fs::read_to_string(&policy.cert).unwrap() + &impostor.chain_pem()).as_bytes(),
            ),
        ),
        (
            "holds 0",
            write("garbage.pem", b"this is no certificate\n"),
            chain.clone(),
        ),
        (
            "not a PEM file",
            write("binary.der", &[0x30, 0x82, 0xff, 0xfe, 0x00]),
            chain.clone(),
        ),
        (
            "does not parse",
            write(
                "broken.pem",
                b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            ),
            chain.clone(),
        ),
        (
            "chain file holds no PEM certificate",
            good.clone(),
            write("empty.pem", b""),
        ),
        ("cannot read", tmp.path().join("missing.pem"), chain.clone()),
    ];
    let before = snapshot(&data);
    for (why, cert, chain) in &cases {
        let line = ca_refused(tmp.path(), &data, &import_args(cert, chain));
        assert!(
            line.starts_with("sceau-server: ") && line.contains(why) && clean(&line),
            "{why}: {line}"
        );
        assert_eq!(snapshot(&data), before, "{why}: the data directory changed");
    }
    assert_eq!(show_json(&data)["issuers"][0]["state"], "pending");
    let events = audit_events(&data).await;
    let refused = events.iter().filter(|(e, _)| e == "ca.refused").count();
    assert_eq!(refused, cases.len(), "{events:?}");
    // serve still refuses, and the right certificate is then accepted.
    assert!(serve_refused(&data, &[]).contains("ca import"));
    ca_ok(tmp.path(), &data, &import_args(&good, &chain));
    assert_eq!(show_json(&data)["issuers"][0]["state"], "active");
}

#[tokio::test]
async fn dedicated_rotation_issues_from_the_new_issuer_and_keeps_old_certificates() {
    let mut server = Server::start(&["--eab", "off"]);
    let http01 = responder(&server).await;
    let data = server.data_dir();
    let (old_url, old_chain) = issue_one(&server, &http01, "old").await;
    let old_issuer = std::fs::read_to_string(data.join("intermediate.pem")).unwrap();
    assert_eq!(blocks(&old_chain)[1], old_issuer);

    let record = ca_ok(&data, &data, &["rotate"]);
    assert!(record.contains("Issuing CA 2"), "{record}");
    let shown = show_json(&data);
    let states: Vec<&str> = shown["issuers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["retired", "active"]);
    let new_id = shown["issuers"][1]["id"].as_str().unwrap().to_owned();

    // SIGHUP: the running server restarts its signing process, which reads the CA again.
    let pid = server.child.as_ref().unwrap().id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "SIGHUP stopped the server"
    );
    let (_, new_chain) = issue_one(&server, &http01, "new").await;
    let new_issuer = blocks(&new_chain)[1].clone();
    assert_ne!(new_issuer, old_issuer);
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &new_issuer).unwrap();
    assert_eq!(subject_key_id(f.path()), new_id);
    let root = data.join("root.pem");
    verify_server_chain(&root, &new_chain).unwrap();
    // A certificate of the retired issuer still downloads, as issued, and verifies.
    let c = Raw::new(&server).await;
    let r = c.http.get(&old_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let again = r.text().await.unwrap();
    assert_eq!(again, old_chain);
    verify_server_chain(&root, &again).unwrap();
    // And after a full restart too.
    server.restart();
    let (_, after) = issue_one(&server, &http01, "after").await;
    assert_eq!(blocks(&after)[1], new_issuer);
}

#[tokio::test]
async fn rotation_with_an_offline_root_takes_the_root_key_for_the_ceremony() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    ca_ok(tmp.path(), &data, &["init", "--root-key-out", "root.key"]);
    let before = snapshot(&data);
    let line = ca_refused(tmp.path(), &data, &["rotate"]);
    assert!(
        line.contains("offline") && line.contains("--root-key"),
        "{line}"
    );
    assert_eq!(snapshot(&data), before);
    let other = tmp.path().join("other");
    ca_ok(tmp.path(), &other, &["init"]);
    let line = ca_refused(
        tmp.path(),
        &data,
        &[
            "rotate",
            "--root-key",
            other.join("root.key").to_str().unwrap(),
        ],
    );
    assert!(line.contains("is not the key of this CA's root"), "{line}");
    let line = ca_refused(tmp.path(), &data, &["rotate", "--root-key", "missing.key"]);
    assert!(line.contains("missing.key"), "{line}");
    assert_eq!(snapshot(&data), before);

    // Relative to the operator's directory, like --root-key-out.
    ca_ok(tmp.path(), &data, &["rotate", "--root-key", "root.key"]);
    let shown = show_json(&data);
    assert_eq!(shown["issuers"][1]["state"], "active");
    assert!(shown["root_key"].as_str().unwrap().starts_with("offline"));
    let server = serve(&data, &[]);
    let http01 = responder(&server).await;
    let (_, chain) = issue_one(&server, &http01, "web").await;
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &blocks(&chain)[1]).unwrap();
    assert_eq!(
        subject_key_id(f.path()),
        shown["issuers"][1]["id"].as_str().unwrap()
    );
    verify_server_chain(&data.join("root.pem"), &chain).unwrap();
}

#[tokio::test]
async fn delegated_rotation_issues_from_the_old_issuer_until_import() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let csr = init_delegated(tmp.path(), &data);
    let mut pki = OpenSslCa::root(&tmp.path().join("pki"), "Example Root CA").unwrap();
    let chain = tmp.path().join("chain.pem");
    std::fs::write(&chain, pki.chain_pem()).unwrap();
    let first = tmp.path().join("first.pem");
    pki.sign(&csr, &first, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let import = |cert: &Path| ca_ok(tmp.path(), &data, &import_args(cert, &chain));
    import(&first);
    let mut server = serve(&data, &[]);
    let http01 = responder(&server).await;
    let (old_url, old_chain) = issue_one(&server, &http01, "a").await;

    let record = ca_ok(tmp.path(), &data, &["rotate"]);
    let new_csr = data.join("issuer-2.csr");
    assert!(record.contains(new_csr.to_str().unwrap()), "{record}");
    server.restart();
    let (_, chain_a) = issue_one(&server, &http01, "b").await;
    assert_eq!(
        blocks(&chain_a)[1],
        std::fs::read_to_string(&first).unwrap()
    );

    let second = tmp.path().join("second.pem");
    pki.sign(&new_csr, &second, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    import(&second);
    let states: Vec<String> = show_json(&data)["issuers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["retired", "active"]);
    server.restart();
    let (_, chain_b) = issue_one(&server, &http01, "c").await;
    assert_eq!(
        blocks(&chain_b)[1],
        std::fs::read_to_string(&second).unwrap()
    );
    verify_server_chain(&pki.cert, &chain_b).unwrap();
    let c = Raw::new(&server).await;
    let again = c
        .http
        .get(&old_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(again, old_chain);
    verify_server_chain(&pki.cert, &again).unwrap();
}

fn alternate_links(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|v| v.ends_with("rel=\"alternate\""))
        .map(|v| {
            v.trim_start_matches('<')
                .split_once(">;")
                .unwrap()
                .0
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_cross_signed_issuer_offers_its_other_chain_as_alternate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let csr = init_delegated(tmp.path(), &data);
    let mut first = OpenSslCa::root(&tmp.path().join("first"), "Example Root CA").unwrap();
    let mut partner_root =
        OpenSslCa::root(&tmp.path().join("partner-root"), "Partner Root CA").unwrap();
    let mut partner = partner_root
        .subordinate(
            &tmp.path().join("partner"),
            "Partner Policy CA",
            POLICY_CA_EXT,
        )
        .unwrap();
    let write = |name: &str, text: String| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cert = tmp.path().join("issuing.pem");
    first
        .sign(&csr, &cert, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let chain = write("chain.pem", first.chain_pem());
    let cross = tmp.path().join("cross.pem");
    partner
        .sign(&csr, &cross, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let cross_chain = write("cross-chain.pem", partner.chain_pem());
    // Before the main import there is no active issuer to cross-sign.
    let line = ca_refused(
        tmp.path(),
        &data,
        &import_alternate_args(&cross, &cross_chain),
    );
    assert!(line.contains("ca import"), "{line}");
    ca_ok(tmp.path(), &data, &import_args(&cert, &chain));
    ca_ok(
        tmp.path(),
        &data,
        &import_alternate_args(&cross, &cross_chain),
    );
    assert_eq!(show_json(&data)["issuers"][0]["alternate_chains"], 1);

    let server = serve(&data, &[]);
    let http01 = responder(&server).await;
    let mut c = Raw::new(&server).await;
    c.register().await;
    server.add_host("web");
    let (done, main) = issue(&c, &http01, &["web.test"]).await;
    let url = done["certificate"].as_str().unwrap().to_owned();
    // POST-as-GET and GET of the certificate both link to the alternate.
    let posted = c.post(&url, None).await;
    assert_eq!(posted.status, 200);
    let links = alternate_links(&posted.headers);
    assert_eq!(links, [format!("{url}/alt/1")]);
    let got = c.http.get(&url).send().await.unwrap();
    assert_eq!(alternate_links(got.headers()), links);
    assert_eq!(got.text().await.unwrap(), main);

    let alt = c.post(&links[0], None).await;
    assert_eq!(alt.status, 200);
    assert_eq!(alternate_links(&alt.headers), std::slice::from_ref(&url));
    let alt_pem = String::from_utf8(alt.body).unwrap();
    let got = c.http.get(&links[0]).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.headers()["content-type"],
        "application/pem-certificate-chain"
    );
    assert_eq!(got.text().await.unwrap(), alt_pem);
    assert_eq!(blocks(&alt_pem)[0], blocks(&main)[0], "the same leaf");
    assert_eq!(
        blocks(&alt_pem)[1],
        std::fs::read_to_string(&cross).unwrap()
    );
    assert_eq!(
        blocks(&alt_pem).len(),
        3,
        "leaf, cross-signed issuer, partner policy CA"
    );
    // Each chain verifies against its own root, and not against the other.
    verify_server_chain(&first.cert, &main).unwrap();
    verify_server_chain(&partner_root.cert, &alt_pem).unwrap();
    assert!(verify_server_chain(&partner_root.cert, &main).is_err());
    assert!(verify_server_chain(&first.cert, &alt_pem).is_err());
    // No chain beyond the ones there are.
    for bad in ["2", "0", "01", "x"] {
        let r = c.http.get(format!("{url}/alt/{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "alt/{bad}");
        assert_eq!(
            c.post(&format!("{url}/alt/{bad}"), None).await.status,
            404,
            "alt/{bad}"
        );
    }
}

#[tokio::test]
async fn staging_says_test_and_keeps_to_its_own_data_directory() {
    let mut staging = Server::start(&["--eab", "off", "--staging"]);
    let http01 = responder(&staging).await;
    let data = staging.data_dir();
    for f in ["root.pem", "intermediate.pem"] {
        let subject = subject_of_pem(&std::fs::read_to_string(data.join(f)).unwrap());
        assert!(subject.contains("TEST"), "{f}: {subject}");
    }
    let (_, chain) = issue_one(&staging, &http01, "web").await;
    let subject = subject_of_pem(&blocks(&chain)[0]);
    assert!(subject.contains(sceau_ca::TEST_MARK), "{subject}");
    verify_server_chain(&data.join("root.pem"), &chain).unwrap();
    assert_eq!(show_json(&data)["staging"], true);
    staging.kill();

    let line = serve_refused(&data, &[]);
    assert!(
        line.contains("staging CA") && line.contains("--staging"),
        "{line}"
    );
    let production = Server::start(&["--eab", "off"]);
    let line = serve_refused(&production.data_dir(), &["--staging"]);
    assert!(line.contains("production CA"), "{line}");
}
