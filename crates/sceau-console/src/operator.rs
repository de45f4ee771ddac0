//! Operator pages: every external account (AA), its names, ACME accounts and certificates;
//! creating an AA, adding names, suspending, resuming, deactivating; the audit trail.
//!
//! Invariants:
//! - Only a logged-in, active operator reaches these pages; anyone else is sent to the login
//!   or refused, and nothing is changed.
//! - Every change goes through `sceau_admin::Registry`, as the CLI's do, with the actor
//!   `NAME (console from ADDRESS)`, so the change history and the audit trail say who and from
//!   where; and every change needs a fresh second factor (agency guide R2, R4).
//! - A new AA's MAC key is shown once, on the page that answers its creation (R22), and
//!   never stored in clear or logged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use sceau_admin::{AdminError, NewExternalAccount};
use sceau_store::{AuditFilter, ConsoleSession, ConsoleUser, StoreError, now};
use serde::{Deserialize, Serialize};

use crate::auth::{csrf_refused, expired, internal, ip, second_factor, session_or};
use crate::session::{csrf_ok, mfa_fresh};
use crate::{Console, Peer};

/// Longest list of names one form may add.
const MAX_NAMES: usize = 100;
/// Longest free-text field (an owner, a filter).
pub(crate) const MAX_TEXT: usize = 256;

/// The logged-in operator, or the answer to give instead.
pub(crate) async fn operator(
    c: &Console,
    headers: &HeaderMap,
) -> Result<(ConsoleSession, ConsoleUser), Response> {
    let s = match session_or(c, headers).await? {
        Some(s) if s.stage == "done" => s,
        _ => return Err(Redirect::to("/login").into_response()),
    };
    let name = s.user_name.clone().unwrap_or_default();
    match c.store.console_user(&name).await {
        Ok(u) if u.status == "active" && u.role == "operator" => Ok((s, u)),
        Ok(u) if u.status == "active" => Err(c.message(
            StatusCode::FORBIDDEN,
            "Refused",
            "This page is for operators.",
        )),
        Ok(_) | Err(StoreError::NotFound) => Err(expired(c)),
        Err(e) => Err(internal(c, e)),
    }
}

/// The logged-in operator making a change, once the form's CSRF token matched the session's.
pub(crate) async fn operator_change(
    c: &Console,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(ConsoleSession, ConsoleUser), Response> {
    let (s, user) = operator(c, headers).await?;
    if !csrf_ok(&s, csrf) {
        return Err(csrf_refused(c, &s).await);
    }
    Ok((s, user))
}

pub(crate) fn actor(user: &ConsoleUser, ip: &str) -> String {
    format!("{} (console from {ip})", user.name)
}

/// A change needs a second factor given within the fresh window, or `code` now.
pub(crate) async fn step_up(
    c: &Console,
    s: &ConsoleSession,
    user: &ConsoleUser,
    code: &str,
    ip: &str,
) -> Result<(), Response> {
    if mfa_fresh(s, &c.settings) && code.trim().is_empty() {
        return Ok(());
    }
    if let Err(e) = c
        .acme
        .limits
        .console_attempt(&c.store, &user.name, ip)
        .await
    {
        return Err(c.message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed attempts",
            &e.detail,
        ));
    }
    match second_factor(c, user, code).await {
        Ok(Ok(_)) => {
            c.store
                .touch_console_session(&s.token_sha256, true)
                .await
                .map_err(|e| internal(c, e))?;
            Ok(())
        }
        Ok(Err(why)) => {
            let why = format!("change refused: {why}");
            c.acme
                .limits
                .console_failed(&c.store, &user.name, ip, &why)
                .await
                .map_err(|e| internal(c, e))?;
            Err(c.message(
                StatusCode::UNAUTHORIZED,
                "Second factor needed",
                &format!(
                    "A change to an external account needs a code from your authenticator when the last one is over {} minutes old, and that code was wrong or already used. Nothing was changed.",
                    c.settings.fresh_mfa.as_secs() / 60
                ),
            ))
        }
        Err(e) => Err(internal(c, e)),
    }
}

pub(crate) fn admin_refused(c: &Console, e: AdminError) -> Response {
    match e {
        AdminError::Invalid(text) | AdminError::State(text) => c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            &format!("{text}. Nothing was changed."),
        ),
        AdminError::WrapKey(_) => c.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not here",
            "Making a MAC key needs the key that seals them, which this front end does not hold (its signing service does): run `sceau-server admin account create` or `regenerate-key` with the signer's data directory. Nothing was changed.",
        ),
        AdminError::UnknownExternalAccount(kid) => c.message(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no external account {kid:?}."),
        ),
        e => internal(c, e),
    }
}

#[derive(Serialize)]
struct AccountLine {
    kid: String,
    owner: String,
    status: String,
    names: String,
    not_after: i64,
    expired: bool,
}

