//! dehydrated (Debian's 0.7) against the server: http-01 through challenge files in a
//! directory served by a web server (the test's [`sceau_interop::Webroot`]), account
//! registration, issuance, forced renewal and revocation.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sceau_interop::{
    Interop, ServerKind, against_both_servers, assert_revoked_again_refused, run_ok,
};
use sceau_testkit::require_tool;

struct Dehydrated<'a> {
    env: &'a Interop,
    dir: PathBuf,
    config: PathBuf,
}

impl<'a> Dehydrated<'a> {
    /// Writes a config file: the server's directory, a contact, curl trusting the server's
    /// TLS root, and the webroot's directory as WELLKNOWN.
    fn new(env: &'a Interop) -> Self {
        let dir = env.path("dehydrated");
        let webroot = env.webroot.as_ref().expect("dehydrated needs the webroot");
        let config = dir.join("config");
        let text = format!(
            "CA=\"{ca}\"\n\
             CONTACT_EMAIL=\"pki-team@example.org\"\n\
             CURL_OPTS=\"--cacert {tls}\"\n\
             BASEDIR=\"{base}\"\n\
             WELLKNOWN=\"{well}\"\n\
             CHALLENGETYPE=\"http-01\"\n",
            ca = env.server.directory_url,
            tls = env.server.tls_ca.display(),
            base = dir.display(),
            well = webroot.dir().display(),
        );
        fs::write(&config, text).expect("write dehydrated config");
        Dehydrated { env, dir, config }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(require_tool("dehydrated"));
        c.arg("-f").arg(&self.config).args(args);
        c
    }

    fn cert_dir(&self, host: &str) -> PathBuf {
        self.dir.join("certs").join(host)
    }

    /// Verifies cert.pem with chain.pem, and fullchain.pem alone; returns the serial.
    fn check(&self, host: &str) -> String {
        let d = self.cert_dir(host);
        let a = self
            .env
            .verify(&d.join("cert.pem"), Some(&d.join("chain.pem")), host);
        let b = self.env.verify(&d.join("fullchain.pem"), None, host);
        assert_eq!(a.serial, b.serial);
        a.serial
    }
}

fn http01_webroot(kind: ServerKind) {
    let env = Interop::start_with_webroot(kind);
    let webroot = env.webroot.as_ref().expect("webroot");
    let host = env.host("web1");
    let dh = Dehydrated::new(&env);

    let r = run_ok(
        "dehydrated --register",
        &mut dh.cmd(&["--register", "--accept-terms"]),
    );
    assert!(r.output().contains("Done!"), "{r}");

    run_ok("dehydrated -c", &mut dh.cmd(&["-c", "-d", &host]));
    let first = dh.check(&host);
    // The server fetched the token from the web server, and dehydrated removed its file.
    let fetched: Vec<String> = webroot
        .requests()
        .into_iter()
        .filter(|p| p.starts_with("/.well-known/acme-challenge/"))
        .collect();
    assert!(!fetched.is_empty(), "the server never fetched a challenge");
    assert!(
        webroot.files().is_empty(),
        "challenge files left: {:?}",
        webroot.files()
    );

    run_ok(
        "dehydrated -c --force",
        &mut dh.cmd(&["-c", "-d", &host, "--force"]),
    );
    let second = dh.check(&host);
    assert_ne!(first, second, "renewal must issue a new certificate");

    // cert.pem links to the timestamped file; dehydrated renames that one on revocation.
    let cert_link = dh.cert_dir(&host).join("cert.pem");
    let target = fs::canonicalize(&cert_link).expect("cert.pem resolves");
    let cert_arg = cert_link.to_string_lossy().into_owned();
    run_ok("dehydrated -r", &mut dh.cmd(&["-r", &cert_arg]));
    let renamed = Path::new(&format!("{}-revoked", target.display())).to_path_buf();
    assert!(
        renamed.is_file(),
        "dehydrated did not mark {target:?} revoked"
    );
    if let Some(revoked) = env.server.revoked_per_server(&second) {
        assert!(revoked, "server does not list {second} as revoked");
    }
    let renamed_arg = renamed.to_string_lossy().into_owned();
    assert_revoked_again_refused("dehydrated -r again", &mut dh.cmd(&["-r", &renamed_arg]));
}

against_both_servers!(http01_webroot);
