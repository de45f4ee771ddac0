//! The HTTPS listener under a hostile client (issue 10, "Connections"): connection limits per
//! client address and for the whole server, load shedding with `503` + `Retry-After`, and the
//! handshake, header, idle and body timeouts, against the real sceau-server binary.
//!
//! The hostile client is real: raw TCP and TLS sockets on loopback, thousands of them. Every
//! address of 127.0.0.0/8 is loopback on Linux, so binding a socket to 127.0.0.2 before
//! connecting gives a second client address. After each attack the database holds exactly what
//! it held before.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use sceau_store::Table;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const BYSTANDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Rows in every table, audit included: an attack leaves nothing in the database.
async fn all_rows(s: &Server) -> Vec<i64> {
    let mut tables = TABLES.to_vec();
    tables.push(Table::Audit);
    rows(&s.store().await, &tables).await
}

fn tls_connector(root_pem: &Path) -> TlsConnector {
    let mut cfg = tls_config(root_pem);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// A TCP connection to the server from source address `from`.
async fn tcp_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
}

/// A TLS connection from `from`, handshake done, within 10 s.
async fn tls_from(
    from: Ipv4Addr,
    port: u16,
    tls: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = tcp_from(from, port).await?;
        tls.connect(name, tcp).await
    })
    .await
    .map_err(|_| std::io::Error::other("TLS connect timed out"))?
}

/// Opens `n` TLS connections from `from` (64 handshakes at a time) and returns them, open and
/// idle; panics if any cannot be opened.
async fn hold(
    from: Ipv4Addr,
    port: u16,
    tls: &TlsConnector,
    n: usize,
) -> Vec<TlsStream<TcpStream>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (gate, tls) = (gate.clone(), tls.clone());
        tasks.spawn(async move {
            let _slot = gate.acquire_owned().await.unwrap();
            tls_from(from, port, &tls).await
        });
    }
    let mut held = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        held.push(r.unwrap().unwrap_or_else(|e| {
            panic!(
                "connection {} of {n} from {from} failed: {e}",
                held.len() + 1
            )
        }));
    }
    held
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads one HTTP/1.1 response (headers, then a `Content-Length` body). `None` when the
/// connection closes (or fails) before a whole response arrived.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Option<RawResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// Sends `GET path` and reads the answer within 10 s.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> Option<RawResponse> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    tokio::time::timeout(Duration::from_secs(10), async {
        s.write_all(req.as_bytes()).await.ok()?;
        s.flush().await.ok()?;
        read_response(s).await
    })
    .await
    .ok()
    .flatten()
}

/// How long the server keeps `s` open from now, reading and discarding what it sends; `None`
/// if it is still open after `limit`.
async fn time_to_close<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Writes `data` one chunk every `every` until the server closes the connection (a write or a
/// read fails, or a read sees the end) or `limit` passes. Returns what the server sent and when
/// it closed, or `None` if it was still open.
async fn trickle<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    chunks: &[&[u8]],
    every: Duration,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next = 0;
    while start.elapsed() < limit {
        if next < chunks.len() {
            let chunk = chunks[next];
            next += 1;
            if s.write_all(chunk).await.is_err() || s.flush().await.is_err() {
                return (received, Some(start.elapsed()));
            }
        }
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, Some(start.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    (received, None)
}

/// A reqwest client whose connections leave from `from`.
fn client_from(s: &Server, from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(&s.root_pem()))
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The bystander is served: the directory, then a fresh nonce.
async fn assert_served(s: &Server, from: Ipv4Addr) {
    let http = client_from(s, from);
    let r = http
        .get(s.directory_url())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("GET /directory from {from} while another address is at its limit: {e}")
        });
    assert_eq!(r.status(), 200, "GET /directory from {from}");
    let dir: Value = r.json().await.unwrap();
    let new_nonce = dir["newNonce"].as_str().unwrap();
    let r = http.head(new_nonce).send().await.unwrap();
    assert_eq!(r.status(), 200, "HEAD newNonce from {from}");
    assert!(
        r.headers().contains_key("replay-nonce"),
        "newNonce without a nonce"
    );
}

