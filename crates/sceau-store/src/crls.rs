//! The CRLs of each issuer's shards (RFC 5280 §5), as `sceau-acme`'s CRL job signs them and
//! the plain-HTTP listener serves them, and the revoked certificates that go on them.
//!
//! Invariants:
//! - A shard's row is replaced only by a compare-and-swap on its previous cRLNumber
//!   ([`Store::commit_crl`]), so of two instances that signed from the same state, one
//!   commits and the other's CRL is dropped: no number is ever published twice, and the
//!   number of a shard never goes back.
//! - `dirty` counts the revocations of the shard's certificates since the row was read by the
//!   signer ([`Store::revoke_cert`] adds one in the revocation's transaction); a commit takes
//!   off only what it read, so a revocation that lands while a CRL is being signed keeps the
//!   shard dirty and is on the next one.
//! - A row with number 0 is a placeholder: a shard whose first CRL is being signed (it exists
//!   so that a revocation meanwhile marks it dirty); it is never served.

use crate::db::query;
use crate::{Result, Store, StoreError, hex_decode, hex_encode};

/// A shard's CRL without its DER: what the job reads to decide what to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlState {
    pub issuer_id: String,
    pub shard: u32,
    /// The cRLNumber of the CRL stored now (0: a placeholder, nothing signed yet).
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
    /// Revocations in the shard since the stored CRL was built.
    pub dirty: i64,
}

/// A signed CRL as it is stored and served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCrl {
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

/// A revoked certificate on a shard's CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    /// Lowercase hex of the serial's DER content octets.
    pub serial: String,
    pub revoked_at: i64,
    pub reason: Option<i64>,
}

/// A synthetic revoked certificate for `Store::prefill_revoked` (benchmarks, tests).
#[derive(Debug, Clone)]
pub struct SyntheticRevoked {
    /// Lowercase hex of the serial's content octets.
    pub serial: String,
    pub issuer_id: String,
    pub crl_shard: u32,
    pub not_after: i64,
    pub revoked_at: i64,
    /// RFC 5280 §5.3.1 code; `None` as for `unspecified`.
    pub reason: Option<u8>,
}

fn shard_of(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("CRL shard {v}")))
}

impl Store {
    /// Every shard row of every issuer, without the DER.
    pub async fn crl_states(&self) -> Result<Vec<CrlState>> {
        let rows = query(
            "SELECT issuer_id, shard, number, this_update, next_update, dirty FROM crls ORDER BY issuer_id, shard",
        )
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CrlState {
                    issuer_id: r.try_get(0)?,
                    shard: shard_of(r.try_get(1)?)?,
                    number: r.try_get(2)?,
                    this_update: r.try_get(3)?,
                    next_update: r.try_get(4)?,
                    dirty: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// One shard's row without the DER; `None` when it was never signed (or is a placeholder).
    pub async fn crl_state(&self, issuer_id: &str, shard: u32) -> Result<Option<CrlState>> {
        let row = query(
            "SELECT number, this_update, next_update, dirty FROM crls WHERE issuer_id = $1 AND shard = $2 AND number > 0",
        )
        .bind(issuer_id)
        .bind(i64::from(shard))
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            Ok(CrlState {
                issuer_id: issuer_id.to_owned(),
                shard,
                number: r.try_get(0)?,
                this_update: r.try_get(1)?,
                next_update: r.try_get(2)?,
                dirty: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Creates the placeholder row of a shard that has none (see the module invariants).
    pub async fn add_crl_placeholder(&self, issuer_id: &str, shard: u32) -> Result<()> {
        query(
            "INSERT INTO crls (issuer_id, shard, number, this_update, next_update, der, dirty)
             VALUES ($1, $2, 0, 0, 0, '', 0) ON CONFLICT (issuer_id, shard) DO NOTHING",
        )
        .bind(issuer_id)
        .bind(i64::from(shard))
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// The revoked certificates of an issuer's shard that expire after `not_after_from`
    /// (RFC 5280 §3.3: a certificate leaves the CRL some time after it expired). One range
    /// scan of the partial index `certificates_revoked`.
    pub async fn crl_revoked(
        &self,
        issuer_id: &str,
        shard: u32,
        not_after_from: i64,
    ) -> Result<Vec<RevokedSerial>> {
        let rows = query(
            "SELECT serial, revoked_at, revocation_reason FROM certificates
             WHERE issuer_id = $1 AND crl_shard = $2 AND not_after > $3 AND revoked_at IS NOT NULL",
        )
        .bind(issuer_id)
        .bind(i64::from(shard))
        .bind(not_after_from)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedSerial {
                    serial: r.try_get(0)?,
                    revoked_at: r.try_get(1)?,
                    reason: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Replaces a shard's CRL by `crl` if its number is still `previous` (compare-and-swap),
    /// taking `seen_dirty` revocations off its count. [`StoreError::Conflict`] when another
    /// signer committed first (this CRL must then be dropped), or when `crl.number` does not
    /// go forward.
    pub async fn commit_crl(
        &self,
        issuer_id: &str,
        shard: u32,
        previous: i64,
        seen_dirty: i64,
        crl: &StoredCrl,
    ) -> Result<()> {
        if crl.number <= previous {
            return Err(StoreError::Conflict(format!(
                "cRLNumber {} does not follow {previous}",
                crl.number
            )));
        }
        query(
            "UPDATE crls SET number = $1, this_update = $2, next_update = $3, der = $4, dirty = dirty - $5
             WHERE issuer_id = $6 AND shard = $7 AND number = $8",
        )
        .bind(crl.number)
        .bind(crl.this_update)
        .bind(crl.next_update)
        .bind(hex_encode(&crl.der))
        .bind(seen_dirty)
        .bind(issuer_id)
        .bind(i64::from(shard))
        .bind(previous)
        .execute(&self.db)
        .await?
        .one_or(format!(
            "the CRL of shard {shard} of {issuer_id} is no longer number {previous}"
        ))
    }

    /// A shard's current CRL; `None` when it does not exist (or is a placeholder).
    pub async fn crl(&self, issuer_id: &str, shard: u32) -> Result<Option<StoredCrl>> {
        let row = query(
            "SELECT number, this_update, next_update, der FROM crls WHERE issuer_id = $1 AND shard = $2 AND number > 0",
        )
        .bind(issuer_id)
        .bind(i64::from(shard))
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            let der: String = r.try_get(3)?;
            Ok(StoredCrl {
                number: r.try_get(0)?,
                this_update: r.try_get(1)?,
                next_update: r.try_get(2)?,
                der: hex_decode(&der)
                    .ok_or_else(|| StoreError::Corrupt(format!("CRL of {issuer_id}/{shard}")))?,
            })
        })
        .transpose()
    }

    /// Deletes an issuer's CRLs (a retired issuer whose certificates all expired long ago).
    pub async fn drop_crls(&self, issuer_id: &str) -> Result<u64> {
        Ok(query("DELETE FROM crls WHERE issuer_id = $1")
            .bind(issuer_id)
            .execute(&self.db)
            .await?
            .rows_affected())
    }

    /// The notAfter of one of the issuer's certificates that expires after `after`, if any:
    /// whether a retired issuer still needs its CRLs. A scan that stops at the first match.
    pub async fn issuer_cert_expiring_after(
        &self,
        issuer_id: &str,
        after: i64,
    ) -> Result<Option<i64>> {
        let row = query(
            "SELECT not_after FROM certificates WHERE issuer_id = $1 AND not_after > $2 LIMIT 1",
        )
        .bind(issuer_id)
        .bind(after)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| r.try_get(0)).transpose()
    }
}
