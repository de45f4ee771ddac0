//! The holder's pages (agency guide R6, R7, R9, R13, R50): the named person of one external
//! account sees that account, its ACME accounts and certificates, asks for new names, makes a
//! new MAC key, suspends one of its ACME accounts in an emergency, revokes a certificate.
//!
//! Invariants:
//! - A holder reaches only their own external account: every object named in a URL or a form
//!   (an ACME account, a certificate) is looked up among that account's own, and anything else
//!   is "not found" — the same answer as for an object that does not exist — changes nothing,
//!   and is audited (`console.refused`).
//! - Every change needs a fresh second factor, as an operator's does.
//! - Revocation goes through `sceau_acme::revoke_certificate`, the path ACME and the CLI use
//!   (in RA mode the upstream CA revokes first).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use sceau_store::{AuditEntry, ConsoleSession, ConsoleUser, NameRequest, StoreError, now};
use sceau_wire::Identifier;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{csrf_refused, expired, internal, ip, session_or};
use crate::operator::{admin_refused, cert_names, step_up};
use crate::session::{csrf_ok, mfa_fresh};
use crate::{Console, Peer};

/// A certificate expiring within this is shown as "expiring".
const EXPIRING_SECS: i64 = 30 * 86400;

/// The logged-in holder and their external account's key id, or the answer to give instead.
async fn holder(
    c: &Console,
    headers: &HeaderMap,
) -> Result<(ConsoleSession, ConsoleUser, String), Response> {
    let s = match session_or(c, headers).await? {
        Some(s) if s.stage == "done" => s,
        _ => return Err(Redirect::to("/login").into_response()),
    };
    let name = s.user_name.clone().unwrap_or_default();
    match c.store.console_user(&name).await {
        Ok(u) if u.status == "active" && u.role == "holder" => match u.kid.clone() {
            Some(kid) => Ok((s, u, kid)),
            None => Err(expired(c)),
        },
        Ok(u) if u.status == "active" => Err(Redirect::to("/accounts").into_response()),
        Ok(_) | Err(StoreError::NotFound) => Err(expired(c)),
        Err(e) => Err(internal(c, e)),
    }
}

/// The logged-in holder making a change, once the form's CSRF token matched the session's.
async fn holder_change(
    c: &Console,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(ConsoleSession, ConsoleUser, String), Response> {
    let (s, user, kid) = holder(c, headers).await?;
    if !csrf_ok(&s, csrf) {
        return Err(csrf_refused(c, &s).await);
    }
    Ok((s, user, kid))
}

fn actor(user: &ConsoleUser, ip: &str) -> String {
    format!("{} (holder, console from {ip})", user.name)
}

/// An object outside the holder's account: "not found", audited.
async fn not_theirs(c: &Console, user: &ConsoleUser, ip: &str, what: &str, id: &str) -> Response {
    let audit = AuditEntry {
        event: "console.refused",
        account_id: None,
        client_ip: Some(ip),
        detail: json!({"user": user.name, "kid": user.kid, "reason": format!("{what} {id} is not of this external account")}),
    };
    if let Err(e) = c.store.audit(&audit).await {
        return internal(c, e);
    }
    audit.log();
    c.message(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("Your external account has no {what} {id}. Nothing was changed."),
    )
}

#[derive(Serialize)]
struct CertLine {
    serial: String,
    names: String,
    not_before: i64,
    not_after: i64,
    state: &'static str,
}

#[derive(Deserialize)]
pub struct MineQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
}

