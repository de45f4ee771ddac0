//! Sceau's storage seam: every piece of server state goes through [`Store`], over one portable
//! SQL schema that runs on SQLite (the embedded default) and PostgreSQL (several stateless
//! server instances sharing one database).
//!
//! Invariants:
//! - Status changes are compare-and-swap (`UPDATE … WHERE id = $1 AND status = $2`); a
//!   transition that lost a race returns [`StoreError::Conflict`] and changes nothing, so two
//!   server instances can never both move an object out of the same state.
//! - Multi-row changes (an order with its authorizations, a certificate with its order) are one
//!   transaction: readers never see half of one. The audit row of a change (order created,
//!   validation finished, certificate issued) commits in the same transaction as the change.
//! - SQL reaches a driver only in [`db`]: rusqlite inline for SQLite, sqlx for PostgreSQL.
//! - On SQLite: WAL, one writer connection (writers queue on an async mutex, not in SQLite's
//!   sleeping busy handler) and reader connections. Commits use `synchronous=NORMAL`, which
//!   survives a killed process; the commits a client must be able to rely on after a power
//!   loss too (a certificate, a revocation) then wait on [`durable::GroupSync`], where one
//!   `fdatasync` of the WAL covers every commit made before it (group commit).
//! - A fault of the storage itself (disk full, read-only, I/O errors, a database that cannot
//!   be opened or reached) is [`StoreError::Unavailable`], never `Database`; the store logs
//!   each such condition once (`health`), so callers answer it and do not log it.

mod certs;
mod console;
mod crls;
mod db;
mod durable;
mod external;
pub mod fleet;
mod health;
mod limits;
mod nonces;
mod ocsp;
mod prefill;
mod queue;
mod records;
pub mod roles;
mod schema;
mod star;

use db::{Row, query};

pub use certs::*;
pub use console::*;
pub use crls::*;
pub use external::*;
pub use health::StorageFault;
pub use limits::*;
pub use ocsp::*;
pub use prefill::SyntheticStar;
pub use queue::*;
pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A compare-and-swap lost, or a uniqueness constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The storage under the database cannot serve the operation now (see `health`): the
    /// operation changed nothing, or its commit is not known to be on disk, and it may succeed
    /// once the condition clears. The store has logged the condition; callers do not.
    #[error("storage unavailable ({condition}): {detail}")]
    Unavailable {
        condition: StorageFault,
        detail: String,
    },
}

impl StoreError {
    /// The storage fault behind this error, if it is one.
    pub fn storage_fault(&self) -> Option<StorageFault> {
        match self {
            StoreError::Unavailable { condition, .. } => Some(*condition),
            _ => None,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Store {
    db: db::Db,
}

/// Unix seconds now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An unguessable, roughly time-ordered identifier: 48 bits of Unix milliseconds then 80 bits
/// from the OS CSPRNG, 16 bytes in base64url (22 characters).
///
/// The time prefix keeps the ids of one moment together in every index that holds them, so a
/// busy server inserts into a few hot index pages instead of a random page of a large index
/// per row (with a million certificates stored, random ids made each insert read and rewrite
/// cold pages). 80 random bits still make object URLs unguessable. The first character stays
/// `A` until the year 2109, so an id never starts with `-` or `_` and is safe as an argument.
pub fn new_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&(millis as u64).to_be_bytes()[2..]);
    aws_lc_rs::rand::fill(&mut bytes[6..]).expect("OS random source");
    sceau_wire::b64::encode(bytes)
}

/// Uniqueness violations come out of [`db`] as `Conflict`; callers give them their meaning.
fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

impl Store {
    /// Opens (creating if needed) the database at `url`: `sqlite://PATH` or `postgres://…`,
    /// and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        let db = db::Db::open(url).await?;
        schema::migrate(&db).await?;
        Ok(Store { db })
    }

    /// Returns once every commit made before the call is on stable storage.
    pub async fn make_durable(&self) -> Result<()> {
        self.db.make_durable().await
    }

    /// One integer from a read-only query, for tests that check invariants across tables.
    #[doc(hidden)]
    pub async fn scalar(&self, sql: &'static str) -> Result<i64> {
        query(sql).fetch_one(&self.db).await?.try_get(0)
    }

    // ---- accounts -----------------------------------------------------------------------

