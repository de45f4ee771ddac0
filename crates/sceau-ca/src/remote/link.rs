//! The front end's side: [`RemoteSigner`], a [`Signer`] that forwards every operation to the
//! signing service (its child over pipes, or a service of another OS user over a Unix socket)
//! and supervises it (see the invariants of [`super`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sceau_wire::b64;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::service::{MAX_LINE, StartError, next_line};
use super::{Hello, IssueOp, Op, Outcome, Request, Response, SignCrlOp, ts};
use crate::{
    CaError, CrlRequest, IssueFuture, IssueRequest, Issued, IssuerInfo, SignFuture, Signer,
};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;
type Input = Box<dyn AsyncWrite + Send + Unpin>;
type Output = tokio::io::BufReader<Box<dyn AsyncRead + Send + Unpin>>;

/// One running session: its input, the calls waiting for an answer.
struct Link {
    input: tokio::sync::Mutex<Input>,
    pending: Pending,
}

/// Makes the command that starts the service (called again for every restart).
pub type CommandMaker = Box<dyn Fn() -> tokio::process::Command + Send + Sync>;

/// How the front end reaches its signing service.
pub enum Connector {
    /// Starts it as a child, over its stdin/stdout (the embedded default).
    Spawn(CommandMaker),
    /// Connects to a service that runs on its own, as another OS user, at this Unix socket;
    /// the kernel's peer credentials must show `uid`, or the front end refuses it (a socket
    /// squatted by another local user gets no CSR and hands back no certificate).
    Socket { path: PathBuf, uid: u32 },
    /// Opens a stream some other way (mutual TLS to a signer on another host): the dialer
    /// authenticates the service before it returns.
    Dial(DialFn),
}

/// A session's two halves.
pub type Stream = (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
);

/// Opens an authenticated stream to the service (called again for every restart).
pub type DialFn = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Stream, CaError>> + Send>>
        + Send
        + Sync,
>;

/// What keeps a session alive: the child, or nothing more than the stream itself.
enum Session {
    Child(tokio::process::Child),
    Stream,
}

impl Session {
    fn stop(&mut self) {
        if let Session::Child(child) = self {
            let _ = child.start_kill();
        }
    }

    async fn wait(&mut self) -> String {
        match self {
            Session::Child(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => e.to_string(),
            },
            Session::Stream => "the connection closed".into(),
        }
    }
}

/// The front end's handle on the signing service: a [`Signer`] that forwards over the pipes
/// or the socket, and starts the session again when it stops (see the module invariants).
pub struct RemoteSigner {
    connector: Connector,
    hello: std::sync::RwLock<Hello>,
    link: std::sync::RwLock<Option<Arc<Link>>>,
    up: AtomicBool,
    next: AtomicU64,
    restart: Arc<tokio::sync::Notify>,
}

fn io_err(e: std::io::Error) -> CaError {
    CaError::Unavailable(format!("signing service: {e}"))
}

/// Opens a session: starts the child or connects and checks the peer.
async fn connect(connector: &Connector) -> Result<(Input, Output, Session), CaError> {
    match connector {
        Connector::Spawn(make) => {
            let mut command = make();
            command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true);
            let mut child = command.spawn().map_err(io_err)?;
            let input: Input = Box::new(child.stdin.take().expect("piped stdin"));
            let output: Box<dyn AsyncRead + Send + Unpin> =
                Box::new(child.stdout.take().expect("piped stdout"));
            Ok((
                input,
                tokio::io::BufReader::new(output),
                Session::Child(child),
            ))
        }
        Connector::Socket { path, uid } => {
            let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                CaError::Unavailable(format!(
                    "cannot reach the signing service at {}: {e}",
                    path.display()
                ))
            })?;
            let peer = stream.peer_cred().map_err(io_err)?;
            if peer.uid() != *uid {
                return Err(CaError::Refused(format!(
                    "the signing service at {} runs as uid {}, not signer_uid {uid}: refused",
                    path.display(),
                    peer.uid()
                )));
            }
            let (read, write) = stream.into_split();
            let output: Box<dyn AsyncRead + Send + Unpin> = Box::new(read);
            Ok((
                Box::new(write),
                tokio::io::BufReader::new(output),
                Session::Stream,
            ))
        }
        Connector::Dial(dial) => {
            let (read, write) = dial().await?;
            Ok((write, tokio::io::BufReader::new(read), Session::Stream))
        }
    }
}