pub async fn mine(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(f): Query<MineQuery>,
) -> Response {
    let (s, user, kid) = match holder(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if f.q.len() > 256 || f.state.len() > 16 {
        return c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            "The search is too long.",
        );
    }
    let aa = match c.registry.get(&kid).await {
        Ok(a) => a,
        Err(e) => return admin_refused(&c, e),
    };
    let (acme, certs, requests) = match (
        c.store.accounts_of_external(&kid).await,
        c.store.certificates_of_external(&kid).await,
        c.store.name_requests(Some(&kid)).await,
    ) {
        (Ok(a), Ok(b), Ok(r)) => (a, b, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return internal(&c, e),
    };
    let figures = match crate::dashboard::figures(&c, Some(&kid)).await {
        Ok(f) => f,
        Err(e) => return internal(&c, e),
    };
    let t = now();
    let all: Vec<CertLine> = certs
        .iter()
        .rev()
        .map(|cert| CertLine {
            serial: cert.serial.clone(),
            names: cert_names(&cert.der),
            not_before: cert.not_before,
            not_after: cert.not_after,
            state: if cert.revoked_at.is_some() {
                "revoked"
            } else if cert.not_after <= t {
                "expired"
            } else if cert.not_after - t <= EXPIRING_SECS {
                "expiring"
            } else {
                "valid"
            },
        })
        .collect();
    let counts: HashMap<&str, usize> = ["valid", "expiring", "expired", "revoked"]
        .into_iter()
        .map(|st| (st, all.iter().filter(|l| l.state == st).count()))
        .collect();
    let q = f.q.trim().to_ascii_lowercase();
    let shown: Vec<&CertLine> = all
        .iter()
        .filter(|l| {
            q.is_empty() || l.names.to_ascii_lowercase().contains(&q) || l.serial.contains(&q)
        })
        .filter(|l| f.state.is_empty() || l.state == f.state)
        .collect();
    let acme: Vec<HashMap<&str, String>> = acme
        .iter()
        .map(|a| {
            HashMap::from([
                ("id", a.id.clone()),
                ("status", a.status.clone()),
                ("created_at", sceau_admin::report::when(a.created_at)),
            ])
        })
        .collect();
    let requests: Vec<HashMap<&str, String>> = requests
        .iter()
        .map(|r| {
            HashMap::from([
                ("name", r.name.clone()),
                (
                    "subdomains",
                    if r.subdomains { "yes" } else { "no" }.to_owned(),
                ),
                ("status", r.status.clone()),
                ("at", sceau_admin::report::when(r.requested_at)),
                ("reason", r.reason.clone().unwrap_or_default()),
            ])
        })
        .collect();
    c.page(
        StatusCode::OK,
        "mine.html",
        context! {
            csrf => s.csrf, user => user.name, role => "holder",
            fresh => mfa_fresh(&s, &c.settings),
            aa => context! {
                kid => aa.kid, owner => aa.owner, status => aa.status,
                not_after => aa.not_after, key_updated_at => aa.key_updated_at,
                key_age_days => (t - aa.key_updated_at) / 86400,
                key_due => c.settings.max_key_age.map(|m| aa.key_updated_at + m),
                names => aa.names.iter().map(|n| context! { name => n.name, subdomains => n.subdomains }).collect::<Vec<_>>(),
            },
            acme => acme, certs => shown, counts => counts, total => all.len(),
            requests => requests, q => f.q, state => f.state,
            chart => figures.chart, days => figures.days, issued => figures.issued,
            failed => figures.failed, expiring => figures.expiring, span => crate::dashboard::DAYS,
        },
    )
}

#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    subdomains: Option<String>,
    #[serde(default)]
    code: String,
}

/// R6, R7: a holder asks for a name; the CAA records are looked up now and kept with the
/// request for the operator who decides.
pub async fn request_name(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<NameForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user, kid) = match holder_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // The same rules as names an operator adds: checked before anything is written.
    let name = match sceau_admin::names::normalise_entry(f.name.trim()) {
        Ok(n) => n,
        Err(e) => return admin_refused(&c, sceau_admin::AdminError::Invalid(e)),
    };
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    let caa = if name.parse::<std::net::IpAddr>().is_ok() {
        "an IP address has no CAA records".to_owned()
    } else {
        let report = c
            .acme
            .perspectives
            .local()
            .caa_report(&Identifier::dns(name.clone()))
            .await;
        match &report.at {
            Some(at) if !report.records.is_empty() => {
                format!("at {at}: {}; {}", report.records.join(", "), report.verdict)
            }
            _ => report.verdict.clone(),
        }
    };
    let request = NameRequest {
        id: sceau_store::new_id(),
        kid: kid.clone(),
        name: name.clone(),
        subdomains: f.subdomains.is_some(),
        requested_by: actor(&user, &ip),
        requested_at: now(),
        caa,
        status: "pending".into(),
        decided_by: None,
        decided_at: None,
        reason: None,
    };
    let audit = AuditEntry {
        event: "console.name_requested",
        account_id: None,
        client_ip: Some(&ip),
        detail: json!({"user": user.name, "kid": kid, "name": name, "subdomains": request.subdomains, "caa": request.caa}),
    };
    match c.store.insert_name_request(&request, &audit).await {
        Ok(()) => Redirect::to("/mine").into_response(),
        Err(e) => internal(&c, e),
    }
}

