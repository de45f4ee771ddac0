//! What the rate limits of `sceau-acme` count (its `limits` module holds the rules and their
//! settings). Each count is one indexed range scan over rows the server keeps anyway (accounts,
//! orders, authorizations), or over `limit_events` for events that have no table of their own
//! (failed external account bindings). Counting stored rows makes every limit hold across
//! restarts and across server instances sharing one PostgreSQL database.

use crate::db::{Row, query};
use crate::{AuditEntry, Result, Store, audit_query, log_id};

/// A sliding-window count: how many events since the window's start, and the time of the
/// oldest of them (when the window will have room again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCount {
    pub count: i64,
    pub oldest: Option<i64>,
}

impl WindowCount {
    /// The count at column `count` and the oldest event's time at the column after it.
    fn from_columns(row: &Row, count: usize) -> Result<WindowCount> {
        Ok(WindowCount {
            count: row.try_get(count)?,
            oldest: row.try_get(count + 1)?,
        })
    }
}

/// An account's load, as the newOrder limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrderLoad {
    /// Orders created since `orders_since`.
    pub orders: WindowCount,
    /// Authorizations the account's orders created since `names_since`.
    pub names: WindowCount,
    /// Authorizations still pending and unexpired.
    pub pending: i64,
}

impl Store {
    /// Accounts created from `ip` since `since`.
    pub async fn accounts_created_from(&self, ip: &str, since: i64) -> Result<WindowCount> {
        let row = query(
            "SELECT COUNT(*), MIN(created_at) FROM accounts WHERE created_ip = $1 AND created_at >= $2",
        )
        .bind(ip)
        .bind(since)
        .fetch_one(&self.db)
        .await?;
        WindowCount::from_columns(&row, 0)
    }

    /// Orders of `account_id` since `orders_since`, the authorizations its orders created
    /// since `names_since`, and its pending authorizations at `now`, in one round trip.
    pub async fn order_load(
        &self,
        account_id: &str,
        orders_since: i64,
        names_since: i64,
        now: i64,
    ) -> Result<OrderLoad> {
        let row = query(
            "SELECT
               (SELECT COUNT(*) FROM orders WHERE account_id = $1 AND created_at >= $2),
               (SELECT MIN(created_at) FROM orders WHERE account_id = $1 AND created_at >= $2),
               (SELECT CAST(COALESCE(SUM(new_authzs), 0) AS BIGINT) FROM orders WHERE account_id = $1 AND created_at >= $3),
               (SELECT MIN(created_at) FROM orders WHERE account_id = $1 AND created_at >= $3 AND new_authzs > 0),
               (SELECT COUNT(*) FROM authzs WHERE account_id = $1 AND status = 'pending' AND expires > $4)",
        )
        .bind(account_id)
        .bind(orders_since)
        .bind(names_since)
        .bind(now)
        .fetch_one(&self.db)
        .await?;
        Ok(OrderLoad {
            orders: WindowCount::from_columns(&row, 0)?,
            names: WindowCount::from_columns(&row, 2)?,
            pending: row.try_get(4)?,
        })
    }

    /// Events of `kind` for `subject` since `since`.
    pub async fn limit_events_since(
        &self,
        kind: &str,
        subject: &str,
        since: i64,
    ) -> Result<WindowCount> {
        let row = query(
            "SELECT COUNT(*), MIN(at) FROM limit_events WHERE kind = $1 AND subject = $2 AND at >= $3",
        )
        .bind(kind)
        .bind(subject)
        .bind(since)
        .fetch_one(&self.db)
        .await?;
        WindowCount::from_columns(&row, 0)
    }

    /// Records one event of `kind` for `subject` at `at`, with its audit row in the same
    /// transaction, and forgets this subject's events older than `forget_before` (the limit's
    /// window), so the table holds at most one window of events per subject.
    pub async fn record_limit_event(
        &self,
        kind: &str,
        subject: &str,
        at: i64,
        forget_before: i64,
        audit: Option<&AuditEntry<'_>>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query("DELETE FROM limit_events WHERE kind = $1 AND subject = $2 AND at < $3")
            .bind(kind)
            .bind(subject)
            .bind(forget_before)
            .execute(&mut tx)
            .await?;
        query("INSERT INTO limit_events (id, kind, subject, at) VALUES ($1, $2, $3, $4)")
            .bind(log_id())
            .bind(kind)
            .bind(subject)
            .bind(at)
            .execute(&mut tx)
            .await?;
        if let Some(entry) = audit {
            audit_query(entry).execute(&mut tx).await?;
        }
        tx.commit().await
    }

    /// RFC 8555 §11.1: whether a public key was ever certified here, by the SHA-256 of each
    /// DER SubjectPublicKeyInfo encoding it can have (`spki_sha256s`, lowercase hex). Finalize
    /// certifies only DER-encoded keys, so these are all the encodings a certificate can hold.
    pub async fn key_certified(&self, spki_sha256s: &[String]) -> Result<bool> {
        for hash in spki_sha256s {
            if self.spki_seen(hash).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