/// Opens a session and waits for its hello; `Err` with what it said if it stopped first.
async fn start(connector: &Connector) -> Result<(Hello, Arc<Link>, Session, Output), CaError> {
    let (input, mut output, mut session) = connect(connector).await?;
    let first = next_line(&mut output, MAX_LINE).await.map_err(io_err)?;
    let Some(first) = first else {
        let status = session.wait().await;
        return Err(CaError::Signing(format!(
            "the signing service stopped before it was ready ({status})"
        )));
    };
    let hello: Hello = match serde_json::from_str(&first) {
        Ok(h) => h,
        Err(e) => {
            session.stop();
            let _ = session.wait().await;
            return Err(match serde_json::from_str::<StartError>(&first) {
                // The service's own one-line reason (a delegated CA awaiting `ca import`, a
                // staging mismatch, a missing file, a peer it does not serve): the front end's
                // refusal to start.
                Ok(s) => CaError::Refused(s.error),
                Err(_) => CaError::Signing(format!("signing service hello: {e}")),
            });
        }
    };
    let link = Arc::new(Link {
        input: tokio::sync::Mutex::new(input),
        pending: Arc::default(),
    });
    Ok((hello, link, session, output))
}

impl RemoteSigner {
    /// Opens the first session and waits for its hello; then supervises it.
    pub async fn spawn(connector: Connector) -> Result<Arc<RemoteSigner>, CaError> {
        let (hello, link, session, output) = start(&connector).await?;
        let me = Arc::new(RemoteSigner {
            connector,
            hello: std::sync::RwLock::new(hello),
            link: std::sync::RwLock::new(Some(link.clone())),
            up: AtomicBool::new(true),
            next: AtomicU64::new(1),
            restart: Arc::new(tokio::sync::Notify::new()),
        });
        tokio::spawn(Self::supervise(
            Arc::downgrade(&me),
            link,
            session,
            output,
            me.restart.clone(),
        ));
        Ok(me)
    }

    /// Reads answers until the session stops, then opens another, for as long as the signer
    /// itself lives.
    async fn supervise(
        me: std::sync::Weak<RemoteSigner>,
        mut link: Arc<Link>,
        mut session: Session,
        mut output: Output,
        restart: Arc<tokio::sync::Notify>,
    ) {
        loop {
            let mut requested = false;
            loop {
                let line = tokio::select! {
                    line = next_line(&mut output, MAX_LINE) => line,
                    () = restart.notified() => {
                        // The answers still in flight are lost with it: their callers see
                        // `Unavailable`, as for any stop.
                        requested = true;
                        match session {
                            Session::Child(_) => { session.stop(); continue; }
                            // Our end closes with the link, once the callers holding it let go.
                            Session::Stream => break,
                        }
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
            let status = session.wait().await;
            let Some(signer) = me.upgrade() else { return };
            signer.up.store(false, Ordering::Release);
            *signer.link.write().expect("link lock") = None;
            // Whoever waits learns now; their sender is dropped.
            link.pending.lock().expect("pending lock").clear();
            if requested {
                tracing::info!("restarting the signing service, as asked");
            } else {
                tracing::error!(status = %status, "the signing service stopped; restarting it (signing requests wait meanwhile)");
            }
            drop(signer);
            let mut delay = Duration::from_millis(100);
            loop {
                tokio::time::sleep(delay).await;
                let Some(signer) = me.upgrade() else { return };
                match start(&signer.connector).await {
                    Ok((hello, new_link, new_session, new_output)) => {
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
                        session = new_session;
                        output = new_output;
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
        Outcome::Pending {
            ticket,
            after_secs,
            detail,
        } => CaError::Pending {
            ticket,
            after: std::time::Duration::from_secs(after_secs),
            detail,
        },
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

    fn check_eab_mac<'a>(
        &'a self,
        kid: &'a str,
        signing_input: Vec<u8>,
        mac: Vec<u8>,
    ) -> SignFuture<'a, Option<bool>> {
        Box::pin(async move {
            match self
                .call(Op::EabMac {
                    kid: kid.to_owned(),
                    input: b64::encode(signing_input),
                    mac: b64::encode(mac),
                })
                .await?
            {
                Outcome::Mac(answer) => Ok(answer),
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
