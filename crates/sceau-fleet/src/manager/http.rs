//! The agents' HTTPS listener: client certificates required, identity by fingerprint.
//!
//! Invariants (hostile clients are normal): at most [`MAX_CONNECTIONS`] connections and
//! `max_connections_per_address` (default [`MAX_PER_ADDRESS`]) from one address, the TLS
//! handshake within [`HANDSHAKE`], request headers within [`HEADERS`], a whole request within
//! [`REQUEST`], bodies of at most [`MAX_BODY`]. Every refusal is a JSON [`ApiError`] with a
//! status that says whether retrying can help, and changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sceau_store::StoreError;
use sceau_store::fleet::{AgentRecord, FleetAudit, Replace};
use tokio::net::TcpListener;

use super::Manager;
use crate::api::{AgentInfo, ApiError, CertStatus, EnrolRequest, Installed, SubmitCsr};
use crate::error::Result;

pub const MAX_CONNECTIONS: usize = 1024;
/// Connections from one address by default: a machine needs one or two; a flood from one host
/// must not take the slots of the others. Agents behind one NAT need more.
pub const MAX_PER_ADDRESS: usize = 64;
pub const HANDSHAKE: Duration = Duration::from_secs(10);
pub const HEADERS: Duration = Duration::from_secs(10);
pub const REQUEST: Duration = Duration::from_secs(30);
pub const MAX_BODY: usize = 64 * 1024;
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

/// One connection counted against its address; released when dropped.
struct PerAddress {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(
        map: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<PerAddress> {
        let mut m = map.lock().expect("not poisoned");
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerAddress {
            map: map.clone(),
            ip,
        })
    }
}

impl Drop for PerAddress {
    fn drop(&mut self) {
        let mut m = self.map.lock().expect("not poisoned");
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The fingerprint of the connection's client certificate.
#[derive(Clone)]
struct Peer(String);

/// A refusal at the HTTP edge.
pub struct Refusal {
    status: StatusCode,
    kind: &'static str,
    detail: String,
}

impl Refusal {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            status,
            kind,
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Refusal::new(StatusCode::NOT_FOUND, "notFound", "not found"),
            StoreError::Unavailable { .. } => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the manager's storage is unavailable; try again later",
            ),
            e => {
                tracing::error!("storage: {e}");
                Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the manager failed; see its log",
                )
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ApiError {
                kind: self.kind.to_owned(),
                detail: self.detail,
            }),
        )
            .into_response()
    }
}

type Answer<T> = std::result::Result<T, Refusal>;

fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/v1/enrol", post(enrol))
        .route("/v1/agent", get(agent_info))
        .route("/v1/certs/{name}", get(cert_status).put(submit))
        .route("/v1/certs/{name}/chain", get(chain))
        .route("/v1/certs/{name}/installed", post(installed))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(deadline))
        .with_state(manager)
}

/// A request (body included) that takes longer than [`REQUEST`] is answered 408.
async fn deadline(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST, next.run(req)).await {
        Ok(r) => r,
        Err(_) => Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    }
}

/// Accepts connections until the listener fails.
pub async fn serve(
    manager: Arc<Manager>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let per_address_max = manager.config.max_connections_per_address;
    let app = router(manager.clone());
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: wait instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            manager
                .counters
                .refused_requests
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(per_address) = PerAddress::take(&per_ip, addr.ip(), per_address_max) else {
            manager
                .counters
                .refused_requests
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = (slot, per_address);
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await else {
                tracing::debug!("{addr}: TLS handshake failed or timed out");
                return;
            };
            let Some(fp) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| crate::tls::fingerprint(c.as_ref()))
            else {
                return;
            };
            let service = app.layer(Extension(Peer(fp)));
            let service = hyper_util::service::TowerToHyperService::new(service.map_request(
                |r: http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            ));
            let io = hyper_util::rt::TokioIo::new(tls);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADERS)
                .max_buf_size(MAX_BODY)
                .serve_connection(io, service);
            // A kept-alive connection is cut after CONNECTION_LIFETIME; the agent reconnects.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}

use tower::ServiceExt as _;

fn info(a: &AgentRecord) -> AgentInfo {
    AgentInfo {
        name: a.name.clone(),
        status: a.status.clone(),
        allowed: a.allowed.clone(),
    }
}

/// The agent behind this connection, if it is enrolled and not revoked.
async fn agent(m: &Manager, peer: &Peer) -> Answer<AgentRecord> {
    let a = match m.store.agent_by_fingerprint(&peer.0).await {
        Ok(a) => a,
        Err(StoreError::NotFound) => {
            m.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unknownAgent",
                "this client certificate is not enrolled; run `sceau agent enrol` with a token from the operator",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if a.status != "active" {
        m.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
        let when = a
            .revoked_at
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "revokedAgent",
            format!(
                "the agent {} was revoked {when}; the operator must invite it again",
                a.name
            ),
        ));
    }
    m.store.seen(&a.name).await?;
    Ok(a)
}

async fn enrol(
    State(m): State<Arc<Manager>>,
    Extension(peer): Extension<Peer>,
    Json(req): Json<EnrolRequest>,
) -> Answer<Json<AgentInfo>> {
    if let Ok(existing) = m.store.agent_by_fingerprint(&peer.0).await {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "alreadyEnrolled",
            format!(
                "this client certificate is already the agent {}'s",
                existing.name
            ),
        ));
    }
    match m
        .store
        .enrol(&super::admin::token_hash(&req.token), &peer.0)
        .await
    {
        Ok(a) => {
            tracing::info!(agent = a.name, "agent enrolled");
            Ok(Json(info(&a)))
        }
        Err(StoreError::NotFound) => {
            m.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
            m.store
                .audit(
                    &FleetAudit::new("unknown", "enrolment.refused").detail(
                        serde_json::json!({ "fingerprint": peer.0, "reason": "bad token" }),
                    ),
                )
                .await?;
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "badToken",
                "the enrolment token is unknown, used or expired; ask the operator for a new one",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn agent_info(
    State(m): State<Arc<Manager>>,
    Extension(peer): Extension<Peer>,
) -> Answer<Json<AgentInfo>> {
    Ok(Json(info(&agent(&m, &peer).await?)))
}

fn check_cert_name(name: &str) -> Answer<()> {
    sceau_client::state::check_name(name)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "badName", e.to_string()))
}

