//! `sceau-server`: the ACME certificate authority of Sceau.
//!
//! `sceau-server serve` with no argument runs on its embedded defaults: `./sceau-data` with a
//! SQLite database, a generated root and issuing CA, and an HTTPS listener on 127.0.0.1:14000.

mod admin;
mod admin_cert;
mod admin_star;
mod ca_cli;
mod config;
mod console_cli;
mod http;
mod listener;
mod metrics_http;
mod ocsp_http;
mod revocation_http;
mod serve;
mod sign_service;
mod signer_tls;
mod validator_role;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sceau-server",
    version,
    about = "ACME (RFC 8555) certificate authority for private networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Data directory: database, CA keys and certificates [default: ./sceau-data]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file; flags override its settings
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address of the HTTPS listener [default: 127.0.0.1:14000]
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Public base URL, if clients reach the server under another name [default: https://<listen>]
    #[arg(long)]
    pub base_url: Option<String>,
    /// DNS server used for every validation lookup (A/AAAA, TXT, CAA), HOST:PORT
    #[arg(long)]
    pub dns_server: Option<std::net::SocketAddr>,
    /// Port http-01 validation connects to [default: 80]
    #[arg(long)]
    pub http01_port: Option<u16>,
    /// Port tls-alpn-01 validation connects to [default: 443]
    #[arg(long)]
    pub tlsalpn01_port: Option<u16>,
    /// External account binding: off, optional or required [default: required]
    #[arg(long)]
    pub eab: Option<String>,
    /// CA key type when serve creates the CA itself: p256, p384, rsa3072 or rsa4096 [default: p256]
    #[arg(long)]
    pub ca_key: Option<String>,
    /// Validity of issued certificates in days [default: 90; at most 90 unless --allow-long-validity]
    #[arg(long)]
    pub cert_validity_days: Option<u64>,
    /// Allow a validity above the agency guide's 90 days (R39), up to 397 days
    #[arg(long)]
    pub allow_long_validity: bool,
    /// Allow wildcard names (R42's exception): validated with dns-01 only, and with EAB only
    /// for accounts whose external account allows them
    #[arg(long)]
    pub allow_wildcards: bool,
    /// Terms of service URL announced in the directory; clients must agree to it
    #[arg(long)]
    pub terms_of_service: Option<String>,
    /// Database: "sqlite" (in the data directory) or a postgres:// URL
    #[arg(long)]
    pub database: Option<String>,
    /// Log format: text or json
    #[arg(long)]
    pub log_format: Option<String>,
    /// Milliseconds finalize waits for its certificate before answering "processing" [default: 5000]
    #[arg(long, value_name = "MS")]
    pub issuance_wait_ms: Option<u64>,
    /// Seconds an order may take to be signed, retries included, before it is invalid [default: 600]
    #[arg(long, value_name = "SECS")]
    pub issuance_deadline_secs: Option<u64>,
    /// Seconds an instance holds an issuance without renewing its lease [default: 15]
    #[arg(long, value_name = "SECS")]
    pub issuance_lease_secs: Option<u64>,

    // ---- revocation status for relying parties (CRLs, OCSP; see docs/revocation.md) ----
    /// Plain-HTTP listener for CRLs and OCSP [default: 127.0.0.1:14080]
    #[arg(long, value_name = "ADDR")]
    pub revocation_listen: Option<std::net::SocketAddr>,
    /// Base URL of the CRL distribution points and the OCSP responder put in certificates
    /// [default: http://<revocation-listen>]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// CRL shards per issuer: each certificate is on one of them [default: 16]
    #[arg(long, value_name = "N")]
    pub crl_shards: Option<u32>,
    /// Seconds between two CRLs of a shard at most (a revocation brings the next one within
    /// seconds) [default: 3600]
    #[arg(long, value_name = "SECS")]
    pub crl_update_secs: Option<u64>,
    /// Seconds from a CRL's thisUpdate to its nextUpdate, at least twice the update period
    /// [default: 86400]
    #[arg(long, value_name = "SECS")]
    pub crl_validity_secs: Option<u64>,
    /// Seconds an expired certificate stays on its CRL [default: 86400]
    #[arg(long, value_name = "SECS")]
    pub crl_lookback_secs: Option<u64>,
    /// Also write every CRL to DIR/<issuer>/<shard>.crl, for a web server to publish
    #[arg(long, value_name = "DIR")]
    pub crl_dir: Option<PathBuf>,
    /// Leave the OCSP responder URL out of new certificates (in them by default, R43–R45)
    #[arg(long)]
    pub no_ocsp_url: bool,
    /// Seconds from an OCSP response's thisUpdate to its nextUpdate; responses are signed
    /// again at half of it [default: 345600, 4 days]
    #[arg(long, value_name = "SECS")]
    pub ocsp_validity_secs: Option<u64>,
    /// Run as a staging CA (agency guide R53, R54): its own CA, whose names and certificates
    /// say TEST; needs a data directory of its own
    #[arg(long)]
    pub staging: bool,
    /// File holding the database URL (0600), for a PostgreSQL URL with a password; also
    /// SCEAU_DATABASE_URL. A password is never accepted on the command line.
    #[arg(long, value_name = "FILE")]
    pub database_url_file: Option<PathBuf>,
    /// File holding the signing process's own database URL (0600): its least-privilege role,
    /// which reads only what its signing gate checks (R33) [default: the server's URL]
    #[arg(long, value_name = "FILE")]
    pub signer_database_url_file: Option<PathBuf>,
    /// A signer of its own (R31–R34): the Unix socket `sceau-server signer` listens on and
    /// `serve` connects to, instead of starting its signing process as its child
    #[arg(long, value_name = "PATH")]
    pub signer_socket: Option<PathBuf>,
    /// The uid the signer must run as, checked from the socket's peer credentials (serve)
    #[arg(long, value_name = "UID")]
    pub signer_uid: Option<u32>,
    /// A uid whose front end the signer serves; repeat for more (signer)
    #[arg(long = "signer-allowed-uid", value_name = "UID")]
    pub signer_allowed_uids: Vec<u32>,
    /// A signer on another host (R32): the address `signer` listens on for front ends over
    /// mutual TLS (signer)
    #[arg(long, value_name = "ADDR")]
    pub signer_listen: Option<std::net::SocketAddr>,
    /// The signer on another host, host:port, reached over mutual TLS (serve)
    #[arg(long, value_name = "HOST:PORT")]
    pub signer_address: Option<String>,
    /// The deployment CA that certifies both ends of the mutual-TLS link to the signer
    #[arg(long, value_name = "FILE")]
    pub signer_tls_ca: Option<PathBuf>,
    /// This end's certificate for the link to the signer (its chain, PEM)
    #[arg(long, value_name = "FILE")]
    pub signer_tls_cert: Option<PathBuf>,
    /// This end's key for the link to the signer (PEM, mode 0600)
    #[arg(long, value_name = "FILE")]
    pub signer_tls_key: Option<PathBuf>,

    // ---- what validation may reach (see docs/security.md) ----
    /// A network validation may connect to although the default refuses it (loopback,
    /// link-local, the server's own addresses), e.g. 127.0.0.0/8 in a lab; repeat for more
    #[arg(long = "validation-allow", value_name = "NET")]
    pub validation_allow: Vec<String>,
    /// A network validation never connects to, on top of the default refusals; repeat for more
    #[arg(long = "validation-deny", value_name = "NET")]
    pub validation_deny: Vec<String>,
    /// Accept identifiers for localhost, loopback and link-local addresses (refused by default)
    #[arg(long)]
    pub allow_local_identifiers: bool,
    /// Accept identifiers that are names of the server's own HTTPS certificate (refused by default)
    #[arg(long)]
    pub allow_server_names: bool,

    // ---- connection limits and timeouts ----
    /// Most connections open at once [default: 4096]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address [default: 256]
    #[arg(long, value_name = "N")]
    pub max_connections_per_address: Option<usize>,
    /// Seconds a client has to complete the TLS handshake [default: 10]
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's headers [default: 10]
    #[arg(long, value_name = "SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds an idle connection stays open between requests [default: 30]
    #[arg(long, value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's body [default: 10]
    #[arg(long, value_name = "SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Slowest accepted request body, in bytes per second after the first second [default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub min_body_rate: Option<u64>,
    /// Largest accepted request body in bytes [default: 65536]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    // ---- rate limits: COUNT/PERIOD (e.g. 50/1h; s, m, h, d), or "off" ----
    /// New ACME accounts per client address [default: 50/1h]
    #[arg(long, value_name = "RATE")]
    pub limit_accounts_per_address: Option<String>,
    /// New orders per ACME account [default: 300/1h]
    #[arg(long, value_name = "RATE")]
    pub limit_orders_per_account: Option<String>,
    /// New authorizations (names to validate) per ACME account [default: 1000/1h]
    #[arg(long, value_name = "RATE")]
    pub limit_names_per_account: Option<String>,
    /// Pending authorizations one ACME account may hold at once, or "off" [default: 1000]
    #[arg(long, value_name = "N")]
    pub limit_pending_authzs_per_account: Option<String>,
    /// R9: days after which an external account's MAC key binds no new ACME account until it
    /// is regenerated; 0: no limit [default: 0]
    #[arg(long, value_name = "DAYS")]
    pub eab_max_key_age_days: Option<u64>,
    /// Failed external account bindings per EAB key id [default: 10/1h]
    #[arg(long, value_name = "RATE")]
    pub limit_eab_failures_per_key: Option<String>,
    /// New nonces per client address [default: 2000/10s]
    #[arg(long, value_name = "RATE")]
    pub limit_nonces_per_address: Option<String>,

    /// Plain-HTTP listener of /metrics (Prometheus), /livez and /readyz for operators
    /// [default: none]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    // ---- the web console (see docs/console.md) ----
    /// HTTPS listener of the web console [default: none, no console]
    #[arg(long, value_name = "ADDR")]
    pub console_listen: Option<std::net::SocketAddr>,
    /// Failed console logins per user name [default: 5/15m]
    #[arg(long, value_name = "RATE")]
    pub limit_console_failures_per_user: Option<String>,
    /// Failed console logins per client address [default: 20/15m]
    #[arg(long, value_name = "RATE")]
    pub limit_console_failures_per_address: Option<String>,

    // ---- STAR, short-term automatically renewed certificates (RFC 8739; docs/star.md) ----
    /// Shortest lifetime a STAR order may ask for (90s, 30m, 1h, 1d…) [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub star_min_lifetime: Option<String>,
    /// Longest span from a STAR series' start to its end-date [default: 1y]
    #[arg(long, value_name = "DURATION")]
    pub star_max_duration: Option<String>,
    /// Whether a STAR order may agree to unauthenticated GET of its certificate (RFC 8739
    /// §3.4): true or false [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub star_allow_certificate_get: Option<bool>,
}

