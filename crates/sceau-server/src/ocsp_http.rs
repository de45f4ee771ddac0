//! OCSP over HTTP (RFC 6960 App. A, RFC 5019 §5–6) on the plain-HTTP revocation listener:
//! `GET /ocsp/<url-encoded base64 of the DER request>` and `POST /ocsp` with
//! `Content-Type: application/ocsp-request`.
//!
//! Invariants:
//! - Every OCSP answer, including malformedRequest, unauthorized and tryLater, is HTTP 200
//!   with `application/ocsp-response` (RFC 6960 App. A.2): that is what OCSP clients, OpenSSL
//!   included, read. A status-only answer carries `Cache-Control: no-store` (a tryLater must
//!   not be kept). HTTP errors are for what is not an OCSP exchange at all: a body over
//!   [`MAX_REQUEST_BYTES`] (413, without reading it), a POST of another media type (415).
//! - A signed answer carries the RFC 5019 §6.2 caching headers: `Cache-Control: max-age`
//!   up to its nextUpdate, `Last-Modified` (producedAt), `Expires` (nextUpdate) and a strong
//!   `ETag`; `If-None-Match` with that tag gets 304.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sceau_acme::Acme;
use sceau_acme::ocsp::Reply;
use sceau_acme::ocsp::request::{MAX_REQUEST_BYTES, decode_get};
use sceau_acme::ocsp::response::Unsigned;

const OCSP_RESPONSE: &str = "application/ocsp-response";
const OCSP_REQUEST: &str = "application/ocsp-request";

/// The OCSP routes, merged into the revocation listener's router.
pub fn routes() -> Router<Arc<Acme>> {
    Router::new()
        .route("/ocsp", post(post_request).get(get_request))
        .route("/ocsp/", post(post_request).get(get_request))
        .route("/ocsp/{*request}", get(get_request))
}

async fn get_request(State(acme): State<Arc<Acme>>, req: Request) -> Response {
    // The raw path, not axum's decoded parameter: `decode_get` percent-decodes it once, and
    // a base64 `/` may come escaped or not.
    let path = req.uri().path();
    let encoded = path.strip_prefix("/ocsp/").unwrap_or_default();
    let reply = match decode_get(encoded) {
        Ok(der) => acme.ocsp.answer(&acme, &der).await,
        Err(e) => {
            tracing::debug!(error = %e, "OCSP GET refused");
            Reply::Unsigned(Unsigned::MalformedRequest)
        }
    };
    respond(reply, req.headers())
}

async fn post_request(State(acme): State<Arc<Acme>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let media = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if media.as_deref() != Some(OCSP_REQUEST) {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an OCSP POST has Content-Type: application/ocsp-request\n",
        );
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES as u64) {
        return too_large();
    }
    let der: Bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let reply = acme.ocsp.answer(&acme, &der).await;
    respond(reply, &parts.headers)
}

fn respond(reply: Reply, request_headers: &HeaderMap) -> Response {
    let a = match reply {
        Reply::Unsigned(status) => {
            let mut r = Response::new(Body::from(status.der()));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(OCSP_RESPONSE),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return r;
        }
        Reply::Signed(a) => a,
    };
    let now = sceau_store::now();
    let max_age = (a.next_update - now).max(0);
    let not_modified = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let mut r = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(a.der.clone()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OCSP_RESPONSE),
        );
        r
    };
    let h = r.headers_mut();
    let mut put = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put(
        header::CACHE_CONTROL,
        format!("max-age={max_age}, public, no-transform, must-revalidate"),
    );
    put(header::ETAG, a.etag.clone());
    put(header::LAST_MODIFIED, a.last_modified.clone());
    put(header::EXPIRES, a.expires.clone());
    r
}

fn too_large() -> Response {
    let mut r = http_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "an OCSP request has at most 4096 octets\n",
    );
    // The body was not read: the connection cannot be reused (see http.rs).
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn http_error(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(
            sceau_acme::ocsp::http_date(1445412480),
            "Wed, 21 Oct 2015 07:28:00 GMT"
        );
    }
}
