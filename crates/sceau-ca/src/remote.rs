//! The signing service in its own process, so that the process parsing untrusted input (the
//! HTTP front end) never holds a CA private key in its memory.
//!
//! Protocol: one JSON object per line. The service first writes a [`Hello`]; then each
//! request `{"id", "op", …}` gets exactly one response `{"id", "ok"}` or `{"id", "err"}`, in
//! any order. The service exits when its input closes, so it never outlives its front end,
//! even one killed with SIGKILL.
//!
//! Invariant: the service re-checks every request through [`FileCa::sign`], which refuses
//! anything outside the certificate profile whatever the front end believed.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sceau_wire::{Identifier, b64};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::{CaError, FileCa, IssueFuture, IssueRequest, Issued, Profile, Signer};

/// What the service says once its CA is open.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub root_pem: String,
    pub issuer_chain_pem: String,
    pub root_fingerprint_sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Issue {
        spki: String,
        identifiers: Vec<Identifier>,
        not_before: i64,
        not_after: i64,
        profile: String,
    },
    ServerTls {
        names: Vec<String>,
    },
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
        serial_hex: String,
        not_before: i64,
        not_after: i64,
        ari_id: String,
    },
    ServerTls {
        chain_pem: String,
        key_pem: String,
    },
    InvalidRequest(String),
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

fn answer(ca: &FileCa, dir: &Path, op: Op) -> Outcome {
    let result = match op {
        Op::Issue {
            spki,
            identifiers,
            not_before,
            not_after,
            profile,
        } => (|| {
            let req = IssueRequest {
                public_key_spki_der: b64::decode(&spki)
                    .map_err(|_| CaError::InvalidRequest("spki".into()))?,
                identifiers,
                not_before: ts(not_before)?,
                not_after: ts(not_after)?,
                profile: Profile::from_name(&profile)
                    .ok_or_else(|| CaError::InvalidRequest(format!("profile {profile}")))?,
            };
            let i = ca.sign(&req)?;
            Ok(Outcome::Issued {
                der: b64::encode(&i.der),
                chain_pem: i.chain_pem,
                serial_hex: i.serial_hex,
                not_before: i.not_before.unix_timestamp(),
                not_after: i.not_after.unix_timestamp(),
                ari_id: i.ari_id,
            })
        })(),
        Op::ServerTls { names } => ca
            .server_tls(dir, &names)
            .map(|(chain_pem, key_pem)| Outcome::ServerTls { chain_pem, key_pem }),
    };
    match result {
        Ok(o) => o,
        Err(CaError::InvalidRequest(m)) => Outcome::InvalidRequest(m),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Runs the service on stdin/stdout until stdin closes (the child side).
pub fn serve_stdio(ca: &FileCa, dir: &Path) -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let hello = Hello {
        root_pem: ca.root_pem(),
        issuer_chain_pem: ca.issuer_chain_pem(),
        root_fingerprint_sha256: ca.root_fingerprint_sha256(),
    };
    writeln!(out, "{}", serde_json::to_string(&hello).expect("json"))?;
    out.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(req) => Response {
                id: req.id,
                outcome: answer(ca, dir, req.op),
            },
            // A front end that sends garbage is broken; say so and keep serving.
            Err(e) => Response {
                id: 0,
                outcome: Outcome::Failed(format!("bad request: {e}")),
            },
        };
        writeln!(out, "{}", serde_json::to_string(&response).expect("json"))?;
        out.flush()?;
    }
    Ok(())
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

/// The front end's handle on the signing service: a [`Signer`] that forwards over the pipes.
pub struct RemoteSigner {
    hello: Hello,
    input: tokio::sync::Mutex<tokio::process::ChildStdin>,
    pending: Pending,
    next: AtomicU64,
    _child: tokio::process::Child,
}

impl RemoteSigner {
    /// Starts `command` (the service) and waits for its hello.
    pub async fn spawn(mut command: tokio::process::Command) -> Result<RemoteSigner, CaError> {
        let io_err = |e: std::io::Error| CaError::Signing(format!("signing service: {e}"));
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(io_err)?;
        let input = child.stdin.take().expect("piped stdin");
        let mut lines =
            tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next_line().await.map_err(io_err)?;
        let Some(first) = first else {
            let status = child.wait().await.map_err(io_err)?;
            return Err(CaError::Signing(format!(
                "the signing service stopped before it was ready ({status})"
            )));
        };
        let hello: Hello = serde_json::from_str(&first)
            .map_err(|e| CaError::Signing(format!("signing service hello: {e}")))?;
        let pending: Pending = Arc::default();
        let readers = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Response>(&line) {
                    Ok(r) => {
                        if let Some(tx) = readers.lock().expect("pending lock").remove(&r.id) {
                            let _ = tx.send(r.outcome);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable answer from the signing service")
                    }
                }
            }
            // The service is gone: fail whoever waits; later calls fail at write time.
            tracing::error!("the signing service stopped");
            readers.lock().expect("pending lock").clear();
        });
        Ok(RemoteSigner {
            hello,
            input: tokio::sync::Mutex::new(input),
            pending,
            next: AtomicU64::new(1),
            _child: child,
        })
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    async fn call(&self, op: Op) -> Result<Outcome, CaError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let mut line = serde_json::to_string(&Request { id, op }).expect("json");
        line.push('\n');
        let sent = {
            let mut input = self.input.lock().await;
            match input.write_all(line.as_bytes()).await {
                Ok(()) => input.flush().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            self.pending.lock().expect("pending lock").remove(&id);
            return Err(CaError::Signing(format!(
                "signing service unreachable: {e}"
            )));
        }
        rx.await
            .map_err(|_| CaError::Signing("the signing service stopped".into()))
    }

    /// The server's own TLS certificate and key (see [`FileCa::server_tls`]).
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
}

fn outcome_error(o: Outcome) -> CaError {
    match o {
        Outcome::InvalidRequest(m) => CaError::InvalidRequest(m),
        Outcome::Failed(m) => CaError::Signing(m),
        _ => CaError::Signing("unexpected answer from the signing service".into()),
    }
}

impl Signer for RemoteSigner {
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a> {
        Box::pin(async move {
            let op = Op::Issue {
                spki: b64::encode(&req.public_key_spki_der),
                identifiers: req.identifiers,
                not_before: req.not_before.unix_timestamp(),
                not_after: req.not_after.unix_timestamp(),
                profile: req.profile.name().to_owned(),
            };
            match self.call(op).await? {
                Outcome::Issued {
                    der,
                    chain_pem,
                    serial_hex,
                    not_before,
                    not_after,
                    ari_id,
                } => Ok(Issued {
                    der: b64::decode(&der).map_err(|_| {
                        CaError::Signing("bad certificate from the signing service".into())
                    })?,
                    chain_pem,
                    serial_hex,
                    not_before: ts(not_before)?,
                    not_after: ts(not_after)?,
                    ari_id,
                }),
                other => Err(outcome_error(other)),
            }
        })
    }

    fn issuer_chain_pem(&self) -> String {
        self.hello.issuer_chain_pem.clone()
    }

    fn root_pem(&self) -> String {
        self.hello.root_pem.clone()
    }
}
