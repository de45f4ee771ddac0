//! `sceau-server validator`: a remote perspective (agency guide R28, BR §3.2.2.9). It runs the
//! checks a primary asks for — http-01, dns-01, tls-alpn-01 and CAA — from its own network
//! segment with its own resolver, and answers with its perspective name.
//!
//! Invariants:
//! - Only a peer whose client certificate chains to the validation CA (`--tls-ca`) gets past
//!   the TLS handshake (TLS 1.3); the validator holds no CA key, no database and no secret of
//!   the primary's.
//! - Its resolver is its own: `--dns-server` or the system's, nothing cached (see
//!   `sceau_validate`), so one poisoned cache never speaks for two perspectives.
//! - Its connections go only where its own address policy allows (`--validation-allow`,
//!   `--validation-deny` on top of the default refusals of loopback, link-local and the
//!   validator's own addresses).
//! - The listener has the ACME listener's limits and deadlines; a request body is read within
//!   [`BODY_TIMEOUT`] and up to [`MAX_REQUEST`] bytes; a check takes at most `--timeout-secs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sceau_validate::perspectives::{CHECK_PATH, CheckAnswer, CheckRequest};
use sceau_validate::{Validator, ValidatorConfig};

use crate::listener;

/// The largest check request read.
pub const MAX_REQUEST: usize = 16 * 1024;
/// How long a request body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct ValidatorArgs {
    /// This perspective's name, as the primary's `[[perspectives.remote]]` entry names it
    #[arg(long)]
    pub name: String,
    /// Address of the HTTPS listener the primary reaches
    #[arg(long)]
    pub listen: SocketAddr,
    /// The validation CA: only primaries with a client certificate it issued are served
    #[arg(long)]
    pub tls_ca: PathBuf,
    /// This validator's server certificate (chain, PEM), issued by the validation CA for the
    /// host name in the primary's URL
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Its private key (PEM, mode 0600)
    #[arg(long)]
    pub tls_key: PathBuf,
    /// Every DNS lookup goes to this server [default: the system resolver]
    #[arg(long)]
    pub dns_server: Option<SocketAddr>,
    /// Port of http-01 requests
    #[arg(long, default_value_t = 80)]
    pub http01_port: u16,
    /// Port of tls-alpn-01 connections
    #[arg(long, default_value_t = 443)]
    pub tlsalpn01_port: u16,
    /// Budget of one check (DNS, connection, transfer)
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
    /// A network checks may connect to although the default refuses it; repeat for more
    #[arg(long = "validation-allow", value_name = "NET")]
    pub validation_allow: Vec<String>,
    /// A network checks never connect to; repeat for more
    #[arg(long = "validation-deny", value_name = "NET")]
    pub validation_deny: Vec<String>,
    /// Log format: text or json
    #[arg(long, default_value = "text")]
    pub log_format: String,
}

struct Role {
    name: String,
    validator: Validator,
}

pub fn run(args: ValidatorArgs) -> Result<(), String> {
    crate::serve::init_logging(&args.log_format)?;
    if args.name.trim().is_empty() || args.name.len() > 64 {
        return Err("--name must be 1 to 64 characters".into());
    }
    if args.timeout_secs == 0 {
        return Err("--timeout-secs must be at least 1".into());
    }
    let policy = crate::serve::address_policy(
        args.listen.ip(),
        &args.validation_allow,
        &args.validation_deny,
    )?;
    let acceptor = crate::signer_tls::acceptor(&crate::signer_tls::TlsFiles {
        label: "tls",
        ca: &args.tls_ca,
        cert: &args.tls_cert,
        key: &args.tls_key,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async move {
        let validator = Validator::new(ValidatorConfig {
            dns_server: args.dns_server,
            http01_port: args.http01_port,
            tlsalpn01_port: args.tlsalpn01_port,
            timeout: Duration::from_secs(args.timeout_secs),
            caa_identities: Vec::new(),
            address_policy: policy,
        })
        .map_err(|e| format!("validator: {e}"))?;
        let defaults = crate::config::Config::default();
        let settings = listener::Settings::from_config(&defaults).map_err(|e| e.to_string())?;
        listener::reserve_descriptors(&settings, 1).map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {} (--listen): {e}", args.listen))?;
        let role = Arc::new(Role {
            name: args.name.clone(),
            validator,
        });
        let router = axum::Router::new()
            .route(CHECK_PATH, post(check))
            .route("/livez", get(|| async { "ok\n" }))
            .with_state(role);
        println!(
            "sceau-server validator {:?} is ready on https://{}",
            args.name, args.listen
        );
        tracing::info!(perspective = %args.name, listen = %args.listen, "validator ready");
        listener::serve_https(
            tcp,
            acceptor,
            router,
            settings,
            crate::serve::shutdown_signal(),
        )
        .await;
        Ok(())
    })
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

async fn check(State(role): State<Arc<Role>>, body: Body) -> Response {
    let bytes =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_REQUEST)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the check request is too large or was cut short",
                );
            }
            Err(_) => {
                return refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "the check request was too slow",
                );
            }
        };
    let req: CheckRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("not a check request: {e}"),
            );
        }
    };
    let started = std::time::Instant::now();
    let result = role.validator.check(&req).await;
    tracing::info!(
        perspective = %role.name,
        identifier = %req.identifier.value,
        challenge = req.challenge.name(),
        caa = req.caa.is_some(),
        ok = result.is_ok(),
        error = result.as_ref().err().map(|e| e.detail.as_str()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "check"
    );
    axum::Json(CheckAnswer::from_result(&role.name, &result)).into_response()
}
