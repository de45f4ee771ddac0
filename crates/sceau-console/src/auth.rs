//! Logging in: password (Argon2id), then a TOTP code or a recovery code; TOTP enrolment at
//! the first login; logging out. Agency guide R2, R4, R86: the console's every change sits
//! behind two factors.
//!
//! Invariants:
//! - The login moves through explicit stages (`anonymous` → `password` → `done`, or
//!   `password` → `enrol` → `done` for a user without a second factor yet), each a new
//!   session token; no page past the login is served before `done`.
//! - Every failure — unknown user, wrong password, wrong, expired or replayed code — counts
//!   against the user and the address (`Limiter::console_attempt`), is audited with its reason,
//!   and is told to the person in words that do not say which part was wrong.
//! - A TOTP secret exists in clear only in memory; at rest it is sealed with the console's key
//!   (`console-totp.key`), under the user's name as associated data.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use sceau_store::{AuditEntry, ConsoleSession, ConsoleUser, StoreError, now};
use serde::Deserialize;
use serde_json::json;

use crate::session::{self, csrf_ok};
use crate::{Console, Peer, password, totp};

/// Recovery codes handed out at enrolment.
pub const RECOVERY_CODES: usize = 10;

pub(crate) fn internal(c: &Console, e: impl std::fmt::Display) -> Response {
    tracing::error!("console: {e}");
    c.message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server error",
        "The console could not do this now (see the server log); nothing was changed.",
    )
}

/// Records a refused request of session `s` (a forged or stale form) in the audit trail.
pub(crate) async fn audit_refusal(c: &Console, s: &ConsoleSession, why: &str) {
    let audit = AuditEntry {
        event: "console.refused",
        account_id: None,
        client_ip: None,
        detail: json!({"user": s.user_name, "stage": s.stage, "reason": why}),
    };
    match c.store.audit(&audit).await {
        Ok(()) => audit.log(),
        Err(e) => tracing::warn!("console: could not audit a refusal: {e}"),
    }
}

/// A form without the session's CSRF token: refused, audited.
pub(crate) async fn csrf_refused(c: &Console, s: &ConsoleSession) -> Response {
    audit_refusal(c, s, "missing or wrong CSRF token").await;
    c.message(
        StatusCode::FORBIDDEN,
        "Refused",
        "This form was not sent from the console page it belongs to (missing or wrong CSRF token); nothing was changed. Reload the page and try again.",
    )
}

pub(crate) fn expired(c: &Console) -> Response {
    c.message(
        StatusCode::FORBIDDEN,
        "Session expired",
        "Your session has ended; nothing was changed. Log in again.",
    )
}

pub(crate) fn peer_ip(peer: &Option<Extension<Peer>>) -> Option<std::net::IpAddr> {
    peer.as_ref().map(|Extension(Peer(ip))| *ip)
}

pub(crate) fn ip(peer: Option<Extension<Peer>>) -> String {
    peer.map_or_else(
        || "unknown".to_owned(),
        |Extension(Peer(ip))| ip.to_string(),
    )
}

/// The live session and its token hash, or the page to answer instead.
pub(crate) async fn session_or(
    c: &Console,
    headers: &HeaderMap,
) -> Result<Option<ConsoleSession>, Response> {
    session::current(&c.store, &c.settings, headers)
        .await
        .map_err(|e| internal(c, e))
}

fn totp_aad(user: &str) -> String {
    format!("console-totp:{user}")
}

pub(crate) fn seal_totp(c: &Console, user: &str, secret: &[u8]) -> String {
    sceau_wire::hex::encode(&c.totp_key.seal(&totp_aad(user), secret))
}

pub(crate) fn open_totp(c: &Console, user: &str, sealed: &str) -> Option<Vec<u8>> {
    let bytes = sceau_wire::hex::decode(sealed)?;
    c.totp_key.open(&totp_aad(user), &bytes).ok()
}

fn with_cookie(token: &str, to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::cookie(token));
    r
}

/// Moves the login on to `stage` under a new token.
async fn advance(
    c: &Console,
    old: &ConsoleSession,
    user: &str,
    stage: &str,
    pending_totp: Option<String>,
    to: &str,
) -> Response {
    let (token, mut row) = session::fresh(Some(user), stage, stage == "done");
    row.pending_totp = pending_totp;
    if stage != "done" {
        // The login's clock starts at its first step: a half-done login does not last.
        row.created_at = old.created_at;
    }
    match c
        .store
        .rotate_console_session(&old.token_sha256, &row)
        .await
    {
        Ok(()) => with_cookie(&token, to),
        Err(StoreError::Conflict(_)) => expired(c),
        Err(e) => internal(c, e),
    }
}

pub(crate) fn too_many(c: &Console, e: &sceau_acme::AcmeError) -> Response {
    let mut r = c.message(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many failed attempts",
        &format!("Logging in is paused after repeated failures: {}", e.detail),
    );
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    }
    r
}

