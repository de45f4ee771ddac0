//! The client flows a CA mode must carry, shared by the CA-mode interop tests: certbot and
//! lego each obtain, renew and revoke (twice: the second refused with `alreadyRevoked`), and
//! every chain they save verifies with `openssl verify` against the root the test trusts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sceau_interop::certcheck::verify_issued;
use sceau_interop::process::CLIENT_TIMEOUT;
use sceau_interop::{Interop, assert_revoked_again_refused, run, run_ok};
use sceau_testkit::require_tool;

/// The root the clients' users trust, and a scratch directory for the checks.
pub struct Trust {
    pub root: PathBuf,
    pub scratch: PathBuf,
    /// The root of the ACME server's own HTTPS certificate [default: `root`] (in RA mode the
    /// operator's PKI, while certificates chain to the upstream's root).
    pub tls: Option<PathBuf>,
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Trust {
    fn tls(&self) -> &Path {
        self.tls.as_deref().unwrap_or(&self.root)
    }

    /// Verifies what a client saved against the trusted root; returns the serial.
    #[track_caller]
    pub fn verify(&self, leaf: &Path, chain: Option<&Path>, host: &str) -> String {
        let n = rand_suffix();
        let info = verify_issued(
            &self.root,
            leaf,
            chain,
            host,
            &self.scratch.join(format!("check-{n}")),
        );
        assert!(info.dns_names.iter().any(|d| d == host), "{info:?}");
        info.serial
    }
}

/// certbot: http-01 standalone, forced renewal, revocation with a reason. `chain_len` is the
/// number of certificates certbot's chain.pem must hold. Returns the serials of the first and
/// of the renewed (then revoked) certificate.
pub fn certbot_obtains_renews_and_revokes(
    env: &Interop,
    pki: &Trust,
    chain_len: usize,
) -> (String, String) {
    let host = env.host("web1");
    let dir = env.path("certbot");
    // The server's own TLS certificate is issued under the PKI too.
    let certbot = |sub: &str| sceau_interop::certbot(sub, &dir, pki.tls());
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
        chain_len,
        "certificates in chain.pem"
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
    (first, second)
}

/// lego: http-01, renewal, revocation with a reason. Returns the serials of the first and of
/// the renewed (then revoked) certificate.
pub fn lego_obtains_renews_and_revokes(env: &Interop, pki: &Trust) -> (String, String) {
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
        c.arg(sub).args(args).env("LEGO_CA_CERTIFICATES", pki.tls());
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
    assert_revoked_again_refused("lego revoke again", &mut lego(false, "revoke", &revoke));
    (first, second)
}
