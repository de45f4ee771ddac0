//! certbot and lego against a delegated Sceau CA: the existing PKI is a real OpenSSL CA (a
//! root made with `openssl req -x509` and a policy CA below it, both run with `openssl ca`)
//! that signed the CSR of `sceau-server ca init --delegated`, installed with `ca import`. Each
//! client obtains, renews and revokes, and every chain it saves verifies with `openssl verify`
//! against the PKI's root, the only root its users trust.

use std::path::{Path, PathBuf};
use std::process::Command;

use sceau_interop::certcheck::verify_issued;
use sceau_interop::process::CLIENT_TIMEOUT;
use sceau_interop::server::sceau_server_binary;
use sceau_interop::{Interop, run, run_ok};
use sceau_testkit::openssl_ca::{ISSUING_CA_EXT, POLICY_CA_EXT};
use sceau_testkit::{OpenSslCa, Validity, require_tool};
use tempfile::TempDir;

/// A delegated CA under a two-level OpenSSL PKI.
struct Pki {
    dir: TempDir,
    data: PathBuf,
    /// The PKI's root certificate (the test's own file, not Sceau's copy).
    root: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("sceau-delegated-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let ca = |args: &[&str]| {
            run_ok(
                "sceau-server ca",
                Command::new(sceau_server_binary())
                    .arg("ca")
                    .args(args)
                    .arg("--data-dir")
                    .arg(&data),
            )
        };
        ca(&[
            "init",
            "--delegated",
            "--subject",
            "CN=Example Issuing CA,O=Example,C=FR",
        ]);
        let mut root = OpenSslCa::root(&dir.path().join("root"), "Example Root CA").unwrap();
        let mut policy = root
            .subordinate(
                &dir.path().join("policy"),
                "Example Policy CA",
                POLICY_CA_EXT,
            )
            .unwrap();
        let cert = dir.path().join("issuing.pem");
        policy
            .sign(
                &data.join("intermediate.csr"),
                &cert,
                ISSUING_CA_EXT,
                Validity::Days(365),
            )
            .unwrap();
        let chain = dir.path().join("chain.pem");
        std::fs::write(&chain, policy.chain_pem()).unwrap();
        ca(&[
            "import",
            "--cert",
            cert.to_str().unwrap(),
            "--chain",
            chain.to_str().unwrap(),
        ]);
        Pki {
            root: root.cert.clone(),
            data,
            dir,
        }
    }

    /// Verifies what a client saved against the PKI's root; returns the serial.
    #[track_caller]
    fn verify(&self, leaf: &Path, chain: Option<&Path>, host: &str) -> String {
        let n = rand_suffix();
        let info = verify_issued(
            &self.root,
            leaf,
            chain,
            host,
            &self.dir.path().join(format!("check-{n}")),
        );
        assert!(info.dns_names.iter().any(|d| d == host), "{info:?}");
        info.serial
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn certbot_obtains_renews_and_revokes_from_a_delegated_ca() {
    let pki = Pki::new();
    let env = Interop::start_sceau_on(&pki.data);
    let host = env.host("web1");
    let dir = env.path("certbot");
    let certbot = |sub: &str| {
        let mut c = Command::new(require_tool("certbot"));
        c.arg(sub)
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--work-dir")
            .arg(dir.join("work"))
            .arg("--logs-dir")
            .arg(dir.join("logs"))
            .arg("--non-interactive")
            // The server's own TLS certificate is issued under the PKI too.
            .env("REQUESTS_CA_BUNDLE", &pki.root);
        c
    };
    let live = |f: &str| dir.join("config/live").join(&host).join(f);
    let port = env.http01_port.to_string();
    run_ok(
        "certbot certonly",
        certbot("certonly")
            .args(["--server", &env.server.directory_url])
            .args(["--agree-tos", "--register-unsafely-without-email"])
            .args(["--standalone", "--http-01-port", &port])
            .args(["-d", &host]),
    );
    let first = pki.verify(&live("cert.pem"), Some(&live("chain.pem")), &host);
    assert_eq!(pki.verify(&live("fullchain.pem"), None, &host), first);
    let chain = std::fs::read_to_string(live("chain.pem")).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "issuing CA and policy CA"
    );

    let r = run_ok(
        "certbot renew",
        certbot("renew").args(["--force-renewal", "--no-random-sleep-on-renew"]),
    );
    assert!(r.output().contains("all renewals succeeded"), "{r}");
    let second = pki.verify(&live("cert.pem"), Some(&live("chain.pem")), &host);
    assert_ne!(first, second, "renewal must issue a new certificate");

    let revoke = || {
        let mut c = certbot("revoke");
        c.args(["--server", &env.server.directory_url])
            .arg("--cert-path")
            .arg(live("cert.pem"))
            .args(["--reason", "keycompromise", "--no-delete-after-revoke"]);
        c
    };
    run_ok("certbot revoke", &mut revoke());
    run("certbot revoke again", &mut revoke(), CLIENT_TIMEOUT).expect_failure();
    let log = std::fs::read_to_string(dir.join("logs/letsencrypt.log")).unwrap();
    assert!(
        log.contains("urn:ietf:params:acme:error:alreadyRevoked"),
        "second revocation not refused with alreadyRevoked"
    );
}

#[test]
fn lego_obtains_renews_and_revokes_from_a_delegated_ca() {
    let pki = Pki::new();
    let env = Interop::start_sceau_on(&pki.data);
    let host = env.host("web2");
    let dir = env.path("lego");
    let lego = |challenge: bool, sub: &str, args: &[&str]| {
        let mut c = Command::new(require_tool("lego"));
        c.args(["--server", &env.server.directory_url])
            .arg("--path")
            .arg(&dir)
            .args(["--email", "pki-team@example.org", "--accept-tos"])
            .args(["--domains", &host]);
        if challenge {
            c.args(["--http", "--http.port", &format!(":{}", env.http01_port)]);
        }
        c.arg(sub).args(args).env("LEGO_CA_CERTIFICATES", &pki.root);
        c
    };
    let file = |ext: &str| dir.join("certificates").join(format!("{host}.{ext}"));
    let check = || {
        let a = pki.verify(&file("crt"), Some(&file("issuer.crt")), &host);
        assert_eq!(pki.verify(&file("crt"), None, &host), a);
        a
    };
    run_ok("lego run", &mut lego(true, "run", &[]));
    let first = check();
    run_ok(
        "lego renew",
        &mut lego(true, "renew", &["--days", "99999", "--no-random-sleep"]),
    );
    let second = check();
    assert_ne!(first, second, "renewal must issue a new certificate");

    let revoke = ["--reason", "1", "--keep"];
    run_ok("lego revoke", &mut lego(false, "revoke", &revoke));
    let again = run(
        "lego revoke again",
        &mut lego(false, "revoke", &revoke),
        CLIENT_TIMEOUT,
    )
    .expect_failure();
    assert!(
        again
            .output()
            .contains("urn:ietf:params:acme:error:alreadyRevoked"),
        "second revocation not refused with alreadyRevoked\n{again}"
    );
}