/// Counts and audits a failed attempt; the page to show.
async fn failed(
    c: &Console,
    user: &str,
    ip: &str,
    why: &str,
    page: &str,
    csrf: &str,
    text: &str,
) -> Response {
    if let Err(e) = c.acme.limits.console_failed(&c.store, user, ip, why).await {
        return internal(c, e);
    }
    c.page(
        StatusCode::UNAUTHORIZED,
        page,
        context! { csrf => csrf, error => text, user => user, login_stage => true },
    )
}

pub async fn login_form(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    let current = match session_or(&c, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match current {
        Some(s) if s.stage == "done" => Redirect::to("/").into_response(),
        Some(s) if s.stage == "anonymous" => {
            c.page(StatusCode::OK, "login.html", context! { csrf => s.csrf })
        }
        // A login half done (or none): start over with a fresh anonymous session.
        other => {
            if let Some(s) = other
                && let Err(e) = c.store.delete_console_session(&s.token_sha256).await
            {
                return internal(&c, e);
            }
            if let Err(e) = c.acme.limits.console_session(peer_ip(&peer)) {
                return too_many(&c, &e);
            }
            let (token, row) = session::fresh(None, "anonymous", false);
            if let Err(e) = c.store.insert_console_session(&row).await {
                return internal(&c, e);
            }
            let mut r = c.page(StatusCode::OK, "login.html", context! { csrf => row.csrf });
            r.headers_mut()
                .insert(header::SET_COOKIE, session::cookie(&token));
            r
        }
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// A user name: 1 to 64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a user name has 1 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '@'))
    {
        return Err("a user name has only letters, digits and . _ - @".into());
    }
    Ok(())
}

pub async fn login(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let ip = ip(peer);
    let s = match session_or(&c, &headers).await {
        Ok(Some(s)) if s.stage == "anonymous" => s,
        Ok(Some(s)) if s.stage == "done" => return Redirect::to("/").into_response(),
        Ok(_) => return expired(&c),
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        return csrf_refused(&c, &s).await;
    }
    let name = f.user.trim();
    if check_user_name(name).is_err() {
        return c.page(
            StatusCode::BAD_REQUEST,
            "login.html",
            context! { csrf => s.csrf, error => "Wrong user name or password." },
        );
    }
    if let Err(e) = c.acme.limits.console_attempt(&c.store, name, &ip).await {
        return too_many(&c, &e);
    }
    let user = match c.store.console_user(name).await {
        Ok(u) if u.status == "active" => Some(u),
        Ok(_) | Err(StoreError::NotFound) => None,
        Err(e) => return internal(&c, e),
    };
    let ok =
        password::verify_blocking(user.as_ref().map(|u| u.password_hash.clone()), f.password).await;
    let Some(user) = user.filter(|_| ok) else {
        let why = if ok {
            "disabled user"
        } else {
            "wrong password or unknown user"
        };
        return failed(
            &c,
            name,
            &ip,
            why,
            "login.html",
            &s.csrf,
            "Wrong user name or password.",
        )
        .await;
    };
    if user.totp_sealed.is_some() {
        return advance(&c, &s, &user.name, "password", None, "/login/code").await;
    }
    let pending = seal_totp(&c, &user.name, &totp::new_secret());
    advance(&c, &s, &user.name, "enrol", Some(pending), "/enrol").await
}

/// The session of a login at `stage`, with its user.
async fn at_stage(
    c: &Console,
    headers: &HeaderMap,
    stage: &str,
) -> Result<(ConsoleSession, ConsoleUser), Response> {
    let s = match session_or(c, headers).await? {
        Some(s) if s.stage == stage => s,
        Some(s) if s.stage == "done" => return Err(Redirect::to("/").into_response()),
        _ => return Err(Redirect::to("/login").into_response()),
    };
    let name = s.user_name.clone().unwrap_or_default();
    match c.store.console_user(&name).await {
        Ok(u) if u.status == "active" => Ok((s, u)),
        Ok(_) | Err(StoreError::NotFound) => Err(expired(c)),
        Err(e) => Err(internal(c, e)),
    }
}

pub async fn code_form(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match at_stage(&c, &headers, "password").await {
        Ok((s, u)) => c.page(
            StatusCode::OK,
            "code.html",
            context! { csrf => s.csrf, user => u.name, login_stage => true },
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

fn recovery_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    session::token_hash(&normal)
}

/// Checks a second factor of `user`: a TOTP code (its step taken, so never twice) or an
/// unused recovery code. The factor used, or the reason for refusing.
pub(crate) async fn second_factor(
    c: &Console,
    user: &ConsoleUser,
    code: &str,
) -> Result<Result<&'static str, &'static str>, StoreError> {
    let code = code.trim();
    if code.len() > 64 {
        return Ok(Err("malformed code"));
    }
    let Some(secret) = user
        .totp_sealed
        .as_deref()
        .and_then(|s| open_totp(c, &user.name, s))
    else {
        return Ok(Err("no second factor enrolled"));
    };
    if code.chars().filter(|c| c.is_ascii_digit()).count() == totp::DIGITS as usize
        && code.chars().all(|c| c.is_ascii_digit() || c == ' ')
    {
        return Ok(match totp::matching_step(&secret, code, now()) {
            None => Err("wrong code"),
            Some(step) if c.store.take_totp_step(&user.name, step).await? => Ok("totp"),
            Some(_) => Err("replayed code"),
        });
    }
    if c.store
        .use_recovery_code(&user.name, &recovery_hash(code))
        .await?
    {
        return Ok(Ok("recovery code"));
    }
    Ok(Err("wrong code"))
}

pub async fn code(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match at_stage(&c, &headers, "password").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        return csrf_refused(&c, &s).await;
    }
    if let Err(e) = c
        .acme
        .limits
        .console_attempt(&c.store, &user.name, &ip)
        .await
    {
        return too_many(&c, &e);
    }
    match second_factor(&c, &user, &f.code).await {
        Ok(Ok(factor)) => {
            let audit = AuditEntry {
                event: "console.login",
                account_id: None,
                client_ip: Some(&ip),
                detail: json!({"user": user.name, "role": user.role, "factor": factor}),
            };
            if let Err(e) = c.store.audit(&audit).await {
                return internal(&c, e);
            }
            audit.log();
            advance(&c, &s, &user.name, "done", None, "/").await
        }
        Ok(Err(why)) => {
            failed(
                &c,
                &user.name,
                &ip,
                why,
                "code.html",
                &s.csrf,
                "Wrong or already used code.",
            )
            .await
        }
        Err(e) => internal(&c, e),
    }
}

fn qr_data_uri(uri: &str) -> String {
    let svg = qrcode::QrCode::new(uri.as_bytes())
        .map(|q| {
            q.render::<qrcode::render::svg::Color>()
                .min_dimensions(220, 220)
                .build()
        })
        .unwrap_or_default();
    format!("data:image/svg+xml;base64,{}", base64_std(svg.as_bytes()))
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn enrol_form(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (s, user) = match at_stage(&c, &headers, "enrol").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(secret) = s
        .pending_totp
        .as_deref()
        .and_then(|p| open_totp(&c, &user.name, p))
    else {
        return expired(&c);
    };
    enrol_page(&c, &s, &user, &secret, StatusCode::OK, None)
}

fn enrol_page(
    c: &Console,
    s: &ConsoleSession,
    user: &ConsoleUser,
    secret: &[u8],
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let uri = totp::otpauth_uri(&c.settings.issuer, &user.name, secret);
    c.page(
        status,
        "enrol.html",
        context! {
            csrf => s.csrf, user => user.name, qr => qr_data_uri(&uri),
            secret => totp::base32(secret), error => error, login_stage => true,
        },
    )
}

fn recovery_code() -> String {
    // 60 bits each, in three groups of four base32 characters, lower case.
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("OS random source");
    let text = totp::base32(&bytes).to_ascii_lowercase();
    format!("{}-{}-{}", &text[0..4], &text[4..8], &text[8..12])
}

pub async fn enrol(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match at_stage(&c, &headers, "enrol").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        return csrf_refused(&c, &s).await;
    }
    if let Err(e) = c
        .acme
        .limits
        .console_attempt(&c.store, &user.name, &ip)
        .await
    {
        return too_many(&c, &e);
    }
    let (Some(sealed), Some(secret)) = (
        s.pending_totp.clone(),
        s.pending_totp
            .as_deref()
            .and_then(|p| open_totp(&c, &user.name, p)),
    ) else {
        return expired(&c);
    };
    let Some(step) = totp::matching_step(&secret, &f.code, now()) else {
        if let Err(e) = c
            .acme
            .limits
            .console_failed(&c.store, &user.name, &ip, "wrong enrolment code")
            .await
        {
            return internal(&c, e);
        }
        return enrol_page(
            &c,
            &s,
            &user,
            &secret,
            StatusCode::UNAUTHORIZED,
            Some(
                "That code does not match; check the time on your device and try the current code.",
            ),
        );
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
    let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
    let audit = AuditEntry {
        event: "console.totp_enrolled",
        account_id: None,
        client_ip: Some(&ip),
        detail: json!({"user": user.name, "recovery_codes": RECOVERY_CODES}),
    };
    if let Err(e) = c
        .store
        .set_console_totp(&user.name, &sealed, step, &hashes, &audit)
        .await
    {
        return internal(&c, e);
    }
    let (token, row) = session::fresh(Some(&user.name), "done", true);
    if let Err(e) = c.store.rotate_console_session(&s.token_sha256, &row).await {
        return internal(&c, e);
    }
    let mut r = c.page(
        StatusCode::OK,
        "recovery.html",
        context! { csrf => row.csrf, user => user.name, codes => codes },
    );
    r.headers_mut()
        .insert(header::SET_COOKIE, session::cookie(&token));
    r
}

pub async fn logout(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let s = match session_or(&c, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        return csrf_refused(&c, &s).await;
    }
    if let Err(e) = c.store.delete_console_session(&s.token_sha256).await {
        return internal(&c, e);
    }
    if let Some(user) = &s.user_name {
        let ip = ip(peer);
        let audit = AuditEntry {
            event: "console.logout",
            account_id: None,
            client_ip: Some(&ip),
            detail: json!({"user": user}),
        };
        if let Err(e) = c.store.audit(&audit).await {
            return internal(&c, e);
        }
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::cookie_cleared());
    r
}
