//! `sceau-connbench`: what one client address can do to an HTTPS server's connections. Any
//! server works (sceau-server, Pebble); `bench/connections.sh` runs both.
//!
//! It opens up to `--connections` TLS connections from `--source` and sends nothing on them,
//! waits `--settle-secs` (so that a server that answers over-limit connections and then closes
//! them has done so), counts those still open, reads the server's resident memory
//! (`/proc/PID/status`, `VmRSS` of `--server-pid` alone) before and while they are held, then
//! closes them all and measures how long one slow-loris connection (a request head sent one
//! header line per `--loris-every-ms`, never finished) stays open.
//!
//! Output, one line: `attempted= handshakes= held= rss_before_kib= rss_held_kib=
//! per_conn_kib= slowloris_s=` (`slowloris_s=>N` when still open after `--loris-max-secs`).
//!
//! Invariants:
//! - Only `--ca-bundle`'s roots are trusted; the server name is the address connected to.
//! - "Held" means open after the settle time, checked without blocking: a connection the server
//!   closed, or on which it sent anything, is not held.
//! - Exit status 0 when the run completed, 2 when it could not start.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use clap::Parser;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, Parser)]
#[command(
    name = "sceau-connbench",
    version,
    about = "How many idle TLS connections one client address can hold, and for how long a slow-loris lives"
)]
struct Args {
    /// The server's HTTPS address.
    #[arg(long)]
    addr: SocketAddr,
    /// PEM file with the root(s) that sign the server's certificate.
    #[arg(long)]
    ca_bundle: PathBuf,
    /// The server's process, whose resident memory is read.
    #[arg(long)]
    server_pid: u32,
    /// Source address of every connection (any of 127.0.0.0/8 on Linux).
    #[arg(long, default_value = "127.0.0.1")]
    source: IpAddr,
    /// TLS connections to try to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    parallel: usize,
    /// Wait before counting what is still open.
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
    /// Give up on the slow-loris connection after this long.
    #[arg(long, default_value_t = 60)]
    loris_max_secs: u64,
    /// Time between two header lines of the slow-loris request.
    #[arg(long, default_value_t = 1000)]
    loris_every_ms: u64,
}

#[derive(Debug, thiserror::Error)]
enum ConnBenchError {
    #[error("CA bundle {0}: {1}")]
    CaBundle(PathBuf, String),
    #[error("cannot read /proc/{0}/status (is --server-pid right?)")]
    Memory(u32),
    #[error("the first connection failed: {0}")]
    FirstConnection(std::io::Error),
    #[error("file descriptors: {0}")]
    Descriptors(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sceau-connbench: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<String, ConnBenchError> {
    let room = raise_descriptor_limit()?;
    if args.connections + 64 > room {
        return Err(ConnBenchError::Descriptors(format!(
            "--connections {} needs more than the {room} this process may open",
            args.connections
        )));
    }
    let tls = connector(&args)?;
    // A first connection proves the set-up (address, trust) before any figure is taken.
    drop(
        connect(&args, &tls)
            .await
            .map_err(ConnBenchError::FirstConnection)?,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(args.server_pid).ok_or(ConnBenchError::Memory(args.server_pid))?;

    let gate = Arc::new(tokio::sync::Semaphore::new(args.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let args = Arc::new(args);
    for _ in 0..args.connections {
        let (gate, tls, args) = (gate.clone(), tls.clone(), args.clone());
        tasks.spawn(async move {
            let _slot = gate.acquire_owned().await.expect("gate");
            connect(&args, &tls).await.ok()
        });
    }
    let mut open = Vec::with_capacity(args.connections);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(c)) = done {
            open.push(c);
        }
    }
    let handshakes = open.len();
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    // Unconstrained: past tokio's cooperative budget (128 polls per task turn), every further
    // poll would answer Pending whatever the socket's state.
    let open = tokio::task::unconstrained(async move {
        open.retain_mut(still_open);
        open
    })
    .await;
    let held = open.len();
    let rss_held = rss_kib(args.server_pid).ok_or(ConnBenchError::Memory(args.server_pid))?;
    drop(open);
    let per_conn = if held > 0 {
        format!(
            "{:.1}",
            rss_held.saturating_sub(rss_before) as f64 / held as f64
        )
    } else {
        "-".to_owned()
    };
    // Let the server notice the closes before the slow-loris needs a place.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loris = match slow_loris(&args, &tls).await {
        Some(d) => format!("{:.1}", d.as_secs_f64()),
        None => format!(">{}", args.loris_max_secs),
    };
    Ok(format!(
        "attempted={} handshakes={handshakes} held={held} rss_before_kib={rss_before} \
         rss_held_kib={rss_held} per_conn_kib={per_conn} slowloris_s={loris}",
        args.connections
    ))
}

fn connector(args: &Args) -> Result<TlsConnector, ConnBenchError> {
    let bad = |e: String| ConnBenchError::CaBundle(args.ca_bundle.clone(), e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca_bundle).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

async fn connect(args: &Args, tls: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let socket = match args.source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(args.source, 0))?;
        let tcp = socket.connect(args.addr).await?;
        tls.connect(ServerName::IpAddress(args.addr.ip().into()), tcp)
            .await
    })
    .await
    .map_err(|_| std::io::Error::other("timed out"))?
}

/// True while the server has neither closed `c` nor sent anything on it; never waits. Call it
/// outside tokio's cooperative budget (see `run`).
fn still_open(c: &mut TlsStream<TcpStream>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(Pin::new(c).poll_read(&mut cx, &mut buf), Poll::Pending)
}

/// How long the server keeps a request whose head never ends; `None` if it outlives the cap.
async fn slow_loris(args: &Args, tls: &TlsConnector) -> Option<Duration> {
    let mut c = connect(args, tls).await.ok()?;
    let start = Instant::now();
    let cap = Duration::from_secs(args.loris_max_secs);
    let every = Duration::from_millis(args.loris_every_ms.max(1));
    let head = format!("GET / HTTP/1.1\r\nHost: {}\r\n", args.addr.ip());
    if c.write_all(head.as_bytes()).await.is_err() {
        return Some(start.elapsed());
    }
    let mut sink = [0u8; 4096];
    let mut n = 0u64;
    while start.elapsed() < cap {
        match tokio::time::timeout(every, c.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            // An answer (e.g. 408) is not the end yet: the connection is, when it closes.
            Ok(Ok(_)) => continue,
            Err(_) => {}
        }
        n += 1;
        let line = format!("X-Slow-{n}: x\r\n");
        if c.write_all(line.as_bytes()).await.is_err() || c.flush().await.is_err() {
            return Some(start.elapsed());
        }
    }
    None
}

/// `VmRSS` of one process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft descriptor limit to the hard one; returns how many it may open.
fn raise_descriptor_limit() -> Result<usize, ConnBenchError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(ConnBenchError::Descriptors(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}
