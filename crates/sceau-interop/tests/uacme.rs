//! uacme (Debian's 1.7) against the server: RSA account and certificate keys, http-01 through
//! its hook protocol writing into the test's webroot, forced reissue, revocation signed by
//! the account key and by the certificate's own key.
//!
//! uacme links libcurl-gnutls, which only trusts the system bundle
//! `/etc/ssl/certs/ca-certificates.crt` (no option or variable chooses another). So each
//! uacme run happens in a private mount namespace (`unshare --map-root-user --mount`) where
//! that file is bind-mounted over by the server's TLS root; the machine's trust store is
//! never touched and parallel tests do not see each other's roots.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sceau_interop::hooks;
use sceau_interop::process::CLIENT_TIMEOUT;
use sceau_interop::{
    Interop, ServerKind, against_both_servers, assert_revoked_again_refused, run, run_ok,
};
use sceau_testkit::require_tool;

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

struct Uacme<'a> {
    env: &'a Interop,
    conf: PathBuf,
    hook: PathBuf,
}

impl<'a> Uacme<'a> {
    fn new(env: &'a Interop) -> (Self, PathBuf) {
        namespaces_available();
        let dir = env.path("uacme");
        let hook = dir.join("hook.sh");
        let webroot = env.webroot.as_ref().expect("uacme needs the webroot");
        let calls = hooks::uacme_http_hook(&hook, webroot.dir()).expect("write hook");
        let u = Uacme {
            env,
            conf: dir.join("conf"),
            hook,
        };
        (u, calls)
    }

    /// `uacme -v -c CONF -a URL -h HOOK <args>` with the server's TLS root as the only
    /// trusted CA (see the module docs).
    fn cmd(&self, args: &[&str]) -> Command {
        assert!(
            Path::new(SYSTEM_BUNDLE).is_file(),
            "{SYSTEM_BUNDLE} missing: install ca-certificates (scripts/install-test-deps.sh)"
        );
        let mut c = Command::new(require_tool("unshare"));
        c.args(["--map-root-user", "--mount", "sh", "-c"])
            .arg(r#"mount --bind "$0" "$1" && shift && exec "$@""#)
            .arg(&self.env.server.tls_ca)
            .arg(SYSTEM_BUNDLE)
            .arg(require_tool("uacme"))
            .arg("-v")
            .arg("-c")
            .arg(&self.conf)
            .args(["-a", &self.env.server.directory_url])
            .arg("-h")
            .arg(&self.hook)
            .args(args);
        c
    }

    fn cert(&self, host: &str) -> PathBuf {
        self.conf.join(host).join("cert.pem")
    }

    fn key(&self, host: &str) -> PathBuf {
        self.conf.join("private").join(host).join("key.pem")
    }
}

/// Fails with an explanation when this machine forbids the namespaces uacme's private trust
/// store needs (e.g. a container whose seccomp profile blocks `unshare`).
fn namespaces_available() {
    let probe = run(
        "unshare probe",
        Command::new(require_tool("unshare")).args(["--map-root-user", "--mount", "true"]),
        CLIENT_TIMEOUT,
    );
    assert!(
        probe.success(),
        "uacme's tests need user + mount namespaces (unshare) to give uacme a private CA \
         bundle; this machine refuses them\n{probe}"
    );
}

fn http01_hook(kind: ServerKind) {
    let env = Interop::start_with_webroot(kind);
    let webroot = env.webroot.as_ref().expect("webroot");
    let host = env.host("web1");
    let (uacme, calls) = Uacme::new(&env);
    let keep = env.path("kept");

    run_ok("uacme new", &mut uacme.cmd(&["-y", "new"]));
    run_ok("uacme issue", &mut uacme.cmd(&["issue", &host]));
    // cert.pem is the leaf followed by the chain.
    let first = env.verify(&uacme.cert(&host), None, &host).serial;
    let c = hooks::calls(&calls);
    assert!(
        c.contains(&format!("begin http-01 {host}")) && c.contains(&format!("done http-01 {host}")),
        "hook calls: {c:?}"
    );
    assert!(webroot.files().is_empty(), "hook left challenge files");

    // uacme reuses the certificate key unless it is gone; R37 wants a fresh key for every
    // certificate, so do what an operator following it does: set the old key aside.
    let first_cert = keep.join("first-cert.pem");
    let first_key = keep.join("first-key.pem");
    fs::copy(uacme.cert(&host), &first_cert).expect("keep first cert");
    fs::rename(uacme.key(&host), &first_key).expect("set the first key aside");

    run_ok("uacme -f issue", &mut uacme.cmd(&["-f", "issue", &host]));
    let second = env.verify(&uacme.cert(&host), None, &host).serial;
    assert_ne!(first, second, "reissue must give a new certificate");

    // Revocation signed by the account key; uacme renames the file to revoked-<time>.pem.
    let cert_arg = uacme.cert(&host).to_string_lossy().into_owned();
    run_ok(
        "uacme revoke",
        &mut uacme.cmd(&["-r", "4", "revoke", &cert_arg]),
    );
    assert!(
        !uacme.cert(&host).exists(),
        "uacme did not mark the cert revoked"
    );
    let revoked_file = sceau_interop::certcheck::single_file(&uacme.conf.join(&host), |n| {
        n.starts_with("revoked-")
    });
    if let Some(revoked) = env.server.revoked_per_server(&second) {
        assert!(revoked, "server does not list {second} as revoked");
    }
    assert_revoked_again_refused(
        "uacme revoke again",
        &mut uacme.cmd(&["revoke", &revoked_file.to_string_lossy()]),
    );

    // Revocation signed by the first certificate's own key (RFC 8555 §7.6), reason
    // keyCompromise.
    if let Some(revoked) = env.server.revoked_per_server(&first) {
        assert!(!revoked, "the first certificate was revoked too early");
    }
    run_ok(
        "uacme revoke with the certificate key",
        &mut uacme.cmd(&[
            "-r",
            "1",
            "revoke",
            &first_cert.to_string_lossy(),
            &first_key.to_string_lossy(),
        ]),
    );
    if let Some(revoked) = env.server.revoked_per_server(&first) {
        assert!(revoked, "server does not list {first} as revoked");
    }
}

against_both_servers!(http01_hook);
