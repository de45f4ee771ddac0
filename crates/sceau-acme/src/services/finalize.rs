//! Finalize (RFC 8555 §7.4): the order's state, the CSR's checks (names, key policy, R37,
//! §11.1), then the job handed to the issuance queue (see `crate::queue`), and certificate
//! download.

use std::collections::BTreeSet;
use std::sync::Arc;

use sceau_store::{AccountRecord, CertRecord, IssueJob, OrderRecord, StoreError, now};
use sceau_wire::{Finalize, Identifier, ProblemType, b64};

use super::{owned, spki_sha256};
use crate::request::Verified;
use crate::{Acme, AcmeError, AcmeResult, Reply};

impl Acme {
    pub(super) async fn finalize(
        self: &Arc<Self>,
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
        self.recheck_caa(account, &order, ip).await?;
        // The job: the order processing with its CSR, leased to this instance, its serial
        // reserved, in one commit (see `queue`).
        let serial = crate::queue::new_serial();
        let now = now();
        let lease_until = now + self.config.issuance_lease.as_secs() as i64;
        let deadline = now + self.config.issuance_deadline.as_secs() as i64;
        self.store
            .enqueue_issuance(
                &order.id,
                &payload.csr,
                &self.queue.owner,
                lease_until,
                deadline,
                &serial,
                now,
            )
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
        processing.csr = Some(payload.csr.clone());
        let job = IssueJob {
            order: processing,
            serial,
            attempts: 1,
            deadline,
            ticket: None,
        };
        // The job outlives this request; the request waits for it a little (a quick signer
        // answers `valid` at once), else answers `processing` with Retry-After (§7.4).
        let task = tokio::spawn(Arc::clone(self).run_issue(
            job,
            Some((account.clone(), parsed.public_key_spki_der)),
            ip.map(str::to_owned),
        ));
        let order = match tokio::time::timeout(self.config.issuance_wait, task).await {
            Ok(Ok(Some(done))) => done,
            _ => self.store.order_by_id(&order.id).await?,
        };
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
        // RFC 8555 §11.1: an account key must not be certified, whichever account it is of.
        // The key must also be in its DER form (RFC 5280 §4.1: certificates are DER), so that
        // newAccount and keyChange can find every certified key by the hash of its encodings.
        if let Some(jwk) = sceau_ca::inspect::jwk_of_spki(&parsed.public_key_spki_der) {
            if !sceau_ca::inspect::spki_der_candidates(&jwk).contains(&parsed.public_key_spki_der) {
                return Err(AcmeError::new(
                    ProblemType::BadCsr,
                    "the CSR's public key is not DER-encoded (RFC 5280 §4.1, RFC 5480, RFC 3279, RFC 8410)",
                ));
            }
            match self.store.account_by_thumbprint(&jwk.thumbprint()).await {
                Ok(_) => {
                    return Err(AcmeError::new(
                        ProblemType::BadCsr,
                        "the CSR's public key is an ACME account key; an account key must never be certified (RFC 8555 §11.1): generate a separate key for the certificate",
                    ));
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(parsed)
    }

    pub(super) async fn owned_cert(
        &self,
        account: &AccountRecord,
        id: &str,
    ) -> AcmeResult<CertRecord> {
        owned(self.store.cert_by_id(id).await, account, "certificate")
    }
}
