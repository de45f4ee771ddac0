//! Pre-signed OCSP responses (table `ocsp_responses`, RFC 6960 / RFC 5019) and the
//! certificate status the OCSP responder and its job read.
//!
//! Invariants:
//! - A stored response never says less than the certificate's state: [`Store::put_ocsp_response`]
//!   stores a `good` response only while the certificate is still unrevoked, checked in the
//!   write's own transaction after taking the certificate row's write lock (a no-op UPDATE),
//!   so a revocation that committed while the response was being signed wins, on SQLite
//!   (one writer) and on PostgreSQL (the UPDATE waits for the revocation's row lock, then
//!   re-reads the row). A revocation deletes the serial's rows in its own transaction
//!   ([`Store::revoke_cert`]), so no `good` outlives it.
//! - Revocation is final (certificateHold is refused), so a `revoked` response needs no such
//!   check.

use crate::db::query;
use crate::{Result, Store, StoreError, hex_decode, hex_encode};

/// A signed OCSPResponse as stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOcsp {
    pub der: Vec<u8>,
    pub this_update: i64,
    pub next_update: i64,
}

/// Which change [`Store::ocsp_missing`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingBy {
    Issued,
    Revoked,
}

/// What an OCSP answer about one certificate depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspCert {
    /// Lowercase hex of the serial's DER content octets.
    pub serial: String,
    pub issuer_id: String,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub reason: Option<i64>,
}

const OCSP_CERT_COLS: &str =
    "c.serial, c.issuer_id, c.not_after, c.revoked_at, c.revocation_reason";

fn ocsp_cert(r: &crate::db::Row) -> Result<OcspCert> {
    Ok(OcspCert {
        serial: r.try_get(0)?,
        issuer_id: r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
        not_after: r.try_get(2)?,
        revoked_at: r.try_get(3)?,
        reason: r.try_get(4)?,
    })
}

impl Store {
    /// The stored response for a serial and CertID hash algorithm, with the issuer of the
    /// certificate it is about.
    pub async fn ocsp_response(
        &self,
        serial: &str,
        hash_alg: &str,
    ) -> Result<Option<(StoredOcsp, String)>> {
        let row = query(
            "SELECT o.der, o.this_update, o.next_update, c.issuer_id FROM ocsp_responses o
             JOIN certificates c ON c.serial = o.serial WHERE o.serial = $1 AND o.hash_alg = $2",
        )
        .bind(serial)
        .bind(hash_alg)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            let hex: String = r.try_get(0)?;
            let der = hex_decode(&hex)
                .ok_or_else(|| StoreError::Corrupt(format!("OCSP response of {serial}")))?;
            Ok((
                StoredOcsp {
                    der,
                    this_update: r.try_get(1)?,
                    next_update: r.try_get(2)?,
                },
                r.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
            ))
        })
        .transpose()
    }

    /// The status of the certificate with this serial, if we issued one.
    pub async fn ocsp_cert(&self, serial: &str) -> Result<Option<OcspCert>> {
        let row = query(format!(
            "SELECT {OCSP_CERT_COLS} FROM certificates c WHERE c.serial = $1"
        ))
        .bind(serial)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(ocsp_cert).transpose()
    }

    /// Stores (or replaces) a signed response. `good`: it says the certificate is not
    /// revoked; it is then stored only if that is still true (see the module invariants).
    /// Returns whether it was stored.
    pub async fn put_ocsp_response(
        &self,
        serial: &str,
        hash_alg: &str,
        resp: &StoredOcsp,
        good: bool,
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        if good {
            let held = query(
                "UPDATE certificates SET revoked_at = revoked_at WHERE serial = $1 AND revoked_at IS NULL",
            )
            .bind(serial)
            .execute(&mut tx)
            .await?;
            if held.rows_affected() != 1 {
                return Ok(false);
            }
        }
        query(
            "INSERT INTO ocsp_responses (serial, hash_alg, der, this_update, next_update)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (serial, hash_alg) DO UPDATE SET der = excluded.der,
               this_update = excluded.this_update, next_update = excluded.next_update",
        )
        .bind(serial)
        .bind(hash_alg)
        .bind(hex_encode(&resp.der))
        .bind(resp.this_update)
        .bind(resp.next_update)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Unexpired certificates issued (`by` [`MissingBy::Issued`]) or revoked at or after
    /// `from`, in that order, that have fewer than `want` stored responses: the OCSP job's new
    /// work, each with the time it was selected by. One range scan of `certificates_created`
    /// or `certificates_revoked_at`.
    pub async fn ocsp_missing(
        &self,
        by: MissingBy,
        from: i64,
        now: i64,
        want: i64,
        limit: i64,
    ) -> Result<Vec<(OcspCert, i64)>> {
        let column = match by {
            MissingBy::Issued => "created_at",
            MissingBy::Revoked => "revoked_at",
        };
        let rows = query(format!(
            "SELECT {OCSP_CERT_COLS}, c.{column} FROM certificates c
             WHERE c.{column} >= $1 AND c.not_after > $2
             AND (SELECT COUNT(*) FROM ocsp_responses o WHERE o.serial = c.serial) < $3
             ORDER BY c.{column} LIMIT $4"
        ))
        .bind(from)
        .bind(now)
        .bind(want)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((ocsp_cert(r)?, r.try_get(5)?)))
            .collect()
    }

    /// Unexpired certificates with a stored response whose nextUpdate is before
    /// `next_update_before`: due to be signed again (index `ocsp_responses_due`).
    pub async fn ocsp_due(
        &self,
        next_update_before: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<OcspCert>> {
        let rows = query(format!(
            "SELECT DISTINCT {OCSP_CERT_COLS} FROM ocsp_responses o JOIN certificates c ON c.serial = o.serial
             WHERE o.next_update < $1 AND c.not_after > $2 LIMIT $3"
        ))
        .bind(next_update_before)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(ocsp_cert).collect()
    }

    /// Deletes responses past their nextUpdate: they can no longer be served, and their
    /// certificate has expired (unexpired ones are signed again before).
    pub async fn delete_expired_ocsp(&self, now: i64) -> Result<u64> {
        Ok(query("DELETE FROM ocsp_responses WHERE next_update <= $1")
            .bind(now)
            .execute(&self.db)
            .await?
            .rows_affected())
    }
}
