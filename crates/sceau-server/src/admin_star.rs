//! `sceau-server admin star`: the STAR series (RFC 8739) for operators — which series run,
//! every certificate each has had, and cancellation.
//!
//! Invariant: an operator's cancellation is the holder's (§3.1.2) through the same service
//! function, `sceau_acme::cancel_star_series` (same state check, same compare-and-swap, same
//! `star.canceled` audit entry, with the operator named as `by`).

use clap::Subcommand;
use sceau_acme::urls::Urls;
use sceau_admin::report::when;
use sceau_admin::{AdminError, Registry};
use sceau_store::OrderRecord;
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum StarCommand {
    /// List STAR series, newest first
    List {
        /// Only this ACME account's (id or account URL)
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Show one series (order id or URL) and every certificate it has had
    Show {
        order: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a series (order id or URL): no further certificate is issued; the current one
    /// stays valid until its notAfter
    Cancel { order: String },
}

/// `active` while the CA still renews it; `complete` once it reached end-date or stopped.
fn state(o: &OrderRecord) -> &str {
    match (o.status.as_str(), o.star.as_ref().and_then(|t| t.next)) {
        ("valid", Some(_)) => "active",
        ("valid", None) => "complete",
        ("processing", _) if o.cert_id.is_some() => "renewing",
        (s, _) => s,
    }
}

fn series_json(urls: &Urls, o: &OrderRecord) -> serde_json::Value {
    let t = o.star.as_ref();
    json!({
        "order": o.id,
        "order_url": urls.order(&o.id),
        "account": o.account_id,
        "identifiers": o.identifiers.iter().map(|i| i.value.clone()).collect::<Vec<_>>(),
        "state": state(o),
        "lifetime": t.map(|t| t.lifetime),
        "lifetime_adjust": t.map(|t| t.adjust),
        "end_date": t.map(|t| when(t.end)),
        "allow_certificate_get": t.map(|t| t.allow_get),
        "next_renewal": t.and_then(|t| t.due).map(when),
        "star_certificate": urls.star_certificate(&o.id),
    })
}

async fn load(r: &Registry, order: &str) -> Result<OrderRecord, AdminError> {
    let id = order
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(order);
    let o = r.store().order_by_id(id).await.map_err(|e| match e {
        sceau_store::StoreError::NotFound => AdminError::Invalid(format!("no order {id:?}")),
        other => other.into(),
    })?;
    if o.star.is_none() {
        return Err(AdminError::Invalid(format!(
            "order {id} is not a STAR order (no auto-renewal)"
        )));
    }
    Ok(o)
}

pub async fn run(r: &Registry, urls: &Urls, actor: &str, c: StarCommand) -> Result<(), AdminError> {
    match c {
        StarCommand::List {
            account,
            limit,
            json,
        } => {
            let account = account.as_deref().map(Registry::acme_account_id);
            let series = r
                .store()
                .star_series(account, limit.clamp(1, 10_000))
                .await?;
            if json {
                let rows: Vec<_> = series.iter().map(|o| series_json(urls, o)).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("serialises")
                );
                return Ok(());
            }
            if series.is_empty() {
                println!("no STAR series");
                return Ok(());
            }
            println!(
                "{:<26} {:<9} {:>9}  {:<20} {:<26} NAMES",
                "ORDER", "STATE", "LIFETIME", "ENDS", "ACCOUNT"
            );
            for o in &series {
                let t = o.star.as_ref().expect("star_series returns STAR orders");
                println!(
                    "{:<26} {:<9} {:>8}s  {:<20} {:<26} {}",
                    o.id,
                    state(o),
                    t.lifetime,
                    when(t.end),
                    o.account_id,
                    o.identifiers
                        .iter()
                        .map(|i| i.value.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            Ok(())
        }
        StarCommand::Show { order, json } => {
            let o = load(r, &order).await?;
            let certs = r.store().certs_of_order(&o.id).await?;
            let mut out = series_json(urls, &o);
            out["certificates"] = certs
                .iter()
                .map(|c| {
                    json!({
                        "serial": c.serial,
                        "not_before": when(c.not_before),
                        "not_after": when(c.not_after),
                        "url": urls.certificate(&c.id),
                    })
                })
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out).expect("serialises")
                );
                return Ok(());
            }
            for (k, v) in out.as_object().expect("object") {
                if k != "certificates" {
                    println!(
                        "{k:<22} {}",
                        v.as_str().map(str::to_owned).unwrap_or(v.to_string())
                    );
                }
            }
            println!("certificates ({}):", certs.len());
            for c in &certs {
                println!(
                    "  {}  {} .. {}",
                    c.serial,
                    when(c.not_before),
                    when(c.not_after)
                );
            }
            Ok(())
        }
        StarCommand::Cancel { order } => {
            let o = load(r, &order).await?;
            sceau_acme::cancel_star_series(r.store(), &o, &format!("operator:{actor}"), None)
                .await
                .map_err(|e| AdminError::State(e.to_string()))?;
            println!(
                "STAR series {} canceled: no further certificate will be issued",
                o.id
            );
            Ok(())
        }
    }
}
