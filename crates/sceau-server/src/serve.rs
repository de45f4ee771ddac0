//! `serve`: prepares the data directory, CA, database and validator, then runs the HTTPS
//! listener. Start-up output names the directory URL, the root certificate and its
//! fingerprint, so that a newcomer can point a client at it at once.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use sceau_acme::identifier_policy::IdentifierPolicy;
use sceau_acme::limits::{Rate, RateLimits, parse_count};
use sceau_acme::scheduler::{Scheduler, Scope};
use sceau_acme::{Acme, AcmeConfig, EabMode};
use sceau_ca::remote::RemoteSigner;
use sceau_ca::{CaKeyKind, Signer};
use sceau_validate::{Validator, ValidatorConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::{CommonArgs, ServeArgs, http, listener};

/// The longest validity `--allow-long-validity` permits.
pub(crate) const LONG_VALIDITY_DAYS: u64 = 397;

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
    c.staging |= args.staging;
    if let Some(v) = args.revocation_listen {
        c.revocation_listen = v;
    }
    if let Some(v) = &args.public_url {
        c.public_url = Some(v.clone());
    }
    if let Some(v) = args.crl_shards {
        c.crl_shards = v;
    }
    if args.no_ocsp_url {
        c.ocsp_in_certificates = false;
    }
    if let Some(v) = &args.crl_dir {
        c.crl_dir = Some(v.clone());
    }
    if let Some(v) = &args.database_url_file {
        c.database_url_file = Some(v.clone());
    }
    if let Some(v) = &args.signer_database_url_file {
        c.signer_database_url_file = Some(v.clone());
    }
    if let Some(v) = &args.signer_socket {
        c.signer_socket = Some(v.clone());
    }
    if let Some(v) = args.signer_uid {
        c.signer_uid = Some(v);
    }
    c.signer_allowed_uids
        .extend(args.signer_allowed_uids.iter().copied());
    if let Some(v) = args.signer_listen {
        c.signer_listen = Some(v);
    }
    if let Some(v) = &args.signer_address {
        c.signer_address = Some(v.clone());
    }
    for (to, from) in [
        (&mut c.signer_tls_ca, &args.signer_tls_ca),
        (&mut c.signer_tls_cert, &args.signer_tls_cert),
        (&mut c.signer_tls_key, &args.signer_tls_key),
    ] {
        if let Some(v) = from {
            *to = Some(v.clone());
        }
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
        ocsp_validity_secs,
        crl_update_secs,
        crl_validity_secs,
        crl_lookback_secs,
        issuance_wait_ms,
        issuance_deadline_secs,
        issuance_lease_secs,
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
        limit_console_failures_per_user,
        limit_console_failures_per_address,
        eab_max_key_age_days,
        star_min_lifetime,
        star_max_duration,
    );
    if let Some(v) = args.star_allow_certificate_get {
        c.star_allow_certificate_get = v;
    }
    if let Some(v) = args.console_listen {
        c.console_listen = Some(v);
    }
    if let Some(v) = args.metrics_listen {
        c.metrics_listen = Some(v);
    }
    Ok(c)
}

pub(crate) fn eab_mode(text: &str) -> Result<EabMode, String> {
    match text {
        "off" => Ok(EabMode::Off),
        "optional" => Ok(EabMode::Optional),
        "required" => Ok(EabMode::Required),
        other => Err(format!(
            "--eab must be off, optional or required, not {other:?}"
        )),
    }
}

/// What validation may connect to (RFC 8555 §10.4): the default refusals, the operator's
/// networks, and the addresses this server listens on.
fn validation_targets(config: &Config) -> Result<sceau_validate::AddressPolicy, String> {
    address_policy(
        config.listen.ip(),
        &config.validation_allow,
        &config.validation_deny,
    )
}

/// The default refusals, the addresses a listener on `listen` answers on, and the operator's
/// `allow` and `deny` networks (`--validation-allow`, `--validation-deny`).
pub(crate) fn address_policy(
    listen: std::net::IpAddr,
    allow: &[String],
    deny: &[String],
) -> Result<sceau_validate::AddressPolicy, String> {
    let net = |setting: &str, text: &String| {
        text.parse::<sceau_validate::IpNet>()
            .map_err(|e| format!("--{setting} {text:?}: {e}"))
    };
    let mut policy = sceau_validate::AddressPolicy::default()
        .listening_on(listen)
        .map_err(|e| format!("validation targets: {e}"))?;
    for text in allow {
        policy = policy.allow(net("validation-allow", text)?);
    }
    for text in deny {
        policy = policy.deny(net("validation-deny", text)?);
    }
    Ok(policy)
}

