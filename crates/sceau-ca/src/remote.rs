//! The signing service in its own process, so that the process parsing untrusted input (the
//! HTTP front end) never holds a CA private key in its memory, and the one place a PKCS#11
//! token is opened.
//!
//! Protocol: one JSON object per line. The service first writes a [`Hello`]; then each
//! request `{"id", "op", …}` gets exactly one response `{"id", "outcome"}`. The service exits
//! when its input closes, so it never outlives its front end, even one killed with SIGKILL.
//!
//! Invariants:
//! - The service re-checks every request through [`Ca`], which refuses anything outside the
//!   certificate profile whatever the front end believed.
//! - [`RemoteSigner`] supervises the service: when it dies (killed, crashed, its token gone),
//!   the calls in flight fail with [`CaError::Unavailable`], it is reaped (no zombie) and
//!   started again with a growing delay, and calls made meanwhile fail at once with
//!   `Unavailable`, which callers treat as "retry later". [`RemoteSigner::available`] says
//!   whether it is up, for readiness.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sceau_wire::{Identifier, b64};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

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
    Revoke { cert: String, reason: u8 },
    ServerTls { names: Vec<String> },
    SignCrl(SignCrlOp),
    OcspResponder { issuer_id: String },
    SignOcsp { issuer_id: String, tbs: String },
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
    Done,
    InvalidRequest(String),
    Upstream(String),
    Gate(String),
    Unavailable(String),
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

/// Runs the service for `signer` on stdin/stdout until stdin closes, answering requests
/// concurrently (an upstream CA may take minutes over one): answers carry the request's id and
/// may come in any order.
pub async fn serve_signer_stdio(
    signer: Arc<dyn Signer>,
    server_tls: Option<ServerTlsFn>,
    hello: &Hello,
) -> std::io::Result<()> {
    let server_tls = server_tls.map(Arc::new);
    // The hello goes first, before any answer.
    let mut out = tokio::io::stdout();
    let mut first = serde_json::to_string(hello).expect("json");
    first.push('\n');
    out.write_all(first.as_bytes()).await?;
    out.flush().await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Response>();
    let writer = tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let mut line = serde_json::to_string(&r).expect("json");
            line.push('\n');
            out.write_all(line.as_bytes()).await?;
            out.flush().await?;
        }
        std::io::Result::Ok(())
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let tx = tx.clone();
        let signer = signer.clone();
        let server_tls = server_tls.clone();
        tokio::spawn(async move {
            let response = match serde_json::from_str::<Request>(&line) {
                Ok(req) => Response {
                    id: req.id,
                    outcome: answer_with(signer.as_ref(), server_tls.as_deref(), req.op).await,
                },
                Err(e) => Response {
                    id: 0,
                    outcome: Outcome::Failed(format!("bad request: {e}")),
                },
            };
            let _ = tx.send(response);
        });
    }
    drop(tx);
    writer.await.map_err(std::io::Error::other)?
}

/// The first line of a service that cannot open its CA: the front end reports it as its own
/// one-line refusal to start.
#[derive(Debug, Serialize, Deserialize)]
struct StartError {
    error: String,
}

/// Says on stdout why the service cannot start (the child side; the caller then exits).
pub fn refuse_to_start(why: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(&StartError {
            error: why.to_owned()
        })
        .expect("json")
    );
    let _ = out.flush();
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

/// One running service: its input, the calls waiting for an answer.
struct Link {
    input: tokio::sync::Mutex<tokio::process::ChildStdin>,
    pending: Pending,
}

/// Makes the command that starts the service (called again for every restart).
pub type CommandMaker = Box<dyn Fn() -> tokio::process::Command + Send + Sync>;

/// The front end's handle on the signing service: a [`Signer`] that forwards over the pipes,
/// and restarts the service when it stops (see the module invariants).
pub struct RemoteSigner {
    make: CommandMaker,
    hello: std::sync::RwLock<Hello>,
    link: std::sync::RwLock<Option<Arc<Link>>>,
    up: AtomicBool,
    next: AtomicU64,
    restart: Arc<tokio::sync::Notify>,
}

fn io_err(e: std::io::Error) -> CaError {
    CaError::Unavailable(format!("signing service: {e}"))
}

/// Starts the service and waits for its hello; `Err` with what it said if it stopped first.
async fn start(
    make: &CommandMaker,
) -> Result<
    (
        Hello,
        Arc<Link>,
        tokio::process::Child,
        tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    ),
    CaError,
