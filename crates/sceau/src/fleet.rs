//! `sceau manager …` and `sceau agent …`: fleet mode's command lines (the work is in
//! sceau-fleet). Exit status: 0 success; 1 a failure, one line on stderr; for `manager
//! status`, 3 when an alert holds (so a cron job or a monitoring check can act on it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use sceau_fleet::agent::{self, AgentCert, Outcome};
use sceau_fleet::manager::{self, AcmeConfig, DnsConfig, Manager, ManagerConfig, RenewalConfig};

#[derive(Debug, Subcommand)]
pub enum ManagerCmd {
    /// Create a manager: its configuration, HTTPS identity and ACME account
    Init(Box<ManagerInitArgs>),
    /// Run the manager (agents' HTTPS listener, issuance and renewal, metrics)
    Serve(ManagerDir),
    /// Invite, allow, revoke and list agents
    #[command(subcommand)]
    Agent(ManagerAgentCmd),
    /// Certificates, expiry and alerts (exit 3 while an alert holds)
    Status {
        #[command(flatten)]
        dir: ManagerDir,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Ask an agent for a new key and CSR now
    Renew {
        #[command(flatten)]
        dir: ManagerDir,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        cert_name: String,
    },
    /// Revoke an archived certificate at the CA
    Revoke {
        #[command(flatten)]
        dir: ManagerDir,
        /// Serial number (hex), as in `status` or the archive
        #[arg(long)]
        serial: String,
        /// RFC 5280 reason code (0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation)
        #[arg(long)]
        reason: Option<u8>,
    },
    /// Every certificate issued, newest first (`--pem SERIAL` prints one chain)
    Archive {
        #[command(flatten)]
        dir: ManagerDir,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        pem: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The audit trail
    Audit {
        #[command(flatten)]
        dir: ManagerDir,
        #[arg(long)]
        agent: Option<String>,
        /// Only events of the last SECONDS
        #[arg(long)]
        since_secs: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct ManagerDir {
    /// The manager's directory
    #[arg(
        long,
        env = "SCEAU_MANAGER_DIR",
        default_value = "/var/lib/sceau-manager"
    )]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ManagerInitArgs {
    #[command(flatten)]
    pub dir: ManagerDir,
    /// ACME directory URL of the CA
    #[arg(long)]
    pub server: String,
    /// Roots that sign the ACME server's HTTPS certificate
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    #[arg(long)]
    pub agree_tos: bool,
    #[arg(long)]
    pub contact: Vec<String>,
    /// External account binding file (`kid=…`, `hmac_key=…`)
    #[arg(long)]
    pub eab_file: Option<PathBuf>,
    /// Name (or address) agents reach the manager at (repeatable)
    #[arg(long, required = true)]
    pub hostname: Vec<String>,
    #[arg(long, default_value = "[::]:8555")]
    pub listen: SocketAddr,
    /// Prometheus endpoint, e.g. 127.0.0.1:9555
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Database URL [default: sqlite://DIR/fleet.db]
    #[arg(long)]
    pub database: Option<String>,
    /// RFC 2136 server for the dns-01 records (the primary of the zones)
    #[arg(long)]
    pub dns_server: Option<SocketAddr>,
    /// TSIG key file for the updates (BIND, knot or `[alg:]name:secret` format)
    #[arg(long)]
    pub tsig_key_file: Option<PathBuf>,
    /// Servers that must show the records before the CA is told (repeatable) [default: the NS]
    #[arg(long)]
    pub check_server: Vec<SocketAddr>,
    #[arg(long, default_value_t = 120)]
    pub propagation_timeout: u64,
    /// dns-01 hook program instead of RFC 2136
    #[arg(long)]
    pub dns_hook: Option<PathBuf>,
    /// ACME profile to ask for
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ManagerAgentCmd {
    /// Invite an agent: writes its one-time enrolment token to --token-file (0600)
    Add {
        #[command(flatten)]
        dir: ManagerDir,
        name: String,
        /// Name or *.zone the agent may have certificates for (repeatable)
        #[arg(long = "allow", required = true)]
        allow: Vec<String>,
        #[arg(long)]
        token_file: PathBuf,
        /// How long the token stays usable, in seconds
        #[arg(long, default_value_t = 86_400)]
        token_ttl: i64,
    },
    /// Replace the names an agent may have
    Allow {
        #[command(flatten)]
        dir: ManagerDir,
        name: String,
        #[arg(long = "allow", required = true)]
        allow: Vec<String>,
    },
    /// Revoke an agent: its client certificate is refused from now on
    Revoke {
        #[command(flatten)]
        dir: ManagerDir,
        name: String,
    },
    /// List agents
    List {
        #[command(flatten)]
        dir: ManagerDir,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Enrol this machine with a one-time token from the operator
    Enrol {
        #[command(flatten)]
        dir: AgentDir,
        /// The manager's URL, e.g. https://manager.example.org:8555
        #[arg(long)]
        manager: String,
        /// The manager's root (manager-ca.pem from the manager's tls/ directory)
        #[arg(long)]
        manager_ca: PathBuf,
        /// File holding the token
        #[arg(long)]
        token_file: PathBuf,
    },
    /// Keep a certificate (its key and CSR are made here, at every issuance)
    #[command(subcommand)]
    Cert(AgentCertCmd),
    /// Send due CSRs, install new certificates, run deploy hooks (run it from a timer)
    Run {
        #[command(flatten)]
        dir: AgentDir,
        /// Wait up to SECONDS for the manager to have each certificate signed
        #[arg(long, default_value_t = 120)]
        wait: u64,
        /// New keys and certificates now, even if nothing is due
        #[arg(long)]
        force_renew: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCertCmd {
    /// Add (or replace) a certificate
    Add {
        #[command(flatten)]
        dir: AgentDir,
        name: String,
        #[arg(long = "domain", short = 'd', required = true)]
        domains: Vec<String>,
        #[arg(long, default_value = "p256")]
        key_type: String,
        /// Shell command run after each installation (SCEAU_CERT_NAME, SCEAU_CERT_DIR, SCEAU_DOMAINS)
        #[arg(long)]
        deploy_hook: Option<String>,
        /// privkey.pem mode 0640 instead of 0600
        #[arg(long)]
        group_readable_key: bool,
    },
}

#[derive(Debug, Args)]
pub struct AgentDir {
    /// The agent's directory [default: /var/lib/sceau-agent for root, $XDG_DATA_HOME/sceau-agent otherwise]
    #[arg(long, env = "SCEAU_AGENT_DIR")]
    pub dir: Option<PathBuf>,
    /// Where certificates are installed [default: DIR/live]
    #[arg(long, env = "SCEAU_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
}

impl AgentDir {
    fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| {
            crate::ctx::default_state_dir()
                .parent()
                .map(|p| p.join("sceau-agent"))
                .unwrap_or_else(|| PathBuf::from("sceau-agent"))
        })
    }
    fn cert_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| self.dir().join("live"))
    }
}

type Res<T> = Result<T, String>;

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

async fn open(dir: &Path) -> Res<Manager> {
    Manager::open(dir).await.map_err(e)
}

fn when(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

pub async fn run_manager(cmd: &ManagerCmd) -> Res<u8> {
    match cmd {
        ManagerCmd::Init(a) => {
            let config = ManagerConfig {
                listen: a.listen,
                hostnames: a.hostname.clone(),
                database: a.database.clone(),
                metrics_listen: a.metrics_listen,
                max_connections_per_address: manager::http::MAX_PER_ADDRESS,
                acme: AcmeConfig {
                    server: a.server.clone(),
                    ca_bundle: a.ca_bundle.clone(),
                    profile: a.profile.clone(),
                },
                dns: DnsConfig {
                    update_server: a.dns_server,
                    tsig_key_file: a.tsig_key_file.clone(),
                    check_servers: a.check_server.clone(),
                    propagation_timeout_secs: a.propagation_timeout,
                    hook: a.dns_hook.clone(),
                },
                renewal: RenewalConfig::default(),
            };
            let eab = crate::account::read_eab(a.eab_file.as_deref()).map_err(e)?;
            manager::init(
                &a.dir.dir,
                &config,
                manager::InitOptions {
                    agree_tos: a.agree_tos,
                    contact: a.contact.clone(),
                    eab,
                },
            )
            .await
            .map_err(e)?;
            println!(
                "manager created in {}; give agents {}",
                a.dir.dir.display(),
                manager::Paths::new(&a.dir.dir).ca().display()
            );
            Ok(0)
        }
        ManagerCmd::Serve(d) => manager::serve(&d.dir).await.map(|_| 0).map_err(e),
        ManagerCmd::Agent(cmd) => run_manager_agent(cmd).await,
        ManagerCmd::Status { dir, json } => {
            let m = open(&dir.dir).await?;
            let r = manager::status::report(&m).await.map_err(e)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r).expect("serialises"));
            } else {
                print!("{}", manager::status::text(&r));
            }
            Ok(if r.alerts() > 0 { 3 } else { 0 })
        }
        ManagerCmd::Renew {
            dir,
            agent,
            cert_name,
        } => {
            let m = open(&dir.dir).await?;
            manager::admin::renew_now(&m, agent, cert_name)
                .await
                .map_err(e)?;
            println!("{agent}/{cert_name}: a new CSR is asked for at the agent's next run");
            Ok(0)
        }
        ManagerCmd::Revoke {
            dir,
            serial,
            reason,
        } => {
            let m = open(&dir.dir).await?;
            manager::admin::revoke_cert(&m, serial, *reason)
                .await
                .map_err(e)?;
            println!("{serial}: revoked");
            Ok(0)
        }
        ManagerCmd::Archive {
            dir,
            agent,
            pem,
            json,
        } => {
            let m = open(&dir.dir).await?;
            if let Some(serial) = pem {
                let a = m.store.archived(serial).await.map_err(|err| match err {
                    sceau_store::StoreError::NotFound => {
                        format!("no certificate {serial} in the archive")
                    }
                    err => err.to_string(),
                })?;
                print!("{}", a.chain_pem);
                return Ok(0);
            }
            let list = m.store.archive(agent.as_deref(), None).await.map_err(e)?;
            if *json {
                let v: Vec<_> = list
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "serial": a.serial, "agent": a.agent, "cert_name": a.cert_name,
                            "names": a.names, "not_before": a.not_before, "not_after": a.not_after,
                            "issued_at": a.issued_at, "picked_up_at": a.picked_up_at,
                            "revoked_at": a.revoked_at, "spki_sha256": a.spki_sha256,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
            } else {
                for a in list {
                    println!(
                        "{} {}/{} [{}] {} .. {}{}",
                        a.serial,
                        a.agent,
                        a.cert_name,
                        a.names.join(" "),
                        when(Some(a.not_before)),
                        when(Some(a.not_after)),
                        if a.revoked_at.is_some() {
                            " REVOKED"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(0)
        }
        ManagerCmd::Audit {
            dir,
            agent,
            since_secs,
        } => {
            let m = open(&dir.dir).await?;
            let since = since_secs.map_or(0, |s| sceau_store::now() - s);
            for ev in m
                .store
                .audit_events(agent.as_deref(), since)
                .await
                .map_err(e)?
            {
                println!(
                    "{} {} {} {}{} {}",
                    when(Some(ev.at)),
                    ev.actor,
                    ev.action,
                    ev.agent.unwrap_or_default(),
                    ev.cert_name.map(|c| format!("/{c}")).unwrap_or_default(),
                    ev.detail
                );
            }
            Ok(0)
        }
    }
}

async fn run_manager_agent(cmd: &ManagerAgentCmd) -> Res<u8> {
    match cmd {
        ManagerAgentCmd::Add {
            dir,
            name,
            allow,
            token_file,
            token_ttl,
        } => {
            let m = open(&dir.dir).await?;
            manager::admin::invite(&m, name, allow, token_file, *token_ttl)
                .await
                .map_err(e)?;
            println!(
                "agent {name} invited; its one-time token is in {} (give it to the machine, then delete it)",
                token_file.display()
            );
        }
        ManagerAgentCmd::Allow { dir, name, allow } => {
            let m = open(&dir.dir).await?;
            manager::admin::allow(&m, name, allow).await.map_err(e)?;
            println!("agent {name} may now have: {}", allow.join(", "));
        }
        ManagerAgentCmd::Revoke { dir, name } => {
            let m = open(&dir.dir).await?;
            manager::admin::revoke_agent(&m, name).await.map_err(e)?;
            println!("agent {name} revoked");
        }
        ManagerAgentCmd::List { dir, json } => {
            let m = open(&dir.dir).await?;
            let agents = m.store.agents().await.map_err(e)?;
            if *json {
                let v: Vec<_> = agents
                    .iter()
                    .map(|a| {
                        serde_json::json!({
                            "name": a.name, "status": a.status, "allowed": a.allowed,
                            "fingerprint": a.fingerprint, "enrolled_at": a.enrolled_at,
                            "revoked_at": a.revoked_at, "last_seen": a.last_seen,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
            } else {
                for a in agents {
                    println!(
                        "{} {} [{}] last seen {}",
                        a.name,
                        a.status,
                        a.allowed.join(" "),
                        when(a.last_seen)
                    );
                }
            }
        }
    }
    Ok(0)
}

pub async fn run_agent(cmd: &AgentCmd) -> Res<u8> {
    match cmd {
        AgentCmd::Enrol {
            dir,
            manager,
            manager_ca,
            token_file,
        } => {
            let info = agent::enrol(&dir.dir(), manager, manager_ca, token_file)
                .await
                .map_err(e)?;
            println!(
                "enrolled as {}; may have certificates for: {}",
                info.name,
                info.allowed.join(", ")
            );
            Ok(0)
        }
        AgentCmd::Cert(AgentCertCmd::Add {
            dir,
            name,
            domains,
            key_type,
            deploy_hook,
            group_readable_key,
        }) => {
            agent::add_cert(
                &dir.dir(),
                AgentCert {
                    name: name.clone(),
                    domains: domains.clone(),
                    key_type: key_type.clone(),
                    deploy_hook: deploy_hook.clone(),
                    group_readable: *group_readable_key,
                },
            )
            .map_err(e)?;
            println!("{name}: kept by this agent from its next run");
            Ok(0)
        }
        AgentCmd::Run {
            dir,
            wait,
            force_renew,
        } => {
            if crate::ctx::is_root() {
                eprintln!(
                    "sceau: warning: the agent needs no root privileges (R58); run it as the service's user"
                );
            }
            let results = agent::run(
                &dir.dir(),
                &dir.cert_dir(),
                Duration::from_secs(*wait),
                *force_renew,
            )
            .await;
            let mut failed = 0u8;
            for (name, r) in results {
                match r {
                    Ok(Outcome::Installed { serial }) => {
                        println!("{name}: certificate {serial} installed")
                    }
                    Ok(Outcome::UpToDate { serial }) => println!("{name}: up to date ({serial})"),
                    Ok(Outcome::Waiting) => {
                        println!("{name}: waiting for the manager; the next run installs it")
                    }
                    Err(err) => {
                        failed = failed.saturating_add(1);
                        eprintln!("sceau: error: {name}: {err}");
                    }
                }
            }
            Ok(u8::from(failed > 0))
        }
    }
}
