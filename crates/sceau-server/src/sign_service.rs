//! The signing process `serve` starts as its child (the hidden `sign-service` command): the only
//! process that holds CA keys (or, in RA mode, the upstream's credentials), reached over its
//! pipes (see `sceau_ca::remote`).
//!
//! Invariants:
//! - Every certificate passes the signing gate first (agency guide R35,
//!   `sceau_admin::gate`): from its own connection to the database, the signing process checks
//!   the account, its external account, the names and the profile, whatever the front end
//!   decided. A request that names no account is refused.
//! - The database URL comes from the environment (`SCEAU_SIGNER_DATABASE_URL`), never argv.
//! - Requests are answered concurrently; an upstream CA may take minutes over one.

use std::sync::Arc;

use sceau_acme::EabMode;
use sceau_admin::gate::{GateError, signing_gate};
use sceau_ca::remote::Session;
use sceau_ca::{
    Ca, CaError, CaKeyKind, CrlRequest, IssueFuture, IssueRequest, IssuerInfo, OpenOptions,
    RevokeRequest, SignFuture, Signer,
};
use sceau_store::Store;

use crate::config::Config;
use crate::serve::LONG_VALIDITY_DAYS;
use crate::{CommonArgs, ServeArgs};

/// The environment variable that carries the database URL to the signing process.
pub const DATABASE_ENV: &str = "SCEAU_SIGNER_DATABASE_URL";

/// A signer behind the signing gate (see the module invariants).
struct Gated {
    inner: Arc<dyn Signer>,
    /// The gate's own database connection, opened at the first request (storage that is away
    /// or read-only at start-up delays signing, it does not stop the service).
    store: tokio::sync::OnceCell<Store>,
    url: String,
    eab: EabMode,
    /// The wrap key of the external accounts' MAC keys, held here in a split deployment so
    /// that the front end holds none (it asks [`Signer::check_eab_mac`]).
    wrap: Option<Arc<sceau_admin::WrapKey>>,
    max_key_age: Option<i64>,
}

impl Gated {
    async fn store(&self) -> Result<&Store, CaError> {
        self.store
            .get_or_try_init(|| Store::open(&self.url))
            .await
            .map_err(|e| CaError::Unavailable(format!("signing gate: database: {e}")))
    }
}

impl Signer for Gated {
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a> {
        Box::pin(async move {
            let Some(gate) = &req.gate else {
                return Err(CaError::Gate(
                    "R35 signing gate: the request names no ACME account".into(),
                ));
            };
            match signing_gate(
                self.store().await?,
                self.eab,
                &gate.account_id,
                &req.identifiers,
                gate.profile.as_deref(),
            )
            .await
            {
                Ok(()) => {}
                Err(GateError::Refused(why)) => {
                    tracing::warn!(account = %gate.account_id, reason = %why, "the signing gate refused a request the front end let through");
                    return Err(CaError::Gate(why));
                }
                Err(e @ GateError::Storage(_)) => return Err(CaError::Unavailable(e.to_string())),
            }
            self.inner.issue(req).await
        })
    }

