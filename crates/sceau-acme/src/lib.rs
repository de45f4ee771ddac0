//! The ACME services of sceau-server (RFC 8555 and extensions). HTTP handlers, the CLI and the
//! admin tools call these; nothing here knows about HTTP beyond the status codes it reports.
//!
//! Invariants:
//! - Every POST goes through [`request::Verifier`] first: flattened JWS, algorithm, key
//!   reference, URL, signature, nonce, account status. No handler sees an unverified body.
//! - State changes are store compare-and-swaps (see `sceau-store`); services never write a
//!   status they did not read first.
//! - An object owned by another account is reported as not found, never as forbidden, so
//!   object URLs leak nothing.

pub mod crl;
pub mod error;
pub mod identifier_policy;
pub mod limits;
pub mod metrics;
pub mod nonce;
pub mod ocsp;
pub mod queue;
pub mod render;
pub mod request;
pub mod scheduler;
mod services;
pub mod urls;

use std::sync::Arc;
use std::time::Duration;

pub use error::{AcmeError, AcmeResult};
pub use request::{Verified, VerifiedKey};
use sceau_ca::Signer;
use sceau_store::Store;
use sceau_validate::perspectives::Perspectives;
pub use services::star::{StarSettings, cancel_star_series};
pub use services::{Endpoint, RevokeError, Revoker, revoke_certificate};

/// External account binding policy (RFC 8555 §7.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EabMode {
    Off,
    Optional,
    Required,
}

#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// Scheme, host and port every URL starts with, e.g. `https://127.0.0.1:14000`.
    pub base_url: String,
    pub eab: EabMode,
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    /// The CA's identities in CAA `issue` values (RFC 8659 §4.2); empty turns CAA off.
    pub caa_identities: Vec<String>,
    /// CAA is checked again at finalize for an authorization validated longer ago than this
    /// (BR §3.2.2.8 allows eight hours), by every perspective under the quorum.
    pub caa_recheck_after: Duration,
    pub cert_validity: Duration,
    pub order_lifetime: Duration,
    pub pending_authz_lifetime: Duration,
    pub valid_authz_lifetime: Duration,
    /// How long a challenge POST waits for its validation before answering `processing`.
    pub validation_wait: Duration,
    pub max_identifiers: usize,
    pub max_body_bytes: usize,
    /// Refuse a CSR whose public key was certified before (agency guide R37).
    pub refuse_key_reuse: bool,
    /// R29: failed validations allowed per account, per identifier, per hour (`None`: no limit).
    pub max_failed_validations_per_hour: Option<u32>,
    /// R42's explicit exception: wildcard names may be ordered (validated with dns-01 only);
    /// with EAB, only by accounts whose external account allows them.
    pub allow_wildcards: bool,
    /// Rate limits (see [`limits`]); R29's limit stays `max_failed_validations_per_hour`.
    pub limits: limits::RateLimits,
    /// Which names and addresses may be certified at all (see [`identifier_policy`]).
    pub identifiers: identifier_policy::IdentifierPolicy,
    /// How long finalize waits for its certificate before answering `processing`.
    pub issuance_wait: Duration,
    /// How long after finalize an order may take to be signed, retries included.
    pub issuance_deadline: Duration,
    /// How long an instance holds a job without renewing its lease.
    pub issuance_lease: Duration,
    /// CRL shards per issuer; each new certificate is assigned one from its serial.
    pub crl_shards: u32,
    /// When CRLs are signed and how long they are valid (see [`crl`]).
    pub crl: crl::CrlSettings,
    /// OCSP response validity and the on-demand signing budget (see [`ocsp`]).
    pub ocsp: ocsp::OcspSettings,
    /// The nonce key the instances of one database share (`Store::nonce_key`); `None`: this
    /// instance's own, redemptions kept in memory (an embedded database has one instance).
    pub shared_nonce_key: Option<Vec<u8>>,
    /// STAR (RFC 8739): the terms this server agrees to; `None`: no STAR orders.
    pub star: Option<StarSettings>,
}

impl AcmeConfig {
    pub fn new(base_url: &str) -> Self {
        AcmeConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            eab: EabMode::Optional,
            terms_of_service: None,
            website: None,
            caa_identities: Vec::new(),
            caa_recheck_after: Duration::from_secs(8 * 3600),
            cert_validity: Duration::from_secs(90 * 86400),
            order_lifetime: Duration::from_secs(7 * 86400),
            pending_authz_lifetime: Duration::from_secs(7 * 86400),
            valid_authz_lifetime: Duration::from_secs(30 * 86400),
            validation_wait: Duration::from_secs(2),
            max_identifiers: 100,
            max_body_bytes: 64 * 1024,
            refuse_key_reuse: false,
            max_failed_validations_per_hour: Some(5),
            allow_wildcards: false,
            limits: limits::RateLimits::default(),
            identifiers: identifier_policy::IdentifierPolicy::default(),
            issuance_wait: Duration::from_secs(5),
            issuance_deadline: Duration::from_secs(600),
            issuance_lease: Duration::from_secs(15),
            crl_shards: 16,
            crl: crl::CrlSettings::default(),
            ocsp: ocsp::OcspSettings::default(),
            shared_nonce_key: None,
            star: Some(StarSettings::default()),
        }
    }
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The issuance policy: the agency guide's external admin accounts (R1–R35) plug in here.
/// Every hook is called by the services at the point the guide names; [`OpenPolicy`] allows
/// everything and knows no EAB key.
pub trait Policy: Send + Sync {
    /// Whether the MAC of a binding (RFC 8555 §7.3.4) was made with the key of external account
    /// `kid`: `None` if that account is unknown, suspended, deactivated or expired. Whoever
    /// holds the MAC keys answers (this process, or the signer of a split deployment).
    fn check_mac<'a>(
        &'a self,
        kid: &'a str,
        input: &'a sceau_wire::eab::MacInput,
    ) -> BoxFuture<'a, AcmeResult<Option<bool>>>;
    /// R26, R27, R34, R35: may `account` have these identifiers certified? Called at newOrder,
    /// at finalize and just before signing. Refusals carry a subproblem per identifier.
    fn check_identifiers<'a>(
        &'a self,
        account: &'a sceau_store::AccountRecord,
        identifiers: &'a [sceau_wire::Identifier],
    ) -> BoxFuture<'a, AcmeResult<()>>;
    /// May `account` use this certificate profile?
    fn check_profile<'a>(
        &'a self,
        account: &'a sceau_store::AccountRecord,
        profile: &'a str,
    ) -> BoxFuture<'a, AcmeResult<()>>;

    // ---- added for the external admin accounts (issue 4, sceau-admin) ----
    /// Agency guide R44, R46: when `true`, only the issuing account, another account of the
    /// same external account, or the certificate's key (and only if the certificate's keyUsage
    /// has digitalSignature) may revoke; RFC 8555 §7.6's "holds authorizations for every name"
    /// no longer suffices.
    fn strict_revocation(&self) -> bool {
        false
    }
}

