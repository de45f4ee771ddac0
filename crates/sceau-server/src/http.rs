//! The HTTP edge: maps paths to services, reads bodies within limits, and renders replies and
//! RFC 7807 problems with the headers every ACME response carries (RFC 8555 §6.5 Replay-Nonce,
//! §7.1 Link rel="index", §6.6 Retry-After).
//!
//! Invariants:
//! - This module makes no protocol decision; every POST goes to `Acme::post`, which verifies it
//!   before anything else.
//! - A request body is read only within its limits: a `Content-Length` above
//!   `AcmeConfig::max_body_bytes` is refused (413) before any of it is read, and the body must
//!   arrive within [`BodyLimits::timeout`] and, after its first second, at no less than
//!   [`BodyLimits::min_rate`] bytes per second, or the request ends with a 408. Every answer
//!   given before the whole body was read closes the connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, Method, StatusCode, header};
use sceau_acme::{Acme, AcmeError, Body, Endpoint, Reply};
use sceau_wire::media;

/// The peer address of the connection, inserted by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// How request bodies must arrive (issue 10: a slow or stalled body must not hold a
/// connection); the size limit is `AcmeConfig::max_body_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The whole body, from the end of the headers.
    pub timeout: Duration,
    /// Bytes per second, counted from the end of the headers once the first second is over;
    /// 0 for no minimum.
    pub min_rate: u64,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum BodyLimitError {
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
}

impl BodyLimits {
    /// Grace before the minimum rate applies: a client's first bytes may wait for a round trip
    /// (`Expect: 100-continue`) or a slow start.
    pub const GRACE: Duration = Duration::from_secs(1);

    pub fn from_config(c: &crate::config::Config) -> Result<BodyLimits, BodyLimitError> {
        if c.body_timeout_secs == 0 {
            return Err(BodyLimitError::Zero("body-timeout-secs"));
        }
        if c.max_body_bytes == 0 {
            return Err(BodyLimitError::Zero("max-body-bytes"));
        }
        Ok(BodyLimits {
            timeout: Duration::from_secs(c.body_timeout_secs),
            min_rate: c.min_body_rate,
        })
    }

    /// When the next body byte must have arrived, `received` bytes after `start`.
    fn deadline(&self, start: tokio::time::Instant, received: usize) -> tokio::time::Instant {
        let whole = start + self.timeout;
        if self.min_rate == 0 {
            return whole;
        }
        // received >= min_rate * (elapsed - GRACE) holds until this moment.
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        whole.min(start + Self::GRACE + earned)
    }
}

pub fn router(acme: Arc<Acme>, body_limits: BodyLimits) -> Router {
    Router::new()
        .route("/directory", get(directory))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/acme/new-nonce", get(new_nonce).head(new_nonce))
        .route("/acme/cert/{id}", get(get_cert).post(acme_post))
        // RFC 8739 §3.3, §3.4: GET and HEAD where unauthenticated GET was agreed, POST-as-GET always.
        .route("/acme/star/{id}", get(get_star_cert).post(acme_post))
        .route(
            "/acme/cert/{id}/alt/{n}",
            get(get_cert_alternate).post(acme_post),
        )
        .route("/acme/renewal-info/{id}", get(renewal_info))
        .route("/acme/{*rest}", post(acme_post).get(use_post))
        .fallback(not_found)
        .layer(Extension(body_limits))
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
    acme.metrics.problem(err.kind.name());
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
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Liveness: the process answers.
pub(crate) async fn livez() -> Response {
    (StatusCode::OK, "live\n").into_response()
}

/// Readiness: certificates can be issued now — the signing service runs and the database
/// answers. Otherwise 503 with Retry-After and what is missing, one line each.
pub(crate) async fn readyz(State(acme): State<Arc<Acme>>) -> Response {
    let mut missing = Vec::new();
    if !acme.signer.available() {
        missing.push("signing: the signing service is not running (it is being restarted)");
    }
    if acme.store.ping().await.is_err() {
        missing.push("storage: the database does not answer");
    }
    let mut r = if missing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned()).into_response()
    } else {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, missing.join("\n") + "\n").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        r
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
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
async fn new_nonce(
    State(acme): State<Arc<Acme>>,
    client: Option<axum::Extension<ClientAddr>>,
    method: Method,
) -> Response {
    if let Err(e) = acme.limits.nonce(client.map(|c| c.0.0.ip())) {
        // Refused: no nonce in this answer either, or the limit would limit nothing.
        let mut r = problem_response(&acme, &e);
        r.headers_mut().remove("replay-nonce");
        return r;
    }
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
    match acme.get_certificate(&id, 0).await {
        Ok(reply) => reply_response(&acme, reply, false),
        Err(e) => problem_response(&acme, &e),
    }
}

