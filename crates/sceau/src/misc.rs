//! `sceau revoke` and `sceau status`.

use sceau_client::events::Event;
use sceau_client::files::{CertFiles, Modes};
use sceau_client::order::RevokeWith;
use sceau_client::{CertInfo, Error, Result};
use sceau_wire::AccountKey;

use crate::account::ensure_account;
use crate::cli::{RevokeArgs, StatusArgs};
use crate::ctx::{Ctx, connect};

pub async fn run_revoke(ctx: &Ctx, a: &RevokeArgs) -> Result<()> {
    let reason = a
        .reason
        .as_deref()
        .map(|r| {
            sceau_wire::reason::parse(r).ok_or_else(|| {
                Error::Config(format!("unknown revocation reason {r:?}: use keyCompromise, superseded, cessationOfOperation, …"))
            })
        })
        .transpose()?;
    let managed = a
        .cert_name
        .as_deref()
        .map(|n| ctx.state.load_cert(n))
        .transpose()?
        .flatten();
    if a.cert_name.is_some() && managed.is_none() {
        return Err(Error::Config(format!(
            "{} is not a managed certificate",
            a.cert_name.as_deref().unwrap_or("")
        )));
    }
    let (pem_path, server, ca_bundle) = match &managed {
        Some(m) => (
            CertFiles::new(&ctx.cert_dir, &m.name, Modes::default()).path("cert.pem"),
            a.server.clone().unwrap_or_else(|| m.server.clone()),
            a.ca_bundle.clone().or_else(|| m.ca_bundle.clone()),
        ),
        None => (
            a.cert.clone().expect("clap requires --cert or --cert-name"),
            a.server
                .clone()
                .ok_or_else(|| Error::Config("--cert needs --server".into()))?,
            a.ca_bundle.clone(),
        ),
    };
    let pem = std::fs::read_to_string(&pem_path)
        .map_err(Error::io(format!("reading {}", pem_path.display())))?;
    let info = CertInfo::from_pem_chain(&pem)?;
    let client = connect(&server, ca_bundle.as_deref()).await?;
    match &a.key {
        Some(key_path) => {
            let kp = std::fs::read_to_string(key_path)
                .map_err(Error::io(format!("reading {}", key_path.display())))?;
            let key = AccountKey::from_pem(&kp)
                .map_err(|e| Error::Key(format!("{}: {e}", key_path.display())))?;
            client
                .revoke(RevokeWith::CertificateKey(&key), &info.der, reason)
                .await?;
        }
        None => {
            let account = ensure_account(ctx, &client, None).await?;
            client
                .revoke(RevokeWith::Account(&account), &info.der, reason)
                .await?;
        }
    }
    if let Some(mut m) = managed.clone() {
        m.revoked = true;
        ctx.state.save_cert(&m)?;
    }
    (ctx.events)(&Event::Revoked {
        name: managed.map(|m| m.name),
        serial: info.serial_hex.clone(),
        reason,
    });
    println!("revoked certificate {}", info.serial_hex);
    Ok(())
}

/// Prints the table or JSON; returns how many certificates are past the threshold.
pub fn run_status(ctx: &Ctx, a: &StatusArgs) -> Result<usize> {
    let now = time::OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    let mut bad = 0;
    for m in ctx.state.list_certs()? {
        let files = CertFiles::new(&ctx.cert_dir, &m.name, Modes::default());
        let info = files
            .read_fullchain()
            .and_then(|p| CertInfo::from_pem_chain(&p).ok());
        let days = info.as_ref().map(|i| i.days_left(now));
        let ended = m.star.as_ref().and_then(|s| s.ended.clone());
        let terms = m.star.as_ref().map(|s| &s.terms);
        let problem = match (&info, days, terms) {
            // An ended STAR series is history, not a certificate to keep alive.
            _ if ended.is_some() => None,
            (None, _, _) => Some("missing"),
            // A STAR certificate is short by design: what matters is that the next one of the
            // series was picked up, which the CA publishes before half of the current one's
            // lifetime (RFC 8739 §3.3). Under a quarter left, and not the last: stale.
            (Some(i), _, Some(t)) => {
                if i.not_after < now {
                    Some("expired")
                } else if i.not_after < t.end_date
                    && i.not_after - now < std::time::Duration::from_secs(t.lifetime / 4)
                {
                    Some("stale")
                } else {
                    None
                }
            }
            _ if m.revoked => Some("revoked"),
            (_, Some(d), _) if d < 0 => Some("expired"),
            (_, Some(d), _) if d < a.warn_days => Some("expiring"),
            _ => None,
        };
        if problem.is_some() && !m.revoked {
            bad += 1;
        }
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        rows.push(serde_json::json!({
            "name": m.name,
            "identifiers": m.identifiers.iter().map(|i| i.value.clone()).collect::<Vec<_>>(),
            "server": m.server,
            "not_after": info.as_ref().map(|i| fmt(i.not_after)),
            "days_left": days,
            "serial": info.as_ref().map(|i| i.serial_hex.clone()),
            "status": match (&ended, problem) {
                (Some(e), _) => format!("star-{e}"),
                (None, Some(p)) => p.to_owned(),
                (None, None) if m.star.is_some() => "star".to_owned(),
                (None, None) => "ok".to_owned(),
            },
            "star": m.star.as_ref().map(|s| serde_json::json!({
                "order": s.order_url,
                "lifetime": s.terms.lifetime,
                "end_date": s.terms.end_date.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "ended": s.ended,
            })),
            "path": files.dir,
        }));
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialises")
        );
    } else if rows.is_empty() {
        println!("no managed certificate in {}", ctx.state.root.display());
    } else {
        println!(
            "{:<30} {:<10} {:>9}  {:<25} NAMES",
            "NAME", "STATUS", "DAYS LEFT", "EXPIRES"
        );
        for r in &rows {
            println!(
                "{:<30} {:<10} {:>9}  {:<25} {}",
                r["name"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
                r["days_left"]
                    .as_i64()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                r["not_after"].as_str().unwrap_or("-"),
                names_column(&r["identifiers"])
            );
        }
    }
    Ok(bad)
}

/// A JSON list of names as one comma-separated table column.
pub fn names_column(names: &serde_json::Value) -> String {
    names
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}