/// The remote perspectives of `[perspectives]` (R28), checked and their TLS files read;
/// `None` without the section.
fn remote_perspectives(
    config: &Config,
) -> Result<Option<sceau_validate::perspectives::Remotes>, String> {
    use sceau_validate::perspectives::{LinkTls, RemoteSpec, Remotes};
    let Some(p) = &config.perspectives else {
        return Ok(None);
    };
    if p.remote.is_empty() {
        return Err("[perspectives] lists no [[perspectives.remote]]".into());
    }
    if p.timeout_secs == 0 {
        return Err("[perspectives] timeout_secs must be at least 1".into());
    }
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("[perspectives] {what} {}: {e}", path.display()))
    };
    let tls = LinkTls {
        ca_pem: read("tls_ca", &p.tls_ca)?,
        cert_pem: read("tls_cert", &p.tls_cert)?,
        key_pem: sceau_ca::read_private_file(&p.tls_key)
            .map_err(|e| format!("[perspectives] tls_key: {e}"))?,
    };
    let specs = p
        .remote
        .iter()
        .map(|r| RemoteSpec {
            name: r.name.clone(),
            url: r.url.clone(),
        })
        .collect();
    let remotes = Remotes::new(
        specs,
        &tls,
        p.quorum,
        p.mode,
        Duration::from_secs(p.timeout_secs),
    )
    .map_err(|e| format!("[perspectives] {e}"))?;
    tracing::info!(remotes = ?remotes.names(), quorum = remotes.quorum(), mode = ?remotes.mode(), "multi-perspective validation");
    Ok(Some(remotes))
}

/// The rate limits of the configuration; a bad value is a one-line error naming its setting.
fn rate_limits(c: &Config) -> Result<RateLimits, String> {
    let rate = |name: &str, v: &str| {
        Rate::parse(v).map_err(|e| format!("--{}: {e}", name.replace('_', "-")))
    };
    Ok(RateLimits {
        accounts_per_address: rate("limit_accounts_per_address", &c.limit_accounts_per_address)?,
        orders_per_account: rate("limit_orders_per_account", &c.limit_orders_per_account)?,
        names_per_account: rate("limit_names_per_account", &c.limit_names_per_account)?,
        pending_authzs_per_account: parse_count(&c.limit_pending_authzs_per_account)
            .map_err(|e| format!("--limit-pending-authzs-per-account: {e}"))?,
        eab_failures_per_key: rate("limit_eab_failures_per_key", &c.limit_eab_failures_per_key)?,
        nonces_per_address: rate("limit_nonces_per_address", &c.limit_nonces_per_address)?,
        console_failures_per_user: rate(
            "limit_console_failures_per_user",
            &c.limit_console_failures_per_user,
        )?,
        console_failures_per_address: rate(
            "limit_console_failures_per_address",
            &c.limit_console_failures_per_address,
        )?,
    })
}

/// STAR's terms (RFC 8739 §3.2); a bad value is a one-line error naming its setting.
fn star_settings(c: &Config) -> Result<sceau_acme::StarSettings, String> {
    let duration = |name: &str, v: &str| {
        sceau_acme::limits::parse_duration(v).map_err(|e| format!("--{name}: {e}"))
    };
    let min_lifetime = duration("star-min-lifetime", &c.star_min_lifetime)?;
    let max_duration = duration("star-max-duration", &c.star_max_duration)?;
    if min_lifetime > max_duration {
        return Err("--star-min-lifetime is longer than --star-max-duration".into());
    }
    // R39: no certificate of a series may live longer than any other certificate.
    if min_lifetime.as_secs() > c.cert_validity_days * 86400 {
        return Err(format!(
            "--star-min-lifetime is longer than the {}-day certificate validity (--cert-validity-days)",
            c.cert_validity_days
        ));
    }
    Ok(sceau_acme::StarSettings {
        min_lifetime,
        max_duration,
        allow_certificate_get: c.star_allow_certificate_get,
    })
}

