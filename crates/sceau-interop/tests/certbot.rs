//! certbot (Debian's 2.1) against the server: http-01 with its standalone listener, dns-01
//! with manual hooks that update a real DNS server (RFC 2136 + TSIG), forced renewal, and
//! revocation signed by the account key and by the certificate key.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use sceau_interop::hooks::{self, DnsHookMode};
use sceau_interop::{
    Interop, Run, ServerKind, against_both_servers, reports_validation_problem, run, run_ok,
};

/// certbot with all its state in the test's temp dir.
struct Certbot<'a> {
    env: &'a Interop,
    dir: PathBuf,
}

impl<'a> Certbot<'a> {
    fn new(env: &'a Interop) -> Self {
        Certbot {
            env,
            dir: env.path("certbot"),
        }
    }

    /// `certbot <sub>` with private dirs, no prompts, and the server's TLS root trusted.
    fn cmd(&self, sub: &str) -> Command {
        sceau_interop::certbot(sub, &self.dir, &self.env.server.tls_ca)
    }

    /// `certbot certonly` for `host` with the given authenticator flags, a new account.
    fn certonly(&self, host: &str, auth: &[&str]) -> Command {
        let mut c = self.cmd("certonly");
        c.args(["--server", &self.env.server.directory_url])
            .args(["--agree-tos", "--register-unsafely-without-email"])
            .args(auth)
            .args(["-d", host]);
        c
    }

    /// `certbot renew --force-renewal`; without a terminal certbot would first sleep up to
    /// eight minutes to spread load, hence `--no-random-sleep-on-renew`.
    fn renew(&self) -> Command {
        let mut c = self.cmd("renew");
        c.args(["--force-renewal", "--no-random-sleep-on-renew"]);
        c
    }

    fn revoke(&self, host: &str, with_cert_key: bool) -> Command {
        let mut c = self.cmd("revoke");
        c.args(["--server", &self.env.server.directory_url])
            .arg("--cert-path")
            .arg(self.live(host, "cert.pem"))
            .args(["--reason", "keycompromise", "--no-delete-after-revoke"]);
        if with_cert_key {
            c.arg("--key-path").arg(self.live(host, "privkey.pem"));
        }
        c
    }

    fn live(&self, host: &str, file: &str) -> PathBuf {
        self.dir.join("config/live").join(host).join(file)
    }

