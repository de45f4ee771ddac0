//! The operator's commands (`sceau manager agent …`, `renew`, `revoke`, `audit`): they work on
//! the database directly, beside a running manager, through the same store transitions.
//!
//! Invariant: an enrolment token is shown only by writing it to a file the operator names,
//! mode 0600, never on standard output or in the audit (which holds its hash only).

use std::path::Path;

use sceau_client::files::write_atomic;
use sceau_store::StoreError;
use sceau_store::fleet::FleetAudit;

use super::Manager;
use crate::error::{Error, Result};

fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .map(|u| format!("operator:{u}"))
        .unwrap_or_else(|_| "operator".into())
}

fn check_allowed(allowed: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in allowed {
        let n = crate::names::normalise(a)
            .ok_or_else(|| Error::Config(format!("{a:?} is not a DNS name or *.zone pattern")))?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// How a token is stored and looked up: SHA-256, hex, of its text without surrounding space.
pub fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.trim().as_bytes(),
    ))
}

/// Invites an agent: writes a one-time token (valid `ttl_secs`) to `token_file`.
pub async fn invite(
    m: &Manager,
    name: &str,
    allowed: &[String],
    token_file: &Path,
    ttl_secs: i64,
) -> Result<()> {
    sceau_client::state::check_name(name).map_err(|_| {
        Error::Config(format!(
            "{name:?} is not a valid agent name (letters, digits, . - _)"
        ))
    })?;
    let allowed = check_allowed(allowed)?;
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).expect("OS random source");
    let token = sceau_wire::b64::encode(raw);
    let hash = token_hash(&token);
    let expires = sceau_store::now() + ttl_secs;
    let audit = FleetAudit::new(&operator(), "agent.invited")
        .about(name, None)
        .detail(serde_json::json!({ "allowed": allowed, "token_expires": expires }));
    // The token file first: if it cannot be written, no usable token exists.
    write_atomic(token_file, format!("{token}\n").as_bytes(), 0o600)?;
    match m
        .store
        .invite_agent(name, &allowed, &hash, expires, &audit)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(token_file);
            Err(match e {
                StoreError::Conflict(why) => Error::Config(format!(
                    "{why}; revoked agents are not invited again under the same name"
                )),
                e => e.into(),
            })
        }
    }
}

pub async fn allow(m: &Manager, name: &str, allowed: &[String]) -> Result<()> {
    let allowed = check_allowed(allowed)?;
    let audit = FleetAudit::new(&operator(), "agent.allowed")
        .about(name, None)
        .detail(serde_json::json!({ "allowed": allowed }));
    m.store
        .set_allowed(name, &allowed, &audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => Error::Config(format!("no agent named {name}")),
            e => e.into(),
        })
}

pub async fn revoke_agent(m: &Manager, name: &str) -> Result<()> {
    let audit = FleetAudit::new(&operator(), "agent.revoked").about(name, None);
    m.store
        .revoke_agent(name, &audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(why) => Error::Config(format!("{name}: {why}")),
            e => e.into(),
        })
}

/// Asks the agent for a new CSR now (a key compromise, a policy change).
pub async fn renew_now(m: &Manager, agent: &str, cert_name: &str) -> Result<()> {
    let c = m.store.cert(agent, cert_name).await.map_err(|e| match e {
        StoreError::NotFound => Error::Config(format!("no certificate {cert_name} of {agent}")),
        e => e.into(),
    })?;
    let serial = c.serial.ok_or_else(|| {
        Error::Config(format!(
            "{agent}/{cert_name} has no certificate yet ({})",
            c.state
        ))
    })?;
    if !m
        .store
        .mark_due(
            agent,
            cert_name,
            &serial,
            &format!("asked by {}", operator()),
        )
        .await?
    {
        return Err(Error::Config(format!(
            "{agent}/{cert_name} is {}: a new CSR is already wanted or pending",
            c.state
        )));
    }
    Ok(())
}

/// Revokes an archived certificate at the CA, then records it (only once the CA confirmed);
/// when it is the current one, its agent is asked for a new CSR.
pub async fn revoke_cert(m: &Manager, serial: &str, reason: Option<u8>) -> Result<()> {
    let a = m.store.archived(serial).await.map_err(|e| match e {
        StoreError::NotFound => Error::Config(format!("no certificate {serial} in the archive")),
        e => e.into(),
    })?;
    if a.revoked_at.is_some() {
        return Err(Error::Config(format!("{serial} is revoked already")));
    }
    let der = sceau_wire::key::pem_decode(&a.chain_pem, "CERTIFICATE")
        .ok_or_else(|| Error::Config("the archived chain holds no certificate".into()))?;
    let account = m.account()?;
    let client = super::acme_client(&m.config.acme).await?;
    client
        .revoke(
            sceau_client::order::RevokeWith::Account(&account),
            &der,
            reason,
        )
        .await?;
    let audit = FleetAudit::new(&operator(), "certificate.revoked")
        .about(&a.agent, Some(&a.cert_name))
        .detail(serde_json::json!({ "serial": serial, "reason": reason }));
    m.store
        .record_revoked(serial, reason.unwrap_or(0), &audit)
        .await?;
    // A revoked current certificate must be replaced: its agent is asked for a new key at
    // its next run (a no-op when it was already replaced).
    m.store
        .mark_due(
            &a.agent,
            &a.cert_name,
            serial,
            "its certificate was revoked",
        )
        .await?;
    Ok(())
}
