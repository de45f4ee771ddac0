//! The passkey pages: a logged-in user registers a passkey (with a second factor given in the
//! last minutes), and logs in with it instead of a TOTP code. The ceremonies run in the
//! browser (`static/webauthn.js`, the console's only script); the checks are in
//! [`crate::webauthn`].
//!
//! Invariants:
//! - Every JSON POST carries the session's CSRF token, as forms do.
//! - A passkey login is a second factor like a TOTP code: it follows the password, counts
//!   against the login limits when it fails, and is audited with its outcome.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use sceau_store::{AuditEntry, ConsoleSession, ConsoleUser, Passkey, StoreError, now};
use sceau_wire::b64;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{internal, ip, session_or};
use crate::session::{self, csrf_ok, mfa_fresh};
use crate::{Console, Peer, webauthn};

fn json_error(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({"error": text}))).into_response()
}

/// The relying party id and the origin a browser at this console shows.
fn rp(headers: &HeaderMap) -> Option<(String, String)> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let id = webauthn::rp_id_of(host)?;
    Some((id, format!("https://{}", host.to_ascii_lowercase())))
}

fn new_challenge() -> String {
    let mut c = [0u8; 32];
    aws_lc_rs::rand::fill(&mut c).expect("OS random source");
    b64::encode(c)
}

/// The logged-in user (any role), or the answer to give.
async fn logged_in(
    c: &Console,
    headers: &HeaderMap,
) -> Result<(ConsoleSession, ConsoleUser), Response> {
    let s = match session_or(c, headers).await? {
        Some(s) if s.stage == "done" => s,
        _ => return Err(Redirect::to("/login").into_response()),
    };
    match c
        .store
        .console_user(s.user_name.as_deref().unwrap_or_default())
        .await
    {
        Ok(u) if u.status == "active" => Ok((s, u)),
        Ok(_) | Err(StoreError::NotFound) => Err(crate::auth::expired(c)),
        Err(e) => Err(internal(c, e)),
    }
}

pub async fn page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (s, user) = match logged_in(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let keys = match c.store.passkeys_of(&user.name).await {
        Ok(k) => k,
        Err(e) => return internal(&c, e),
    };
    let list: Vec<_> = keys
        .iter()
        .map(|k| context! { label => k.label, created_at => k.created_at, uses => k.sign_count })
        .collect();
    c.page(
        StatusCode::OK,
        "passkeys.html",
        context! {
            csrf => s.csrf, user => user.name, role => user.role, keys => list,
            possible => rp(&headers).is_some(), fresh => mfa_fresh(&s, &c.settings),
        },
    )
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// Registration, step 1: the options for `navigator.credentials.create`.
pub async fn register_options(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Json(f): Json<CsrfOnly>,
) -> Response {
    let (s, user) = match logged_in(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        crate::auth::audit_refusal(&c, &s, "missing or wrong CSRF token").await;
        return json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    if !mfa_fresh(&s, &c.settings) {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "adding a passkey needs a second factor given in the last minutes: log out and in again",
        );
    }
    let Some((rp_id, _)) = rp(&headers) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "passkeys need the console to be reached by a host name, not an IP address",
        );
    };
    let challenge = new_challenge();
    if let Err(e) = c
        .store
        .set_session_challenge(&s.token_sha256, &challenge)
        .await
    {
        return internal(&c, e);
    }
    let existing: Vec<_> = match c.store.passkeys_of(&user.name).await {
        Ok(k) => k
            .into_iter()
            .map(|k| json!({"type": "public-key", "id": k.credential_id}))
            .collect(),
        Err(e) => return internal(&c, e),
    };
    let user_id = b64::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        user.name.as_bytes(),
    ));
    Json(json!({
        "challenge": challenge,
        "rp": {"id": rp_id, "name": c.settings.issuer},
        "user": {"id": user_id, "name": user.name, "displayName": user.name},
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "excludeCredentials": existing,
        "attestation": "none",
        "authenticatorSelection": {"userVerification": "preferred", "residentKey": "preferred"},
        "timeout": 120000,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct Registration {
    #[serde(default)]
    csrf: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "attestationObject")]
    attestation_object: String,
    #[serde(default)]
    label: String,
}

/// Registration, step 2: the authenticator's answer.
pub async fn register(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Json(f): Json<Registration>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match logged_in(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        crate::auth::audit_refusal(&c, &s, "missing or wrong CSRF token").await;
        return json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    let Some((rp_id, origin)) = rp(&headers) else {
        return json_error(StatusCode::BAD_REQUEST, "passkeys need a host name");
    };
    let challenge = match c.store.take_session_challenge(&s.token_sha256).await {
        Ok(Some(ch)) => ch,
        Ok(None) => return json_error(StatusCode::BAD_REQUEST, "no registration in progress"),
        Err(e) => return internal(&c, e),
    };
    let (Ok(cd), Ok(att)) = (
        b64::decode(&f.client_data_json),
        b64::decode(&f.attestation_object),
    ) else {
        return json_error(StatusCode::BAD_REQUEST, "malformed registration");
    };
    let reg = match webauthn::register(&cd, &att, &challenge, &origin, &rp_id) {
        Ok(r) => r,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, &format!("passkey refused: {why}")),
    };
    let label: String = f
        .label
        .trim()
        .chars()
        .filter(|ch| !ch.is_control())
        .take(64)
        .collect();
    let key = Passkey {
        credential_id: b64::encode(&reg.credential_id),
        name: user.name.clone(),
        public_key: sceau_wire::hex::encode(&reg.public_key),
        sign_count: i64::from(reg.sign_count),
        label: if label.is_empty() {
            "passkey".into()
        } else {
            label
        },
        created_at: now(),
    };
    let audit = AuditEntry {
        event: "console.passkey_registered",
        account_id: None,
        client_ip: Some(&ip),
        detail: json!({"user": user.name, "label": key.label, "user_verified": reg.user_verified}),
    };
    match c.store.insert_passkey(&key, &audit).await {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(StoreError::Conflict(what)) => json_error(StatusCode::CONFLICT, &what),
        Err(e) => internal(&c, e),
    }
}

/// The login at its second step (password given), or the answer to give.
async fn at_password(
    c: &Console,
    headers: &HeaderMap,
) -> Result<(ConsoleSession, ConsoleUser), Response> {
    let s = match session_or(c, headers).await? {
        Some(s) if s.stage == "password" => s,
        _ => {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                "log in with your password first",
            ));
        }
    };
    match c
        .store
        .console_user(s.user_name.as_deref().unwrap_or_default())
        .await
    {
        Ok(u) if u.status == "active" => Ok((s, u)),
        Ok(_) | Err(StoreError::NotFound) => {
            Err(json_error(StatusCode::FORBIDDEN, "session ended"))
        }
        Err(e) => Err(internal(c, e)),
    }
}