#[derive(Deserialize)]
pub struct CodeOnly {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// R9: a new MAC key, shown once; the old one stops binding new ACME accounts at once.
pub async fn regenerate_key(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<CodeOnly>,
) -> Response {
    let ip = ip(peer);
    let (s, user, kid) = match holder_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    match c.registry.regenerate_key(&kid, &actor(&user, &ip)).await {
        Ok((key, _)) => c.page(
            StatusCode::OK,
            "key.html",
            context! { csrf => s.csrf, user => user.name, role => "holder", kid => kid, mac_key => sceau_wire::b64::encode(&key) },
        ),
        Err(e) => admin_refused(&c, e),
    }
}

/// R13: the holder suspends one of their ACME accounts in an emergency (an operator resumes
/// it).
pub async fn suspend_acme(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CodeOnly>,
) -> Response {
    let ip = ip(peer);
    let (s, user, kid) = match holder_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.store.accounts_of_external(&kid).await {
        Ok(list) if list.iter().any(|a| a.id == id) => {}
        Ok(_) => return not_theirs(&c, &user, &ip, "ACME account", &id).await,
        Err(e) => return internal(&c, e),
    }
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    match c
        .registry
        .suspend_acme_account(&id, &actor(&user, &ip))
        .await
    {
        Ok(_) => Redirect::to("/mine").into_response(),
        Err(e) => admin_refused(&c, e),
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    code: String,
}

/// R13: the holder revokes one of their certificates, with a reason (RFC 5280 §5.3.1).
pub async fn revoke(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    Form(f): Form<RevokeForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user, kid) = match holder_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let reason: u8 = match f.reason.parse() {
        Ok(r) if [0u8, 1, 3, 4, 5].contains(&r) => r,
        _ => {
            return c.message(
                StatusCode::BAD_REQUEST,
                "Refused",
                "The reason is one of: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation. Nothing was changed.",
            );
        }
    };
    let cert = match c.store.certificates_of_external(&kid).await {
        Ok(list) => list.into_iter().find(|cert| cert.serial == serial),
        Err(e) => return internal(&c, e),
    };
    let Some(cert) = cert else {
        return not_theirs(&c, &user, &ip, "certificate", &serial).await;
    };
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    let mut detail = serde_json::Map::new();
    detail.insert("actor".into(), actor(&user, &ip).into());
    let who = sceau_acme::Revoker {
        by: format!("console:{}", user.name),
        account: None,
        client_ip: Some(&ip),
        detail,
    };
    match sceau_acme::revoke_certificate(
        &c.store,
        Some(&c.acme.events),
        Some(c.acme.signer.as_ref()),
        &cert,
        reason,
        &who,
    )
    .await
    {
        Ok(()) => Redirect::to("/mine").into_response(),
        Err(sceau_acme::RevokeError::AlreadyRevoked(s)) => c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            &format!("Certificate {s} is revoked already. Nothing was changed."),
        ),
        Err(e @ sceau_acme::RevokeError::Upstream { .. }) => c.message(
            StatusCode::BAD_GATEWAY,
            "Not revoked",
            &format!("{e}. Nothing was recorded; try again."),
        ),
        Err(e) => internal(&c, e),
    }
}

/// R50: the holder's own live dashboard (reloads itself every 30 seconds).
pub async fn dashboard(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (s, user, kid) = match holder(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (aa, f) = match (
        c.registry.get(&kid).await,
        crate::dashboard::figures(&c, Some(&kid)).await,
    ) {
        (Ok(a), Ok(f)) => (a, f),
        (Err(e), _) => return admin_refused(&c, e),
        (_, Err(e)) => return internal(&c, e),
    };
    c.page(
        StatusCode::OK,
        "mydash.html",
        context! {
            csrf => s.csrf, user => user.name, role => "holder", owner => aa.owner,
            chart => f.chart, days => f.days, issued => f.issued, failed => f.failed,
            expiring => f.expiring, span => crate::dashboard::DAYS,
        },
    )
}

/// R49: the holder's own report, as CSV or HTML.
pub async fn report(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Query(q): Query<crate::reports::ReportQuery>,
) -> Response {
    let (_, user, kid) = match holder(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ip = ip(peer);
    crate::reports::answer(&c, &kid, &q, &actor(&user, &ip)).await
}
