//! Revocation (RFC 8555 §7.6; agency guide R43–R46), and [`revoke_certificate`], the one path
//! every revocation takes: ACME's revokeCert here and `sceau-server admin cert revoke`.
//!
//! Invariants:
//! - The reason is checked by `sceau_wire::reason::end_entity` and nowhere else.
//! - The certificate's state change, its CRL shard's dirty mark, the removal of its pre-signed
//!   OCSP responses and its `certificate.revoked` audit row are one transaction
//!   (`Store::revoke_cert_audited`): no revocation without its record, nor the other way.
//! - With an upstream CA (RA mode) the upstream revokes first; the revocation is recorded only
//!   once it confirmed, and a refusal changes nothing here.
//! - Inside a server, the CRL and OCSP jobs are woken at once (`Events::revoked`); a revocation
//!   made by another process (the admin CLI) is found by every instance's CRL job at its next
//!   run through the dirty mark in the database; no `good` OCSP response signed before the
//!   revocation survives it.

use sceau_store::{AccountRecord, AuditEntry, CertRecord, Store, StoreError, now};
use sceau_wire::reason::{self, ReasonError};
use sceau_wire::{ProblemType, Revocation, b64};

use crate::request::{Verified, VerifiedKey};
use crate::{Acme, AcmeError, AcmeResult, Body, Events, Reply};

/// Who revokes, for the audit trail.
#[derive(Debug, Clone)]
pub struct Revoker<'a> {
    /// `account:<id>`, `certificate-key` or `admin:<actor>`.
    pub by: String,
    /// The ACME account the audit row is filed under [default: the certificate's].
    pub account: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    /// More audit detail (an administrator's comment, the procedure); merged into the row.
    pub detail: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error(transparent)]
    Reason(#[from] ReasonError),
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Store(StoreError),
    /// The upstream CA did not confirm the revocation (RA mode): nothing was recorded.
    #[error("the upstream CA did not revoke certificate {serial}: {detail}")]
    Upstream { serial: String, detail: String },
}

/// Revokes `cert` for `reason` (an RFC 5280 §5.3.1 code, checked here); see the module
/// invariants. `events`: the running server's, to wake its CRL and OCSP jobs. `upstream`: the
/// signing seam when an upstream CA signs (RA mode), which must revoke first; `None` with a
/// local CA.
pub async fn revoke_certificate(
    store: &Store,
    events: Option<&Events>,
    upstream: Option<&dyn sceau_ca::Signer>,
    cert: &CertRecord,
    reason: u8,
    who: &Revoker<'_>,
) -> Result<(), RevokeError> {
    let reason = reason::end_entity(reason)?;
    if cert.revoked_at.is_some() {
        return Err(RevokeError::AlreadyRevoked(cert.serial.clone()));
    }
    if let Some(signer) = upstream.filter(|s| s.upstream()) {
        signer
            .revoke(sceau_ca::RevokeRequest {
                cert_der: cert.der.clone(),
                reason,
            })
            .await
            .map_err(|e| RevokeError::Upstream {
                serial: cert.serial.clone(),
                detail: e.to_string(),
            })?;
    }
    let mut detail = serde_json::Map::new();
    detail.insert("serial".into(), cert.serial.clone().into());
    detail.insert("reason".into(), reason.into());
    detail.insert(
        "reason_name".into(),
        reason::name(reason).unwrap_or("?").into(),
    );
    detail.insert("by".into(), who.by.clone().into());
    for (k, v) in &who.detail {
        detail.insert(k.clone(), v.clone());
    }
    let entry = AuditEntry {
        event: "certificate.revoked",
        account_id: who.account.or(Some(&cert.account_id)),
        client_ip: who.client_ip,
        detail: serde_json::Value::Object(detail),
    };
    store
        .revoke_cert_audited(&cert.id, reason, now(), Some(&entry))
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => RevokeError::AlreadyRevoked(cert.serial.clone()),
            e => RevokeError::Store(e),
        })?;
    entry.log();
    if let Some(events) = events {
        events.revoked.notify_one();
    }
    Ok(())
}

