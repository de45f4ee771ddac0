//! A minimal static HTTP server for `/.well-known/acme-challenge/<token>`, standing in for the
//! web server that clients such as dehydrated and uacme write challenge files for.
//!
//! Invariants:
//! - It listens on 127.0.0.1 on a port the kernel chose and that it keeps for its whole life,
//!   so the ACME server under test can be told the port before any client runs.
//! - Only `GET /.well-known/acme-challenge/<token>` with a base64url token is served, from
//!   [`Webroot::dir`]; everything else is 404. Each request path is recorded, so a test can
//!   check that the server under test really fetched the challenge.
//! - Dropping it stops the accept loop.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// A running challenge-file server.
pub struct Webroot {
    pub addr: SocketAddr,
    dir: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Webroot {
    /// Serves the files of `dir` (created if missing) as challenge responses.
    pub fn start(dir: &Path) -> std::io::Result<Webroot> {
        std::fs::create_dir_all(dir)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, r, s) = (dir.to_path_buf(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (d, r) = (d.clone(), r.clone());
                // One thread per connection: validators may connect from several
                // perspectives at once.
                thread::spawn(move || serve(conn, &d, &r));
            }
        });
        Ok(Webroot {
            addr,
            dir: dir.to_path_buf(),
            requests,
            stop,
        })
    }

    /// The directory clients write challenge files into (dehydrated's WELLKNOWN).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Request paths received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Files currently in the challenge directory (clients should remove theirs afterwards).
    pub fn files(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Webroot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(mut conn: TcpStream, dir: &Path, requests: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers; the body of a GET is empty.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(path.to_owned());
    let body = (method == "GET")
        .then(|| path.strip_prefix(PREFIX))
        .flatten()
        .filter(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .and_then(|token| std::fs::read(dir.join(token)).ok());
    let response = match body {
        Some(body) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    let _ = conn.write_all(&response);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_challenge_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let w = Webroot::start(&dir.path().join("acme")).unwrap();
        std::fs::write(w.dir().join("tok-1_A"), "tok-1_A.thumb").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        let ok = get(w.addr, "/.well-known/acme-challenge/tok-1_A");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("\r\n\r\ntok-1_A.thumb"), "{ok}");
        for bad in [
            "/.well-known/acme-challenge/missing",
            "/.well-known/acme-challenge/../secret",
            "/.well-known/acme-challenge/",
            "/tok-1_A",
        ] {
            assert!(get(w.addr, bad).starts_with("HTTP/1.1 404"), "{bad}");
        }
        assert_eq!(w.requests().len(), 5);
        assert_eq!(w.files(), ["tok-1_A"]);
    }
}
