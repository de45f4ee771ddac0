//! End-to-end test support for sceau-server: the real binary, a real DNS server (knot), a
//! real http-01 responder on loopback, and a raw ACME client on sceau-wire that can also send
//! the malformed requests real clients never send.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sceau_store::Table;
use sceau_testkit::{KnotDns, free_port};
use sceau_wire::jws::{Flattened, Signer};
use sceau_wire::{AccountKey, Directory, Identifier, KeyKind, b64};
use serde_json::{Value, json};

pub struct Server {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub http01_port: u16,
    pub tlsalpn01_port: u16,
    pub dns: KnotDns,
    pub args: Vec<String>,
    /// Another instance's data directory to share (several instances on one database).
    pub shared_data_dir: Option<PathBuf>,
    /// Extra environment of the server process (e.g. `SOFTHSM2_CONF`); set before `spawn`.
    pub env: Vec<(String, String)>,
    /// The base URL of its CRLs and OCSP, as its start-up banner says.
    pub revocation: Arc<Mutex<Option<String>>>,
    /// The file the server's stderr (its log) is appended to, and its `SCEAU_LOG` filter;
    /// `None`: stderr is the test's, at `warn`.
    pub log: Option<(PathBuf, String)>,
    /// The OS user the server runs as (the test runs as root); `None`: the test's own.
    pub uid: Option<u32>,
}

impl Server {
    /// Starts sceau-server on free ports with a fresh data directory and knot DNS for `test.`;
    /// `extra` adds flags (e.g. `--eab off`).
    pub fn start(extra: &[&str]) -> Server {
        let mut s = Server::unstarted(extra);
        s.spawn();
        s
    }

    /// A server not started yet: set `env`, prepare `data_dir()` (e.g. `ca init`), then call
    /// [`Server::spawn`].
    pub fn unstarted(extra: &[&str]) -> Server {
        let dns = KnotDns::start("test.")
            .expect("knot DNS for tests (install with the README's test command)");
        let dir = tempfile::tempdir().unwrap();
        Server {
            child: None,
            dir,
            port: free_port(),
            http01_port: free_port(),
            tlsalpn01_port: free_port(),
            dns,
            args: extra.iter().map(|s| s.to_string()).collect(),
            shared_data_dir: None,
            env: Vec::new(),
            revocation: Arc::default(),
            log: None,
            uid: None,
        }
    }

    /// Like [`Server::start`], with the data directory at `data_dir` and the server's log
    /// (stderr, filtered by `log_filter`) appended to `log_file`, for tests that read it.
    pub fn start_logged(
        data_dir: PathBuf,
        log_file: PathBuf,
        log_filter: &str,
        extra: &[&str],
    ) -> Server {
        let dns = KnotDns::start("test.")
            .expect("knot DNS for tests (install with the README's test command)");
        let mut s = Server {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            http01_port: free_port(),
            tlsalpn01_port: free_port(),
            dns,
            args: extra.iter().map(|s| s.to_string()).collect(),
            shared_data_dir: Some(data_dir),
            env: Vec::new(),
            revocation: Arc::default(),
            log: Some((log_file, log_filter.to_owned())),
            uid: None,
        };
        s.spawn();
        s
    }

