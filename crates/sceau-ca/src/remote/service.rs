//! The signing service's side of the protocol: over its own stdin/stdout (the child `serve`
//! starts), or on a Unix socket for front ends that run as other OS users (agency guide
//! R31–R34: the front end and the signer are separate processes under separate users).
//!
//! Invariants:
//! - On the socket, a peer is authenticated by the kernel (`SO_PEERCRED`) before one byte it
//!   sends is read: a uid outside the allowed list gets a one-line refusal and is closed.
//! - Each connection is one session, as each child is: its CA (or upstream) is opened anew,
//!   so a front end that reconnects (its SIGHUP) sees a rotated or imported CA.
//! - A request line longer than [`MAX_LINE`] ends the session: even an allowed peer cannot
//!   make the signer hold unbounded input. Connections are capped at [`MAX_SESSIONS`].

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};

use super::{Hello, Outcome, Request, Response, ServerTlsFn, answer_with};
use crate::Signer;

/// The longest request line a service reads (a CSR and a CRL's entries fit many times over).
pub const MAX_LINE: usize = 8 << 20;

/// Sessions a socket service holds at once (front-end instances, each one connection).
pub const MAX_SESSIONS: usize = 64;

/// The first line of a service that cannot open its CA, or that refuses its peer: the front
/// end reports it as its own one-line refusal.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StartError {
    pub(super) error: String,
}

fn start_error_line(why: &str) -> String {
    let mut line = serde_json::to_string(&StartError {
        error: why.to_owned(),
    })
    .expect("json");
    line.push('\n');
    line
}

/// Says on stdout why the service cannot start (the child side; the caller then exits).
pub fn refuse_to_start(why: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(start_error_line(why).as_bytes());
    let _ = out.flush();
}

/// One line of at most `max` bytes, without its newline; `None` at the end of input.
pub(super) async fn next_line(
    input: &mut (impl AsyncBufRead + Unpin),
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *input)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line longer than {max} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a line not in UTF-8"))
}

/// Runs the service for `signer` on stdin/stdout until stdin closes (see [`serve_signer`]).
pub async fn serve_signer_stdio(
    signer: Arc<dyn Signer>,
    server_tls: Option<ServerTlsFn>,
    hello: &Hello,
) -> std::io::Result<()> {
    serve_signer(
        tokio::io::stdin(),
        tokio::io::stdout(),
        signer,
        server_tls,
        hello,
    )
    .await
}

/// Runs one session for `signer` until its input closes, answering requests concurrently (an
/// upstream CA may take minutes over one): answers carry the request's id and may come in any
/// order.
pub async fn serve_signer(
    input: impl AsyncRead + Unpin,
    mut out: impl AsyncWrite + Unpin + Send + 'static,
    signer: Arc<dyn Signer>,
    server_tls: Option<ServerTlsFn>,
    hello: &Hello,
) -> std::io::Result<()> {
    let server_tls = server_tls.map(Arc::new);
    // The hello goes first, before any answer.
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
    let mut input = tokio::io::BufReader::new(input);
    let read = loop {
        let line = match next_line(&mut input, MAX_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
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
    };
    drop(tx);
    let written = writer.await.map_err(std::io::Error::other)?;
    read.and(written)
}

/// One session of an authenticated peer (`who`, for the log): opens the signer and serves
/// it, or tells the peer in one line why it cannot.
pub async fn serve_session(
    input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin + Send + 'static,
    open: &OpenSession,
    who: &str,
) {
    tracing::info!(peer = who, "signing session opened");
    match open().await {
        Ok((signer, server_tls, hello)) => {
            if let Err(e) = serve_signer(input, output, signer, server_tls, &hello).await {
                tracing::warn!(peer = who, error = %e, "signing session ended");
            }
        }
        Err(why) => {
            tracing::error!(reason = %why, "signing session: cannot open the signer");
            let _ = output.write_all(start_error_line(&why).as_bytes()).await;
            let _ = output.shutdown().await;
        }
    }
    tracing::info!(peer = who, "signing session closed");
}

/// What a socket session runs on: the signer, its TLS-certificate maker, its hello; or the
/// one-line reason it cannot open.
pub type Session = (Arc<dyn Signer>, Option<ServerTlsFn>, Hello);

/// Opens a session's signer (the CA read anew, see the module invariants).
pub type OpenSession = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Session, String>> + Send>>
        + Send
        + Sync,
>;

/// Whether a (stale) socket is at `path`; an error if something else is there, which
/// [`bind_socket`] would refuse to replace: callers check before they create anything.
pub fn check_socket_path(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(true),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Binds the service's Unix socket at `path`: a stale socket left by a killed service is
/// replaced, any other file there is refused. The socket is reachable by every local user
/// (mode 0666): the kernel's peer credentials, not the file mode, say who may sign.
pub fn bind_socket(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if check_socket_path(path)? {
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Serves sessions on `listener` for peers whose uid is in `allowed_uids`, for ever.
pub async fn serve_signer_socket(
    listener: tokio::net::UnixListener,
    allowed_uids: Vec<u32>,
    open: OpenSession,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, typically: wait rather than spin.
                tracing::error!(error = %e, "signing socket: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "signing socket: no peer credentials; closed");
                continue;
            }
        };
        let (uid, pid) = (peer.uid(), peer.pid());
        if !allowed_uids.contains(&uid) {
            tracing::warn!(uid, pid = ?pid, "signing socket: refused a peer whose uid is not allowed");
            let why = format!("the signing service does not serve uid {uid} (signer_allowed_uids)");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    stream.write_all(start_error_line(&why).as_bytes()),
                )
                .await;
            });
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(uid, "signing socket: too many sessions; closed");
            continue;
        };
        let open = open.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (input, output) = stream.into_split();
            let who = format!("uid {uid} (pid {pid:?})");
            serve_session(input, output, &open, &who).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::next_line;

    #[tokio::test]
    async fn lines_are_read_up_to_their_cap_and_no_further() {
        let mut input = tokio::io::BufReader::new(&b"short\n0123456789abc\nlast"[..]);
        assert_eq!(
            next_line(&mut input, 10).await.unwrap().as_deref(),
            Some("short")
        );
        // Longer than the cap: refused, not buffered whole.
        let err = next_line(&mut input, 10).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);

        let mut input = tokio::io::BufReader::new(&b"last"[..]);
        assert_eq!(
            next_line(&mut input, 10).await.unwrap().as_deref(),
            Some("last")
        );
        assert_eq!(next_line(&mut input, 10).await.unwrap(), None);

        let mut input = tokio::io::BufReader::new(&b"\xff\xfe\n"[..]);
        assert!(next_line(&mut input, 10).await.is_err(), "not UTF-8");
    }
}
