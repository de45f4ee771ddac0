//! Command-line syntax. Secrets (EAB MAC key, TSIG secret) are only ever read from files or
//! the environment, never from arguments, which other users can see in `ps`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sceau",
    version,
    about = "ACME client: issue, renew, revoke and monitor certificates"
)]
pub struct Cli {
    /// Accounts and managed-certificate settings [default: /var/lib/sceau for root,
    /// $XDG_DATA_HOME/sceau otherwise]
    #[arg(long, global = true, env = "SCEAU_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where certificates are installed [default: <state-dir>/live]
    #[arg(long, global = true, env = "SCEAU_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Event log (JSON lines): a file, or `-` for stderr [default: <state-dir>/events.jsonl]
    #[arg(long, global = true, env = "SCEAU_EVENT_LOG")]
    pub event_log: Option<String>,
    /// No progress messages
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Debug logging (also RUST_LOG)
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the ACME account of a server
    #[command(subcommand)]
    Account(AccountCmd),
    /// Obtain a certificate and manage it from now on
    Issue(Box<IssueArgs>),
    /// Renew every managed certificate that is due
    Renew(RenewArgs),
    /// Revoke a certificate
    Revoke(RevokeArgs),
    /// Show managed certificates; non-zero exit when one expires within --warn-days
    Status(StatusArgs),
    /// Short-term certificates the CA renews by itself (STAR, RFC 8739)
    #[command(subcommand)]
    Star(StarCmd),
    /// Fleet mode: the manager that obtains certificates for many machines' agents
    #[command(subcommand)]
    Manager(crate::fleet::ManagerCmd),
    /// Fleet mode: this machine's agent (keys stay here; the manager answers dns-01)
    #[command(subcommand)]
    Agent(crate::fleet::AgentCmd),
}

