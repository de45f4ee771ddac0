//! Recovery after a crash: finishing the validations and issuances a stop interrupted.

use std::sync::Arc;

use sceau_wire::{ProblemType, b64};

use crate::{Acme, AcmeError, AcmeResult};

impl Acme {
    /// Finishes the work a crash interrupted (see the module invariants). Returns how many
    /// challenges and orders were resumed.
    pub async fn recover(self: &Arc<Self>) -> AcmeResult<(usize, usize)> {
        let challenges = self.store.processing_challenges().await?;
        let mut tasks = Vec::new();
        for c in &challenges {
            let authz = self.store.authz_by_id(&c.authz_id).await?;
            let account = self.store.account_by_id(&authz.account_id).await?;
            tasks.push(tokio::spawn(Arc::clone(self).validate(
                account,
                authz,
                c.clone(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
        let orders = self.store.processing_orders().await?;
        for order in &orders {
            let resumed = async {
                let csr = order
                    .csr
                    .as_deref()
                    .ok_or_else(|| AcmeError::malformed("no CSR kept"))?;
                let der = b64::decode(csr).map_err(|_| AcmeError::malformed("stored CSR"))?;
                let parsed = sceau_ca::csr::parse_and_check_with(&der, self.config.allow_wildcards)
                    .map_err(|e| AcmeError::new(ProblemType::BadCsr, e.to_string()))?;
                self.issue(order.clone(), parsed.public_key_spki_der, None, None)
                    .await
            };
            if let Err(e) = resumed.await {
                tracing::warn!(order = %order.id, error = %e, "could not resume an interrupted issuance; marking the order invalid");
                let _ = self
                    .store
                    .set_order_status(&order.id, "processing", "invalid", Some(&e.problem()))
                    .await;
            }
        }
        Ok((challenges.len(), orders.len()))
    }
}
