//! Test harness shared by the library tests and the CLI tests (included with `#[path]`).
//!
//! The ACME server under test is pluggable: a [`ServerFactory`] gets the DNS server to resolve
//! names with and the ports its validator must connect to for http-01 and tls-alpn-01, and
//! returns a running server (directory URL + CA bundle of its HTTPS certificate). [`pebble`]
//! starts Pebble, [`sceau_server`] starts our own server (the binary built by
//! `cargo build -p sceau-server`, next to the test executable). [`both_servers!`] turns one
//! test function taking a factory into one test per server.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sceau_testkit::{KnotDns, free_port, require_tool};

/// What the server under test needs to know about its environment.
#[derive(Debug, Clone)]
pub struct ServerParams {
    /// DNS server the CA resolves names (A, TXT, CAA) with.
    pub dns: SocketAddr,
    /// Port the CA connects to for http-01.
    pub http_port: u16,
    /// Port the CA connects to for tls-alpn-01.
    pub tls_port: u16,
    /// When set, the server requires external account binding and hands out one key
    /// (see [`AcmeServerUnderTest::eab_credentials`]).
    pub eab_required: bool,
    /// Percentage of valid nonces rejected as bad (to exercise the badNonce retry; Pebble only).
    pub nonce_reject: u8,
    /// Lifetime of issued certificates in days (sceau-server only; Pebble's is fixed).
    pub cert_validity_days: Option<u32>,
    /// More `sceau-server serve` flags (sceau-server only), e.g. `--star-min-lifetime 10s`.
    pub extra_server_args: Vec<String>,
}

/// A running ACME server; dropping it stops it.
pub trait AcmeServerUnderTest: Send {
    fn directory_url(&self) -> String;
    fn ca_bundle(&self) -> PathBuf;
    /// PEM of the root that issued certificates chain to, for `openssl verify`.
    fn issuing_root_pem(&self) -> String;
    /// Revocation status for a serial (lowercase hex), as (status, reason), if the server can tell.
    fn revocation_status(&self, serial_hex: &str) -> Option<(String, Option<u8>)>;
    /// The EAB key id and base64url MAC key to bind accounts with, when EAB is required.
    fn eab_credentials(&self) -> Option<(String, String)> {
        None
    }
    /// The server's data directory, for servers that have one (sceau-server).
    fn data_dir(&self) -> Option<PathBuf> {
        None
    }
}

pub type ServerFactory = fn(&ServerParams) -> Box<dyn AcmeServerUnderTest>;

/// A test environment: a knot zone `test.` that resolves every name to 127.0.0.1, and an
/// ACME server resolving through it.
pub struct Env {
    pub dns: KnotDns,
    pub server: Box<dyn AcmeServerUnderTest>,
    pub params: ServerParams,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn start(factory: ServerFactory) -> Env {
        Self::start_with(factory, |_| {})
    }

