//! External admin accounts (the agency guide's "AA", RFC 8555 §7.3.4's external accounts): their
//! allowed names, sealed MAC keys, status cascades onto ACME accounts, and change history.
//!
//! Invariants:
//! - Every change of an AA or of an ACME account made by an administrator is one transaction
//!   that also writes its row in `external_account_changes` (when an AA is concerned) and in
//!   `audit`: a change is never without its record, nor a record without its change.
//! - An ACME account's status is `suspended` exactly while it holds at least one row in
//!   `account_holds` (cause `admin` or `external`), so resuming an AA does not resume an ACME
//!   account that an administrator suspended on its own, and the other way round.
//! - `deactivated` is final, for AAs and ACME accounts: no statement here moves out of it.
//! - This module stores the MAC key sealed; it never sees the key in clear.

use crate::db::{Row, Tx, query};

use crate::{
    AccountRecord, AuditEntry, AuditRecord, CertRecord, Result, Store, StoreError, audit_query,
    get, hex_decode, hex_encode, log_id, now,
};

/// One entry of an AA's allowed-name list (R26, R27).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedName {
    /// Lower-case DNS name or canonical IP address.
    pub name: String,
    /// The entry also covers every name below `name`.
    pub subdomains: bool,
    pub added_at: i64,
    pub added_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalAccountRecord {
    pub kid: String,
    /// "NAME <MAIL>" of the person the AA belongs to (R1).
    pub owner: String,
    /// `valid`, `suspended` or `deactivated`.
    pub status: String,
    /// The MAC key sealed by the admin crate (nonce, ciphertext, tag).
    pub mac_key_sealed: Vec<u8>,
    pub key_regenerations: i64,
    pub key_updated_at: i64,
    pub profiles: Vec<String>,
    pub wildcards: bool,
    /// End of validity, Unix seconds (R8).
    pub not_after: i64,
    pub created_at: i64,
    pub created_by: String,
    pub names: Vec<AllowedName>,
}

/// Who changes what, for the change history and the audit trail.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub actor: &'a str,
    /// Short verb, e.g. `created`, `names_added`; the audit event is `admin.<action>`.
    pub action: &'a str,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExternalChange {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// What an administrator's change of an ACME account's status did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatusChange {
    pub status: String,
    /// For a resume: the account stays suspended because its AA is suspended.
    pub still_held_by_external: bool,
}

fn external_from_row(row: &Row) -> Result<ExternalAccountRecord> {
    let sealed: String = get(row, "mac_key")?;
    let profiles: String = get(row, "profiles")?;
    Ok(ExternalAccountRecord {
        kid: get(row, "kid")?,
        owner: get(row, "owner")?,
        status: get(row, "status")?,
        mac_key_sealed: hex_decode(&sealed).ok_or_else(|| StoreError::Corrupt("mac_key".into()))?,
        key_regenerations: get(row, "key_regenerations")?,
        key_updated_at: get(row, "key_updated_at")?,
        profiles: serde_json::from_str(&profiles)
            .map_err(|e| StoreError::Corrupt(format!("profiles: {e}")))?,
        wildcards: get::<i64>(row, "wildcards")? != 0,
        not_after: get(row, "not_after")?,
        created_at: get(row, "created_at")?,
        created_by: get(row, "created_by")?,
        names: Vec::new(),
    })
}

const EXTERNAL_COLS: &str = "kid, owner, status, mac_key, key_regenerations, key_updated_at, profiles, wildcards, not_after, created_at, created_by";