> {
    let mut command = make();
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(io_err)?;
    let input = child.stdin.take().expect("piped stdin");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let first = lines.next_line().await.map_err(io_err)?;
    let Some(first) = first else {
        let status = child.wait().await.map_err(io_err)?;
        return Err(CaError::Signing(format!(
            "the signing service stopped before it was ready ({status})"
        )));
    };
    let hello: Hello = match serde_json::from_str(&first) {
        Ok(h) => h,
        Err(e) => {
            let _ = child.wait().await;
            return Err(match serde_json::from_str::<StartError>(&first) {
                // The service's own one-line reason (a delegated CA awaiting `ca import`, a
                // staging mismatch, a missing file): the front end's refusal to start.
                Ok(s) => CaError::Refused(s.error),
                Err(_) => CaError::Signing(format!("signing service hello: {e}")),
            });
        }
    };
    let link = Arc::new(Link {
        input: tokio::sync::Mutex::new(input),
        pending: Arc::default(),
    });
    Ok((hello, link, child, lines))
}

impl RemoteSigner {
    /// Starts the service with `make()` and waits for its hello; then supervises it.
    pub async fn spawn(make: CommandMaker) -> Result<Arc<RemoteSigner>, CaError> {
        let (hello, link, child, lines) = start(&make).await?;
        let me = Arc::new(RemoteSigner {
            make,
            hello: std::sync::RwLock::new(hello),
            link: std::sync::RwLock::new(Some(link.clone())),
            up: AtomicBool::new(true),
            next: AtomicU64::new(1),
            restart: Arc::new(tokio::sync::Notify::new()),
        });
        tokio::spawn(Self::supervise(
            Arc::downgrade(&me),
            link,
            child,
            lines,
            me.restart.clone(),
        ));
        Ok(me)
    }

