//! The plain-HTTP listener relying parties reach: CRLs and OCSP (RFC 5280 §4.2.1.13 and
//! RFC 6960 App. A fetch them without TLS, which could itself need them). It answers only what
//! relying parties fetch; no ACME request reaches it.
//!
//! Invariants:
//! - The same connection limits and timeouts as the ACME listener (see `listener`), its own
//!   connection counts.
//! - A shard CRL is served from the database (every instance serves the same one), DER,
//!   `application/pkix-crl` (RFC 5280 §4.2.1.13), cacheable until its nextUpdate but not past
//!   the next scheduled update; a path that names no CRL is a 404, never an error page that a
//!   relying party would try to parse as a CRL.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sceau_acme::Acme;

pub fn router(acme: Arc<Acme>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/crl/root.crl", get(authority_crl))
        .route("/crl/{issuer}/{file}", get(shard_crl))
        .merge(crate::ocsp_http::routes())
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

fn crl_response(
    der: Vec<u8>,
    etag: String,
    this_update: i64,
    max_age: i64,
    req: &HeaderMap,
) -> Response {
    let etag = format!("\"{etag}\"");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-crl"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={}", max_age.max(0))).expect("digits"),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex and digits"),
    );
    if let Ok(v) = HeaderValue::from_str(&sceau_acme::ocsp::http_date(this_update)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    let unchanged = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, der).into_response()
}

/// `/crl/<issuer>/<shard>.crl`: the shard's current CRL.
async fn shard_crl(
    State(acme): State<Arc<Acme>>,
    Path((issuer, file)): Path<(String, String)>,
    req: HeaderMap,
) -> Response {
    // Issuer ids are the hex of a key identifier; anything else names no CRL.
    let valid_issuer = !issuer.is_empty()
        && issuer.len() <= 128
        && issuer
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let shard = file
        .strip_suffix(".crl")
        .filter(|n| !n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n < acme.config.crl_shards.max(1));
    let (true, Some(shard)) = (valid_issuer, shard) else {
        return not_found().await;
    };
    match acme.store.crl(&issuer, shard).await {
        Ok(Some(crl)) => {
            let now = sceau_store::now();
            let until_update = crl.this_update
                + acme.config.crl.update_every.as_secs() as i64
                + sceau_acme::crl::CRL_JOB_PERIOD.as_secs() as i64
                - now;
            let max_age = until_update.min(crl.next_update - now);
            crl_response(
                crl.der,
                format!("{}", crl.number),
                crl.this_update,
                max_age,
                &req,
            )
        }
        Ok(None) => not_found().await,
        Err(e) => {
            tracing::warn!(error = %e, "CRL read failed");
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// `/crl/root.crl`: the root's authority CRL, as the last `sceau-server ca arl` wrote it.
async fn authority_crl(State(acme): State<Arc<Acme>>, req: HeaderMap) -> Response {
    let Some(path) = acme.config.crl.authority_crl.clone() else {
        return not_found().await;
    };
    let der = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(_) => return not_found().await,
    };
    let Ok(info) = sceau_ca::arl::crl_info(&der) else {
        tracing::warn!(path = %path.display(), "the authority CRL does not parse; not served");
        return not_found().await;
    };
    let now = sceau_store::now();
    let next = info.next_update.map_or(now, |t| t.unix_timestamp());
    // An offline root signs it rarely: let caches keep it a day at most.
    let max_age = (next - now).min(86400);
    crl_response(
        der,
        info.number.unwrap_or(0).to_string(),
        info.this_update.unix_timestamp(),
        max_age,
        &req,
    )
}
