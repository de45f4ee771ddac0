//! Synthetic history for capacity benchmarks (issue: throughput after 1,000,000 certificates).
//!
//! Each synthetic certificate comes with the rows one real http-01 issuance leaves behind: an
//! order (valid), its authorization (valid, already expired so that nothing reuses it), three
//! challenges, the certificate (random bytes of a real certificate's size, random serial, key
//! hash and ARI id) and five audit events. Ids come from the server's own id makers, so every
//! index holds what a real history would have left in it. Never used by the server.

use crate::db::{Db, query};
use crate::{Result, Store, SyntheticRevoked, hex_encode, log_id, new_id, now};

/// A synthetic STAR series (RFC 8739) for `Store::prefill_star`: a `valid` auto-renewal order
/// whose first certificate is issued and whose next one is due at `due`, so that the server's
/// renewal job picks it up then like any series a client ordered.
#[derive(Debug, Clone)]
pub struct SyntheticStar {
    /// The one DNS name of the series.
    pub name: String,
    /// The series' CSR (base64url DER): every renewed certificate is for its key.
    pub csr_b64: String,
    /// The terms as agreed (seconds): lifetime, the pre-dating of renewed certificates, end-date.
    pub lifetime: i64,
    pub adjust: i64,
    pub end: i64,
    /// Nominal renewal date of the next certificate (§3.5) and when it is due (`next − adjust`).
    pub next: i64,
    pub due: i64,
}

/// Certificates per transaction.
const BATCH: u64 = 2_000;
/// Synthetic certificates per synthetic account.
const PER_ACCOUNT: u64 = 100;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).expect("OS random source");
    bytes
}

fn random_hex(len: usize) -> String {
    hex_encode(&random_bytes(len))
}

