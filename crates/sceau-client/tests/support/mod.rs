//! Test harness shared by the library tests and the CLI tests (included with `#[path]`).
//!
//! The ACME server under test is pluggable: a [`ServerFactory`] gets the DNS server to resolve
//! names with and the ports its validator must connect to for http-01 and tls-alpn-01, and
//! returns a running server (directory URL + CA bundle of its HTTPS certificate). [`pebble`]
//! is the factory for Pebble; sceau-server gets its own factory with the same signature.
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
    /// External account binding keys (kid, base64url HMAC key); when set, EAB is required.
    pub eab: Vec<(String, String)>,
    /// Percentage of valid nonces rejected as bad (to exercise the badNonce retry).
    pub nonce_reject: u8,
}

/// A running ACME server; dropping it stops it.
pub trait AcmeServerUnderTest: Send {
    fn directory_url(&self) -> String;
    fn ca_bundle(&self) -> PathBuf;
    /// PEM of the root that issued certificates chain to, for `openssl verify`.
    fn issuing_root_pem(&self) -> String;
    /// Revocation status for a serial (lowercase hex), as (status, reason), if the server can tell.
    fn revocation_status(&self, serial_hex: &str) -> Option<(String, Option<u8>)>;
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
            eab: vec![],
            nonce_reject: 0,
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

pub struct Pebble {
    child: Child,
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
                "pebble exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "pebble did not listen on {addr}");
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
    let eab: serde_json::Map<String, serde_json::Value> = params
        .eab
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let config = serde_json::json!({"pebble": {
        "listenAddress": listen.to_string(),
        "managementListenAddress": management.to_string(),
        "certificate": cert,
        "privateKey": key,
        "httpPort": params.http_port,
        "tlsPort": params.tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": !params.eab.is_empty(),
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
        dir,
        listen,
        management,
        ca,
    })
}