/// Login, step 1: the options for `navigator.credentials.get`.
pub async fn login_options(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Json(f): Json<CsrfOnly>,
) -> Response {
    let (s, user) = match at_password(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        crate::auth::audit_refusal(&c, &s, "missing or wrong CSRF token").await;
        return json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    let Some((rp_id, _)) = rp(&headers) else {
        return json_error(StatusCode::BAD_REQUEST, "passkeys need a host name");
    };
    let keys = match c.store.passkeys_of(&user.name).await {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => {
            return json_error(
                StatusCode::NOT_FOUND,
                "you have no passkey: use your authenticator code",
            );
        }
        Err(e) => return internal(&c, e),
    };
    let challenge = new_challenge();
    if let Err(e) = c
        .store
        .set_session_challenge(&s.token_sha256, &challenge)
        .await
    {
        return internal(&c, e);
    }
    Json(json!({
        "challenge": challenge,
        "rpId": rp_id,
        "allowCredentials": keys.iter().map(|k| json!({"type": "public-key", "id": k.credential_id})).collect::<Vec<_>>(),
        "userVerification": "preferred",
        "timeout": 120000,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct Assertion {
    #[serde(default)]
    csrf: String,
    id: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    signature: String,
}

/// Login, step 2: the authenticator's signature, instead of a TOTP code.
pub async fn login(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Json(f): Json<Assertion>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match at_password(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        crate::auth::audit_refusal(&c, &s, "missing or wrong CSRF token").await;
        return json_error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    if let Err(e) = c
        .acme
        .limits
        .console_attempt(&c.store, &user.name, &ip)
        .await
    {
        return json_error(StatusCode::TOO_MANY_REQUESTS, &e.detail);
    }
    let Some((rp_id, origin)) = rp(&headers) else {
        return json_error(StatusCode::BAD_REQUEST, "passkeys need a host name");
    };
    let challenge = match c.store.take_session_challenge(&s.token_sha256).await {
        Ok(Some(ch)) => ch,
        Ok(None) => return json_error(StatusCode::BAD_REQUEST, "no passkey login in progress"),
        Err(e) => return internal(&c, e),
    };
    let outcome = async {
        let key = c
            .store
            .passkeys_of(&user.name)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|k| k.credential_id == f.id)
            .ok_or("not a passkey of this user")?;
        let (Ok(cd), Ok(ad), Ok(sig), Some(pk)) = (
            b64::decode(&f.client_data_json),
            b64::decode(&f.authenticator_data),
            b64::decode(&f.signature),
            sceau_wire::hex::decode(&key.public_key),
        ) else {
            return Err("malformed assertion".to_owned());
        };
        let stored = u32::try_from(key.sign_count).unwrap_or(u32::MAX);
        let count =
            webauthn::authenticate(&cd, &ad, &sig, &pk, stored, &challenge, &origin, &rp_id)?;
        if !c
            .store
            .bump_passkey_count(&key.credential_id, key.sign_count, i64::from(count))
            .await
            .map_err(|e| e.to_string())?
        {
            return Err("the passkey was used at the same moment elsewhere".to_owned());
        }
        Ok::<_, String>(key.label)
    }
    .await;
    match outcome {
        Ok(label) => {
            let audit = AuditEntry {
                event: "console.login",
                account_id: None,
                client_ip: Some(&ip),
                detail: json!({"user": user.name, "role": user.role, "factor": "passkey", "passkey": label}),
            };
            if let Err(e) = c.store.audit(&audit).await {
                return internal(&c, e);
            }
            let (token, row) = session::fresh(Some(&user.name), "done", true);
            match c.store.rotate_console_session(&s.token_sha256, &row).await {
                Ok(()) => {
                    let mut r = Json(json!({"redirect": "/"})).into_response();
                    r.headers_mut()
                        .insert(header::SET_COOKIE, session::cookie(&token));
                    r
                }
                Err(e) => internal(&c, e),
            }
        }
        Err(why) => {
            if let Err(e) = c
                .acme
                .limits
                .console_failed(&c.store, &user.name, &ip, &format!("passkey: {why}"))
                .await
            {
                return internal(&c, e);
            }
            json_error(StatusCode::UNAUTHORIZED, "the passkey was not accepted")
        }
    }
}
