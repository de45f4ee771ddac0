//! The signing service in its own process, so that the process parsing untrusted input (the
//! HTTP front end) never holds a CA private key in its memory, and the one place a PKCS#11
//! token is opened. The service is `serve`'s child over pipes (the embedded default), or runs
//! on its own as another OS user behind a Unix socket ([`service`]); [`link`] is the front
//! end's side.
//!
//! Protocol: one JSON object per line. The service first writes a [`Hello`] (or a one-line
//! reason it cannot serve); then each request `{"id", "op", …}` gets exactly one response
//! `{"id", "outcome"}`. A child service exits when its input closes, so it never outlives its
//! front end, even one killed with SIGKILL; a socket session ends the same way.
//!
//! Invariants:
//! - The service re-checks every request through [`Ca`], which refuses anything outside the
//!   certificate profile whatever the front end believed.
//! - [`RemoteSigner`] supervises the service: when its session ends (the child killed or
//!   crashed, its token gone, the socket service restarted), the calls in flight fail with
//!   [`CaError::Unavailable`], a child is reaped (no zombie), and the session is opened again
//!   with a growing delay; calls made meanwhile fail at once with `Unavailable`, which callers
//!   treat as "retry later". [`RemoteSigner::available`] says whether it is up, for readiness.

mod link;
mod service;

pub use link::{CommandMaker, Connector, DialFn, RemoteSigner, Stream};
pub use service::{
    MAX_LINE, MAX_SESSIONS, OpenSession, Session, bind_socket, check_socket_path, refuse_to_start,
    serve_session, serve_signer, serve_signer_socket, serve_signer_stdio,
};

use sceau_wire::{Identifier, b64};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    Ca, CaError, CrlRequest, IssueFuture, IssueRequest, Issued, IssuerInfo, Profile, RevokedEntry,
    SignFuture, Signer, fingerprint_sha256,
};

/// What the service says once its CA is open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub root_pem: String,
    pub issuer_chain_pem: String,
    pub root_fingerprint_sha256: String,
    pub issuers: Vec<IssuerInfo>,
    pub staging: bool,
    /// An upstream CA signs (RA mode, see [`Signer::upstream`]); `root_pem` then holds the
    /// upstream roots that returned certificates must chain to.
    #[serde(default)]
    pub upstream: bool,
}

