//! The plain-HTTP listener relying parties reach: CRLs and OCSP (RFC 5280 §4.2.1.13 and
//! RFC 6960 App. A fetch them without TLS, which could itself need them). It answers only what
//! relying parties fetch; no ACME request reaches it.
//!
//! Invariant: the same connection limits and timeouts as the ACME listener (see `listener`),
//! its own connection counts.

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use sceau_acme::Acme;

pub fn router(acme: Arc<Acme>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .fallback(not_found)
        .with_state(acme)
}

async fn livez() -> Response {
    (StatusCode::OK, "live\n").into_response()
}

async fn not_found() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "not found\n").into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
