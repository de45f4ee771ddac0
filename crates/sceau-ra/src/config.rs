//! The `[ra]` table of the server's TOML file: which upstream CA signs, how to reach it, what
//! its certificates must chain to.
//!
//! Invariants:
//! - The file names credentials, never holds them: a secret or a private key is read from its
//!   own file, refused unless only its owner may read it (0600), and only by the process that
//!   talks to the upstream (the signing service), never the front end.
//! - Exactly one upstream is configured; anything unknown is refused (a typo must not silently
//!   fall back to another mode).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Registration-authority mode (`[ra]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RaConfig {
    /// PEM file of the upstream's root certificates: every returned certificate must chain to
    /// one of them.
    pub upstream_roots: PathBuf,
    /// The front end's own HTTPS certificate chain (PEM): no local CA makes one in RA mode.
    pub tls_cert: PathBuf,
    /// Its private key (PEM, 0600).
    pub tls_key: PathBuf,
    /// How long one attempt waits for the upstream (a CMP enrollment with its polls, a
    /// command) before the issuance queue tries again [default: 60].
    #[serde(default = "default_attempt_secs")]
    pub attempt_timeout_secs: u64,
    /// Accept clientAuth beside serverAuth in a certificate for a `tls-server` order: for an
    /// upstream whose template always adds it (Pebble, many enterprise templates)
    /// [default: false, such a certificate is refused as outside the profile].
    #[serde(default)]
    pub accept_client_auth: bool,
    pub cmp: Option<CmpUpstream>,
    pub command: Option<CommandUpstream>,
    pub acme: Option<crate::acme::AcmeUpstream>,
}

fn default_attempt_secs() -> u64 {
    60
}

fn yes() -> bool {
    true
}

/// A CMP server (RFC 4210 / RFC 9810 over HTTP, RFC 6712): EJBCA's CMP alias, a commercial
/// PKI, `openssl cmp` in server mode.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CmpUpstream {
    /// `http(s)://host[:port]/path`, e.g. EJBCA's `https://ejbca/ejbca/publicweb/cmp/<alias>`.
    pub url: String,
    /// Password-based MAC protection: the reference (senderKID) the CA knows the secret by...
    pub mac_reference: Option<String>,
    /// ...and the file holding the shared secret (0600).
    pub mac_secret_file: Option<PathBuf>,
    /// PBM iterationCount of our requests (RFC 4210 §5.1.3.1) [default: 10000]: each round
    /// is a SHA-256 the CA repeats to check the MAC, and each slows a guess at the secret.
    /// From 1000 (RFC 9481 §6.1.1 asks for at least 100) to 100000 (OpenSSL's cap).
    pub mac_iterations: Option<u32>,
    /// Signature protection instead: the RA's key (PKCS#8 PEM, 0600)...
    pub key_file: Option<PathBuf>,
    /// ...its certificate, then any intermediates (PEM), sent in extraCerts.
    pub cert_file: Option<PathBuf>,
    /// PEM certificates whose signatures are accepted on responses (the CA's CMP signer).
    pub response_signers: Option<PathBuf>,
    /// PEM trust bundle for an https URL [default: the platform's roots].
    pub tls_roots: Option<PathBuf>,
    /// Ask for implicit confirmation (RFC 4210 §5.1.1.1) [default: true]; a certConf is sent
    /// unless the CA grants it.
    #[serde(default = "yes")]
    pub implicit_confirm: bool,
    /// Per HTTP exchange [default: 30].
    pub timeout_secs: Option<u64>,
}

/// Programs of the PKI's own command line (`openssl ca`, a vendor CLI), run without a shell.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CommandUpstream {
    /// argv of the signing program: the CSR (PEM) on stdin, the request in `SCEAU_*`
    /// variables, the certificate then its chain (PEM) on stdout.
    pub issue: Vec<String>,
    /// argv of the revoking program: the certificate (PEM) on stdin, `SCEAU_SERIAL` and
    /// `SCEAU_REASON`; exit 0 once revoked. Without it, revocation is refused.
    pub revoke: Option<Vec<String>>,
    /// The longest a program may run before it is killed [default: 60].
    pub timeout_secs: Option<u64>,
    /// Programs run at once [default: 1: a PKI's command line, `openssl ca` among them, is
    /// rarely safe to run twice at once on the same CA database].
    pub concurrency: Option<usize>,
}

/// What is wrong with `[ra]`, in one line that names the setting or the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("[ra] {0}")]
pub struct ConfigError(pub String);

