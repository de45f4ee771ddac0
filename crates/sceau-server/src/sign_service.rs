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
use sceau_ca::{
    Ca, CaError, CaKeyKind, CrlRequest, IssueFuture, IssueRequest, IssuerInfo, OpenOptions,
    RevokeRequest, SignFuture, Signer,
};
use sceau_store::Store;

use crate::serve::LONG_VALIDITY_DAYS;

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

/// `sign-service`: opens (or creates) the CA and answers signing requests on stdin/stdout.
/// What `serve` tells its signing process (see `main.rs`'s hidden `sign-service`).
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
}

pub fn run_sign_service(a: SignServiceArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(serve(a))
}

async fn serve(a: SignServiceArgs) -> Result<(), String> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SCEAU_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(path) = &a.ra_config {
        return run_upstream_service(path, &a).await;
    }
    let kind: CaKeyKind = a.ca_key.parse().map_err(|e| format!("--ca-key: {e}"))?;
    let opened = Ca::open(
        &a.data_dir,
        &OpenOptions {
            create: Some((kind, a.organization.clone())),
            staging: a.staging,
        },
    );
    // Said to the front end on the pipe, which makes it its one-line refusal to start.
    let mut ca = opened.unwrap_or_else(|e| refuse(e.to_string()));
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
    let gated = gate(ca, &a);
    sceau_ca::remote::serve_signer_stdio(gated, Some(server_tls), &hello)
        .await
        .map_err(|e| format!("signing service: {e}"))
}

/// `inner` behind the signing gate, on the process's own connection to the database.
fn gate(inner: Arc<dyn Signer>, a: &SignServiceArgs) -> Arc<dyn Signer> {
    let eab = crate::serve::eab_mode(&a.eab).unwrap_or_else(|e| refuse(e));
    let url = std::env::var(DATABASE_ENV).unwrap_or_else(|_| {
        refuse(format!(
            "the signing service needs {DATABASE_ENV} (serve sets it) for its signing gate"
        ))
    });
    Arc::new(Gated {
        inner,
        store: tokio::sync::OnceCell::new(),
        url,
        eab,
    })
}

/// The signing service of RA mode: no CA key, the upstream's credentials instead; requests are
/// answered concurrently, an upstream taking seconds or minutes over each.
async fn run_upstream_service(path: &std::path::Path, a: &SignServiceArgs) -> Result<(), String> {
    let config = crate::config::Config::load(Some(path)).unwrap_or_else(|e| refuse(e));
    let Some(ra) = config.ra else {
        refuse(format!("{} has no [ra] table", path.display()))
    };
    let limits = sceau_ra::Limits {
        max_validity: time::Duration::days(a.max_validity_days.min(LONG_VALIDITY_DAYS) as i64),
        allow_wildcards: a.allow_wildcards,
    };
    let signer = sceau_ra::RaSigner::open(&ra, limits)
        .await
        .unwrap_or_else(|e| refuse(e.to_string()));
    tracing::info!(upstream = %signer.describe(), "registration-authority signing service ready");
    let hello = signer.hello();
    let gated = gate(Arc::new(signer), a);
    sceau_ca::remote::serve_signer_stdio(gated, None, &hello)
        .await
        .map_err(|e| format!("signing service: {e}"))
}