    pub async fn insert_account(&self, a: &AccountRecord) -> Result<()> {
        query(
            "INSERT INTO accounts (id, thumbprint, jwk, status, contact, tos_agreed, eab_kid, created_at, created_ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.id)
        .bind(&a.thumbprint)
        .bind(&a.jwk)
        .bind(&a.status)
        .bind(serde_json::to_string(&a.contact).expect("json"))
        .bind(a.tos_agreed as i64)
        .bind(&a.eab_kid)
        .bind(a.created_at)
        .bind(&a.created_ip)
        .execute(&self.db)
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict("account key already registered".into()) } else { e })?;
        Ok(())
    }

    const ACCOUNT_COLS: &'static str =
        "id, thumbprint, jwk, status, contact, tos_agreed, eab_kid, created_at, created_ip";

    pub async fn account_by_id(&self, id: &str) -> Result<AccountRecord> {
        let q = format!("SELECT {} FROM accounts WHERE id = $1", Self::ACCOUNT_COLS);
        let row = query(q).bind(id).fetch_one(&self.db).await?;
        AccountRecord::from_row(&row)
    }

    pub async fn account_by_thumbprint(&self, thumbprint: &str) -> Result<AccountRecord> {
        let q = format!(
            "SELECT {} FROM accounts WHERE thumbprint = $1",
            Self::ACCOUNT_COLS
        );
        let row = query(q).bind(thumbprint).fetch_one(&self.db).await?;
        AccountRecord::from_row(&row)
    }

    pub async fn update_account_contact(&self, id: &str, contact: &[String]) -> Result<()> {
        query("UPDATE accounts SET contact = $1 WHERE id = $2 AND status = 'valid'")
            .bind(serde_json::to_string(contact).expect("json"))
            .bind(id)
            .execute(&self.db)
            .await?
            .one_or("account is not valid")
    }

    /// CAS on the account status.
    pub async fn set_account_status(&self, id: &str, from: &str, to: &str) -> Result<()> {
        query("UPDATE accounts SET status = $1 WHERE id = $2 AND status = $3")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&self.db)
            .await?
            .one_or(format!("account is not {from}"))
    }

    /// Key rollover (RFC 8555 §7.3.5): CAS on the old thumbprint; the unique index refuses a
    /// key that another account already uses.
    pub async fn change_account_key(
        &self,
        id: &str,
        old_thumbprint: &str,
        new_thumbprint: &str,
        new_jwk: &str,
    ) -> Result<()> {
        query(
            "UPDATE accounts SET thumbprint = $1, jwk = $2 WHERE id = $3 AND thumbprint = $4 AND status = 'valid'",
        )
        .bind(new_thumbprint)
        .bind(new_jwk)
        .bind(id)
        .bind(old_thumbprint)
        .execute(&self.db)
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict("new key already in use".into()) } else { e })?
            .one_or("account key changed concurrently")
    }

    // ---- orders and authorizations ------------------------------------------------------

    /// Inserts new authorizations (with their challenges) and the order that uses them, plus
    /// any reused authorizations already in `order.authz_ids`, in one transaction.
    pub async fn create_order(
        &self,
        order: &OrderRecord,
        new_authzs: &[AuthzRecord],
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        for a in new_authzs {
            query(
                "INSERT INTO authzs (id, account_id, identifier_type, identifier_value, status, expires, token, wildcard, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&a.id)
            .bind(&a.account_id)
            .bind(&a.identifier.kind)
            .bind(&a.identifier.value)
            .bind(&a.status)
            .bind(a.expires)
            .bind(&a.token)
            .bind(a.wildcard as i64)
            .bind(a.created_at)
            .execute(&mut tx)
            .await?;
            for c in &a.challenges {
                query("INSERT INTO challenges (id, authz_id, kind, status, validated, error) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(&c.id)
                    .bind(&a.id)
                    .bind(&c.kind)
                    .bind(&c.status)
                    .bind(c.validated)
                    .bind(c.error.as_ref().map(|p| serde_json::to_string(p).expect("json")))
                    .execute(&mut tx)
                    .await?;
            }
        }
        query(
            "INSERT INTO orders (id, account_id, status, expires, identifiers, authz_ids, not_before, not_after, profile, replaces, error, csr, cert_id, created_at, new_authzs,
             star_start, star_end, star_lifetime, star_adjust, star_get)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, NULL, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&order.id)
        .bind(&order.account_id)
        .bind(&order.status)
        .bind(order.expires)
        .bind(serde_json::to_string(&order.identifiers).expect("json"))
        .bind(serde_json::to_string(&order.authz_ids).expect("json"))
        .bind(order.not_before)
        .bind(order.not_after)
        .bind(&order.profile)
        .bind(&order.replaces)
        .bind(order.created_at)
        .bind(new_authzs.len() as i64)
        .bind(order.star.as_ref().and_then(|t| t.start))
        .bind(order.star.as_ref().map(|t| t.end))
        .bind(order.star.as_ref().map(|t| t.lifetime))
        .bind(order.star.as_ref().map(|t| t.adjust))
        .bind(order.star.as_ref().map(|t| t.allow_get as i64))
        .execute(&mut tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) const ORDER_COLS: &'static str = "id, account_id, status, expires, identifiers, authz_ids, not_before, not_after, profile, replaces, error, csr, cert_id, created_at, star_start, star_end, star_lifetime, star_adjust, star_get, star_next, star_due";

    pub async fn order_by_id(&self, id: &str) -> Result<OrderRecord> {
        let q = format!("SELECT {} FROM orders WHERE id = $1", Self::ORDER_COLS);
        let row = query(q).bind(id).fetch_one(&self.db).await?;
        OrderRecord::from_row(&row)
    }

    /// Order ids of an account, newest first, `limit` from `offset` (RFC 8555 §7.1.2.1 pages).
    pub async fn order_ids_for_account(
        &self,
        account_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows = query(
            "SELECT id FROM orders WHERE account_id = $1 AND status IN ('pending', 'ready', 'processing', 'valid')
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        )
        .bind(account_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
    }

    /// CAS on the order status, optionally recording the error that made it invalid.
    pub async fn set_order_status(
        &self,
        id: &str,
        from: &str,
        to: &str,
        error: Option<&sceau_wire::Problem>,
    ) -> Result<()> {
        query("UPDATE orders SET status = $1, error = COALESCE($2, error) WHERE id = $3 AND status = $4")
            .bind(to)
            .bind(error.map(|p| serde_json::to_string(p).expect("json")))
            .bind(id)
            .bind(from)
            .execute(&self.db)
            .await?
            .one_or(format!("order is not {from}"))
    }

    /// ready → processing, keeping the CSR so that an interrupted issuance can be resumed.
    pub async fn start_processing(&self, id: &str, csr_b64: &str) -> Result<()> {
        query(
            "UPDATE orders SET status = 'processing', csr = $1 WHERE id = $2 AND status = 'ready'",
        )
        .bind(csr_b64)
        .bind(id)
        .execute(&self.db)
        .await?
        .one_or("order is not ready")
    }

    /// Stores the certificate and moves its order processing → valid in one durable commit.
    pub async fn finish_order(&self, cert: &CertRecord, audit: &AuditEntry<'_>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query("UPDATE orders SET status = 'valid', cert_id = $1 WHERE id = $2 AND status = 'processing'")
            .bind(&cert.id)
            .bind(&cert.order_id)
            .execute(&mut tx)
            .await?
            .one_or("order is not processing")?;
        insert_certificate(&mut tx, cert).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        self.make_durable().await
    }

    /// Orders left in `processing` by a crash, to be resumed at start-up.
    pub async fn processing_orders(&self) -> Result<Vec<OrderRecord>> {
        let q = format!(
            "SELECT {} FROM orders WHERE status = 'processing'",
            Self::ORDER_COLS
        );
        let rows = query(q).fetch_all(&self.db).await?;
        rows.iter().map(OrderRecord::from_row).collect()
    }

    pub async fn authz_by_id(&self, id: &str) -> Result<AuthzRecord> {
        // One round trip: the authorization joined with its challenges.
        let rows = query(
            "SELECT a.id, a.account_id, a.identifier_type, a.identifier_value, a.status, a.expires, a.token, a.wildcard, a.created_at,
                    c.id AS c_id, c.kind AS c_kind, c.status AS c_status, c.validated AS c_validated, c.error AS c_error
             FROM authzs a LEFT JOIN challenges c ON c.authz_id = a.id WHERE a.id = $1 ORDER BY c.kind",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await?;
        let first = rows.first().ok_or(StoreError::NotFound)?;
        let mut authz = AuthzRecord::from_row(first)?;
        for row in &rows {
            if let Some(cid) = get::<Option<String>>(row, "c_id")? {
                authz
                    .challenges
                    .push(ChallengeRecord::from_joined_row(row, cid, id)?);
            }
        }
        Ok(authz)
    }

    /// Several authorizations with their challenges (an order's).
    pub async fn authzs_by_ids(&self, ids: &[String]) -> Result<Vec<AuthzRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.authz_by_id(id).await?);
        }
        Ok(out)
    }

    /// A valid, unexpired authorization of this account for this identifier (RFC 8555 §7.4:
    /// servers may reuse them), expiring after `min_expires`. A wildcard authorization (for
    /// `*.name`, validated with dns-01) and a plain one for `name` never stand in for each other.
    pub async fn reusable_authz(
        &self,
        account_id: &str,
        identifier: &sceau_wire::Identifier,
        wildcard: bool,
        min_expires: i64,
    ) -> Result<Option<String>> {
        let row = query(
            "SELECT id FROM authzs WHERE account_id = $1 AND identifier_type = $2 AND identifier_value = $3
             AND status = 'valid' AND expires > $4 AND wildcard = $5 ORDER BY expires DESC LIMIT 1",
        )
        .bind(account_id)
        .bind(&identifier.kind)
        .bind(&identifier.value)
        .bind(min_expires)
        .bind(wildcard as i64)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| r.try_get::<String, _>(0)).transpose()
    }

    pub async fn challenge_by_id(&self, id: &str) -> Result<ChallengeRecord> {
        let row = query(
            "SELECT id, authz_id, kind, status, validated, error FROM challenges WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.db)
        .await?;
        ChallengeRecord::from_row(&row)
    }

    /// pending → processing for a challenge whose authorization is still pending, the
    /// validation leased to the caller until `lease_until`.
    pub async fn start_challenge(
        &self,
        challenge_id: &str,
        authz_id: &str,
        lease_until: i64,
    ) -> Result<()> {
        query(
            "UPDATE challenges SET status = 'processing', validation_lease = $3 WHERE id = $1 AND status = 'pending'
             AND EXISTS (SELECT 1 FROM authzs WHERE authzs.id = $2 AND authzs.status = 'pending')",
        )
        .bind(challenge_id)
        .bind(authz_id)
        .bind(lease_until)
        .execute(&self.db)
        .await?
        .one_or("challenge is not pending")
    }

    /// Takes over a validation whose lease expired before `now` (its instance stopped), leased
    /// to the caller until `lease_until`; `Conflict` when another instance holds or took it.
    pub async fn take_validation(
        &self,
        challenge_id: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<()> {
        query(
            "UPDATE challenges SET validation_lease = $3 WHERE id = $1 AND status = 'processing'
             AND (validation_lease IS NULL OR validation_lease < $2)",
        )
        .bind(challenge_id)
        .bind(now)
        .bind(lease_until)
        .execute(&self.db)
        .await?
        .one_or("the validation is leased to a live instance")
    }

    /// Records a validation outcome: the challenge processing → valid/invalid and its
    /// authorization pending → valid/invalid, in one transaction (never half-updated).
    pub async fn finish_challenge(
        &self,
        challenge_id: &str,
        authz_id: &str,
        error: Option<&sceau_wire::Problem>,
        at: i64,
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let (status, validated) = if error.is_none() {
            ("valid", Some(at))
        } else {
            ("invalid", None)
        };
        query("UPDATE challenges SET status = $1, validated = $2, error = $3 WHERE id = $4 AND status = 'processing'")
            .bind(status)
            .bind(validated)
            .bind(error.map(|p| serde_json::to_string(p).expect("json")))
            .bind(challenge_id)
            .execute(&mut tx)
            .await?
            .one_or("challenge is not processing")?;
        query("UPDATE authzs SET status = $1 WHERE id = $2 AND status = 'pending'")
            .bind(status)
            .bind(authz_id)
            .execute(&mut tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// CAS on an authorization's status (deactivation, RFC 8555 §7.5.2).
    pub async fn set_authz_status(&self, id: &str, from: &[&str], to: &str) -> Result<()> {
        for f in from {
            let n = query("UPDATE authzs SET status = $1 WHERE id = $2 AND status = $3")
                .bind(to)
                .bind(id)
                .bind(*f)
                .execute(&self.db)
                .await?
                .rows_affected();
            if n == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Conflict("authorization state changed".into()))
    }

    /// Challenges in `processing` whose validation lease expired before `now`: left by an
    /// instance that stopped (a crash), to be taken over with [`Store::take_validation`].
    pub async fn processing_challenges(&self, now: i64) -> Result<Vec<ChallengeRecord>> {
        let rows = query("SELECT id, authz_id, kind, status, validated, error FROM challenges WHERE status = 'processing' AND (validation_lease IS NULL OR validation_lease < $1)")
            .bind(now)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(ChallengeRecord::from_row).collect()
    }

    /// Failed validations of `identifier` by `account_id` since `since` (R29).
    pub async fn failed_validations_since(
        &self,
        account_id: &str,
        identifier_value: &str,
        since: i64,
    ) -> Result<i64> {
        let row = query(
            "SELECT COUNT(*) FROM audit WHERE event = 'validation.failed' AND account_id = $1 AND at >= $2 AND detail LIKE $3",
        )
        .bind(account_id)
        .bind(since)
        .bind(format!("%\"identifier\":\"{}\"%", identifier_value.replace(['%', '_', '"'], "")))
        .fetch_one(&self.db)
        .await?;
        row.try_get::<i64, _>(0)
    }

    // ---- certificates -------------------------------------------------------------------

    pub(crate) const CERT_COLS: &'static str = "id, serial, account_id, order_id, der, chain_pem, not_before, not_after, ari_id, spki_sha256, issuer_id, crl_shard, revoked_at, revocation_reason, replaced_by, created_at";

    pub async fn cert_by_id(&self, id: &str) -> Result<CertRecord> {
        self.cert_where("id", id).await
    }

    pub async fn cert_by_serial(&self, serial_hex: &str) -> Result<CertRecord> {
        self.cert_where("serial", serial_hex).await
    }

    pub async fn cert_by_ari_id(&self, ari_id: &str) -> Result<CertRecord> {
        self.cert_where("ari_id", ari_id).await
    }

    async fn cert_where(&self, column: &str, value: &str) -> Result<CertRecord> {
        let q = format!(
            "SELECT {} FROM certificates WHERE {column} = $1",
            Self::CERT_COLS
        );
        let row = query(q).bind(value).fetch_one(&self.db).await?;
        CertRecord::from_row(&row)
    }

    /// Whether this public key (SHA-256 of its SPKI) was ever certified here (R37).
    pub async fn spki_seen(&self, spki_sha256: &str) -> Result<bool> {
        let row = query("SELECT COUNT(*) FROM certificates WHERE spki_sha256 = $1")
            .bind(spki_sha256)
            .fetch_one(&self.db)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// CAS: not revoked → revoked with reason.
    /// In the same transaction, the certificate's CRL shard is marked for signing again and
    /// its pre-signed OCSP responses are deleted, so relying parties learn of the revocation
    /// at the next CRL and OCSP answer (never a `good` signed before it).
    pub async fn revoke_cert(&self, id: &str, reason: u8, at: i64) -> Result<()> {
        // One statement set for every revocation: see `certs::revoke_cert_audited`.
        self.revoke_cert_audited(id, reason, at, None).await
    }

    pub async fn count(&self, table: Table) -> Result<i64> {
        let row = query(format!("SELECT COUNT(*) FROM {}", table.name()))
            .fetch_one(&self.db)
            .await?;
        row.try_get::<i64, _>(0)
    }

    // ---- audit --------------------------------------------------------------------------

    /// An audit event that records no change of its own (a refusal, a deactivation).
    pub async fn audit(&self, e: &AuditEntry<'_>) -> Result<()> {
        audit_query(e).execute(&self.db).await?;
        Ok(())
    }

    pub async fn audit_events(
        &self,
        account_id: Option<&str>,
        since: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = query(
            "SELECT at, event, account_id, client_ip, detail FROM audit WHERE at >= $1 AND ($2 IS NULL OR account_id = $2) ORDER BY at, id",
        )
        .bind(since)
        .bind(account_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(AuditRecord::from_row).collect()
    }
}

/// The id of a log row (audit event, change of an external account): the time in nanoseconds
/// first, so the primary-key index grows at its end and `ORDER BY at, id` lists the events of
/// one second in the order they happened; then a [`new_id`] to keep ids unique.
pub(crate) fn log_id() -> String {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{nanos:020}-{}", new_id())
}

/// Inserts an issued certificate and marks the one it replaces (ARI, RFC 9773 §5) inside the
/// caller's transaction, which also moves its order to `valid`: a certificate is never stored
/// without its order's change.
pub(crate) async fn insert_certificate(tx: &mut db::Tx, cert: &CertRecord) -> Result<()> {
    query(
        "INSERT INTO certificates (id, serial, account_id, order_id, der, chain_pem, not_before, not_after, ari_id, spki_sha256, issuer_id, crl_shard, revoked_at, revocation_reason, replaced_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, NULL, NULL, NULL, $12)",
    )
    .bind(&cert.id)
    .bind(&cert.serial)
    .bind(&cert.account_id)
    .bind(&cert.order_id)
    .bind(hex_encode(&cert.der))
    .bind(&cert.chain_pem)
    .bind(cert.not_before)
    .bind(cert.not_after)
    .bind(&cert.ari_id)
    .bind(&cert.spki_sha256)
    .bind(&cert.issuer_id)
    .bind(cert.created_at)
    .bind(cert.crl_shard)
    .execute(&mut *tx)
    .await?;
    if let Some(replaced) = &cert.replaces {
        query("UPDATE certificates SET replaced_by = $1 WHERE ari_id = $2 AND replaced_by IS NULL")
            .bind(&cert.order_id)
            .bind(replaced)
            .execute(tx)
            .await?;
    }
    Ok(())
}

pub(crate) fn audit_query(e: &AuditEntry<'_>) -> db::Query {
    query("INSERT INTO audit (id, at, event, account_id, client_ip, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(log_id())
        .bind(now())
        .bind(e.event)
        .bind(e.account_id)
        .bind(e.client_ip)
        .bind(e.detail.to_string())
}

async fn insert_audit(tx: &mut db::Tx, e: &AuditEntry<'_>) -> Result<()> {
    audit_query(e).execute(tx).await?;
    Ok(())
}

/// Tables whose rows tests and reports count.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Accounts,
    Orders,
    Authzs,
    Challenges,
    Certificates,
    Audit,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Accounts => "accounts",
            Table::Orders => "orders",
            Table::Authzs => "authzs",
            Table::Challenges => "challenges",
            Table::Certificates => "certificates",
            Table::Audit => "audit",
        }
    }
}

pub(crate) use sceau_wire::hex::encode as hex_encode;

pub(crate) use sceau_wire::hex::decode as hex_decode;

pub(crate) fn get<T: db::FromValue>(row: &Row, col: &str) -> Result<T> {
    row.try_get(col)
}

#[cfg(test)]
mod tests {
    use super::new_id;

    fn millis_now() -> u64 {
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64
    }

    #[test]
    fn ids_carry_their_creation_time_and_80_random_bits() {
        let before = millis_now();
        let ids: Vec<String> = (0..2000).map(|_| new_id()).collect();
        let after = millis_now();
        let mut tails = std::collections::HashSet::new();
        for id in &ids {
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with(['-', '_']), "{id}");
            let bytes = sceau_wire::b64::decode(id).expect("base64url");
            let mut stamp = [0u8; 8];
            stamp[2..].copy_from_slice(&bytes[..6]);
            let stamp = u64::from_be_bytes(stamp);
            assert!(
                (before..=after).contains(&stamp),
                "{stamp} not in {before}..={after}"
            );
            // The random part alone tells ids apart, even within one millisecond.
            assert!(
                tails.insert(bytes[6..].to_vec()),
                "repeated random part in {id}"
            );
        }
    }

    #[test]
    fn hex_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = super::hex_encode(&all);
        assert!(text.starts_with("000102"), "{text}");
        assert!(text.ends_with("fdfeff"), "{text}");
        assert_eq!(super::hex_decode(&text), Some(all));
    }
}