/// Within 5 s, a new connection from `from` gets its directory again (`still` says what a
/// refusal meanwhile means).
async fn served_again(s: &Server, tls: &TlsConnector, from: Ipv4Addr, still: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = tls_from(from, s.port, tls).await.unwrap();
        match get(&mut c, "/directory").await {
            Some(r) if r.status == 200 => return,
            other => assert!(Instant::now() < deadline, "{still}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shed answer: 503, Retry-After, a rateLimited problem naming `limit`, and the connection
/// is closed afterwards.
fn assert_shed(r: &RawResponse, limit: &str) {
    assert_eq!(r.status, 503, "over-limit answer: {r:?}");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("503 without a Retry-After in seconds: {r:?}"));
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("connection"), Some("close"));
    let problem = r.json();
    assert_eq!(problem["type"], "urn:ietf:params:acme:error:rateLimited");
    let detail = problem["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(limit),
        "detail {detail:?} should name {limit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_its_maximum_does_not_keep_others_out() {
    const PER_ADDRESS: usize = 1000;
    let s = Server::start(&[
        "--eab",
        "off",
        "--max-connections",
        "4000",
        "--max-connections-per-address",
        &PER_ADDRESS.to_string(),
    ]);
    let before = all_rows(&s).await;
    let tls = tls_connector(&s.root_pem());

    let mut held = hold(ATTACKER, s.port, &tls, PER_ADDRESS).await;
    // The held connections are real: one of them is served.
    let r = get(&mut held[0], "/directory")
        .await
        .expect("a held connection is served");
    assert_eq!(r.status, 200);

    // One more, sent on its own: a clear answer, then the connection is closed.
    let mut extra = tls_from(ATTACKER, s.port, &tls)
        .await
        .expect("an over-limit connection is answered over TLS");
    let r = get(&mut extra, "/directory")
        .await
        .expect("an over-limit connection gets an answer");
    assert_shed(&r, "address");
    assert!(
        time_to_close(&mut extra, Duration::from_secs(5))
            .await
            .is_some(),
        "an over-limit connection stays open after its 503"
    );

    // A flood of 2000 more at once, while the bystander asks for the directory and a nonce.
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..2000 {
        let tls = tls.clone();
        let port = s.port;
        flood.spawn(async move {
            let start = Instant::now();
            let Ok(mut c) = tls_from(ATTACKER, port, &tls).await else {
                return (None, start.elapsed());
            };
            (get(&mut c, "/directory").await, start.elapsed())
        });
    }
    assert_served(&s, BYSTANDER).await;
    let (mut answered, mut closed) = (0, 0);
    while let Some(r) = flood.join_next().await {
        let (r, took) = r.unwrap();
        assert!(
            took < Duration::from_secs(10),
            "an over-limit connection took {took:?}"
        );
        match r {
            Some(r) => {
                assert_shed(&r, "address");
                answered += 1;
            }
            None => closed += 1,
        }
    }
    assert!(
        answered > 0,
        "no over-limit connection got a 503 ({closed} closed)"
    );
    assert_served(&s, BYSTANDER).await;

    // Released connections are counted down: the attacker's address is served again.
    drop(held);
    served_again(
        &s,
        &tls,
        ATTACKER,
        "still refused after its connections closed",
    )
    .await;
    assert_eq!(all_rows(&s).await, before, "the database changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_wide_limit_sheds_new_connections_until_some_close() {
    let s = Server::start(&[
        "--eab",
        "off",
        "--max-connections",
        "600",
        "--max-connections-per-address",
        "400",
    ]);
    let before = all_rows(&s).await;
    let tls = tls_connector(&s.root_pem());
    let _first = hold(ATTACKER, s.port, &tls, 400).await;
    let second = hold(Ipv4Addr::new(127, 0, 0, 3), s.port, &tls, 200).await;

    let newcomer = Ipv4Addr::new(127, 0, 0, 4);
    let mut c = tls_from(newcomer, s.port, &tls).await.unwrap();
    let r = get(&mut c, "/directory")
        .await
        .expect("an answer over the server-wide limit");
    assert_shed(&r, "server");

    drop(second);
    served_again(
        &s,
        &tls,
        newcomer,
        "still shed after 200 connections closed",
    )
    .await;
    assert_eq!(all_rows(&s).await, before, "the database changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_completes_its_handshake_is_closed() {
    let s = Server::start(&["--eab", "off", "--handshake-timeout-secs", "1"]);
    let before = all_rows(&s).await;

    let opened = Instant::now();
    // No ClientHello at all.
    let mut silent = tcp_from(ATTACKER, s.port).await.unwrap();
    // The first 5 bytes of a TLS record announcing a ClientHello that never comes.
    let mut partial = tcp_from(ATTACKER, s.port).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();

    for (what, c) in [
        ("silent", &mut silent),
        ("partial ClientHello", &mut partial),
    ] {
        time_to_close(c, Duration::from_secs(4))
            .await
            .unwrap_or_else(|| panic!("{what} connection still open after 4 s"));
        let took = opened.elapsed();
        assert!(
            took >= Duration::from_millis(700),
            "{what} connection closed after {took:?}, before the 1 s handshake timeout"
        );
    }
    assert_served(&s, BYSTANDER).await;
    assert_eq!(all_rows(&s).await, before, "the database changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_headers_are_closed_after_the_header_timeout() {
    let s = Server::start(&["--eab", "off", "--header-timeout-secs", "2"]);
    let tls = tls_connector(&s.root_pem());

    // A request line, then one header byte every 300 ms, never finishing.
    let mut c = tls_from(ATTACKER, s.port, &tls).await.unwrap();
    let mut chunks: Vec<&[u8]> = vec![b"GET /directory HTTP/1.1\r\nHost: 127.0.0.1\r\n"];
    chunks.extend(std::iter::repeat_n(&b"X"[..], 100));
    let (_, closed) = trickle(
        &mut c,
        &chunks,
        Duration::from_millis(300),
        Duration::from_secs(8),
    )
    .await;
    let took = closed.expect("slow-loris connection still open after 8 s");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "slow-loris connection closed after {took:?}, header timeout 2 s"
    );

    // A connection that sends nothing after its handshake gets the same time for its headers.
    let mut quiet = tls_from(ATTACKER, s.port, &tls).await.unwrap();
    let took = time_to_close(&mut quiet, Duration::from_secs(6))
        .await
        .expect("a connection without a request still open after 6 s");
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
    assert_served(&s, BYSTANDER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let s = Server::start(&[
        "--eab",
        "off",
        "--idle-timeout-secs",
        "3",
        "--header-timeout-secs",
        "1",
    ]);
    let tls = tls_connector(&s.root_pem());
    let mut c = tls_from(ATTACKER, s.port, &tls).await.unwrap();
    assert_eq!(get(&mut c, "/directory").await.unwrap().status, 200);
    // Idle longer than the header timeout but within the idle timeout: still served.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = get(&mut c, "/directory")
        .await
        .expect("a keep-alive connection idle 2 s (idle timeout 3 s) was closed");
    assert_eq!(r.status, 200);
    let took = time_to_close(&mut c, Duration::from_secs(8))
        .await
        .expect("idle connection still open after 8 s");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(5),
        "idle connection closed after {took:?}, idle timeout 3 s"
    );

    // Once the next request has started, its headers get the header timeout, not the idle one.
    let mut c = tls_from(ATTACKER, s.port, &tls).await.unwrap();
    assert_eq!(get(&mut c, "/directory").await.unwrap().status, 200);
    let (_, closed) = trickle(
        &mut c,
        &[b"GET /directory HTTP/1.1\r\n"],
        Duration::from_millis(100),
        Duration::from_secs(6),
    )
    .await;
    let took = closed.expect("a half-sent second request still open after 6 s");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(2500),
        "half-sent second request closed after {took:?}, header timeout 1 s"
    );
}

/// The start of a POST to newAccount announcing `length` bytes of body.
fn post_head(length: u64) -> String {
    format!(
        "POST /acme/new-account HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/jose+json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_bounded_in_size_time_and_rate() {
    let s = Server::start(&[
        "--eab",
        "off",
        "--body-timeout-secs",
        "3",
        "--min-body-rate",
        "100",
        "--max-body-bytes",
        "10000",
    ]);
    let before = all_rows(&s).await;
    let tls = tls_connector(&s.root_pem());
    let port = s.port;
    let connect = || {
        let tls = tls.clone();
        async move { tls_from(ATTACKER, port, &tls).await.unwrap() }
    };

    // A Content-Length above the limit is refused before any body byte is read.
    let huge = tokio::spawn({
        let c = connect();
        async move {
            let mut c = c.await;
            let head = post_head(1_000_000_000_000);
            let start = Instant::now();
            c.write_all(format!("{head}{{\"a\":").as_bytes())
                .await
                .unwrap();
            c.flush().await.unwrap();
            let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut c))
                .await
                .ok()
                .flatten();
            (
                r,
                start.elapsed(),
                time_to_close(&mut c, Duration::from_secs(5)).await,
            )
        }
    });
    // 200 bytes/s is above the minimum rate, but 9000 bytes take 45 s: the body timeout ends it.
    let slow = tokio::spawn({
        let c = connect();
        async move {
            let mut c = c.await;
            c.write_all(post_head(9000).as_bytes()).await.unwrap();
            let chunks = vec![&[b'a'; 50][..]; 180];
            trickle(
                &mut c,
                &chunks,
                Duration::from_millis(250),
                Duration::from_secs(10),
            )
            .await
        }
    });
    // 10 bytes, then nothing: under 100 bytes/s after the first second.
    let stalled = tokio::spawn({
        let c = connect();
        async move {
            let mut c = c.await;
            c.write_all(post_head(2000).as_bytes()).await.unwrap();
            trickle(
                &mut c,
                &[b"{\"payload\""],
                Duration::from_millis(100),
                Duration::from_secs(10),
            )
            .await
        }
    });

    let (r, took, closed) = huge.await.unwrap();
    let r = r.expect("no answer to a 1 TB Content-Length");
    assert_eq!(r.status, 413, "{r:?}");
    assert!(took < Duration::from_secs(1), "413 after {took:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed.is_some(), "connection still open after the 413");

    for (what, task, min, max) in [
        ("slow body", slow, 2500, 5000),
        ("stalled body", stalled, 900, 2500),
    ] {
        let (received, closed) = task.await.unwrap();
        let took = closed.unwrap_or_else(|| panic!("{what}: connection still open after 10 s"));
        assert!(
            took >= Duration::from_millis(min) && took < Duration::from_millis(max),
            "{what}: ended after {took:?}, expected {min}..{max} ms"
        );
        // Either a 408 arrived before the close, or nothing did: never a served request.
        if !received.is_empty() {
            let text = String::from_utf8_lossy(&received);
            assert!(text.starts_with("HTTP/1.1 408"), "{what}: {text}");
        }
    }
    assert_served(&s, BYSTANDER).await;
    assert_eq!(all_rows(&s).await, before, "the database changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_are_refused() {
    let s = Server::start(&["--eab", "off"]);
    let tls = tls_connector(&s.root_pem());
    let big = format!(
        "GET /directory HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let many = format!(
        "GET /directory HTTP/1.1\r\nHost: 127.0.0.1\r\n{}\r\n",
        (0..80)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    for (what, req) in [("100 kB header", big), ("80 headers", many)] {
        let mut c = tls_from(ATTACKER, s.port, &tls).await.unwrap();
        c.write_all(req.as_bytes()).await.unwrap();
        c.flush().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut c))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within 5 s"));
        assert_eq!(r.map(|r| r.status), Some(431), "{what}");
        assert!(
            time_to_close(&mut c, Duration::from_secs(5))
                .await
                .is_some(),
            "{what}: connection still open"
        );
    }
    // An ordinary request with the headers clients send is served.
    let mut c = tls_from(ATTACKER, s.port, &tls).await.unwrap();
    let req = "GET /directory HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: certbot/2.11 (Linux)\r\n\
               Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n";
    c.write_all(req.as_bytes()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut c))
        .await
        .unwrap();
    assert_eq!(r.map(|r| r.status), Some(200));
}

/// Runs `sceau-server serve` with `flags` on a fresh data directory, its stderr in a file;
/// returns once it printed that it is ready (or panics).
struct Logged {
    child: std::process::Child,
    port: u16,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    fn start(flags: &[&str]) -> Logged {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        for _ in 0..3 {
            let port = sceau_testkit::free_port();
            let mut child = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
                .args(["serve", "--eab", "off", "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["--revocation-listen", "127.0.0.1:0"])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(flags)
                .env("SCEAU_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap();
            let mut out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            if out
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("is ready"))
            {
                // Keep reading: the server's next lines must not meet a closed pipe.
                std::thread::spawn(move || out.for_each(drop));
                return Logged {
                    child,
                    port,
                    stderr,
                    _dir: dir,
                };
            }
            // Most likely another test took the port first.
            let _ = child.wait();
        }
        panic!(
            "sceau-server did not start: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line without the colour escapes (`ESC [ … m`) the text format may carry.
fn without_ansi_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_connections_are_logged_once_per_interval_with_a_count() {
    let server = Logged::start(&["--max-connections-per-address", "2"]);
    let _held: Vec<TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(tcp_from(ATTACKER, server.port).await.unwrap());
        }
        v
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..300 {
        let mut c = tcp_from(ATTACKER, server.port).await.unwrap();
        let _ = c.shutdown().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lines = |log: &str| -> Vec<String> {
        log.lines()
            .map(without_ansi_colours)
            .filter(|l| l.contains("per-address connection limit"))
            .collect()
    };
    let first = lines(&server.log());
    assert_eq!(
        first.len(),
        1,
        "one line as the limit is first hit: {first:#?}"
    );
    // The interval's count follows in one line, not 299.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let all = lines(&server.log());
    assert_eq!(all.len(), 2, "{all:#?}");
    let total: u64 = all
        .iter()
        .filter_map(|l| l.split("refused=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 300, "{all:#?}");
}

#[test]
fn settings_that_cannot_hold_are_refused_at_start() {
    for (flags, expect) in [
        (&["--max-connections", "100000000"][..], "max-connections"),
        (
            &["--max-connections-per-address", "0"][..],
            "max-connections-per-address",
        ),
        (
            &[
                "--max-connections",
                "10",
                "--max-connections-per-address",
                "20",
            ][..],
            "max-connections-per-address",
        ),
        (&["--header-timeout-secs", "0"][..], "header-timeout-secs"),
        (&["--max-body-bytes", "0"][..], "max-body-bytes"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .args(["serve", "--eab", "off", "--listen"])
            .arg(format!("127.0.0.1:{}", sceau_testkit::free_port()))
            .args(["--revocation-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{flags:?}: the server started");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{flags:?}: exit status {:?}",
            out.status
        );
        assert!(!stdout.contains("is ready"), "{flags:?}: {stdout}");
        let last = stderr.lines().last().unwrap_or("");
        assert!(
            last.starts_with("sceau-server: ") && last.contains(expect),
            "{flags:?}: the refusal should name {expect}: {stderr}"
        );
    }
}
