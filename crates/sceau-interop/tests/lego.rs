//! lego (Debian's 4.9.1) against the server: http-01 and tls-alpn-01 with lego's own
//! listeners, dns-01 through its RFC 2136 provider (TSIG) into a real DNS server, renewal and
//! revocation; and a name that does not resolve must not get a certificate.

use std::path::PathBuf;
use std::process::Command;

use sceau_interop::process::CLIENT_TIMEOUT;
use sceau_interop::{
    Interop, ServerKind, against_both_servers, assert_revoked_again_refused,
    reports_validation_problem, run, run_ok,
};
use sceau_testkit::require_tool;

/// lego with its state under the test's temp dir.
struct Lego<'a> {
    env: &'a Interop,
    dir: PathBuf,
}

impl<'a> Lego<'a> {
    fn new(env: &'a Interop) -> Self {
        Lego {
            env,
            dir: env.path("lego"),
        }
    }

    /// `lego <global flags> <challenge flags> <sub> <sub_args>` for `host`.
    fn cmd(&self, host: &str, challenge: &[String], sub: &str, sub_args: &[&str]) -> Command {
        let mut c = Command::new(require_tool("lego"));
        c.args(["--server", &self.env.server.directory_url])
            .arg("--path")
            .arg(&self.dir)
            .args(["--email", "pki-team@example.org", "--accept-tos"])
            .args(["--domains", host])
            .args(challenge)
            .arg(sub)
            .args(sub_args)
            .env("LEGO_CA_CERTIFICATES", &self.env.server.tls_ca);
        c
    }

    fn file(&self, host: &str, ext: &str) -> PathBuf {
        self.dir.join("certificates").join(format!("{host}.{ext}"))
    }

    /// Verifies `<host>.crt` (a bundle: leaf + issuer) with `<host>.issuer.crt` as the chain,
    /// and the bundle alone; returns the serial.
    fn check(&self, host: &str) -> String {
        let a = self.env.verify(
            &self.file(host, "crt"),
            Some(&self.file(host, "issuer.crt")),
            host,
        );
        let b = self.env.verify(&self.file(host, "crt"), None, host);
        assert_eq!(a.serial, b.serial);
        a.serial
    }

    /// Obtain, renew (new serial), revoke, and check the server refuses a second revocation
    /// with `alreadyRevoked`.
    fn lifecycle(&self, host: &str, challenge: &[String]) {
        run_ok("lego run", &mut self.cmd(host, challenge, "run", &[]));
        let first = self.check(host);

        // Any remaining lifetime is "less than 99999 days": renew now, without the random
        // pause lego takes when run unattended.
        run_ok(
            "lego renew",
            &mut self.cmd(
                host,
                challenge,
                "renew",
                &["--days", "99999", "--no-random-sleep"],
            ),
        );
        let second = self.check(host);
        assert_ne!(first, second, "renewal must issue a new certificate");

        let revoke = ["--reason", "1", "--keep"];
        run_ok("lego revoke", &mut self.cmd(host, &[], "revoke", &revoke));
        if let Some(revoked) = self.env.server.revoked_per_server(&second) {
            assert!(revoked, "server does not list {second} as revoked");
        }
        if let Some(revoked) = self.env.server.revoked_per_server(&first) {
            assert!(
                !revoked,
                "revoking the renewal revoked the first certificate too"
            );
        }
        assert_revoked_again_refused(
            "lego revoke again",
            &mut self.cmd(host, &[], "revoke", &revoke),
        );
    }
}

fn http01(kind: ServerKind) {
    let env = Interop::start(kind);
    let host = env.host("web1");
    let challenge = [
        "--http".into(),
        "--http.port".into(),
        format!(":{}", env.http01_port),
    ];
    Lego::new(&env).lifecycle(&host, &challenge);
}

fn tlsalpn01(kind: ServerKind) {
    let env = Interop::start(kind);
    let host = env.host("web2");
    let challenge = [
        "--tls".into(),
        "--tls.port".into(),
        format!(":{}", env.tlsalpn01_port),
    ];
    Lego::new(&env).lifecycle(&host, &challenge);
}

/// dns-01 with lego's RFC 2136 provider, for a name without any address record. The TSIG
/// secret goes through the environment, as lego documents.
fn dns01_rfc2136(kind: ServerKind) {
    let env = Interop::start(kind);
    let host = "no-address.test";
    let dns = env.dns.addr.to_string();
    // Propagation checks would look for the zone's NS (ns.test, port 53): ask our server only.
    let challenge = [
        "--dns".into(),
        "rfc2136".into(),
        "--dns.disable-cp".into(),
        "--dns.resolvers".into(),
        dns.clone(),
    ];
    let lego = Lego::new(&env);
    let tsig = &env.dns.tsig;
    let with_env = |mut c: Command| {
        c.env("RFC2136_NAMESERVER", &dns)
            .env("RFC2136_TSIG_KEY", &tsig.name)
            .env("RFC2136_TSIG_SECRET", &tsig.secret_b64)
            .env("RFC2136_TSIG_ALGORITHM", format!("{}.", tsig.algorithm))
            .env("RFC2136_PROPAGATION_TIMEOUT", "30")
            .env("RFC2136_POLLING_INTERVAL", "1");
        c
    };
    run_ok(
        "lego run dns-01",
        &mut with_env(lego.cmd(host, &challenge, "run", &[])),
    );
    let first = lego.check(host);
    assert!(
        env.dns.txt(&format!("_acme-challenge.{host}")).is_empty(),
        "lego left its TXT record behind"
    );
    run_ok(
        "lego renew dns-01",
        &mut with_env(lego.cmd(
            host,
            &challenge,
            "renew",
            &["--days", "99999", "--no-random-sleep"],
        )),
    );
    let second = lego.check(host);
    assert_ne!(first, second, "renewal must issue a new certificate");
    let revoke = ["--reason", "4", "--keep"];
    run_ok("lego revoke", &mut lego.cmd(host, &[], "revoke", &revoke));
    let again = run(
        "lego revoke again",
        &mut lego.cmd(host, &[], "revoke", &revoke),
        CLIENT_TIMEOUT,
    )
    .expect_failure();
    assert!(
        again.output().contains("alreadyRevoked"),
        "second revocation not refused with alreadyRevoked\n{again}"
    );
}

/// http-01 for a name the DNS does not know: validation cannot reach anyone, so the server
/// must refuse with a problem document and lego must save nothing.
fn http01_unresolvable_name_is_refused(kind: ServerKind) {
    let env = Interop::start(kind);
    let host = "does-not-exist.test";
    let lego = Lego::new(&env);
    let challenge = [
        "--http".into(),
        "--http.port".into(),
        format!(":{}", env.http01_port),
    ];
    let r = run(
        "lego run for an unresolvable name",
        &mut lego.cmd(host, &challenge, "run", &[]),
        CLIENT_TIMEOUT,
    )
    .expect_failure();
    // The challenge failed on the server's side, not locally (e.g. a busy port).
    assert!(
        reports_validation_problem(&r.output()),
        "lego did not relay a validation problem from the server\n{r}"
    );
    assert!(!lego.file(host, "crt").exists(), "certificate saved\n{r}");
}

against_both_servers!(
    http01,
    tlsalpn01,
    dns01_rfc2136,
    http01_unresolvable_name_is_refused
);
