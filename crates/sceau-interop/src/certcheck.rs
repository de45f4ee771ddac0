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
