//! Recovery after a crash: finishing the validations and issuances a stop interrupted.

use std::sync::Arc;

use crate::{Acme, AcmeResult};

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
        // Interrupted issuances are jobs of the queue: the sweeper takes them once their
        // lease expires. An embedded database has no other server instance, so the leases of
        // the process that stopped are released now rather than waited for.
        let orders = if self.store.is_embedded() {
            self.store
                .release_issuance_leases(&self.queue.owner)
                .await?
        } else {
            0
        };
        Ok((challenges.len(), orders))
    }
}
