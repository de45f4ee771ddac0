//! `sceau manager`: the service that obtains every agent's certificates.
//!
//! Its directory (`--dir`, 0700) holds `manager.toml`, the HTTPS identity in `tls/` (the key
//! 0600; `tls/manager-ca.pem` is what agents trust), the ACME account in `acme/` and, by
//! default, the SQLite database `fleet.db`. The DNS credentials are files it names; they are
//! read when needed and never logged.
//!
//! Invariants: `init` writes nothing when any of its checks fails (the directory is made only
//! once the ACME account exists); a running manager only reads its configuration at start.

pub mod admin;
pub mod http;
pub mod status;
pub mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use sceau_client::files::{ensure_dir, write_atomic};
use sceau_client::state::StateDir;
use sceau_client::{Account, AcmeClient, NewAccountOptions};
use sceau_store::fleet::FleetStore;
use sceau_wire::KeyKind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const CONFIG_FILE: &str = "manager.toml";

/// `manager.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerConfig {
    /// Where agents connect (HTTPS, client certificates required).
    pub listen: SocketAddr,
    /// Names and addresses in the manager's HTTPS certificate.
    pub hostnames: Vec<String>,
    /// `sqlite://PATH` or `postgres://…` [default: sqlite://<dir>/fleet.db]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Plain-HTTP Prometheus endpoint (`/metrics`), e.g. 127.0.0.1:9555 [default: off].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Connections at once from one address (agents behind one NAT share theirs).
    #[serde(default = "default_per_address")]
    pub max_connections_per_address: usize,
    pub acme: AcmeConfig,
    pub dns: DnsConfig,
    #[serde(default)]
    pub renewal: RenewalConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub server: String,
    /// Roots to trust for the ACME server instead of the system store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<PathBuf>,
    /// An ACME profile to ask for (draft-ietf-acme-profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// How the manager answers dns-01: RFC 2136 updates (the `_acme-challenge` CNAMEs are
/// followed, so a delegated challenge zone works the same) or a hook program.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_server: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_key_file: Option<PathBuf>,
    /// Servers that must show every record before the CA is told [default: the zone's NS].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check_servers: Vec<SocketAddr>,
    #[serde(default = "default_propagation")]
    pub propagation_timeout_secs: u64,
    /// A dns-01 hook (`present`/`cleanup`, as for `sceau issue --dns-hook`), called per name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<PathBuf>,
}

fn default_per_address() -> usize {
    http::MAX_PER_ADDRESS
}

fn default_propagation() -> u64 {
    120
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenewalConfig {
    /// Renew once this fraction of the lifetime has passed, without an ARI window (R84).
    pub fraction: f64,
    /// Alert when an agent has not installed its current certificate this long after issuance,
    /// or has not sent a CSR this long after renewal became due.
    pub pickup_grace_secs: i64,
    /// CSRs handled together: one DNS update per zone and one propagation wait per batch.
    pub batch: i64,
    /// Orders in flight at once within a batch.
    pub concurrency: usize,
    /// Longest sleep between two passes (a new CSR wakes the manager at once).
    pub poll_secs: u64,
    /// First retry delay after a transient failure; doubled each time up to an hour.
    pub retry_secs: i64,
    /// After a CSR arrives, wait this long for others to share its batch (agents' timers
    /// fire close together; one DNS update and one propagation wait then serve them all).
    pub gather_ms: u64,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        RenewalConfig {
            fraction: sceau_client::renewal::DEFAULT_FRACTION,
            pickup_grace_secs: 86_400,
            batch: 100,
            concurrency: 16,
            poll_secs: 60,
            retry_secs: 60,
            gather_ms: 2000,
        }
    }
}

impl ManagerConfig {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(format!(
                "{}: {e}; run `sceau manager init` first",
                path.display()
            ))
        })?;
        let config: ManagerConfig = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?;
        config.check()?;
        Ok(config)
    }

    pub fn check(&self) -> Result<()> {
        match (&self.dns.update_server, &self.dns.hook) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "[dns]: give update_server or hook, not both".into(),
                ));
            }
            (None, None) => {
                return Err(Error::Config(
                    "[dns]: give update_server (RFC 2136) or hook".into(),
                ));
            }
            _ => {}
        }
        let r = &self.renewal;
        if !(r.fraction > 0.0 && r.fraction < 1.0) {
            return Err(Error::Config(
                "[renewal] fraction must be between 0 and 1".into(),
            ));
        }
        if r.batch < 1 || r.concurrency < 1 || r.poll_secs < 1 || r.retry_secs < 1 {
            return Err(Error::Config(
                "[renewal] batch, concurrency, poll_secs and retry_secs must be at least 1".into(),
            ));
        }
        if self.max_connections_per_address < 1 {
            return Err(Error::Config(
                "max_connections_per_address must be at least 1".into(),
            ));
        }
        if self.hostnames.is_empty() {
            return Err(Error::Config("hostnames must name the manager".into()));
        }
        Ok(())
    }

    pub fn database_url(&self, dir: &Path) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("fleet.db").display()))
    }
}

/// The files of a manager directory.
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Self {
        Paths {
            dir: dir.to_owned(),
        }
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls").join("manager.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("tls").join("manager.key")
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls").join("manager-ca.pem")
    }
    pub fn acme(&self) -> PathBuf {
        self.dir.join("acme")
    }
}

