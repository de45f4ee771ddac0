//! The HTTPS listener: the accept loop, connection limits, TLS and HTTP/1.1 per connection, and
//! the deadlines that keep one client from holding the server's connections (issue 10).
//!
//! Invariants:
//! - At most `max_connections` connections are open at once, and at most
//!   `max_connections_per_address` from one client address (an IPv4-mapped IPv6 address counts
//!   as its IPv4 address). A connection counts from `accept` until its socket is closed, TLS
//!   handshake included.
//! - A connection over a limit never reaches the router. While fewer than [`SHED_IN_FLIGHT`]
//!   such connections are being answered, it gets a `503` with `Retry-After` and a
//!   `rateLimited` problem naming the limit, all within [`SHED_TIMEOUT`], then is closed;
//!   otherwise it is closed at once.
//! - Every phase of a served connection has a deadline: the TLS handshake, the request headers
//!   (counted from the end of the handshake for the first request, from the request's first
//!   byte for the next ones), and the wait between requests (`idle_timeout`). Request bodies
//!   get theirs in `http.rs`.
//! - The process has file descriptors for `max_connections` + [`SHED_IN_FLIGHT`] +
//!   [`FD_RESERVE`] when the listener starts ([`reserve_descriptors`]), so the limits are hit
//!   before the descriptor limit is.
//! - Over-limit connections and accept failures are logged at most once per [`LOG_EVERY`] per
//!   condition, with how many there were; never one line per connection.
//! - The accept loop never spins: after an accept failure it waits, doubling from
//!   [`MIN_BACKOFF`] up to [`MAX_BACKOFF`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::http::{HeaderValue, Response, StatusCode, header};
use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use sceau_wire::media;
use sceau_wire::problem::{Problem, ProblemType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::http;

/// Over-limit connections answered with a 503 at once; beyond, they are closed unanswered.
/// Each costs a descriptor and a TLS handshake, so this stays small and is in the budget.
pub const SHED_IN_FLIGHT: usize = 64;
/// The whole life of an over-limit connection that gets an answer: handshake, request, 503.
pub const SHED_TIMEOUT: Duration = Duration::from_secs(2);
/// `Retry-After` of the 503: connections free up as clients finish or idle ones time out;
/// a client coming back sooner would most likely be shed again.
pub const RETRY_AFTER_SECS: u64 = 5;
/// Descriptors kept for everything but client connections: the database (SQLite files or a
/// PostgreSQL pool), DNS sockets, validation connections, the signing service's pipes, logs.
pub const FD_RESERVE: usize = 256;
/// Largest request head (request line and headers). ACME requests need about 1 kB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields in one request; ACME clients send about ten.
pub const MAX_HEADERS: usize = 64;
/// hyper's read buffer per connection (the body is read through it too).
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// One log line per condition per interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
    #[error(
        "--max-connections-per-address ({per_address}) cannot exceed --max-connections ({max})"
    )]
    PerAddressAboveMax { per_address: usize, max: usize },
    #[error(
        "--max-connections {max} needs {needed} file descriptors ({SHED_IN_FLIGHT} more for \
         503 answers, {FD_RESERVE} for the database, DNS, validation and the signing service), \
         but only {available} of the process's limit of {limit} are free: lower \
         --max-connections to at most {fits}, or raise the limit (ulimit -n, systemd LimitNOFILE=)"
    )]
    Descriptors {
        max: usize,
        needed: usize,
        available: usize,
        limit: u64,
        fits: usize,
    },
    #[error("cannot read the file descriptor limit: {0}")]
    Rlimit(io::Error),
}

/// The listener's settings, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Settings {
    pub fn from_config(c: &Config) -> Result<Settings, ListenerError> {
        let secs = |v: u64, flag| match v {
            0 => Err(ListenerError::Zero(flag)),
            v => Ok(Duration::from_secs(v)),
        };
        if c.max_connections == 0 {
            return Err(ListenerError::Zero("max-connections"));
        }
        if c.max_connections_per_address == 0 {
            return Err(ListenerError::Zero("max-connections-per-address"));
        }
        if c.max_connections_per_address > c.max_connections {
            return Err(ListenerError::PerAddressAboveMax {
                per_address: c.max_connections_per_address,
                max: c.max_connections,
            });
        }
        Ok(Settings {
            max_connections: c.max_connections,
            max_connections_per_address: c.max_connections_per_address,
            handshake_timeout: secs(c.handshake_timeout_secs, "handshake-timeout-secs")?,
            header_timeout: secs(c.header_timeout_secs, "header-timeout-secs")?,
            idle_timeout: secs(c.idle_timeout_secs, "idle-timeout-secs")?,
        })
    }
}

