//! `sceau issue` and `sceau renew`: obtain a certificate for a managed entry and install it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sceau_client::events::Event;
use sceau_client::files::{CertFiles, Modes};
use sceau_client::renewal::{self, Decision};
use sceau_client::state::{ManagedCert, check_name};
use sceau_client::{
    AcmeClient, CertInfo, Error, IssueRequest, Issued, KeySource, Method, Plan, Result,
};
use sceau_wire::{AccountKey, AutoRenewal, Identifier};

use crate::account::{ensure_account, key_kind};
use crate::cli::{IssueArgs, RenewArgs};
use crate::ctx::{Ctx, connect};

fn method_from(name: &str, a: &IssueArgs) -> Result<Method> {
    let (kind, arg) = name
        .split_once(':')
        .map(|(k, v)| (k, Some(v)))
        .unwrap_or((name, None));
    Ok(match kind {
        "http" | "http-01" => Method::Http01 {
            port: a.http_port,
            address: a.listen_address,
        },
        "webroot" => Method::Webroot {
            dir: arg
                .map(Into::into)
                .or_else(|| a.webroot.clone())
                .ok_or_else(|| {
                    Error::Config("webroot needs --webroot DIR (or webroot:DIR)".into())
                })?,
        },
        "dns" | "dns-01" | "dns-update" => Method::Dns01Update {
            server: a
                .dns_update
                .ok_or_else(|| Error::Config("dns needs --dns-update SERVER:PORT".into()))?,
            tsig_key_file: a.tsig_key.clone(),
            check_servers: a.dns_check.clone(),
            propagation_timeout_secs: a.dns_timeout,
        },
        "dns-hook" => Method::Dns01Hook {
            program: arg
                .map(Into::into)
                .or_else(|| a.dns_hook.clone())
                .ok_or_else(|| Error::Config("dns-hook needs --dns-hook PROGRAM".into()))?,
        },
        "tls-alpn" | "tls-alpn-01" => Method::TlsAlpn01 {
            port: a.tls_alpn_port.unwrap_or(443),
            address: a.listen_address,
        },
        other => {
            return Err(Error::Config(format!(
                "unknown challenge method {other:?}: use http, webroot, dns, dns-hook or tls-alpn"
            )));
        }
    })
}

fn plan_from(a: &IssueArgs) -> Result<Plan> {
    let default = match &a.method {
        Some(m) => m.clone(),
        None if a.webroot.is_some() => "webroot".into(),
        None if a.dns_update.is_some() => "dns".into(),
        None if a.dns_hook.is_some() => "dns-hook".into(),
        None if a.tls_alpn_port.is_some() => "tls-alpn".into(),
        None => "http".into(),
    };
    let mut per_identifier = BTreeMap::new();
    for spec in &a.method_for {
        let (name, m) = spec
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--method-for {spec:?}: expected NAME=METHOD")))?;
        per_identifier.insert(name.trim().to_ascii_lowercase(), method_from(m.trim(), a)?);
    }
    Ok(Plan {
        default: method_from(&default, a)?,
        per_identifier,
    })
}

pub async fn run_issue(ctx: &Ctx, a: &IssueArgs) -> Result<()> {
    let cert = managed_from(a)?;
    let client = connect(&cert.server, cert.ca_bundle.as_deref()).await?;
    ensure_account(ctx, &client, Some(&a.register)).await?;
    obtain(
        ctx,
        &client,
        &cert,
        Obtain {
            replaces: None,
            renewal: false,
            auto_renewal: None,
            timeout: Duration::from_secs(a.timeout),
        },
    )
    .await?;
    // Saved only after success: a failed first issuance leaves no managed entry behind.
    ctx.state.save_cert(&cert)?;
    Ok(())
}

