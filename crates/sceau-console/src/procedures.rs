//! The agency guide's compromise procedures (Annex A) as guided steps for operators:
//! A.2, an external account is compromised — suspend it, then revoke what its ACME accounts
//! obtained since the estimated compromise; A.5, an ACME account is compromised — deactivate
//! it, then revoke what it obtained since then. The CLI's `admin cert revoke --external` /
//! `--account` does the same.
//!
//! Invariants:
//! - Nothing is written before the operator has seen the plan: the first step only lists.
//! - The second step computes the plan again from the database (a list sent back by the
//!   browser is never trusted), needs a fresh second factor and an explicit confirmation, and
//!   goes through the registry (suspension, deactivation) and `sceau_acme::revoke_certificate`
//!   (one audit row per certificate, with the procedure and the actor).
//! - A certificate revoked meanwhile by someone else is counted, not an error.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use sceau_admin::report::when;
use sceau_store::{CertListing, CertQuery, CertStatus, now};
use sceau_wire::reason;
use serde::Deserialize;

use crate::auth::{internal, ip};
use crate::operator::{actor, admin_refused, operator, operator_change, step_up};
use crate::session::mfa_fresh;
use crate::{Console, Peer};

pub async fn index(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (s, user) = match operator(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let accounts = match c.registry.list().await {
        Ok(a) => a,
        Err(e) => return internal(&c, e),
    };
    let choices: Vec<_> = accounts
        .iter()
        .filter(|a| a.status != "deactivated")
        .map(|a| context! { kid => a.kid, owner => a.owner, status => a.status })
        .collect();
    c.page(
        StatusCode::OK,
        "procedures.html",
        context! { csrf => s.csrf, user => user.name, accounts => choices },
    )
}

#[derive(Deserialize, Clone)]
pub struct PlanForm {
    #[serde(default)]
    csrf: String,
    /// `external` (A.2) or `acme` (A.5).
    #[serde(default)]
    procedure: String,
    /// The external account's key id, or the ACME account's id or URL.
    #[serde(default)]
    target: String,
    /// The estimated compromise time (RFC 3339), empty: from the start.
    #[serde(default)]
    since: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    code: String,
}

struct Plan {
    procedure: &'static str,
    title: &'static str,
    /// What is done first: "suspend external account …" / "deactivate ACME account …".
    first_step: String,
    kid: Option<String>,
    account: Option<String>,
    since: Option<i64>,
    targets: Vec<CertListing>,
    revoked: usize,
    expired: usize,
}

fn refused(c: &Console, text: &str) -> Response {
    c.message(
        StatusCode::BAD_REQUEST,
        "Refused",
        &format!("{text} Nothing was changed."),
    )
}

/// The plan of `f`, from the database; `Err`: the page to answer.
async fn plan(c: &Console, f: &PlanForm) -> Result<Plan, Response> {
    let since = match f.since.trim() {
        "" => None,
        t => Some(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    refused(
                        c,
                        "The compromise time is an RFC 3339 time, such as 2026-11-20T08:00:00Z.",
                    )
                })?
                .unix_timestamp(),
        ),
    };
    let target = f.target.trim();
    if target.is_empty() || target.len() > 512 {
        return Err(refused(c, "Name the external account or the ACME account."));
    }
    let (procedure, title, first_step, kid, account) = match f.procedure.as_str() {
        "external" => {
            let aa = c
                .registry
                .get(target)
                .await
                .map_err(|e| admin_refused(c, e))?;
            (
                "external_account",
                "Annex A.2: an external account is compromised",
                format!(
                    "suspend external account {} ({}), now {}",
                    aa.kid, aa.owner, aa.status
                ),
                Some(aa.kid),
                None,
            )
        }
        "acme" => {
            let id = sceau_admin::Registry::acme_account_id(target).to_owned();
            let a = c
                .store
                .account_by_id(&id)
                .await
                .map_err(|_| refused(c, &format!("There is no ACME account {id:?}.")))?;
            (
                "acme_account",
                "Annex A.5: an ACME account is compromised",
                format!(
                    "deactivate ACME account {} (for good), now {}",
                    a.id, a.status
                ),
                None,
                Some(a.id),
            )
        }
        _ => return Err(refused(c, "The procedure is external (A.2) or acme (A.5).")),
    };
    let at = now();
    let q = CertQuery {
        account_id: account.clone(),
        external_kid: kid.clone(),
        issued_since: since,
        now: at,
        ..CertQuery::default()
    };
    let mut p = Plan {
        procedure,
        title,
        first_step,
        kid,
        account,
        since,
        targets: Vec::new(),
        revoked: 0,
        expired: 0,
    };
    for cert in c.store.find_certs(&q).await.map_err(|e| internal(c, e))? {
        match cert.status(at) {
            CertStatus::Valid => p.targets.push(cert),
            CertStatus::Revoked => p.revoked += 1,
            CertStatus::Expired => p.expired += 1,
        }
    }
    Ok(p)
}

