//! Server settings: built-in defaults, then the TOML file (`--config`), then command-line flags,
//! each overriding the one before. Every setting has a flag and a TOML key of the same name
//! (dashes become underscores).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Defaults to `https://<listen>`.
    pub base_url: Option<String>,
    /// Every DNS lookup of validation goes to this server (like Pebble's -dnsserver).
    pub dns_server: Option<SocketAddr>,
    pub http01_port: u16,
    pub tlsalpn01_port: u16,
    pub eab: String,
    pub ca_key: String,
    pub organization: String,
    pub cert_validity_days: u64,
    /// R39's explicit override: allows `cert_validity_days` above 90 (up to 397).
    pub allow_long_validity: bool,
    /// R42's explicit exception: wildcard names may be issued (dns-01 only; with EAB only to
    /// accounts whose external account allows them).
    pub allow_wildcards: bool,
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    /// The CA's identities in CAA `issue` values (RFC 8659 §4.2) [default: the base URL's host
    /// name, or `localhost` when it is an address]; `[]` turns CAA checking off.
    pub caa_identities: Option<Vec<String>>,
    /// CAA is checked again at finalize for authorizations validated longer ago (BR §3.2.2.8).
    pub caa_recheck_secs: u64,
    /// `sqlite` (default: `<data_dir>/sceau.db`) or a `postgres://` URL.
    pub database: Option<String>,
    pub log_format: String,
    /// A staging CA (R53, R54): names and leaves say TEST; a data directory of its own.
    pub staging: bool,
    /// Plain-HTTP listener for CRLs and OCSP.
    pub revocation_listen: SocketAddr,
    /// Base of the revocation URLs in certificates [default: `http://<revocation_listen>`].
    pub public_url: Option<String>,
    /// CRL shards per issuer.
    pub crl_shards: u32,
    /// Whether new certificates carry the OCSP responder URL.
    pub ocsp_in_certificates: bool,
    /// thisUpdate to nextUpdate of OCSP responses (signed again at half of it).
    pub ocsp_validity_secs: u64,
    /// A shard's CRL is signed again at least this often (and soon after a revocation).
    pub crl_update_secs: u64,
    /// thisUpdate to nextUpdate of each CRL.
    pub crl_validity_secs: u64,
    /// How long an expired certificate stays on its CRL.
    pub crl_lookback_secs: u64,
    /// Also write every CRL under this directory (`<issuer>/<shard>.crl`) for a web server.
    pub crl_dir: Option<PathBuf>,
    pub refuse_key_reuse: bool,
    /// Extra names for the server's own HTTPS certificate.
    pub tls_names: Vec<String>,
    pub validation_wait_ms: u64,
    /// How long finalize waits for its certificate before answering `processing`.
    pub issuance_wait_ms: u64,
    /// How long an order may take to be signed, retries included, before it is invalid.
    pub issuance_deadline_secs: u64,
    /// How long an instance holds an issuance without renewing its lease (another instance
    /// takes the job over once it expires).
    pub issuance_lease_secs: u64,
    /// R29: failed validations allowed per ACME account, per name, per hour (0: no limit).
    pub max_failed_validations_per_hour: u32,
    /// A file holding the database URL (for credentials that must stay out of argv).
    pub database_url_file: Option<PathBuf>,
    /// A file holding the signing process's own database URL (its least-privilege role).
    pub signer_database_url_file: Option<PathBuf>,
    /// A signer of its own (R31–R34): the Unix socket where `sceau-server signer` listens and
    /// `serve` connects, instead of starting its signing process as its child.
    pub signer_socket: Option<PathBuf>,
    /// The uid the signer runs as: `serve` checks it in the socket's peer credentials.
    pub signer_uid: Option<u32>,
    /// The uids of the front ends the signer serves (peer credentials); nobody else.
    pub signer_allowed_uids: Vec<u32>,
    /// A signer on another host (R32): where `sceau-server signer` listens for front ends
    /// over mutual TLS.
    pub signer_listen: Option<SocketAddr>,
    /// The signer on another host that `serve` reaches over mutual TLS, `host:port`.
    pub signer_address: Option<String>,
    /// The deployment CA that certifies both ends of the mutual-TLS link.
    pub signer_tls_ca: Option<PathBuf>,
    /// This end's certificate for the link (the signer's server certificate, or the front
    /// end's client certificate) and its key (mode 0600).
    pub signer_tls_cert: Option<PathBuf>,
    pub signer_tls_key: Option<PathBuf>,

    /// Networks validation may reach although the default refuses them.
    pub validation_allow: Vec<String>,
    /// Networks validation never reaches, on top of the default refusals.
    pub validation_deny: Vec<String>,
    pub allow_local_identifiers: bool,
    pub allow_server_names: bool,

    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub handshake_timeout_secs: u64,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub min_body_rate: u64,
    pub max_body_bytes: usize,

    /// Rate limits, `COUNT/PERIOD` or `off` (pending authorizations: `COUNT` or `off`).
    pub limit_accounts_per_address: String,
    pub limit_orders_per_account: String,
    pub limit_names_per_account: String,
    pub limit_pending_authzs_per_account: String,
    pub limit_eab_failures_per_key: String,
    pub limit_nonces_per_address: String,
    pub limit_console_failures_per_user: String,
    /// R9: days after which a MAC key binds no new ACME account (0: no limit).
    pub eab_max_key_age_days: u64,
    pub limit_console_failures_per_address: String,

    /// The operators' /metrics listener (plain HTTP); none by default.
    pub metrics_listen: Option<SocketAddr>,
    /// The web console's HTTPS listener; none by default.
    pub console_listen: Option<SocketAddr>,

    /// STAR (RFC 8739): the shortest lifetime, the longest series, whether unauthenticated GET
    /// of a series' certificate may be agreed.
    pub star_min_lifetime: String,
    pub star_max_duration: String,
    pub star_allow_certificate_get: bool,

    /// Registration-authority mode: an upstream CA signs (TOML only, `[ra]`; see docs/ra.md).
    pub ra: Option<sceau_ra::RaConfig>,

    /// Multi-perspective validation (R28): the remote validators and their quorum (TOML only,
    /// `[perspectives]`; see docs/perspectives.md).
    pub perspectives: Option<PerspectivesConfig>,

    /// Scheduled reports to each external account's owner by e-mail (TOML only, `[reports]`;
    /// see docs/console.md).
    pub reports: Option<sceau_console::mail::ReportsConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./sceau-data"),
            listen: "127.0.0.1:14000".parse().expect("literal address"),
            base_url: None,
            dns_server: None,
            http01_port: 80,
            tlsalpn01_port: 443,
            eab: "required".into(),
            ca_key: "p256".into(),
            organization: "Sceau".into(),
            cert_validity_days: 90,
            allow_long_validity: false,
            allow_wildcards: false,
            terms_of_service: None,
            website: None,
            caa_identities: None,
            caa_recheck_secs: 8 * 3600,
            database: None,
            log_format: "text".into(),
            staging: false,
            revocation_listen: "127.0.0.1:14080".parse().expect("literal address"),
            public_url: None,
            crl_shards: 16,
            ocsp_in_certificates: true,
            ocsp_validity_secs: 4 * 86400,
            crl_update_secs: 3600,
            crl_validity_secs: 24 * 3600,
            crl_lookback_secs: 24 * 3600,
            crl_dir: None,
            refuse_key_reuse: true,
            tls_names: Vec::new(),
            validation_wait_ms: 2000,
            issuance_wait_ms: 5000,
            issuance_deadline_secs: 600,
            issuance_lease_secs: 15,
            max_failed_validations_per_hour: 5,
            database_url_file: None,
            signer_database_url_file: None,
            signer_socket: None,
            signer_uid: None,
            signer_allowed_uids: Vec::new(),
            signer_listen: None,
            signer_address: None,
            signer_tls_ca: None,
            signer_tls_cert: None,
            signer_tls_key: None,
            validation_allow: Vec::new(),
            validation_deny: Vec::new(),
            allow_local_identifiers: false,
            allow_server_names: false,
            max_connections: 4096,
            max_connections_per_address: 256,
            handshake_timeout_secs: 10,
            header_timeout_secs: 10,
            idle_timeout_secs: 30,
            body_timeout_secs: 10,
            min_body_rate: 1024,
            max_body_bytes: 64 * 1024,
            limit_accounts_per_address: "50/1h".into(),
            limit_orders_per_account: "300/1h".into(),
            limit_names_per_account: "1000/1h".into(),
            limit_pending_authzs_per_account: "1000".into(),
            limit_eab_failures_per_key: "10/1h".into(),
            limit_nonces_per_address: "2000/10s".into(),
            limit_console_failures_per_user: "5/15m".into(),
            eab_max_key_age_days: 0,
            limit_console_failures_per_address: "20/15m".into(),
            console_listen: None,
            metrics_listen: None,
            star_min_lifetime: "1h".into(),
            star_max_duration: "1y".into(),
            star_allow_certificate_get: true,
            ra: None,
            perspectives: None,
            reports: None,
        }
    }
}