/// The managed entry that `sceau issue` (and `sceau star order`) arguments describe, checked.
pub fn managed_from(a: &IssueArgs) -> Result<ManagedCert> {
    let mut identifiers: Vec<Identifier> = a
        .domains
        .iter()
        .map(|d| Identifier::guess(d.trim().trim_end_matches('.').to_ascii_lowercase().as_str()))
        .collect();
    if let Some(csr) = &a.csr {
        let bytes =
            std::fs::read(csr).map_err(Error::io(format!("reading the CSR {}", csr.display())))?;
        let (_, names) = sceau_client::csr::read_csr(&bytes)?;
        if identifiers.is_empty() {
            identifiers = names;
        } else {
            let (mut x, mut y) = (identifiers.clone(), names.clone());
            x.sort();
            y.sort();
            if x != y {
                return Err(Error::Config(
                    "the --domain names differ from the names in the CSR; give only one of them"
                        .into(),
                ));
            }
        }
    }
    identifiers.dedup();
    if identifiers.is_empty() {
        return Err(Error::Config(
            "nothing to certify: give --domain NAME (repeatable) or --csr FILE".into(),
        ));
    }
    if identifiers.iter().any(|i| i.value.starts_with("*.")) {
        return Err(Error::Config(
            "wildcard names are not allowed (R42/R68): list each name".into(),
        ));
    }
    let kind = key_kind(&a.key_type)?;
    if !(0.0..=1.0).contains(&a.renew_fraction) {
        return Err(Error::Config(
            "--renew-fraction must be between 0 and 1".into(),
        ));
    }
    let name = a
        .cert_name
        .clone()
        .unwrap_or_else(|| identifiers[0].value.replace(':', "_"));
    check_name(&name)?;
    let cert = ManagedCert {
        name,
        server: a.server.server.clone(),
        ca_bundle: a
            .server
            .ca_bundle
            .as_deref()
            .map(|p| std::path::absolute(p).unwrap_or(p.to_owned())),
        identifiers,
        plan: plan_from(a)?,
        key_type: kind.name().to_owned(),
        reuse_key: a.reuse_key,
        csr: a
            .csr
            .as_deref()
            .map(|p| std::path::absolute(p).unwrap_or(p.to_owned())),
        deploy_hook: a.deploy_hook.clone(),
        renew_fraction: a.renew_fraction,
        archive_keep: a.archive_keep,
        group_readable: a.group_readable,
        profile: a.profile.clone(),
        revoked: false,
        star: None,
    };
    Ok(cert)
}

/// How [`obtain`] orders.
pub struct Obtain {
    /// The ARI id of the predecessor (RFC 9773 §5).
    pub replaces: Option<String>,
    pub renewal: bool,
    /// Order a STAR series with these terms (RFC 8739 §3.1.1).
    pub auto_renewal: Option<AutoRenewal>,
    pub timeout: Duration,
}

/// Issues for `cert` through `client` (connected to `cert.server`), installs the result and
/// runs the deploy hook.
pub async fn obtain(
    ctx: &Ctx,
    client: &AcmeClient,
    cert: &ManagedCert,
    how: Obtain,
) -> Result<Issued> {
    let Obtain {
        replaces,
        renewal,
        auto_renewal,
        timeout,
    } = how;
    let account = ensure_account(ctx, client, None).await?;
    let files = CertFiles::new(&ctx.cert_dir, &cert.name, Modes::new(cert.group_readable));
    let key = match (&cert.csr, cert.reuse_key, files.read_key()) {
        (Some(csr), _, _) => {
            let bytes = std::fs::read(csr)
                .map_err(Error::io(format!("reading the CSR {}", csr.display())))?;
            KeySource::Csr(sceau_client::csr::read_csr(&bytes)?.0)
        }
        (None, true, Some(pem)) => {
            tracing::warn!(
                "{}: reusing the previous private key (--reuse-key); R66 asks for a new key each time",
                cert.name
            );
            eprintln!(
                "sceau: warning: {}: reusing the previous private key (--reuse-key)",
                cert.name
            );
            KeySource::Reuse(
                AccountKey::from_pem(&pem).map_err(|e| {
                    Error::Key(format!("{}: {e}", files.path("privkey.pem").display()))
                })?,
            )
        }
        _ => KeySource::Generate(key_kind(&cert.key_type)?),
    };
    let request = IssueRequest {
        identifiers: cert.identifiers.clone(),
        key,
        plan: cert.plan.clone(),
        replaces,
        profile: cert.profile.clone(),
        auto_renewal,
        timeout,
    };
    let issued = sceau_client::issue(client, &account, request, &ctx.events).await?;
    files.install(
        issued.key_pem.as_deref(),
        &issued.chain_pem,
        cert.archive_keep,
    )?;
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let ids = cert.identifiers.iter().map(|i| i.value.clone()).collect();
    let key_desc = if cert.csr.is_some() {
        "external CSR".to_owned()
    } else {
        cert.key_type.clone()
    };
    let (serial, not_after) = (issued.info.serial_hex.clone(), fmt(issued.info.not_after));
    (ctx.events)(&if renewal {
        Event::Renewed {
            name: cert.name.clone(),
            serial,
            not_after: not_after.clone(),
            identifiers: ids,
            key: key_desc,
        }
    } else {
        Event::Issued {
            name: cert.name.clone(),
            serial,
            not_after: not_after.clone(),
            identifiers: ids,
            key: key_desc,
        }
    });
    println!(
        "{}: certificate installed in {} (valid until {not_after})",
        cert.name,
        files.dir.display()
    );
    if let Some(hook) = &cert.deploy_hook {
        run_deploy_hook(ctx, cert, &files, hook).await?;
    }
    Ok(issued)
}

