//! The ACME endpoints as services (RFC 8555 §7; RFC 8738; RFC 9773; draft-ietf-acme-profiles),
//! one module per part of the protocol.
//!
//! Invariants:
//! - Validation runs in a spawned task that outlives the request that started it; the request
//!   waits for it at most `validation_wait`, then answers with the challenge as stored.
//! - An order's certificate URL is returned only after the certificate and the order's `valid`
//!   status were committed together.
//! - At start-up [`Acme::recover`] finishes what a crash interrupted: challenges left in
//!   `processing` are validated again, orders left in `processing` are issued from their CSR.

mod accounts;
mod ari;
mod authorizations;
mod finalize;
mod identifiers;
mod orders;
pub(crate) mod recovery;
mod revocation;
pub(crate) mod star;

pub use revocation::{RevokeError, Revoker, revoke_certificate};

use std::sync::Arc;

use sceau_store::{AccountRecord, AuditEntry, AuthzRecord, CertRecord, OrderRecord, StoreError};
use sceau_wire::{Directory, Meta};

use crate::request::KeyRule;
use crate::{Acme, AcmeError, AcmeResult, Body, EabMode, Reply};

/// The POST endpoints, each with the id from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    NewAccount,
    Account(String),
    Orders(String),
    KeyChange,
    NewOrder,
    Order(String),
    Finalize(String),
    Authz(String),
    Challenge(String),
    Cert(String),
    /// Alternate chain `n` (from 1) of a certificate (RFC 8555 §7.4.2).
    CertAlternate(String, usize),
    /// The rolling certificate of a STAR order (RFC 8739 §3.3), by the order's id.
    StarCert(String),
    Revoke,
}

impl Endpoint {
    fn key_rule(&self) -> KeyRule {
        match self {
            Endpoint::NewAccount => KeyRule::Jwk,
            Endpoint::Revoke => KeyRule::Either,
            _ => KeyRule::Kid,
        }
    }
}

pub const PROFILE_SERVER: &str = "tls-server";
pub const PROFILE_SERVER_CLIENT: &str = "tls-server-client";
const ORDERS_PAGE: i64 = 100;