impl RaConfig {
    /// The checks that need no file: one upstream, each with a complete set of settings.
    pub fn check(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(m.into()));
        let named = [
            self.cmp.is_some(),
            self.command.is_some(),
            self.acme.is_some(),
        ];
        match named.iter().filter(|n| **n).count() {
            0 => return err("names no upstream: add [ra.cmp], [ra.command] or [ra.acme]"),
            1 => {}
            _ => {
                return err(
                    "names two upstreams: keep one of [ra.cmp], [ra.command] and [ra.acme]",
                );
            }
        }
        if let Some(a) = &self.acme {
            a.check()?;
        }
        if !(1..=3600).contains(&self.attempt_timeout_secs) {
            return err("attempt_timeout_secs is between 1 and 3600");
        }
        if let Some(c) = &self.cmp {
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return err("cmp.url must be an http:// or https:// URL (RFC 6712)");
            }
            match (
                &c.mac_reference,
                &c.mac_secret_file,
                &c.key_file,
                &c.cert_file,
            ) {
                (Some(_), Some(_), None, None) | (None, None, Some(_), Some(_)) => {}
                _ => {
                    return err(
                        "cmp needs either mac_reference and mac_secret_file (password-based MAC) or key_file and cert_file (signature)",
                    );
                }
            }
            if c.timeout_secs == Some(0) {
                return err("cmp.timeout_secs must be at least 1");
            }
            if c.mac_iterations
                .is_some_and(|n| !(1000..=100_000).contains(&n))
            {
                return err("cmp.mac_iterations is between 1000 and 100000");
            }
            if c.mac_iterations.is_some() && c.mac_reference.is_none() {
                return err("cmp.mac_iterations goes with mac_reference and mac_secret_file");
            }
        }
        if let Some(c) = &self.command {
            if c.issue.first().is_none_or(|p| p.is_empty()) {
                return err(
                    "command.issue is the program and its arguments, e.g. [\"/usr/local/bin/sign\", \"--profile\", \"tls\"]",
                );
            }
            if c.revoke.as_ref().is_some_and(|r| r.is_empty()) {
                return err("command.revoke, when given, is the program and its arguments");
            }
            if c.timeout_secs == Some(0) {
                return err("command.timeout_secs must be at least 1");
            }
            if c.concurrency.is_some_and(|n| !(1..=256).contains(&n)) {
                return err("command.concurrency is between 1 and 256");
            }
        }
        Ok(())
    }

    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(self.attempt_timeout_secs)
    }

    /// What the upstream is, for logs and the start-up banner (no credential).
    pub fn describe(&self) -> String {
        match (&self.cmp, &self.command, &self.acme) {
            (Some(c), _, _) => format!("CMP {}", c.url),
            (_, Some(c), _) => format!("command {}", c.issue[0]),
            (_, _, Some(a)) => format!("ACME {}", a.directory),
            _ => "none".into(),
        }
    }
}

/// A secret's file (see [`sceau_ca::read_private_file`]), its refusal as a `[ra]` error.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    sceau_ca::read_private_file(path).map_err(ConfigError)
}

/// The certificates of a PEM file, in order; refused when it holds none.
pub fn read_certs(path: &Path, what: &str) -> Result<Vec<Vec<u8>>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{what}: cannot read {}: {e}", path.display())))?;
    let certs = sceau_wire::key::pem_decode_all(&text, "CERTIFICATE");
    if certs.is_empty() {
        return Err(ConfigError(format!(
            "{what}: {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RaConfig, String> {
        let c: RaConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check().map_err(|e| e.to_string())?;
        Ok(c)
    }

    const FILES: &str =
        "upstream_roots = \"/r.pem\"\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n";

    #[test]
    fn one_complete_upstream_is_required() {
        assert!(parse(FILES).unwrap_err().contains("names no upstream"));
        let two = format!(
            "{FILES}[cmp]\nurl = \"http://ca/cmp\"\nmac_reference = \"r\"\nmac_secret_file = \"/s\"\n[command]\nissue = [\"/bin/true\"]\n"
        );
        assert!(parse(&two).unwrap_err().contains("two upstreams"));
        let half = format!("{FILES}[cmp]\nurl = \"http://ca/cmp\"\nmac_reference = \"r\"\n");
        assert!(parse(&half).unwrap_err().contains("mac_secret_file"));
        let both = format!(
            "{FILES}[cmp]\nurl = \"http://ca/cmp\"\nmac_reference = \"r\"\nmac_secret_file = \"/s\"\nkey_file = \"/k\"\ncert_file = \"/c\"\n"
        );
        assert!(parse(&both).is_err());
        let ftp = format!(
            "{FILES}[cmp]\nurl = \"ftp://ca/cmp\"\nmac_reference = \"r\"\nmac_secret_file = \"/s\"\n"
        );
        assert!(parse(&ftp).unwrap_err().contains("http"));
        let rounds = |n: u32| {
            parse(&format!(
                "{FILES}[cmp]\nurl = \"http://ca/cmp\"\nmac_reference = \"r\"\nmac_secret_file = \"/s\"\nmac_iterations = {n}\n"
            ))
        };
        assert!(rounds(999).unwrap_err().contains("mac_iterations"));
        assert!(rounds(100_001).unwrap_err().contains("mac_iterations"));
        assert!(rounds(1000).is_ok());
        let unmac = format!(
            "{FILES}[cmp]\nurl = \"http://ca/cmp\"\nkey_file = \"/k\"\ncert_file = \"/c\"\nmac_iterations = 2000\n"
        );
        assert!(parse(&unmac).unwrap_err().contains("mac_iterations"));
        let empty = format!("{FILES}[command]\nissue = []\n");
        assert!(parse(&empty).unwrap_err().contains("command.issue"));
        let typo = format!("{FILES}[command]\nisue = [\"/bin/true\"]\n");
        assert!(parse(&typo).unwrap_err().contains("isue"));
        let ok = parse(&format!(
            "{FILES}[command]\nissue = [\"/usr/bin/sign\", \"-x\"]\n"
        ))
        .unwrap();
        assert_eq!(ok.describe(), "command /usr/bin/sign");
        assert_eq!(ok.attempt_timeout(), Duration::from_secs(60));
        let cmp = parse(&format!(
            "{FILES}[cmp]\nurl = \"https://ejbca/ejbca/publicweb/cmp/sceau\"\nmac_reference = \"sceau-ra\"\nmac_secret_file = \"/etc/sceau/cmp-secret\"\n"
        ))
        .unwrap();
        assert!(cmp.cmp.as_ref().unwrap().implicit_confirm);
        assert_eq!(
            cmp.describe(),
            "CMP https://ejbca/ejbca/publicweb/cmp/sceau"
        );
    }

    #[test]
    fn secret_files_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&p).unwrap_err().to_string();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("s3cret"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&p).unwrap(), b"s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(
            read_secret_file(&p)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(read_secret_file(&dir.path().join("none")).is_err());
    }
}