/// Operators start at the external accounts, holders at their own.
pub async fn home(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let s = match session_or(&c, &headers).await {
        Ok(Some(s)) if s.stage == "done" => s,
        Ok(_) => return Redirect::to("/login").into_response(),
        Err(r) => return r,
    };
    match c
        .store
        .console_user(s.user_name.as_deref().unwrap_or_default())
        .await
    {
        Ok(u) if u.role == "holder" => Redirect::to("/mine").into_response(),
        Ok(_) => Redirect::to("/accounts").into_response(),
        Err(StoreError::NotFound) => expired(&c),
        Err(e) => internal(&c, e),
    }
}

fn names_text(names: &[sceau_store::AllowedName]) -> String {
    names
        .iter()
        .map(|n| {
            if n.subdomains {
                format!("{} (and subdomains)", n.name)
            } else {
                n.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn accounts(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (s, user) = match operator(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list = match c.registry.list().await {
        Ok(l) => l,
        Err(e) => return internal(&c, e),
    };
    let t = now();
    let lines: Vec<AccountLine> = list
        .into_iter()
        .map(|a| AccountLine {
            names: names_text(&a.names),
            expired: a.not_after <= t,
            kid: a.kid,
            owner: a.owner,
            status: a.status,
            not_after: a.not_after,
        })
        .collect();
    c.page(
        StatusCode::OK,
        "accounts.html",
        context! { csrf => s.csrf, user => user.name, accounts => lines },
    )
}

pub async fn new_account_form(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match operator(&c, &headers).await {
        Ok((s, user)) => c.page(
            StatusCode::OK,
            "new_account.html",
            context! { csrf => s.csrf, user => user.name, fresh => mfa_fresh(&s, &c.settings), days => 365 },
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct NewAccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    names: String,
    #[serde(default)]
    names_with_subdomains: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    wildcards: Option<String>,
    #[serde(default)]
    code: String,
}

/// Names typed one per line, or separated by commas or spaces.
fn split_names(c: &Console, text: &str) -> Result<Vec<String>, Response> {
    let names: Vec<String> = text
        .split(|ch: char| ch == ',' || ch.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if names.len() > MAX_NAMES {
        return Err(c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            &format!("At most {MAX_NAMES} names at a time. Nothing was changed."),
        ));
    }
    Ok(names)
}

fn too_long(c: &Console, what: &str) -> Response {
    c.message(
        StatusCode::BAD_REQUEST,
        "Refused",
        &format!(
            "The {what} field is too long (at most {MAX_TEXT} characters). Nothing was changed."
        ),
    )
}

pub async fn new_account(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<NewAccountForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match operator_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if f.owner.chars().count() > MAX_TEXT {
        return too_long(&c, "owner");
    }
    let (names, with_sub) = match (
        split_names(&c, &f.names),
        split_names(&c, &f.names_with_subdomains),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let days: i64 = match f.days.trim().parse() {
        Ok(d) if (1..=3 * 366).contains(&d) => d,
        _ => {
            return c.message(
                StatusCode::BAD_REQUEST,
                "Refused",
                "Validity is a number of days, from 1 to 1096 (agency guide R8: at most 3 years). Nothing was changed.",
            );
        }
    };
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    let req = NewExternalAccount {
        owner: f.owner.trim().to_owned(),
        names,
        names_with_subdomains: with_sub,
        valid_for_secs: days * 86400,
        extra_profiles: Vec::new(),
        wildcards: f.wildcards.is_some(),
    };
    match c.registry.create(&req, &actor(&user, &ip)).await {
        Ok(created) => c.page(
            StatusCode::CREATED,
            "created.html",
            context! {
                csrf => s.csrf, user => user.name, kid => created.account.kid,
                owner => created.account.owner,
                mac_key => sceau_wire::b64::encode(&created.mac_key),
            },
        ),
        Err(e) => admin_refused(&c, e),
    }
}

#[derive(Serialize)]
struct CertLine {
    serial: String,
    names: String,
    not_after: i64,
    state: &'static str,
}

pub(crate) fn cert_names(der: &[u8]) -> String {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = parse_x509_certificate(der) else {
        return String::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return String::new();
    };
    san.value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => (*d).to_owned(),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
            }
            GeneralName::IPAddress(b) if b.len() == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                std::net::Ipv6Addr::from(a).to_string()
            }
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn account(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Path(kid): Path<String>,
) -> Response {
    let (s, user) = match operator(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let aa = match c.registry.get(&kid).await {
        Ok(a) => a,
        Err(e) => return admin_refused(&c, e),
    };
    let (acme, certs, changes) = match (
        c.store.accounts_of_external(&kid).await,
        c.store.certificates_of_external(&kid).await,
        c.store.external_changes(&kid, 0).await,
    ) {
        (Ok(a), Ok(b), Ok(ch)) => (a, b, ch),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return internal(&c, e),
    };
    let holders: Vec<HashMap<&str, String>> = match c.store.holders_of(&kid).await {
        Ok(list) => list
            .iter()
            .map(|h| {
                HashMap::from([
                    ("name", h.name.clone()),
                    ("status", h.status.clone()),
                    (
                        "totp",
                        if h.totp_sealed.is_some() {
                            "yes"
                        } else {
                            "not yet"
                        }
                        .to_owned(),
                    ),
                ])
            })
            .collect(),
        Err(e) => return internal(&c, e),
    };
    let t = now();
    let certs: Vec<CertLine> = certs
        .iter()
        .rev()
        .map(|cert| CertLine {
            serial: cert.serial.clone(),
            names: cert_names(&cert.der),
            not_after: cert.not_after,
            state: if cert.revoked_at.is_some() {
                "revoked"
            } else if cert.not_after <= t {
                "expired"
            } else {
                "valid"
            },
        })
        .collect();
    let acme: Vec<HashMap<&str, String>> = acme
        .iter()
        .map(|a| {
            HashMap::from([
                ("id", a.id.clone()),
                ("status", a.status.clone()),
                ("contact", a.contact.join(", ")),
                ("created_at", sceau_admin::report::when(a.created_at)),
            ])
        })
        .collect();
    let changes: Vec<HashMap<&str, String>> = changes
        .iter()
        .rev()
        .map(|ch| {
            HashMap::from([
                ("at", sceau_admin::report::when(ch.at)),
                ("actor", ch.actor.clone()),
                ("action", ch.action.clone()),
                ("detail", ch.detail.to_string()),
            ])
        })
        .collect();
    c.page(
        StatusCode::OK,
        "account.html",
        context! {
            csrf => s.csrf, user => user.name, fresh => mfa_fresh(&s, &c.settings),
            aa => context! {
                kid => aa.kid, owner => aa.owner, status => aa.status,
                not_after => aa.not_after, created_at => aa.created_at,
                created_by => aa.created_by, wildcards => aa.wildcards,
                profiles => aa.profiles.join(", "),
                key_updated_at => aa.key_updated_at,
            },
            names => aa.names.iter().map(|n| context! { name => n.name, subdomains => n.subdomains, added_by => n.added_by }).collect::<Vec<_>>(),
            acme => acme, certs => certs, changes => changes, holders => holders,
        },
    )
}

#[derive(Deserialize)]
pub struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    code: String,
}

pub async fn account_status(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(kid): Path<String>,
    Form(f): Form<StatusForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match operator_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !matches!(f.action.as_str(), "suspend" | "resume" | "deactivate") {
        return c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            "The action is suspend, resume or deactivate. Nothing was changed.",
        );
    }
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    let who = actor(&user, &ip);
    let done = match f.action.as_str() {
        "suspend" => c.registry.suspend(&kid, &who).await,
        "resume" => c.registry.resume(&kid, &who).await,
        _ => c.registry.deactivate(&kid, &who).await,
    };
    match done {
        Ok(()) => Redirect::to(&format!("/accounts/{}", url_segment(&kid))).into_response(),
        Err(e) => admin_refused(&c, e),
    }
}

#[derive(Deserialize)]
pub struct NamesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    names: String,
    #[serde(default)]
    subdomains: Option<String>,
    #[serde(default)]
    code: String,
}

pub async fn account_names(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(kid): Path<String>,
    Form(f): Form<NamesForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match operator_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let names = match split_names(&c, &f.names) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    match c
        .registry
        .add_names(&kid, &names, f.subdomains.is_some(), &actor(&user, &ip))
        .await
    {
        Ok(_) => Redirect::to(&format!("/accounts/{}", url_segment(&kid))).into_response(),
        Err(e) => admin_refused(&c, e),
    }
}

/// A kid as one URL path segment (kids are base64url already; anything else is escaped).
fn url_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    event: String,
    #[serde(default)]
    q: String,
}

pub async fn audit(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(f): Query<AuditQuery>,
) -> Response {
    let (s, user) = match operator(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if f.event.chars().count() > MAX_TEXT || f.q.chars().count() > MAX_TEXT {
        return too_long(&c, "filter");
    }
    let filter = AuditFilter {
        event_prefix: Some(f.event.trim().to_owned()).filter(|e| !e.is_empty()),
        mentions: Some(f.q.trim().to_owned()).filter(|e| !e.is_empty()),
        since: 0,
        limit: 500,
    };
    let rows = match c.store.audit_log(&filter).await {
        Ok(r) => r,
        Err(e) => return internal(&c, e),
    };
    let rows: Vec<HashMap<&str, String>> = rows
        .iter()
        .map(|r| {
            HashMap::from([
                ("at", sceau_admin::report::when(r.at)),
                ("event", r.event.clone()),
                ("account", r.account_id.clone().unwrap_or_default()),
                ("ip", r.client_ip.clone().unwrap_or_default()),
                ("detail", r.detail.to_string()),
            ])
        })
        .collect();
    c.page(
        StatusCode::OK,
        "audit.html",
        context! { csrf => s.csrf, user => user.name, rows => rows, event => f.event, q => f.q },
    )
}