    /// Reads answers until the service stops, then restarts it, for as long as the signer
    /// itself lives.
    async fn supervise(
        me: std::sync::Weak<RemoteSigner>,
        mut link: Arc<Link>,
        mut child: tokio::process::Child,
        mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
        restart: Arc<tokio::sync::Notify>,
    ) {
        loop {
            let mut requested = false;
            loop {
                let line = tokio::select! {
                    line = lines.next_line() => line,
                    () = restart.notified() => {
                        // The answers still in flight are lost with it: their callers see
                        // `Unavailable`, as for any stop.
                        let _ = child.start_kill();
                        requested = true;
                        continue;
                    }
                };
                let Ok(Some(line)) = line else { break };
                match serde_json::from_str::<Response>(&line) {
                    Ok(r) => {
                        if let Some(tx) = link.pending.lock().expect("pending lock").remove(&r.id) {
                            let _ = tx.send(r.outcome);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable answer from the signing service")
                    }
                }
            }
            let status = child.wait().await;
            let Some(signer) = me.upgrade() else { return };
            signer.up.store(false, Ordering::Release);
            *signer.link.write().expect("link lock") = None;
            // Whoever waits learns now; their sender is dropped.
            link.pending.lock().expect("pending lock").clear();
            if requested {
                tracing::info!("restarting the signing service, as asked");
            } else {
                tracing::error!(status = ?status, "the signing service stopped; restarting it (signing requests wait meanwhile)");
            }
            drop(signer);
            let mut delay = Duration::from_millis(100);
            loop {
                tokio::time::sleep(delay).await;
                let Some(signer) = me.upgrade() else { return };
                match start(&signer.make).await {
                    Ok((hello, new_link, new_child, new_lines)) => {
                        if hello.root_fingerprint_sha256
                            != signer
                                .hello
                                .read()
                                .expect("hello lock")
                                .root_fingerprint_sha256
                        {
                            tracing::warn!("the restarted signing service has another root CA");
                        }
                        *signer.hello.write().expect("hello lock") = hello;
                        *signer.link.write().expect("link lock") = Some(new_link.clone());
                        signer.up.store(true, Ordering::Release);
                        tracing::info!("the signing service is back");
                        link = new_link;
                        child = new_child;
                        lines = new_lines;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, retry_in = ?delay, "the signing service does not start");
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Stops the running service; the supervisor starts it again (it reads the CA anew).
    pub fn restart(&self) {
        self.restart.notify_one();
    }

    pub fn hello(&self) -> Hello {
        self.hello.read().expect("hello lock").clone()
    }

    /// Whether the service is running (readiness).
    pub fn available(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    async fn call(&self, op: Op) -> Result<Outcome, CaError> {
        let Some(link) = self.link.read().expect("link lock").clone() else {
            return Err(CaError::Unavailable(
                "the signing service is restarting".into(),
            ));
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending.lock().expect("pending lock").insert(id, tx);
        let mut line = serde_json::to_string(&Request { id, op }).expect("json");
        line.push('\n');
        let sent = {
            let mut input = link.input.lock().await;
            match input.write_all(line.as_bytes()).await {
                Ok(()) => input.flush().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            link.pending.lock().expect("pending lock").remove(&id);
            return Err(CaError::Unavailable(format!(
                "signing service unreachable: {e}"
            )));
        }
        match rx.await {
            Ok(Outcome::Unavailable(m)) => Err(CaError::Unavailable(m)),
            Ok(o) => Ok(o),
            Err(_) => Err(CaError::Unavailable(
                "the signing service stopped while answering".into(),
            )),
        }
    }

    /// The server's own TLS certificate and key (see [`Ca::server_tls`]).
    pub async fn server_tls(&self, names: &[String]) -> Result<(String, String), CaError> {
        match self
            .call(Op::ServerTls {
                names: names.to_vec(),
            })
            .await?
        {
            Outcome::ServerTls { chain_pem, key_pem } => Ok((chain_pem, key_pem)),
            other => Err(outcome_error(other)),
        }
    }

    async fn bytes(&self, op: Op) -> Result<Vec<u8>, CaError> {
        match self.call(op).await? {
            Outcome::Bytes(b) => b64::decode(&b)
                .map_err(|_| CaError::Signing("bad answer from the signing service".into())),
            other => Err(outcome_error(other)),
        }
    }
}

fn outcome_error(o: Outcome) -> CaError {
    match o {
        Outcome::InvalidRequest(m) => CaError::InvalidRequest(m),
        Outcome::Unavailable(m) => CaError::Unavailable(m),
        Outcome::Upstream(m) => CaError::Upstream(m),
        Outcome::Gate(m) => CaError::Gate(m),
        Outcome::Failed(m) => CaError::Signing(m),
        _ => CaError::Signing("unexpected answer from the signing service".into()),
    }
}

impl Signer for RemoteSigner {
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a> {
        Box::pin(async move {
            let op = Op::Issue(IssueOp::of(req));
            match self.call(op).await? {
                Outcome::Issued {
                    der,
                    chain_pem,
                    alternate_chains,
                    serial_hex,
                    not_before,
                    not_after,
                    ari_id,
                    issuer_id,
                } => Ok(Issued {
                    der: b64::decode(&der).map_err(|_| {
                        CaError::Signing("bad certificate from the signing service".into())
                    })?,
                    chain_pem,
                    alternate_chains,
                    serial_hex,
                    not_before: ts(not_before)?,
                    not_after: ts(not_after)?,
                    ari_id,
                    issuer_id,
                }),
                other => Err(outcome_error(other)),
            }
        })
    }

    fn sign_crl<'a>(&'a self, req: CrlRequest) -> SignFuture<'a, Vec<u8>> {
        Box::pin(async move { self.bytes(Op::SignCrl(SignCrlOp::of(req))).await })
    }

    fn ocsp_responder<'a>(&'a self, issuer_id: &'a str) -> SignFuture<'a, Vec<u8>> {
        Box::pin(self.bytes(Op::OcspResponder {
            issuer_id: issuer_id.to_owned(),
        }))
    }

    fn sign_ocsp<'a>(&'a self, issuer_id: &'a str, tbs_der: Vec<u8>) -> SignFuture<'a, Vec<u8>> {
        Box::pin(self.bytes(Op::SignOcsp {
            issuer_id: issuer_id.to_owned(),
            tbs: b64::encode(tbs_der),
        }))
    }

    fn issuers(&self) -> Vec<IssuerInfo> {
        self.hello().issuers
    }

    fn upstream(&self) -> bool {
        self.hello.read().expect("hello lock").upstream
    }

    fn revoke<'a>(&'a self, req: crate::RevokeRequest) -> SignFuture<'a, ()> {
        Box::pin(async move {
            match self
                .call(Op::Revoke {
                    cert: b64::encode(&req.cert_der),
                    reason: req.reason,
                })
                .await?
            {
                Outcome::Done => Ok(()),
                other => Err(outcome_error(other)),
            }
        })
    }

    fn available(&self) -> bool {
        RemoteSigner::available(self)
    }

    fn issuer_chain_pem(&self) -> String {
        self.hello().issuer_chain_pem
    }

    fn root_pem(&self) -> String {
        self.hello().root_pem
    }
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