impl Hello {
    pub fn of(ca: &Ca) -> Hello {
        Hello {
            root_pem: ca.root_pem(),
            issuer_chain_pem: ca.issuer_chain_pem(),
            root_fingerprint_sha256: fingerprint_sha256(ca.root_der()),
            issuers: ca
                .issuers()
                .iter()
                .map(|i| IssuerInfo {
                    id: i.id.clone(),
                    active: i.state == crate::manifest::IssuerState::Active,
                    cert_der: i.cert_der.clone(),
                    chain_pem: i.chain_pem.clone(),
                    alternate_chains: i.alternate_chains.clone(),
                    not_after: i.not_after.unix_timestamp(),
                })
                .collect(),
            staging: ca.manifest().staging,
            upstream: false,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct WireRevoked {
    serial: String,
    revoked_at: i64,
    reason: Option<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Issue(IssueOp),
    Revoke {
        cert: String,
        reason: u8,
    },
    ServerTls {
        names: Vec<String>,
    },
    SignCrl(SignCrlOp),
    OcspResponder {
        issuer_id: String,
    },
    SignOcsp {
        issuer_id: String,
        tbs: String,
    },
    EabMac {
        kid: String,
        input: String,
        mac: String,
    },
}

/// [`CrlRequest`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct SignCrlOp {
    issuer_id: String,
    this_update: i64,
    next_update: i64,
    number: String,
    shard: Option<u32>,
    revoked: Vec<WireRevoked>,
}

impl SignCrlOp {
    fn of(req: CrlRequest) -> SignCrlOp {
        SignCrlOp {
            issuer_id: req.issuer_id,
            this_update: req.this_update.unix_timestamp(),
            next_update: req.next_update.unix_timestamp(),
            number: b64::encode(&req.number),
            shard: req.shard,
            revoked: req
                .revoked
                .into_iter()
                .map(|r| WireRevoked {
                    serial: b64::encode(&r.serial),
                    revoked_at: r.revoked_at.unix_timestamp(),
                    reason: r.reason,
                })
                .collect(),
        }
    }

    fn request(self) -> Result<CrlRequest, CaError> {
        Ok(CrlRequest {
            issuer_id: self.issuer_id,
            this_update: ts(self.this_update)?,
            next_update: ts(self.next_update)?,
            number: unb64("number", &self.number)?,
            shard: self.shard,
            revoked: self
                .revoked
                .into_iter()
                .map(|r| {
                    Ok(RevokedEntry {
                        serial: unb64("serial", &r.serial)?,
                        revoked_at: ts(r.revoked_at)?,
                        reason: r.reason,
                    })
                })
                .collect::<Result<_, CaError>>()?,
        })
    }
}

/// [`IssueRequest`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct IssueOp {
    spki: String,
    identifiers: Vec<Identifier>,
    not_before: i64,
    not_after: i64,
    profile: String,
    serial: Option<String>,
    crl_shard: Option<u32>,
    #[serde(default)]
    csr: Option<String>,
    #[serde(default)]
    gate: Option<crate::GateInfo>,
    #[serde(default)]
    resume: Option<String>,
}

impl IssueOp {
    fn of(req: IssueRequest) -> IssueOp {
        IssueOp {
            spki: b64::encode(&req.public_key_spki_der),
            identifiers: req.identifiers,
            not_before: req.not_before.unix_timestamp(),
            not_after: req.not_after.unix_timestamp(),
            profile: req.profile.name().to_owned(),
            serial: req.serial.as_deref().map(b64::encode),
            crl_shard: req.crl_shard,
            csr: req.csr_der.as_deref().map(b64::encode),
            gate: req.gate,
            resume: req.resume,
        }
    }

