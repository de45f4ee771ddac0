//! The web console's users and sessions (issue 15; agency guide R2, R4, R13, R86).
//!
//! Invariants:
//! - A user is created, gets a second factor, or changes status in one transaction with its
//!   audit row: never a change without its record.
//! - A TOTP time step is accepted at most once per user: the update that records it only moves
//!   `totp_last_step` forward (compare-and-swap), so a code replayed — on this instance or
//!   another — finds the step taken and is refused (RFC 6238 §5.2).
//! - A recovery code is used at most once, by the same kind of compare-and-swap.
//! - Sessions are stored by the SHA-256 of their token: a copy of the database opens none.
//!   Rotating a session (at login) deletes the old row in the transaction that inserts the new.

use crate::db::{Row, query};
use crate::{AuditEntry, AuditRecord, Result, Store, StoreError, audit_query, get, now};

/// A person who logs in to the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub name: String,
    /// `operator` or `holder`.
    pub role: String,
    /// The external account a holder holds; `None` for operators.
    pub kid: Option<String>,
    /// Argon2id, PHC string format.
    pub password_hash: String,
    /// The TOTP secret, sealed (hex); `None` until enrolled.
    pub totp_sealed: Option<String>,
    pub totp_last_step: i64,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: i64,
    pub created_by: String,
}

const USER_COLS: &str =
    "name, role, kid, password_hash, totp_sealed, totp_last_step, status, created_at, created_by";

impl ConsoleUser {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(ConsoleUser {
            name: get(row, "name")?,
            role: get(row, "role")?,
            kid: get(row, "kid")?,
            password_hash: get(row, "password_hash")?,
            totp_sealed: get(row, "totp_sealed")?,
            totp_last_step: get(row, "totp_last_step")?,
            status: get(row, "status")?,
            created_at: get(row, "created_at")?,
            created_by: get(row, "created_by")?,
        })
    }
}

/// One console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub token_sha256: String,
    pub user_name: Option<String>,
    /// `anonymous`, `password` (second factor awaited), `enrol` (TOTP enrolment awaited),
    /// `done`.
    pub stage: String,
    pub csrf: String,
    /// During enrolment: the secret shown to the user, sealed, until a code confirms it.
    pub pending_totp: Option<String>,
    pub created_at: i64,
    pub seen_at: i64,
    pub mfa_at: Option<i64>,
}

const SESSION_COLS: &str =
    "token_sha256, user_name, stage, csrf, pending_totp, created_at, seen_at, mfa_at";

impl ConsoleSession {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(ConsoleSession {
            token_sha256: get(row, "token_sha256")?,
            user_name: get(row, "user_name")?,
            stage: get(row, "stage")?,
            csrf: get(row, "csrf")?,
            pending_totp: get(row, "pending_totp")?,
            created_at: get(row, "created_at")?,
            seen_at: get(row, "seen_at")?,
            mfa_at: get(row, "mfa_at")?,
        })
    }
}

/// What the audit page filters on.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events starting with this text (`admin.`, `console.login`…).
    pub event_prefix: Option<String>,
    /// Events whose detail mentions this text (an actor, a kid, a name).
    pub mentions: Option<String>,
    pub since: i64,
    pub limit: i64,
}