/// What `manager init` needs besides the configuration.
pub struct InitOptions {
    pub agree_tos: bool,
    pub contact: Vec<String>,
    pub eab: Option<sceau_client::Eab>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))
}

/// Connects to the configured ACME server.
pub async fn acme_client(config: &AcmeConfig) -> Result<AcmeClient> {
    let ca_bundle_pem = config.ca_bundle.as_deref().map(read).transpose()?;
    let http = sceau_client::http::build_client(&sceau_client::http::HttpOptions {
        ca_bundle_pem,
        timeout: None,
    })?;
    Ok(AcmeClient::connect(&config.server, http).await?)
}

/// Creates a manager directory: configuration, HTTPS identity, ACME account. Refuses an
/// existing one.
pub async fn init(dir: &Path, config: &ManagerConfig, options: InitOptions) -> Result<()> {
    config.check()?;
    if dir.join(CONFIG_FILE).exists() {
        return Err(Error::Config(format!(
            "{} exists: this directory already holds a manager",
            dir.join(CONFIG_FILE).display()
        )));
    }
    if let Some(key) = &config.dns.tsig_key_file {
        sceau_client::solver::dns::TsigKey::load(key)?;
    }
    // The account first: a refusal (terms, EAB, unreachable) leaves nothing behind.
    let client = acme_client(&config.acme).await?;
    let key = sceau_client::csr::generate_key(KeyKind::P256)?;
    let (account, _) = client
        .new_account(
            key,
            &NewAccountOptions {
                contact: options.contact,
                terms_of_service_agreed: options.agree_tos,
                eab: options.eab,
            },
        )
        .await?;
    let identity = crate::tls::manager_identity(&config.hostnames)?;
    ensure_dir(dir, 0o700)?;
    let paths = Paths::new(dir);
    ensure_dir(&dir.join("tls"), 0o700)?;
    write_atomic(&paths.key(), identity.key_pem.as_bytes(), 0o600)?;
    write_atomic(&paths.cert(), identity.cert_pem.as_bytes(), 0o644)?;
    write_atomic(
        &paths.ca(),
        identity.ca_pem.unwrap_or_default().as_bytes(),
        0o644,
    )?;
    let state = StateDir::open(&paths.acme())?;
    state.save_account(
        &account,
        &sceau_client::state::AccountRecord {
            server: config.acme.server.clone(),
            url: account.url.clone(),
            key_type: KeyKind::P256.name().to_owned(),
            contact: Vec::new(),
            created: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .expect("formats"),
            eab_key_id: None,
        },
    )?;
    FleetStore::open(&config.database_url(dir)).await?;
    let text = toml::to_string_pretty(config).expect("the configuration serialises");
    write_atomic(&dir.join(CONFIG_FILE), text.as_bytes(), 0o600)?;
    Ok(())
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub dns_updates: AtomicU64,
    pub dns_records: AtomicU64,
    pub issued: AtomicU64,
    pub failures: AtomicU64,
    pub refused_requests: AtomicU64,
}

/// A running manager's shared state.
pub struct Manager {
    pub dir: PathBuf,
    pub config: ManagerConfig,
    pub store: FleetStore,
    pub wake: tokio::sync::Notify,
    pub counters: Counters,
}

impl Manager {
    pub async fn open(dir: &Path) -> Result<Manager> {
        let config = ManagerConfig::load(dir)?;
        let store = FleetStore::open(&config.database_url(dir)).await?;
        Ok(Manager {
            dir: dir.to_owned(),
            config,
            store,
            wake: tokio::sync::Notify::new(),
            counters: Counters::default(),
        })
    }

    /// The manager's ACME account.
    pub fn account(&self) -> Result<Account> {
        let state = StateDir::open(&Paths::new(&self.dir).acme())?;
        state
            .load_account(&self.config.acme.server)?
            .map(|(a, _)| a)
            .ok_or_else(|| {
                Error::Config(format!(
                    "no ACME account for {} in {}",
                    self.config.acme.server,
                    self.dir.display()
                ))
            })
    }
}

/// Runs the manager until SIGTERM or Ctrl-C: the agents' listener, the worker and, when
/// configured, the metrics listener.
pub async fn serve(dir: &Path) -> Result<()> {
    let manager = Arc::new(Manager::open(dir).await?);
    let account = manager.account()?;
    let paths = Paths::new(dir);
    let tls = crate::tls::server_config(&read(&paths.cert())?, &read(&paths.key())?)?;
    let listener = tokio::net::TcpListener::bind(manager.config.listen)
        .await
        .map_err(Error::io(format!("listening on {}", manager.config.listen)))?;
    let metrics = match manager.config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(Error::io(format!("listening on {addr}")))?,
        ),
        None => None,
    };
    println!(
        "sceau manager: agents at https://{} ({} agents enrolled){}",
        manager.config.listen,
        manager
            .store
            .agents()
            .await?
            .iter()
            .filter(|a| a.status == "active")
            .count(),
        manager
            .config
            .metrics_listen
            .map(|a| format!(", metrics at http://{a}/metrics"))
            .unwrap_or_default()
    );
    tokio::spawn(worker::run(manager.clone(), account));
    if let Some(l) = metrics {
        tokio::spawn(status::serve_metrics(manager.clone(), l));
    }
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tokio::select! {
        r = http::serve(manager.clone(), listener, Arc::new(tls)) => r,
        _ = stop => Ok(()),
    }
}
