//! Certificates as administrators look for them (`sceau-server admin cert list|show|revoke`):
//! by serial, ACME account, external account, status, expiry, issuance time and name; the
//! audit events of one certificate; and the one revocation statement set, shared by ACME
//! revocation and the administrator's commands.
//!
//! Invariants:
//! - A revocation is one transaction: compare-and-swap not-revoked → revoked, the shard's CRL
//!   marked dirty, the serial's pre-signed OCSP responses deleted, and (when given) its audit
//!   row. A revocation that lost the race changes nothing and is `Conflict`.
//! - The dirty mark lives in the database (`crls.dirty`), so a revocation made by another
//!   process (the admin CLI) reaches every running instance's CRL job at its next run.
//! - Listing reads only; filters are bound parameters, never spliced into SQL.

use sceau_wire::Identifier;

use crate::db::query;
use crate::{AuditEntry, AuditRecord, CertRecord, Result, Store, StoreError, audit_query, get};

/// A certificate's status as administrators see it; `revoked` wins over `expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Valid,
    Revoked,
    Expired,
}

impl CertStatus {
    pub fn of(cert: &CertRecord, now: i64) -> CertStatus {
        if cert.revoked_at.is_some() {
            CertStatus::Revoked
        } else if cert.not_after <= now {
            CertStatus::Expired
        } else {
            CertStatus::Valid
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Revoked => "revoked",
            CertStatus::Expired => "expired",
        }
    }
}

/// What `find_certs` selects; every field set narrows the result (AND).
#[derive(Debug, Clone, Default)]
pub struct CertQuery {
    pub serial: Option<String>,
    pub account_id: Option<String>,
    /// EAB key id of the external account the issuing ACME account is bound to.
    pub external_kid: Option<String>,
    pub status: Option<CertStatus>,
    /// not_after strictly before this time.
    pub expires_before: Option<i64>,
    /// Stored (issued) at or after this time.
    pub issued_since: Option<i64>,
    /// A name the certificate covers: one of its identifiers, or a name one of its wildcard
    /// identifiers covers (RFC 6125 §6.4.3: one leftmost label).
    pub name: Option<String>,
    /// The time statuses are judged at.
    pub now: i64,
}

/// A certificate with what listings show beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct CertListing {
    pub cert: CertRecord,
    /// The identifiers of the order it was issued for (its SANs).
    pub names: Vec<Identifier>,
    pub external_kid: Option<String>,
}

impl CertListing {
    pub fn status(&self, now: i64) -> CertStatus {
        CertStatus::of(&self.cert, now)
    }
}

/// Whether `identifier` (a value of a certificate's) covers `name`.
pub fn covers(identifier: &str, name: &str) -> bool {
    let (id, name) = (identifier.to_ascii_lowercase(), name.to_ascii_lowercase());
    if id == name {
        return true;
    }
    match (id.strip_prefix("*."), name.split_once('.')) {
        (Some(base), Some((label, rest))) => !label.is_empty() && rest == base,
        _ => false,
    }
}