/// `[perspectives]`: the remote validators the primary asks (agency guide R28).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerspectivesConfig {
    /// `enforce` (default) or `log-only` (roll-out: disagreement is logged and audited only).
    #[serde(default)]
    pub mode: sceau_validate::perspectives::Mode,
    /// Remote perspectives that must agree [default: BR §3.2.2.9's table: all of one, all but
    /// one of 2 to 5, all but two of 6 or more].
    pub quorum: Option<usize>,
    /// How long a remote perspective has to answer.
    #[serde(default = "default_perspective_timeout")]
    pub timeout_secs: u64,
    /// The validation CA, which issued every validator's server certificate.
    pub tls_ca: PathBuf,
    /// The primary's client certificate for the validators, and its key (mode 0600).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    #[serde(default)]
    pub remote: Vec<RemotePerspective>,
}

fn default_perspective_timeout() -> u64 {
    15
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemotePerspective {
    pub name: String,
    /// `https://host:port` of its `sceau-server validator`.
    pub url: String,
}

impl Config {
    /// R9's limit on a MAC key's age, in seconds; `None`: no limit.
    pub fn max_key_age_secs(&self) -> Option<i64> {
        (self.eab_max_key_age_days > 0).then(|| self.eab_max_key_age_days as i64 * 86400)
    }

    /// Whether a signer of its own serves this front end (socket or mutual TLS): it then
    /// holds the CA and the MAC keys, and this process neither.
    pub fn separate_signer(&self) -> bool {
        self.signer_socket.is_some() || self.signer_address.is_some()
    }

    /// The link's TLS files, when all three are set; an error names the missing one.
    pub fn signer_tls(&self, why: &str) -> Result<crate::signer_tls::TlsFiles<'_>, String> {
        fn need<'c>(v: &'c Option<PathBuf>, why: &str, key: &str) -> Result<&'c Path, String> {
            v.as_deref().ok_or_else(|| {
                format!(
                    "{why} needs --{key} (or {} in the configuration file)",
                    key.replace('-', "_")
                )
            })
        }
        Ok(crate::signer_tls::TlsFiles {
            label: "signer_tls",
            ca: need(&self.signer_tls_ca, why, "signer-tls-ca")?,
            cert: need(&self.signer_tls_cert, why, "signer-tls-cert")?,
            key: need(&self.signer_tls_key, why, "signer-tls-key")?,
        })
    }

    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| format!("config file {}: {}", path.display(), e.message()))
    }

    /// CAA is on by default (R28, RFC 8659) with the server's own name as its identity.
    pub fn caa_identities(&self) -> Vec<String> {
        if let Some(ids) = &self.caa_identities {
            return ids.clone();
        }
        let base = self.base_url();
        let authority = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest)
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("");
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        let is_address = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
        if host.is_empty() || is_address {
            return vec!["localhost".to_owned()];
        }
        vec![host.to_ascii_lowercase()]
    }

    pub fn base_url(&self) -> String {
        self.base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.listen))
    }

    /// The database URL, from (first found) `SCEAU_DATABASE_URL`, `database_url_file`, the
    /// `database` setting, or SQLite in the data directory. A password may only come from the
    /// environment or from a file that only its owner can read: on the command line every
    /// local user sees it (`ps`), and it must never be printed (see [`redact_url`]).
    pub fn database_url(&self) -> Result<String, String> {
        if let Ok(url) = std::env::var("SCEAU_DATABASE_URL")
            && !url.trim().is_empty()
        {
            return Ok(url.trim().to_owned());
        }
        if let Some(path) = &self.database_url_file {
            return read_secret_file(path).map_err(|e| format!("database_url_file: {e}"));
        }
        match &self.database {
            Some(url) if url != "sqlite" => {
                if url_password(url).is_some() {
                    return Err(format!(
                        "the database URL {} carries a password: put it in SCEAU_DATABASE_URL or in a file given with --database-url-file (mode 0600), never on the command line or in the configuration file",
                        redact_url(url)
                    ));
                }
                Ok(url.clone())
            }
            _ => Ok(format!(
                "sqlite://{}",
                self.data_dir.join("sceau.db").display()
            )),
        }
    }
}