    pub fn start_with(factory: ServerFactory, tweak: impl FnOnce(&mut ServerParams)) -> Env {
        let dns = KnotDns::start("test").expect("knot starts");
        dns.add_record("*", "A", "127.0.0.1");
        let mut params = ServerParams {
            dns: dns.addr,
            http_port: free_port(),
            tls_port: free_port(),
            eab_required: false,
            nonce_reject: 0,
            cert_validity_days: None,
            extra_server_args: Vec::new(),
        };
        tweak(&mut params);
        let server = factory(&params);
        Env {
            dns,
            server,
            params,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_bundle_pem(&self) -> String {
        std::fs::read_to_string(self.server.ca_bundle()).unwrap()
    }

    /// Checks a chain with openssl against the server's issuing root.
    pub fn openssl_verify(&self, leaf_pem: &str, chain_pem: &str) {
        let root = self.path("issuing-root.pem");
        std::fs::write(&root, self.server.issuing_root_pem()).unwrap();
        let leaf = self.path("verify-leaf.pem");
        let chain = self.path("verify-chain.pem");
        std::fs::write(&leaf, leaf_pem).unwrap();
        std::fs::write(&chain, chain_pem).unwrap();
        let out = Command::new(require_tool("openssl"))
            .args(["verify", "-CAfile"])
            .arg(&root)
            .arg("-untrusted")
            .arg(&chain)
            .arg(&leaf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A CA and a localhost/127.0.0.1 server certificate for the ACME server's HTTPS.
pub fn https_identity(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sceau test HTTPS CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("https-ca.pem"),
        dir.join("https-cert.pem"),
        dir.join("https-key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

/// The EAB key Pebble is configured with when [`ServerParams::eab_required`] is set.
const PEBBLE_EAB: (&str, &str) = (
    "kid-1",
    "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
);

pub struct Pebble {
    child: Child,
    eab_required: bool,
    dir: tempfile::TempDir,
    pub listen: SocketAddr,
    pub management: SocketAddr,
    ca: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_tcp(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited ({status}): {}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {addr}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Blocking HTTPS GET trusting `ca` (test side only).
pub fn https_get(url: &str, ca: &Path) -> (u16, String) {
    let url = url.to_owned();
    let ca = ca.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pem = std::fs::read_to_string(&ca).unwrap();
            let http = sceau_client::http::build_client(&sceau_client::http::HttpOptions {
                ca_bundle_pem: Some(pem),
                timeout: None,
            })
            .unwrap();
            let r = http.get(&url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    })
    .join()
    .unwrap()
}

impl AcmeServerUnderTest for Pebble {
    fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    fn ca_bundle(&self) -> PathBuf {
        self.ca.clone()
    }

    fn issuing_root_pem(&self) -> String {
        let (status, body) = https_get(&format!("https://{}/roots/0", self.management), &self.ca);
        assert_eq!(status, 200);
        body
    }

    fn revocation_status(&self, serial_hex: &str) -> Option<(String, Option<u8>)> {
        let (status, body) = https_get(
            &format!(
                "https://{}/cert-status-by-serial/{serial_hex}",
                self.management
            ),
            &self.ca,
        );
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some((
            v["Status"].as_str()?.to_owned(),
            v["Reason"].as_u64().map(|r| r as u8),
        ))
    }

    fn eab_credentials(&self) -> Option<(String, String)> {
        self.eab_required
            .then(|| (PEBBLE_EAB.0.to_owned(), PEBBLE_EAB.1.to_owned()))
    }
}

impl Pebble {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// The Pebble factory: `/usr/bin/pebble` with NOSLEEP, no authorization reuse.
pub fn pebble(params: &ServerParams) -> Box<dyn AcmeServerUnderTest> {
    let bin = require_tool("pebble");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = https_identity(dir.path());
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    assert!(
        params.cert_validity_days.is_none(),
        "Pebble's certificate lifetime is fixed; use sceau_server"
    );
    assert!(
        params.extra_server_args.is_empty(),
        "sceau-server flags given to Pebble"
    );
    let eab: serde_json::Map<String, serde_json::Value> = params
        .eab_required
        .then(|| {
            (
                PEBBLE_EAB.0.to_owned(),
                serde_json::Value::String(PEBBLE_EAB.1.to_owned()),
            )
        })
        .into_iter()
        .collect();
    let config = serde_json::json!({"pebble": {
        "listenAddress": listen.to_string(),
        "managementListenAddress": management.to_string(),
        "certificate": cert,
        "privateKey": key,
        "httpPort": params.http_port,
        "tlsPort": params.tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": params.eab_required,
        "externalAccountMACKeys": eab,
    }});
    let config_path = dir.path().join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let log = dir.path().join("pebble.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(bin)
        .arg("-config")
        .arg(&config_path)
        .arg("-dnsserver")
        .arg(params.dns.to_string())
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", params.nonce_reject.to_string())
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(Stdio::from(logf.try_clone().unwrap()))
        .stderr(Stdio::from(logf))
        .spawn()
        .expect("pebble starts");
    wait_tcp(listen, &mut child, &log);
    wait_tcp(management, &mut child, &log);
    Box::new(Pebble {
        child,
        eab_required: params.eab_required,
        dir,
        listen,
        management,
        ca,
    })
}

/// A running `sceau-server serve` with its own data directory.
pub struct SceauServer {
    child: Child,
    dir: tempfile::TempDir,
    pub listen: SocketAddr,
    eab: Option<(String, String)>,
}

impl Drop for SceauServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SceauServer {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sceau-server.log")).unwrap_or_default()
    }

    /// One value from the server's SQLite database, read with the sqlite3 tool (read-only).
    pub fn sql(data: &Path, query: &str) -> String {
        let out = Command::new(require_tool("sqlite3"))
            .arg("-readonly")
            .arg(data.join("sceau.db"))
            .arg(query)
            .output()
            .expect("sqlite3 runs");
        assert!(
            out.status.success(),
            "sqlite3 {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// The `sceau-server` binary of the same build profile as this test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/sceau-server`).
pub fn sceau_server_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("sceau-server");
    assert!(
        bin.is_file(),
        "{} is missing: build it first: cargo build -p sceau-server",
        bin.display()
    );
    bin
}

impl AcmeServerUnderTest for SceauServer {
    fn directory_url(&self) -> String {
        format!("https://{}/directory", self.listen)
    }

    fn ca_bundle(&self) -> PathBuf {
        // The server's HTTPS certificate and the certificates it issues share this root.
        self.data().join("root.pem")
    }

    fn issuing_root_pem(&self) -> String {
        std::fs::read_to_string(self.ca_bundle()).unwrap()
    }

    fn revocation_status(&self, serial_hex: &str) -> Option<(String, Option<u8>)> {
        assert!(serial_hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let row = Self::sql(
            &self.data(),
            &format!(
                "SELECT revoked_at IS NOT NULL, coalesce(revocation_reason, '') \
                 FROM certificates WHERE lower(serial) = lower('{serial_hex}')"
            ),
        );
        let (revoked, reason) = row.split_once('|')?;
        // Same words as Pebble's management interface.
        let status = if revoked == "1" { "Revoked" } else { "Valid" };
        Some((status.to_owned(), reason.parse().ok()))
    }

    fn eab_credentials(&self) -> Option<(String, String)> {
        self.eab.clone()
    }

    fn data_dir(&self) -> Option<PathBuf> {
        Some(self.data())
    }
}

/// The sceau-server factory: `sceau-server serve` on a free port with a fresh data directory,
/// validating through the test DNS server; with EAB, one external account allowed every name
/// under `test` is created with `sceau-server admin account create`.
pub fn sceau_server(params: &ServerParams) -> Box<dyn AcmeServerUnderTest> {
    assert_eq!(
        params.nonce_reject, 0,
        "sceau-server cannot be told to reject nonces"
    );
    let bin = sceau_server_bin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("sceau-server.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(listen.to_string())
        .args(["--revocation-listen", "127.0.0.1:0"])
        .arg("--dns-server")
        .arg(params.dns.to_string())
        .arg("--http01-port")
        .arg(params.http_port.to_string())
        .arg("--tlsalpn01-port")
        .arg(params.tls_port.to_string())
        // The clients under test answer challenges on loopback, refused by default, and some
        // tests certify 127.0.0.1, a local address and the listener's own.
        .args(["--validation-allow", "127.0.0.0/8"])
        .args(["--allow-local-identifiers", "--allow-server-names"])
        // Explicit both ways: the default changes over time.
        .arg("--eab")
        .arg(if params.eab_required {
            "required"
        } else {
            "off"
        });
    cmd.args(&params.extra_server_args);
    if let Some(days) = params.cert_validity_days {
        cmd.arg("--cert-validity-days").arg(days.to_string());
    }
    let mut child = cmd
        .env("SCEAU_LOG", "info")
        .stdout(Stdio::from(logf.try_clone().unwrap()))
        .stderr(Stdio::from(logf))
        .spawn()
        .expect("sceau-server starts");
    wait_tcp(listen, &mut child, &log);
    let eab = params.eab_required.then(|| {
        let out = Command::new(&bin)
            .args(["admin", "--data-dir"])
            .arg(&data)
            .args([
                "--actor",
                "sceau client tests",
                "account",
                "create",
                "--owner",
                "Test Operator <ops@example.org>",
                "--with-subdomains",
                "test",
                "--json",
            ])
            .output()
            .expect("sceau-server admin runs");
        assert!(
            out.status.success(),
            "sceau-server admin account create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["kid"].as_str().expect("kid").to_owned(),
            v["hmac_key"].as_str().expect("hmac_key").to_owned(),
        )
    });
    Box::new(SceauServer {
        child,
        dir,
        listen,
        eab,
    })
}

/// `both_servers!(async: a, b)` / `both_servers!(sync: a, b)`: for every listed function
/// `a(server: ServerFactory)`, one test `pebble::a` and one test `sceau_server::a`.
macro_rules! both_servers {
    (async: $($name:ident),* $(,)?) => {
        mod pebble {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(crate::support::pebble).await
            })*
        }
        mod sceau_server {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(crate::support::sceau_server).await
            })*
        }
    };
    (sync: $($name:ident),* $(,)?) => {
        mod pebble {
            $(#[test]
            fn $name() {
                super::$name(crate::support::pebble)
            })*
        }
        mod sceau_server {
            $(#[test]
            fn $name() {
                super::$name(crate::support::sceau_server)
            })*
        }
    };
}
