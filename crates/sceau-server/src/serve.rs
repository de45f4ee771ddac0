//! `serve`: prepares the data directory, CA, database and validator, then runs the HTTPS
//! listener. Start-up output names the directory URL, the root certificate and its
//! fingerprint, so that a newcomer can point a client at it at once.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use sceau_acme::{Acme, AcmeConfig, EabMode};
use sceau_ca::remote::RemoteSigner;
use sceau_ca::{CaKeyKind, FileCa, Signer};
use sceau_validate::{Validator, ValidatorConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::{CommonArgs, ServeArgs, http};

/// The longest validity `--allow-long-validity` permits.
const LONG_VALIDITY_DAYS: u64 = 397;

pub fn resolve_config(common: &CommonArgs, args: &ServeArgs) -> Result<Config, String> {
    let mut c = Config::load(common.config.as_deref())?;
    if let Some(v) = &common.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = args.listen {
        c.listen = v;
    }
    if let Some(v) = &args.base_url {
        c.base_url = Some(v.clone());
    }
    if let Some(v) = args.dns_server {
        c.dns_server = Some(v);
    }
    if let Some(v) = args.http01_port {
        c.http01_port = v;
    }
    if let Some(v) = args.tlsalpn01_port {
        c.tlsalpn01_port = v;
    }
    if let Some(v) = &args.eab {
        c.eab = v.clone();
    }
    if let Some(v) = &args.ca_key {
        c.ca_key = v.clone();
    }
    if let Some(v) = args.cert_validity_days {
        c.cert_validity_days = v;
    }
    if args.allow_long_validity {
        c.allow_long_validity = true;
    }
    if args.allow_wildcards {
        c.allow_wildcards = true;
    }
    if let Some(v) = &args.terms_of_service {
        c.terms_of_service = Some(v.clone());
    }
    if let Some(v) = &args.database {
        c.database = Some(v.clone());
    }
    if let Some(v) = &args.log_format {
        c.log_format = v.clone();
    }
    if let Some(v) = &args.database_url_file {
        c.database_url_file = Some(v.clone());
    }
    c.validation_allow
        .extend(args.validation_allow.iter().cloned());
    c.validation_deny
        .extend(args.validation_deny.iter().cloned());
    c.allow_local_identifiers |= args.allow_local_identifiers;
    c.allow_server_names |= args.allow_server_names;
    macro_rules! set {
        ($($field:ident),* $(,)?) => {$(
            if let Some(v) = &args.$field {
                c.$field = v.clone();
            }
        )*};
    }
    set!(
        max_connections,
        max_connections_per_address,
        handshake_timeout_secs,
        header_timeout_secs,
        idle_timeout_secs,
        body_timeout_secs,
        min_body_rate,
        max_body_bytes,
        limit_accounts_per_address,
        limit_orders_per_account,
        limit_names_per_account,
        limit_pending_authzs_per_account,
        limit_eab_failures_per_key,
        limit_nonces_per_address,
    );
    Ok(c)
}

fn eab_mode(text: &str) -> Result<EabMode, String> {
    match text {
        "off" => Ok(EabMode::Off),
        "optional" => Ok(EabMode::Optional),
        "required" => Ok(EabMode::Required),
        other => Err(format!(
            "--eab must be off, optional or required, not {other:?}"
        )),
    }
}

fn init_logging(format: &str) -> Result<(), String> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SCEAU_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => return Err(format!("--log-format must be text or json, not {other:?}")),
    }
    Ok(())
}

