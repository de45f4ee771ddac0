//! ACME challenge validation for `sceau-server`: http-01 (RFC 8555 §8.3), dns-01 (RFC 8555
//! §8.4), tls-alpn-01 (RFC 8737), IP identifiers (RFC 8738) and CAA (RFC 8659, RFC 8657).
//!
//! Invariants:
//! - Every DNS question goes to one place: `ValidatorConfig::dns_server` if set, else the system
//!   resolver. Answers are not cached (cache size 0, TTLs clamped to 0), so a validation always
//!   sees the records as they are now.
//! - Each check either returns `Ok(())` or a [`ValidationError`] whose `kind` is the ACME problem
//!   type to put in the challenge's `error` and whose `detail` is one human line naming the
//!   identifier, host and port involved.
//! - Error kinds follow one rule across challenges: we could not reach or resolve the target →
//!   `connection`/`dns`/`tls`; the target answered but had nothing for us (HTTP status other than
//!   200, a TXT name without TXT records) → `unauthorized` (an NXDOMAIN TXT name is `dns`); the
//!   target answered with something wrong (body, TXT
//!   value, certificate) → `incorrectResponse`; a CAA policy forbids us → `caa`; the identifier
//!   cannot be validated this way at all (wildcard with http-01, IP with dns-01) → `malformed`.
//! - Every connection validation makes (http-01's first request and each redirect,
//!   tls-alpn-01) goes only to addresses `ValidatorConfig::address_policy` allows (see
//!   [`AddressPolicy`]); a refused address is a `connection` problem naming it and why.
//! - Details never quote what a target sent (no body, TXT value or certificate names): the
//!   target may be an internal service the client could not read otherwise (RFC 8555 §10.4).
//! - Nothing here trusts TLS certificates: tls-alpn-01 certificates are self-signed by design and
//!   http-01 may redirect to https with any certificate (RFC 8555 §8.3, §10.2). The handshake
//!   signature is still checked, so the peer holds the certificate's key.

mod addrs;
pub mod caa;
mod dns;
mod dns01;
mod error;
mod http01;
mod ident;
pub mod perspectives;
mod tlsalpn01;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use addrs::{
    AddressPolicy, AddressRefused, InterfacesError, IpNet, NetParseError, RefusalReason,
};
pub use caa::{CaaProperty, IssueValue, decide as caa_decide, parse_issue_value};
pub use error::{BuildError, ValidationError};
use sceau_wire::Identifier;
pub use tlsalpn01::{ACME_IDENTIFIER_OID_STR, ACME_TLS_ALPN};

/// Digest a dns-01 TXT record must carry: base64url(SHA-256(key authorization)) (RFC 8555 §8.4).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    sceau_wire::b64::encode(sha256(key_authorization.as_bytes()))
}

/// SHA-256 of the key authorization, as carried in the acmeIdentifier extension (RFC 8737 §3).
pub fn tls_alpn01_digest(key_authorization: &str) -> [u8; 32] {
    sha256(key_authorization.as_bytes())
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// How and where validations are performed.
#[derive(Clone, Debug)]
pub struct ValidatorConfig {
    /// Every lookup (A/AAAA/TXT/CAA/CNAME) goes to this server over UDP, with TCP for truncated
    /// answers; `None` uses the system resolver (`/etc/resolv.conf`, and `/etc/hosts`).
    pub dns_server: Option<SocketAddr>,
    /// Port for http-01 requests: 80 in production (RFC 8555 §8.3); tests use a high port.
    pub http01_port: u16,
    /// Port for tls-alpn-01 connections: 443 in production (RFC 8737 §3).
    pub tlsalpn01_port: u16,
    /// Budget for one validation attempt (DNS, connection, transfer).
    pub timeout: Duration,
    /// Our issuer domain names as they appear in CAA `issue` values (RFC 8659 §4.2); empty turns
    /// CAA checking off.
    pub caa_identities: Vec<String>,
    /// Which addresses validation may connect to; the default refuses loopback, link-local and
    /// the like, and the server adds its own listening addresses.
    pub address_policy: AddressPolicy,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            dns_server: None,
            http01_port: 80,
            tlsalpn01_port: 443,
            timeout: Duration::from_secs(10),
            caa_identities: Vec::new(),
            address_policy: AddressPolicy::default(),
        }
    }
}

/// Performs challenge validations; cheap to clone, clones share the HTTP client and resolver.
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ValidatorConfig,
    dns: dns::Dns,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
}