async fn record(
    tx: &mut Tx,
    kid: Option<&str>,
    account_id: Option<&str>,
    change: &Change<'_>,
) -> Result<()> {
    let at = now();
    let mut detail = change.detail.clone();
    if let Some(map) = detail.as_object_mut() {
        map.insert("actor".into(), change.actor.into());
        if let Some(kid) = kid {
            map.insert("kid".into(), kid.into());
        }
    }
    if let Some(kid) = kid {
        query("INSERT INTO external_account_changes (id, kid, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(log_id())
            .bind(kid)
            .bind(at)
            .bind(change.actor)
            .bind(change.action)
            .bind(change.detail.to_string())
            .execute(&mut *tx)
            .await?;
    }
    let event = format!("admin.{}", change.action);
    audit_query(&AuditEntry {
        event: &event,
        account_id,
        client_ip: None,
        detail,
    })
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn insert_names(tx: &mut Tx, kid: &str, names: &[AllowedName]) -> Result<usize> {
    let mut added = 0;
    for n in names {
        // An entry already present keeps its history; asking again for subdomains widens it.
        let existing =
            query("SELECT subdomains FROM external_account_names WHERE kid = $1 AND name = $2")
                .bind(kid)
                .bind(&n.name)
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            None => {
                query("INSERT INTO external_account_names (kid, name, subdomains, added_at, added_by) VALUES ($1, $2, $3, $4, $5)")
                    .bind(kid)
                    .bind(&n.name)
                    .bind(n.subdomains as i64)
                    .bind(n.added_at)
                    .bind(&n.added_by)
                    .execute(&mut *tx)
                    .await?;
                added += 1;
            }
            Some(row) if row.try_get::<i64, _>(0)? != n.subdomains as i64 => {
                query("UPDATE external_account_names SET subdomains = $1, added_at = $2, added_by = $3 WHERE kid = $4 AND name = $5")
                    .bind(n.subdomains as i64)
                    .bind(n.added_at)
                    .bind(&n.added_by)
                    .bind(kid)
                    .bind(&n.name)
                    .execute(&mut *tx)
                    .await?;
                added += 1;
            }
            Some(_) => {}
        }
    }
    Ok(added)
}

impl Store {
    /// Creates an AA with its names; `Conflict` if the kid exists.
    pub async fn insert_external_account(
        &self,
        aa: &ExternalAccountRecord,
        change: &Change<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query(format!(
            "INSERT INTO external_accounts ({EXTERNAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&aa.kid)
        .bind(&aa.owner)
        .bind(&aa.status)
        .bind(hex_encode(&aa.mac_key_sealed))
        .bind(aa.key_regenerations)
        .bind(aa.key_updated_at)
        .bind(serde_json::to_string(&aa.profiles).expect("json"))
        .bind(aa.wildcards as i64)
        .bind(aa.not_after)
        .bind(aa.created_at)
        .bind(&aa.created_by)
        .execute(&mut tx)
        .await
        .map_err(|e| if crate::is_unique_violation(&e) { StoreError::Conflict("external account exists".into()) } else { e })?;
        insert_names(&mut tx, &aa.kid, &aa.names).await?;
        record(&mut tx, Some(&aa.kid), None, change).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn external_account(&self, kid: &str) -> Result<ExternalAccountRecord> {
        let q = format!("SELECT {EXTERNAL_COLS} FROM external_accounts WHERE kid = $1");
        let row = query(q).bind(kid).fetch_one(&self.db).await?;
        let mut aa = external_from_row(&row)?;
        aa.names = self.external_names(kid).await?;
        Ok(aa)
    }

    async fn external_names(&self, kid: &str) -> Result<Vec<AllowedName>> {
        let rows = query("SELECT name, subdomains, added_at, added_by FROM external_account_names WHERE kid = $1 ORDER BY name")
            .bind(kid)
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AllowedName {
                    name: get(r, "name")?,
                    subdomains: get::<i64>(r, "subdomains")? != 0,
                    added_at: get(r, "added_at")?,
                    added_by: get(r, "added_by")?,
                })
            })
            .collect()
    }

    /// Every AA, oldest first, with its names.
    pub async fn external_accounts(&self) -> Result<Vec<ExternalAccountRecord>> {
        let q = format!("SELECT {EXTERNAL_COLS} FROM external_accounts ORDER BY created_at, kid");
        let rows = query(q).fetch_all(&self.db).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut aa = external_from_row(row)?;
            aa.names = self.external_names(&aa.kid).await?;
            out.push(aa);
        }
        Ok(out)
    }

    /// Adds (or widens) allowed names of an AA that is not deactivated; returns how many
    /// entries changed.
    pub async fn add_external_names(
        &self,
        kid: &str,
        names: &[AllowedName],
        change: &Change<'_>,
    ) -> Result<usize> {
        let mut tx = self.db.begin().await?;
        Self::require_live(&mut tx, kid).await?;
        let n = insert_names(&mut tx, kid, names).await?;
        record(&mut tx, Some(kid), None, change).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Removes allowed names; `NotFound` if one of them is not on the list (nothing removed).
    pub async fn remove_external_names(
        &self,
        kid: &str,
        names: &[String],
        change: &Change<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        Self::require_live(&mut tx, kid).await?;
        for name in names {
            query("DELETE FROM external_account_names WHERE kid = $1 AND name = $2")
                .bind(kid)
                .bind(name)
                .execute(&mut tx)
                .await?
                .one_or(format!("{name} is not on the list"))?;
        }
        record(&mut tx, Some(kid), None, change).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the sealed MAC key (R9); CAS on the regeneration count so that two concurrent
    /// regenerations cannot both hand out a key. Returns the new count.
    pub async fn replace_external_mac_key(
        &self,
        kid: &str,
        seen_regenerations: i64,
        sealed: &[u8],
        change: &Change<'_>,
    ) -> Result<i64> {
        let mut tx = self.db.begin().await?;
        query(
            "UPDATE external_accounts SET mac_key = $1, key_regenerations = key_regenerations + 1, key_updated_at = $2
             WHERE kid = $3 AND key_regenerations = $4 AND status <> 'deactivated'",
        )
        .bind(hex_encode(sealed))
        .bind(now())
        .bind(kid)
        .bind(seen_regenerations)
        .execute(&mut tx)
        .await?
            .one_or("the external account is deactivated or its key changed meanwhile")?;
        record(&mut tx, Some(kid), None, change).await?;
        tx.commit().await?;
        Ok(seen_regenerations + 1)
    }

    /// Sets the certificate profiles an AA may order.
    pub async fn set_external_profiles(
        &self,
        kid: &str,
        profiles: &[String],
        change: &Change<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        Self::require_live(&mut tx, kid).await?;
        query("UPDATE external_accounts SET profiles = $1 WHERE kid = $2")
            .bind(serde_json::to_string(profiles).expect("json"))
            .bind(kid)
            .execute(&mut tx)
            .await?;
        record(&mut tx, Some(kid), None, change).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves the end of validity of an AA that is not deactivated.
    pub async fn set_external_not_after(
        &self,
        kid: &str,
        not_after: i64,
        change: &Change<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        Self::require_live(&mut tx, kid).await?;
        query("UPDATE external_accounts SET not_after = $1 WHERE kid = $2")
            .bind(not_after)
            .bind(kid)
            .execute(&mut tx)
            .await?;
        record(&mut tx, Some(kid), None, change).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn require_live(tx: &mut Tx, kid: &str) -> Result<()> {
        let row = query("SELECT status FROM external_accounts WHERE kid = $1")
            .bind(kid)
            .fetch_one(&mut *tx)
            .await?;
        if row.try_get::<String, _>(0)? == "deactivated" {
            return Err(StoreError::Conflict(
                "the external account is deactivated".into(),
            ));
        }
        Ok(())
    }

    /// AA status change with its cascade onto the AA's ACME accounts (Annex A, Table 2):
    /// `suspended` holds them, `valid` releases the AA's hold, `deactivated` deactivates them.
    /// CAS: `Conflict` if the AA is not in one of `from`.
    pub async fn set_external_status(
        &self,
        kid: &str,
        from: &[&str],
        to: &str,
        change: &Change<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let row = query("SELECT status FROM external_accounts WHERE kid = $1")
            .bind(kid)
            .fetch_one(&mut tx)
            .await?;
        let current: String = row.try_get(0)?;
        if !from.contains(&current.as_str()) {
            return Err(StoreError::Conflict(format!(
                "the external account is {current}"
            )));
        }
        query("UPDATE external_accounts SET status = $1 WHERE kid = $2 AND status = $3")
            .bind(to)
            .bind(kid)
            .bind(&current)
            .execute(&mut tx)
            .await?
            .one_or("the external account changed meanwhile")?;
        let t = now();
        match to {
            "suspended" => {
                query(
                    "INSERT INTO account_holds (account_id, cause, at, actor)
                     SELECT id, 'external', $1, $2 FROM accounts WHERE eab_kid = $3 AND status IN ('valid', 'suspended')",
                )
                .bind(t)
                .bind(change.actor)
                .bind(kid)
                .execute(&mut tx)
                .await?;
                query("UPDATE accounts SET status = 'suspended' WHERE eab_kid = $1 AND status = 'valid'")
                    .bind(kid)
                    .execute(&mut tx)
                    .await?;
            }
            "valid" => {
                query("DELETE FROM account_holds WHERE cause = 'external' AND account_id IN (SELECT id FROM accounts WHERE eab_kid = $1)")
                    .bind(kid)
                    .execute(&mut tx)
                    .await?;
                query(
                    "UPDATE accounts SET status = 'valid' WHERE eab_kid = $1 AND status = 'suspended'
                     AND NOT EXISTS (SELECT 1 FROM account_holds h WHERE h.account_id = accounts.id)",
                )
                .bind(kid)
                .execute(&mut tx)
                .await?;
            }
            "deactivated" => {
                query("DELETE FROM account_holds WHERE account_id IN (SELECT id FROM accounts WHERE eab_kid = $1)")
                    .bind(kid)
                    .execute(&mut tx)
                    .await?;
                query("UPDATE accounts SET status = 'deactivated' WHERE eab_kid = $1 AND status IN ('valid', 'suspended')")
                    .bind(kid)
                    .execute(&mut tx)
                    .await?;
            }
            other => return Err(StoreError::Conflict(format!("unknown status {other}"))),
        }
        record(&mut tx, Some(kid), None, change).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The ACME accounts bound to an AA, oldest first.
    pub async fn accounts_of_external(&self, kid: &str) -> Result<Vec<AccountRecord>> {
        let q = format!(
            "SELECT {} FROM accounts WHERE eab_kid = $1 ORDER BY created_at, id",
            Self::ACCOUNT_COLS
        );
        let rows = query(q).bind(kid).fetch_all(&self.db).await?;
        rows.iter().map(AccountRecord::from_row).collect()
    }

    /// An administrator suspends one ACME account (R15). `Conflict` if it is deactivated or
    /// already suspended by an administrator.
    pub async fn admin_suspend_account(
        &self,
        account_id: &str,
        change: &Change<'_>,
    ) -> Result<AccountStatusChange> {
        let mut tx = self.db.begin().await?;
        let (status, kid) = Self::account_status(&mut tx, account_id).await?;
        if status == "deactivated" {
            return Err(StoreError::Conflict("the account is deactivated".into()));
        }
        query(
            "INSERT INTO account_holds (account_id, cause, at, actor) VALUES ($1, 'admin', $2, $3)",
        )
        .bind(account_id)
        .bind(now())
        .bind(change.actor)
        .execute(&mut tx)
        .await
        .map_err(|e| {
            if crate::is_unique_violation(&e) {
                StoreError::Conflict("the account is already suspended".into())
            } else {
                e
            }
        })?;
        query("UPDATE accounts SET status = 'suspended' WHERE id = $1 AND status = 'valid'")
            .bind(account_id)
            .execute(&mut tx)
            .await?;
        record(&mut tx, kid.as_deref(), Some(account_id), change).await?;
        tx.commit().await?;
        Ok(AccountStatusChange {
            status: "suspended".into(),
            still_held_by_external: false,
        })
    }

    /// Releases an administrator's suspension of one ACME account; it becomes valid again
    /// unless its AA is suspended.
    pub async fn admin_resume_account(
        &self,
        account_id: &str,
        change: &Change<'_>,
    ) -> Result<AccountStatusChange> {
        let mut tx = self.db.begin().await?;
        let (_, kid) = Self::account_status(&mut tx, account_id).await?;
        query("DELETE FROM account_holds WHERE account_id = $1 AND cause = 'admin'")
            .bind(account_id)
            .execute(&mut tx)
            .await?
            .one_or("the account is not suspended by an administrator")?;
        query(
            "UPDATE accounts SET status = 'valid' WHERE id = $1 AND status = 'suspended'
             AND NOT EXISTS (SELECT 1 FROM account_holds h WHERE h.account_id = accounts.id)",
        )
        .bind(account_id)
        .execute(&mut tx)
        .await?;
        let (status, _) = Self::account_status(&mut tx, account_id).await?;
        record(&mut tx, kid.as_deref(), Some(account_id), change).await?;
        tx.commit().await?;
        Ok(AccountStatusChange {
            still_held_by_external: status == "suspended",
            status,
        })
    }

    /// An administrator deactivates one ACME account (R16, irreversible).
    pub async fn admin_deactivate_account(
        &self,
        account_id: &str,
        change: &Change<'_>,
    ) -> Result<AccountStatusChange> {
        let mut tx = self.db.begin().await?;
        let (_, kid) = Self::account_status(&mut tx, account_id).await?;
        query("UPDATE accounts SET status = 'deactivated' WHERE id = $1 AND status IN ('valid', 'suspended')")
            .bind(account_id)
            .execute(&mut tx)
            .await?
            .one_or("the account is already deactivated")?;
        query("DELETE FROM account_holds WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut tx)
            .await?;
        record(&mut tx, kid.as_deref(), Some(account_id), change).await?;
        tx.commit().await?;
        Ok(AccountStatusChange {
            status: "deactivated".into(),
            still_held_by_external: false,
        })
    }

    async fn account_status(tx: &mut Tx, account_id: &str) -> Result<(String, Option<String>)> {
        let row = query("SELECT status, eab_kid FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?;
        Ok((get(&row, "status")?, get(&row, "eab_kid")?))
    }

    /// Records an administrator's action that changes nothing else (e.g. a report was read),
    /// or a policy refusal, in the change history (when `kid` is given) and the audit trail.
    pub async fn record_admin_event(
        &self,
        kid: Option<&str>,
        account_id: Option<&str>,
        change: &Change<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        record(&mut tx, kid, account_id, change).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The change history of an AA since `since`, oldest first.
    pub async fn external_changes(&self, kid: &str, since: i64) -> Result<Vec<ExternalChange>> {
        let rows = query("SELECT at, actor, action, detail FROM external_account_changes WHERE kid = $1 AND at >= $2 ORDER BY at, id")
            .bind(kid)
            .bind(since)
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|r| {
                let detail: String = get(r, "detail")?;
                Ok(ExternalChange {
                    at: get(r, "at")?,
                    actor: get(r, "actor")?,
                    action: get(r, "action")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt(format!("detail: {e}")))?,
                })
            })
            .collect()
    }

    /// Every certificate issued to an ACME account of the AA, oldest first.
    pub async fn certificates_of_external(&self, kid: &str) -> Result<Vec<CertRecord>> {
        let cols: Vec<String> = Self::CERT_COLS
            .split(", ")
            .map(|c| format!("c.{c}"))
            .collect();
        let q = format!(
            "SELECT {} FROM certificates c JOIN accounts a ON a.id = c.account_id WHERE a.eab_kid = $1 ORDER BY c.created_at, c.id",
            cols.join(", ")
        );
        let rows = query(q).bind(kid).fetch_all(&self.db).await?;
        rows.iter().map(CertRecord::from_row).collect()
    }

    /// Audit events of `event` for the AA's ACME accounts since `since`, oldest first.
    pub async fn external_account_events(
        &self,
        kid: &str,
        event: &str,
        since: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = query(
            "SELECT at, event, account_id, client_ip, detail FROM audit
             WHERE event = $1 AND at >= $2 AND account_id IN (SELECT id FROM accounts WHERE eab_kid = $3) ORDER BY at, id",
        )
        .bind(event)
        .bind(since)
        .bind(kid)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(AuditRecord::from_row).collect()
    }
}
