//! Revocation (RFC 8555 §7.6; agency guide R44, R46).

use sceau_store::{AccountRecord, CertRecord, StoreError, now};
use sceau_wire::{ProblemType, Revocation, b64, reason};
use serde_json::json;

use crate::request::{Verified, VerifiedKey};
use crate::{Acme, AcmeError, AcmeResult, Body, Reply};

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
        if !reason::is_valid(reason) {
            return Err(AcmeError::new(
                ProblemType::BadRevocationReason,
                format!("reason code {reason} is not allowed (RFC 5280 §5.3.1: 0–6, 9, 10)"),
            ));
        }
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
        if cert.revoked_at.is_some() {
            return Err(AcmeError::new(
                ProblemType::AlreadyRevoked,
                "this certificate is already revoked",
            ));
        }
        self.store
            .revoke_cert(&cert.id, reason, now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AcmeError::new(
                    ProblemType::AlreadyRevoked,
                    "this certificate is already revoked",
                ),
                e => e.into(),
            })?;
        self.events.revoked.notify_one();
        let account = match &req.key {
            VerifiedKey::Account(a) => Some(a.id.as_str()),
            VerifiedKey::Jwk(_) => None,
        };
        self.audit(
            "certificate.revoked",
            account.or(Some(&cert.account_id)),
            ip,
            json!({"serial": cert.serial, "reason": reason, "by": by}),
        )
        .await;
        Ok(Reply {
            status: 200,
            body: Body::Empty,
            location: None,
            links: Vec::new(),
            retry_after: None,
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
