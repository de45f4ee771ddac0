//! A real OpenSSL CA (`openssl req -x509` for its root, `openssl ca` with its own config file,
//! `index.txt` and `serial` for everything it signs): the "existing PKI" that signs the CSR of
//! a delegated Sceau CA, in tests.
//!
//! Invariants:
//! - Every CA lives in its own directory with its own database; nothing is shared between two
//!   instances, so tests may run in parallel.
//! - What is signed is what the caller's extension section says, nothing else
//!   (`copy_extensions = none`): a test that wants a bad certificate writes the bad section.
//! - A subordinate CA ([`OpenSslCa::subordinate`]) is signed by its parent with `openssl ca`
//!   too, and [`OpenSslCa::chain_pem`] lists it and its parents up to the root, nearest first.
//! - [`verify_chain`], [`sha256_fingerprint`] and [`subject_key_id`] ask openssl, a second implementation, what a
//!   client would conclude about what Sceau issued.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::require_tool;

/// The extensions of an issuing CA for leaves, as a delegated Sceau CA needs them: CA:TRUE
/// pathlen:0 and keyCertSign + cRLSign, both critical.
pub const ISSUING_CA_EXT: &str = "basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

/// The extensions of a policy CA between a root and issuing CAs (pathlen:1).
pub const POLICY_CA_EXT: &str = "basicConstraints = critical, CA:TRUE, pathlen:1
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

const ROOT_EXT: &str = "basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

/// The validity of a certificate [`OpenSslCa::sign`] makes.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From now, for this many days.
    Days(u32),
    /// Between two instants, e.g. wholly in the past (`openssl ca -startdate -enddate`).
    Between(SystemTime, SystemTime),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenSslCaError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("`openssl {args}` failed: {output}")]
    Failed { args: String, output: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OpenSslCaError + '_ {
    move |e| OpenSslCaError::Io(path.to_path_buf(), e)
}

/// One CA of the existing PKI: its directory, certificate, key and `openssl ca` database.
#[derive(Debug, Clone)]
pub struct OpenSslCa {
    dir: PathBuf,
    /// This CA's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, unencrypted: a test PKI).
    pub key: PathBuf,
    /// The certificates above this one, nearest first, up to and including the root; empty for
    /// a root.
    parents: Vec<PathBuf>,
    serial: u64,
}

