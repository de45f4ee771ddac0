//! The front end and the signer as separate processes under separate OS users (agency guide
//! R31–R34): `sceau-server signer` holds the CA, listens on a Unix socket and serves only the
//! front ends' uids; `serve --signer-socket` holds no key and checks the signer's uid. Each on
//! its own least-privilege PostgreSQL role (R33). The test runs as root (as CI does) to start
//! processes under other uids.

mod support;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// The signer's and the front end's uids: no account needs to exist for a process to run
/// under a uid, and none of the machine's users has these.
const SIGNER_UID: u32 = 61_001;
const FRONT_UID: u32 = 61_002;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test starts processes under other uids: run it as root (CI does)"
    );
}

fn chown(path: &Path, uid: u32, mode: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory owned by `uid` with `mode`.
fn dir_of(parent: &Path, name: &str, uid: u32, mode: u32) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    chown(&d, uid, mode);
    d
}

/// A 0600 file of `uid` holding `text` (a database URL).
fn secret_of(parent: &Path, name: &str, uid: u32, text: &str) -> PathBuf {
    let f = parent.join(name);
    std::fs::write(&f, text).unwrap();
    chown(&f, uid, 0o600);
    f
}

struct Signer {
    child: Child,
}

impl Drop for Signer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sceau-server signer` as `uid` with `args`; returns once it says it is ready.
fn start_signer(uid: u32, args: &[&str]) -> Signer {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sceau-server"));
    cmd.arg("signer")
        .args(args)
        .env("SCEAU_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    std::os::unix::process::CommandExt::uid(&mut cmd, uid);
    let mut child = cmd.spawn().expect("run sceau-server signer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("signer is ready") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let status = child.try_wait().unwrap();
        let _ = child.kill();
        panic!("the signer did not become ready (exit status {status:?})");
    }
    Signer { child }
}

/// The uid a process runs as, from /proc.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// newAccount with an external account binding made with `mac`; sets `kid` on 201.
async fn register_eab(c: &mut Raw, eab_kid: &str, mac: &[u8]) -> Resp {
    let url = c.dir.new_account.clone();
    let binding = sceau_wire::eab::sign(eab_kid, mac, &url, &c.key.jwk());
    let r = c
        .post(
            &url,
            Some(&serde_json::json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})),
        )
        .await;
    if r.status == 201 {
        c.kid = Some(r.location());
    }
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn front_end_and_signer_run_as_separate_users() {
    require_root();
    let pg = sceau_testkit::Postgres::start();
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    make_db_roles(&pg.url, base.path());
    let role_url = |role: &str| format!("postgres://{role}@127.0.0.1:{}/sceau", pg.port);

    let signer_dir = dir_of(base.path(), "signer", SIGNER_UID, 0o700);
    let run_dir = dir_of(base.path(), "run", SIGNER_UID, 0o755);
    let front_dir = dir_of(base.path(), "front", FRONT_UID, 0o700);
    let signer_db = secret_of(
        base.path(),
        "signer-db",
        SIGNER_UID,
        &role_url("sceau_signer"),
    );
    let front_db = secret_of(base.path(), "front-db", FRONT_UID, &role_url("sceau_front"));
    let socket = run_dir.join("signer.sock");
    let signer_args = [
        "--data-dir",
        signer_dir.to_str().unwrap(),
        "--eab",
        "required",
        "--database-url-file",
        signer_db.to_str().unwrap(),
        "--signer-socket",
        socket.to_str().unwrap(),
        "--signer-allowed-uid",
        &FRONT_UID.to_string(),
    ];
    let mut signer = start_signer(SIGNER_UID, &signer_args);
    assert_eq!(uid_of(signer.child.id()), SIGNER_UID);

    let mut front = Server::unstarted(&[
        "--eab",
        "required",
        "--database-url-file",
        front_db.to_str().unwrap(),
        "--signer-socket",
        socket.to_str().unwrap(),
        "--signer-uid",
        &SIGNER_UID.to_string(),
    ]);
    front.uid = Some(FRONT_UID);
    front.shared_data_dir = Some(front_dir.clone());
    front.spawn();
    let front_pid = front.child.as_ref().unwrap().id();
    assert_eq!(uid_of(front_pid), FRONT_UID);

    // A whole issuance: the front end validates, the signer signs, the root it published in
    // the front end's directory verifies the chain.
    // The external account is made where the MAC keys are: the signer's directory (its
    // wrap key), by the schema's owner.
    let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args(["admin", "--data-dir"])
        .arg(&signer_dir)
        .args(["--actor", "tester", "account", "create", "--json"])
        .args([
            "--owner",
            "Alice Martin <alice@example.org>",
            "--domain",
            "split.test",
        ])
        .args(["--domain", "again.test"])
        .env("SCEAU_DATABASE_URL", &pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let aa: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kid = aa["kid"].as_str().unwrap().to_owned();
    let mac = sceau_wire::b64::decode(aa["hmac_key"].as_str().unwrap()).unwrap();

    // The front end holds no MAC key and cannot open one: the signer checks each binding.
    let responder = Http01::start(front.http01_port).await;
    let mut forger = Raw::new(&front).await;
    let r = register_eab(&mut forger, &kid, &[7u8; 32]).await;
    assert_eq!(r.problem_type(), "unauthorized", "{}", r.text());
    let mut c = Raw::new(&front).await;
    let r = register_eab(&mut c, &kid, &mac).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(!front_dir.join("eab-wrap.key").exists());
    assert!(signer_dir.join("eab-wrap.key").exists());
    front.add_host("split");
    let (done, chain) = issue(&c, &responder, &["split.test"]).await;
    assert_eq!(done["status"], "valid");
    openssl_verify(&front, &chain);

    // The front end has no process of the signer's under it, and its user cannot read one
    // byte of the CA's directory.
    let children: String = std::fs::read_dir(format!("/proc/{front_pid}/task"))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("children")).unwrap_or_default())
        .collect();
    assert!(
        children.trim().is_empty(),
        "the front end started no signing child: {children}"
    );
    let keys: Vec<PathBuf> = std::fs::read_dir(&signer_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("key"))
        .collect();
    assert!(
        !keys.is_empty(),
        "the signer keeps CA keys in its directory"
    );
    let mut cat = Command::new("cat");
    cat.arg(&keys[0]);
    std::os::unix::process::CommandExt::uid(&mut cat, FRONT_UID);
    let out = cat.output().unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A peer of another uid (this test, root) is refused before it can ask anything.
    {
        use std::io::Read;
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut said = String::new();
        s.read_to_string(&mut said).unwrap();
        assert!(said.contains("does not serve uid 0"), "{said}");
        assert!(
            !said.contains("root_pem"),
            "no hello for a refused peer: {said}"
        );
    }

    // A front end that finds another user's process on the socket sends it nothing.
    let wrong = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("serve")
        .arg("--data-dir")
        .arg(base.path().join("wrong"))
        .args(["--eab", "off", "--listen", "127.0.0.1:0"])
        .args(["--revocation-listen", "127.0.0.1:0"])
        .args(["--database", &pg.url, "--signer-socket"])
        .arg(&socket)
        .args(["--signer-uid", "4242"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains(&format!("runs as uid {SIGNER_UID}, not signer_uid 4242")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // The signer killed and started again: the front end reconnects, issuance goes on.
    let _ = signer.child.kill();
    let _ = signer.child.wait();
    drop(signer);
    let _signer = start_signer(SIGNER_UID, &signer_args);
    front.add_host("again");
    let (done, chain) = issue(&c, &responder, &["again.test"]).await;
    assert_eq!(done["status"], "valid");
    openssl_verify(&front, &chain);
}

#[test]
fn the_signer_refuses_what_it_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .arg("signer")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    };
    let err = run(&["--signer-allowed-uid", "1000"]);
    assert!(err.contains("--signer-socket"), "{err}");
    let sock = dir.path().join("s.sock");
    let err = run(&["--signer-socket", sock.to_str().unwrap()]);
    assert!(err.contains("--signer-allowed-uid"), "{err}");
    // Nothing was created by the refused starts.
    assert!(!dir.path().join("data").exists());
    assert!(!sock.exists());

    // A file that is not a socket is never replaced.
    let precious = dir.path().join("precious");
    std::fs::write(&precious, "keep me").unwrap();
    let err = run(&[
        "--signer-socket",
        precious.to_str().unwrap(),
        "--signer-allowed-uid",
        "1000",
        "--eab",
        "off",
    ]);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

    // A front end given a socket but not the signer's uid does not start.
    let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("front"))
        .args(["--signer-socket", sock.to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--revocation-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--signer-uid"), "{err}");
    assert!(
        !dir.path().join("front").exists(),
        "a refused start creates nothing"
    );
}

/// Runs docs/deployment.md's OpenSSL commands for the link's certificates in `dir`, for a signer
/// named `localhost`.
fn link_files_as_documented(dir: &Path) {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deployment.md"),
    )
    .unwrap();
    let start = doc
        .find("SIGNER=signer.internal")
        .expect("the documented commands");
    let block = &doc[start..];
    let block = &block[..block.find("```").unwrap()];
    let script = block.replacen("SIGNER=signer.internal", "SIGNER=localhost", 1);
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the documented commands failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in ["signer.key", "front.key", "link-ca.key"] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is private");
    }
}