pub async fn run_deploy_hook(
    ctx: &Ctx,
    cert: &ManagedCert,
    files: &CertFiles,
    hook: &str,
) -> Result<()> {
    let domains: Vec<&str> = cert.identifiers.iter().map(|i| i.value.as_str()).collect();
    let result = sceau_client::files::run_deploy_hook(files, &cert.name, &domains, hook).await;
    (ctx.events)(&Event::DeployHook {
        name: cert.name.clone(),
        command: hook.to_owned(),
        success: result.is_ok(),
    });
    result
}

async fn renew_one(ctx: Arc<Ctx>, cert: ManagedCert, a: Arc<RenewArgsShared>) -> Result<bool> {
    let files = CertFiles::new(&ctx.cert_dir, &cert.name, Modes::new(cert.group_readable));
    let now = time::OffsetDateTime::now_utc();
    let current = files
        .read_fullchain()
        .map(|pem| CertInfo::from_pem_chain(&pem))
        .transpose()
        .ok()
        .flatten();
    let fraction = a.fraction.unwrap_or(cert.renew_fraction);
    let client = connect(&cert.server, cert.ca_bundle.as_deref()).await?;
    let (decision, replaces) = match &current {
        None => (
            Decision::Due {
                reason: "no certificate installed".into(),
            },
            None,
        ),
        Some(info) => renewal::decide(&client, info, fraction, now).await,
    };
    if !a.force && !decision.is_due() {
        if let Decision::NotYet { at, reason } = decision {
            let at = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            (ctx.events)(&Event::RenewalSkipped {
                name: cert.name.clone(),
                reason: format!("{reason}, at {at}"),
            });
        }
        return Ok(false);
    }
    if a.jitter > 0 {
        let mut b = [0u8; 8];
        aws_lc_rs::rand::fill(&mut b).expect("CSPRNG");
        tokio::time::sleep(Duration::from_millis(
            u64::from_le_bytes(b) % (a.jitter * 1000),
        ))
        .await;
    }
    obtain(
        &ctx,
        &client,
        &cert,
        Obtain {
            replaces,
            renewal: true,
            auto_renewal: None,
            timeout: a.timeout,
        },
    )
    .await?;
    Ok(true)
}

struct RenewArgsShared {
    force: bool,
    jitter: u64,
    fraction: Option<f64>,
    timeout: Duration,
}

/// Renews what is due; returns the number of failures.
pub async fn run_renew(ctx: Ctx, a: &RenewArgs) -> Result<usize> {
    let mut certs = ctx.state.list_certs()?;
    if !a.cert_name.is_empty() {
        for n in &a.cert_name {
            if !certs.iter().any(|c| &c.name == n) {
                return Err(Error::Config(format!(
                    "{n} is not a managed certificate (see `sceau status`)"
                )));
            }
        }
        certs.retain(|c| a.cert_name.contains(&c.name));
        if let Some(c) = certs.iter().find(|c| c.star.is_some()) {
            return Err(Error::Config(format!(
                "{} is a STAR series: the CA renews it; use `sceau star fetch --cert-name {}`",
                c.name, c.name
            )));
        }
    }
    // STAR series are renewed by the CA (RFC 8739 §3.3); `sceau star fetch` installs them.
    certs.retain(|c| !c.revoked && c.star.is_none());
    let ctx = Arc::new(ctx);
    let shared = Arc::new(RenewArgsShared {
        force: a.force,
        jitter: a.jitter,
        fraction: a.renew_fraction,
        timeout: Duration::from_secs(a.timeout),
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(a.jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for cert in certs {
        let (ctx, shared, permits) = (ctx.clone(), shared.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let name = cert.name.clone();
            (name, renew_one(ctx, cert, shared).await)
        });
    }
    let mut failures = 0;
    while let Some(joined) = set.join_next().await {
        let (name, result) =
            joined.map_err(|e| Error::Config(format!("renewal task crashed: {e}")))?;
        if let Err(e) = result {
            failures += 1;
            (ctx.events)(&Event::Failure {
                name: Some(name.clone()),
                error: e.to_string(),
                problem: e.problem().cloned(),
            });
            eprintln!("sceau: error: {name}: {e}");
        }
    }
    Ok(failures)
}