pub fn run(common: CommonArgs, args: ServeArgs) -> Result<(), String> {
    let config = resolve_config(&common, &args)?;
    init_logging(&config.log_format)?;
    let eab = eab_mode(&config.eab)?;
    let ca_kind: CaKeyKind = config
        .ca_key
        .parse()
        .map_err(|e| format!("--ca-key: {e}"))?;
    let max_days = if config.allow_long_validity {
        LONG_VALIDITY_DAYS
    } else {
        90
    };
    if config.cert_validity_days == 0 || config.cert_validity_days > max_days {
        return Err(if config.allow_long_validity {
            format!("--cert-validity-days must be between 1 and {LONG_VALIDITY_DAYS}")
        } else {
            "--cert-validity-days must be between 1 and 90 (agency guide R39); a longer validity needs --allow-long-validity".into()
        });
    }
    create_data_dir(&config.data_dir)?;

    let mut tls_names = vec![config.listen.ip().to_string(), "localhost".to_owned()];
    // The base URL's host, if any, must be in the listener's certificate too.
    let host = config
        .base_url
        .as_deref()
        .and_then(|u| u.split("://").nth(1))
        .and_then(|r| r.split([':', '/']).next());
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        tls_names.push(host.to_owned());
    }
    tls_names.extend(config.tls_names.iter().cloned());
    tls_names.sort();
    tls_names.dedup();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        // The CA keys live only in the signing service, a child process (see sceau_ca::remote).
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("sign-service")
            .arg("--data-dir")
            .arg(&config.data_dir)
            .arg("--ca-key")
            .arg(ca_kind.name())
            .arg("--organization")
            .arg(&config.organization)
            .arg("--max-validity-days")
            .arg(max_days.to_string());
        if config.allow_wildcards {
            command.arg("--allow-wildcards");
        }
        let ca = Arc::new(
            RemoteSigner::spawn(command)
                .await
                .map_err(|e| format!("CA: {e}"))?,
        );
        let tls_cert = Arc::new(ReloadingCert::new(certified_key(&ca, &tls_names).await?));
        let store = sceau_store::Store::open(&config.database_url())
            .await
            .map_err(|e| format!("database: {e}"))?;
        let validator = Validator::new(ValidatorConfig {
            dns_server: config.dns_server,
            http01_port: config.http01_port,
            tlsalpn01_port: config.tlsalpn01_port,
            timeout: Duration::from_secs(10),
            caa_identities: config.caa_identities.clone(),
        })
        .map_err(|e| format!("validator: {e}"))?;
        let mut acme_config = AcmeConfig::new(&config.base_url());
        acme_config.eab = eab;
        acme_config.terms_of_service = config.terms_of_service.clone();
        acme_config.website = config.website.clone();
        acme_config.caa_identities = config.caa_identities.clone();
        acme_config.cert_validity = Duration::from_secs(config.cert_validity_days * 86400);
        acme_config.refuse_key_reuse = config.refuse_key_reuse;
        acme_config.allow_wildcards = config.allow_wildcards;
        acme_config.validation_wait = Duration::from_millis(config.validation_wait_ms);
        let fingerprint = ca.hello().root_fingerprint_sha256.clone();
        let signer: Arc<dyn Signer> = ca.clone();
        tokio::spawn(renew_server_cert(
            ca.clone(),
            tls_names.clone(),
            tls_cert.clone(),
        ));
        let policy = crate::admin::server_policy(&config, eab, &store, &mut acme_config).await?;
        let acme = Acme::new(acme_config, store, signer, validator, policy);
        let (challenges, orders) = acme.recover().await.map_err(|e| format!("recovery: {e}"))?;
        if challenges + orders > 0 {
            tracing::info!(
                challenges,
                orders,
                "resumed work interrupted by the last stop"
            );
        }

        let tls = tls_acceptor(tls_cert)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let root = config.data_dir.join("root.pem");
        println!("sceau-server is ready");
        println!("  directory:   {}", acme.urls.directory());
        println!("  root CA:     {}", root.display());
        println!("  fingerprint: SHA-256 {fingerprint}");
        println!("  database:    {}", config.database_url());
        serve_https(listener, tls, http::router(acme)).await
    })
}

/// The server's own HTTPS certificate, swapped in place when it is renewed.
#[derive(Debug)]
struct ReloadingCert {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ReloadingCert {
    fn new(key: rustls::sign::CertifiedKey) -> Self {
        ReloadingCert {
            current: std::sync::RwLock::new(Arc::new(key)),
        }
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.read().expect("cert lock").clone())
    }
}

/// Issues (or reuses, while it has over 30 days left) the listener's certificate.
async fn certified_key(
    ca: &RemoteSigner,
    names: &[String],
) -> Result<rustls::sign::CertifiedKey, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (chain_pem, key_pem) = ca
        .server_tls(names)
        .await
        .map_err(|e| format!("server TLS certificate: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("server key: {e}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("server key: {e}"))?;
    Ok(rustls::sign::CertifiedKey::new(certs, signing))
}

/// Twice a day, renews the listener's certificate when it nears expiry; a failure is logged
/// and retried, the current certificate stays in use.
async fn renew_server_cert(ca: Arc<RemoteSigner>, names: Vec<String>, cert: Arc<ReloadingCert>) {
    loop {
        tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
        match certified_key(&ca, &names).await {
            Ok(key) => *cert.current.write().expect("cert lock") = Arc::new(key),
            Err(e) => tracing::error!(error = %e, "could not renew the server's TLS certificate"),
        }
    }
}

/// `sign-service`: opens (or creates) the CA and answers signing requests on stdin/stdout.
pub fn run_sign_service(
    data_dir: &std::path::Path,
    ca_key: &str,
    organization: &str,
    max_validity_days: u64,
    allow_wildcards: bool,
) -> Result<(), String> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SCEAU_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let kind: CaKeyKind = ca_key.parse().map_err(|e| format!("--ca-key: {e}"))?;
    let mut ca =
        FileCa::open_or_create(data_dir, kind, organization).map_err(|e| format!("CA: {e}"))?;
    ca.set_allow_wildcards(allow_wildcards);
    ca.set_max_leaf_validity(time::Duration::days(
        max_validity_days.min(LONG_VALIDITY_DAYS) as i64,
    ));
    sceau_ca::remote::serve_stdio(&ca, data_dir).map_err(|e| format!("signing service: {e}"))
}

fn tls_acceptor(cert: Arc<ReloadingCert>) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

async fn serve_https(
    listener: TcpListener,
    tls: TlsAcceptor,
    router: axum::Router,
) -> Result<(), String> {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let service = http::with_client_addr(router.clone(), peer);
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(service);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
}

/// Creates the data directory (and its parents) 0700 if it is missing; `serve` and the admin
/// commands share it.
pub(crate) fn create_data_dir(dir: &std::path::Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))
}
