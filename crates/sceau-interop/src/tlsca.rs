//! A throw-away CA and a `localhost`/`127.0.0.1` server certificate, made with openssl, for
//! servers (Pebble) that need a TLS certificate we give them.
//!
//! Invariants: keys are P-256, live only in the test's private temp dir and are mode 0600; the
//! leaf is valid for DNS:localhost and IP:127.0.0.1 with serverAuth, signed by the CA.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sceau_testkit::require_tool;

use crate::process::run;

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub struct TlsCa {
    pub ca_cert: PathBuf,
    pub leaf_cert: PathBuf,
    pub leaf_key: PathBuf,
}

impl TlsCa {
    /// Creates `dir` and generates the CA and the leaf in it.
    pub fn generate(dir: &Path) -> io::Result<TlsCa> {
        fs::create_dir_all(dir)?;
        let ca_key = dir.join("tls-ca.key");
        let ca_cert = dir.join("tls-ca.pem");
        let leaf_key = dir.join("tls-server.key");
        let leaf_csr = dir.join("tls-server.csr");
        let leaf_cert = dir.join("tls-server.pem");
        let ext = dir.join("tls-server.ext");
        fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )?;
        let openssl = require_tool("openssl");
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut make_ca = Command::new(&openssl);
        make_ca
            .args([
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=sceau-interop TLS CA",
            ])
            .args(p256)
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_cert);
        let mut make_csr = Command::new(&openssl);
        make_csr
            .args(["req", "-subj", "/CN=localhost"])
            .args(p256)
            .arg("-keyout")
            .arg(&leaf_key)
            .arg("-out")
            .arg(&leaf_csr);
        let mut sign = Command::new(&openssl);
        sign.args(["x509", "-req", "-days", "2", "-set_serial", "2", "-in"])
            .arg(&leaf_csr)
            .arg("-CA")
            .arg(&ca_cert)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&leaf_cert);
        for (label, cmd) in [
            ("generate TLS CA", &mut make_ca),
            ("generate TLS server key", &mut make_csr),
            ("sign TLS server certificate", &mut sign),
        ] {
            let r = run(label, cmd, Duration::from_secs(60));
            if !r.success() {
                return Err(io::Error::other(r.to_string()));
            }
        }
        for key in [&ca_key, &leaf_key] {
            fs::set_permissions(key, fs::Permissions::from_mode(0o600))?;
        }
        Ok(TlsCa {
            ca_cert,
            leaf_cert,
            leaf_key,
        })
    }
}
