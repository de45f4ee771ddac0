//! The HTTP edge: maps paths to services, reads bodies within limits, and renders replies and
//! RFC 7807 problems with the headers every ACME response carries (RFC 8555 §6.5 Replay-Nonce,
//! §7.1 Link rel="index", §6.6 Retry-After).
//!
//! Invariant: this module makes no protocol decision; every POST goes to `Acme::post`, which
//! verifies it before anything else.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, Method, StatusCode, header};
use sceau_acme::{Acme, AcmeError, Body, Endpoint, Reply};
use sceau_wire::media;

/// The peer address of the connection, inserted by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

pub fn router(acme: Arc<Acme>) -> Router {
    Router::new()
        .route("/directory", get(directory))
        .route("/acme/new-nonce", get(new_nonce).head(new_nonce))
        .route("/acme/cert/{id}", get(get_cert).post(acme_post))
        .route("/acme/renewal-info/{id}", get(renewal_info))
        .route("/acme/{*rest}", post(acme_post).get(use_post))
        .fallback(not_found)
        .with_state(acme)
}

fn nonce_header(acme: &Acme) -> HeaderValue {
    HeaderValue::from_str(&acme.nonces.issue()).expect("nonces are base64url")
}

fn index_link(acme: &Acme) -> HeaderValue {
    HeaderValue::from_str(&format!("<{}>;rel=\"index\"", acme.urls.directory()))
        .expect("URL is ASCII")
}

/// A response sent without reading the whole request body: the connection cannot carry another
/// request, so the client is told (RFC 9112 §9.6) instead of finding a closed connection when it
/// reuses it for its next request.
fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn problem_response(acme: &Acme, err: &AcmeError) -> Response {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::to_vec(&err.problem()).expect("problem serialises");
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::PROBLEM_JSON),
    );
    h.insert("replay-nonce", nonce_header(acme));
    h.insert(header::LINK, index_link(acme));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = err.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(loc) = &err.location
        && let Ok(v) = HeaderValue::from_str(loc)
    {
        h.insert(header::LOCATION, v);
    }
    resp
}

fn reply_response(acme: &Acme, reply: Reply, with_nonce: bool) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut resp = match reply.body {
        Body::Json(v) => {
            let mut r = (status, serde_json::to_vec(&v).expect("json")).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Body::PemChain(pem) => {
            let mut r = (status, pem).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(media::PEM_CHAIN),
            );
            r
        }
        Body::Empty => status.into_response(),
    };
    let h = resp.headers_mut();
    if with_nonce {
        h.insert("replay-nonce", nonce_header(acme));
    }
    h.append(header::LINK, index_link(acme));
    for (url, rel) in reply.links {
        if let Ok(v) = HeaderValue::from_str(&format!("<{url}>;rel=\"{rel}\"")) {
            h.append(header::LINK, v);
        }
    }
    if let Some(loc) = reply.location
        && let Ok(v) = HeaderValue::from_str(&loc)
    {
        h.insert(header::LOCATION, v);
    }
    if let Some(secs) = reply.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn directory(State(acme): State<Arc<Acme>>) -> Response {
    let mut r = axum::Json(acme.directory()).into_response();
    // The directory is static; clients may cache it briefly.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    r
}

/// RFC 8555 §7.2: HEAD answers 200, GET 204, both with a fresh nonce and no caching.
async fn new_nonce(State(acme): State<Arc<Acme>>, method: Method) -> Response {
    let status = if method == Method::HEAD {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert("replay-nonce", nonce_header(&acme));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::LINK, index_link(&acme));
    r
}

async fn get_cert(State(acme): State<Arc<Acme>>, Path(id): Path<String>) -> Response {
    match acme.get_certificate(&id).await {
        Ok(reply) => reply_response(&acme, reply, false),
        Err(e) => problem_response(&acme, &e),
    }
}

async fn renewal_info(State(acme): State<Arc<Acme>>, Path(id): Path<String>) -> Response {
    match acme.renewal_info(&id).await {
        Ok(reply) => reply_response(&acme, reply, false),
        Err(e) => problem_response(&acme, &e),
    }
}

async fn use_post(State(acme): State<Arc<Acme>>) -> Response {
    let err = AcmeError::malformed("ACME resources are fetched with POST-as-GET (RFC 8555 §6.3)")
        .with_status(405);
    let mut r = problem_response(&acme, &err);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn not_found(State(acme): State<Arc<Acme>>) -> Response {
    problem_response(&acme, &AcmeError::not_found("resource"))
}

fn endpoint(path: &str) -> Option<Endpoint> {
    let parts: Vec<&str> = path.trim_start_matches("/acme/").split('/').collect();
    let id = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Some(match parts.as_slice() {
        ["new-account"] => Endpoint::NewAccount,
        ["new-order"] => Endpoint::NewOrder,
        ["revoke-cert"] => Endpoint::Revoke,
        ["key-change"] => Endpoint::KeyChange,
        ["acct", a] => Endpoint::Account(id(a)?),
        ["acct", a, "orders"] => Endpoint::Orders(id(a)?),
        ["order", o] => Endpoint::Order(id(o)?),
        ["order", o, "finalize"] => Endpoint::Finalize(id(o)?),
        ["authz", a] => Endpoint::Authz(id(a)?),
        ["chall", c] => Endpoint::Challenge(id(c)?),
        ["cert", c] => Endpoint::Cert(id(c)?),
        _ => return None,
    })
}

async fn acme_post(State(acme): State<Arc<Acme>>, req: Request) -> Response {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some(endpoint) = endpoint(req.uri().path()) else {
        return problem_response(&acme, &AcmeError::not_found("resource"));
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with(media::JOSE_JSON) {
        let err = AcmeError::malformed(format!(
            "Content-Type must be {} (RFC 8555 §6.2)",
            media::JOSE_JSON
        ))
        .with_status(415);
        return closing(problem_response(&acme, &err));
    }
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip().to_string());
    let limit = acme.config.max_body_bytes;
    let body = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b,
        Err(_) => {
            let err = AcmeError::malformed(format!("request body larger than {limit} bytes"))
                .with_status(413);
            return closing(problem_response(&acme, &err));
        }
    };
    let url = acme.urls.path(&path_and_query);
    match acme.post(endpoint, &url, &body, client.as_deref()).await {
        Ok(reply) => reply_response(&acme, reply, true),
        Err(e) => {
            tracing::debug!(url, problem = %e, "request refused");
            problem_response(&acme, &e)
        }
    }
}

/// Wraps the router for one connection, tagging requests with the peer address.
pub fn with_client_addr(
    router: Router,
    peer: SocketAddr,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    tower::ServiceExt::map_request(
        router,
        move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            req.map(AxumBody::new)
        },
    )
}

type Request<B = AxumBody> = http::Request<B>;
