//! The one scheduler for periodic jobs (the issuance queue's sweeper, the server certificate's
//! renewal, and later CRLs, STAR renewals, reports).
//!
//! Invariants:
//! - A job of scope [`Scope::EveryInstance`] runs on each instance; one of scope
//!   [`Scope::OneInstance`] runs on one instance at a time: before each run the instance takes
//!   the job's lease in the database (`job_leases`), valid for two periods, and skips the run
//!   when another live instance holds it.
//! - A run never overlaps the next run of the same job on the same instance, and a failing run
//!   is logged and followed by the next one as usual.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sceau_store::{Store, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    EveryInstance,
    OneInstance,
}

type Job = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Runs periodic jobs for one instance (see the module invariants).
#[derive(Clone)]
pub struct Scheduler {
    store: Store,
    owner: String,
}

impl Scheduler {
    /// `owner` names this instance in the job leases.
    pub fn new(store: Store, owner: &str) -> Scheduler {
        Scheduler {
            store,
            owner: owner.to_owned(),
        }
    }

    /// Runs `job` every `period` (the first run after `first_after`).
    pub fn every<F, Fut>(
        &self,
        name: &'static str,
        period: Duration,
        first_after: Duration,
        scope: Scope,
        job: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.every_or_woken(name, period, first_after, scope, None, job)
    }

    /// [`Scheduler::every`], and also soon after `wake` is notified (work became due early).
    pub fn every_or_woken<F, Fut>(
        &self,
        name: &'static str,
        period: Duration,
        first_after: Duration,
        scope: Scope,
        wake: Option<Arc<tokio::sync::Notify>>,
        job: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let job: Job = Arc::new(move || Box::pin(job()));
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(first_after).await;
            loop {
                if me.may_run(name, scope, period).await
                    && let Err(e) = job().await
                {
                    tracing::warn!(job = name, error = %e, "periodic job failed; it runs again at its next period");
                }
                match &wake {
                    Some(w) => {
                        tokio::select! {
                            () = tokio::time::sleep(period) => {}
                            () = w.notified() => {
                                // Let the work that woke us become due.
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                    None => tokio::time::sleep(period).await,
                }
            }
        })
    }

    async fn may_run(&self, name: &str, scope: Scope, period: Duration) -> bool {
        if scope == Scope::EveryInstance {
            return true;
        }
        let now = now();
        let until = now + 2 * period.as_secs().max(1) as i64;
        match self
            .store
            .take_job_lease(name, &self.owner, until, now)
            .await
        {
            Ok(mine) => mine,
            Err(e) => {
                tracing::debug!(job = name, error = %e, "could not take the job's lease");
                false
            }
        }
    }
}
