//! Registration-authority mode (issue 13; seeds `000_…` "Mode Autorité d'Enregistrement"): the
//! organisation's existing PKI signs, Sceau validates the ACME challenges, applies the agency's
//! policy and checks what the PKI returns. Sceau then holds no CA key at all.
//!
//! [`RaSigner`] is the [`Signer`] of that mode. It runs in the signing service process (see
//! `sceau_ca::remote`), so the upstream's credentials never enter the process that parses
//! untrusted input; the front end's issuance queue drives it like any signer, retrying the
//! transient failures ([`CaError::Unavailable`]) with backoff until the order's deadline.
//!
//! Invariants:
//! - Before the CSR leaves: it is parsed and checked again (key type and size, identifier
//!   syntax, wildcards: R27, R36, R42), its key is the request's, and the requested validity is
//!   within the maximum (R39).
//! - What comes back is handed out only if [`check::returned_certificate`] accepts it; anything
//!   else is a final refusal ([`CaError::Upstream`]) that names why, logged with the refused
//!   certificate's serial, and recorded by the queue in the order's problem and the audit trail.
//! - A revocation is confirmed by the upstream before the front end records it.
//! - CRLs and OCSP belong to the upstream: [`Signer::issuers`] is empty, so this server's CRL
//!   and OCSP jobs have nothing to sign, and the certificates carry the upstream's URLs.

pub mod acme;
pub mod check;
pub mod cmp;
pub mod command;
pub mod config;

use std::time::Instant;

use sceau_ca::remote::Hello;
use sceau_ca::{
    CaError, CrlRequest, IssueFuture, IssueRequest, IssuerInfo, RevokeRequest, SignFuture, Signer,
};

pub use config::{ConfigError, RaConfig};

enum Upstream {
    Cmp(Box<cmp::CmpSigner>),
    Command(command::CommandSigner),
    Acme(Box<acme::AcmeSigner>),
}

/// The policy the RA re-checks before a CSR leaves (the settings the local CA has too).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_validity: time::Duration,
    pub allow_wildcards: bool,
}

/// The signer of RA mode: an upstream CA behind the checks of this module.
pub struct RaSigner {
    upstream: Upstream,
    roots: check::Roots,
    roots_pem: String,
    limits: Limits,
    attempt: std::time::Duration,
    accept_client_auth: bool,
    description: String,
}

impl RaSigner {
    /// Reads the upstream's roots and credentials and prepares the upstream; nothing is sent.
    pub async fn open(config: &RaConfig, limits: Limits) -> Result<RaSigner, ConfigError> {
        config.check()?;
        let roots = config::read_certs(&config.upstream_roots, "upstream_roots")?;
        let roots_pem = roots
            .iter()
            .map(|d| sceau_wire::key::pem_encode("CERTIFICATE", d))
            .collect();
        let roots = check::Roots::new(roots).map_err(ConfigError)?;
        let upstream = match (&config.cmp, &config.command, &config.acme) {
            (Some(c), _, _) => Upstream::Cmp(Box::new(cmp::CmpSigner::new(c).await?)),
            (_, Some(c), _) => Upstream::Command(command::CommandSigner::new(c)?),
            (_, _, Some(a)) => Upstream::Acme(Box::new(acme::AcmeSigner::new(a)?)),
            _ => unreachable!("checked: one upstream"),
        };
        Ok(RaSigner {
            upstream,
            roots,
            roots_pem,
            limits,
            attempt: config.attempt_timeout(),
            accept_client_auth: config.accept_client_auth,
            description: config.describe(),
        })
    }

    /// What the signing service says once it is ready (see `sceau_ca::remote`).
    pub fn hello(&self) -> Hello {
        Hello {
            root_pem: self.roots_pem.clone(),
            issuer_chain_pem: String::new(),
            root_fingerprint_sha256: sceau_ca::fingerprint_sha256(&self.roots.ders()[0]),
            issuers: Vec::new(),
            staging: false,
            upstream: true,
        }
    }