/// Where a certificate stands, as the agent sees it.
pub async fn cert_view(m: &Manager, agent: &str, cert_name: &str) -> Answer<CertStatus> {
    let c = match m.store.cert(agent, cert_name).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "unknownCertificate",
                format!("no certificate {cert_name} for this agent yet; send a CSR"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let current = match &c.serial {
        Some(s) => Some(m.store.archived(s).await?),
        None => None,
    };
    Ok(CertStatus {
        cert_name: c.cert_name.clone(),
        names: c.names.clone(),
        csr_wanted: matches!(c.state.as_str(), "due" | "failed"),
        state: c.state,
        serial: c.serial,
        not_after: current.as_ref().map(|a| a.not_after),
        picked_up: current.as_ref().is_some_and(|a| a.picked_up_at.is_some()),
        error: c.last_error,
    })
}

async fn cert_status(
    State(m): State<Arc<Manager>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
) -> Answer<Json<CertStatus>> {
    check_cert_name(&name)?;
    let a = agent(&m, &peer).await?;
    Ok(Json(cert_view(&m, &a.name, &name).await?))
}

async fn submit(
    State(m): State<Arc<Manager>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    Json(req): Json<SubmitCsr>,
) -> Answer<(StatusCode, Json<CertStatus>)> {
    check_cert_name(&name)?;
    let a = agent(&m, &peer).await?;
    let bad = |d: String| Refusal::new(StatusCode::BAD_REQUEST, "badCSR", d);
    let der =
        sceau_wire::b64::decode(&req.csr).map_err(|_| bad("the CSR is not base64url".into()))?;
    let (der, identifiers) =
        sceau_client::csr::read_csr(&der).map_err(|e| bad(format!("the CSR: {e}")))?;
    if identifiers.is_empty() {
        return Err(bad("the CSR names nothing".into()));
    }
    let mut names = Vec::new();
    for id in &identifiers {
        let n = crate::names::normalise(&id.value).filter(|_| id.is_dns());
        match n {
            Some(n) if crate::names::allowed(&a.allowed, &n) => {
                if !names.contains(&n) {
                    names.push(n)
                }
            }
            _ => {
                m.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
                m.store
                    .audit(
                        &FleetAudit::new(&a.name, "csr.refused")
                            .about(&a.name, Some(&name))
                            .detail(
                                serde_json::json!({ "name": id.value, "reason": "not allowed" }),
                            ),
                    )
                    .await?;
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "forbiddenName",
                    format!(
                        "the agent {} may not have a certificate for {}; the operator allows: {}",
                        a.name,
                        id.value,
                        a.allowed.join(", ")
                    ),
                ));
            }
        }
    }
    names.sort();
    let spki = spki_sha256(&der).map_err(bad)?;
    let replace = if req.replace {
        Replace::Always
    } else {
        Replace::WhenDue
    };
    let audit = FleetAudit::new(&a.name, "csr.submitted")
        .about(&a.name, Some(&name))
        .detail(serde_json::json!({ "names": names, "spki_sha256": spki, "replace": req.replace }));
    match m
        .store
        .submit_csr(
            &a.name,
            &name,
            &names,
            &sceau_wire::b64::encode(&der),
            &spki,
            replace,
            &audit,
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(why)) if why == "key reused" => {
            m.counters.refused_requests.fetch_add(1, Ordering::Relaxed);
            m.store
                .audit(
                    &FleetAudit::new(&a.name, "csr.refused")
                        .about(&a.name, Some(&name))
                        .detail(serde_json::json!({ "spki_sha256": spki, "reason": "key reused" })),
                )
                .await?;
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "reusedKey",
                "this key was submitted before; every certificate needs a fresh key (R66)",
            ));
        }
        Err(StoreError::Conflict(state)) => {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "notDue",
                format!(
                    "the certificate {name} is {state}: a new CSR is taken when renewal is due (or ask for a replacement)"
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    m.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(cert_view(&m, &a.name, &name).await?),
    ))
}

/// SHA-256 (hex) of a CSR's SubjectPublicKeyInfo.
pub fn spki_sha256(csr_der: &[u8]) -> std::result::Result<String, String> {
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|e| format!("the CSR does not parse: {e}"))?;
    Ok(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        csr.certification_request_info.subject_pki.raw,
    )))
}

async fn chain(
    State(m): State<Arc<Manager>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
) -> Answer<Response> {
    check_cert_name(&name)?;
    let a = agent(&m, &peer).await?;
    let view = cert_view(&m, &a.name, &name).await?;
    let Some(serial) = view.serial else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "notIssued",
            format!("the certificate {name} has not been issued yet"),
        ));
    };
    let archived = m.store.archived(&serial).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        archived.chain_pem,
    )
        .into_response())
}

async fn installed(
    State(m): State<Arc<Manager>>,
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    Json(req): Json<Installed>,
) -> Answer<StatusCode> {
    check_cert_name(&name)?;
    let a = agent(&m, &peer).await?;
    match m.store.picked_up(&a.name, &req.serial).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "unknownSerial",
            format!("no certificate {} of this agent in the archive", req.serial),
        )),
        Err(e) => Err(e.into()),
    }
}