impl Acme {
    pub(super) async fn revoke(&self, req: &Verified, ip: Option<&str>) -> AcmeResult<Reply> {
        let payload: Revocation = req.payload()?;
        let der = b64::decode(&payload.certificate)
            .map_err(|_| AcmeError::malformed("\"certificate\" is not base64url DER"))?;
        let info = sceau_ca::inspect::cert_info(&der)
            .map_err(|e| AcmeError::malformed(format!("\"certificate\": {e}")))?;
        let cert = match self.store.cert_by_serial(&info.serial_hex).await {
            Ok(c) if c.der == der => c,
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(
                    AcmeError::malformed("this certificate was not issued by this server")
                        .with_status(404),
                );
            }
            Err(e) => return Err(e.into()),
        };
        let reason = payload.reason.unwrap_or(reason::UNSPECIFIED);
        // Checked before the rights, as before: a refused reason says why at once.
        reason::end_entity(reason)
            .map_err(|e| AcmeError::new(ProblemType::BadRevocationReason, e.to_string()))?;
        let by = match &req.key {
            VerifiedKey::Account(account) => {
                if !self.may_revoke(account, &cert, &info).await? {
                    return Err(AcmeError::unauthorized(
                        "this account may not revoke this certificate",
                    ));
                }
                format!("account:{}", account.id)
            }
            VerifiedKey::Jwk(jwk) => {
                if !sceau_ca::inspect::spki_matches_jwk(&info.spki_der, jwk) {
                    return Err(AcmeError::unauthorized(
                        "the request is not signed by this certificate's key",
                    ));
                }
                // Policy::strict_revocation (R44): the key may sign for revocation only if its
                // certificate allows digital signatures.
                if self.policy.strict_revocation() && !info.key_usage_digital_signature {
                    return Err(AcmeError::unauthorized(
                        "this certificate's keyUsage lacks digitalSignature, so its key cannot sign a revocation request",
                    ));
                }
                "certificate-key".to_owned()
            }
        };
        // RFC 8739 §3.1.2: a STAR certificate ends by canceling its series, not by revokeCert.
        if self.store.order_by_id(&cert.order_id).await?.star.is_some() {
            return Err(AcmeError::new(
                ProblemType::AutoRenewalRevocationNotSupported,
                "this certificate is one of a STAR series: cancel the series (POST {\"status\": \"canceled\"} to its order) instead of revoking (RFC 8739 §3.1.2)",
            ));
        }
        let account = match &req.key {
            VerifiedKey::Account(a) => Some(a.id.as_str()),
            VerifiedKey::Jwk(_) => None,
        };
        let who = Revoker {
            by,
            account,
            client_ip: ip,
            detail: serde_json::Map::new(),
        };
        revoke_certificate(
            &self.store,
            Some(&self.events),
            Some(self.signer.as_ref()),
            &cert,
            reason,
            &who,
        )
        .await
        .map_err(|e| match e {
            RevokeError::AlreadyRevoked(_) => AcmeError::new(
                ProblemType::AlreadyRevoked,
                "this certificate is already revoked",
            ),
            RevokeError::Reason(e) => {
                AcmeError::new(ProblemType::BadRevocationReason, e.to_string())
            }
            RevokeError::Store(e) => e.into(),
            // Not recorded: the client may ask again once the upstream is back.
            e @ RevokeError::Upstream { .. } => {
                AcmeError::new(ProblemType::ServerInternal, e.to_string())
            }
        })?;
        Ok(Reply {
            status: 200,
            body: Body::Empty,
            location: None,
            links: Vec::new(),
            retry_after: None,
            headers: Vec::new(),
        })
    }

    /// The issuing account, another account bound to the same external account (R46), or an
    /// account holding valid authorizations for every name (RFC 8555 §7.6).
    pub(super) async fn may_revoke(
        &self,
        account: &AccountRecord,
        cert: &CertRecord,
        info: &sceau_ca::inspect::CertInfo,
    ) -> AcmeResult<bool> {
        if cert.account_id == account.id {
            return Ok(true);
        }
        if let Some(kid) = &account.eab_kid {
            let issuer = self.store.account_by_id(&cert.account_id).await?;
            if issuer.eab_kid.as_deref() == Some(kid.as_str()) {
                return Ok(true);
            }
        }
        // Policy::strict_revocation (R46): authorizations alone give no right to revoke.
        if self.policy.strict_revocation() {
            return Ok(false);
        }
        for id in &info.identifiers {
            let (target, wildcard) = id.authorization_target();
            if self
                .store
                .reusable_authz(&account.id, &target, wildcard, now())
                .await?
                .is_none()
            {
                return Ok(false);
            }
        }
        Ok(!info.identifiers.is_empty())
    }
}