    /// The upstream, for logs (no credential).
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The checks made before the CSR leaves (see the module invariants).
    fn check_request(&self, req: &IssueRequest) -> Result<Vec<u8>, CaError> {
        let csr = req
            .csr_der
            .clone()
            .ok_or_else(|| CaError::InvalidRequest("the request carries no CSR".into()))?;
        let parsed = sceau_ca::csr::parse_and_check_with(&csr, self.limits.allow_wildcards)
            .map_err(|e| CaError::InvalidRequest(e.to_string()))?;
        if parsed.public_key_spki_der != req.public_key_spki_der {
            return Err(CaError::InvalidRequest(
                "the CSR's key is not the request's".into(),
            ));
        }
        if req.not_after <= req.not_before
            || req.not_after - req.not_before > self.limits.max_validity
        {
            return Err(CaError::InvalidRequest(format!(
                "the requested validity exceeds {} days (R39)",
                self.limits.max_validity.whole_days()
            )));
        }
        Ok(csr)
    }

    async fn issue_checked(&self, req: IssueRequest) -> Result<sceau_ca::Issued, CaError> {
        let csr = self.check_request(&req)?;
        let deadline = Instant::now() + self.attempt;
        let certs = match &self.upstream {
            Upstream::Cmp(c) => {
                c.issue(
                    &csr,
                    &req.public_key_spki_der,
                    req.resume.as_deref(),
                    deadline,
                )
                .await?
            }
            Upstream::Acme(a) => {
                a.issue(&csr, &req.identifiers, self.attempt, req.resume.as_deref())
                    .await?
            }
            Upstream::Command(c) => tokio::time::timeout(self.attempt, c.issue(&req))
                .await
                .map_err(|_| {
                    CaError::Unavailable(format!(
                        "the upstream did not answer within {} s",
                        self.attempt.as_secs()
                    ))
                })??,
        };
        let (leaf, rest) = certs.split_first().expect("at least one certificate");
        let now = time::OffsetDateTime::now_utc();
        match check::returned_certificate(
            &req,
            leaf,
            rest,
            &self.roots,
            self.accept_client_auth,
            now,
        ) {
            Ok(issued) => Ok(issued),
            Err(why) => {
                let serial = sceau_ca::inspect::cert_info(leaf)
                    .map(|i| i.serial_hex)
                    .unwrap_or_else(|_| "?".into());
                tracing::error!(upstream = %self.description, %serial, reason = %why, "refused the certificate the upstream CA returned; it is not handed out");
                Err(CaError::Upstream(format!(
                    "the upstream CA ({}) returned a certificate the registration authority refuses: {why}; it was not handed out (upstream serial {serial})",
                    self.description
                )))
            }
        }
    }
}

fn not_here<T>() -> Result<T, CaError> {
    Err(CaError::InvalidRequest(
        "the upstream CA signs its own CRLs and OCSP responses".into(),
    ))
}

impl Signer for RaSigner {
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a> {
        Box::pin(self.issue_checked(req))
    }

    fn sign_crl<'a>(&'a self, _req: CrlRequest) -> SignFuture<'a, Vec<u8>> {
        Box::pin(async { not_here() })
    }

    fn ocsp_responder<'a>(&'a self, _issuer_id: &'a str) -> SignFuture<'a, Vec<u8>> {
        Box::pin(async { not_here() })
    }

    fn sign_ocsp<'a>(&'a self, _issuer_id: &'a str, _tbs: Vec<u8>) -> SignFuture<'a, Vec<u8>> {
        Box::pin(async { not_here() })
    }

    fn issuers(&self) -> Vec<IssuerInfo> {
        Vec::new()
    }

    fn upstream(&self) -> bool {
        true
    }

    fn revoke<'a>(&'a self, req: RevokeRequest) -> SignFuture<'a, ()> {
        Box::pin(async move {
            let serial = sceau_ca::inspect::cert_info(&req.cert_der)?.serial_hex;
            let done = match &self.upstream {
                Upstream::Cmp(c) => c.revoke(&req.cert_der, req.reason).await,
                Upstream::Command(c) => c.revoke(&req.cert_der, &serial, req.reason).await,
                Upstream::Acme(a) => a.revoke(&req.cert_der, req.reason).await,
            };
            match &done {
                Ok(()) => {
                    tracing::info!(upstream = %self.description, %serial, reason = req.reason, "the upstream CA revoked the certificate")
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.description, %serial, error = %e, "the upstream CA did not revoke the certificate")
                }
            }
            done
        })
    }

    fn issuer_chain_pem(&self) -> String {
        String::new()
    }

    fn root_pem(&self) -> String {
        self.roots_pem.clone()
    }
}
