//! `sceau-fleetbench`: N agents' certificates renewed by one running `sceau manager` (issue 18),
//! and, as the peer in the same run, the same renewals done the way a fleet does without a
//! manager: every machine a standalone ACME client holding the DNS key (sceau's own client
//! library with dns-01 by RFC 2136, one update per name).
//!
//! Phases: invite and enrol N agents (the manager's own admin code on its database, the agent's
//! own enrolment over HTTPS), one first issuance of everyone, then the measured renewal: every
//! certificate is marked due as the manager's renewal pass would, every agent sends its new CSR
//! (`agent run --wait 0`, as a timer does), the manager batches and obtains them, and every agent
//! runs again to install. Measured: wall time of the renewal, DNS UPDATE messages per
//! certificate (counted by the DNS server's own log, so both sides are counted the same way),
//! the manager's CPU per certificate and its peak memory. Prints `key=value` lines.

#[path = "../cpu.rs"]
#[allow(dead_code)]
mod cpu;
#[path = "../rss.rs"]
#[allow(dead_code)]
mod rss;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use sceau_fleet::agent::{self, AgentCert, Outcome};
use sceau_fleet::manager::{Manager, admin};

#[derive(Debug, Parser)]
#[command(
    name = "sceau-fleetbench",
    about = "N agents renewed by one sceau manager"
)]
struct Args {
    /// The running manager's directory (its database is opened beside it).
    #[arg(long)]
    manager_dir: PathBuf,
    /// Its agents' URL, e.g. https://127.0.0.1:8555
    #[arg(long)]
    manager_url: String,
    /// Its PID, for CPU and memory.
    #[arg(long)]
    manager_pid: u32,
    /// Scratch directory for the agents' directories.
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Agents running at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The agents' names are a<i>.<zone>.
    #[arg(long, default_value = "fleet.test")]
    zone: String,
    /// A shell command run before the renewal round (bench/fleet.sh ages the CA's valid
    /// authorizations, as 60 days later, so that every renewal needs a fresh dns-01).
    #[arg(long)]
    between_rounds: Option<String>,
    /// The DNS server's log, whose DDNS lines count the UPDATE messages.
    #[arg(long)]
    dns_log: PathBuf,
    /// Peer: certificates renewed by standalone clients (0: no peer run).
    #[arg(long, default_value_t = 0)]
    peer_certs: usize,
    #[arg(long)]
    acme_server: Option<String>,
    #[arg(long)]
    acme_ca_bundle: Option<PathBuf>,
    #[arg(long)]
    dns_server: Option<std::net::SocketAddr>,
    #[arg(long)]
    tsig_key_file: Option<PathBuf>,
}

type Res<T> = Result<T, String>;

fn agent_dir(a: &Args, i: usize) -> PathBuf {
    a.work.join(format!("agent-{i:05}"))
}

fn name(a: &Args, i: usize) -> String {
    format!("a{i:05}.{}", a.zone)
}

/// DNS UPDATE messages the server has processed so far: knot logs `DDNS, processing N
/// updates` for each group of queued messages it applies together.
fn dns_updates(a: &Args) -> usize {
    std::fs::read_to_string(&a.dns_log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("DDNS, processing ")? + "DDNS, processing ".len()..];
            rest.split_whitespace().next()?.parse::<usize>().ok()
        })
        .sum()
}

/// Runs `agent run --wait 0` for every agent, `n` at once; returns how many installed.
async fn run_all(a: &Args, n: usize) -> Res<usize> {
    let cert_dirs: Vec<(PathBuf, PathBuf)> = (0..a.agents)
        .map(|i| (agent_dir(a, i), agent_dir(a, i).join("live")))
        .collect();
    let results: Vec<_> = futures::stream::iter(cert_dirs)
        .map(|(d, live)| async move { agent::run(&d, &live, Duration::ZERO, false).await })
        .buffer_unordered(n)
        .collect()
        .await;
    let mut installed = 0;
    for r in results {
        for (name, o) in r {
            match o {
                Ok(Outcome::Installed { .. }) => installed += 1,
                Ok(_) => {}
                Err(e) => return Err(format!("{name}: {e}")),
            }
        }
    }
    Ok(installed)
}