fn fake_pem(len: usize) -> String {
    let body = sceau_wire::b64::encode(random_bytes(len));
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A synthetic ACME account (valid, a placeholder P-256 key) created at `t`; its id.
async fn synthetic_account(tx: &mut crate::db::Tx, t: i64) -> Result<String> {
    let account = new_id();
    query(
        "INSERT INTO accounts (id, thumbprint, jwk, status, contact, tos_agreed, eab_kid, created_at, created_ip)
         VALUES ($1, $2, $3, 'valid', '[]', 1, NULL, $4, '127.0.0.1')",
    )
    .bind(&account)
    .bind(random_hex(32))
    .bind(format!(
        "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{}\",\"y\":\"{}\"}}",
        random_hex(16),
        random_hex(16)
    ))
    .bind(t)
    .execute(tx)
    .await?;
    Ok(account)
}

/// A synthetic certificate `id` of `order`: placeholder bytes of a real certificate's size
/// (and chain), a random serial, ARI id and key hash, valid over `validity`, stored at `t`.
async fn synthetic_certificate(
    tx: &mut crate::db::Tx,
    id: &str,
    account: &str,
    order: &str,
    validity: (i64, i64),
    t: i64,
) -> Result<()> {
    query(
        "INSERT INTO certificates (id, serial, account_id, order_id, der, chain_pem, not_before, not_after, ari_id, spki_sha256, revoked_at, revocation_reason, replaced_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, NULL, $11)",
    )
    .bind(id)
    .bind(random_hex(16))
    .bind(account)
    .bind(order)
    .bind(random_hex(650))
    .bind(format!("{}{}", fake_pem(650), fake_pem(600)))
    .bind(validity.0)
    .bind(validity.1)
    .bind(format!("{}.{}", new_id(), random_hex(16)))
    .bind(random_hex(32))
    .bind(t)
    .execute(tx)
    .await?;
    Ok(())
}

impl Store {
    /// Adds `certificates` synthetic issuances; `progress` gets the running total after each
    /// committed batch.
    #[doc(hidden)]
    pub async fn prefill(&self, certificates: u64, mut progress: impl FnMut(u64)) -> Result<()> {
        let t = now();
        let mut done = 0;
        let mut account = String::new();
        if let Db::Sqlite(_) = &self.db {
            // A bulk load wants the indexes keyed by serial, ARI id and key hash (random by
            // nature) in memory; this process is the only user of its writer connection.
            query("PRAGMA cache_size = -1048576")
                .execute(&self.db)
                .await?;
        }
        while done < certificates {
            let mut tx = self.db.begin().await?;
            let end = (done + BATCH).min(certificates);
            for i in done..end {
                if i % PER_ACCOUNT == 0 {
                    account = synthetic_account(&mut tx, t).await?;
                }
                let (order, authz, cert) = (new_id(), new_id(), new_id());
                let name = format!("host-{i}.prefill.test");
                query(
                    "INSERT INTO authzs (id, account_id, identifier_type, identifier_value, status, expires, token, wildcard, created_at)
                     VALUES ($1, $2, 'dns', $3, 'valid', $4, $5, 0, $4)",
                )
                .bind(&authz)
                .bind(&account)
                .bind(&name)
                .bind(t - 86_400)
                .bind(new_id())
                .execute(&mut tx)
                .await?;
                for (kind, status) in [
                    ("dns-01", "pending"),
                    ("http-01", "valid"),
                    ("tls-alpn-01", "pending"),
                ] {
                    query("INSERT INTO challenges (id, authz_id, kind, status, validated, error) VALUES ($1, $2, $3, $4, $5, NULL)")
                        .bind(new_id())
                        .bind(&authz)
                        .bind(kind)
                        .bind(status)
                        .bind((status == "valid").then_some(t))
                        .execute(&mut tx)
                        .await?;
                }
                query(
                    "INSERT INTO orders (id, account_id, status, expires, identifiers, authz_ids, not_before, not_after, profile, replaces, error, csr, cert_id, created_at)
                     VALUES ($1, $2, 'valid', $3, $4, $5, NULL, NULL, NULL, NULL, NULL, NULL, $6, $3)",
                )
                .bind(&order)
                .bind(&account)
                .bind(t)
                .bind(format!("[{{\"type\":\"dns\",\"value\":\"{name}\"}}]"))
                .bind(format!("[\"{authz}\"]"))
                .bind(&cert)
                .execute(&mut tx)
                .await?;
                let validity = (t, t + 90 * 86_400);
                synthetic_certificate(&mut tx, &cert, &account, &order, validity, t).await?;
                for (event, detail) in [
                    ("order.created", format!("{{\"order\":\"{order}\"}}")),
                    (
                        "validation.started",
                        format!("{{\"identifier\":\"{name}\"}}"),
                    ),
                    (
                        "validation.succeeded",
                        format!("{{\"identifier\":\"{name}\"}}"),
                    ),
                    ("order.finalized", format!("{{\"order\":\"{order}\"}}")),
                    (
                        "certificate.issued",
                        format!("{{\"certificate\":\"{cert}\"}}"),
                    ),
                ] {
                    query("INSERT INTO audit (id, at, event, account_id, client_ip, detail) VALUES ($1, $2, $3, $4, '127.0.0.1', $5)")
                        .bind(log_id())
                        .bind(t)
                        .bind(event)
                        .bind(&account)
                        .bind(detail)
                        .execute(&mut tx)
                        .await?;
                }
            }
            tx.commit().await?;
            done = end;
            if let Db::Sqlite(_) = &self.db {
                // Keep the WAL short: a bulk load would otherwise grow it by gigabytes.
                query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_all(&self.db)
                    .await?;
            }
            progress(done);
        }
        self.make_durable().await
    }

    /// Adds STAR series for the renewal benchmark: per series its order (`valid`, the terms
    /// agreed, the next certificate due at `due`), its authorization and its first certificate
    /// (placeholder bytes of a real certificate's size, valid from `next − lifetime` to `next`;
    /// the renewal path reads only the order's CSR, names and terms). One account per
    /// hundred series. `progress` gets the running total after each committed batch.
    #[doc(hidden)]
    pub async fn prefill_star(
        &self,
        series: impl IntoIterator<Item = SyntheticStar>,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let t = now();
        let mut series = series.into_iter().peekable();
        let mut done = 0u64;
        let mut account = String::new();
        while series.peek().is_some() {
            let mut tx = self.db.begin().await?;
            for s in series.by_ref().take(BATCH as usize) {
                if done.is_multiple_of(PER_ACCOUNT) {
                    account = synthetic_account(&mut tx, t).await?;
                }
                let (order, authz, cert) = (new_id(), new_id(), new_id());
                query(
                    "INSERT INTO authzs (id, account_id, identifier_type, identifier_value, status, expires, token, wildcard, created_at)
                     VALUES ($1, $2, 'dns', $3, 'valid', $4, $5, 0, $6)",
                )
                .bind(&authz)
                .bind(&account)
                .bind(&s.name)
                .bind(t + 86_400)
                .bind(new_id())
                .bind(t)
                .execute(&mut tx)
                .await?;
                let first = s.next - s.lifetime;
                query(
                    "INSERT INTO orders (id, account_id, status, expires, identifiers, authz_ids, not_before, not_after, profile, replaces, error, csr, cert_id, created_at,
                     star_start, star_end, star_lifetime, star_adjust, star_get, star_next, star_due)
                     VALUES ($1, $2, 'valid', $3, $4, $5, NULL, NULL, NULL, NULL, NULL, $6, $7, $8, $9, $3, $10, $11, 1, $12, $13)",
                )
                .bind(&order)
                .bind(&account)
                .bind(s.end)
                .bind(format!("[{{\"type\":\"dns\",\"value\":\"{}\"}}]", s.name))
                .bind(format!("[\"{authz}\"]"))
                .bind(&s.csr_b64)
                .bind(&cert)
                .bind(t)
                .bind(first)
                .bind(s.lifetime)
                .bind(s.adjust)
                .bind(s.next)
                .bind(s.due)
                .execute(&mut tx)
                .await?;
                let validity = (first, s.next);
                synthetic_certificate(&mut tx, &cert, &account, &order, validity, t).await?;
                done += 1;
            }
            tx.commit().await?;
            progress(done);
        }
        self.make_durable().await?;
        Ok(done)
    }

    /// Adds revoked certificates, as the CRL job reads them (issuer, shard, serial, expiry,
    /// revocation time and reason), for CRL benchmarks and tests. Their other columns hold
    /// placeholders (a few bytes of DER, no order), which nothing on the CRL path reads.
    /// `progress` gets the running total after each committed batch.
    #[doc(hidden)]
    pub async fn prefill_revoked(
        &self,
        rows: impl IntoIterator<Item = SyntheticRevoked>,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let mut rows = rows.into_iter().peekable();
        let mut done = 0;
        let account = new_id();
        while rows.peek().is_some() {
            let mut tx = self.db.begin().await?;
            for row in rows.by_ref().take(BATCH as usize) {
                query(
                    "INSERT INTO certificates (id, serial, account_id, order_id, der, chain_pem, not_before, not_after, ari_id, spki_sha256, issuer_id, crl_shard, revoked_at, revocation_reason, replaced_by, created_at)
                     VALUES ($1, $2, $3, $4, '30', '', $5, $6, $7, $8, $9, $10, $11, $12, NULL, $5)",
                )
                .bind(new_id())
                .bind(&row.serial)
                .bind(&account)
                .bind(new_id())
                .bind(row.revoked_at.min(row.not_after) - 1)
                .bind(row.not_after)
                .bind(format!("{}.{}", new_id(), row.serial))
                .bind(random_hex(32))
                .bind(&row.issuer_id)
                .bind(i64::from(row.crl_shard))
                .bind(row.revoked_at)
                .bind(row.reason.map(i64::from))
                .execute(&mut tx)
                .await?;
                done += 1;
            }
            tx.commit().await?;
            progress(done);
        }
        self.make_durable().await?;
        Ok(done)
    }
}