    fn request(self) -> Result<IssueRequest, CaError> {
        Ok(IssueRequest {
            public_key_spki_der: unb64("spki", &self.spki)?,
            identifiers: self.identifiers,
            not_before: ts(self.not_before)?,
            not_after: ts(self.not_after)?,
            profile: Profile::from_name(&self.profile)
                .ok_or_else(|| CaError::InvalidRequest(format!("profile {}", self.profile)))?,
            serial: self.serial.map(|s| unb64("serial", &s)).transpose()?,
            crl_shard: self.crl_shard,
            csr_der: self.csr.map(|c| unb64("csr", &c)).transpose()?,
            gate: self.gate,
            resume: self.resume,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: u64,
    #[serde(flatten)]
    op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Issued {
        der: String,
        chain_pem: String,
        alternate_chains: Vec<String>,
        serial_hex: String,
        not_before: i64,
        not_after: i64,
        ari_id: String,
        issuer_id: String,
    },
    ServerTls {
        chain_pem: String,
        key_pem: String,
    },
    Bytes(String),
    Mac(Option<bool>),
    Done,
    InvalidRequest(String),
    Upstream(String),
    Gate(String),
    Unavailable(String),
    Pending {
        ticket: String,
        after_secs: u64,
        detail: String,
    },
    Failed(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    id: u64,
    outcome: Outcome,
}

fn ts(secs: i64) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| CaError::InvalidRequest(format!("time: {e}")))
}

fn unb64(what: &str, s: &str) -> Result<Vec<u8>, CaError> {
    b64::decode(s).map_err(|_| CaError::InvalidRequest(format!("{what} is not base64url")))
}

fn issued_outcome(i: Issued) -> Outcome {
    Outcome::Issued {
        der: b64::encode(&i.der),
        chain_pem: i.chain_pem,
        alternate_chains: i.alternate_chains,
        serial_hex: i.serial_hex,
        not_before: i.not_before.unix_timestamp(),
        not_after: i.not_after.unix_timestamp(),
        ari_id: i.ari_id,
        issuer_id: i.issuer_id,
    }
}

fn error_outcome(e: CaError) -> Outcome {
    match e {
        CaError::InvalidRequest(m) => Outcome::InvalidRequest(m),
        CaError::Unavailable(m) => Outcome::Unavailable(m),
        CaError::Upstream(m) => Outcome::Upstream(m),
        CaError::Gate(m) => Outcome::Gate(m),
        CaError::Pending {
            ticket,
            after,
            detail,
        } => Outcome::Pending {
            ticket,
            after_secs: after.as_secs(),
            detail,
        },
        e => Outcome::Failed(e.to_string()),
    }
}

/// Makes the server's own TLS certificate and key for these names (a local CA's
/// [`Ca::server_tls`]); `None` in RA mode, which has no local CA.
pub type ServerTlsFn = Box<dyn Fn(&[String]) -> Result<(String, String), CaError> + Send + Sync>;

/// Answers one request with any [`Signer`] (a gated local CA, an upstream CA in RA mode).
async fn answer_with(signer: &dyn Signer, server_tls: Option<&ServerTlsFn>, op: Op) -> Outcome {
    let result = match op {
        Op::Issue(op) => match op.request() {
            Ok(req) => signer.issue(req).await.map(issued_outcome),
            Err(e) => Err(e),
        },
        Op::Revoke { cert, reason } => match unb64("cert", &cert) {
            Ok(cert_der) => signer
                .revoke(crate::RevokeRequest { cert_der, reason })
                .await
                .map(|()| Outcome::Done),
            Err(e) => Err(e),
        },
        Op::ServerTls { names } => match server_tls {
            Some(make) => make(&names).map(|(chain_pem, key_pem)| Outcome::ServerTls { chain_pem, key_pem }),
            None => Err(CaError::Refused(
                "no local CA signs here (registration-authority mode): the server's TLS certificate comes from the files in [ra]".into(),
            )),
        },
        Op::SignCrl(op) => match op.request() {
            Ok(req) => signer
                .sign_crl(req)
                .await
                .map(|der| Outcome::Bytes(b64::encode(der))),
            Err(e) => Err(e),
        },
        Op::EabMac { kid, input, mac } => match (unb64("input", &input), unb64("mac", &mac)) {
            (Ok(input), Ok(mac)) => signer
                .check_eab_mac(&kid, input, mac)
                .await
                .map(Outcome::Mac),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        Op::OcspResponder { issuer_id } => signer
            .ocsp_responder(&issuer_id)
            .await
            .map(|der| Outcome::Bytes(b64::encode(der))),
        Op::SignOcsp { issuer_id, tbs } => match unb64("tbs", &tbs) {
            Ok(tbs) => signer
                .sign_ocsp(&issuer_id, tbs)
                .await
                .map(|sig| Outcome::Bytes(b64::encode(sig))),
            Err(e) => Err(e),
        },
    };
    result.unwrap_or_else(error_outcome)
}

/// The CA in the same process is a signer too (tests and tools): the same operations, no pipes.
impl Signer for Ca {
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a> {
        // ECDSA signing takes microseconds and RSA a few milliseconds: not worth a thread.
        Box::pin(async move { self.sign(&req) })
    }

    fn sign_crl<'a>(&'a self, req: CrlRequest) -> SignFuture<'a, Vec<u8>> {
        Box::pin(async move { Ca::sign_crl(self, &req) })
    }

    fn ocsp_responder<'a>(&'a self, issuer_id: &'a str) -> SignFuture<'a, Vec<u8>> {
        Box::pin(async move { Ca::ocsp_responder(self, issuer_id) })
    }

    fn sign_ocsp<'a>(&'a self, issuer_id: &'a str, tbs_der: Vec<u8>) -> SignFuture<'a, Vec<u8>> {
        Box::pin(async move { Ca::sign_ocsp(self, issuer_id, &tbs_der) })
    }

    fn issuers(&self) -> Vec<IssuerInfo> {
        Hello::of(self).issuers
    }

    fn issuer_chain_pem(&self) -> String {
        Ca::issuer_chain_pem(self)
    }

    fn root_pem(&self) -> String {
        Ca::root_pem(self)
    }
}
