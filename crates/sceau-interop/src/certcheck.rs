//! Checking issued certificates with openssl, independently of any client's own checks.
//!
//! Invariants:
//! - A certificate passes only if `openssl verify` builds a path from the leaf through the
//!   chain the client saved to the server's root, for TLS server use and the expected host
//!   name: the same question a TLS client in the organisation would ask.
//! - Files are read as the client wrote them; bundles are split here (leaf = first block).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sceau_testkit::require_tool;

use crate::process::run;

/// What a test needs to know about a certificate that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Upper-case hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// The DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
}

/// The PEM blocks (`-----BEGIN ...` through `-----END ...-----`) of `text`, in order.
pub fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.extend(current.take());
            }
        }
    }
    blocks
}

/// Verifies the certificate a client saved and returns its serial and names.
///
/// `leaf_file` may be a bundle (leaf first); the chain is taken from `chain_file` when given,
/// otherwise from the blocks after the leaf. The chain must not be empty (the server issues
/// from an intermediate and RFC 8555 §7.4.2 has it send the chain). `scratch` receives the
/// split files. Panics with openssl's output on any failure.
#[track_caller]
pub fn verify_issued(
    root: &Path,
    leaf_file: &Path,
    chain_file: Option<&Path>,
    host: &str,
    scratch: &Path,
) -> CertInfo {
    let leaf_text = read(leaf_file);
    let blocks = pem_blocks(&leaf_text);
    let leaf = blocks
        .first()
        .unwrap_or_else(|| panic!("{} holds no PEM block", leaf_file.display()));
    let chain: Vec<String> = match chain_file {
        Some(f) => pem_blocks(&read(f)),
        None => blocks[1..].to_vec(),
    };
    assert!(
        !chain.is_empty(),
        "no intermediate certificate saved with {} (chain file {:?})",
        leaf_file.display(),
        chain_file
    );
    fs::create_dir_all(scratch).expect("create scratch dir");
    let leaf_path = scratch.join("leaf.pem");
    let chain_path = scratch.join("chain.pem");
    fs::write(&leaf_path, leaf).expect("write leaf");
    fs::write(&chain_path, chain.concat()).expect("write chain");
    verify(root, &leaf_path, Some(&chain_path), Some(host)).expect("openssl verify");
    cert_info(&leaf_path)
}

/// `openssl verify -CAfile root [-untrusted chain] -purpose sslserver [-verify_hostname host]`;
/// `Err` carries openssl's output.
pub fn verify(
    root: &Path,
    leaf: &Path,
    chain: Option<&Path>,
    host: Option<&str>,
) -> Result<(), String> {
    let mut cmd = Command::new(require_tool("openssl"));
    cmd.arg("verify").arg("-CAfile").arg(root);
    if let Some(chain) = chain {
        cmd.arg("-untrusted").arg(chain);
    }
    cmd.args(["-purpose", "sslserver"]);
    if let Some(host) = host {
        cmd.args(["-verify_hostname", host]);
    }
    cmd.arg(leaf);
    let r = run("openssl verify", &mut cmd, Duration::from_secs(30));
    let expected = format!("{}: OK", leaf.display());
    if r.success() && r.stdout.trim_end().ends_with(&expected) {
        Ok(())
    } else {
        Err(r.to_string())
    }
}