// `serve` carries every setting: the enum is parsed once, its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the ACME server
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Manage external admin accounts (EAB) and ACME accounts; works while `serve` runs
    Admin(admin::AdminArgs),
    /// The web console's users: create operators, list users
    Console(console_cli::ConsoleArgs),
    /// The CA: create it (dedicated or delegated), import its certificate, rotate its key, show it
    Ca(ca_cli::CaArgs),
    /// Run the signing service on its own, as its own OS user, for front ends (`serve
    /// --signer-socket`) of other users: the only process holding CA keys (R31–R34)
    Signer {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Run a remote validation perspective (R28): the checks a primary asks for, from this
    /// network segment with this host's resolver, over mutual TLS
    Validator(validator_role::ValidatorArgs),
    /// The signing service `serve` starts as its child: the only process holding CA keys
    #[command(hide = true)]
    SignService {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        ca_key: String,
        #[arg(long)]
        organization: String,
        #[arg(long, default_value_t = 90)]
        max_validity_days: u64,
        #[arg(long)]
        allow_wildcards: bool,
        #[arg(long)]
        allow_local_identifiers: bool,
        #[arg(long)]
        staging: bool,
        #[arg(long)]
        public_url: Option<String>,
        #[arg(long)]
        no_ocsp_url: bool,
        /// RA mode: the server's TOML file, whose `[ra]` names the upstream CA
        #[arg(long)]
        ra_config: Option<PathBuf>,
        /// The server's EAB mode, which the signing gate applies too
        #[arg(long, default_value = "required")]
        eab: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { common, args } => serve::run(common, args),
        Command::Admin(args) => admin::run(args),
        Command::Ca(args) => ca_cli::run(args),
        Command::Console(args) => console_cli::run(args),
        Command::Signer { common, args } => sign_service::run_socket_signer(common, args),
        Command::Validator(args) => validator_role::run(args),
        Command::SignService {
            data_dir,
            ca_key,
            organization,
            max_validity_days,
            allow_wildcards,
            allow_local_identifiers,
            staging,
            public_url,
            no_ocsp_url,
            ra_config,
            eab,
        } => sign_service::run_sign_service(sign_service::SignServiceArgs {
            data_dir,
            ca_key,
            organization,
            max_validity_days,
            allow_wildcards,
            allow_local_identifiers,
            staging,
            public_url,
            ocsp_in_leaves: !no_ocsp_url,
            ra_config,
            eab,
            mac_keys: false,
            max_key_age: None,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sceau-server: {message}");
            ExitCode::FAILURE
        }
    }
}
