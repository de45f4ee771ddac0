//! Console sessions: a random token in a cookie, its SHA-256 in the database (shared by every
//! instance), a CSRF token per session.
//!
//! Invariants:
//! - The cookie is `__Host-` prefixed (RFC 6265bis §4.1.3.2: Secure, no Domain, Path=/), so
//!   no other host or path can set or read it, and `HttpOnly; SameSite=Strict`.
//! - A session idle past [`Settings::idle_timeout`] or older than
//!   [`Settings::absolute_timeout`] is gone: it is deleted when seen.
//! - Each step of a login replaces the token ([`Store::rotate_console_session`]), so a token
//!   planted before the login (session fixation) is worthless after it.

use axum::http::{HeaderMap, HeaderValue, header};
use sceau_store::{ConsoleSession, Store, now};

use crate::Settings;

pub const COOKIE: &str = "__Host-sceau-console";

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("OS random source");
    sceau_wire::b64::encode(bytes)
}

pub fn token_hash(token: &str) -> String {
    sceau_wire::hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
    )
}

/// A new session's token (for the cookie) and row.
pub fn fresh(user: Option<&str>, stage: &str, mfa: bool) -> (String, ConsoleSession) {
    let token = random_text();
    let t = now();
    let row = ConsoleSession {
        token_sha256: token_hash(&token),
        user_name: user.map(str::to_owned),
        stage: stage.to_owned(),
        csrf: random_text(),
        pending_totp: None,
        created_at: t,
        seen_at: t,
        mfa_at: mfa.then_some(t),
    };
    (token, row)
}

/// The `Set-Cookie` value that hands `token` to the browser.
pub fn cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .expect("tokens are base64url")
}

/// The `Set-Cookie` value that removes the cookie.
pub fn cookie_cleared() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
    .expect("ascii")
}

/// The session token the request carries, if any.
pub fn token_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() <= 64 && !v.is_empty())
}

/// The live session of the request, if any; an expired one is deleted.
pub async fn current(
    store: &Store,
    settings: &Settings,
    headers: &HeaderMap,
) -> sceau_store::Result<Option<ConsoleSession>> {
    let Some(token) = token_of(headers) else {
        return Ok(None);
    };
    let hash = token_hash(&token);
    let Some(s) = store.console_session(&hash).await? else {
        return Ok(None);
    };
    let t = now();
    if t - s.seen_at > settings.idle_timeout.as_secs() as i64
        || t - s.created_at > settings.absolute_timeout.as_secs() as i64
    {
        store.delete_console_session(&hash).await?;
        return Ok(None);
    }
    // One write a minute at most per session, not one per page.
    if t - s.seen_at >= 60 {
        store.touch_console_session(&hash, false).await?;
    }
    Ok(Some(s))
}

/// The request's CSRF token matches its session's.
pub fn csrf_ok(session: &ConsoleSession, given: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(session.csrf.as_bytes(), given.as_bytes())
        .is_ok()
}

/// A second factor was given within `settings.fresh_mfa`.
pub fn mfa_fresh(session: &ConsoleSession, settings: &Settings) -> bool {
    session
        .mfa_at
        .is_some_and(|t| now() - t <= settings.fresh_mfa.as_secs() as i64)
}