    /// certbot's debug log: certbot 2.1 on Python 3.11 hides ACME problem documents behind
    /// "AttributeError: can't set attribute" on the terminal, but logs them here.
    fn debug_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/letsencrypt.log")).unwrap_or_default()
    }

    /// Checks the saved lineage (cert + chain, and fullchain on its own) and returns the
    /// leaf's serial.
    fn check_lineage(&self, host: &str) -> String {
        let info = self.env.verify(
            &self.live(host, "cert.pem"),
            Some(&self.live(host, "chain.pem")),
            host,
        );
        let full = self
            .env
            .verify(&self.live(host, "fullchain.pem"), None, host);
        assert_eq!(
            info.serial, full.serial,
            "fullchain.pem starts with cert.pem"
        );
        info.serial
    }

    /// The certificate is revoked: the server says so where it can, relying parties see it
    /// with certbot's reason (keyCompromise) on the CRL and from the OCSP responder (Sceau;
    /// Pebble runs here without either), and a second revocation is refused with
    /// `alreadyRevoked` (RFC 8555 §7.6).
    fn assert_revoked(&self, host: &str, serial: &str) {
        if let Some(revoked) = self.env.server.revoked_per_server(serial) {
            assert!(revoked, "server does not list {serial} as revoked");
        }
        if self.env.server.kind == ServerKind::Sceau {
            let scratch = self.env.path(&format!("relying-party-{serial}"));
            fs::create_dir_all(&scratch).unwrap();
            sceau_interop::certcheck::assert_relying_parties_see_revoked(
                &self.live(host, "cert.pem"),
                &self.live(host, "chain.pem"),
                &self.env.server.issuer_root,
                "Key Compromise",
                "keyCompromise",
                &scratch,
            );
        }
        let again = run(
            "certbot revoke again",
            &mut self.revoke(host, false),
            sceau_interop::process::CLIENT_TIMEOUT,
        )
        .expect_failure();
        let log = self.debug_log();
        assert!(
            log.contains("urn:ietf:params:acme:error:alreadyRevoked"),
            "second revocation not refused with alreadyRevoked\n{again}\n{}",
            tail_lines(&log, 60)
        );
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// http-01 through `--standalone`: certbot's own listener on the port the server validates.
fn http01_standalone(kind: ServerKind) {
    let env = Interop::start(kind);
    let host = env.host("web1");
    let certbot = Certbot::new(&env);
    let port = env.http01_port.to_string();
    let standalone = ["--standalone", "--http-01-port", &port];

    run_ok(
        "certbot certonly",
        &mut certbot.certonly(&host, &standalone),
    );
    let first = certbot.check_lineage(&host);

    let mut renew = certbot.renew();
    let r = run_ok("certbot renew", &mut renew);
    assert!(r.output().contains("all renewals succeeded"), "{r}");
    let second = certbot.check_lineage(&host);
    assert_ne!(first, second, "renewal must issue a new certificate");

    run_ok("certbot revoke", &mut certbot.revoke(&host, false));
    certbot.assert_revoked(&host, &second);
    if let Some(revoked) = env.server.revoked_per_server(&first) {
        assert!(
            !revoked,
            "revoking the renewed certificate revoked the first one too"
        );
    }
}

/// dns-01 through manual hooks that publish the TXT record with knsupdate, for a name that
/// has no address at all (dns-01 must not need one); revocation signed by the certificate key.
fn dns01_manual_hooks(kind: ServerKind) {
    let env = Interop::start(kind);
    let host = "internal-only.test";
    let certbot = Certbot::new(&env);
    let hook = certbot.dir.join("dns-hook.sh");
    let calls = hooks::certbot_dns_hook(&hook, &env.dns, DnsHookMode::Publish).unwrap();
    let auth_hook = format!("{} auth", hook.display());
    let cleanup_hook = format!("{} cleanup", hook.display());
    let manual = [
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        &auth_hook,
        "--manual-cleanup-hook",
        &cleanup_hook,
    ];
    let challenge_name = format!("_acme-challenge.{host}");

    run_ok(
        "certbot certonly dns-01",
        &mut certbot.certonly(host, &manual),
    );
    let first = certbot.check_lineage(host);
    let c = hooks::calls(&calls);
    assert_eq!(c.len(), 2, "one auth and one cleanup call: {c:?}");
    assert!(c[0].starts_with(&format!("auth {host} ")), "{c:?}");
    assert!(c[1].starts_with(&format!("cleanup {host} ")), "{c:?}");
    assert!(
        env.dns.txt(&challenge_name).is_empty(),
        "cleanup hook left the TXT record"
    );

    let mut renew = certbot.renew();
    run_ok("certbot renew dns-01", &mut renew);
    let second = certbot.check_lineage(host);
    assert_ne!(first, second, "renewal must issue a new certificate");
    // A server may reuse the still-valid authorization (RFC 8555 §7.1.3; Sceau does, Pebble
    // with PEBBLE_AUTHZREUSE=0 almost never does, but now and then still does): then the hooks
    // are not called. Either way they come in pairs and leave nothing behind.
    let c = hooks::calls(&calls);
    assert!(c.len() == 2 || c.len() == 4, "hook calls: {c:?}");
    if env.kind() == ServerKind::Pebble
        && env
            .server
            .log_text()
            .contains("There are now 2 authorizations")
    {
        assert_eq!(
            c.len(),
            4,
            "Pebble made a new authorization: renewal validates again"
        );
    }
    if c.len() == 4 {
        assert!(
            c[2].starts_with("auth ") && c[3].starts_with("cleanup "),
            "{c:?}"
        );
    }
    assert!(env.dns.txt(&challenge_name).is_empty());

    run_ok(
        "certbot revoke with cert key",
        &mut certbot.revoke(host, true),
    );
    certbot.assert_revoked(host, &second);
}

/// A hook that "succeeds" without publishing anything: the server must refuse to issue, and
/// certbot must report the server's problem and save nothing.
fn dns01_unpublished_record_is_refused(kind: ServerKind) {
    let env = Interop::start(kind);
    let host = "nothing-published.test";
    let certbot = Certbot::new(&env);
    let hook = certbot.dir.join("dns-hook.sh");
    let calls = hooks::certbot_dns_hook(&hook, &env.dns, DnsHookMode::PublishNothing).unwrap();
    let auth_hook = format!("{} auth", hook.display());
    let cleanup_hook = format!("{} cleanup", hook.display());
    let manual = [
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        &auth_hook,
        "--manual-cleanup-hook",
        &cleanup_hook,
    ];
    let r: Run = run(
        "certbot certonly without a TXT record",
        &mut certbot.certonly(host, &manual),
        sceau_interop::process::CLIENT_TIMEOUT,
    )
    .expect_failure();
    assert!(
        !certbot.live(host, "cert.pem").exists(),
        "a certificate was saved\n{r}"
    );
    assert!(
        hooks::calls(&calls).iter().any(|c| c.starts_with("auth ")),
        "the hook was not even called\n{r}"
    );
    // The challenge failed on the server's side, with a problem document (RFC 8555 §8.4).
    assert!(
        reports_validation_problem(&r.output()),
        "certbot did not report the server's validation problem\n{r}"
    );
}

against_both_servers!(
    http01_standalone,
    dns01_manual_hooks,
    dns01_unpublished_record_is_refused
);
