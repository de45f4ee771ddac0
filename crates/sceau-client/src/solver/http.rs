//! http-01 (RFC 8555 §8.3): a listener that serves key authorizations, and the webroot writer.
//!
//! Invariants: the listener answers only `GET /.well-known/acme-challenge/<token>` for tokens
//! it was given, 404 otherwise; the webroot writer only creates files under
//! `<webroot>/.well-known/acme-challenge/` (R61), named by tokens that are pure base64url (so
//! a hostile token cannot escape the directory), and removes them afterwards (R64).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Tokens are base64url (RFC 8555 §8.1); anything else is refused before it reaches a path.
pub fn check_token(token: &str) -> Result<()> {
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::Protocol {
            url: String::new(),
            status: 200,
            reason: format!("challenge token {token:?} is not base64url"),
        });
    }
    Ok(())
}

/// A running http-01 listener. Dropping it stops it.
pub struct Http01Listener {
    pub addr: SocketAddr,
    tokens: Arc<RwLock<HashMap<String, String>>>,
    task: JoinHandle<()>,
}

impl Drop for Http01Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Http01Listener {
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = bind_dual(addr).await.map_err(|e| {
            Error::Config(format!(
                "cannot listen on {addr} for http-01: {e} (ports below 1024 need root or CAP_NET_BIND_SERVICE; \
                 choose --http-port behind a redirect, or use --webroot)"
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("listener address"))?;
        let tokens: Arc<RwLock<HashMap<String, String>>> = Arc::default();
        let map = tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let map = map.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let map = map.clone();
                            async move { Ok::<_, Infallible>(answer(&map, &req)) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Http01Listener { addr, tokens, task })
    }

    pub fn add(&self, token: &str, key_authorization: &str) -> Result<()> {
        check_token(token)?;
        self.tokens
            .write()
            .expect("tokens")
            .insert(token.to_owned(), key_authorization.to_owned());
        Ok(())
    }

    pub fn remove(&self, token: &str) {
        self.tokens.write().expect("tokens").remove(token);
    }
}

fn answer(
    map: &RwLock<HashMap<String, String>>,
    req: &Request<hyper::body::Incoming>,
) -> Response<String> {
    let found = (req.method() == hyper::Method::GET)
        .then(|| req.uri().path().strip_prefix(CHALLENGE_PATH))
        .flatten()
        .and_then(|token| map.read().expect("tokens").get(token).cloned());
    match found {
        Some(ka) => {
            tracing::debug!(path = req.uri().path(), "http-01 request answered");
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(ka)
                .expect("static response")
        }
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(String::new())
            .expect("static response"),
    }
}

/// Binds `addr`; for the unspecified IPv6 address the socket also accepts IPv4 (Linux default).
pub(crate) async fn bind_dual(addr: SocketAddr) -> std::io::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port())))
                .await
                .map_err(|_| e)
        }
        other => other,
    }
}

/// A challenge file written under a webroot, removed by [`WebrootFile::remove`].
#[derive(Debug)]
pub struct WebrootFile {
    pub path: PathBuf,
    /// Directories this file made us create, deepest first, removed if empty afterwards.
    created_dirs: Vec<PathBuf>,
}

impl WebrootFile {
    pub fn write(webroot: &Path, token: &str, key_authorization: &str) -> Result<Self> {
        check_token(token)?;
        if !webroot.is_dir() {
            return Err(Error::Config(format!(
                "the webroot {} is not a directory",
                webroot.display()
            )));
        }
        let mut created_dirs = Vec::new();
        let mut dir = webroot.to_path_buf();
        for part in [".well-known", "acme-challenge"] {
            dir.push(part);
            if !dir.exists() {
                crate::files::ensure_dir(&dir, 0o755)?;
                created_dirs.insert(0, dir.clone());
            }
        }
        let path = dir.join(token);
        // World-readable: the web server, whatever its user, must serve it.
        crate::files::write_atomic(&path, key_authorization.as_bytes(), 0o644)?;
        Ok(WebrootFile { path, created_dirs })
    }

    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    context: format!("removing {}", self.path.display()),
                    source: e,
                });
            }
        }
        for d in &self.created_dirs {
            let _ = std::fs::remove_dir(d); // only succeeds when empty, which is what we want
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_tokens_are_refused() {
        for t in ["../x", "a/b", "", "a.b", "..", "tok en"] {
            assert!(check_token(t).is_err(), "{t}");
        }
        check_token("abc-DEF_123").unwrap();
        let d = tempfile::tempdir().unwrap();
        assert!(WebrootFile::write(d.path(), "../../etc", "x").is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn webroot_file_lifecycle() {
        let d = tempfile::tempdir().unwrap();
        let f = WebrootFile::write(d.path(), "tok", "tok.thumb").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join(".well-known/acme-challenge/tok")).unwrap(),
            "tok.thumb"
        );
        f.remove().unwrap();
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            0,
            "created directories are removed too"
        );
    }
}