/// Raises the soft descriptor limit to the hard one and checks that `max_connections` fits in
/// what is left, so that the connection limit, not `EMFILE`, is what a flood runs into.
pub fn reserve_descriptors(settings: &Settings, listeners: usize) -> Result<(), ListenerError> {
    let limit = raise_nofile_limit()?;
    let open = open_descriptors();
    let available = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(open);
    // Each listener has its own connection limit and its own shed answers.
    let needed = (settings.max_connections + SHED_IN_FLIGHT)
        .saturating_mul(listeners)
        .saturating_add(FD_RESERVE);
    if needed > available {
        return Err(ListenerError::Descriptors {
            max: settings.max_connections,
            needed,
            available,
            limit,
            fits: (available.saturating_sub(FD_RESERVE) / listeners.max(1))
                .saturating_sub(SHED_IN_FLIGHT),
        });
    }
    Ok(())
}

/// The soft `RLIMIT_NOFILE` after raising it as far as allowed.
fn raise_nofile_limit() -> Result<u64, ListenerError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(ListenerError::Rlimit(io::Error::last_os_error()));
    }
    let mut targets = vec![lim.rlim_max];
    // Linux refuses a soft limit above fs.nr_open, even under an unlimited hard limit.
    if let Some(nr_open) = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
    {
        targets.push(nr_open.min(lim.rlim_max));
    }
    for target in targets {
        if target <= lim.rlim_cur {
            break;
        }
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(target);
        }
    }
    Ok(lim.rlim_cur)
}

/// Descriptors open now (`/proc/self/fd`, less the one reading it); a generous guess where
/// `/proc` is missing.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(64, |dir| dir.count().saturating_sub(1))
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Address(IpAddr),
    Server,
}

/// Open connections, in all and per client address.
struct Tracker {
    max: usize,
    per_address: usize,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    open: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it gives its place back.
struct Slot {
    tracker: Arc<Tracker>,
    ip: IpAddr,
}

impl Tracker {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Over> {
        let mut counts = self.state.lock().expect("connection counts");
        let from_ip = counts.by_address.get(&ip).copied().unwrap_or(0);
        // The address's own limit first: it names what that client can fix.
        if from_ip >= self.per_address {
            return Err(Over::Address(ip));
        }
        if counts.open >= self.max {
            return Err(Over::Server);
        }
        counts.open += 1;
        counts.by_address.insert(ip, from_ip + 1);
        Ok(Slot {
            tracker: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.tracker.state.lock().expect("connection counts");
        counts.open -= 1;
        if let Some(n) = counts.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.ip);
            }
        }
    }
}

/// Conditions logged at most once per [`LOG_EVERY`].
#[derive(Debug, Clone, Copy)]
enum Event {
    AddressLimit,
    ServerLimit,
    AcceptFailed,
}

#[derive(Default)]
struct Tally {
    pending: u64,
    last_logged: Option<Instant>,
    last_detail: String,
}

/// Counts events and logs each condition at most once per interval, with the count.
struct Throttle {
    interval: Duration,
    limits: (usize, usize),
    tallies: [Mutex<Tally>; 3],
}

impl Throttle {
    fn new(interval: Duration, settings: &Settings) -> Throttle {
        Throttle {
            interval,
            limits: (
                settings.max_connections_per_address,
                settings.max_connections,
            ),
            tallies: Default::default(),
        }
    }

    fn note(&self, event: Event, detail: impl FnOnce() -> String) {
        let mut tally = self.tallies[event as usize].lock().expect("log tally");
        tally.pending += 1;
        tally.last_detail = detail();
        self.emit_if_due(event, tally);
    }

    /// Logs what was counted since the last line of each condition, if its interval is over.
    fn flush(&self) {
        for event in [Event::AddressLimit, Event::ServerLimit, Event::AcceptFailed] {
            let tally = self.tallies[event as usize].lock().expect("log tally");
            if tally.pending > 0 {
                self.emit_if_due(event, tally);
            }
        }
    }

    fn emit_if_due(&self, event: Event, mut tally: std::sync::MutexGuard<'_, Tally>) {
        let now = Instant::now();
        if tally
            .last_logged
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return;
        }
        tally.last_logged = Some(now);
        let count = std::mem::take(&mut tally.pending);
        let detail = std::mem::take(&mut tally.last_detail);
        drop(tally);
        let every = self.interval.as_secs();
        match event {
            Event::AddressLimit => tracing::warn!(
                refused = count,
                limit = self.limits.0,
                last_address = %detail,
                "connections refused over the per-address connection limit (counted over {every} s; each got a 503 or was closed)"
            ),
            Event::ServerLimit => tracing::warn!(
                refused = count,
                limit = self.limits.1,
                "connections refused over the server-wide connection limit (counted over {every} s; each got a 503 or was closed)"
            ),
            Event::AcceptFailed => tracing::error!(
                failures = count,
                error = %detail,
                "accepting connections failed; backing off (counted over {every} s)"
            ),
        }
    }
}