pub(crate) fn spki_sha256(spki: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An object looked up by the id in its URL: `no such {what}` (404) when there is none.
fn found<T>(lookup: Result<T, StoreError>, what: &str) -> AcmeResult<T> {
    lookup.map_err(|e| match e {
        StoreError::NotFound => AcmeError::not_found(what),
        e => e.into(),
    })
}

/// Objects that belong to one account.
trait Owned {
    fn account_id(&self) -> &str;
}

impl Owned for OrderRecord {
    fn account_id(&self) -> &str {
        &self.account_id
    }
}

impl Owned for AuthzRecord {
    fn account_id(&self) -> &str {
        &self.account_id
    }
}

impl Owned for CertRecord {
    fn account_id(&self) -> &str {
        &self.account_id
    }
}

/// An object of `account`'s, looked up by the id in its URL. Another account's object is
/// answered as missing, so that one account cannot learn which ids exist in another.
fn owned<T: Owned>(
    lookup: Result<T, StoreError>,
    account: &AccountRecord,
    what: &str,
) -> AcmeResult<T> {
    let object = found(lookup, what)?;
    if object.account_id() == account.id {
        Ok(object)
    } else {
        Err(AcmeError::not_found(what))
    }
}

impl Acme {
    pub fn directory(&self) -> Directory {
        let u = &self.urls;
        Directory {
            new_nonce: u.new_nonce(),
            new_account: u.new_account(),
            new_order: u.new_order(),
            new_authz: None,
            revoke_cert: u.revoke_cert(),
            key_change: u.key_change(),
            renewal_info: Some(u.renewal_info()),
            meta: Some(Meta {
                terms_of_service: self.config.terms_of_service.clone(),
                website: self.config.website.clone(),
                caa_identities: self.config.caa_identities.clone(),
                external_account_required: self.config.eab == EabMode::Required,
                profiles: [
                    (
                        PROFILE_SERVER.to_owned(),
                        "TLS server certificate: serverAuth, at most 90 days (default)".to_owned(),
                    ),
                    (
                        PROFILE_SERVER_CLIENT.to_owned(),
                        "TLS server and client certificate: serverAuth and clientAuth, for mTLS"
                            .to_owned(),
                    ),
                ]
                .into(),
                auto_renewal: self.config.star.as_ref().map(|s| s.meta()),
            }),
        }
    }

    /// Dispatches a POST after verifying it; `url` is the full request URL.
    pub async fn post(
        self: &Arc<Self>,
        endpoint: Endpoint,
        url: &str,
        body: &[u8],
        client_ip: Option<&str>,
    ) -> AcmeResult<Reply> {
        let req = self.verify(url, body, endpoint.key_rule()).await?;
        match endpoint {
            Endpoint::NewAccount => self.new_account(&req, client_ip).await,
            Endpoint::Account(id) => self.account(&req, &id, client_ip).await,
            Endpoint::Orders(id) => self.orders(&req, &id, url).await,
            Endpoint::KeyChange => self.key_change(&req, client_ip).await,
            Endpoint::NewOrder => self.new_order(&req, client_ip).await,
            Endpoint::Order(id) if req.jws.is_post_as_get() => self.get_order(&req, &id).await,
            // RFC 8739 §3.1.2: the one change an order takes.
            Endpoint::Order(id) => self.cancel_series(&req, &id, client_ip).await,
            Endpoint::StarCert(id) => {
                if !req.jws.is_post_as_get() {
                    return Err(AcmeError::malformed(
                        "certificate download is a POST-as-GET (empty payload)",
                    ));
                }
                self.star_certificate(&id, Some(req.account()?)).await
            }
            Endpoint::Finalize(id) => self.finalize(&req, &id, client_ip).await,
            Endpoint::Authz(id) => self.authz(&req, &id, client_ip).await,
            Endpoint::Challenge(id) => self.challenge(&req, &id, client_ip).await,
            Endpoint::Cert(id) => {
                if !req.jws.is_post_as_get() {
                    return Err(AcmeError::malformed(
                        "certificate download is a POST-as-GET (empty payload)",
                    ));
                }
                let cert = self.owned_cert(req.account()?, &id).await?;
                self.cert_reply(cert, 0)
            }
            Endpoint::CertAlternate(id, n) => {
                if !req.jws.is_post_as_get() {
                    return Err(AcmeError::malformed(
                        "certificate download is a POST-as-GET (empty payload)",
                    ));
                }
                let cert = self.owned_cert(req.account()?, &id).await?;
                self.cert_reply(cert, n)
            }
            Endpoint::Revoke => self.revoke(&req, client_ip).await,
        }
    }

    /// Certificates are public: unauthenticated GET is also served (as Boulder and Pebble do).
    /// `chain` 0 is the certificate with its issuer's chain, `n` its alternate chain `n`.
    pub async fn get_certificate(&self, id: &str, chain: usize) -> AcmeResult<Reply> {
        let cert = found(self.store.cert_by_id(id).await, "certificate")?;
        self.cert_reply(cert, chain)
    }

    /// The URL of chain `n` of certificate `id`: 0 is the certificate URL itself.
    fn cert_chain_url(&self, id: &str, n: usize) -> String {
        match n {
            0 => self.urls.certificate(id),
            n => format!("{}/alt/{n}", self.urls.certificate(id)),
        }
    }

    /// The chains a certificate is offered with: its own (as stored when it was issued), then
    /// the leaf followed by each alternate chain its issuer has now (a cross-signed issuer,
    /// RFC 8555 §7.4.2). Each answer links to every other one with rel="alternate".
    fn cert_reply(&self, cert: CertRecord, chain: usize) -> AcmeResult<Reply> {
        let issuers = self.signer.issuers();
        // Rows of the first versions have no issuer id: their issuer is the certificate that
        // follows the leaf in the stored chain.
        let second = sceau_wire::key::pem_decode_all(&cert.chain_pem, "CERTIFICATE")
            .into_iter()
            .nth(1);
        let issuer = issuers.iter().find(|i| match &cert.issuer_id {
            Some(id) => &i.id == id,
            None => second.as_deref() == Some(i.cert_der.as_slice()),
        });
        let alternates = issuer.map_or(&[][..], |i| i.alternate_chains.as_slice());
        let body = match chain {
            0 => cert.chain_pem,
            n => {
                let alt = alternates
                    .get(n - 1)
                    .ok_or_else(|| AcmeError::not_found("certificate chain"))?;
                sceau_wire::key::pem_encode("CERTIFICATE", &cert.der) + alt
            }
        };
        let links = (0..=alternates.len())
            .filter(|n| *n != chain)
            .map(|n| (self.cert_chain_url(&cert.id, n), "alternate"))
            .collect();
        Ok(Reply {
            status: 200,
            body: Body::PemChain(body),
            location: None,
            links,
            retry_after: None,
            headers: Vec::new(),
        })
    }

    async fn audit(
        &self,
        event: &str,
        account: Option<&str>,
        ip: Option<&str>,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry {
            event,
            account_id: account,
            client_ip: ip,
            detail,
        };
        entry.log();
        // A storage fault is logged by the store, once per episode, not once per request.
        if let Err(e) = self.store.audit(&entry).await
            && e.storage_fault().is_none()
        {
            tracing::error!(event, error = %e, "could not write the audit trail");
        }
    }
}
