//! Finalize (RFC 8555 §7.4) and issuance: CSR checks, signing, the certificate and its order
//! committed together.

use std::collections::BTreeSet;
use std::time::Duration;

use sceau_ca::{IssueRequest, Profile};
use sceau_store::{AccountRecord, AuditEntry, CertRecord, OrderRecord, StoreError, new_id, now};
use sceau_wire::{Finalize, Identifier, ProblemType, b64};
use serde_json::json;

use super::{PROFILE_SERVER_CLIENT, spki_sha256};
use crate::render::ts;
use crate::request::Verified;
use crate::{Acme, AcmeError, AcmeResult, Reply};

impl Acme {
    pub(super) async fn finalize(
        &self,
        req: &Verified,
        id: &str,
        ip: Option<&str>,
    ) -> AcmeResult<Reply> {
        let account = req.account()?;
        let order = self.owned_order(account, id).await?;
        let order = self.refresh_order(order).await?;
        if order.status != "ready" {
            let mut err = AcmeError::new(
                ProblemType::OrderNotReady,
                format!(
                    "order is {}, not ready: {}",
                    order.status,
                    match order.status.as_str() {
                        "pending" => "complete its authorizations first",
                        "processing" | "valid" => "it was finalized already",
                        _ => "it failed; create a new order",
                    }
                ),
            );
            if order.status == "processing" {
                err.retry_after = Some(1);
            }
            return Err(err);
        }
        // R35: the allow-list is checked again here; a name removed since newOrder is refused.
        self.policy
            .check_identifiers(account, &order.identifiers)
            .await?;
        let payload: Finalize = req.payload()?;
        let der = b64::decode(&payload.csr)
            .map_err(|_| AcmeError::new(ProblemType::BadCsr, "\"csr\" is not base64url DER"))?;
        let parsed = self.check_csr(&order, &der).await?;
        self.store
            .start_processing(&order.id, &payload.csr)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AcmeError::new(
                    ProblemType::OrderNotReady,
                    "order was finalized concurrently",
                ),
                e => e.into(),
            })?;
        let mut processing = order.clone();
        processing.status = "processing".into();
        let order = self
            .issue(processing, parsed.public_key_spki_der, Some(account), ip)
            .await?;
        Ok(self.order_reply(&order))
    }

    /// RFC 8555 §7.4: the CSR's names must be exactly the order's; key policy; R37.
    pub(super) async fn check_csr(
        &self,
        order: &OrderRecord,
        der: &[u8],
    ) -> AcmeResult<sceau_ca::csr::ParsedCsr> {
        let parsed = sceau_ca::csr::parse_and_check_with(der, self.config.allow_wildcards)
            .map_err(|e| AcmeError::new(ProblemType::BadCsr, e.to_string()))?;
        let wanted: BTreeSet<Identifier> = order.identifiers.iter().cloned().collect();
        if parsed.identifiers != wanted {
            let extra: Vec<_> = parsed
                .identifiers
                .difference(&wanted)
                .map(|i| i.value.clone())
                .collect();
            let missing: Vec<_> = wanted
                .difference(&parsed.identifiers)
                .map(|i| i.value.clone())
                .collect();
            let mut detail = "the CSR's names must be exactly the order's identifiers".to_owned();
            if !extra.is_empty() {
                detail += &format!("; not in the order: {}", extra.join(", "));
            }
            if !missing.is_empty() {
                detail += &format!("; missing from the CSR: {}", missing.join(", "));
            }
            return Err(AcmeError::new(ProblemType::BadCsr, detail));
        }
        if self.config.refuse_key_reuse
            && self
                .store
                .spki_seen(&spki_sha256(&parsed.public_key_spki_der))
                .await?
        {
            return Err(AcmeError::new(
                ProblemType::BadCsr,
                "this public key was already certified; generate a new key pair for every certificate (agency guide R37)",
            ));
        }
        Ok(parsed)
    }

    /// Signs and stores; the order must be `processing`. On a signing failure the order
    /// becomes invalid with the error.
    pub(super) async fn issue(
        &self,
        mut order: OrderRecord,
        spki: Vec<u8>,
        account: Option<&AccountRecord>,
        ip: Option<&str>,
    ) -> AcmeResult<OrderRecord> {
        let now_t = time::OffsetDateTime::now_utc();
        let not_before = order
            .not_before
            .map(ts)
            .unwrap_or(now_t - Duration::from_secs(60));
        let not_after = order
            .not_after
            .map(ts)
            .unwrap_or(not_before + self.config.cert_validity);
        let profile = match order.profile.as_deref() {
            Some(PROFILE_SERVER_CLIENT) => Profile::ServerClient,
            _ => Profile::Server,
        };
        let request = IssueRequest {
            public_key_spki_der: spki.clone(),
            identifiers: order.identifiers.clone(),
            not_before,
            not_after,
            profile,
        };
        // R35: last check at the signing gate, after which nothing can change the names.
        let account = match account {
            Some(a) => a.clone(),
            None => self.store.account_by_id(&order.account_id).await?,
        };
        if let Err(e) = self
            .policy
            .check_identifiers(&account, &order.identifiers)
            .await
        {
            let _ = self
                .store
                .set_order_status(&order.id, "processing", "invalid", Some(&e.problem()))
                .await;
            return Err(e);
        }
        let issued = match self.signer.issue(request).await {
            Ok(i) => i,
            Err(e) => {
                let err = match e {
                    // The signer's own re-check of names, key and validity (defence in depth).
                    sceau_ca::CaError::InvalidRequest(detail) => {
                        AcmeError::new(ProblemType::BadCsr, detail)
                    }
                    other => AcmeError::internal("signing the certificate", other),
                };
                let _ = self
                    .store
                    .set_order_status(&order.id, "processing", "invalid", Some(&err.problem()))
                    .await;
                return Err(err);
            }
        };
        let cert = CertRecord {
            id: new_id(),
            serial: issued.serial_hex.clone(),
            account_id: order.account_id.clone(),
            order_id: order.id.clone(),
            der: issued.der,
            chain_pem: issued.chain_pem,
            not_before: issued.not_before.unix_timestamp(),
            not_after: issued.not_after.unix_timestamp(),
            ari_id: issued.ari_id,
            spki_sha256: spki_sha256(&spki),
            revoked_at: None,
            revocation_reason: None,
            replaced_by: None,
            created_at: now(),
            replaces: order.replaces.clone(),
        };
        let audit = AuditEntry {
            event: "certificate.issued",
            account_id: Some(&order.account_id),
            client_ip: ip,
            detail: json!({"order": order.id, "serial": cert.serial, "identifiers": order.identifiers, "not_after": cert.not_after, "profile": order.profile}),
        };
        self.store.finish_order(&cert, &audit).await?;
        audit.log();
        order.status = "valid".into();
        order.cert_id = Some(cert.id.clone());
        Ok(order)
    }

    pub(super) async fn owned_cert(
        &self,
        account: &AccountRecord,
        id: &str,
    ) -> AcmeResult<CertRecord> {
        match self.store.cert_by_id(id).await {
            Ok(c) if c.account_id == account.id => Ok(c),
            Ok(_) | Err(StoreError::NotFound) => Err(AcmeError::not_found("certificate")),
            Err(e) => Err(e.into()),
        }
    }
}
