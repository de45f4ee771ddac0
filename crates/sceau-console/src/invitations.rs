//! Holders' console logins: an operator invites the named person of an external account
//! (a user of role `holder` for that account only), who sets a first password through a
//! one-time link.
//!
//! Invariants:
//! - The link's token is 256 random bits, stored as its SHA-256, valid 7 days, usable once
//!   (compare-and-swap); until it is used the user is `invited` and cannot log in.
//! - Inviting is a change to the external account: it needs a fresh second factor.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use sceau_store::{ConsoleSession, ConsoleUser, StoreError, now};
use serde::Deserialize;

use crate::auth::{csrf_refused, expired, internal, ip, session_or};
use crate::operator::{actor, admin_refused, operator_change, step_up};
use crate::session::{self, csrf_ok};
use crate::{Console, Peer, password};

/// How long an invitation may wait to be used.
const INVITATION_SECS: i64 = 7 * 86400;

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    code: String,
}

/// Invites the holder of an external account: a console user of role `holder` for this
/// account only, whose first password is set through a one-time link shown here once.
pub async fn invite(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(kid): Path<String>,
    Form(f): Form<InviteForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match operator_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = f.name.trim();
    if let Err(e) = crate::auth::check_user_name(name) {
        return c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            &format!("{e}. Nothing was changed."),
        );
    }
    let aa = match c.registry.get(&kid).await {
        Ok(a) => a,
        Err(e) => return admin_refused(&c, e),
    };
    if aa.status == "deactivated" {
        return c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            "The external account is deactivated. Nothing was changed.",
        );
    }
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    let (token, row) = crate::session::fresh(None, "invitation", false);
    let holder = ConsoleUser {
        name: name.to_owned(),
        role: "holder".into(),
        kid: Some(kid.clone()),
        password_hash: String::new(),
        totp_sealed: None,
        totp_last_step: 0,
        status: "invited".into(),
        created_at: now(),
        created_by: actor(&user, &ip),
    };
    let audit = sceau_store::AuditEntry {
        event: "console.holder_invited",
        account_id: None,
        client_ip: Some(&ip),
        detail: serde_json::json!({"user": name, "kid": kid, "by": user.name}),
    };
    match c
        .store
        .insert_console_user(
            &holder,
            Some((&row.token_sha256, now() + INVITATION_SECS)),
            &audit,
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) => {
            return c.message(
                StatusCode::BAD_REQUEST,
                "Refused",
                &format!("{what}. Nothing was changed."),
            );
        }
        Err(e) => return internal(&c, e),
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("the console");
    c.page(
        StatusCode::CREATED,
        "invited.html",
        context! {
            csrf => s.csrf, user => user.name, holder => name, owner => aa.owner, kid => kid,
            link => format!("https://{host}/invite/{token}"), days => INVITATION_SECS / 86400,
        },
    )
}

/// An anonymous session for a form shown before login (its CSRF token), reusing the
/// request's own if it has one.
async fn anonymous(
    c: &Console,
    peer: &Option<Extension<Peer>>,
    headers: &HeaderMap,
) -> Result<(ConsoleSession, Option<String>), Response> {
    match session_or(c, headers).await? {
        Some(s) if s.stage == "anonymous" => Ok((s, None)),
        _ => {
            c.acme
                .limits
                .console_session(crate::auth::peer_ip(peer))
                .map_err(|e| crate::auth::too_many(c, &e))?;
            let (token, row) = session::fresh(None, "anonymous", false);
            c.store
                .insert_console_session(&row)
                .await
                .map_err(|e| internal(c, e))?;
            Ok((row, Some(token)))
        }
    }
}

fn invitation_gone(c: &Console) -> Response {
    c.message(
        StatusCode::NOT_FOUND,
        "Invitation not valid",
        "This invitation link was used already, has expired, or never existed. Ask an operator for a new one.",
    )
}

pub async fn invitation_form(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    if token.len() > 64 {
        return invitation_gone(&c);
    }
    let user = match c.store.invitation_user(&session::token_hash(&token)).await {
        Ok(Some(u)) => u,
        Ok(None) => return invitation_gone(&c),
        Err(e) => return internal(&c, e),
    };
    let (s, cookie) = match anonymous(&c, &peer, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut r = c.page(
        StatusCode::OK,
        "invitation.html",
        context! { csrf => s.csrf, invited => user, token => token, login_stage => true },
    );
    if let Some(token) = cookie {
        r.headers_mut()
            .insert(header::SET_COOKIE, session::cookie(&token));
    }
    r
}

#[derive(Deserialize)]
pub struct InvitationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn accept_invitation(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<InvitationForm>,
) -> Response {
    let ip = ip(peer);
    let s = match session_or(&c, &headers).await {
        Ok(Some(s)) if s.stage == "anonymous" => s,
        Ok(_) => return expired(&c),
        Err(r) => return r,
    };
    if !csrf_ok(&s, &f.csrf) {
        return csrf_refused(&c, &s).await;
    }
    let hash = session::token_hash(&token);
    let user = match c.store.invitation_user(&hash).await {
        Ok(Some(u)) => u,
        Ok(None) => return invitation_gone(&c),
        Err(e) => return internal(&c, e),
    };
    let problem = if f.password != f.confirm {
        Some("The two passwords differ.".to_owned())
    } else {
        password::check_new(&f.password)
            .err()
            .map(|e| format!("Refused: {e}."))
    };
    if let Some(text) = problem {
        return c.page(
            StatusCode::BAD_REQUEST,
            "invitation.html",
            context! { csrf => s.csrf, invited => user, token => token, error => text, login_stage => true },
        );
    }
    let pass = f.password;
    let Ok(phc) = tokio::task::spawn_blocking(move || password::hash(&pass)).await else {
        return internal(&c, "password hashing stopped");
    };
    match c.store.accept_invitation(&hash, &phc, &ip).await {
        Ok(_) => Redirect::to("/login").into_response(),
        Err(StoreError::NotFound | StoreError::Conflict(_)) => invitation_gone(&c),
        Err(e) => internal(&c, e),
    }
}