    fn stderr(&self) -> Stdio {
        match &self.log {
            Some((file, _)) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .expect("server log file")
                .into(),
            None => Stdio::inherit(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.shared_data_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    /// A second instance sharing `first`'s data directory (CA) and DNS server, with `extra`
    /// flags (the same database and base URL for a real multi-instance set-up).
    pub fn start_sibling(first: &Server, extra: &[&str]) -> Server {
        let dns = KnotDns::start("test.").expect("knot DNS");
        let mut s = Server {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            http01_port: first.http01_port,
            tlsalpn01_port: first.tlsalpn01_port,
            dns,
            args: extra.iter().map(|s| s.to_string()).collect(),
            shared_data_dir: Some(first.data_dir()),
            env: first.env.clone(),
            revocation: Arc::default(),
            log: None,
            uid: None,
        };
        // Validations of either instance must see the same records: use the first's DNS.
        s.args
            .extend(["--dns-server".to_owned(), first.dns.addr.to_string()]);
        s.spawn();
        s
    }

    /// The base URL of the server's CRLs and OCSP (plain HTTP), from its start-up banner.
    pub fn revocation_url(&self) -> String {
        self.revocation
            .lock()
            .unwrap()
            .clone()
            .expect("the server printed its revocation URL")
    }

    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn directory_url(&self) -> String {
        format!("{}/directory", self.base())
    }

    pub fn root_pem(&self) -> PathBuf {
        self.data_dir().join("root.pem")
    }

    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.data_dir().join("sceau.db").display())
    }

    pub fn spawn(&mut self) {
        self.spawn_attempt(1)
    }

    fn spawn_attempt(&mut self, attempt: u32) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sceau-server"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(if self.args.iter().any(|a| a == "--dns-server") {
                vec![]
            } else {
                vec!["--dns-server".to_owned(), self.dns.addr.to_string()]
            })
            .arg("--http01-port")
            .arg(self.http01_port.to_string())
            .arg("--tlsalpn01-port")
            .arg(self.tlsalpn01_port.to_string())
            // The responders listen on loopback, which validation refuses by default; tests of
            // that refusal pass their own --validation-allow.
            .args(if self.args.iter().any(|a| a == "--validation-allow") {
                vec![]
            } else {
                vec!["--validation-allow", "127.0.0.0/8"]
            })
            // CRLs and OCSP on a port of the kernel's choosing (see `revocation_url`).
            .args(if self.args.iter().any(|a| a == "--revocation-listen") {
                vec![]
            } else {
                vec!["--revocation-listen", "127.0.0.1:0"]
            })
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "SCEAU_LOG",
                self.log.as_ref().map_or("warn", |(_, f)| f.as_str()),
            )
            .stdout(Stdio::piped())
            .stderr(self.stderr());
        if let Some(uid) = self.uid {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        }
        let mut child = cmd.spawn().expect("run sceau-server");
        // Ready means our server said so: a bare TCP connect could reach another test's
        // listener that took the same free port first.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        *self.revocation.lock().unwrap() = None;
        let revocation = self.revocation.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let mut ready = false;
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.trim_start().strip_prefix("revocation:") {
                    let url = url.split_whitespace().next().unwrap_or("").to_owned();
                    *revocation.lock().unwrap() = Some(url);
                }
                if !ready && line.contains("database:") {
                    ready = true;
                    let _ = tx.send(true);
                }
            }
            // Output closed: the server exited (before or after being ready).
            let _ = tx.send(false);
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(true) => {}
            Ok(false) if attempt < 3 => {
                // Most likely another test took our free port first: try fresh ports.
                let _ = child.wait();
                self.port = free_port();
                return self.spawn_attempt(attempt + 1);
            }
            other => {
                let status = child.try_wait().unwrap();
                let _ = child.kill();
                panic!("sceau-server did not become ready ({other:?}, exit status: {status:?})");
            }
        }
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sceau-server said ready but does not accept connections"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Gives `name.test` an A record pointing at loopback, where the responders listen.
    pub fn add_host(&self, name: &str) {
        self.dns.set_a(name, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    pub async fn store(&self) -> sceau_store::Store {
        sceau_store::Store::open(&self.db_url()).await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TLS client configuration that trusts only the certificates in `root_pem`.
pub fn tls_config(root_pem: &std::path::Path) -> rustls::ClientConfig {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub fn http_client(root_pem: &std::path::Path) -> reqwest::Client {
    http_client_from(root_pem, None)
}

/// [`http_client`] whose connections leave from `local` (any of 127.0.0.0/8 is this machine:
/// a second client address for per-address limits).
pub fn http_client_from(root_pem: &std::path::Path, local: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(root_pem))
        .timeout(Duration::from_secs(30))
        .local_address(local)
        .build()
        .unwrap()
}

/// An http-01 responder: serves key authorizations by token on 127.0.0.1:`port`.
#[derive(Clone, Default)]
pub struct Http01 {
    pub tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl Http01 {
    pub async fn start(port: u16) -> Http01 {
        Http01::start_at(Ipv4Addr::LOCALHOST.into(), port).await
    }

    /// A responder on `ip` (another loopback address plays another host).
    pub async fn start_at(ip: IpAddr, port: u16) -> Http01 {
        let me = Http01::default();
        let tokens = me.tokens.clone();
        let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 4096];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let path = req.split_whitespace().nth(1).unwrap_or("");
                    let token = path
                        .strip_prefix("/.well-known/acme-challenge/")
                        .unwrap_or("");
                    let body = tokens.lock().unwrap().get(token).cloned();
                    let resp = match body {
                        Some(b) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len()),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        me
    }

    pub fn set(&self, token: &str, key_authz: &str) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), key_authz.to_owned());
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn problem_type(&self) -> String {
        self.json()["type"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("urn:ietf:params:acme:error:")
            .to_owned()
    }
    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// A raw ACME client: every request is built by hand so tests can also break it on purpose.
pub struct Raw {
    pub http: reqwest::Client,
    pub dir: Directory,
    pub key: AccountKey,
    pub kid: Option<String>,
}

impl Raw {
    pub async fn new(server: &Server) -> Raw {
        Raw::at(&server.directory_url(), &server.root_pem()).await
    }

    /// A client of the server whose directory is `directory_url`, trusting `root_pem`.
    pub async fn at(directory_url: &str, root_pem: &std::path::Path) -> Raw {
        Raw::at_from(directory_url, root_pem, None).await
    }

    /// A client of `server` whose requests come from `local` (e.g. 127.0.0.2).
    pub async fn from_address(server: &Server, local: IpAddr) -> Raw {
        Raw::at_from(&server.directory_url(), &server.root_pem(), Some(local)).await
    }

    async fn at_from(
        directory_url: &str,
        root_pem: &std::path::Path,
        local: Option<IpAddr>,
    ) -> Raw {
        let http = http_client_from(root_pem, local);
        let dir: Directory = http
            .get(directory_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Raw {
            http,
            dir,
            key: AccountKey::generate(KeyKind::P256).unwrap(),
            kid: None,
        }
    }

    pub async fn nonce(&self) -> String {
        let r = self.http.head(&self.dir.new_nonce).send().await.unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    pub async fn send(&self, url: &str, jws: &Flattened) -> Resp {
        self.send_body(url, serde_json::to_vec(jws).unwrap()).await
    }

    pub async fn send_body(&self, url: &str, body: Vec<u8>) -> Resp {
        let r = self
            .http
            .post(url)
            .header("content-type", "application/jose+json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Resp {
            status,
            headers,
            body: r.bytes().await.unwrap().to_vec(),
        }
    }

    /// Signs with the account `kid` if registered, else with the `jwk`.
    pub async fn sign(&self, url: &str, payload: Option<&Value>) -> Flattened {
        let nonce = self.nonce().await;
        let body = payload.map(|p| serde_json::to_vec(p).unwrap());
        let signer = match &self.kid {
            Some(k) => Signer::Kid(k),
            None => Signer::Jwk,
        };
        sceau_wire::jws::sign(&self.key, signer, Some(&nonce), url, body.as_deref()).unwrap()
    }

    pub async fn post(&self, url: &str, payload: Option<&Value>) -> Resp {
        let jws = self.sign(url, payload).await;
        self.send(url, &jws).await
    }

    pub async fn register(&mut self) -> Resp {
        let url = self.dir.new_account.clone();
        let r = self
            .post(
                &url,
                Some(
                    &json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.test"]}),
                ),
            )
            .await;
        assert!(
            r.status == 201 || r.status == 200,
            "newAccount: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        self.kid = Some(r.location());
        r
    }

    pub async fn new_order(&self, names: &[&str]) -> Resp {
        let ids: Vec<Identifier> = names.iter().map(|n| Identifier::guess(n)).collect();
        let url = self.dir.new_order.clone();
        self.post(&url, Some(&json!({"identifiers": ids}))).await
    }

    pub fn key_authz(&self, token: &str) -> String {
        format!("{token}.{}", self.key.jwk().thumbprint())
    }

    /// The dns-01 TXT value for `token` (RFC 8555 §8.4), computed by a second implementation
    /// of SHA-256: openssl.
    pub fn dns01_txt(&self, token: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-binary"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.key_authz(token).as_bytes())
            .unwrap();
        b64::encode(child.wait_with_output().unwrap().stdout)
    }

    /// Answers every authorization of `order` with http-01 through `responder`, then polls
    /// the order until it leaves `pending`.
    pub async fn solve_http01(&self, order: &Value, responder: &Http01) -> Value {
        for authz_url in order["authorizations"].as_array().unwrap() {
            let authz = self.post(authz_url.as_str().unwrap(), None).await.json();
            if authz["status"] == "valid" {
                continue;
            }
            let ch = challenge(&authz, "http-01");
            responder.set(
                ch["token"].as_str().unwrap(),
                &self.key_authz(ch["token"].as_str().unwrap()),
            );
            let r = self
                .post(ch["url"].as_str().unwrap(), Some(&json!({})))
                .await;
            assert_eq!(
                r.status,
                200,
                "challenge: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
        self.poll(order_url(order, self).as_str(), &["pending"])
            .await
    }

    /// The URL of `order`'s first authorization, and that authorization's challenge of type
    /// `kind`.
    pub async fn first_challenge(&self, order: &Value, kind: &str) -> (String, Value) {
        let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
        let authz = self.post(&authz_url, None).await.json();
        (authz_url, challenge(&authz, kind))
    }

    /// Finalizes `order` with `csr_b64` (a base64url DER CSR, or anything a test sends instead).
    pub async fn finalize(&self, order: &Value, csr_b64: &str) -> Resp {
        self.post(
            order["finalize"].as_str().unwrap(),
            Some(&json!({"csr": csr_b64})),
        )
        .await
    }

    /// POST-as-GET `url` until its status is not one of `waiting`.
    pub async fn poll(&self, url: &str, waiting: &[&str]) -> Value {
        for _ in 0..200 {
            let v = self.post(url, None).await.json();
            if !waiting.iter().any(|w| v["status"] == *w) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{url} stayed in {waiting:?}");
    }
}

/// A JWS over exactly these header and payload bytes, which need not be valid UTF-8.
pub fn signed_bytes(key: &AccountKey, header: &[u8], payload: &[u8]) -> Flattened {
    let protected = b64::encode(header);
    let payload = b64::encode(payload);
    let signature = b64::encode(
        key.sign(format!("{protected}.{payload}").as_bytes())
            .unwrap(),
    );
    Flattened {
        protected,
        payload,
        signature,
    }
}

/// The challenge of type `kind` in an authorization's JSON.
pub fn challenge(authz: &Value, kind: &str) -> Value {
    authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} challenge in {authz}"))
        .clone()
}

/// The order URL is the Location of newOrder; tests keep it alongside the body as `_url`.
fn order_url(order: &Value, _c: &Raw) -> String {
    order["_url"]
        .as_str()
        .expect("order JSON with _url")
        .to_owned()
}

/// newOrder, keeping the order URL in `_url`.
pub async fn order(c: &Raw, names: &[&str]) -> Value {
    let r = c.new_order(names).await;
    assert_eq!(
        r.status,
        201,
        "newOrder: {}",
        String::from_utf8_lossy(&r.body)
    );
    let mut v = r.json();
    v["_url"] = json!(r.location());
    v
}

/// A DER CSR for `names` with a fresh P-256 key; returns (csr_b64url, key).
pub fn csr(names: &[&str]) -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    csr_with_key(names, &key)
}

pub fn csr_with_key(names: &[&str], key: &rcgen::KeyPair) -> (String, rcgen::KeyPair) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    // rcgen's default subject CN is not a host name; real clients send none or the first name.
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(key).unwrap();
    (
        b64::encode(csr.der()),
        rcgen::KeyPair::from_pem(&key.serialize_pem()).unwrap(),
    )
}

/// newOrder for `names`, made `ready` by answering its authorizations with http-01 through
/// `responder`; returns the order as newOrder gave it, with `_url`.
pub async fn ready_order(c: &Raw, responder: &Http01, names: &[&str]) -> Value {
    let o = order(c, names).await;
    let ready = c.solve_http01(&o, responder).await;
    assert_eq!(ready["status"], "ready", "order after validation: {ready}");
    o
}

/// Full issuance for `names` over http-01; returns (order JSON after finalize, PEM chain).
pub async fn issue(c: &Raw, responder: &Http01, names: &[&str]) -> (Value, String) {
    let o = ready_order(c, responder, names).await;
    let url = o["_url"].as_str().unwrap().to_owned();
    let (csr, _) = csr(names);
    let r = c.finalize(&o, &csr).await;
    assert_eq!(
        r.status,
        200,
        "finalize: {}",
        String::from_utf8_lossy(&r.body)
    );
    let mut done = c.poll(&url, &["processing"]).await;
    assert_eq!(done["status"], "valid");
    done["_url"] = json!(url);
    let cert = c.post(done["certificate"].as_str().unwrap(), None).await;
    assert_eq!(cert.status, 200);
    (done, String::from_utf8(cert.body).unwrap())
}

/// `openssl verify` of a leaf+chain PEM against the server's root.
pub fn openssl_verify(server: &Server, chain_pem: &str) {
    let dir = tempfile::tempdir().unwrap();
    let blocks: Vec<&str> = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert!(blocks.len() >= 2, "chain has leaf and intermediate");
    std::fs::write(dir.path().join("leaf.pem"), blocks[0]).unwrap();
    std::fs::write(dir.path().join("chain.pem"), blocks[1..].concat()).unwrap();
    let out = Command::new(sceau_testkit::require_tool("openssl"))
        .args(["verify", "-CAfile"])
        .arg(server.root_pem())
        .arg("-untrusted")
        .arg(dir.path().join("chain.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tables a request can add rows to, audit aside.
pub const TABLES: [Table; 5] = [
    Table::Accounts,
    Table::Orders,
    Table::Authzs,
    Table::Challenges,
    Table::Certificates,
];

/// Rows in each of `tables`, in their order.
pub async fn rows(store: &sceau_store::Store, tables: &[Table]) -> Vec<i64> {
    let mut out = Vec::new();
    for t in tables {
        out.push(store.count(*t).await.unwrap());
    }
    out
}

/// Rows in each of [`TABLES`]: what a refused request must leave as it was.
pub async fn counts(s: &Server) -> Vec<i64> {
    rows(&s.store().await, &TABLES).await
}

pub fn socket(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Serial numbers and certificates agree (see `sceau-store`'s queue invariants).
pub async fn assert_serials_accounted_for(s: &Server) {
    assert_serials_in(&s.store().await).await
}

/// [`assert_serials_accounted_for`] on any store (a PostgreSQL database of several instances).
pub async fn assert_serials_in(store: &sceau_store::Store) {
    assert_none(
        store,
        &[
            (
                "a certificate whose serial is not recorded as issued",
                "SELECT COUNT(*) FROM certificates c WHERE NOT EXISTS (SELECT 1 FROM serials s WHERE s.serial = c.serial AND s.state = 'issued' AND s.order_id = c.order_id)",
            ),
            (
                "a serial recorded as issued without its certificate",
                "SELECT COUNT(*) FROM serials s WHERE s.state = 'issued' AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = s.serial)",
            ),
            (
                "a serial still reserved for an order that is not processing",
                "SELECT COUNT(*) FROM serials s JOIN orders o ON o.id = s.order_id WHERE s.state = 'reserved' AND o.status <> 'processing'",
            ),
            (
                "a valid order without exactly one issued serial (a STAR series: one per certificate)",
                "SELECT COUNT(*) FROM orders o WHERE o.status = 'valid' AND (SELECT COUNT(*) FROM serials s WHERE s.order_id = o.id AND s.state = 'issued')
                 <> CASE WHEN o.star_end IS NULL THEN 1 ELSE (SELECT COUNT(*) FROM certificates c WHERE c.order_id = o.id) END",
            ),
        ],
    )
    .await;
}

/// Each `(what, sql)`: the `SELECT COUNT(*)` in `sql` counts nothing, else the test fails
/// saying `what`.
pub async fn assert_none(store: &sceau_store::Store, checks: &[(&str, &'static str)]) {
    for (what, sql) in checks {
        assert_eq!(store.scalar(sql).await.unwrap(), 0, "{what}");
    }
}

/// `sceau-server admin db-roles` by the schema's owner (`owner_url`), with a scratch data
/// directory under `scratch`: the least-privilege roles `sceau_front` and `sceau_signer`.
/// Returns what it printed.
pub fn make_db_roles(owner_url: &str, scratch: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args(["admin", "--data-dir"])
        .arg(scratch.join("admin"))
        .args(["--actor", "dba", "db-roles"])
        .env("SCEAU_DATABASE_URL", owner_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A CA for a mutual-TLS link (signer, validators), and certificates it issues.
pub struct LinkCa {
    dir: PathBuf,
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
}

impl LinkCa {
    pub fn new(dir: &Path, name: &str) -> LinkCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} link CA"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        LinkCa {
            dir: dir.to_owned(),
            key,
            params,
        }
    }

    /// `file.pem` and `file.key` (0600) for `dns` names with `usage`; returns their paths.
    pub fn issue(
        &self,
        file: &str,
        dns: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let issuer = rcgen::Issuer::new(self.params.clone(), &self.key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (pem, keyf) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&pem, cert.pem()).unwrap();
        std::fs::write(&keyf, key.serialize_pem()).unwrap();
        std::fs::set_permissions(
            &keyf,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        (pem.display().to_string(), keyf.display().to_string())
    }
}
