//! Test peers of the CMP client: the real `openssl cmp` mock server (OpenSSL 3.0's `-port`
//! mode), an `openssl ca` PKI for the certificates it hands out, and a raw HTTP peer for the
//! failure cases no real CMP server produces on demand (garbage, wrong media type, silence).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use sceau_testkit::openssl_ca::ISSUING_CA_EXT;
use sceau_testkit::{OpenSslCa, Validity};

pub const SECRET: &str = "correct horse battery staple";
pub const REFERENCE: &str = "sceau-ra";

pub use sceau_testkit::openssl_ca::run_openssl as openssl;

pub fn pem_to_der(path: &Path, label: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("read PEM");
    sceau_wire::key::pem_decode_all(&text, label)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {label} in {}", path.display()))
}

/// A key pair and a certificate for it, as files and DER.
pub struct Party {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub csr: PathBuf,
    pub key_der: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub csr_der: Vec<u8>,
}

/// A two-level PKI (root → issuing CA) made by `openssl ca`, plus the parties of a test.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub root: OpenSslCa,
    pub issuing: OpenSslCa,
    count: u32,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut root = OpenSslCa::root(&dir.path().join("root"), "CMP Test Root").expect("root");
        let issuing = root
            .subordinate(
                &dir.path().join("issuing"),
                "CMP Test Issuing CA",
                ISSUING_CA_EXT,
            )
            .expect("issuing CA");
        Pki {
            dir,
            root,
            issuing,
            count: 0,
        }
    }

    /// A new key (`algorithm` as openssl genpkey names it: "EC" or "RSA"), its CSR for
    /// `CN=<cn>`, and a certificate for it signed by the issuing CA.
    pub fn party(&mut self, cn: &str, algorithm: &str) -> Party {
        self.count += 1;
        let d = self.dir.path();
        let key = d.join(format!("party{}.key", self.count));
        let csr = d.join(format!("party{}.csr", self.count));
        let cert = d.join(format!("party{}.pem", self.count));
        let k = key.to_str().unwrap();
        match algorithm {
            "EC" => openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    k,
                ],
            ),
            _ => openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    k,
                ],
            ),
        };
        let subj = format!("/CN={cn}");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                k,
                "-subj",
                &subj,
                "-out",
                csr.to_str().unwrap(),
            ],
        );
        self.issuing
            .sign(
                &csr,
                &cert,
                "basicConstraints = CA:FALSE\nsubjectKeyIdentifier = hash\nkeyUsage = digitalSignature\n",
                Validity::Days(30),
            )
            .expect("sign the party's certificate");
        Party {
            key_der: pem_to_der(&key, "PRIVATE KEY"),
            cert_der: pem_to_der(&cert, "CERTIFICATE"),
            csr_der: pem_to_der(&csr, "CERTIFICATE REQUEST"),
            key,
            cert,
            csr,
        }
    }

    /// The issuing CA and the root, one PEM file (the mock's extraCerts).
    pub fn chain_file(&self) -> PathBuf {
        let p = self.dir.path().join("chain.pem");
        std::fs::write(&p, self.issuing.chain_pem()).expect("write chain");
        p
    }

    pub fn issuing_der(&self) -> Vec<u8> {
        pem_to_der(&self.issuing.cert, "CERTIFICATE")
    }

    pub fn root_der(&self) -> Vec<u8> {
        pem_to_der(&self.root.cert, "CERTIFICATE")
    }
}

pub use sceau_testkit::cmp_mock::MockCmp;

/// The mock's arguments for MAC-protected responses and a fixed certificate.
pub fn mac_args<'a>(rsp_cert: &'a str, extracerts: &'a str, capubs: &'a str) -> Vec<String> {
    [
        "-srv_ref",
        "upstream",
        "-srv_secret",
        &format!("pass:{SECRET}"),
        "-rsp_cert",
        rsp_cert,
        "-rsp_extracerts",
        extracerts,
        "-rsp_capubs",
        capubs,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A raw HTTP/1.1 peer answering every request with `response` (all of it, headers included),
/// or never answering when `response` is `None`.
pub struct RawPeer {
    pub port: u16,
}

impl RawPeer {
    pub fn start(response: Option<Vec<u8>>) -> RawPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(resp) = &response else {
                    held.push(conn);
                    continue;
                };
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the headers and the body they announce.
                loop {
                    let n = conn.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = find(&got, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = conn.write_all(resp);
                let _ = conn.flush();
            }
        });
        RawPeer { port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP response with `content_type` and `body`.
pub fn http_response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}
