//! Recovery: finishing the validations and issuances a stopped instance left.
//!
//! Invariants:
//! - A validation in progress is leased to its instance ([`VALIDATION_LEASE`]); it is taken
//!   over (a compare-and-swap on the lease) only once the lease expired, so a live instance's
//!   validation is never run twice. An embedded database has one instance: at its start every
//!   validation left is the stopped process's, taken at once.
//! - Issuances are jobs of the queue, with leases of their own (see `queue`).

use std::sync::Arc;
use std::time::Duration;

use sceau_store::{StoreError, now};

use crate::{Acme, AcmeResult};

/// How long start-up waits for the validations it resumed.
const RECOVERY_WAIT: Duration = Duration::from_secs(60);
/// How long an instance holds a validation: longer than a validation can take (each of the
/// challenge and CAA lookups is bounded by the validator's timeout).
pub const VALIDATION_LEASE: Duration = Duration::from_secs(120);

impl Acme {
    /// Takes over the validations whose lease expired (all of them at the start of an embedded
    /// database's only instance) and runs them; returns their tasks.
    async fn take_over_validations(
        self: &Arc<Self>,
        at_start: bool,
    ) -> AcmeResult<Vec<tokio::task::JoinHandle<Option<sceau_store::ChallengeRecord>>>> {
        let now = if at_start && self.store.is_embedded() {
            i64::MAX
        } else {
            now()
        };
        let until = sceau_store::now() + VALIDATION_LEASE.as_secs() as i64;
        let mut tasks = Vec::new();
        for c in self.store.processing_challenges(now).await? {
            match self.store.take_validation(&c.id, now, until).await {
                Ok(()) => {}
                // Another instance took it first.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            let authz = self.store.authz_by_id(&c.authz_id).await?;
            let account = self.store.account_by_id(&authz.account_id).await?;
            tracing::info!(challenge = %c.id, "taking over a validation its instance left");
            tasks.push(tokio::spawn(Arc::clone(self).validate(account, authz, c)));
        }
        Ok(tasks)
    }

    /// Finishes the work a crash interrupted (see the module invariants). Returns how many
    /// challenges and orders were resumed.
    pub async fn recover(self: &Arc<Self>) -> AcmeResult<(usize, usize)> {
        let tasks = self.take_over_validations(true).await?;
        let challenges = tasks.len();
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
        Ok((challenges, orders))
    }

    /// On a shared database: every instance takes over, every 30 seconds, the validations
    /// whose instance stopped (their lease expired), without waiting for a restart.
    pub fn start_validation_sweeper(self: &Arc<Self>, scheduler: &crate::scheduler::Scheduler) {
        if self.store.is_embedded() {
            return;
        }
        let me = Arc::clone(self);
        scheduler.every(
            "validation-takeover",
            Duration::from_secs(30),
            Duration::from_secs(30),
            crate::scheduler::Scope::EveryInstance,
            move || {
                let me = Arc::clone(&me);
                async move {
                    match me.take_over_validations(false).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.status == Some(503) => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        );
    }
}
