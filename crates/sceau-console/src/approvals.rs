//! Names holders ask for, decided by an operator (agency guide R6), with the CAA records
//! looked up when they were asked for (R7).
//!
//! Invariants:
//! - A request is decided once: the decision is a compare-and-swap from `pending`, so two
//!   operators approving at once add the name once; a name that cannot be added puts the
//!   request back to pending.
//! - Approving adds the name through `sceau_admin::Registry::add_names`, as the CLI does, with
//!   the deciding operator as the actor; deciding needs a fresh second factor.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use sceau_store::StoreError;
use serde::{Deserialize, Serialize};

use crate::auth::{internal, ip};
use crate::operator::{MAX_TEXT, actor, admin_refused, operator, operator_change, step_up};
use crate::session::mfa_fresh;
use crate::{Console, Peer};

#[derive(Serialize)]
struct Pending {
    id: String,
    kid: String,
    owner: String,
    name: String,
    subdomains: bool,
    requested_by: String,
    requested_at: i64,
    caa: String,
}

/// R6: the names holders asked for, waiting for an operator.
pub async fn approvals(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let (s, user) = match operator(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (requests, accounts) = match (c.store.name_requests(None).await, c.registry.list().await) {
        (Ok(r), Ok(a)) => (r, a),
        (Err(e), _) => return internal(&c, e),
        (_, Err(e)) => return internal(&c, e),
    };
    let owner = |kid: &str| {
        accounts
            .iter()
            .find(|a| a.kid == kid)
            .map_or_else(String::new, |a| a.owner.clone())
    };
    let pending: Vec<Pending> = requests
        .into_iter()
        .map(|r| Pending {
            owner: owner(&r.kid),
            id: r.id,
            kid: r.kid,
            name: r.name,
            subdomains: r.subdomains,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            caa: r.caa,
        })
        .collect();
    c.page(
        StatusCode::OK,
        "approvals.html",
        context! { csrf => s.csrf, user => user.name, fresh => mfa_fresh(&s, &c.settings), pending => pending },
    )
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    code: String,
}

pub async fn decide(
    State(c): State<Arc<Console>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    let ip = ip(peer);
    let (s, user) = match operator_change(&c, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !matches!(f.decision.as_str(), "approve" | "refuse") || f.reason.chars().count() > MAX_TEXT {
        return c.message(StatusCode::BAD_REQUEST, "Refused", "The decision is approve or refuse, with a reason of at most 256 characters. Nothing was changed.");
    }
    let request = match c.store.name_request(&id).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => {
            return c.message(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such request.",
            );
        }
        Err(e) => return internal(&c, e),
    };
    if let Err(r) = step_up(&c, &s, &user, &f.code, &ip).await {
        return r;
    }
    let who = actor(&user, &ip);
    let reason = Some(f.reason.trim()).filter(|r| !r.is_empty());
    let status = if f.decision == "approve" {
        "approved"
    } else {
        "refused"
    };
    // The request is decided first (compare-and-swap), so two operators approving at once add
    // the name once; a failed addition puts it back to pending.
    match c.store.decide_name_request(&id, status, &who, reason).await {
        Ok(true) => {}
        Ok(false) => {
            return c.message(
                StatusCode::CONFLICT,
                "Decided already",
                "Another operator decided this request meanwhile. Nothing was changed.",
            );
        }
        Err(e) => return internal(&c, e),
    }
    if status == "approved" {
        if let Err(e) = c
            .registry
            .add_names(
                &request.kid,
                std::slice::from_ref(&request.name),
                request.subdomains,
                &who,
            )
            .await
        {
            if let Err(e2) = c.store.reopen_name_request(&id).await {
                tracing::error!(request = %id, "could not put the name request back to pending: {e2}");
            }
            return admin_refused(&c, e);
        }
    } else {
        let audit = sceau_store::AuditEntry {
            event: "console.name_refused",
            account_id: None,
            client_ip: Some(&ip),
            detail: serde_json::json!({"by": user.name, "kid": request.kid, "name": request.name, "reason": reason}),
        };
        if let Err(e) = c.store.audit(&audit).await {
            return internal(&c, e);
        }
    }
    Redirect::to("/approvals").into_response()
}
