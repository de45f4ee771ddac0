//! Nonces shared by the instances of one database (RFC 8555 §6.5 across instances): the key
//! they are made with and the record of those redeemed.
//!
//! Invariants:
//! - There is one key (`nonce_keys` row 1): the first instance creates it, every other one
//!   reads the same, so a nonce any instance issued verifies on all of them.
//! - A nonce is redeemed at most once: the insert of its row is the test, and the primary key
//!   makes a second insert, on any instance, change nothing.

use crate::db::query;
use crate::{Result, Store, now};

impl Store {
    /// The key of the instances' nonces (base64url): `candidate` if this is the first instance
    /// to ask, else the one stored before.
    pub async fn nonce_key(&self, candidate: &str) -> Result<String> {
        query(
            "INSERT INTO nonce_keys (id, secret, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate)
        .bind(now())
        .execute(&self.db)
        .await?;
        query("SELECT secret FROM nonce_keys WHERE id = 1")
            .fetch_one(&self.db)
            .await?
            .try_get::<String, _>("secret")
    }

    /// Records the redemption of `nonce`, issued at `issued_at`: true the first time only.
    pub async fn redeem_nonce(&self, nonce: &str, issued_at: i64) -> Result<bool> {
        let done = query(
            "INSERT INTO nonces_redeemed (nonce, issued_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(issued_at)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets the redemptions of nonces issued before `before` (they are refused as too old
    /// anyway); returns how many.
    pub async fn forget_nonces_before(&self, before: i64) -> Result<u64> {
        let done = query("DELETE FROM nonces_redeemed WHERE issued_at < $1")
            .bind(before)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected())
    }
}