pub(crate) fn init_logging(format: &str) -> Result<(), String> {
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

fn crl_settings(config: &Config) -> sceau_acme::crl::CrlSettings {
    sceau_acme::crl::CrlSettings {
        update_every: Duration::from_secs(config.crl_update_secs),
        validity: Duration::from_secs(config.crl_validity_secs),
        lookback: Duration::from_secs(config.crl_lookback_secs),
        publish_dir: config.crl_dir.clone(),
        authority_crl: Some(config.data_dir.join(sceau_ca::arl::ROOT_CRL)),
    }
}

/// RA mode: the signing service reads `[ra]` from the same file, given by absolute path.
pub(crate) fn ra_config_path(
    common: &CommonArgs,
    config: &Config,
) -> Result<Option<std::path::PathBuf>, String> {
    let Some(ra) = &config.ra else {
        return Ok(None);
    };
    ra.check().map_err(|e| e.to_string())?;
    let path = common
        .config
        .as_deref()
        .ok_or("[ra] comes only from the --config file")?;
    std::fs::canonicalize(path)
        .map(Some)
        .map_err(|e| format!("--config {}: {e}", path.display()))
}

pub fn run(common: CommonArgs, args: ServeArgs) -> Result<(), String> {
    let config = resolve_config(&common, &args)?;
    // Refused settings change nothing: checked before the data directory is touched.
    crl_settings(&config).check()?;
    let ra_config_path = ra_config_path(&common, &config)?;
    init_logging(&config.log_format)?;
    let eab = eab_mode(&config.eab)?;
    config
        .ca_key
        .parse::<CaKeyKind>()
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
    // Checked before anything is written, like the settings above.
    let address_policy = validation_targets(&config)?;
    let remotes = remote_perspectives(&config)?;
    let star = star_settings(&config)?;
    let limits = rate_limits(&config)?;
    // Scheduled reports: the SMTP settings and secrets are read now; a bad one stops here.
    let mailer = match &config.reports {
        Some(r) => Some((
            Arc::new(r.load()?),
            r.period_secs()?,
            Duration::from_secs(r.check_every_secs.unwrap_or(3600).max(1)),
        )),
        None => None,
    };
    let database_url = config.database_url()?;
    if config.signer_socket.is_some() && config.signer_uid.is_none() {
        return Err("--signer-socket needs --signer-uid: the uid the signer runs as, which the front end checks before it sends a request".into());
    }
    if config.signer_socket.is_some() && config.signer_address.is_some() {
        return Err("--signer-socket and --signer-address name two signers: give one".into());
    }
    // The link's files are read before anything is written: a bad one changes nothing.
    let dial = match &config.signer_address {
        Some(address) => Some(crate::signer_tls::dialer(
            address,
            &config.signer_tls("--signer-address")?,
        )?),
        None => None,
    };
    // Everything this process and its signing child create is private to the service user
    // (SQLite's database, WAL and shared-memory files, keys); public files set their mode.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o077) };
    create_data_dir(&config.data_dir)?;
    tighten_data_dir(&config.data_dir)?;

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

    // The relying parties' listener is bound first: with port 0 (tests) the port it gets is the
    // one the certificates name.
    let revocation = std::net::TcpListener::bind(config.revocation_listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            format!(
                "cannot listen on {} (--revocation-listen, for CRLs and OCSP): {e}",
                config.revocation_listen
            )
        })?;
    let public_url = match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}",
            revocation.local_addr().map_err(|e| e.to_string())?
        ),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        // The CA keys live only in the signing service: a child process, or a service of its
        // own under another OS user (see sceau_ca::remote).
        let connector = match (&config.signer_socket, dial) {
            (_, Some(dial)) => sceau_ca::remote::Connector::Dial(dial),
            (Some(path), None) => sceau_ca::remote::Connector::Socket {
                path: path.clone(),
                uid: config.signer_uid.expect("checked before start"),
            },
            (None, None) => {
                let exe = std::env::current_exe()
                    .map_err(|e| format!("cannot find my own executable: {e}"))?;
                let sign_args = crate::sign_service::SignServiceArgs::from_config(
                    &config,
                    ra_config_path.clone(),
                    public_url.clone(),
                )?
                .argv();
                // The signing gate's own connection to the database (R35); its URL may hold
                // a password, so it goes in the environment, not argv.
                let gate_url = crate::sign_service::gate_database_url(&config)?;
                // Called again each time the supervisor restarts the service.
                sceau_ca::remote::Connector::Spawn(Box::new(move || {
                    let mut c = tokio::process::Command::new(&exe);
                    c.args(&sign_args)
                        .env(crate::sign_service::DATABASE_ENV, &gate_url);
                    c
                }))
            }
        };
        let ca = RemoteSigner::spawn(connector).await.map_err(|e| match e {
            // The signing process's own reason, which names the command to run.
            sceau_ca::CaError::Refused(why) => why,
            e => format!("CA: {e}"),
        })?;
        // A signer of its own keeps the CA files in its directory, out of this user's reach:
        // the root its hello carries is published here, where clients and the banner look.
        let hello = ca.hello();
        if config.separate_signer() && !hello.upstream {
            sceau_ca::publish_file(&config.data_dir.join("root.pem"), hello.root_pem.as_bytes())
                .map_err(|e| format!("root.pem: {e}"))?;
        }
        // RA mode: no local CA, so the listener's certificate comes from the operator's files.
        let tls_files = config
            .ra
            .as_ref()
            .map(|ra| (ra.tls_cert.clone(), ra.tls_key.clone()));
        let first_key = match &tls_files {
            Some((cert, key)) => certified_key_from_files(cert, key)?,
            None => certified_key(&ca, &tls_names).await?,
        };
        let tls_cert = Arc::new(ReloadingCert::new(first_key));
        let store = sceau_store::Store::open(&database_url)
            .await
            .map_err(|e| format!("database: {e}"))?;
        let caa_identities = config.caa_identities();
        let validator = Validator::new(ValidatorConfig {
            dns_server: config.dns_server,
            http01_port: config.http01_port,
            tlsalpn01_port: config.tlsalpn01_port,
            timeout: Duration::from_secs(10),
            caa_identities: caa_identities.clone(),
            address_policy,
        })
        .map_err(|e| format!("validator: {e}"))?;
        let perspectives = sceau_validate::perspectives::Perspectives::new(validator, remotes);
        let mut acme_config = AcmeConfig::new(&config.base_url());
        acme_config.eab = eab;
        acme_config.terms_of_service = config.terms_of_service.clone();
        acme_config.website = config.website.clone();
        acme_config.caa_identities = caa_identities;
        acme_config.cert_validity = Duration::from_secs(config.cert_validity_days * 86400);
        acme_config.caa_recheck_after = Duration::from_secs(config.caa_recheck_secs);
        acme_config.refuse_key_reuse = config.refuse_key_reuse;
        acme_config.allow_wildcards = config.allow_wildcards;
        acme_config.validation_wait = Duration::from_millis(config.validation_wait_ms);
        acme_config.max_body_bytes = config.max_body_bytes;
        acme_config.limits = limits;
        acme_config.identifiers = IdentifierPolicy {
            allow_local: config.allow_local_identifiers,
            allow_server_names: config.allow_server_names,
            server_names: tls_names
                .iter()
                .map(|n| sceau_wire::Identifier::guess(&n.to_ascii_lowercase()))
                .collect(),
        };
        acme_config.issuance_wait = Duration::from_millis(config.issuance_wait_ms);
        acme_config.issuance_deadline = Duration::from_secs(config.issuance_deadline_secs);
        acme_config.crl_shards = config.crl_shards;
        acme_config.star = Some(star);
        acme_config.crl = crl_settings(&config);
        if !(120..=10 * 86400).contains(&config.ocsp_validity_secs) {
            return Err("--ocsp-validity-secs is between 120 and 864000 (10 days)".into());
        }
        acme_config.ocsp.validity = Duration::from_secs(config.ocsp_validity_secs);
        acme_config.issuance_lease = Duration::from_secs(config.issuance_lease_secs.max(3));
        // Several instances may share a server database: their nonces are one pool.
        if !store.is_embedded() {
            let key = store
                .nonce_key(&sceau_acme::nonce::new_shared_key())
                .await
                .map_err(|e| format!("database: {e}"))?;
            acme_config.shared_nonce_key = Some(
                sceau_wire::b64::decode(&key).map_err(|_| "database: the nonce key is corrupt")?,
            );
        }
        let fingerprint = hello.root_fingerprint_sha256.clone();
        let signer: Arc<dyn Signer> = ca.clone();
        let policy =
            crate::admin::server_policy(&config, eab, &store, &mut acme_config, &signer).await?;
        let acme = Acme::new(acme_config, store, signer, perspectives, policy);
        let console = match (config.console_listen, &config.reports) {
            (None, None) => None,
            _ => Some(crate::console_cli::console(&config, &acme)?),
        };
        let (challenges, orders) = acme.recover().await.map_err(|e| format!("recovery: {e}"))?;
        if challenges + orders > 0 {
            tracing::info!(
                challenges,
                orders,
                "resumed work interrupted by the last stop"
            );
        }
        // Every periodic job of this instance runs on the one scheduler.
        let scheduler = Scheduler::new(acme.store.clone(), &acme.queue.owner);
        acme.start_background(&scheduler);
        acme.start_crls(&scheduler);
        acme.start_nonce_upkeep(&scheduler);
        acme.start_validation_sweeper(&scheduler);
        sceau_acme::ocsp::job::start(&acme, &scheduler);
        if let Some(console) = &console {
            // Sessions past their idle or absolute timeout are deleted when seen; these are
            // the ones never seen again.
            let console = console.clone();
            scheduler.every(
                "console-sessions",
                Duration::from_secs(600),
                Duration::from_secs(60),
                Scope::OneInstance,
                move || {
                    let console = console.clone();
                    async move {
                        let t = sceau_store::now();
                        let s = &console.settings;
                        console
                            .store
                            .forget_console_sessions(
                                t - s.idle_timeout.as_secs() as i64,
                                t - s.absolute_timeout.as_secs() as i64,
                            )
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                },
            );
        }
        if let (Some(reports), Some(console)) = (&mailer, &console) {
            let (mailer, period, every) = reports.clone();
            let console = console.clone();
            scheduler.every(
                "reports",
                every,
                Duration::from_secs(5),
                Scope::OneInstance,
                move || {
                    let (console, mailer) = (console.clone(), mailer.clone());
                    async move {
                        let sent = sceau_console::mail::send_due_reports(&console, &mailer, period)
                            .await?;
                        if sent > 0 {
                            tracing::info!(sent, "scheduled reports sent");
                        }
                        Ok(())
                    }
                },
            );
        }
        {
            let (ca, names, cert) = (ca.clone(), tls_names.clone(), tls_cert.clone());
            let files = tls_files.clone();
            scheduler.every(
                "server-certificate",
                Duration::from_secs(12 * 3600),
                Duration::from_secs(12 * 3600),
                Scope::EveryInstance,
                move || {
                    let (ca, names, cert) = (ca.clone(), names.clone(), cert.clone());
                    let files = files.clone();
                    async move {
                        // In RA mode the operator renews the files; they are read again.
                        let key = match &files {
                            Some((c, k)) => certified_key_from_files(c, k)?,
                            None => certified_key(&ca, &names).await?,
                        };
                        *cert.current.write().expect("cert lock") = Arc::new(key);
                        Ok(())
                    }
                },
            );
        }
        reload_signer_on_sighup(ca.clone());

        let tls = tls_acceptor(tls_cert)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let body_limits = http::BodyLimits::from_config(&config).map_err(|e| e.to_string())?;
        let settings = listener::Settings::from_config(&config).map_err(|e| e.to_string())?;
        listener::reserve_descriptors(&settings, 2).map_err(|e| e.to_string())?;
        let revocation_settings =
            listener::Settings::from_config(&config).map_err(|e| e.to_string())?;
        let root = config.data_dir.join("root.pem");
        // The operators' listeners are bound before the banner, so that "ready" means every
        // listener accepts.
        let console_listener = match config.console_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                format!("cannot listen on {addr} (--console-listen): {e}")
            })?),
            None => None,
        };
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                format!("cannot listen on {addr} (--metrics-listen): {e}")
            })?),
            None => None,
        };
        println!("sceau-server is ready");
        println!("  directory:   {}", acme.urls.directory());
        match &config.ra {
            Some(ra) => {
                println!(
                    "  mode:        registration authority; upstream CA: {}",
                    ra.describe()
                );
                println!(
                    "  root CA:     {} (upstream roots)",
                    ra.upstream_roots.display()
                );
            }
            None => println!("  root CA:     {}", root.display()),
        }
        println!("  fingerprint: SHA-256 {fingerprint}");
        println!("  revocation:  {public_url} (CRLs and OCSP, plain HTTP)");
        if let Some(addr) = console_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            println!(
                "  console:     https://{addr}/ (operators: `sceau-server console add-operator NAME`)"
            );
        }
        if let Some(addr) = metrics_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            println!("  metrics:     http://{addr}/metrics (Prometheus; /livez, /readyz)");
        }
        println!(
            "  database:    {}",
            crate::config::redact_url(&database_url)
        );
        if let (Some(l), Some(console)) = (console_listener, console) {
            let settings = listener::Settings::from_config(&config).map_err(|e| e.to_string())?;
            tokio::spawn(listener::serve_https(
                l,
                tls.clone(),
                sceau_console::router(console),
                settings,
                std::future::pending(),
            ));
        }
        if let Some(l) = metrics_listener {
            let settings = listener::Settings::from_config(&config).map_err(|e| e.to_string())?;
            tokio::spawn(listener::serve_http(
                l,
                crate::metrics_http::router(acme.clone()),
                settings,
                std::future::pending(),
            ));
        }
        let revocation =
            TcpListener::from_std(revocation).map_err(|e| format!("revocation listener: {e}"))?;
        tokio::spawn(listener::serve_http(
            revocation,
            crate::revocation_http::router(acme.clone()),
            revocation_settings,
            std::future::pending(),
        ));
        let router = http::router(acme, body_limits);
        listener::serve_https(listener, tls, router, settings, shutdown_signal()).await;
        Ok(())
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
    let (chain_pem, key_pem) = ca
        .server_tls(names)
        .await
        .map_err(|e| format!("server TLS certificate: {e}"))?;
    certified_key_from_pem(&chain_pem, &key_pem)
}