impl Store {
    /// Creates a console user, and with `invitation` (its token's SHA-256, its expiry) the
    /// invitation that sets an invited holder's first password; a name already taken is a
    /// [`StoreError::Conflict`].
    pub async fn insert_console_user(
        &self,
        user: &ConsoleUser,
        invitation: Option<(&str, i64)>,
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let exists = query("SELECT COUNT(*) AS n FROM console_users WHERE name = $1")
            .bind(&user.name)
            .fetch_one(&mut tx)
            .await?;
        if get::<i64>(&exists, "n")? > 0 {
            return Err(StoreError::Conflict(format!(
                "a console user named {:?} exists already",
                user.name
            )));
        }
        query(format!(
            "INSERT INTO console_users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&user.name)
        .bind(&user.role)
        .bind(&user.kid)
        .bind(&user.password_hash)
        .bind(&user.totp_sealed)
        .bind(user.totp_last_step)
        .bind(&user.status)
        .bind(user.created_at)
        .bind(&user.created_by)
        .execute(&mut tx)
        .await?;
        if let Some((token_sha256, expires_at)) = invitation {
            query("INSERT INTO console_invitations (token_sha256, name, expires_at, used_at) VALUES ($1, $2, $3, NULL)")
                .bind(token_sha256)
                .bind(&user.name)
                .bind(expires_at)
                .execute(&mut tx)
                .await?;
        }
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await?;
        audit.log();
        Ok(())
    }

    pub async fn console_user(&self, name: &str) -> Result<ConsoleUser> {
        let row = query(format!(
            "SELECT {USER_COLS} FROM console_users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.db)
        .await?
        .ok_or(StoreError::NotFound)?;
        ConsoleUser::from_row(&row)
    }

    pub async fn console_users(&self) -> Result<Vec<ConsoleUser>> {
        let rows = query(format!(
            "SELECT {USER_COLS} FROM console_users ORDER BY name"
        ))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(ConsoleUser::from_row).collect()
    }

    /// Records the user's confirmed TOTP secret (sealed), the step its confirming code used,
    /// and fresh recovery codes (SHA-256 hex), replacing any earlier ones.
    pub async fn set_console_totp(
        &self,
        name: &str,
        sealed: &str,
        step: i64,
        recovery_sha256: &[String],
        audit: &AuditEntry<'_>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let done = query("UPDATE console_users SET totp_sealed = $1, totp_last_step = $2 WHERE name = $3 AND status = 'active'")
            .bind(sealed)
            .bind(step)
            .bind(name)
            .execute(&mut tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        query("DELETE FROM console_recovery_codes WHERE name = $1")
            .bind(name)
            .execute(&mut tx)
            .await?;
        for code in recovery_sha256 {
            query("INSERT INTO console_recovery_codes (name, code_sha256, used_at) VALUES ($1, $2, NULL)")
                .bind(name)
                .bind(code)
                .execute(&mut tx)
                .await?;
        }
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await?;
        audit.log();
        Ok(())
    }

    /// Takes TOTP time step `step` for `name`: true only if no code of this step or a later
    /// one was accepted before.
    pub async fn take_totp_step(&self, name: &str, step: i64) -> Result<bool> {
        let done = query(
            "UPDATE console_users SET totp_last_step = $1 WHERE name = $2 AND totp_last_step < $1",
        )
        .bind(step)
        .bind(name)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses one recovery code: true the first time only.
    pub async fn use_recovery_code(&self, name: &str, code_sha256: &str) -> Result<bool> {
        let done = query("UPDATE console_recovery_codes SET used_at = $1 WHERE name = $2 AND code_sha256 = $3 AND used_at IS NULL")
            .bind(now())
            .bind(name)
            .bind(code_sha256)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Recovery codes of `name` not used yet.
    pub async fn recovery_codes_left(&self, name: &str) -> Result<i64> {
        let row = query(
            "SELECT COUNT(*) AS n FROM console_recovery_codes WHERE name = $1 AND used_at IS NULL",
        )
        .bind(name)
        .fetch_one(&self.db)
        .await?;
        get(&row, "n")
    }

    pub async fn insert_console_session(&self, s: &ConsoleSession) -> Result<()> {
        session_insert(s).execute(&self.db).await?;
        Ok(())
    }

    /// Replaces session `old` by `new` (a new token after each step of the login, so a token
    /// known before the login is worth nothing after it).
    pub async fn rotate_console_session(&self, old: &str, new: &ConsoleSession) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let gone = query("DELETE FROM console_sessions WHERE token_sha256 = $1")
            .bind(old)
            .execute(&mut tx)
            .await?;
        if gone.rows_affected() != 1 {
            return Err(StoreError::Conflict("the session ended meanwhile".into()));
        }
        session_insert(new).execute(&mut tx).await?;
        tx.commit().await
    }

    pub async fn console_session(&self, token_sha256: &str) -> Result<Option<ConsoleSession>> {
        let row = query(format!(
            "SELECT {SESSION_COLS} FROM console_sessions WHERE token_sha256 = $1"
        ))
        .bind(token_sha256)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(ConsoleSession::from_row).transpose()
    }

    /// Marks the session seen now, with a second factor given now when `mfa` is set.
    pub async fn touch_console_session(&self, token_sha256: &str, mfa: bool) -> Result<()> {
        let t = now();
        let q = if mfa {
            "UPDATE console_sessions SET seen_at = $1, mfa_at = $1 WHERE token_sha256 = $2"
        } else {
            "UPDATE console_sessions SET seen_at = $1 WHERE token_sha256 = $2"
        };
        query(q)
            .bind(t)
            .bind(token_sha256)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    pub async fn delete_console_session(&self, token_sha256: &str) -> Result<()> {
        query("DELETE FROM console_sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Ends every session of `name` (password changed, user disabled).
    pub async fn delete_console_sessions_of(&self, name: &str) -> Result<u64> {
        let done = query("DELETE FROM console_sessions WHERE user_name = $1")
            .bind(name)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forgets sessions idle since before `idle_before` or created before `created_before`.
    pub async fn forget_console_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64> {
        let done = query("DELETE FROM console_sessions WHERE seen_at < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected())
    }

    /// The audit trail, newest first, filtered.
    pub async fn audit_log(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let prefix = f
            .event_prefix
            .as_ref()
            .map(|p| format!("{}%", like_escape(p)));
        let mention = f.mentions.as_ref().map(|m| format!("%{}%", like_escape(m)));
        let rows = query(
            "SELECT at, event, account_id, client_ip, detail FROM audit
             WHERE at >= $1 AND ($2 IS NULL OR event LIKE $2 ESCAPE '!')
               AND ($3 IS NULL OR detail LIKE $3 ESCAPE '!' OR account_id = $4)
             ORDER BY at DESC, id DESC LIMIT $5",
        )
        .bind(f.since)
        .bind(prefix)
        .bind(mention)
        .bind(f.mentions.clone())
        .bind(f.limit)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(AuditRecord::from_row).collect()
    }
}

/// The insert of session `s`.
fn session_insert(s: &ConsoleSession) -> crate::db::Query {
    query(format!(
        "INSERT INTO console_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&s.token_sha256)
    .bind(&s.user_name)
    .bind(&s.stage)
    .bind(&s.csrf)
    .bind(&s.pending_totp)
    .bind(s.created_at)
    .bind(s.seen_at)
    .bind(s.mfa_at)
}

/// `text` as a literal inside a LIKE pattern whose escape character is `!`.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

/// A holder's request for a name (agency guide R6, R7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRequest {
    pub id: String,
    pub kid: String,
    pub name: String,
    pub subdomains: bool,
    pub requested_by: String,
    pub requested_at: i64,
    /// What the CAA lookup found when the name was asked for.
    pub caa: String,
    /// `pending`, `approved` or `refused`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
}

const REQUEST_COLS: &str = "id, kid, name, subdomains, requested_by, requested_at, caa, status, decided_by, decided_at, reason";

impl NameRequest {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(NameRequest {
            id: get(row, "id")?,
            kid: get(row, "kid")?,
            name: get(row, "name")?,
            subdomains: get::<i64>(row, "subdomains")? != 0,
            requested_by: get(row, "requested_by")?,
            requested_at: get(row, "requested_at")?,
            caa: get(row, "caa")?,
            status: get(row, "status")?,
            decided_by: get(row, "decided_by")?,
            decided_at: get(row, "decided_at")?,
            reason: get(row, "reason")?,
        })
    }
}

impl Store {
    /// The user an unused, unexpired invitation is for.
    pub async fn invitation_user(&self, token_sha256: &str) -> Result<Option<String>> {
        let row = query("SELECT name FROM console_invitations WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(token_sha256)
            .bind(now())
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(|r| get(r, "name")).transpose()
    }

    /// Uses the invitation (once: compare-and-swap) to set its user's first password and make
    /// the user active. Returns the user's name.
    pub async fn accept_invitation(
        &self,
        token_sha256: &str,
        password_hash: &str,
        ip: &str,
    ) -> Result<String> {
        let t = now();
        let mut tx = self.db.begin().await?;
        let row = query("SELECT name FROM console_invitations WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(token_sha256)
            .bind(t)
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let name: String = get(&row, "name")?;
        let used = query("UPDATE console_invitations SET used_at = $1 WHERE token_sha256 = $2 AND used_at IS NULL")
            .bind(t)
            .bind(token_sha256)
            .execute(&mut tx)
            .await?;
        let set = query("UPDATE console_users SET password_hash = $1, status = 'active' WHERE name = $2 AND status = 'invited'")
            .bind(password_hash)
            .bind(&name)
            .execute(&mut tx)
            .await?;
        if used.rows_affected() != 1 || set.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "the invitation was used already".into(),
            ));
        }
        let audit = AuditEntry {
            event: "console.invitation_accepted",
            account_id: None,
            client_ip: Some(ip),
            detail: serde_json::json!({"user": name}),
        };
        audit_query(&audit).execute(&mut tx).await?;
        tx.commit().await?;
        audit.log();
        Ok(name)
    }

    /// The holders of an external account.
    pub async fn holders_of(&self, kid: &str) -> Result<Vec<ConsoleUser>> {
        let rows = query(format!(
            "SELECT {USER_COLS} FROM console_users WHERE kid = $1 ORDER BY name"
        ))
        .bind(kid)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(ConsoleUser::from_row).collect()
    }

    pub async fn insert_name_request(&self, r: &NameRequest, audit: &AuditEntry<'_>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query(format!(
            "INSERT INTO name_requests ({REQUEST_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&r.id)
        .bind(&r.kid)
        .bind(&r.name)
        .bind(i64::from(r.subdomains))
        .bind(&r.requested_by)
        .bind(r.requested_at)
        .bind(&r.caa)
        .bind(&r.status)
        .bind(&r.decided_by)
        .bind(r.decided_at)
        .bind(&r.reason)
        .execute(&mut tx)
        .await?;
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await?;
        audit.log();
        Ok(())
    }

    /// Name requests, newest first: of one external account, or every pending one.
    pub async fn name_requests(&self, kid: Option<&str>) -> Result<Vec<NameRequest>> {
        let rows = match kid {
            Some(kid) => query(format!(
                "SELECT {REQUEST_COLS} FROM name_requests WHERE kid = $1 ORDER BY requested_at DESC, id"
            ))
            .bind(kid),
            None => query(format!(
                "SELECT {REQUEST_COLS} FROM name_requests WHERE status = 'pending' ORDER BY requested_at, id"
            )),
        }
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(NameRequest::from_row).collect()
    }

    pub async fn name_request(&self, id: &str) -> Result<NameRequest> {
        let row = query(format!(
            "SELECT {REQUEST_COLS} FROM name_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.db)
        .await?
        .ok_or(StoreError::NotFound)?;
        NameRequest::from_row(&row)
    }

    /// Decides a pending request (compare-and-swap from `pending`): false if it was decided
    /// already.
    pub async fn decide_name_request(
        &self,
        id: &str,
        status: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<bool> {
        let done = query("UPDATE name_requests SET status = $1, decided_by = $2, decided_at = $3, reason = $4 WHERE id = $5 AND status = 'pending'")
            .bind(status)
            .bind(by)
            .bind(now())
            .bind(reason)
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Puts an approved request back to pending (its name could not be added).
    pub async fn reopen_name_request(&self, id: &str) -> Result<()> {
        query("UPDATE name_requests SET status = 'pending', decided_by = NULL, decided_at = NULL WHERE id = $1 AND status = 'approved'")
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }
}

/// Seconds of a day: the dashboard counts per UTC day.
const DAY: i64 = 86400;

impl Store {
    /// Certificates issued per UTC day (day number since the epoch, count) since `since`, for
    /// one external account or all.
    pub async fn issued_per_day(&self, kid: Option<&str>, since: i64) -> Result<Vec<(i64, i64)>> {
        let rows = query(
            "SELECT c.created_at / 86400 AS day, COUNT(*) AS n FROM certificates c JOIN accounts a ON a.id = c.account_id
             WHERE c.created_at >= $1 AND ($2 IS NULL OR a.eab_kid = $2) GROUP BY c.created_at / 86400 ORDER BY day",
        )
        .bind(since)
        .bind(kid)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((get(r, "day")?, get(r, "n")?)))
            .collect()
    }

    /// Failures per UTC day since `since` (failed validations, refused issuances, policy
    /// refusals), for one external account or all.
    pub async fn failures_per_day(&self, kid: Option<&str>, since: i64) -> Result<Vec<(i64, i64)>> {
        let rows = query(
            "SELECT at / 86400 AS day, COUNT(*) AS n FROM audit
             WHERE at >= $1 AND event IN ('validation.failed', 'certificate.refused', 'policy.refused')
               AND ($2 IS NULL OR account_id IN (SELECT id FROM accounts WHERE eab_kid = $2))
             GROUP BY at / 86400 ORDER BY day",
        )
        .bind(since)
        .bind(kid)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((get(r, "day")?, get(r, "n")?)))
            .collect()
    }

    /// Certificates not revoked whose validity ends between `from` and `until`, soonest first,
    /// with the key id of their external account.
    pub async fn expiring_certificates(
        &self,
        kid: Option<&str>,
        from: i64,
        until: i64,
    ) -> Result<Vec<(crate::CertRecord, Option<String>)>> {
        let cols: Vec<String> = Self::CERT_COLS
            .split(", ")
            .map(|c| format!("c.{c}"))
            .collect();
        let rows = query(format!(
            "SELECT {}, a.eab_kid FROM certificates c JOIN accounts a ON a.id = c.account_id
             WHERE c.revoked_at IS NULL AND c.not_after > $1 AND c.not_after <= $2 AND ($3 IS NULL OR a.eab_kid = $3)
             ORDER BY c.not_after LIMIT 200",
            cols.join(", ")
        ))
        .bind(from)
        .bind(until)
        .bind(kid)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((crate::CertRecord::from_row(r)?, get(r, "eab_kid")?)))
            .collect()
    }
}

/// The day number of Unix time `t` (what the per-day counts are keyed by).
pub fn day_of(t: i64) -> i64 {
    t.div_euclid(DAY)
}

impl Store {
    /// When the account's scheduled report was last sent.
    pub async fn report_sent_at(&self, kid: &str) -> Result<Option<i64>> {
        let row = query("SELECT sent_at FROM report_sends WHERE kid = $1")
            .bind(kid)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(|r| get(r, "sent_at")).transpose()
    }

    /// Records that the account's report was sent at `at`, with its audit row.
    pub async fn set_report_sent(&self, kid: &str, at: i64, audit: &AuditEntry<'_>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query("DELETE FROM report_sends WHERE kid = $1")
            .bind(kid)
            .execute(&mut tx)
            .await?;
        query("INSERT INTO report_sends (kid, sent_at) VALUES ($1, $2)")
            .bind(kid)
            .bind(at)
            .execute(&mut tx)
            .await?;
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await?;
        audit.log();
        Ok(())
    }
}

/// A passkey of a console user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// base64url, as the authenticator gave it.
    pub credential_id: String,
    pub name: String,
    /// The uncompressed P-256 point, hex.
    pub public_key: String,
    pub sign_count: i64,
    pub label: String,
    pub created_at: i64,
}

impl Passkey {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(Passkey {
            credential_id: get(row, "credential_id")?,
            name: get(row, "name")?,
            public_key: get(row, "public_key")?,
            sign_count: get(row, "sign_count")?,
            label: get(row, "label")?,
            created_at: get(row, "created_at")?,
        })
    }
}

const PASSKEY_COLS: &str = "credential_id, name, public_key, sign_count, label, created_at";

impl Store {
    /// Records a passkey; a credential id registered already is a [`StoreError::Conflict`].
    pub async fn insert_passkey(&self, p: &Passkey, audit: &AuditEntry<'_>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let exists = query("SELECT COUNT(*) AS n FROM console_passkeys WHERE credential_id = $1")
            .bind(&p.credential_id)
            .fetch_one(&mut tx)
            .await?;
        if get::<i64>(&exists, "n")? > 0 {
            return Err(StoreError::Conflict(
                "this passkey is registered already".into(),
            ));
        }
        query(format!(
            "INSERT INTO console_passkeys ({PASSKEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&p.credential_id)
        .bind(&p.name)
        .bind(&p.public_key)
        .bind(p.sign_count)
        .bind(&p.label)
        .bind(p.created_at)
        .execute(&mut tx)
        .await?;
        audit_query(audit).execute(&mut tx).await?;
        tx.commit().await?;
        audit.log();
        Ok(())
    }

    pub async fn passkeys_of(&self, name: &str) -> Result<Vec<Passkey>> {
        let rows = query(format!(
            "SELECT {PASSKEY_COLS} FROM console_passkeys WHERE name = $1 ORDER BY created_at"
        ))
        .bind(name)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(Passkey::from_row).collect()
    }

    /// Moves a passkey's signature counter from `old` to `new` (compare-and-swap): false if
    /// another use moved it first.
    pub async fn bump_passkey_count(
        &self,
        credential_id: &str,
        old: i64,
        new: i64,
    ) -> Result<bool> {
        let done = query("UPDATE console_passkeys SET sign_count = $1 WHERE credential_id = $2 AND sign_count = $3")
            .bind(new)
            .bind(credential_id)
            .bind(old)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps the challenge of a WebAuthn ceremony with the session.
    pub async fn set_session_challenge(&self, token_sha256: &str, challenge: &str) -> Result<()> {
        query("UPDATE console_sessions SET webauthn_challenge = $1 WHERE token_sha256 = $2")
            .bind(challenge)
            .bind(token_sha256)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The session's pending challenge, cleared as it is read: a challenge answers once.
    pub async fn take_session_challenge(&self, token_sha256: &str) -> Result<Option<String>> {
        let mut tx = self.db.begin().await?;
        let row = query("SELECT webauthn_challenge FROM console_sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .fetch_optional(&mut tx)
            .await?;
        let challenge: Option<String> = match row {
            Some(r) => get(&r, "webauthn_challenge")?,
            None => None,
        };
        query("UPDATE console_sessions SET webauthn_challenge = NULL WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(challenge)
    }
}