fn lines(p: &Plan) -> Vec<minijinja::Value> {
    p.targets
        .iter()
        .map(|t| {
            context! {
                serial => t.cert.serial,
                names => t.names.iter().map(|n| n.value.clone()).collect::<Vec<_>>().join(", "),
                issued => when(t.cert.created_at), not_after => when(t.cert.not_after),
            }
        })
        .collect()
}

/// Step 1: what the procedure would do, nothing written.
pub async fn review(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(f): Form<PlanForm>,
) -> Response {
    let (s, user) = match operator_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let p = match plan(&c, &f).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    c.page(
        StatusCode::OK,
        "procedure.html",
        context! {
            csrf => s.csrf, user => user.name, fresh => mfa_fresh(&s, &c.settings),
            title => p.title, first_step => p.first_step, targets => lines(&p),
            revoked => p.revoked, expired => p.expired,
            since => p.since.map(when), procedure => f.procedure, target => f.target, since_text => f.since,
        },
    )
}

/// Step 2: carries the procedure out.
pub async fn run(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<PlanForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match operator_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let code = match reason::parse_end_entity(f.reason.trim()) {
        Ok(code) => code,
        Err(e) => return refused(&c, &format!("{e}.")),
    };
    if f.confirm.is_none() {
        return refused(
            &c,
            "Tick the confirmation: the revocations cannot be undone.",
        );
    }
    let p = match plan(&c, &f).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    let who = actor(&user, &ip);
    // First step: stop new issuance (A.2 suspends the AA; A.5 deactivates the ACME account).
    let first = match (&p.kid, &p.account) {
        (Some(kid), _) => match c.registry.get(kid).await {
            Ok(aa) if aa.status == "valid" => {
                c.registry.suspend(kid, &who).await.map(|_| "suspended")
            }
            Ok(_) => Ok("already not valid"),
            Err(e) => Err(e),
        },
        (_, Some(id)) => match c.store.account_by_id(id).await {
            Ok(a) if a.status == "deactivated" => Ok("already deactivated"),
            _ => c
                .registry
                .deactivate_acme_account(id, &who)
                .await
                .map(|_| "deactivated"),
        },
        _ => unreachable!("a plan names its target"),
    };
    if let Err(e) = first {
        return admin_refused(&c, e);
    }
    let mut revoked = Vec::new();
    let mut raced = 0;
    let mut failed = Vec::new();
    for t in &p.targets {
        let mut detail = serde_json::Map::new();
        detail.insert("actor".into(), who.clone().into());
        detail.insert("procedure".into(), p.procedure.into());
        if let Some(since) = p.since {
            detail.insert("since".into(), since.into());
        }
        let by = sceau_acme::Revoker {
            by: format!("console:{}", user.name),
            account: None,
            client_ip: Some(&ip),
            detail,
        };
        match sceau_acme::revoke_certificate(
            &c.store,
            Some(&c.acme.events),
            Some(c.acme.signer.as_ref()),
            &t.cert,
            code,
            &by,
        )
        .await
        {
            Ok(()) => revoked.push(t.cert.serial.clone()),
            Err(sceau_acme::RevokeError::AlreadyRevoked(_)) => raced += 1,
            Err(e) => failed.push(format!("{}: {e}", t.cert.serial)),
        }
    }
    let status = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    c.page(
        status,
        "procedure_done.html",
        context! {
            csrf => s.csrf, user => user.name, title => p.title, first_step => p.first_step,
            revoked => revoked, raced => raced, failed => failed,
            reason => reason::name(code).unwrap_or("?"),
        },
    )
}