impl OpenSslCa {
    /// A self-signed root (P-256, ten years) named `CN=<cn>,O=Example PKI` in `dir` (created).
    pub fn root(dir: &Path, cn: &str) -> Result<OpenSslCa, OpenSslCaError> {
        let ca = Self::layout(dir, Vec::new())?;
        ca.openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca.path_str(&ca.key),
            "-out",
            &ca.path_str(&ca.cert),
            "-days",
            "3650",
            "-subj",
            &format!("/O=Example PKI/CN={cn}"),
            "-config",
            &ca.path_str(&ca.dir.join("openssl.cnf")),
            "-extensions",
            "root_ext",
        ])?;
        Ok(ca)
    }

    /// A CA below this one (a policy CA, with `extensions`, e.g. [`POLICY_CA_EXT`]): its key
    /// and CSR made with `openssl req`, signed here with `openssl ca`.
    pub fn subordinate(
        &mut self,
        dir: &Path,
        cn: &str,
        extensions: &str,
    ) -> Result<OpenSslCa, OpenSslCaError> {
        self.subordinate_with(dir, cn, extensions, Validity::Days(3000))
    }

    /// [`OpenSslCa::subordinate`] with the given validity (e.g. an expired policy CA).
    pub fn subordinate_with(
        &mut self,
        dir: &Path,
        cn: &str,
        extensions: &str,
        validity: Validity,
    ) -> Result<OpenSslCa, OpenSslCaError> {
        let mut parents = vec![self.cert.clone()];
        parents.extend(self.parents.iter().cloned());
        let sub = Self::layout(dir, parents)?;
        let csr = sub.dir.join("request.csr");
        sub.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &sub.path_str(&sub.key),
            "-out",
            &sub.path_str(&csr),
            "-subj",
            &format!("/O=Example PKI/CN={cn}"),
            "-config",
            &sub.path_str(&sub.dir.join("openssl.cnf")),
        ])?;
        self.sign(&csr, &sub.cert, extensions, validity)?;
        Ok(sub)
    }

    fn layout(dir: &Path, parents: Vec<PathBuf>) -> Result<OpenSslCa, OpenSslCaError> {
        fs::create_dir_all(dir.join("newcerts")).map_err(io(dir))?;
        let dir = dir.canonicalize().map_err(io(dir))?;
        fs::write(dir.join("index.txt"), "").map_err(io(&dir))?;
        fs::write(dir.join("serial"), "1000\n").map_err(io(&dir))?;
        let config = format!(
            "[ ca ]
default_ca = pki

[ pki ]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = policy_any
copy_extensions = none
unique_subject = no
preserve = yes

[ policy_any ]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ root_ext ]
{ROOT_EXT}",
            dir = dir.display()
        );
        fs::write(dir.join("openssl.cnf"), config).map_err(io(&dir))?;
        Ok(OpenSslCa {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
            dir,
            parents,
            serial: 0,
        })
    }

    fn path_str(&self, p: &Path) -> String {
        p.to_str().expect("test paths are UTF-8").to_owned()
    }

    fn openssl(&self, args: &[&str]) -> Result<String, OpenSslCaError> {
        let out = Command::new(require_tool("openssl"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(io(&self.dir))?;
        if !out.status.success() {
            return Err(OpenSslCaError::Failed {
                args: args.join(" "),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `openssl ca -batch` of the PEM CSR `csr` into `out` (PEM), with exactly the extensions
    /// of `extensions` (lines of an OpenSSL extension section) and `validity`.
    pub fn sign(
        &mut self,
        csr: &Path,
        out: &Path,
        extensions: &str,
        validity: Validity,
    ) -> Result<(), OpenSslCaError> {
        self.serial += 1;
        let ext_file = self.dir.join(format!("ext-{}.cnf", self.serial));
        fs::write(&ext_file, format!("[ ext ]\n{extensions}")).map_err(io(&ext_file))?;
        let mut args: Vec<String> = [
            "ca",
            "-batch",
            "-notext",
            "-preserveDN",
            "-config",
            &self.path_str(&self.dir.join("openssl.cnf")),
            "-extfile",
            &self.path_str(&ext_file),
            "-extensions",
            "ext",
            "-in",
            &self.path_str(csr),
            "-out",
            &self.path_str(out),
        ]
        .map(str::to_owned)
        .to_vec();
        match validity {
            Validity::Days(d) => args.extend(["-days".to_owned(), d.to_string()]),
            Validity::Between(from, to) => args.extend([
                "-startdate".to_owned(),
                generalized_time(from),
                "-enddate".to_owned(),
                generalized_time(to),
            ]),
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.openssl(&refs).map(|_| ())
    }

    /// This CA's certificate and those above it up to the root, nearest first (PEM): the chain
    /// file of a certificate it signs.
    pub fn chain_pem(&self) -> String {
        std::iter::once(&self.cert)
            .chain(&self.parents)
            .map(|p| fs::read_to_string(p).expect("CA certificate written at creation"))
            .collect()
    }

    /// The root at the top of this CA's chain (this CA itself for a root).
    pub fn root_cert(&self) -> PathBuf {
        self.parents.last().unwrap_or(&self.cert).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `openssl ARGS…` run in `dir`; its stdout. Panics with openssl's own words when it fails
/// (a test's set-up step).
pub fn run_openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(require_tool("openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl verify -CAfile <root> -untrusted <the chain> <extra…> <the leaf>` of a PEM leaf
/// followed by its chain (as an ACME server hands it out): whether a client that trusts `root`
/// accepts it. `Err` holds what openssl printed.
pub fn verify_chain(root: &Path, chain_pem: &str, extra: &[&str]) -> Result<(), String> {
    let blocks: Vec<&str> = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .map(str::trim_start)
        .collect();
    assert!(blocks.len() >= 2, "a leaf and its chain: {chain_pem}");
    let dir = tempfile::tempdir().expect("temp dir");
    let (leaf, rest) = (dir.path().join("leaf.pem"), dir.path().join("chain.pem"));
    fs::write(&leaf, blocks[0]).expect("write leaf");
    fs::write(&rest, blocks[1..].concat()).expect("write chain");
    let out = Command::new(require_tool("openssl"))
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(&rest)
        .args(extra)
        .arg(&leaf)
        .output()
        .expect("run openssl");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// [`verify_chain`] for a TLS server certificate (`-purpose sslserver`).
pub fn verify_server_chain(root: &Path, chain_pem: &str) -> Result<(), String> {
    verify_chain(root, chain_pem, &["-purpose", "sslserver"])
}

fn x509(pem: &Path, args: &[&str]) -> String {
    let out = Command::new(require_tool("openssl"))
        .args(["x509", "-noout", "-in"])
        .arg(pem)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl x509 {args:?} of {}: {}",
        pem.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subjectKeyIdentifier of a PEM certificate file as openssl reads it, in lowercase hex
/// without separators (the form Sceau's records use).
pub fn subject_key_id(pem: &Path) -> String {
    x509(pem, &["-ext", "subjectKeyIdentifier"])
        .lines()
        .nth(1)
        .expect("openssl's subjectKeyIdentifier lines")
        .trim()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// The SHA-256 fingerprint of a PEM certificate file as openssl prints it (`AB:CD:…`).
pub fn sha256_fingerprint(pem: &Path) -> String {
    x509(pem, &["-fingerprint", "-sha256"])
        .trim()
        .strip_prefix("sha256 Fingerprint=")
        .expect("openssl's fingerprint line")
        .to_owned()
}

/// An instant as `openssl ca -startdate` takes it: `YYYYMMDDHHMMSSZ`, UTC.
fn generalized_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut s = String::new();
    write!(
        s,
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
    .expect("write to String");
    s
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_as_openssl_takes_them() {
        assert_eq!(generalized_time(UNIX_EPOCH), "19700101000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696); // 2000-02-29T12:34:56Z
        assert_eq!(generalized_time(t), "20000229123456Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // 2099-12-31T23:59:59Z
        assert_eq!(generalized_time(t), "20991231235959Z");
    }
}