    fn sign_crl<'a>(&'a self, req: CrlRequest) -> SignFuture<'a, Vec<u8>> {
        self.inner.sign_crl(req)
    }

    fn check_eab_mac<'a>(
        &'a self,
        kid: &'a str,
        signing_input: Vec<u8>,
        mac: Vec<u8>,
    ) -> SignFuture<'a, Option<bool>> {
        Box::pin(async move {
            let Some(wrap) = &self.wrap else {
                return Err(CaError::Refused("this signer holds no MAC keys".into()));
            };
            let registry = sceau_admin::Registry::new(self.store().await?.clone(), wrap.clone())
                .with_max_key_age(self.max_key_age);
            match registry.usable_mac_key(kid).await {
                Ok(Ok(key)) => Ok(Some(
                    sceau_wire::eab::MacInput { signing_input, mac }.matches(&key),
                )),
                Ok(Err(why)) => {
                    tracing::info!(kid, reason = %why, "a binding to an external account that cannot bind");
                    Ok(None)
                }
                Err(e) => Err(CaError::Unavailable(format!("external account {kid}: {e}"))),
            }
        })
    }

    fn ocsp_responder<'a>(&'a self, issuer_id: &'a str) -> SignFuture<'a, Vec<u8>> {
        self.inner.ocsp_responder(issuer_id)
    }

    fn sign_ocsp<'a>(&'a self, issuer_id: &'a str, tbs_der: Vec<u8>) -> SignFuture<'a, Vec<u8>> {
        self.inner.sign_ocsp(issuer_id, tbs_der)
    }

    fn issuers(&self) -> Vec<IssuerInfo> {
        self.inner.issuers()
    }

    fn upstream(&self) -> bool {
        self.inner.upstream()
    }

    fn revoke<'a>(&'a self, req: RevokeRequest) -> SignFuture<'a, ()> {
        self.inner.revoke(req)
    }

    fn issuer_chain_pem(&self) -> String {
        self.inner.issuer_chain_pem()
    }

    fn root_pem(&self) -> String {
        self.inner.root_pem()
    }
}

/// Says why the service cannot start, on the pipe (the front end's one-line refusal), and exits.
fn refuse(why: String) -> ! {
    sceau_ca::remote::refuse_to_start(&why);
    std::process::exit(1)
}

/// What `serve` tells its signing process (see `main.rs`'s hidden `sign-service`), and what
/// `signer` derives from the same settings.
#[derive(Debug, Clone)]
pub struct SignServiceArgs {
    pub data_dir: std::path::PathBuf,
    pub ca_key: String,
    pub organization: String,
    pub max_validity_days: u64,
    pub allow_wildcards: bool,
    pub allow_local_identifiers: bool,
    pub staging: bool,
    pub public_url: Option<String>,
    pub ocsp_in_leaves: bool,
    pub ra_config: Option<std::path::PathBuf>,
    /// The server's EAB mode, which the signing gate applies too.
    pub eab: String,
    /// Whether this signer holds the MAC keys' wrap key (a signer of its own: see `Gated`).
    pub mac_keys: bool,
    /// R9: the MAC keys' maximum age in seconds, for the bindings this signer checks.
    pub max_key_age: Option<i64>,
}

impl SignServiceArgs {
    /// The signing settings of a server's configuration.
    pub fn from_config(
        config: &Config,
        ra_config: Option<std::path::PathBuf>,
        public_url: String,
    ) -> Result<SignServiceArgs, String> {
        let kind: CaKeyKind = config
            .ca_key
            .parse()
            .map_err(|e| format!("--ca-key: {e}"))?;
        crate::serve::eab_mode(&config.eab)?;
        Ok(SignServiceArgs {
            data_dir: config.data_dir.clone(),
            ca_key: kind.name().to_owned(),
            organization: config.organization.clone(),
            max_validity_days: if config.allow_long_validity {
                LONG_VALIDITY_DAYS
            } else {
                90
            },
            allow_wildcards: config.allow_wildcards,
            allow_local_identifiers: config.allow_local_identifiers,
            staging: config.staging,
            public_url: Some(public_url),
            ocsp_in_leaves: config.ocsp_in_certificates,
            ra_config,
            eab: config.eab.clone(),
            mac_keys: false,
            max_key_age: config.max_key_age_secs(),
        })
    }

