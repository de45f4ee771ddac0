//! The durable issuance queue: the one path every certificate takes.
//!
//! finalize checks everything, then commits the order `processing` with its CSR, a lease for
//! this instance and a reserved serial number (`Store::enqueue_issuance`), and runs the job at
//! once; the request waits for it at most `issuance_wait` (a quick signer answers `valid` in
//! the same response), then answers `processing` with `Retry-After`. A sweeper on every
//! instance takes jobs whose lease expired or whose retry is due.
//!
//! Invariants:
//! - A job is signed only under its lease, renewed while the signer works; every change of the
//!   job is a compare-and-swap on (owner, serial), so a stalled instance can change nothing
//!   once another took the job over.
//! - The serial number of an attempt is in the database before the signer sees the request,
//!   and a local signer signs exactly that serial (an upstream CA in RA mode chooses its own,
//!   which the reserved one records when it ends `issued`). An attempt ends with its serial `issued`,
//!   `failed` or `abandoned` (see `sceau-store`'s queue), never unaccounted for.
//! - The signer refusing (`InvalidRequest`) or the policy refusing at the signing gate (R35)
//!   makes the order `invalid` at once; any other failure is retried with a growing delay
//!   (1 s, doubling, at most 30 s) until the order's deadline, after which the order is
//!   `invalid` with a problem that names the last error.
//! - A certificate that was signed is never signed again because storage failed: its commit
//!   is retried (with the lease renewed) until storage is back or the lease is lost.
//! - An upstream CA still at work (RA mode, `CaError::Pending`) is asked again at the time it
//!   gave (1 s to 1 h, never past the deadline) with the ticket it gave, which is stored with
//!   the job: that upstream transaction is continued, never doubled by a second request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sceau_ca::{CaError, IssueRequest, Profile};
use sceau_store::{
    AccountRecord, AuditEntry, CertRecord, IssueJob, OrderRecord, SerialOutcome, StoreError,
    new_id, now,
};
use sceau_wire::{Problem, ProblemType, b64};
use serde_json::json;

use crate::render::ts;
use crate::services::{PROFILE_SERVER_CLIENT, spki_sha256, star};
use crate::{Acme, AcmeError};

/// Jobs one instance signs at once.
const MAX_RUNNING: usize = 64;

/// This instance's part of the queue.
pub struct Queue {
    /// This instance's lease owner name: random, new at every start.
    pub owner: String,
    running: Mutex<HashSet<String>>,
    slots: tokio::sync::Semaphore,
    /// Wakes the sweeper before its next tick (a retry is due sooner).
    pub wake: Arc<tokio::sync::Notify>,
}

