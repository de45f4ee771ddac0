//! Shared helpers for the sceau-ca tests: real openssl, CSRs made with rcgen.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real openssl; a missing openssl fails the test (never skips it).
pub fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed for these tests");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            input.write_all(data).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `openssl x509 -text -noout` of a DER certificate.
pub fn x509_text(der: &[u8]) -> String {
    let out = openssl(&["x509", "-inform", "DER", "-text", "-noout"], Some(der));
    assert!(out.ok, "openssl x509 failed: {}", out.stderr);
    out.stdout
}

/// `openssl verify` of a leaf against `dir/root.pem` with `dir/intermediate.pem` as untrusted.
pub fn openssl_verify(dir: &Path, leaf_pem: &str, extra: &[&str]) -> Out {
    let leaf = dir.join(format!(
        "leaf-{}.pem",
        std::process::id() as u64 ^ rand_u64()
    ));
    std::fs::write(&leaf, leaf_pem).unwrap();
    let root = dir.join("root.pem");
    let int = dir.join("intermediate.pem");
    let mut args = vec![
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        int.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(leaf.to_str().unwrap());
    let out = openssl(&args, None);
    std::fs::remove_file(&leaf).unwrap();
    out
}

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_be_bytes(b)
}

/// A CSR with the given SANs (IP if it parses as one) and an optional subject CN.
pub fn csr(key: &KeyPair, sans: &[&str], cn: Option<&str>) -> Vec<u8> {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.serialize_request(key).unwrap().der().to_vec()
}

pub fn csr_with_san_types(key: &KeyPair, sans: Vec<SanType>) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.serialize_request(key).unwrap().der().to_vec()
}

/// A DER CSR made by openssl itself, with a fresh key of `newkey` (e.g. "rsa:1024").
pub fn openssl_csr(dir: &Path, newkey_args: &[&str], extra: &[&str]) -> Vec<u8> {
    let key = dir.join(format!("k-{}.pem", rand_u64()));
    let mut args = vec![
        "req",
        "-new",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-outform",
        "DER",
    ];
    args.extend_from_slice(newkey_args);
    args.extend_from_slice(extra);
    let child = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed for these tests");
    assert!(
        child.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&child.stderr)
    );
    child.stdout
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