/// A STAR order's rolling certificate without authentication (RFC 8739 §3.4); axum answers
/// HEAD from this handler too, without the body.
async fn get_star_cert(State(acme): State<Arc<Acme>>, Path(id): Path<String>) -> Response {
    match acme.star_certificate(&id, None).await {
        Ok(reply) => reply_response(&acme, reply, false),
        Err(e) => problem_response(&acme, &e),
    }
}

/// An alternate chain of a certificate (RFC 8555 §7.4.2), public like the certificate.
async fn get_cert_alternate(
    State(acme): State<Arc<Acme>>,
    Path((id, n)): Path<(String, String)>,
) -> Response {
    let Some(n) = alternate_index(&n) else {
        return problem_response(&acme, &AcmeError::not_found("certificate chain"));
    };
    match acme.get_certificate(&id, n).await {
        Ok(reply) => reply_response(&acme, reply, false),
        Err(e) => problem_response(&acme, &e),
    }
}

/// The `n` of `/acme/cert/{id}/alt/{n}`: a decimal number from 1, written without a sign or
/// leading zeros, so that each chain has one URL.
fn alternate_index(text: &str) -> Option<usize> {
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| *n >= 1)
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
        ["star", o] => Endpoint::StarCert(id(o)?),
        ["cert", c, "alt", n] => Endpoint::CertAlternate(id(c)?, alternate_index(n)?),
        _ => return None,
    })
}

async fn acme_post(
    State(acme): State<Arc<Acme>>,
    Extension(body_limits): Extension<BodyLimits>,
    req: Request,
) -> Response {
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
    if !media::is_jose_json(content_type) {
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
    let too_large = || {
        let err = AcmeError::malformed(format!("request body larger than {limit} bytes"))
            .with_status(413);
        closing(problem_response(&acme, &err))
    };
    // Refused on its announced length: waiting for a body that will be refused anyway would
    // let a client hold the connection with a huge Content-Length and a trickle of bytes.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body = match read_body(req.into_body(), limit, body_limits).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(),
        Err(e) => {
            let err = AcmeError::malformed(e.to_string()).with_status(match e {
                BodyError::Broken => 400,
                _ => 408,
            });
            return closing(problem_response(&acme, &err));
        }
    };
    let url = acme.urls.path(&path_and_query);
    match acme.post(endpoint, &url, &body, client.as_deref()).await {
        Ok(reply) => reply_response(&acme, reply, true),
        Err(e) => {
            // The type only: a detail may quote the request (a JWS, an EAB binding).
            tracing::debug!(
                url,
                problem = e.kind.name(),
                status = e.http_status(),
                "request refused"
            );
            problem_response(&acme, &e)
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body too large")]
    TooLarge,
    #[error("request body not received within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("request body arrived slower than {0} bytes per second")]
    TooSlow(u64),
    #[error("request body could not be read")]
    Broken,
}

/// Reads a body of at most `max` bytes within `limits`.
async fn read_body(
    mut body: AxumBody,
    max: usize,
    limits: BodyLimits,
) -> Result<Vec<u8>, BodyError> {
    use hyper::body::Body as _;
    let start = tokio::time::Instant::now();
    let mut buf = Vec::new();
    loop {
        let deadline = limits.deadline(start, buf.len());
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout_at(deadline, next).await {
            Err(_) if deadline < start + limits.timeout => {
                return Err(BodyError::TooSlow(limits.min_rate));
            }
            Err(_) => return Err(BodyError::Timeout(limits.timeout)),
            Ok(None) => return Ok(buf),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
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
            req.extensions_mut()
                .insert(sceau_console::Peer(peer.ip().to_canonical()));
            req.map(AxumBody::new)
        },
    )
}

type Request<B = AxumBody> = http::Request<B>;
