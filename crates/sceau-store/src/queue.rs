//! The issuance queue's rows: an order in `processing` is a job with a lease, and every serial
//! number reserved for a signature is recorded before the signature is made.
//!
//! Invariants:
//! - A job is signed only under a lease (owner, expiry). Every change of a job is a
//!   compare-and-swap on its owner and its current serial, so an instance that lost its lease
//!   (it stalled, another took the job over) can change nothing: its certificate, if it made
//!   one, is dropped, and the serial it used is already recorded as `abandoned`.
//! - A serial is `reserved` in the same transaction that hands the attempt to an owner, so no
//!   certificate can exist whose serial the database does not know. It ends `issued` (committed
//!   with the certificate and the order's `valid`), `failed` (the signer refused or was never
//!   reached) or `abandoned` (the outcome is unknown; taken over after its lease expired).
//! - Claiming takes jobs whose lease expired or that wait for a retry, never a live lease: on
//!   PostgreSQL with `FOR UPDATE SKIP LOCKED`, so instances claiming at once take different jobs.

use crate::db::{Db, query};
use crate::{
    AuditEntry, CertRecord, OrderRecord, Result, Store, StoreError, audit_query, insert_certificate,
};

/// A job handed to an owner: the order, the serial reserved for this attempt.
#[derive(Debug, Clone)]
pub struct IssueJob {
    pub order: OrderRecord,
    pub serial: String,
    /// Attempts including this one.
    pub attempts: i64,
    pub deadline: i64,
    /// The upstream transaction an earlier attempt left waiting (RA mode), to continue.
    pub ticket: Option<String>,
}

/// How an attempt's serial ended when the attempt did not issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialOutcome {
    /// Known not to be signed (the signer refused, or was never reached).
    Failed,
    /// Perhaps signed: the signer stopped while it had the request.
    Abandoned,
}

impl SerialOutcome {
    fn state(self) -> &'static str {
        match self {
            SerialOutcome::Failed => "failed",
            SerialOutcome::Abandoned => "abandoned",
        }
    }
}

/// Serial numbers by state, for checks and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SerialCounts {
    pub reserved: i64,
    pub issued: i64,
    pub failed: i64,
    pub abandoned: i64,
}