/// The listener's certificate and key from the operator's files (RA mode); the key file must
/// be private to the service user.
fn certified_key_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::sign::CertifiedKey, String> {
    let chain_pem = std::fs::read_to_string(cert)
        .map_err(|e| format!("[ra] tls_cert: cannot read {}: {e}", cert.display()))?;
    let key_pem = crate::config::read_secret_file(key).map_err(|e| format!("[ra] tls_key: {e}"))?;
    certified_key_from_pem(&chain_pem, &key_pem)
}

fn certified_key_from_pem(
    chain_pem: &str,
    key_pem: &str,
) -> Result<rustls::sign::CertifiedKey, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("server key: {e}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| format!("server key: {e}"))?;
    Ok(rustls::sign::CertifiedKey::new(certs, signing))
}

/// SIGHUP restarts the signing process, which reads the CA again (after `ca rotate` or
/// `ca import`); requests meanwhile wait in the issuance queue.
fn reload_signer_on_sighup(ca: Arc<RemoteSigner>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: restarting the signing service to read the CA again");
            ca.restart();
        }
    });
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

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
}

/// The data directory and what it holds are the service user's alone, whatever existed before:
/// a directory open to others is made 0700 and its private files (database, keys; everything
/// but certificates, CSRs and CRLs) 0600, each change logged; a directory of another user is refused.
pub(crate) fn tighten_data_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("cannot read data directory {}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "data directory {} belongs to uid {}, not to the user running sceau-server (uid {me}); run as its owner or choose another --data-dir",
            dir.display(),
            meta.uid()
        ));
    }
    let set = |path: &std::path::Path, mode: u32, was: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
        tracing::warn!(path = %path.display(), from = format!("{:04o}", was & 0o7777), to = format!("{mode:04o}"), "restricted permissions that were open to other users");
        Ok::<(), String>(())
    };
    if meta.mode() & 0o077 != 0 {
        set(dir, 0o700, meta.mode())?;
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read data directory {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        // Certificates, the CSR of a delegated CA and the authority CRL are public by nature.
        let public = path
            .extension()
            .is_some_and(|e| e == "pem" || e == "csr" || e == "crl");
        if m.is_file() && !public && m.mode() & 0o077 != 0 {
            set(&path, 0o600, m.mode())?;
        }
    }
    Ok(())
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