    /// The hidden `sign-service` command line that carries these settings to the child.
    pub fn argv(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec![
            "sign-service".into(),
            "--data-dir".into(),
            self.data_dir.clone().into(),
            "--ca-key".into(),
            self.ca_key.clone().into(),
            "--organization".into(),
            self.organization.clone().into(),
            "--max-validity-days".into(),
            self.max_validity_days.to_string().into(),
        ];
        for (on, flag) in [
            (self.allow_wildcards, "--allow-wildcards"),
            (self.allow_local_identifiers, "--allow-local-identifiers"),
            (self.staging, "--staging"),
            (!self.ocsp_in_leaves, "--no-ocsp-url"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if let Some(u) = &self.public_url {
            a.push("--public-url".into());
            a.push(u.clone().into());
        }
        if let Some(p) = &self.ra_config {
            a.push("--ra-config".into());
            a.push(p.clone().into());
        }
        a.push("--eab".into());
        a.push(self.eab.clone().into());
        a
    }
}

/// The signing gate's database URL: its own least-privilege role's if configured (R33).
pub fn gate_database_url(config: &Config) -> Result<String, String> {
    match &config.signer_database_url_file {
        Some(path) => crate::config::read_secret_file(path)
            .map_err(|e| format!("signer_database_url_file: {e}")),
        None => config.database_url(),
    }
}

pub fn run_sign_service(a: SignServiceArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(serve(a))
}

/// `sign-service`: opens (or creates) the CA and answers signing requests on stdin/stdout.
async fn serve(a: SignServiceArgs) -> Result<(), String> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SCEAU_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let url = std::env::var(DATABASE_ENV).unwrap_or_else(|_| {
        refuse(format!(
            "the signing service needs {DATABASE_ENV} (serve sets it) for its signing gate"
        ))
    });
    // Said to the front end on the pipe, which makes it its one-line refusal to start.
    let (signer, server_tls, hello) = open_session(&a, &url).await.unwrap_or_else(|e| refuse(e));
    sceau_ca::remote::serve_signer_stdio(signer, server_tls, &hello)
        .await
        .map_err(|e| format!("signing service: {e}"))
}

/// Opens the signer one session runs on: the local CA (created on the first start) or the
/// upstream of RA mode, behind the signing gate on `url`.
async fn open_session(a: &SignServiceArgs, url: &str) -> Result<Session, String> {
    if let Some(path) = &a.ra_config {
        return open_upstream(path, a, url).await;
    }
    let kind: CaKeyKind = a.ca_key.parse().map_err(|e| format!("--ca-key: {e}"))?;
    let mut ca = Ca::open(
        &a.data_dir,
        &OpenOptions {
            create: Some((kind, a.organization.clone())),
            staging: a.staging,
        },
    )
    .map_err(|e| e.to_string())?;
    ca.set_allow_wildcards(a.allow_wildcards);
    ca.set_allow_local_names(a.allow_local_identifiers);
    ca.set_max_leaf_validity(time::Duration::days(
        a.max_validity_days.min(LONG_VALIDITY_DAYS) as i64,
    ));
    ca.set_public_url(a.public_url.clone());
    ca.set_ocsp_in_leaves(a.ocsp_in_leaves);
    let hello = sceau_ca::remote::Hello::of(&ca);
    let ca = Arc::new(ca);
    let dir = a.data_dir.clone();
    let tls_ca = ca.clone();
    let server_tls: sceau_ca::remote::ServerTlsFn =
        Box::new(move |names: &[String]| tls_ca.server_tls(&dir, names));
    Ok((gate(ca, a, url)?, Some(server_tls), hello))
}

/// `inner` behind the signing gate, on the process's own connection to the database.
fn gate(inner: Arc<dyn Signer>, a: &SignServiceArgs, url: &str) -> Result<Arc<dyn Signer>, String> {
    let wrap = match a.mac_keys {
        true => Some(Arc::new(
            sceau_admin::WrapKey::load_or_create(&a.data_dir).map_err(|e| e.to_string())?,
        )),
        false => None,
    };
    Ok(Arc::new(Gated {
        inner,
        store: tokio::sync::OnceCell::new(),
        url: url.to_owned(),
        eab: crate::serve::eab_mode(&a.eab)?,
        wrap,
        max_key_age: a.max_key_age,
    }))
}

/// The signer of RA mode: no CA key, the upstream's credentials instead; requests are
/// answered concurrently, an upstream taking seconds or minutes over each.
async fn open_upstream(
    path: &std::path::Path,
    a: &SignServiceArgs,
    url: &str,
) -> Result<Session, String> {
    let config = Config::load(Some(path))?;
    let Some(ra) = config.ra else {
        return Err(format!("{} has no [ra] table", path.display()));
    };
    let limits = sceau_ra::Limits {
        max_validity: time::Duration::days(a.max_validity_days.min(LONG_VALIDITY_DAYS) as i64),
        allow_wildcards: a.allow_wildcards,
    };
    let signer = sceau_ra::RaSigner::open(&ra, limits)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(upstream = %signer.describe(), "registration-authority signing service ready");
    let hello = signer.hello();
    Ok((gate(Arc::new(signer), a, url)?, None, hello))
}

/// `signer`: the signing service on its own, for front ends of other OS users on this host
/// (Unix socket, peer credentials) or on other hosts (mutual TLS), agency guide R31–R34. It
/// reads the same settings as `serve` (one configuration file for both).
pub fn run_socket_signer(common: CommonArgs, args: ServeArgs) -> Result<(), String> {
    let config = crate::serve::resolve_config(&common, &args)?;
    if config.signer_socket.is_none() && config.signer_listen.is_none() {
        return Err(
            "signer needs --signer-socket (front ends on this host) or --signer-listen (front ends on other hosts, mutual TLS): where it listens".into(),
        );
    }
    if config.signer_socket.is_some() && config.signer_allowed_uids.is_empty() {
        return Err(
            "signer needs --signer-allowed-uid (or signer_allowed_uids): the uid of each front end it serves".into(),
        );
    }
    // Checked before the data directory is touched: a refused start creates nothing.
    if let Some(socket) = &config.signer_socket {
        sceau_ca::remote::check_socket_path(socket)
            .map_err(|e| format!("--signer-socket: {e}: it is left alone"))?;
    }
    let acceptor = match &config.signer_listen {
        Some(_) => Some(crate::signer_tls::acceptor(
            &config.signer_tls("--signer-listen")?,
        )?),
        None => None,
    };
    let ra = crate::serve::ra_config_path(&common, &config)?;
    let public_url = config
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{}", config.revocation_listen));
    let mut a = SignServiceArgs::from_config(&config, ra, public_url)?;
    // The front ends of a signer of their own hold no MAC key: it checks their bindings.
    a.mac_keys = true;
    let url = gate_database_url(&config)?;
    crate::serve::init_logging(&config.log_format)?;
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o077) };
    // Its directory holds the CA (unless in RA mode) and the MAC keys' wrap key.
    crate::serve::create_data_dir(&a.data_dir)?;
    crate::serve::tighten_data_dir(&a.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        // Opened once before listening: a CA that cannot open is a refusal to start, and the
        // first start creates it before any two sessions could race to.
        let (_, _, hello) = open_session(&a, &url).await?;
        let open: sceau_ca::remote::OpenSession = Arc::new(move || {
            let (a, url) = (a.clone(), url.clone());
            Box::pin(async move { open_session(&a, &url).await })
        });
        let socket = match &config.signer_socket {
            Some(path) => Some(
                sceau_ca::remote::bind_socket(path)
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let tcp = match config.signer_listen {
            Some(addr) => Some(crate::signer_tls::bind(addr).await?),
            None => None,
        };
        println!("sceau-server signer is ready");
        if let Some(path) = &config.signer_socket {
            println!("  socket:      {}", path.display());
            println!("  serves uids: {:?}", config.signer_allowed_uids);
        }
        if let Some(l) = &tcp {
            println!(
                "  listen:      {} (mutual TLS)",
                l.local_addr().map_err(|e| e.to_string())?
            );
        }
        println!("  fingerprint: SHA-256 {}", hello.root_fingerprint_sha256);
        if let (Some(l), Some(acceptor)) = (tcp, acceptor) {
            tokio::spawn(crate::signer_tls::serve(l, acceptor, open.clone()));
        }
        if let Some(listener) = socket {
            let uids = config.signer_allowed_uids.clone();
            tokio::spawn(sceau_ca::remote::serve_signer_socket(listener, uids, open));
        }
        crate::serve::shutdown_signal().await;
        if let Some(path) = &config.signer_socket {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    })
}
