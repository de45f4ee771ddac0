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
    pub caa_identities: Vec<String>,
    /// `sqlite` (default: `<data_dir>/sceau.db`) or a `postgres://` URL.
    pub database: Option<String>,
    pub log_format: String,
    pub refuse_key_reuse: bool,
    /// Extra names for the server's own HTTPS certificate.
    pub tls_names: Vec<String>,
    pub validation_wait_ms: u64,
    /// R29: failed validations allowed per ACME account, per name, per hour (0: no limit).
    pub max_failed_validations_per_hour: u32,
    /// A file holding the database URL (for credentials that must stay out of argv).
    pub database_url_file: Option<PathBuf>,

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
            caa_identities: Vec::new(),
            database: None,
            log_format: "text".into(),
            refuse_key_reuse: true,
            tls_names: Vec::new(),
            validation_wait_ms: 2000,
            max_failed_validations_per_hour: 5,
            database_url_file: None,
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
            limit_nonces_per_address: "200/10s".into(),
        }
    }
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| format!("config file {}: {}", path.display(), e.message()))
    }

    pub fn base_url(&self) -> String {
        self.base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.listen))
    }

    pub fn database_url(&self) -> String {
        match &self.database {
            Some(url) if url != "sqlite" => url.clone(),
            _ => format!("sqlite://{}", self.data_dir.join("sceau.db").display()),
        }
    }
}
