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