/// Serves HTTPS on `listener` until `shutdown` completes.
pub async fn serve_https(
    listener: TcpListener,
    tls: TlsAcceptor,
    router: axum::Router,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, Some(tls), router, settings, shutdown).await
}

/// Serves plain HTTP on `listener` until `shutdown` completes, with the same limits and
/// timeouts as HTTPS: for what relying parties fetch without TLS (CRLs and OCSP, RFC 5280
/// §4.2.1.13 and RFC 6960 App. A: fetching them over TLS could need them to check the TLS).
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    serve(listener, None, router, settings, shutdown).await
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = Arc::new(Tracker {
        max: settings.max_connections,
        per_address: settings.max_connections_per_address,
        state: Mutex::default(),
    });
    let throttle = Arc::new(Throttle::new(LOG_EVERY, &settings));
    let shed_slots = Arc::new(Semaphore::new(SHED_IN_FLIGHT));
    let settings = Arc::new(settings);
    let flusher = tokio::spawn({
        let throttle = throttle.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                throttle.flush();
            }
        }
    });
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE would fail again at once: wait for descriptors to come back.
                throttle.note(Event::AcceptFailed, || e.to_string());
                backoff = (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = &mut shutdown => break,
                }
            }
        };
        backoff = Duration::ZERO;
        let ip = peer.ip().to_canonical();
        match tracker.admit(ip) {
            Ok(slot) => {
                tokio::spawn(serve_connection(
                    tcp,
                    peer,
                    slot,
                    tls.clone(),
                    router.clone(),
                    settings.clone(),
                ));
            }
            Err(over) => {
                match over {
                    Over::Address(ip) => throttle.note(Event::AddressLimit, || ip.to_string()),
                    Over::Server => throttle.note(Event::ServerLimit, String::new),
                }
                match shed_slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let limit = match over {
                            Over::Address(_) => settings.max_connections_per_address,
                            Over::Server => settings.max_connections,
                        };
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let _permit = permit;
                            let _ = tokio::time::timeout(SHED_TIMEOUT, shed(tcp, tls, over, limit))
                                .await;
                        });
                    }
                    // Too many answers under way already: closing costs nothing.
                    Err(_) => drop(tcp),
                }
            }
        }
    }
    tracing::info!("shutting down");
    flusher.abort();
    throttle.flush();
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    settings: Arc<Settings>,
) {
    let _slot = slot;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return serve_stream(tcp, peer, router, &settings).await;
    };
    let stream = match tokio::time::timeout(settings.handshake_timeout, tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        _ => return,
    };
    serve_stream(stream, peer, router, &settings).await
}

/// One connection's requests, over TLS or not.
async fn serve_stream<S>(stream: S, peer: SocketAddr, router: axum::Router, settings: &Settings)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let received = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Counted {
        inner: stream,
        received: received.clone(),
    });
    let timer = RequestTimer {
        inner: TokioTimer::new(),
        received,
        heads: AtomicU64::new(0),
        header: settings.header_timeout,
        idle: settings.idle_timeout,
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(timer)
        .header_read_timeout(settings.header_timeout)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(READ_BUFFER_BYTES);
    let service =
        hyper_util::service::TowerToHyperService::new(http::with_client_addr(router, peer));
    let _ = builder.serve_connection(io, service).await;
}

/// Answers one request on an over-limit connection with a 503, then closes it.
async fn shed(tcp: TcpStream, tls: Option<TlsAcceptor>, over: Over, limit: usize) {
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(tls) => {
            if let Ok(stream) = tls.accept(tcp).await {
                shed_stream(stream, over, limit).await;
            }
        }
        None => shed_stream(tcp, over, limit).await,
    }
}