#[derive(Debug, Subcommand)]
pub enum StarCmd {
    /// Order a STAR series: the CA issues a new certificate for the same key every
    /// --lifetime until --until
    Order(Box<StarOrderArgs>),
    /// Fetch the current certificate of each series and install it when it is new
    Fetch(StarSelect),
    /// Keep fetching until every series has ended (run it as a service)
    Watch(StarWatchArgs),
    /// Ask the CA to stop a series (RFC 8739 §3.1.2)
    Cancel {
        /// The series (its certificate name)
        #[arg(long, required = true)]
        cert_name: Vec<String>,
    },
    /// Show the STAR series and their current certificates
    List {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct StarOrderArgs {
    #[command(flatten)]
    pub issue: IssueArgs,
    /// How long each certificate of the series lives, e.g. 1d, 12h
    #[arg(long)]
    pub lifetime: String,
    /// When the series ends: an RFC 3339 time, a date (midnight UTC), or a duration from
    /// now such as 30d
    #[arg(long)]
    pub until: String,
    /// When the first certificate starts (same forms as --until) [default: now]
    #[arg(long)]
    pub start: Option<String>,
    /// Pre-date each certificate's notBefore by this much, for clients with skewed clocks
    /// (RFC 8739 §3.1.1)
    #[arg(long)]
    pub lifetime_adjust: Option<String>,
    /// Let the certificates be fetched without the account key (RFC 8739 §3.4), for a
    /// machine that only holds the certificate key
    #[arg(long)]
    pub allow_certificate_get: bool,
}

#[derive(Debug, Args)]
pub struct StarSelect {
    /// Only these series (repeatable) [default: every active series]
    #[arg(long)]
    pub cert_name: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StarWatchArgs {
    #[command(flatten)]
    pub select: StarSelect,
    /// Longest wait between two fetches of a series, in seconds
    #[arg(long, default_value_t = 3600)]
    pub max_interval: u64,
}

#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// ACME directory URL
    #[arg(long, env = "SCEAU_SERVER")]
    pub server: String,
    /// PEM file with the CA certificate(s) that sign the ACME server's HTTPS certificate
    /// (instead of the system store)
    #[arg(long, env = "SCEAU_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct RegisterArgs {
    /// Contact URL, e.g. mailto:pki@example.org (repeatable)
    #[arg(long)]
    pub contact: Vec<String>,
    /// Agree to the server's terms of service
    #[arg(long)]
    pub agree_tos: bool,
    /// Account key type: p256, p384, ed25519, rsa2048, rsa3072, rsa4096
    #[arg(long, default_value = "p256")]
    pub account_key_type: String,
    /// File with the external account binding: `kid=…` and `hmac_key=…` lines (or the
    /// SCEAU_EAB_KID and SCEAU_EAB_HMAC_KEY environment variables)
    #[arg(long)]
    pub eab_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create (or find) the account for a server
    Register {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        register: RegisterArgs,
    },
    /// Show the account for a server
    Show {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Replace the account key with a new one (RFC 8555 §7.3.5)
    Rollover {
        #[command(flatten)]
        server: ServerArgs,
        /// Type of the new key
        #[arg(long, default_value = "p256")]
        account_key_type: String,
    },
    /// Deactivate the account for good (RFC 8555 §7.3.6)
    Deactivate {
        #[command(flatten)]
        server: ServerArgs,
        /// Confirm: this cannot be undone
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub register: RegisterArgs,
    /// DNS name or IP address to certify (repeatable)
    #[arg(long = "domain", short = 'd')]
    pub domains: Vec<String>,
    /// Name of the certificate (its directory) [default: the first name]
    #[arg(long)]
    pub cert_name: Option<String>,
    /// Challenge method for every name: http, webroot, dns, dns-hook, tls-alpn
    /// [default: inferred from the options given, else http]
    #[arg(long)]
    pub method: Option<String>,
    /// Per-name method, NAME=METHOD (METHOD as in --method; repeatable)
    #[arg(long = "method-for", value_name = "NAME=METHOD")]
    pub method_for: Vec<String>,
    /// http-01 listener port (use a high port behind a redirect to run unprivileged)
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// http-01 through files under DIR/.well-known/acme-challenge/
    #[arg(long)]
    pub webroot: Option<PathBuf>,
    /// dns-01 through RFC 2136 updates sent to this server (IP:PORT)
    #[arg(long, value_name = "SERVER:PORT")]
    pub dns_update: Option<SocketAddr>,
    /// TSIG key file for --dns-update (BIND, knot or name:secret format)
    #[arg(long)]
    pub tsig_key: Option<PathBuf>,
    /// Servers that must show the TXT record before the CA is asked [default: the zone's NS]
    #[arg(long = "dns-check", value_name = "SERVER:PORT")]
    pub dns_check: Vec<SocketAddr>,
    /// Seconds to wait for the TXT record to be visible
    #[arg(long, default_value_t = 120)]
    pub dns_timeout: u64,
    /// dns-01 through this program (see the SCEAU_* variables in the documentation)
    #[arg(long)]
    pub dns_hook: Option<PathBuf>,
    /// tls-alpn-01 listener port
    #[arg(long)]
    pub tls_alpn_port: Option<u16>,
    /// Address the http-01/tls-alpn-01 listeners bind [default: all]
    #[arg(long)]
    pub listen_address: Option<IpAddr>,
    /// Certificate key type: p256, p384, rsa2048, rsa3072, rsa4096
    #[arg(long, default_value = "p256")]
    pub key_type: String,
    /// Reuse the current private key instead of a fresh one (discouraged, logs a warning)
    #[arg(long)]
    pub reuse_key: bool,
    /// Have this CSR signed instead; its key stays where it was made
    #[arg(long, conflicts_with_all = ["reuse_key"])]
    pub csr: Option<PathBuf>,
    /// Command run (with sh -c) after each successful issuance or renewal
    #[arg(long)]
    pub deploy_hook: Option<String>,
    /// Renew once this fraction of the lifetime has passed
    #[arg(long, default_value_t = 2.0 / 3.0)]
    pub renew_fraction: f64,
    /// Previous versions kept in the archive folder
    #[arg(long, default_value_t = 3)]
    pub archive_keep: usize,
    /// Make privkey.pem 0640 so the certificate directory's group can read it
    #[arg(long)]
    pub group_readable: bool,
    /// ACME profile to ask for (draft-ietf-acme-profiles)
    #[arg(long)]
    pub profile: Option<String>,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// Only these certificates (repeatable) [default: all]
    #[arg(long)]
    pub cert_name: Vec<String>,
    /// Renew even if not due
    #[arg(long)]
    pub force: bool,
    /// Certificates renewed at the same time
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Wait a random 0..SECONDS before each renewal, to spread the load on the CA
    #[arg(long, default_value_t = 0)]
    pub jitter: u64,
    /// Override every certificate's renewal fraction
    #[arg(long)]
    pub renew_fraction: Option<f64>,
    /// Give up on one certificate after this many seconds
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// A managed certificate
    #[arg(long, required_unless_present = "cert")]
    pub cert_name: Option<String>,
    /// A certificate file (PEM), with --server
    #[arg(long, conflicts_with = "cert_name")]
    pub cert: Option<PathBuf>,
    /// Sign with the certificate's private key instead of the account key
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded,
    /// cessationOfOperation, … or its number
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long, env = "SCEAU_SERVER")]
    pub server: Option<String>,
    #[arg(long, env = "SCEAU_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Exit with status 1 when a certificate has fewer days left than this (or is missing)
    #[arg(long, default_value_t = 14)]
    pub warn_days: i64,
    /// JSON output
    #[arg(long)]
    pub json: bool,
}