impl Queue {
    pub fn new() -> Queue {
        Queue {
            owner: format!("instance-{}", new_id()),
            running: Mutex::new(HashSet::new()),
            slots: tokio::sync::Semaphore::new(MAX_RUNNING),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Jobs this instance is running now.
    pub fn running(&self) -> usize {
        self.running.lock().expect("queue lock").len()
    }
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

/// 16 random octets, top bit clear and first octet non-zero (a positive INTEGER of exactly
/// 16 octets, RFC 5280 §4.1.2.2; at least 64 random bits, CA/B BR §7.1), lowercase hex.
pub fn new_serial() -> String {
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).expect("OS random source");
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 1;
    }
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

/// The CRL shard of a certificate: its serial's random octets spread certificates evenly
/// over the shards, and the same serial always gives the same shard.
pub fn crl_shard(serial_hex: &str, shards: u32) -> u32 {
    let octets = unhex(serial_hex).unwrap_or_default();
    let mut head = [0u8; 4];
    for (i, b) in octets.iter().skip(1).take(4).enumerate() {
        head[i] = *b;
    }
    u32::from_be_bytes(head) % shards.max(1)
}

use sceau_wire::hex::decode as unhex;

/// How an attempt ended.
enum Attempt {
    Issued(Box<OrderRecord>),
    /// Permanent: the order becomes invalid with this problem.
    Refused(Problem, SerialOutcome),
    /// Transient: try again later.
    Retry(String, SerialOutcome),
    /// The upstream CA (RA mode) has the request and is still at it: ask again after this many
    /// seconds, continuing the transaction of `ticket`.
    Wait {
        ticket: String,
        after: i64,
        detail: String,
    },
    /// The lease was lost: another instance has the job now.
    Lost,
}

/// The longest the queue waits before it asks a waiting upstream again, whatever it says.
const MAX_UPSTREAM_WAIT: i64 = 3600;

fn backoff(attempts: i64) -> i64 {
    (1i64 << attempts.clamp(1, 6).saturating_sub(1)).min(30)
}

impl Acme {
    /// Runs one job to its end under this instance's lease; returns the order once `valid`.
    /// `checked`: what finalize already verified in this process (the account, the CSR's
    /// public key), so the fast path does not read or verify them twice.
    pub(crate) async fn run_issue(
        self: Arc<Self>,
        job: IssueJob,
        checked: Option<(AccountRecord, Vec<u8>)>,
        ip: Option<String>,
    ) -> Option<OrderRecord> {
        let id = job.order.id.clone();
        if !self
            .queue
            .running
            .lock()
            .expect("queue lock")
            .insert(id.clone())
        {
            return None;
        }
        let _permit = self.queue.slots.acquire().await.ok();
        let outcome = self.attempt(&job, checked, ip.as_deref()).await;
        let result = self.settle(&job, outcome).await;
        self.queue.running.lock().expect("queue lock").remove(&id);
        result
    }

    async fn attempt(
        &self,
        job: &IssueJob,
        checked: Option<(AccountRecord, Vec<u8>)>,
        ip: Option<&str>,
    ) -> Attempt {
        let order = &job.order;
        let (account, spki) = match checked {
            Some((account, spki)) => (Some(account), spki),
            None => match order
                .csr
                .as_deref()
                .and_then(|c| b64::decode(c).ok())
                .map(|der| sceau_ca::csr::parse_and_check_with(&der, self.config.allow_wildcards))
            {
                Some(Ok(parsed)) => (None, parsed.public_key_spki_der),
                Some(Err(e)) => {
                    return Attempt::Refused(
                        Problem::new(ProblemType::BadCsr, e.to_string()),
                        SerialOutcome::Failed,
                    );
                }
                None => {
                    return Attempt::Refused(
                        Problem::new(ProblemType::ServerInternal, "the order's CSR is missing"),
                        SerialOutcome::Failed,
                    );
                }
            },
        };
        // R35: the last check at the signing gate, after which nothing can change the names.
        let account = match account {
            Some(a) => a,
            None => match self.store.account_by_id(&order.account_id).await {
                Ok(a) => a,
                Err(e) => return Attempt::Retry(e.to_string(), SerialOutcome::Failed),
            },
        };
        if let Err(e) = self
            .policy
            .check_identifiers(&account, &order.identifiers)
            .await
        {
            if e.kind == ProblemType::ServerInternal {
                return Attempt::Retry(e.detail, SerialOutcome::Failed);
            }
            return Attempt::Refused(e.problem(), SerialOutcome::Failed);
        }
        let now_t = time::OffsetDateTime::now_utc();
        // RFC 8739 §3.5: a STAR series' certificate of this nominal renewal date.
        let first = order.cert_id.is_none();
        let star_nrd = order
            .star
            .as_ref()
            .map(|t| star::nominal(t, first, now_t.unix_timestamp()));
        let (not_before, not_after) = match (&order.star, star_nrd) {
            (Some(t), Some(nrd)) => {
                let (nb, na) = star::validity(t, nrd, first);
                (ts(nb), ts(na))
            }
            _ => {
                let not_before = order
                    .not_before
                    .map(ts)
                    .unwrap_or(now_t - Duration::from_secs(60));
                let not_after = order
                    .not_after
                    .map(ts)
                    .unwrap_or(not_before + self.config.cert_validity);
                (not_before, not_after)
            }
        };
        let upstream = self.signer.upstream();
        let request = IssueRequest {
            public_key_spki_der: spki.clone(),
            identifiers: order.identifiers.clone(),
            not_before,
            not_after,
            profile: match order.profile.as_deref() {
                Some(PROFILE_SERVER_CLIENT) => Profile::ServerClient,
                _ => Profile::Server,
            },
            serial: unhex(&job.serial),
            crl_shard: Some(crl_shard(&job.serial, self.config.crl_shards)),
            csr_der: if upstream {
                order.csr.as_deref().and_then(|c| b64::decode(c).ok())
            } else {
                None
            },
            // R35: the signing process checks the account and its names again, for itself.
            gate: Some(sceau_ca::GateInfo {
                account_id: order.account_id.clone(),
                profile: order.profile.clone(),
            }),
            resume: job.ticket.clone(),
        };
        let started = std::time::Instant::now();
        let signed = self.with_lease(job, self.signer.issue(request)).await;
        self.metrics.signer_latency.observe(started.elapsed());
        let issued = match signed {
            None => return Attempt::Lost,
            Some(Ok(i)) => i,
            // The signer's own re-check of names, key and validity (defence in depth).
            Some(Err(CaError::InvalidRequest(detail))) => {
                return Attempt::Refused(
                    Problem::new(ProblemType::BadCsr, detail),
                    SerialOutcome::Failed,
                );
            }
            // The signing process's own policy check refused (R35): final.
            Some(Err(CaError::Gate(detail))) => {
                return Attempt::Refused(
                    Problem::new(ProblemType::Unauthorized, detail),
                    SerialOutcome::Failed,
                );
            }
            // The upstream CA refused, or sent what the RA refuses (RA mode): final, with the
            // upstream's own words.
            Some(Err(CaError::Upstream(detail))) => {
                return Attempt::Refused(
                    Problem::new(ProblemType::ServerInternal, detail),
                    SerialOutcome::Failed,
                );
            }
            Some(Err(CaError::Pending {
                ticket,
                after,
                detail,
            })) => {
                return Attempt::Wait {
                    ticket,
                    after: after.as_secs() as i64,
                    detail,
                };
            }
            // It may have signed before it stopped: the serial's outcome is unknown.
            Some(Err(e @ CaError::Unavailable(_))) => {
                return Attempt::Retry(e.to_string(), SerialOutcome::Abandoned);
            }
            Some(Err(e)) => return Attempt::Retry(e.to_string(), SerialOutcome::Failed),
        };
        if issued.serial_hex != job.serial && !upstream {
            // Never hand out a certificate whose serial the queue did not reserve (an
            // upstream CA chooses its own; the reserved serial then records it).
            return Attempt::Refused(
                Problem::new(
                    ProblemType::ServerInternal,
                    "the signer did not use the reserved serial number",
                ),
                SerialOutcome::Abandoned,
            );
        }
        if upstream {
            // An upstream that hands out a certificate twice (a fixed answer, a replay) must
            // not make two orders share one certificate, nor look like a lost lease.
            match self.store.cert_by_serial(&issued.serial_hex).await {
                Ok(other) => {
                    tracing::error!(order = %order.id, serial = %issued.serial_hex, other_order = %other.order_id, "the upstream CA returned a certificate already handed out");
                    return Attempt::Refused(
                        Problem::new(
                            ProblemType::ServerInternal,
                            format!(
                                "the upstream CA returned a certificate already handed out for another order (upstream serial {}); it was not handed out again",
                                issued.serial_hex
                            ),
                        ),
                        SerialOutcome::Failed,
                    );
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Attempt::Retry(e.to_string(), SerialOutcome::Failed),
            }
        }
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
            issuer_id: Some(issued.issuer_id),
            // The upstream CA publishes its own CRLs (RA mode): no shard of ours.
            crl_shard: (!upstream)
                .then(|| i64::from(crl_shard(&job.serial, self.config.crl_shards))),
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
            detail: json!({"order": order.id, "serial": cert.serial, "identifiers": order.identifiers, "not_after": cert.not_after, "profile": order.profile, "issuer": cert.issuer_id, "attempt": job.attempts, "star": order.star.is_some()}),
        };
        let star_next = match (&order.star, star_nrd) {
            (Some(t), Some(nrd)) => star::after(t, nrd),
            _ => (None, None),
        };
        // Signed: store it, however long storage takes to come back; never sign it again.
        let stored = self
            .with_lease(
                job,
                crate::error::until_stored(|| {
                    self.store.finish_issuance(
                        &cert,
                        &job.serial,
                        &self.queue.owner,
                        &audit,
                        star_next,
                    )
                }),
            )
            .await;
        match stored {
            Some(Ok(())) => {
                audit.log();
                self.events.issued.notify_one();
                let mut done = order.clone();
                done.status = "valid".into();
                done.cert_id = Some(cert.id.clone());
                Attempt::Issued(Box::new(done))
            }
            None | Some(Err(StoreError::Conflict(_))) => Attempt::Lost,
            Some(Err(e)) => {
                tracing::error!(order = %order.id, serial = %cert.serial, error = %e, "a signed certificate could not be stored; its serial is abandoned");
                Attempt::Retry(e.to_string(), SerialOutcome::Abandoned)
            }
        }
    }

    /// Runs `work` while renewing the job's lease every third of its length; `None` when the
    /// lease was lost meanwhile (another instance took the job over).
    async fn with_lease<T>(&self, job: &IssueJob, work: impl Future<Output = T>) -> Option<T> {
        let lease = self.config.issuance_lease;
        let renew = async {
            loop {
                tokio::time::sleep(lease / 3).await;
                let until = now() + lease.as_secs() as i64;
                match self
                    .store
                    .renew_issuance_lease(&job.order.id, &self.queue.owner, &job.serial, until)
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::Conflict(_)) => return,
                    // Storage is away: keep trying; nobody can take the job while it is.
                    Err(_) => {}
                }
            }
        };
        tokio::select! {
            out = work => Some(out),
            () = renew => None,
        }
    }

