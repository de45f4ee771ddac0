//! STAR series (RFC 8739): the renewal hand-off to the issuance queue, cancellation, listings.
//!
//! Invariants:
//! - A series' next certificate is handed to the queue by one compare-and-swap, `valid` with
//!   that `star_due` → `processing`; so two renewal jobs (two instances, a retried run) can
//!   never queue the same certificate twice.
//! - Cancellation is one transaction: the order `canceled` with nothing due; a renewal in
//!   flight loses its job (the queue's compare-and-swaps name `processing`), and its reserved
//!   serial is settled `abandoned` there and then, so no serial is left unaccounted for and no
//!   certificate is issued for the order afterwards (§3.1.2).

use crate::db::query;
use crate::{AuditEntry, CertRecord, OrderRecord, Result, Store, StoreError, audit_query};

impl Store {
    /// Series whose next certificate is due by `now`, soonest first, at most `limit`.
    pub async fn due_star_renewals(&self, now: i64, limit: i64) -> Result<Vec<OrderRecord>> {
        let rows = query(format!(
            "SELECT {} FROM orders WHERE star_due IS NOT NULL AND star_due <= $1 AND status = 'valid'
             ORDER BY star_due LIMIT $2",
            Self::ORDER_COLS
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(OrderRecord::from_row).collect()
    }

    /// Hands a series' next certificate to the issuance queue: `valid` (due at `due`) →
    /// `processing`, free for any instance to claim, until `deadline`. `Conflict` when the
    /// order moved meanwhile (canceled, or queued by another run).
    pub async fn enqueue_star_renewal(
        &self,
        order_id: &str,
        due: i64,
        deadline: i64,
    ) -> Result<()> {
        query(
            "UPDATE orders SET status = 'processing', issue_owner = NULL, issue_lease = NULL,
             issue_next = NULL, issue_attempts = 0, issue_deadline = $1, issue_serial = NULL,
             issue_error = NULL, issue_ticket = NULL
             WHERE id = $2 AND status = 'valid' AND star_due = $3",
        )
        .bind(deadline)
        .bind(order_id)
        .bind(due)
        .execute(&self.db)
        .await?
        .one_or("the series is not due")
    }

    /// Moves a held series' next hand-off to `due` (its account is suspended: checked again
    /// then).
    pub async fn postpone_star_renewal(&self, order_id: &str, from: i64, due: i64) -> Result<()> {
        query(
            "UPDATE orders SET star_due = $1 WHERE id = $2 AND status = 'valid' AND star_due = $3",
        )
        .bind(due)
        .bind(order_id)
        .bind(from)
        .execute(&self.db)
        .await?
        .one_or("the series is not due")
    }

    /// RFC 8739 §3.1.2: a series with a certificate (`valid`, or `processing` while renewed)
    /// → `canceled`, its expiry `now`, nothing due, with the audit row. `Conflict` when it is
    /// not such a series any more.
    pub async fn cancel_star(
        &self,
        order_id: &str,
        now: i64,
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let row = query(
            "SELECT status, issue_serial FROM orders WHERE id = $1 AND star_end IS NOT NULL
             AND cert_id IS NOT NULL AND status IN ('valid', 'processing')",
        )
        .bind(order_id)
        .fetch_optional(&mut tx)
        .await?
        .ok_or_else(|| StoreError::Conflict("the series is not valid".into()))?;
        let status: String = row.try_get("status")?;
        let serial: Option<String> = row.try_get("issue_serial")?;
        query(
            "UPDATE orders SET status = 'canceled', expires = $1, star_next = NULL, star_due = NULL,
             issue_owner = NULL, issue_lease = NULL, issue_next = NULL, issue_ticket = NULL
             WHERE id = $2 AND status = $3",
        )
        .bind(now)
        .bind(order_id)
        .bind(&status)
        .execute(&mut tx)
        .await?
        .one_or("the series changed")?;
        if status == "processing"
            && let Some(serial) = serial
        {
            query(
                "UPDATE serials SET state = 'abandoned', detail = $1, updated_at = $2
                 WHERE serial = $3 AND state = 'reserved'",
            )
            .bind("the STAR series was canceled while this certificate was being signed; it is never handed out")
            .bind(now)
            .bind(&serial)
            .execute(&mut tx)
            .await?;
        }
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await?;
        self.make_durable().await
    }

    /// Every certificate of one order, oldest first (a STAR series has many).
    pub async fn certs_of_order(&self, order_id: &str) -> Result<Vec<CertRecord>> {
        let rows = query(format!(
            "SELECT {} FROM certificates WHERE order_id = $1 ORDER BY not_before, created_at",
            Self::CERT_COLS
        ))
        .bind(order_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(CertRecord::from_row).collect()
    }

    /// The STAR series of an external account's ACME accounts, oldest first (R49's reports).
    pub async fn star_series_of_external(&self, kid: &str) -> Result<Vec<OrderRecord>> {
        let cols: Vec<String> = Self::ORDER_COLS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect();
        let rows = query(format!(
            "SELECT {} FROM orders o JOIN accounts a ON a.id = o.account_id
             WHERE a.eab_kid = $1 AND o.star_end IS NOT NULL ORDER BY o.created_at, o.id",
            cols.join(", ")
        ))
        .bind(kid)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(OrderRecord::from_row).collect()
    }

    /// STAR series, newest first, at most `limit`; `account_id` narrows to one account's.
    pub async fn star_series(
        &self,
        account_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OrderRecord>> {
        let rows = query(format!(
            "SELECT {} FROM orders WHERE star_end IS NOT NULL AND ($1 IS NULL OR account_id = $1)
             ORDER BY created_at DESC, id LIMIT $2",
            Self::ORDER_COLS
        ))
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(OrderRecord::from_row).collect()
    }
}
