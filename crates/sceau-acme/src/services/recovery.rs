//! Recovery after a crash: finishing the validations and issuances a stop interrupted.

use std::sync::Arc;

use crate::{Acme, AcmeResult};

/// How long start-up waits for the validations it resumed.
const RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

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
        // A validation whose outcome cannot be stored yet (a storage fault) keeps retrying on
        // its own; start-up does not wait for the storage to come back.
        let deadline = tokio::time::Instant::now() + RECOVERY_WAIT;
        for t in tasks {
            let _ = tokio::time::timeout_at(deadline, t).await;
        }
        // Interrupted issuances are jobs of the queue: the sweeper takes them once their
        // lease expires. An embedded database has no other server instance, so the leases of
        // the process that stopped are released now rather than waited for.
        let orders = if self.store.is_embedded() {
            match self.store.release_issuance_leases(&self.queue.owner).await {
                Ok(n) => n,
                // Read-only storage at start-up: the sweeper takes the jobs once their leases
                // expire and the storage takes writes again.
                Err(e) if e.storage_fault().is_some() => 0,
                Err(e) => return Err(e.into()),
            }
        } else {
            0
        };
        Ok((challenges.len(), orders))
    }
}
