//! The fleet manager's storage (`sceau manager`, issue 18): agents, the certificates they keep,
//! the archive of every certificate issued, the keys ever submitted and the audit trail, on
//! the same driver seam as the server's store but in a schema of its own.
//!
//! Invariants:
//! - No private key is ever stored: agents send CSRs; the manager keeps the CSR until the CA
//!   has signed it and the SHA-256 of its public key for ever, so a key is certified once (R66).
//! - Every state change is compare-and-swap and commits with its audit row. A certificate's
//!   row moves `pending → issued | failed`, `issued → due`, `due | failed | pending → pending`
//!   (a new CSR); the worker's result only lands on the CSR it was computed from, so a CSR
//!   replaced meanwhile is never marked issued with another key's certificate.
//! - An agent's enrolment token is stored as its SHA-256 only, is single-use and expires.

use crate::db::{Db, Row, Tx, query};
use crate::{Result, StoreError, log_id, now, schema};

/// A machine of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub name: String,
    /// `invited`, `active` or `revoked`.
    pub status: String,
    /// The names this agent may ask for: exact names, or `*.zone` for any name under zone.
    pub allowed: Vec<String>,
    /// SHA-256 (hex) of the client certificate registered at enrolment.
    pub fingerprint: Option<String>,
    pub created_at: i64,
    pub enrolled_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_seen: Option<i64>,
}

/// One certificate an agent keeps, under its own name.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetCert {
    pub agent: String,
    pub cert_name: String,
    pub names: Vec<String>,
    /// `pending`, `issued`, `due` or `failed`.
    pub state: String,
    /// The pending CSR, base64url DER.
    pub csr: Option<String>,
    pub spki_sha256: Option<String>,
    pub attempts: i64,
    pub next_attempt: i64,
    pub last_error: Option<String>,
    /// The current certificate (in the archive).
    pub serial: Option<String>,
    pub submitted_at: Option<i64>,
    pub updated_at: i64,
}

/// An issued certificate, kept after it is replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedCert {
    pub serial: String,
    pub agent: String,
    pub cert_name: String,
    pub names: Vec<String>,
    pub spki_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    /// When the manager asks for a new CSR: 2/3 of the lifetime, or the ARI window's choice.
    pub renew_at: i64,
    pub ari_id: Option<String>,
    pub ari_checked_at: Option<i64>,
    pub chain_pem: String,
    pub issued_at: i64,
    pub picked_up_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetAudit {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub agent: Option<String>,
    pub cert_name: Option<String>,
    pub detail: serde_json::Value,
}

impl FleetAudit {
    pub fn new(actor: &str, action: &str) -> Self {
        FleetAudit {
            at: now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            agent: None,
            cert_name: None,
            detail: serde_json::Value::Null,
        }
    }

    pub fn about(mut self, agent: &str, cert_name: Option<&str>) -> Self {
        self.agent = Some(agent.to_owned());
        self.cert_name = cert_name.map(str::to_owned);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// What a CSR submission replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Only a certificate whose renewal is due, that failed, or a CSR still pending.
    WhenDue,
    /// Also a current certificate (the operator forced a new key).
    Always,
}

fn json_list(row: &Row, col: &str) -> Result<Vec<String>> {
    serde_json::from_str(&row.try_get::<String, _>(col)?)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serialises")
}

impl AgentRecord {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(AgentRecord {
            name: row.try_get("name")?,
            status: row.try_get("status")?,
            allowed: json_list(row, "allowed")?,
            fingerprint: row.try_get("fingerprint")?,
            created_at: row.try_get("created_at")?,
            enrolled_at: row.try_get("enrolled_at")?,
            revoked_at: row.try_get("revoked_at")?,
            last_seen: row.try_get("last_seen")?,
        })
    }
}