/// Serial and subjectAltName DNS names of the first certificate in `pem_file`.
#[track_caller]
pub fn cert_info(pem_file: &Path) -> CertInfo {
    let r = run(
        "openssl x509",
        Command::new(require_tool("openssl"))
            .args(["x509", "-noout", "-serial", "-ext", "subjectAltName", "-in"])
            .arg(pem_file),
        Duration::from_secs(30),
    )
    .expect_success();
    let serial = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .unwrap_or_else(|| panic!("no serial in\n{r}"))
        .trim()
        .to_owned();
    let dns_names = r
        .stdout
        .lines()
        .flat_map(|l| l.split(','))
        .filter_map(|item| item.trim().strip_prefix("DNS:"))
        .map(str::to_owned)
        .collect();
    CertInfo { serial, dns_names }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The only file in `dir` whose name matches `pred` (panics if none or several).
#[track_caller]
pub fn single_file(dir: &Path, pred: impl Fn(&str) -> bool) -> PathBuf {
    let found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| pred(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    match found.as_slice() {
        [one] => one.clone(),
        _ => panic!(
            "expected one matching file in {}, found {found:?}",
            dir.display()
        ),
    }
}

/// How long a relying party may have to wait after a revocation before both the CRL and the
/// OCSP responder say so (issue 12's bound).
pub const REVOCATION_BOUND: Duration = Duration::from_secs(60);

/// What `openssl x509 -noout <flags>` prints about `cert`.
fn x509_text(cert: &Path, flags: &[&str]) -> String {
    run(
        "openssl x509",
        Command::new(require_tool("openssl"))
            .args(["x509", "-noout", "-in"])
            .arg(cert)
            .args(flags),
        Duration::from_secs(30),
    )
    .expect_success()
    .stdout
}

/// A relying party sees `cert` (issued by the first certificate of `chain`, under `root`)
/// revoked for `reason` (OpenSSL's wording on a CRL, e.g. "Key Compromise"; on OCSP,
/// "keyCompromise") through both the CRL its distribution point names and the OCSP responder
/// its AIA names, within [`REVOCATION_BOUND`]. Panics with what OpenSSL last said otherwise.
#[track_caller]
pub fn assert_relying_parties_see_revoked(
    cert: &Path,
    chain: &Path,
    root: &Path,
    crl_reason: &str,
    ocsp_reason: &str,
    scratch: &Path,
) {
    let serial = cert_serial(cert);
    let cdp = x509_text(cert, &["-ext", "crlDistributionPoints"]);
    let cdp = cdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("{} has no CRL distribution point", cert.display()))
        .to_owned();
    let ocsp = x509_text(cert, &["-ocsp_uri"]).trim().to_owned();
    assert!(
        ocsp.starts_with("http"),
        "{} has no OCSP URL",
        cert.display()
    );
    let issuer = scratch.join("issuer.pem");
    let chain_text = fs::read_to_string(chain).unwrap();
    fs::write(&issuer, &pem_blocks(&chain_text)[0]).unwrap();
    let crl = scratch.join("shard.crl");
    let deadline = std::time::Instant::now() + REVOCATION_BOUND;
    let (mut crl_said, mut ocsp_said) = (String::new(), String::new());
    let (mut crl_ok, mut ocsp_ok) = (false, false);
    while !(crl_ok && ocsp_ok) {
        if !crl_ok {
            let got = run(
                "curl CRL",
                Command::new(require_tool("curl"))
                    .args(["-sS", "--fail", "-o"])
                    .arg(&crl)
                    .arg(&cdp),
                Duration::from_secs(30),
            );
            if got.success() {
                let text = run(
                    "openssl crl",
                    Command::new(require_tool("openssl"))
                        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
                        .arg(&crl),
                    Duration::from_secs(30),
                )
                .expect_success()
                .stdout;
                if let Some(entry) = text
                    .split("Serial Number: ")
                    .find(|e| e.starts_with(&serial))
                {
                    assert!(
                        entry.contains(crl_reason),
                        "{serial} is on the CRL without reason {crl_reason}:\n{entry}"
                    );
                    crl_ok = true;
                }
                crl_said = text;
            }
        }
        if !ocsp_ok {
            let out = run(
                "openssl ocsp",
                Command::new(require_tool("openssl"))
                    .args(["ocsp", "-no_nonce", "-resp_text", "-issuer"])
                    .arg(&issuer)
                    .arg("-cert")
                    .arg(cert)
                    .args(["-url", &ocsp, "-CAfile"])
                    .arg(root),
                Duration::from_secs(30),
            );
            ocsp_said = format!("{}{}", out.stdout, out.stderr);
            if ocsp_said.contains(": revoked") {
                assert!(
                    ocsp_said.contains("Response verify OK"),
                    "OCSP response not verified: {ocsp_said}"
                );
                assert!(
                    ocsp_said.contains(&format!("Reason: {ocsp_reason}")),
                    "OCSP says revoked without reason {ocsp_reason}: {ocsp_said}"
                );
                ocsp_ok = true;
            }
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "{serial} not seen revoked within {REVOCATION_BOUND:?} (CRL: {crl_ok}, OCSP: {ocsp_ok})\nCRL:\n{crl_said}\nOCSP:\n{ocsp_said}"
            );
        }
        if !(crl_ok && ocsp_ok) {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The serial of a PEM certificate file, upper-case hex as OpenSSL prints it on CRLs.
fn cert_serial(cert: &Path) -> String {
    let s = x509_text(cert, &["-serial"]);
    let hex = s.trim().trim_start_matches("serial=");
    // A CRL prints the serial without the leading zero octet DER may add.
    hex.strip_prefix("00").unwrap_or(hex).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsca::TlsCa;

    #[test]
    fn splits_bundles_into_blocks() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\r\n\
                    -----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].contains("AAAA") && !blocks[0].contains("junk"));
        assert!(blocks[1].contains("BBBB"));
        assert!(pem_blocks("no pem here").is_empty());
    }

    #[test]
    fn verify_accepts_the_right_root_and_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsCa::generate(&dir.path().join("a")).unwrap();
        let b = TlsCa::generate(&dir.path().join("b")).unwrap();
        verify(&a.ca_cert, &a.leaf_cert, None, Some("localhost")).unwrap();
        let wrong_root = verify(&b.ca_cert, &a.leaf_cert, None, Some("localhost")).unwrap_err();
        assert!(
            wrong_root.contains("unable to get local issuer"),
            "{wrong_root}"
        );
        let wrong_name = verify(&a.ca_cert, &a.leaf_cert, None, Some("other.test")).unwrap_err();
        assert!(wrong_name.contains("mismatch"), "{wrong_name}");
        let info = cert_info(&a.leaf_cert);
        assert_eq!(info.dns_names, ["localhost"]);
        assert!(!info.serial.is_empty());
    }

    #[test]
    #[should_panic(expected = "no intermediate")]
    fn verify_issued_requires_a_chain() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsCa::generate(dir.path()).unwrap();
        verify_issued(
            &a.ca_cert,
            &a.leaf_cert,
            None,
            "localhost",
            &dir.path().join("s"),
        );
    }
}