/// The password of a `scheme://user:password@host…` URL, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p)
}

/// The URL with its password, if any, replaced by `***`: what may be printed or logged.
pub fn redact_url(url: &str) -> String {
    match url_password(url) {
        Some(p) => url.replacen(&format!(":{p}@"), ":***@", 1),
        None => url.to_owned(),
    }
}

/// A secret's file (see [`sceau_ca::read_private_file`]): its text, trimmed.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let bytes = sceau_ca::read_private_file(path)?;
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caa_is_on_by_default_with_the_servers_name() {
        let mut c = Config::default();
        // An address is no CAA issuer domain: records naming another CA still refuse us.
        assert_eq!(c.caa_identities(), ["localhost"]);
        c.base_url = Some("https://ACME.corp.example:8443/".into());
        assert_eq!(c.caa_identities(), ["acme.corp.example"]);
        c.base_url = Some("https://[2001:db8::1]:443".into());
        assert_eq!(c.caa_identities(), ["localhost"]);
        c.caa_identities = Some(vec!["ca.example".into()]);
        assert_eq!(c.caa_identities(), ["ca.example"]);
        c.caa_identities = Some(vec![]);
        assert!(c.caa_identities().is_empty(), "[] turns it off");
    }

    #[test]
    fn passwords_are_found_and_redacted() {
        let u = "postgres://sceau:s3cr%40t@db.internal:5432/sceau?sslmode=verify-full";
        assert_eq!(url_password(u), Some("s3cr%40t"));
        assert_eq!(
            redact_url(u),
            "postgres://sceau:***@db.internal:5432/sceau?sslmode=verify-full"
        );
        for no_password in [
            "postgres://sceau@db.internal/sceau",
            "postgres://db.internal/sceau",
            "postgres://db/x?user=a@b",
            "sqlite:///var/lib/sceau/sceau.db",
        ] {
            assert_eq!(url_password(no_password), None, "{no_password}");
            assert_eq!(redact_url(no_password), no_password);
        }
    }
}