impl FleetCert {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(FleetCert {
            agent: row.try_get("agent")?,
            cert_name: row.try_get("cert_name")?,
            names: json_list(row, "names")?,
            state: row.try_get("state")?,
            csr: row.try_get("csr")?,
            spki_sha256: row.try_get("spki_sha256")?,
            attempts: row.try_get("attempts")?,
            next_attempt: row.try_get("next_attempt")?,
            last_error: row.try_get("last_error")?,
            serial: row.try_get("serial")?,
            submitted_at: row.try_get("submitted_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

impl ArchivedCert {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(ArchivedCert {
            serial: row.try_get("serial")?,
            agent: row.try_get("agent")?,
            cert_name: row.try_get("cert_name")?,
            names: json_list(row, "names")?,
            spki_sha256: row.try_get("spki_sha256")?,
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
            renew_at: row.try_get("renew_at")?,
            ari_id: row.try_get("ari_id")?,
            ari_checked_at: row.try_get("ari_checked_at")?,
            chain_pem: row.try_get("chain_pem")?,
            issued_at: row.try_get("issued_at")?,
            picked_up_at: row.try_get("picked_up_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

const AGENT_COLS: &str =
    "name, status, allowed, fingerprint, created_at, enrolled_at, revoked_at, last_seen";
const CERT_COLS: &str = "agent, cert_name, names, state, csr, spki_sha256, attempts, next_attempt, last_error, serial, submitted_at, updated_at";
const ARCHIVE_COLS: &str = "serial, agent, cert_name, names, spki_sha256, not_before, not_after, renew_at, ari_id, ari_checked_at, chain_pem, issued_at, picked_up_at, revoked_at";

async fn audit_in(tx: &mut Tx, e: &FleetAudit) -> Result<()> {
    query("INSERT INTO fleet_audit (id, at, actor, action, agent, cert_name, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(log_id())
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.agent)
        .bind(&e.cert_name)
        .bind(e.detail.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The manager's database.
#[derive(Clone)]
pub struct FleetStore {
    db: Db,
}

impl FleetStore {
    /// Opens (creating if needed) `sqlite://PATH` or `postgres://…` and brings the fleet schema
    /// up to date.
    pub async fn open(url: &str) -> Result<FleetStore> {
        let db = Db::open(url).await?;
        schema::migrate_schema(&db, &schema::FLEET).await?;
        Ok(FleetStore { db })
    }

    /// Writes one audit row on its own (for events that change nothing else).
    pub async fn audit(&self, e: &FleetAudit) -> Result<()> {
        let mut tx = self.db.begin().await?;
        audit_in(&mut tx, e).await?;
        tx.commit().await
    }

    pub async fn audit_events(&self, agent: Option<&str>, since: i64) -> Result<Vec<FleetAudit>> {
        let rows = query("SELECT at, actor, action, agent, cert_name, detail FROM fleet_audit WHERE at >= $1 AND ($2 IS NULL OR agent = $2) ORDER BY id")
            .bind(since)
            .bind(agent)
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(FleetAudit {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    agent: r.try_get("agent")?,
                    cert_name: r.try_get("cert_name")?,
                    detail: serde_json::from_str(&r.try_get::<String, _>("detail")?)
                        .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
                })
            })
            .collect()
    }

    // ---- agents ---------------------------------------------------------------------------

    /// Invites an agent (or renews the token of one not yet enrolled). An enrolled or revoked
    /// agent keeps its row: `Conflict`.
    pub async fn invite_agent(
        &self,
        name: &str,
        allowed: &[String],
        token_sha256: &str,
        token_expires: i64,
        audit: &FleetAudit,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let existing = query("SELECT status FROM fleet_agents WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut tx)
            .await?;
        match existing {
            None => {
                query("INSERT INTO fleet_agents (name, status, allowed, token_sha256, token_expires, created_at) VALUES ($1, 'invited', $2, $3, $4, $5)")
                    .bind(name)
                    .bind(list_json(allowed))
                    .bind(token_sha256)
                    .bind(token_expires)
                    .bind(now())
                    .execute(&mut tx)
                    .await?;
            }
            Some(row) => {
                let status: String = row.try_get(0)?;
                query("UPDATE fleet_agents SET allowed = $2, token_sha256 = $3, token_expires = $4 WHERE name = $1 AND status = 'invited'")
                    .bind(name)
                    .bind(list_json(allowed))
                    .bind(token_sha256)
                    .bind(token_expires)
                    .execute(&mut tx)
                    .await?
                    .one_or(format!("the agent {name} is {status}"))?;
            }
        }
        audit_in(&mut tx, audit).await?;
        tx.commit().await
    }

    /// Uses a one-time token: the invited agent it belongs to becomes active with this client
    /// certificate. `NotFound` for an unknown, used or expired token.
    pub async fn enrol(&self, token_sha256: &str, fingerprint: &str) -> Result<AgentRecord> {
        let mut tx = self.db.begin().await?;
        let row = query(format!("SELECT {AGENT_COLS} FROM fleet_agents WHERE token_sha256 = $1 AND status = 'invited' AND token_expires >= $2"))
            .bind(token_sha256)
            .bind(now())
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let agent = AgentRecord::from_row(&row)?;
        query("UPDATE fleet_agents SET status = 'active', fingerprint = $2, token_sha256 = NULL, token_expires = NULL, enrolled_at = $3 WHERE name = $1 AND status = 'invited' AND token_sha256 = $4")
            .bind(&agent.name)
            .bind(fingerprint)
            .bind(now())
            .bind(token_sha256)
            .execute(&mut tx)
            .await?
            .one_or("the token was used meanwhile")?;
        let audit = FleetAudit::new(&agent.name, "agent.enrolled")
            .about(&agent.name, None)
            .detail(serde_json::json!({ "fingerprint": fingerprint }));
        audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        self.agent(&agent.name).await
    }

    pub async fn agent(&self, name: &str) -> Result<AgentRecord> {
        let row = query(format!(
            "SELECT {AGENT_COLS} FROM fleet_agents WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.db)
        .await?
        .ok_or(StoreError::NotFound)?;
        AgentRecord::from_row(&row)
    }

    pub async fn agent_by_fingerprint(&self, fingerprint: &str) -> Result<AgentRecord> {
        let row = query(format!(
            "SELECT {AGENT_COLS} FROM fleet_agents WHERE fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.db)
        .await?
        .ok_or(StoreError::NotFound)?;
        AgentRecord::from_row(&row)
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = query(format!(
            "SELECT {AGENT_COLS} FROM fleet_agents ORDER BY name"
        ))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(AgentRecord::from_row).collect()
    }

    pub async fn set_allowed(
        &self,
        name: &str,
        allowed: &[String],
        audit: &FleetAudit,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query("UPDATE fleet_agents SET allowed = $2 WHERE name = $1")
            .bind(name)
            .bind(list_json(allowed))
            .execute(&mut tx)
            .await?
            .one_or("no such agent")?;
        audit_in(&mut tx, audit).await?;
        tx.commit().await
    }

    /// Revokes an agent: its client certificate is refused from now on (the fingerprint stays,
    /// so the refusal can say why). Its pending CSRs are dropped.
    pub async fn revoke_agent(&self, name: &str, audit: &FleetAudit) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query("UPDATE fleet_agents SET status = 'revoked', revoked_at = $2, token_sha256 = NULL WHERE name = $1 AND status <> 'revoked'")
            .bind(name)
            .bind(now())
            .execute(&mut tx)
            .await?
            .one_or("no such agent, or revoked already")?;
        query("UPDATE fleet_certs SET state = 'failed', csr = NULL, last_error = 'the agent was revoked', updated_at = $2 WHERE agent = $1 AND state = 'pending'")
            .bind(name)
            .bind(now())
            .execute(&mut tx)
            .await?;
        audit_in(&mut tx, audit).await?;
        tx.commit().await
    }

    /// Records that an agent talked to the manager (at most once a minute per agent).
    pub async fn seen(&self, name: &str) -> Result<()> {
        let t = now();
        query("UPDATE fleet_agents SET last_seen = $2 WHERE name = $1 AND (last_seen IS NULL OR last_seen < $3)")
            .bind(name)
            .bind(t)
            .bind(t - 60)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    // ---- certificates ---------------------------------------------------------------------

    /// Stores a new CSR for `cert_name`. `Conflict("key reused")` when the key was submitted
    /// before (by anyone), `Conflict(state)` when the current certificate is not due and
    /// `replace` is [`Replace::WhenDue`].
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_csr(
        &self,
        agent: &str,
        cert_name: &str,
        names: &[String],
        csr_b64: &str,
        spki_sha256: &str,
        replace: Replace,
        audit: &FleetAudit,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let t = now();
        let reused = query("SELECT agent FROM fleet_keys WHERE spki_sha256 = $1")
            .bind(spki_sha256)
            .fetch_optional(&mut tx)
            .await?;
        if reused.is_some() {
            return Err(StoreError::Conflict("key reused".into()));
        }
        query("INSERT INTO fleet_keys (spki_sha256, agent, cert_name, seen_at) VALUES ($1, $2, $3, $4)")
            .bind(spki_sha256)
            .bind(agent)
            .bind(cert_name)
            .bind(t)
            .execute(&mut tx)
            .await?;
        let current = query("SELECT state FROM fleet_certs WHERE agent = $1 AND cert_name = $2")
            .bind(agent)
            .bind(cert_name)
            .fetch_optional(&mut tx)
            .await?;
        match current {
            None => {
                query("INSERT INTO fleet_certs (agent, cert_name, names, state, csr, spki_sha256, attempts, next_attempt, submitted_at, updated_at) VALUES ($1, $2, $3, 'pending', $4, $5, 0, 0, $6, $6)")
                    .bind(agent)
                    .bind(cert_name)
                    .bind(list_json(names))
                    .bind(csr_b64)
                    .bind(spki_sha256)
                    .bind(t)
                    .execute(&mut tx)
                    .await?;
            }
            Some(row) => {
                let state: String = row.try_get(0)?;
                let from_issued = if replace == Replace::Always {
                    "issued"
                } else {
                    "-"
                };
                query("UPDATE fleet_certs SET names = $3, state = 'pending', csr = $4, spki_sha256 = $5, attempts = 0, next_attempt = 0, last_error = NULL, submitted_at = $6, updated_at = $6 WHERE agent = $1 AND cert_name = $2 AND state IN ('due', 'failed', 'pending', $7)")
                    .bind(agent)
                    .bind(cert_name)
                    .bind(list_json(names))
                    .bind(csr_b64)
                    .bind(spki_sha256)
                    .bind(t)
                    .bind(from_issued)
                    .execute(&mut tx)
                    .await?
                    .one_or(state)?;
            }
        }
        audit_in(&mut tx, audit).await?;
        tx.commit().await
    }

    pub async fn cert(&self, agent: &str, cert_name: &str) -> Result<FleetCert> {
        let row = query(format!(
            "SELECT {CERT_COLS} FROM fleet_certs WHERE agent = $1 AND cert_name = $2"
        ))
        .bind(agent)
        .bind(cert_name)
        .fetch_optional(&self.db)
        .await?
        .ok_or(StoreError::NotFound)?;
        FleetCert::from_row(&row)
    }

    pub async fn certs(&self, agent: Option<&str>) -> Result<Vec<FleetCert>> {
        let rows = query(format!("SELECT {CERT_COLS} FROM fleet_certs WHERE ($1 IS NULL OR agent = $1) ORDER BY agent, cert_name"))
            .bind(agent)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(FleetCert::from_row).collect()
    }

    /// Pending CSRs whose next attempt has come, oldest first, of agents still active.
    pub async fn pending(&self, limit: i64) -> Result<Vec<FleetCert>> {
        let rows = query(format!("SELECT {CERT_COLS} FROM fleet_certs WHERE state = 'pending' AND next_attempt <= $1 ORDER BY next_attempt, submitted_at LIMIT $2"))
            .bind(now())
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(FleetCert::from_row).collect()
    }

    /// Archives an issued certificate and makes it current when its CSR is still the pending
    /// one. Returns whether it became current.
    pub async fn record_issued(&self, csr_b64: &str, cert: &ArchivedCert) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        query(format!("INSERT INTO fleet_archive ({ARCHIVE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, NULL, NULL)"))
            .bind(&cert.serial)
            .bind(&cert.agent)
            .bind(&cert.cert_name)
            .bind(list_json(&cert.names))
            .bind(&cert.spki_sha256)
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(cert.renew_at)
            .bind(&cert.ari_id)
            .bind(&cert.chain_pem)
            .bind(cert.issued_at)
            .execute(&mut tx)
            .await?;
        let current = query("UPDATE fleet_certs SET state = 'issued', serial = $3, csr = NULL, attempts = 0, last_error = NULL, updated_at = $5 WHERE agent = $1 AND cert_name = $2 AND state = 'pending' AND csr = $4")
            .bind(&cert.agent)
            .bind(&cert.cert_name)
            .bind(&cert.serial)
            .bind(csr_b64)
            .bind(now())
            .execute(&mut tx)
            .await?
            .rows_affected()
            == 1;
        let audit = FleetAudit::new("manager", "certificate.issued")
            .about(&cert.agent, Some(&cert.cert_name))
            .detail(serde_json::json!({
                "serial": cert.serial,
                "names": cert.names,
                "not_after": cert.not_after,
                "spki_sha256": cert.spki_sha256,
                "current": current,
            }));
        audit_in(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(current)
    }

    /// Records a failed attempt on the pending CSR: retried at `retry_at`, or, with `None`,
    /// refused for good (the agent must send a new CSR).
    pub async fn record_failure(
        &self,
        agent: &str,
        cert_name: &str,
        csr_b64: &str,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let (state, next) = match retry_at {
            Some(at) => ("pending", at),
            None => ("failed", 0),
        };
        let changed = query("UPDATE fleet_certs SET state = $4, attempts = attempts + 1, next_attempt = $5, last_error = $6, csr = CASE WHEN $4 = 'failed' THEN NULL ELSE csr END, updated_at = $7 WHERE agent = $1 AND cert_name = $2 AND state = 'pending' AND csr = $3")
            .bind(agent)
            .bind(cert_name)
            .bind(csr_b64)
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(now())
            .execute(&mut tx)
            .await?
            .rows_affected();
        if changed == 1 {
            let action = if retry_at.is_some() {
                "issuance.retry"
            } else {
                "issuance.refused"
            };
            let audit = FleetAudit::new("manager", action)
                .about(agent, Some(cert_name))
                .detail(serde_json::json!({ "error": error, "retry_at": retry_at }));
            audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await
    }

    /// Current certificates with their archive entries (the renewal pass's input).
    pub async fn current(&self) -> Result<Vec<(FleetCert, ArchivedCert)>> {
        let cols: String = CERT_COLS
            .split(", ")
            .map(|c| format!("c.{c} AS {c}"))
            .chain(
                ARCHIVE_COLS
                    .split(", ")
                    .filter(|c| {
                        !["serial", "agent", "cert_name", "names", "spki_sha256"].contains(c)
                    })
                    .map(|c| format!("a.{c} AS {c}")),
            )
            .collect::<Vec<_>>()
            .join(", ");
        let rows = query(format!("SELECT {cols}, a.names AS a_names, a.spki_sha256 AS a_spki FROM fleet_certs c JOIN fleet_archive a ON a.serial = c.serial ORDER BY c.agent, c.cert_name"))
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|r| {
                let cert = FleetCert::from_row(r)?;
                let archived = ArchivedCert {
                    serial: r.try_get("serial")?,
                    agent: cert.agent.clone(),
                    cert_name: cert.cert_name.clone(),
                    names: json_list(r, "a_names")?,
                    spki_sha256: r.try_get("a_spki")?,
                    not_before: r.try_get("not_before")?,
                    not_after: r.try_get("not_after")?,
                    renew_at: r.try_get("renew_at")?,
                    ari_id: r.try_get("ari_id")?,
                    ari_checked_at: r.try_get("ari_checked_at")?,
                    chain_pem: r.try_get("chain_pem")?,
                    issued_at: r.try_get("issued_at")?,
                    picked_up_at: r.try_get("picked_up_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                };
                Ok((cert, archived))
            })
            .collect()
    }

    /// Asks the agent for a new CSR: `issued → due` for this serial.
    pub async fn mark_due(
        &self,
        agent: &str,
        cert_name: &str,
        serial: &str,
        reason: &str,
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let changed = query("UPDATE fleet_certs SET state = 'due', updated_at = $4 WHERE agent = $1 AND cert_name = $2 AND serial = $3 AND state = 'issued'")
            .bind(agent)
            .bind(cert_name)
            .bind(serial)
            .bind(now())
            .execute(&mut tx)
            .await?
            .rows_affected()
            == 1;
        if changed {
            let audit = FleetAudit::new("manager", "renewal.due")
                .about(agent, Some(cert_name))
                .detail(serde_json::json!({ "serial": serial, "reason": reason }));
            audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Stores the renewal time worked out from ARI (RFC 9773) and when it was asked.
    pub async fn set_renew_at(&self, serial: &str, renew_at: i64, checked_at: i64) -> Result<()> {
        query("UPDATE fleet_archive SET renew_at = $2, ari_checked_at = $3 WHERE serial = $1")
            .bind(serial)
            .bind(renew_at)
            .bind(checked_at)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// The agent installed this certificate.
    pub async fn picked_up(&self, agent: &str, serial: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let row = query("SELECT cert_name FROM fleet_archive WHERE serial = $1 AND agent = $2")
            .bind(serial)
            .bind(agent)
            .fetch_optional(&mut tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let cert_name: String = row.try_get(0)?;
        let changed = query("UPDATE fleet_archive SET picked_up_at = $3 WHERE serial = $1 AND agent = $2 AND picked_up_at IS NULL")
            .bind(serial)
            .bind(agent)
            .bind(now())
            .execute(&mut tx)
            .await?
            .rows_affected();
        if changed == 1 {
            let audit = FleetAudit::new(agent, "certificate.installed")
                .about(agent, Some(&cert_name))
                .detail(serde_json::json!({ "serial": serial }));
            audit_in(&mut tx, &audit).await?;
        }
        tx.commit().await
    }

    pub async fn archived(&self, serial: &str) -> Result<ArchivedCert> {
        let row = query(format!(
            "SELECT {ARCHIVE_COLS} FROM fleet_archive WHERE serial = $1"
        ))
        .bind(serial)
        .fetch_optional(&self.db)
        .await?
        .ok_or(StoreError::NotFound)?;
        ArchivedCert::from_row(&row)
    }

    /// The archive, newest first; of one agent's certificate when given.
    pub async fn archive(
        &self,
        agent: Option<&str>,
        cert_name: Option<&str>,
    ) -> Result<Vec<ArchivedCert>> {
        let rows = query(format!("SELECT {ARCHIVE_COLS} FROM fleet_archive WHERE ($1 IS NULL OR agent = $1) AND ($2 IS NULL OR cert_name = $2) ORDER BY issued_at DESC, serial"))
            .bind(agent)
            .bind(cert_name)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(ArchivedCert::from_row).collect()
    }

    /// Records a revocation the CA has confirmed.
    pub async fn record_revoked(&self, serial: &str, reason: u8, audit: &FleetAudit) -> Result<()> {
        let mut tx = self.db.begin().await?;
        query("UPDATE fleet_archive SET revoked_at = $2, revoked_reason = $3 WHERE serial = $1 AND revoked_at IS NULL")
            .bind(serial)
            .bind(now())
            .bind(i64::from(reason))
            .execute(&mut tx)
            .await?
            .one_or("not in the archive, or revoked already")?;
        audit_in(&mut tx, audit).await?;
        tx.commit().await
    }
}