impl Validator {
    pub fn new(cfg: ValidatorConfig) -> Result<Validator, BuildError> {
        let dns = dns::Dns::new(cfg.dns_server, cfg.timeout)?;
        let http = http01::client(&cfg, dns.clone())?;
        let tls = tlsalpn01::client_config()?;
        Ok(Validator {
            inner: Arc::new(Inner {
                cfg,
                dns,
                http,
                tls,
            }),
        })
    }

    pub fn config(&self) -> &ValidatorConfig {
        &self.inner.cfg
    }

    /// RFC 8555 §8.3 (RFC 8738 §7 for IP identifiers): GET
    /// `http://<host>:<http01_port>/.well-known/acme-challenge/<token>` must answer 200 with the
    /// key authorization (trailing whitespace ignored). Redirects (at most 10) are followed only
    /// to http/https on ports 80, 443 or the configured http-01 port, and only to addresses the
    /// address policy allows.
    pub async fn http01(
        &self,
        id: &Identifier,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let inner = &self.inner;
        with_timeout(inner.cfg.timeout, id, "http-01", async {
            http01::validate(&inner.http, &inner.cfg, id, token, key_authorization).await
        })
        .await
    }

    /// RFC 8555 §8.4: a TXT record at `_acme-challenge.<domain>` (CNAMEs followed) must equal
    /// base64url(SHA-256(key authorization)).
    pub async fn dns01(
        &self,
        id: &Identifier,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let inner = &self.inner;
        with_timeout(inner.cfg.timeout, id, "dns-01", async {
            dns01::validate(&inner.dns, id, key_authorization).await
        })
        .await
    }

    /// RFC 8737 §3 (RFC 8738 §6 for IP identifiers): TLS to `<host>:<tlsalpn01_port>` with SNI
    /// and ALPN `acme-tls/1`; the certificate must name exactly the identifier and carry the
    /// critical acmeIdentifier extension with SHA-256(key authorization).
    pub async fn tls_alpn01(
        &self,
        id: &Identifier,
        key_authorization: &str,
    ) -> Result<(), ValidationError> {
        let inner = &self.inner;
        with_timeout(inner.cfg.timeout, id, "tls-alpn-01", async {
            tlsalpn01::validate(&inner.dns, &inner.tls, &inner.cfg, id, key_authorization).await
        })
        .await
    }

    /// RFC 8659 with RFC 8657: may we issue for `id`, requested by `account_uri`, validated with
    /// `method` (e.g. `http-01`)? IP identifiers and an empty `caa_identities` always pass.
    /// Policy refusals are `caa`; failed lookups (SERVFAIL, timeout) are `dns` and refuse too.
    /// The CAA records relevant to `id` and what they mean for this CA (agency guide R7),
    /// for a person to read; issuance itself uses [`Validator::caa`].
    pub async fn caa_report(&self, id: &Identifier) -> caa::CaaReport {
        let inner = &self.inner;
        match tokio::time::timeout(
            inner.cfg.timeout,
            caa::report(&inner.dns, &inner.cfg.caa_identities, id),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => caa::CaaReport {
                at: None,
                records: Vec::new(),
                verdict: format!("the CAA lookup timed out after {:?}", inner.cfg.timeout),
            },
        }
    }

    pub async fn caa(
        &self,
        id: &Identifier,
        account_uri: &str,
        method: &str,
    ) -> Result<(), ValidationError> {
        let identities = &self.inner.cfg.caa_identities;
        self.caa_for(identities, id, account_uri, method).await
    }

    /// [`Validator::caa`] for the CA `identities` (a remote perspective checks for the
    /// primary's identities, which it is sent with each check).
    pub async fn caa_for(
        &self,
        identities: &[String],
        id: &Identifier,
        account_uri: &str,
        method: &str,
    ) -> Result<(), ValidationError> {
        let inner = &self.inner;
        if identities.is_empty() || id.is_ip() {
            return Ok(());
        }
        with_timeout(inner.cfg.timeout, id, "CAA check", async {
            caa::check(&inner.dns, identities, id, account_uri, method).await
        })
        .await
    }
}

async fn with_timeout(
    timeout: Duration,
    id: &Identifier,
    what: &str,
    fut: impl Future<Output = Result<(), ValidationError>>,
) -> Result<(), ValidationError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(res) => res,
        Err(_) => Err(ValidationError::new(
            sceau_wire::ProblemType::Connection,
            format!("{what} for {}: timed out after {timeout:?}", id.value),
        )),
    }
}