impl Store {
    /// The certificates matching `q`, oldest first.
    pub async fn find_certs(&self, q: &CertQuery) -> Result<Vec<CertListing>> {
        let cols: Vec<String> = Self::CERT_COLS
            .split(", ")
            .map(|c| format!("c.{c}"))
            .collect();
        // Each filter is `($n IS NULL OR …)` with its parameter bound even when unset, so the
        // statement text is one and the same for every combination. The name is matched in
        // the order's identifiers JSON first (exact value, or the wildcard of its parent) and
        // confirmed below: LIKE's `_` may match more than it should, never less.
        let (exact, wildcard) = match &q.name {
            Some(n) => {
                let n = n.to_ascii_lowercase();
                let parent = n.split_once('.').map(|(_, p)| format!("*.{p}"));
                (
                    Some(format!("%\"value\":\"{n}\"%")),
                    Some(format!("%\"value\":\"{}\"%", parent.unwrap_or(n))),
                )
            }
            None => (None, None),
        };
        let status = q.status.map(CertStatus::as_str);
        let sql = format!(
            "SELECT {}, o.identifiers AS order_identifiers, a.eab_kid AS external_kid
             FROM certificates c JOIN orders o ON o.id = c.order_id
             LEFT JOIN accounts a ON a.id = c.account_id
             WHERE ($1 IS NULL OR c.serial = $1)
               AND ($2 IS NULL OR c.account_id = $2)
               AND ($3 IS NULL OR a.eab_kid = $3)
               AND ($4 IS NULL OR c.not_after < $4)
               AND ($5 IS NULL OR c.created_at >= $5)
               AND ($6 IS NULL OR o.identifiers LIKE $6 OR o.identifiers LIKE $7)
               AND ($8 IS NULL
                    OR ($8 = 'revoked' AND c.revoked_at IS NOT NULL)
                    OR ($8 = 'expired' AND c.revoked_at IS NULL AND c.not_after <= $9)
                    OR ($8 = 'valid' AND c.revoked_at IS NULL AND c.not_after > $9))
             ORDER BY c.created_at, c.id",
            cols.join(", ")
        );
        let rows = query(sql)
            .bind(q.serial.as_deref().map(str::to_ascii_lowercase))
            .bind(q.account_id.as_deref())
            .bind(q.external_kid.as_deref())
            .bind(q.expires_before)
            .bind(q.issued_since)
            .bind(exact)
            .bind(wildcard)
            .bind(status)
            .bind(q.now)
            .fetch_all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let names: Vec<Identifier> =
                serde_json::from_str(&get::<String>(row, "order_identifiers")?)
                    .map_err(|e| StoreError::Corrupt(format!("identifiers: {e}")))?;
            if let Some(n) = &q.name
                && !names.iter().any(|i| covers(&i.value, n))
            {
                continue;
            }
            out.push(CertListing {
                cert: CertRecord::from_row(row)?,
                names,
                external_kid: get(row, "external_kid")?,
            });
        }
        Ok(out)
    }

    /// The audit events that name this serial (issued, revoked, refused…), oldest first.
    pub async fn cert_audit_events(&self, serial_hex: &str) -> Result<Vec<AuditRecord>> {
        // Serials are lowercase hex: nothing in them is special to LIKE. Details are stored
        // as compact JSON (`serde_json::to_string`), hence no space after the colon.
        let serial = serial_hex.to_ascii_lowercase();
        if !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let rows = query(
            "SELECT at, event, account_id, client_ip, detail FROM audit WHERE detail LIKE $1 ORDER BY at, id",
        )
        .bind(format!("%\"serial\":\"{serial}\"%"))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(AuditRecord::from_row).collect()
    }

    /// Revokes a certificate (see the module invariants), with its audit row in the same
    /// transaction when `audit` is given. `Conflict` when it was already revoked.
    pub async fn revoke_cert_audited(
        &self,
        id: &str,
        reason: u8,
        at: i64,
        audit: Option<&AuditEntry<'_>>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query("UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
            .bind(at)
            .bind(i64::from(reason))
            .bind(id)
            .execute(&mut tx)
            .await?
            .one_or("already revoked")?;
        query(
            "UPDATE crls SET dirty = dirty + 1 WHERE EXISTS (SELECT 1 FROM certificates c WHERE c.id = $1
             AND c.issuer_id = crls.issuer_id AND c.crl_shard = crls.shard)",
        )
        .bind(id)
        .execute(&mut tx)
        .await?;
        query("DELETE FROM ocsp_responses WHERE serial = (SELECT serial FROM certificates WHERE id = $1)")
            .bind(id)
            .execute(&mut tx)
            .await?;
        if let Some(e) = audit {
            audit_query(e).execute(&mut tx).await?;
        }
        tx.commit().await?;
        self.make_durable().await
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn a_name_is_covered_by_itself_or_by_the_wildcard_of_its_parent() {
        assert!(covers("www.a.test", "www.a.test"));
        assert!(covers("WWW.a.test", "www.A.test"));
        assert!(covers("*.a.test", "www.a.test"));
        assert!(covers("*.a.test", "*.a.test"));
        assert!(!covers("*.a.test", "a.test"));
        assert!(!covers("*.a.test", "x.www.a.test"));
        assert!(!covers("www.a.test", "a.test"));
        assert!(!covers("*.a.test", ".a.test"));
        assert!(covers("192.0.2.1", "192.0.2.1"));
    }
}