async fn shed_stream<S>(stream: S, over: Over, limit: usize)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |_req| {
        std::future::ready(Ok::<_, Infallible>(shed_response(over, limit)))
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(SHED_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(8192);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The 503 of an over-limit connection: RFC 8555 §6.6 says a server refusing a request for a
/// rate limit answers `rateLimited` and should say when to come back (`Retry-After`). It
/// carries no Replay-Nonce: the nonce pool is out of reach here, and §6.5 only recommends one
/// on error responses.
fn shed_response(over: Over, limit: usize) -> Response<axum::body::Body> {
    let detail = match over {
        Over::Address(ip) => format!(
            "too many connections from {ip}: at most {limit} at once per client address; \
             close idle connections or retry later"
        ),
        Over::Server => {
            format!("the server has too many open connections (its limit is {limit}); retry later")
        }
    };
    let mut problem = Problem::new(ProblemType::RateLimited, detail);
    problem.status = Some(StatusCode::SERVICE_UNAVAILABLE.as_u16());
    let body = serde_json::to_vec(&problem).expect("problem serialises");
    let mut resp = Response::new(axum::body::Body::from(body));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::PROBLEM_JSON),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The TLS stream, counting the plaintext bytes it delivers so that [`RequestTimer`] can tell
/// when the next request starts.
struct Counted<S> {
    inner: S,
    received: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.received.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's timer for one connection. hyper (1.12) starts its header read timeout as soon as it
/// waits for a request head, which on a keep-alive connection is right after the previous
/// response: alone, it would close every idle connection after `header_timeout`. So the first
/// head gets `header_timeout` from the end of the handshake, as hyper asks; a later one gets
/// `idle_timeout` until its first byte arrives, then `header_timeout` from that byte.
///
/// hyper's HTTP/1 server uses its timer for nothing but the header read timeout, so each
/// `sleep_until`/`reset` call is the start of one request head.
struct RequestTimer {
    inner: TokioTimer,
    received: Arc<AtomicU64>,
    heads: AtomicU64,
    header: Duration,
    idle: Duration,
}

impl Timer for RequestTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.inner.sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        if self.heads.fetch_add(1, Ordering::Relaxed) == 0 {
            return self.inner.sleep_until(deadline);
        }
        let now = self.inner.now();
        Box::pin(HeadSleep {
            sleep: self.inner.sleep_until(now + self.idle),
            timer: self.inner.clone(),
            received: self.received.clone(),
            mark: Some(self.received.load(Ordering::Relaxed)),
            header: self.header,
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        // A fresh sleep, never TokioTimer's in-place reset: ours may be a HeadSleep.
        *sleep = self.sleep_until(new_deadline);
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }
}

/// The deadline of a keep-alive connection's next request head: idle until a byte arrives,
/// then the header timeout from that moment.
struct HeadSleep {
    sleep: Pin<Box<dyn Sleep>>,
    timer: TokioTimer,
    received: Arc<AtomicU64>,
    /// Bytes received when the wait began, while no byte of the request has arrived.
    mark: Option<u64>,
    header: Duration,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // hyper polls this right after each read that left the head incomplete, so the switch
        // happens when the first byte is read.
        if this
            .mark
            .is_some_and(|m| this.received.load(Ordering::Relaxed) != m)
        {
            this.mark = None;
            let deadline = this.timer.now() + this.header;
            this.timer.reset(&mut this.sleep, deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            max_connections: 3,
            max_connections_per_address: 2,
            handshake_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn limits_count_per_address_and_in_all_and_give_places_back() {
        let s = settings();
        let t = Arc::new(Tracker {
            max: s.max_connections,
            per_address: s.max_connections_per_address,
            state: Mutex::default(),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = t.admit(a).unwrap();
        let _a2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).err(), Some(Over::Address(a)));
        let _b1 = t.admit(b).unwrap();
        assert_eq!(t.admit(b).err(), Some(Over::Server));
        drop(a1);
        let _b2 = t.admit(b).unwrap();
        drop((_a2, _b1, _b2));
        let counts = t.state.lock().unwrap();
        assert_eq!(counts.open, 0);
        assert!(
            counts.by_address.is_empty(),
            "no entry left for closed addresses"
        );
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            mapped.to_canonical(),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn settings_are_checked() {
        let mut c = Config::default();
        assert!(Settings::from_config(&c).is_ok());
        c.max_connections_per_address = c.max_connections + 1;
        assert!(matches!(
            Settings::from_config(&c),
            Err(ListenerError::PerAddressAboveMax { .. })
        ));
        let c = Config {
            idle_timeout_secs: 0,
            ..Config::default()
        };
        assert_eq!(
            Settings::from_config(&c).unwrap_err().to_string(),
            "--idle-timeout-secs must be at least 1"
        );
    }

    #[test]
    fn descriptor_budget_refuses_what_cannot_fit() {
        let mut s = settings();
        s.max_connections = usize::MAX / 2;
        let err = reserve_descriptors(&s, 2).unwrap_err().to_string();
        assert!(err.contains("lower --max-connections to at most"), "{err}");
        s.max_connections = 16;
        reserve_descriptors(&s, 2).unwrap();
    }
}
