//! A CMP CA on Bouncy Castle's CMP implementation (the library EJBCA builds on), for what
//! OpenSSL's mock server cannot do: it signs a new certificate for every p10cr, so a test can
//! obtain, renew with a new key and revoke through a registration authority in front of it,
//! and a benchmark can measure throughput. The server (`java/cmp-ca/`, one Java file around
//! Bouncy Castle's message, protection and certificate classes) keeps its records on stdout:
//! `pbm N` (a request's MAC iteration count, once verified), `issued SERIAL`, `confirmed N`,
//! `revoked SERIAL REASON`.
//!
//! Built on first use by [`crate::java::build`]; Maven resolves Bouncy Castle, which the
//! README's test command fetched beforehand.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_tool};

const POM: &str = include_str!("../java/cmp-ca/pom.xml");
const SOURCE: &str = include_str!("../java/cmp-ca/src/main/java/CmpCa.java");

/// The compiled server: its class directory and its dependencies' classpath.
fn built() -> (PathBuf, String) {
    let b = crate::java::build("sceau-testkit-cmp-ca", POM, "CmpCa", SOURCE);
    (b.classes, b.classpath)
}

/// The CA on a free loopback port, killed on drop.
pub struct BcCmpCa {
    child: Child,
    pub port: u16,
    records: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BcCmpCa {
    /// Signs with `issuing_cert` / `issuing_key` (PEM); requests and responses are protected
    /// with the shared secret in `secret_file`.
    pub fn start(issuing_cert: &Path, issuing_key: &Path, secret_file: &Path) -> BcCmpCa {
        let (classes, cp) = built();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("tempdir");
            let records = dir.path().join("records");
            let log = dir.path().join("log");
            let child = Command::new(require_tool("java"))
                .arg("-cp")
                .arg(format!("{}:{cp}", classes.display()))
                .arg("CmpCa")
                .arg(port.to_string())
                .args([issuing_cert, issuing_key, secret_file])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&records).unwrap())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start java CmpCa");
            let mut ca = BcCmpCa {
                child,
                port,
                records,
                log,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = ca.child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return ca;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = ca.log_text();
            assert!(
                log.contains("BindException"),
                "the Bouncy Castle CMP CA did not start: {log}"
            );
        }
        panic!("no free port for the Bouncy Castle CMP CA");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/pkix/", self.port)
    }

    /// Its stderr (errors, start-up).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its record lines.
    pub fn records(&self) -> Vec<String> {
        std::fs::read_to_string(&self.records)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Serials it issued, lowercase hex without leading zeros, in order.
    pub fn issued(&self) -> Vec<String> {
        self.records()
            .iter()
            .filter_map(|l| l.strip_prefix("issued ").map(str::to_owned))
            .collect()
    }

    /// The CRL reason it recorded for `serial_hex` (any case, leading zeros allowed), if it
    /// revoked it.
    pub fn revoked(&self, serial_hex: &str) -> Option<String> {
        let want = serial_hex.trim_start_matches('0').to_ascii_lowercase();
        self.records().iter().find_map(|l| {
            let mut f = l.split(' ');
            (f.next() == Some("revoked") && f.next() == Some(want.as_str()))
                .then(|| f.next().unwrap_or("").to_owned())
        })
    }
}

impl Drop for BcCmpCa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