impl Store {
    /// finalize: the order ready → processing with its CSR, leased to `owner` until
    /// `lease_until`, with `serial` reserved, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_issuance(
        &self,
        order_id: &str,
        csr_b64: &str,
        owner: &str,
        lease_until: i64,
        deadline: i64,
        serial: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query(
            "UPDATE orders SET status = 'processing', csr = $1, issue_owner = $2, issue_lease = $3,
             issue_next = NULL, issue_attempts = 1, issue_deadline = $4, issue_serial = $5, issue_error = NULL,
             issue_ticket = NULL
             WHERE id = $6 AND status = 'ready'",
        )
        .bind(csr_b64)
        .bind(owner)
        .bind(lease_until)
        .bind(deadline)
        .bind(serial)
        .bind(order_id)
        .execute(&mut tx)
        .await?
        .one_or("order is not ready")?;
        reserve(&mut tx, serial, order_id, now).await?;
        tx.commit().await
    }

    /// Takes up to `limit` jobs that are due: free (waiting for a retry, or left by the first
    /// versions) and past their next attempt, or leased to another owner whose lease expired.
    /// Each gets a fresh serial from `new_serial`; the serial of an expired lease becomes
    /// `abandoned`.
    pub async fn claim_issuance(
        &self,
        owner: &str,
        lease_until: i64,
        default_deadline: i64,
        now: i64,
        limit: i64,
        mut new_serial: impl FnMut() -> String,
    ) -> Result<Vec<IssueJob>> {
        let lock = if matches!(self.db, Db::Postgres(_)) {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let mut tx = self.db.begin().await?;
        let rows = query(format!(
            "SELECT id, issue_owner, issue_serial FROM orders WHERE status = 'processing'
             AND ((issue_owner IS NULL AND (issue_next IS NULL OR issue_next <= $1))
                  OR (issue_owner IS NOT NULL AND issue_owner <> $2 AND issue_lease < $1))
             ORDER BY created_at LIMIT $3{lock}"
        ))
        .bind(now)
        .bind(owner)
        .bind(limit)
        .fetch_all(&mut tx)
        .await?;
        let mut claimed = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let previous_owner: Option<String> = row.try_get("issue_owner")?;
            let previous_serial: Option<String> = row.try_get("issue_serial")?;
            let serial = new_serial();
            let n = query(
                "UPDATE orders SET issue_owner = $1, issue_lease = $2, issue_next = NULL,
                 issue_attempts = COALESCE(issue_attempts, 0) + 1,
                 issue_deadline = COALESCE(issue_deadline, $3), issue_serial = $4
                 WHERE id = $5 AND status = 'processing'
                 AND ((issue_owner IS NULL AND (issue_next IS NULL OR issue_next <= $6))
                      OR (issue_owner IS NOT NULL AND issue_owner <> $7 AND issue_lease < $6))",
            )
            .bind(owner)
            .bind(lease_until)
            .bind(default_deadline)
            .bind(&serial)
            .bind(&id)
            .bind(now)
            .bind(owner)
            .execute(&mut tx)
            .await?
            .rows_affected();
            if n != 1 {
                continue;
            }
            if let (Some(_), Some(old)) = (previous_owner, previous_serial) {
                query(
                    "UPDATE serials SET state = 'abandoned', detail = $1, updated_at = $2
                     WHERE serial = $3 AND state = 'reserved'",
                )
                .bind(
                    "the instance signing it stopped answering; taken over after its lease expired",
                )
                .bind(now)
                .bind(&old)
                .execute(&mut tx)
                .await?;
            }
            reserve(&mut tx, &serial, &id, now).await?;
            let order_row = query(format!(
                "SELECT {}, issue_attempts, issue_deadline, issue_ticket FROM orders WHERE id = $1",
                Self::ORDER_COLS
            ))
            .bind(&id)
            .fetch_one(&mut tx)
            .await?;
            claimed.push(IssueJob {
                order: OrderRecord::from_row(&order_row)?,
                serial,
                attempts: order_row.try_get("issue_attempts")?,
                deadline: order_row.try_get("issue_deadline")?,
                ticket: order_row.try_get("issue_ticket")?,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Extends a lease this owner still holds; `Conflict` when it was lost.
    pub async fn renew_issuance_lease(
        &self,
        order_id: &str,
        owner: &str,
        serial: &str,
        lease_until: i64,
    ) -> Result<()> {
        query(
            "UPDATE orders SET issue_lease = $1 WHERE id = $2 AND status = 'processing'
             AND issue_owner = $3 AND issue_serial = $4",
        )
        .bind(lease_until)
        .bind(order_id)
        .bind(owner)
        .bind(serial)
        .execute(&self.db)
        .await?
        .one_or("the issuance lease was lost")
    }

    /// A transient failure, or an upstream still at work: the job is released for another
    /// attempt at `next_at`, which continues `ticket` (`None`: starts afresh), its serial
    /// settled as `outcome`.
    #[allow(clippy::too_many_arguments)]
    pub async fn retry_issuance(
        &self,
        order_id: &str,
        owner: &str,
        serial: &str,
        outcome: SerialOutcome,
        error: &str,
        ticket: Option<&str>,
        next_at: i64,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query(
            "UPDATE orders SET issue_owner = NULL, issue_lease = NULL, issue_next = $1, issue_error = $2,
             issue_ticket = $3
             WHERE id = $4 AND status = 'processing' AND issue_owner = $5 AND issue_serial = $6",
        )
        .bind(next_at)
        .bind(error)
        .bind(ticket)
        .bind(order_id)
        .bind(owner)
        .bind(serial)
        .execute(&mut tx)
        .await?
        .one_or("the issuance lease was lost")?;
        settle(&mut tx, serial, outcome.state(), error, now).await?;
        tx.commit().await
    }

    /// A permanent failure (or the deadline): the order becomes invalid with `problem`, its
    /// serial settled as `outcome`, the audit row in the same transaction. A STAR order that
    /// has a certificate already (a renewal failed) stays `valid` with the problem and its
    /// series stopped: its certificates so far remain (RFC 8739 §3.1.1 keeps such an order
    /// `valid`).
    #[allow(clippy::too_many_arguments)]
    pub async fn fail_issuance(
        &self,
        order_id: &str,
        owner: &str,
        serial: &str,
        outcome: SerialOutcome,
        problem: &sceau_wire::Problem,
        audit: &AuditEntry<'_>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query(
            "UPDATE orders SET status = CASE WHEN star_end IS NOT NULL AND cert_id IS NOT NULL
             THEN 'valid' ELSE 'invalid' END, error = $1, issue_owner = NULL, issue_lease = NULL,
             issue_ticket = NULL, star_next = NULL, star_due = NULL
             WHERE id = $2 AND status = 'processing' AND issue_owner = $3 AND issue_serial = $4",
        )
        .bind(serde_json::to_string(problem).expect("json"))
        .bind(order_id)
        .bind(owner)
        .bind(serial)
        .execute(&mut tx)
        .await?
        .one_or("the issuance lease was lost")?;
        let detail = problem.detail.clone().unwrap_or_default();
        settle(&mut tx, serial, outcome.state(), &detail, now).await?;
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await
    }

    /// Stores the certificate of an attempt this owner still holds, its order processing →
    /// valid and the attempt's `reserved` serial `issued`, in one durable commit. `Conflict`
    /// when the lease was lost. An upstream CA (RA mode) chooses its own serial: the certificate
    /// then carries another serial than the one reserved, which records it in its detail.
    ///
    /// `star_next`: for a STAR order (RFC 8739), the nominal renewal date of the certificate
    /// after this one and when it is due, `(None, None)` when this one is the series' last;
    /// `(None, None)` for every other order.
    pub async fn finish_issuance(
        &self,
        cert: &CertRecord,
        reserved_serial: &str,
        owner: &str,
        audit: &AuditEntry<'_>,
        star_next: (Option<i64>, Option<i64>),
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query(
            "UPDATE orders SET status = 'valid', cert_id = $1, issue_owner = NULL, issue_lease = NULL,
             issue_ticket = NULL, star_next = $5, star_due = $6
             WHERE id = $2 AND status = 'processing' AND issue_owner = $3 AND issue_serial = $4",
        )
        .bind(&cert.id)
        .bind(&cert.order_id)
        .bind(owner)
        .bind(reserved_serial)
        .bind(star_next.0)
        .bind(star_next.1)
        .execute(&mut tx)
        .await?
        .one_or("the issuance lease was lost")?;
        insert_certificate(&mut tx, cert).await?;
        let detail =
            (cert.serial != reserved_serial).then(|| format!("upstream serial {}", cert.serial));
        query("UPDATE serials SET state = 'issued', detail = $1, updated_at = $2 WHERE serial = $3 AND state = 'reserved'")
            .bind(detail)
            .bind(cert.created_at)
            .bind(reserved_serial)
            .execute(&mut tx)
            .await?
            .one_or("the reserved serial changed")?;
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await?;
        self.make_durable().await
    }

    /// A round trip to the database (readiness).
    /// Orders waiting for their certificate (`processing`), for the queue-depth metric.
    pub async fn queue_depth(&self) -> Result<i64> {
        let row = query("SELECT COUNT(*) AS n FROM orders WHERE status = 'processing'")
            .fetch_one(&self.db)
            .await?;
        crate::get(&row, "n")
    }

    pub async fn ping(&self) -> Result<()> {
        query("SELECT 1").fetch_one(&self.db).await.map(|_| ())
    }

    /// Whether the database is embedded (SQLite): one server process uses it.
    pub fn is_embedded(&self) -> bool {
        matches!(self.db, Db::Sqlite(_))
    }

    /// At the start of the only instance of an embedded database: the leases of the process
    /// that stopped expire now (their serials become `abandoned` when the sweeper takes the
    /// jobs). Returns the number of orders waiting in `processing`.
    pub async fn release_issuance_leases(&self, owner: &str) -> Result<usize> {
        query(
            "UPDATE orders SET issue_lease = 0 WHERE status = 'processing'
             AND issue_owner IS NOT NULL AND issue_owner <> $1",
        )
        .bind(owner)
        .execute(&self.db)
        .await?;
        let n: i64 = query("SELECT COUNT(*) FROM orders WHERE status = 'processing'")
            .fetch_one(&self.db)
            .await?
            .try_get(0)?;
        Ok(n as usize)
    }

    /// Serial numbers by state.
    pub async fn serial_counts(&self) -> Result<SerialCounts> {
        let rows = query("SELECT state, COUNT(*) AS n FROM serials GROUP BY state")
            .fetch_all(&self.db)
            .await?;
        let mut c = SerialCounts::default();
        for r in rows {
            let n: i64 = r.try_get("n")?;
            match r.try_get::<String, _>("state")?.as_str() {
                "reserved" => c.reserved = n,
                "issued" => c.issued = n,
                "failed" => c.failed = n,
                "abandoned" => c.abandoned = n,
                other => return Err(StoreError::Corrupt(format!("serial state {other:?}"))),
            }
        }
        Ok(c)
    }

    /// The upstream ticket a job keeps for its next attempt (RA mode).
    #[doc(hidden)]
    pub async fn issuance_ticket(&self, order_id: &str) -> Result<Option<String>> {
        query("SELECT issue_ticket FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&self.db)
            .await?
            .try_get("issue_ticket")
    }

    /// A job's queue state: (owner, lease, next attempt, attempts, last error).
    #[doc(hidden)]
    pub async fn issuance_state(
        &self,
        order_id: &str,
    ) -> Result<(
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    )> {
        let r = query(
            "SELECT issue_owner, issue_lease, issue_next, issue_attempts, issue_error FROM orders WHERE id = $1",
        )
        .bind(order_id)
        .fetch_one(&self.db)
        .await?;
        Ok((
            r.try_get("issue_owner")?,
            r.try_get("issue_lease")?,
            r.try_get("issue_next")?,
            r.try_get("issue_attempts")?,
            r.try_get("issue_error")?,
        ))
    }

    /// One periodic job `name` runs on one instance at a time: takes (or keeps) its lease for
    /// `owner` until `until` when it is free, expired or already `owner`'s.
    pub async fn take_job_lease(
        &self,
        name: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        let n = query(
            "UPDATE job_leases SET owner = $1, expires = $2 WHERE name = $3 AND (owner = $1 OR expires < $4)",
        )
        .bind(owner)
        .bind(until)
        .bind(name)
        .bind(now)
        .execute(&self.db)
        .await?
        .rows_affected();
        if n == 1 {
            return Ok(true);
        }
        match query("INSERT INTO job_leases (name, owner, expires) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(owner)
            .bind(until)
            .execute(&self.db)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

async fn reserve(tx: &mut crate::db::Tx, serial: &str, order_id: &str, now: i64) -> Result<()> {
    query(
        "INSERT INTO serials (serial, order_id, state, detail, created_at, updated_at) VALUES ($1, $2, 'reserved', NULL, $3, $3)",
    )
    .bind(serial)
    .bind(order_id)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

async fn settle(
    tx: &mut crate::db::Tx,
    serial: &str,
    state: &str,
    detail: &str,
    now: i64,
) -> Result<()> {
    query("UPDATE serials SET state = $1, detail = $2, updated_at = $3 WHERE serial = $4 AND state = 'reserved'")
        .bind(state)
        .bind(detail)
        .bind(now)
        .bind(serial)
        .execute(tx)
        .await?;
    Ok(())
}