/// No external accounts, no restriction beyond RFC 8555's: an open private network.
pub struct OpenPolicy;

impl Policy for OpenPolicy {
    fn check_mac<'a>(
        &'a self,
        _kid: &'a str,
        _input: &'a sceau_wire::eab::MacInput,
    ) -> BoxFuture<'a, AcmeResult<Option<bool>>> {
        Box::pin(async { Ok(None) })
    }
    fn check_identifiers<'a>(
        &'a self,
        _a: &'a sceau_store::AccountRecord,
        _i: &'a [sceau_wire::Identifier],
    ) -> BoxFuture<'a, AcmeResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn check_profile<'a>(
        &'a self,
        _a: &'a sceau_store::AccountRecord,
        _p: &'a str,
    ) -> BoxFuture<'a, AcmeResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The service root: one per server process, shared by all request handlers.
pub struct Acme {
    pub config: AcmeConfig,
    pub store: Store,
    pub signer: Arc<dyn Signer>,
    /// The primary's validator and the remote perspectives it consults (R28).
    pub perspectives: Perspectives,
    pub nonces: nonce::NoncePool,
    pub limits: limits::Limiter,
    pub queue: queue::Queue,
    /// Wake-ups for the revocation-status jobs (CRLs, OCSP) of this instance.
    pub events: Events,
    /// The OCSP responder's issuers and its responses in memory.
    pub ocsp: ocsp::Responder,
    pub urls: urls::Urls,
    pub policy: Arc<dyn Policy>,
    /// Counters and histograms for `/metrics`.
    pub metrics: metrics::Metrics,
}

impl Acme {
    pub fn new(
        config: AcmeConfig,
        store: Store,
        signer: Arc<dyn Signer>,
        perspectives: Perspectives,
        policy: Arc<dyn Policy>,
    ) -> Arc<Acme> {
        let urls = urls::Urls::new(&config.base_url);
        let limits = limits::Limiter::new(config.limits.clone());
        let ocsp = ocsp::Responder::new(config.ocsp.clone());
        let nonces = match &config.shared_nonce_key {
            Some(key) => nonce::NoncePool::shared(key, ""),
            None => nonce::NoncePool::new(100_000, ""),
        };
        Arc::new(Acme {
            config,
            store,
            signer,
            perspectives,
            nonces,
            limits,
            queue: queue::Queue::new(),
            metrics: metrics::Metrics::default(),
            events: Events::default(),
            ocsp,
            urls,
            policy,
        })
    }
}

/// Notifications between the services and the periodic jobs of one instance: a job waiting
/// on one runs early instead of at its next period (other instances see the change in the
/// database at their next run).
#[derive(Default)]
pub struct Events {
    /// A certificate was revoked (its CRL shard is dirty, its OCSP responses are gone).
    pub revoked: Arc<tokio::sync::Notify>,
    /// A certificate was issued or revoked: it needs new OCSP responses (the OCSP job
    /// waits on this one, the CRL job on `revoked`).
    pub issued: Arc<tokio::sync::Notify>,
}

/// What a service answers; the HTTP edge adds the nonce, `Link: index` and caching headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Body,
    pub location: Option<String>,
    /// `(url, rel)` pairs for `Link` headers (RFC 8555 §7.1: `up`, `next`, `alternate`).
    pub links: Vec<(String, &'static str)>,
    pub retry_after: Option<u64>,
    /// Other response headers (RFC 8739 §3.3's Cert-Not-Before and Cert-Not-After).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Debug)]
pub enum Body {
    Json(serde_json::Value),
    PemChain(String),
    Empty,
}

impl Reply {
    pub fn json(status: u16, value: impl serde::Serialize) -> Self {
        Reply {
            status,
            body: Body::Json(serde_json::to_value(value).expect("wire types serialise")),
            location: None,
            links: Vec::new(),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn location(mut self, url: String) -> Self {
        self.location = Some(url);
        self
    }

    pub fn link(mut self, url: String, rel: &'static str) -> Self {
        self.links.push((url, rel));
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}