    /// Records how an attempt ended.
    async fn settle(&self, job: &IssueJob, outcome: Attempt) -> Option<OrderRecord> {
        let order = &job.order;
        let owner = &self.queue.owner;
        let now = now();
        let (problem, serial_outcome) = match outcome {
            Attempt::Issued(done) => {
                self.metrics
                    .issued
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some(*done);
            }
            Attempt::Lost => {
                tracing::warn!(order = %order.id, "another instance took this issuance over");
                return None;
            }
            Attempt::Retry(error, serial_outcome) if now < job.deadline => {
                let next = now + backoff(job.attempts);
                tracing::warn!(order = %order.id, attempt = job.attempts, retry_in = next - now, %error, "signing failed; retrying");
                // A poll that failed leaves the upstream's transaction as it was: keep it.
                self.release(
                    job,
                    serial_outcome,
                    &error,
                    job.ticket.as_deref(),
                    next,
                    now,
                )
                .await;
                return None;
            }
            Attempt::Wait {
                ticket,
                after,
                detail,
            } if now < job.deadline => {
                // The upstream's own checkAfter, within reason, and never past the deadline.
                let next = (now + after.clamp(1, MAX_UPSTREAM_WAIT)).min(job.deadline);
                tracing::info!(order = %order.id, attempt = job.attempts, ask_again_in = next - now, %detail, "the upstream CA is still working on the request");
                let error = format!("the upstream CA is still working on the request: {detail}");
                self.release(job, SerialOutcome::Failed, &error, Some(&ticket), next, now)
                    .await;
                return None;
            }
            Attempt::Wait { detail, .. } => (
                Problem::new(
                    ProblemType::ServerInternal,
                    format!(
                        "the upstream CA had not issued the certificate within {} s of finalize, after {} attempts: {detail}",
                        self.config.issuance_deadline.as_secs(),
                        job.attempts
                    ),
                ),
                SerialOutcome::Failed,
            ),
            Attempt::Retry(error, serial_outcome) => (
                Problem::new(
                    ProblemType::ServerInternal,
                    format!(
                        "the certificate could not be signed within {} s of finalize, after {} attempts: {error}",
                        self.config.issuance_deadline.as_secs(),
                        job.attempts
                    ),
                ),
                serial_outcome,
            ),
            Attempt::Refused(problem, serial_outcome) => (problem, serial_outcome),
        };
        let audit = AuditEntry {
            event: "certificate.refused",
            account_id: Some(&order.account_id),
            client_ip: None,
            detail: json!({"order": order.id, "serial": job.serial, "problem": problem.to_string()}),
        };
        match crate::error::until_stored(|| {
            self.store.fail_issuance(
                &order.id,
                owner,
                &job.serial,
                serial_outcome,
                &problem,
                &audit,
                now,
            )
        })
        .await
        {
            Ok(()) => {
                audit.log();
                self.metrics
                    .issuance_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(order = %order.id, error = %e, "could not record the refusal"),
        }
        None
    }

    /// Hands the job back to the queue for an attempt at `next` that continues `ticket`.
    async fn release(
        &self,
        job: &IssueJob,
        serial_outcome: SerialOutcome,
        error: &str,
        ticket: Option<&str>,
        next: i64,
        now: i64,
    ) {
        let r = crate::error::until_stored(|| {
            self.store.retry_issuance(
                &job.order.id,
                &self.queue.owner,
                &job.serial,
                serial_outcome,
                error,
                ticket,
                next,
                now,
            )
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(order = %job.order.id, error = %e, "could not schedule the next attempt");
        }
        self.queue.wake.notify_one();
    }

    /// One sweep: takes the jobs that are due and runs them; returns how many it took.
    pub async fn sweep_queue(self: &Arc<Self>) -> Result<usize, AcmeError> {
        let free = self.queue.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = now();
        let jobs = self
            .store
            .claim_issuance(
                &self.queue.owner,
                now + self.config.issuance_lease.as_secs() as i64,
                now + self.config.issuance_deadline.as_secs() as i64,
                now,
                free as i64,
                new_serial,
            )
            .await?;
        let n = jobs.len();
        for job in jobs {
            tokio::spawn(Arc::clone(self).run_issue(job, None, None));
        }
        Ok(n)
    }

    /// Starts this instance's background work on `scheduler`: the queue's sweeper, every
    /// second or sooner when a retry is due, and the STAR renewal job (RFC 8739), every second
    /// on one instance at a time.
    pub fn start_background(self: &Arc<Self>, scheduler: &crate::scheduler::Scheduler) {
        let me = Arc::clone(self);
        scheduler.every(
            "star-renewals",
            Duration::from_secs(1),
            Duration::ZERO,
            crate::scheduler::Scope::OneInstance,
            move || {
                let me = Arc::clone(&me);
                async move {
                    match me.renew_due_series().await {
                        Ok(_) => Ok(()),
                        Err(e) if e.status == Some(503) => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        );
        let me = Arc::clone(self);
        scheduler.every_or_woken(
            "issuance-queue",
            Duration::from_secs(1),
            Duration::ZERO,
            crate::scheduler::Scope::EveryInstance,
            Some(self.queue.wake.clone()),
            move || {
                let me = Arc::clone(&me);
                async move {
                    match me.sweep_queue().await {
                        Ok(_) => Ok(()),
                        // Storage faults are reported once by the store itself.
                        Err(e) if e.status == Some(503) => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_16_octets_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let s = new_serial();
            assert_eq!(s.len(), 32);
            let b = unhex(&s).unwrap();
            assert!(b[0] != 0 && b[0] & 0x80 == 0, "{s}");
            assert!(seen.insert(s));
        }
    }

    #[test]
    fn serials_spread_evenly_over_the_crl_shards() {
        let mut per_shard = [0u32; 16];
        for _ in 0..16_000 {
            let s = crl_shard(&new_serial(), 16);
            per_shard[s as usize] += 1;
        }
        assert!(
            per_shard.iter().all(|n| (700..1300).contains(n)),
            "{per_shard:?}"
        );
        let serial = new_serial();
        assert_eq!(crl_shard(&serial, 16), crl_shard(&serial, 16));
        assert_eq!(crl_shard(&serial, 1), 0);
        assert_eq!(crl_shard("", 0), 0);
    }

    #[test]
    fn backoff_grows_to_thirty_seconds() {
        assert_eq!(backoff(1), 1);
        assert_eq!(backoff(2), 2);
        assert_eq!(backoff(5), 16);
        assert_eq!(backoff(6), 30);
        assert_eq!(backoff(60), 30);
    }
}