/// Waits until the manager has issued every agent's certificate.
async fn all_issued(m: &Manager, want: usize, timeout: Duration) -> Res<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let certs = m.store.certs(None).await.map_err(|e| e.to_string())?;
        let issued = certs.iter().filter(|c| c.state == "issued").count();
        if issued >= want {
            return Ok(());
        }
        if let Some(f) = certs.iter().find(|c| c.state == "failed") {
            return Err(format!(
                "{}/{} failed: {:?}",
                f.agent, f.cert_name, f.last_error
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("only {issued} of {want} issued in time"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn setup(a: &Args, m: &Manager) -> Res<()> {
    std::fs::create_dir_all(a.work.join("tokens")).map_err(|e| e.to_string())?;
    for i in 0..a.agents {
        let token = a.work.join("tokens").join(i.to_string());
        admin::invite(m, &format!("a{i:05}"), &[name(a, i)], &token, 3600)
            .await
            .map_err(|e| e.to_string())?;
    }
    let ca = a.manager_dir.join("tls/manager-ca.pem");
    let jobs: Vec<usize> = (0..a.agents).collect();
    let results: Vec<Res<()>> = futures::stream::iter(jobs)
        .map(|i| {
            let ca = ca.clone();
            async move {
                let dir = agent_dir(a, i);
                let token = a.work.join("tokens").join(i.to_string());
                agent::enrol(&dir, &a.manager_url, &ca, &token)
                    .await
                    .map_err(|e| e.to_string())?;
                agent::add_cert(
                    &dir,
                    AgentCert {
                        name: "svc".into(),
                        domains: vec![name(a, i)],
                        key_type: "p256".into(),
                        deploy_hook: None,
                        group_readable: false,
                    },
                )
                .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

fn keys(a: &Args) -> Vec<String> {
    (0..a.agents)
        .map(|i| {
            std::fs::read_to_string(agent_dir(a, i).join("live/svc/privkey.pem"))
                .unwrap_or_default()
        })
        .collect()
}

async fn peer(a: &Args) -> Res<(f64, usize, f64)> {
    use sceau_client::solver::{Method, Plan};
    let server = a
        .acme_server
        .clone()
        .ok_or("--acme-server is needed for the peer")?;
    let dns = a.dns_server.ok_or("--dns-server is needed for the peer")?;
    let pem = a
        .acme_ca_bundle
        .as_ref()
        .map(std::fs::read_to_string)
        .transpose()
        .map_err(|e| e.to_string())?;
    let http = sceau_client::http::build_client(&sceau_client::http::HttpOptions {
        ca_bundle_pem: pem,
        timeout: None,
    })
    .map_err(|e| e.to_string())?;
    let client = Arc::new(
        sceau_client::AcmeClient::connect(&server, http)
            .await
            .map_err(|e| e.to_string())?,
    );
    let key =
        sceau_client::csr::generate_key(sceau_wire::KeyKind::P256).map_err(|e| e.to_string())?;
    let (account, _) = client
        .new_account(
            key,
            &sceau_client::NewAccountOptions {
                terms_of_service_agreed: true,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let account = Arc::new(account);
    let method = Method::Dns01Update {
        server: dns,
        tsig_key_file: a.tsig_key_file.clone(),
        check_servers: vec![dns],
        propagation_timeout_secs: 120,
    };
    let issue_all = |prefix: &'static str| {
        let (client, account, method) = (client.clone(), account.clone(), method.clone());
        async move {
            let results: Vec<Res<()>> = futures::stream::iter(0..a.peer_certs)
                .map(|i| {
                    let (client, account, method) =
                        (client.clone(), account.clone(), method.clone());
                    async move {
                        let req = sceau_client::IssueRequest {
                            identifiers: vec![sceau_wire::Identifier::dns(format!(
                                "{prefix}{i:05}.peer.{}",
                                a.zone
                            ))],
                            key: sceau_client::KeySource::Generate(sceau_wire::KeyKind::P256),
                            plan: Plan::single(method),
                            replaces: None,
                            profile: None,
                            auto_renewal: None,
                            timeout: Duration::from_secs(600),
                        };
                        let events: sceau_client::EventSink =
                            Arc::new(|_: &sceau_client::Event| {});
                        sceau_client::issue(&client, &account, req, &events)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                })
                .buffer_unordered(a.concurrency)
                .collect()
                .await;
            results.into_iter().collect::<Res<()>>()
        }
    };
    // Every name is new to the CA, as after the authorizations of the previous round expired.
    let u0 = dns_updates(a);
    let t0 = Instant::now();
    issue_all("p").await?;
    let secs = t0.elapsed().as_secs_f64();
    let updates = dns_updates(a) - u0;
    Ok((secs, updates, a.peer_certs as f64 / secs))
}

async fn bench(a: &Args) -> Res<()> {
    let m = Manager::open(&a.manager_dir)
        .await
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    setup(a, &m).await?;
    println!(
        "enrolled={} enrol_secs={:.1}",
        a.agents,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let u0 = dns_updates(a);
    run_all(a, a.concurrency).await?;
    all_issued(&m, a.agents, Duration::from_secs(1800)).await?;
    let installed = run_all(a, a.concurrency).await?;
    if installed != a.agents {
        return Err(format!(
            "first issuance: {installed} of {} installed",
            a.agents
        ));
    }
    println!(
        "first_issuance_secs={:.1} first_dns_updates={}",
        t.elapsed().as_secs_f64(),
        dns_updates(a) - u0
    );

    // The measured renewal.
    if let Some(cmd) = &a.between_rounds {
        let ok = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !ok {
            return Err(format!("--between-rounds failed: {cmd}"));
        }
    }
    let before = keys(a);
    for c in m.store.certs(None).await.map_err(|e| e.to_string())? {
        let serial = c.serial.clone().unwrap_or_default();
        m.store
            .mark_due(&c.agent, &c.cert_name, &serial, "benchmark")
            .await
            .map_err(|e| e.to_string())?;
    }
    let cpu0 = cpu::tree_ticks(a.manager_pid).ok_or("cannot read the manager's CPU time")?;
    let u0 = dns_updates(a);
    let t = Instant::now();
    run_all(a, a.concurrency).await?;
    let submitted = t.elapsed().as_secs_f64();
    all_issued(&m, a.agents, Duration::from_secs(1800)).await?;
    let issued = t.elapsed().as_secs_f64();
    let installed = run_all(a, a.concurrency).await?;
    let total = t.elapsed().as_secs_f64();
    let cpu1 = cpu::tree_ticks(a.manager_pid).ok_or("cannot read the manager's CPU time")?;
    let updates = dns_updates(a) - u0;
    if installed != a.agents {
        return Err(format!("renewal: {installed} of {} installed", a.agents));
    }
    let after = keys(a);
    let same = before.iter().zip(&after).filter(|(b, a)| b == a).count();
    if same > 0 {
        return Err(format!("{same} agents kept their key across renewal"));
    }
    let (_, hwm) = rss::read(a.manager_pid).ok_or("cannot read the manager's memory")?;
    println!(
        "renewed={installed} new_keys={} renewal_secs={total:.1} csrs_sent_secs={submitted:.1} all_issued_secs={issued:.1} certs_per_sec={:.1}",
        a.agents - same,
        a.agents as f64 / total
    );
    println!(
        "dns_updates={updates} dns_updates_per_cert={:.3} manager_cpu_ms_per_cert={:.2} manager_peak_rss_mib={:.1}",
        updates as f64 / a.agents as f64,
        (cpu1 - cpu0) as f64 * 10.0 / a.agents as f64,
        hwm as f64 / 1024.0
    );
    if a.peer_certs > 0 {
        let (secs, updates, rate) = peer(a).await?;
        println!(
            "peer=standalone-clients certs={} secs={secs:.1} certs_per_sec={rate:.1} dns_updates={updates} dns_updates_per_cert={:.3}",
            a.peer_certs,
            updates as f64 / a.peer_certs as f64
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sceau-fleetbench: {e}");
            ExitCode::FAILURE
        }
    }
}
