//! `sceau-bench`: N concurrent ACME clients doing full http-01 issuances against any directory,
//! reporting one line: `issued=… errors=… elapsed_s=… certs_per_s=… p50_ms=… p99_ms=…`.
//!
//! Invariants:
//! - Accounts are created before the clock starts; `elapsed_s` and the throughput cover only
//!   the issuances, and each latency is one issuance from newOrder to the downloaded chain.
//! - Every order asks for one name no earlier run of this process used
//!   (`b<client>-<n>-<run>.<domain>`), so no CA can answer from a reused authorization.
//! - `errors` counts failed issuances, failed registrations and orders never started, so
//!   `issued + errors >= orders` once the run ends.
//! - Exit status: 0 when every order was issued, 1 when some failed, 2 when the run could not
//!   start (bad arguments, unreachable directory, port taken).

mod acme;
mod cpu;
mod error;
mod guard;
mod http01;
mod rss;
mod stats;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use sceau_wire::{AccountKey, KeyKind, b64};
use tokio::sync::Barrier;

use crate::acme::{Eab, Poll, Session};
use crate::error::BenchError;
use crate::http01::KeyAuthorizations;
use crate::stats::Stats;

#[derive(Debug, Parser)]
#[command(
    name = "sceau-bench",
    version,
    about = "ACME load generator: concurrent full http-01 issuances"
)]
struct Args {
    /// ACME directory URL.
    #[arg(long)]
    directory: String,
    /// PEM file with the root(s) that sign the CA's HTTPS certificate.
    #[arg(long)]
    ca_bundle: PathBuf,
    /// Number of virtual clients, each with its own account and connection.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Total number of orders, shared among the clients.
    #[arg(long, default_value_t = 200)]
    orders: u64,
    /// Port of the shared http-01 responder on 127.0.0.1 (the port the CA validates against).
    #[arg(long, default_value_t = 5002)]
    http_port: u16,
    /// External Account Binding key identifier.
    #[arg(long, requires = "eab_hmac_key_file")]
    eab_kid: Option<String>,
    /// File holding the base64url EAB MAC key (kept off the command line).
    #[arg(long, requires = "eab_kid")]
    eab_hmac_key_file: Option<PathBuf>,
    /// Parent domain of the ordered names; the CA's resolver must answer 127.0.0.1 for them.
    #[arg(long, default_value = "bench.test")]
    domain: String,
    /// Shortest wait between polls, whatever Retry-After says.
    #[arg(long, default_value_t = 50)]
    poll_min_ms: u64,
    /// Longest wait between polls, whatever Retry-After says.
    #[arg(long, default_value_t = 1000)]
    poll_max_ms: u64,
    /// Give up on an order that is not done after this long.
    #[arg(long, default_value_t = 120)]
    order_timeout_s: u64,
    /// Stop starting orders after this long; orders not started count as errors.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
    /// Give up on one HTTP request after this long.
    #[arg(long, default_value_t = 30)]
    request_timeout_s: u64,
    /// Never have a newOrder and an authorization fetch in flight at once (Pebble 2.4
    /// deadlocks when they overlap under load).
    #[arg(long)]
    pebble_workaround: bool,
    /// Sample the resident memory of this process and its descendants during the run and
    /// report the peak of their sum.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Order this one name every time instead of a new name per order.
    #[arg(long)]
    name: Option<String>,
    /// Every CSR certifies this key (PKCS#8 PEM file) instead of a fresh one: for a CA that
    /// hands out one fixed certificate (`openssl cmp`'s mock server behind a registration
    /// authority).
    #[arg(long)]
    csr_key: Option<PathBuf>,
    /// Write one line per finished order to this file once the run ends: the wall-clock time
    /// in Unix milliseconds and `issued` or `failed` (for failover measurements: the gap
    /// between the last certificate before an outage and the first after); before it, `url
    /// URL` when the CA handed out the order's certificate URL.
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Start at most this many orders per second, all clients together (0: as fast as the
    /// clients go): to compare the server's CPU per certificate at one load with another
    /// run's, since per-request CPU grows as load falls (fewer requests share each wake-up).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.concurrency == 0 {
        eprintln!("sceau-bench: --concurrency must be at least 1");
        return ExitCode::from(2);
    }
    if !(args.rate.is_finite() && (0.0..=1_000_000.0).contains(&args.rate)) {
        eprintln!("sceau-bench: --rate is a number of orders per second, from 0 to 1000000");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sceau-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load and prints the result line; returns the number of errors.
async fn run(args: Args) -> Result<u64, BenchError> {
    let eab = match (&args.eab_kid, &args.eab_hmac_key_file) {
        (Some(kid), Some(file)) => Some(read_eab(kid, file)?),
        _ => None,
    };
    let tls = tls::client_config(&args.ca_bundle)?;
    let csr_key = match &args.csr_key {
        Some(p) => Some(Arc::new(std::fs::read_to_string(p).map_err(|e| {
            BenchError::CsrKey {
                path: p.clone(),
                reason: e.to_string(),
            }
        })?)),
        None => None,
    };
    let responder = KeyAuthorizations::default();
    http01::serve(args.http_port, responder.clone()).await?;

    let http = |tls: rustls::ClientConfig| {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .timeout(Duration::from_secs(args.request_timeout_s))
            .build()
            .map_err(|source| BenchError::http("client", source))
    };
    let directory = Arc::new(acme::directory(&http(tls.clone())?, &args.directory).await?);
    let poll = Poll {
        min: Duration::from_millis(args.poll_min_ms),
        max: Duration::from_millis(args.poll_max_ms.max(args.poll_min_ms)),
        deadline: Duration::from_secs(args.order_timeout_s),
    };

    let guard = args
        .pebble_workaround
        .then(|| Arc::new(guard::ClassGuard::default()));
    let stats = Arc::new(Stats::default());
    let timeline: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let next_order = Arc::new(AtomicU64::new(0));
    let pacer = (args.rate > 0.0).then(|| {
        let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(tokio::sync::Mutex::new(every))
    });
    // Every client and the clock wait here, so the clock starts once all accounts exist.
    let start = Arc::new(Barrier::new(args.concurrency + 1));
    let run_tag = run_tag();
    let mut clients = Vec::with_capacity(args.concurrency);
    for client in 0..args.concurrency {
        let http = http(tls.clone())?;
        let (directory, stats, next_order, start) = (
            directory.clone(),
            stats.clone(),
            next_order.clone(),
            start.clone(),
        );
        let (responder, eab, orders, guard) =
            (responder.clone(), eab.clone(), args.orders, guard.clone());
        let max_run = Duration::from_secs(args.max_seconds);
        let name = {
            let (tag, domain, fixed) = (run_tag.clone(), args.domain.clone(), args.name.clone());
            move |n: u64| match &fixed {
                Some(f) => f.clone(),
                None => format!("b{client}-{n}-{tag}.{domain}"),
            }
        };
        let csr_key = csr_key.clone();
        let timeline = timeline.clone();
        let pacer = pacer.clone();
        clients.push(tokio::spawn(async move {
            let registered = async {
                let key = AccountKey::generate(KeyKind::P256)?;
                let mut session = Session::new(http, directory, key, poll, guard);
                session.csr_key = csr_key;
                session.register(eab.as_ref()).await?;
                Ok::<_, BenchError>(session)
            }
            .await;
            start.wait().await;
            let deadline = Instant::now() + max_run;
            let mut session = match registered {
                Ok(s) => s,
                Err(e) => return stats.failed(e.kind(), e.to_string()),
            };
            while Instant::now() < deadline {
                if let Some(p) = &pacer {
                    p.lock().await.tick().await;
                }
                let n = next_order.fetch_add(1, Ordering::Relaxed);
                if n >= orders {
                    return;
                }
                let began = Instant::now();
                let outcome = match session.issue(&name(n), &responder).await {
                    Ok(_) => {
                        stats.issued(began.elapsed());
                        "issued"
                    }
                    Err(e) => {
                        stats.failed(e.kind(), e.to_string());
                        "failed"
                    }
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let mut timeline = timeline.lock().expect("timeline lock");
                if let Some(url) = session.certificate_url.take() {
                    timeline.push(format!("{now} url {url}"));
                }
                timeline.push(format!("{now} {outcome}"));
            }
        }));
    }

    start.wait().await;
    let sampler = args.server_pid.map(rss::Sampler::start);
    let cpu = cpu::Window::open(args.server_pid);
    let began = Instant::now();
    for client in clients {
        client.await.expect("client task does not panic");
    }
    let elapsed = began.elapsed();
    let started = next_order.load(Ordering::Relaxed).min(args.orders);
    // Orders left over either because time ran out or because no client could register.
    let why = if elapsed >= Duration::from_secs(args.max_seconds) {
        format!("not started: --max-seconds {} reached", args.max_seconds)
    } else {
        "not started: no client with an account left".to_owned()
    };
    for _ in started..args.orders {
        stats.failed(why.clone(), why.clone());
    }
    let memory = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };

    let summary = stats.summary(elapsed);
    let spent = cpu.close(summary.issued);
    let mut line = format!("{} concurrency={}", summary.line(), args.concurrency);
    if let Some(ms) = spent.server_ms {
        line.push_str(&format!(" server_cpu_ms_per_cert={ms:.2}"));
    }
    if let Some(ms) = spent.own_ms {
        line.push_str(&format!(" bench_cpu_ms_per_cert={ms:.2}"));
    }
    if let Some(m) = memory {
        line.push_str(&format!(
            " rss_peak_mib={:.1} rss_hwm_mib={:.1} rss_procs={}",
            kib_to_mib(m.peak_rss_kb),
            kib_to_mib(m.hwm_kb),
            m.processes
        ));
    } else if let Some(pid) = args.server_pid {
        eprintln!("sceau-bench: could not read /proc/{pid}/status");
    }
    if let Some(path) = &args.timeline {
        let mut lines = timeline.lock().expect("timeline lock").join("\n");
        lines.push('\n');
        if let Err(e) = std::fs::write(path, lines) {
            eprintln!("sceau-bench: --timeline {}: {e}", path.display());
        }
    }
    println!("{line}");
    for (count, kind) in stats.error_kinds() {
        eprintln!("sceau-bench: {count} x {kind}");
    }
    Ok(summary.errors)
}

fn kib_to_mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Short per-run tag so that names never repeat across runs against a persistent CA.
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    format!("{:06x}", mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40)
}

/// The MAC key file holds the base64url key as CAs hand it out (RFC 8555 §7.3.4); padding and
/// surrounding whitespace are tolerated.
fn read_eab(kid: &str, file: &std::path::Path) -> Result<Eab, BenchError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| BenchError::Eab(format!("{}: {e}", file.display())))?;
    let mac_key = b64::decode(text.trim().trim_end_matches('='))
        .map_err(|_| BenchError::Eab(format!("{}: not base64url", file.display())))?;
    if mac_key.is_empty() {
        return Err(BenchError::Eab(format!("{}: empty key", file.display())));
    }
    Ok(Eab {
        kid: kid.to_owned(),
        mac_key,
    })
}