/// `serve` with `link` flags that must not start: its one-line reason.
fn refused_front(dir: &Path, pg_url: &str, link: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--eab", "off", "--listen", "127.0.0.1:0"])
        .args(["--revocation-listen", "127.0.0.1:0", "--database", pg_url])
        .args(link)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{link:?} started");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signer_on_another_host_over_mutual_tls() {
    use rcgen::ExtendedKeyUsagePurpose::ClientAuth;
    let pg = sceau_testkit::Postgres::start();
    let base = tempfile::tempdir().unwrap();
    // The deployment CA and both ends' certificates made as docs/deployment.md says.
    link_files_as_documented(base.path());
    let file = |name: &str| base.path().join(name).display().to_string();
    let deploy_ca = file("link-ca.pem");
    let (signer_pem, signer_key) = (file("signer.pem"), file("signer.key"));
    let (front_pem, front_key) = (file("front.pem"), file("front.key"));
    let rogue = LinkCa::new(base.path(), "rogue");
    let (rogue_pem, rogue_key) = rogue.issue("rogue-front", &[], ClientAuth);
    let port = sceau_testkit::free_port();
    let signer_dir = base.path().join("signer");
    let signer = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sceau-server"));
        cmd.arg("signer")
            .arg("--data-dir")
            .arg(&signer_dir)
            .args(["--eab", "off", "--database", &pg.url])
            .args(["--signer-listen", &format!("127.0.0.1:{port}")])
            .args(["--signer-tls-ca", &deploy_ca])
            .args([
                "--signer-tls-cert",
                &signer_pem,
                "--signer-tls-key",
                &signer_key,
            ])
            .env("SCEAU_LOG", "warn")
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        assert!(
            lines.any(|l| l.unwrap().contains("signer is ready")),
            "the signer did not start"
        );
        std::thread::spawn(move || lines.for_each(drop));
        Signer { child }
    };

    // A peer that is not TLS at all, and one that says nothing, get nothing and stop nothing.
    {
        use std::io::{Read, Write};
        let mut junk = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        junk.write_all(b"{\"id\":1,\"op\":\"ocsp_responder\",\"issuer_id\":\"x\"}\n")
            .unwrap();
        junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut said = Vec::new();
        let _ = junk.read_to_end(&mut said);
        assert!(
            !String::from_utf8_lossy(&said).contains("root_pem"),
            "no hello without TLS"
        );
    }
    let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();

    let address = format!("localhost:{port}");
    // A front end's flags for the link: the signer's address, its own certificate and key.
    let link = |address: &str, cert: &str, key: &str| -> Vec<String> {
        [
            "--signer-address",
            address,
            "--signer-tls-ca",
            &deploy_ca,
            "--signer-tls-cert",
            cert,
            "--signer-tls-key",
            key,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let mut front = Server::unstarted(&["--eab", "off", "--database", &pg.url]);
    front.args.extend(link(&address, &front_pem, &front_key));
    front.spawn();
    // The CA's files are the signer's alone: none of them is in the front end's directory.
    let ca_files: Vec<_> = std::fs::read_dir(&signer_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "root.pem")
        .collect();
    assert!(ca_files.iter().any(|n| n.to_string_lossy().contains("key")));
    for name in &ca_files {
        assert!(
            !front.data_dir().join(name).exists(),
            "{name:?} is in the front end's directory"
        );
    }
    let responder = Http01::start(front.http01_port).await;
    let mut c = Raw::new(&front).await;
    c.register().await;
    front.add_host("remote");
    let (done, chain) = issue(&c, &responder, &["remote.test"]).await;
    assert_eq!(done["status"], "valid");
    openssl_verify(&front, &chain);

    // A front end certified by another CA is refused by the signer.
    let err = refused_front(
        &base.path().join("rogue"),
        &pg.url,
        &link(&address, &rogue_pem, &rogue_key),
    );
    assert!(err.contains("signing service"), "{err}");
    // A signer whose certificate does not name the address is refused by the front end.
    let err = refused_front(
        &base.path().join("misnamed"),
        &pg.url,
        &link(&format!("127.0.0.1:{port}"), &front_pem, &front_key),
    );
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    // A key file others can read is refused before anything is written.
    std::fs::set_permissions(&front_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open_key = base.path().join("open-key");
    let err = refused_front(&open_key, &pg.url, &link(&address, &front_pem, &front_key));
    assert!(err.contains("readable by others"), "{err}");
    assert!(!open_key.exists(), "a refused start creates nothing");

    // The signer still serves the front end it trusts.
    front.add_host("still");
    let (done, _) = issue(&c, &responder, &["still.test"]).await;
    assert_eq!(done["status"], "valid");
    drop(signer);
}
