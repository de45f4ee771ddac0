//! `sceau star`: STAR series (RFC 8739) from the holder's side. The CA renews each certificate
//! itself; this command orders the series, fetches and installs every new certificate, and
//! cancels it.
//!
//! Invariants:
//! - A fetched certificate is installed only if it is newer than the installed one, certifies
//!   the same key (privkey.pem when there is one, else the installed certificate's key: a
//!   series keeps its key, §3) and exactly the managed names; anything else is an error and
//!   leaves the installed files alone.
//! - Installation is the atomic install of `sceau issue` (same modes, archive, deploy hook).
//! - The end of a series (canceled, expired) is recorded once in the managed entry; ended
//!   series are never fetched again.
//! - Without a stored account key, a series is fetched by unauthenticated GET only when it was
//!   ordered with `allow-certificate-get` (§3.4); otherwise the command says what is missing.

use std::time::Duration;

use sceau_client::events::Event;
use sceau_client::files::{CertFiles, Modes};
use sceau_client::issue::key_spki;
use sceau_client::state::{ManagedCert, StarSeries};
use sceau_client::{CertInfo, Error, Result, StarFetch};
use sceau_wire::{AccountKey, AutoRenewal, OrderStatus, ProblemType};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::account::ensure_account;
use crate::cli::{StarCmd, StarOrderArgs, StarSelect, StarWatchArgs};
use crate::ctx::{Ctx, connect};
use crate::issue::{Obtain, managed_from, run_deploy_hook};

/// Runs one `sceau star` command; the number of series that failed.
pub async fn run(ctx: &Ctx, cmd: &StarCmd) -> Result<usize> {
    match cmd {
        StarCmd::Order(a) => order(ctx, a).await.map(|_| 0),
        StarCmd::Fetch(sel) => fetch_all(ctx, sel, Duration::from_secs(3600))
            .await
            .map(|r| r.failures),
        StarCmd::Watch(a) => watch(ctx, a).await,
        StarCmd::Cancel { cert_name } => cancel(ctx, cert_name).await.map(|_| 0),
        StarCmd::List { json } => list(ctx, *json).map(|_| 0),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `--until` / `--start`: an RFC 3339 time, a date (midnight UTC) or a duration from `now`.
pub fn parse_when(text: &str, now: OffsetDateTime, flag: &str) -> Result<OffsetDateTime> {
    let t = text.trim();
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(at);
    }
    let date = t.split('-').collect::<Vec<_>>();
    if let [y, m, d] = date[..]
        && y.len() == 4
        && let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>())
        && let Ok(month) = time::Month::try_from(m)
        && let Ok(day) = time::Date::from_calendar_date(y, month, d)
    {
        return Ok(day.midnight().assume_utc());
    }
    if let Ok(d) = sceau_wire::duration::parse(t) {
        return Ok(now + d);
    }
    Err(Error::Config(format!(
        "{flag} {text:?}: use an RFC 3339 time (2027-01-31T12:00:00Z), a date (2027-01-31) or a duration from now (30d)"
    )))
}

/// The `auto-renewal` object the arguments ask for (§3.1.1); the server checks it against
/// its policy and says which field it refuses.
pub fn terms_from(a: &StarOrderArgs, now: OffsetDateTime) -> Result<AutoRenewal> {
    let lifetime = sceau_wire::duration::parse(&a.lifetime)
        .map_err(|e| Error::Config(format!("--lifetime: {e}")))?;
    let start = a
        .start
        .as_deref()
        .map(|s| parse_when(s, now, "--start"))
        .transpose()?;
    let end = parse_when(&a.until, now, "--until")?;
    if end <= start.unwrap_or(now) {
        return Err(Error::Config(format!(
            "--until {} is not after the series' start ({})",
            rfc3339(end),
            rfc3339(start.unwrap_or(now))
        )));
    }
    let adjust = a
        .lifetime_adjust
        .as_deref()
        .map(|s| {
            sceau_wire::duration::parse(s)
                .map_err(|e| Error::Config(format!("--lifetime-adjust: {e}")))
        })
        .transpose()?;
    Ok(AutoRenewal {
        start_date: start,
        end_date: end,
        lifetime: lifetime.as_secs(),
        lifetime_adjust: adjust.map(|d| d.as_secs()),
        allow_certificate_get: a.allow_certificate_get.then_some(true),
    })
}

async fn order(ctx: &Ctx, a: &StarOrderArgs) -> Result<()> {
    let mut cert = managed_from(&a.issue)?;
    if let Some(old) = ctx.state.load_cert(&cert.name)?
        && old.star.as_ref().is_some_and(StarSeries::is_active)
    {
        return Err(Error::Config(format!(
            "{0} is an active STAR series: cancel it first (`sceau star cancel --cert-name {0}`) or choose another --cert-name",
            cert.name
        )));
    }
    let terms = terms_from(a, OffsetDateTime::now_utc())?;
    let client = connect(&cert.server, cert.ca_bundle.as_deref()).await?;
    if client
        .directory()
        .meta
        .as_ref()
        .and_then(|m| m.auto_renewal.as_ref())
        .is_none()
    {
        return Err(Error::Config(format!(
            "{} does not offer STAR certificates (no auto-renewal in its directory)",
            cert.server
        )));
    }
    ensure_account(ctx, &client, Some(&a.issue.register)).await?;
    let issued = crate::issue::obtain(
        ctx,
        &client,
        &cert,
        Obtain {
            replaces: None,
            renewal: false,
            auto_renewal: Some(terms.clone()),
            timeout: Duration::from_secs(a.issue.timeout),
        },
    )
    .await?;
    let agreed = issued.auto_renewal.clone().ok_or_else(|| {
        Error::Order(format!(
            "the server issued {} as a plain certificate: its order has no auto-renewal",
            issued.order_url
        ))
    })?;
    if terms.allow_certificate_get == Some(true) && agreed.allow_certificate_get != Some(true) {
        eprintln!(
            "sceau: warning: {}: the server did not agree to unauthenticated GET; fetching needs the account key",
            cert.name
        );
    }
    (ctx.events)(&Event::StarOrdered {
        name: cert.name.clone(),
        order: issued.order_url.clone(),
        lifetime: agreed.lifetime,
        end_date: rfc3339(agreed.end_date),
    });
    cert.star = Some(StarSeries {
        order_url: issued.order_url,
        certificate_url: issued.certificate_url,
        terms: agreed,
        ended: None,
    });
    ctx.state.save_cert(&cert)?;
    Ok(())
}

/// What one fetch of a series did.
enum Fetched {
    Installed(CertInfo),
    Unchanged(CertInfo),
    Ended,
}

/// The series named, or every active one; a name that is not a STAR series is an error.
fn select(ctx: &Ctx, sel: &StarSelect) -> Result<Vec<ManagedCert>> {
    let all = ctx.state.list_certs()?;
    if sel.cert_name.is_empty() {
        return Ok(all
            .into_iter()
            .filter(|c| c.star.as_ref().is_some_and(StarSeries::is_active))
            .collect());
    }
    let mut out = Vec::new();
    for n in &sel.cert_name {
        match all.iter().find(|c| &c.name == n) {
            None => {
                return Err(Error::Config(format!(
                    "{n} is not a managed certificate (see `sceau star list`)"
                )));
            }
            Some(c) if c.star.is_none() => {
                return Err(Error::Config(format!(
                    "{n} is not a STAR series; `sceau renew` renews it"
                )));
            }
            Some(c) => out.push(c.clone()),
        }
    }
    Ok(out)
}

async fn fetch_one(ctx: &Ctx, cert: &mut ManagedCert) -> Result<Fetched> {
    let series = cert.star.clone().expect("selected series are STAR");
    if let Some(ended) = &series.ended {
        eprintln!("sceau: {}: the series has ended ({ended})", cert.name);
        return Ok(Fetched::Ended);
    }
    let client = connect(&cert.server, cert.ca_bundle.as_deref()).await?;
    let account = ctx.state.load_account(&cert.server)?.map(|(a, _)| a);
    if account.is_none() && series.terms.allow_certificate_get != Some(true) {
        return Err(Error::Config(format!(
            "no account key for {} in {}, and the series was not ordered with --allow-certificate-get",
            cert.server,
            ctx.state.root.display()
        )));
    }
    let (chain_pem, info) = match client
        .fetch_star(account.as_ref(), &series.certificate_url)
        .await?
    {
        StarFetch::Canceled(detail) => return end(ctx, cert, "canceled", detail),
        StarFetch::Expired(detail) => return end(ctx, cert, "expired", detail),
        StarFetch::Current { chain_pem, info } => (chain_pem, info),
    };
    let files = CertFiles::new(&ctx.cert_dir, &cert.name, Modes::new(cert.group_readable));
    let installed = files
        .read_fullchain()
        .and_then(|p| CertInfo::from_pem_chain(&p).ok());
    if let Some(cur) = &installed
        && (cur.serial_hex == info.serial_hex || cur.not_before > info.not_before)
    {
        return Ok(Fetched::Unchanged(cur.clone()));
    }
    check_fetched(cert, &files, installed.as_ref(), &info)?;
    files.install(None, &chain_pem, cert.archive_keep)?;
    (ctx.events)(&Event::StarInstalled {
        name: cert.name.clone(),
        serial: info.serial_hex.clone(),
        not_before: rfc3339(info.not_before),
        not_after: rfc3339(info.not_after),
    });
    println!(
        "{}: STAR certificate {} installed in {} (valid {} to {})",
        cert.name,
        info.serial_hex,
        files.dir.display(),
        rfc3339(info.not_before),
        rfc3339(info.not_after)
    );
    if let Some(hook) = &cert.deploy_hook {
        run_deploy_hook(ctx, cert, &files, hook).await?;
    }
    Ok(Fetched::Installed(info))
}

/// The module's first invariant: same key, same names.
fn check_fetched(
    cert: &ManagedCert,
    files: &CertFiles,
    installed: Option<&CertInfo>,
    info: &CertInfo,
) -> Result<()> {
    let mut want = cert.identifiers.clone();
    let mut got = info.names.clone();
    want.sort();
    got.sort();
    if want != got {
        return Err(Error::Certificate(format!(
            "the server's STAR certificate {} is for other names than the series; not installed",
            info.serial_hex
        )));
    }
    let expected_key = match files.read_key() {
        Some(pem) => Some(key_spki(&AccountKey::from_pem(&pem).map_err(|e| {
            Error::Key(format!("{}: {e}", files.path("privkey.pem").display()))
        })?)?),
        None => installed.map(|i| i.public_key_der.clone()),
    };
    if expected_key.is_some_and(|k| k != info.public_key_der) {
        return Err(Error::Certificate(format!(
            "the server's STAR certificate {} certifies another key than the series'; not installed",
            info.serial_hex
        )));
    }
    Ok(())
}

fn end(ctx: &Ctx, cert: &mut ManagedCert, outcome: &str, detail: String) -> Result<Fetched> {
    if let Some(s) = cert.star.as_mut() {
        s.ended = Some(outcome.to_owned());
    }
    ctx.state.save_cert(cert)?;
    (ctx.events)(&Event::StarEnded {
        name: cert.name.clone(),
        outcome: outcome.to_owned(),
        detail: detail.clone(),
    });
    println!("{}: the STAR series has {outcome}: {detail}", cert.name);
    Ok(Fetched::Ended)
}

/// When to look again at a series whose current certificate is `info`: the next one is
/// published before half of the current one's nominal lifetime (§3.3 and the server's §3.5
/// padding), i.e. by `notAfter − lifetime/2`; past that, poll every twentieth of the
/// lifetime; after the last certificate, just past `end-date` to record the end.
fn next_look(
    terms: &AutoRenewal,
    info: &CertInfo,
    now: OffsetDateTime,
    max: Duration,
) -> OffsetDateTime {
    let lifetime = Duration::from_secs(terms.lifetime);
    let at = if info.not_after >= terms.end_date {
        terms.end_date + Duration::from_secs(1)
    } else {
        let expected = info.not_after - lifetime / 2;
        if expected > now {
            expected
        } else {
            now + (lifetime / 20).clamp(Duration::from_secs(1), Duration::from_secs(300))
        }
    };
    at.min(now + max).max(now + Duration::from_secs(1))
}

struct Round {
    failures: usize,
    /// The earliest time a still-active series should be looked at again.
    next: Option<OffsetDateTime>,
}

async fn fetch_all(ctx: &Ctx, sel: &StarSelect, max: Duration) -> Result<Round> {
    let mut round = Round {
        failures: 0,
        next: None,
    };
    for mut cert in select(ctx, sel)? {
        let terms = cert.star.as_ref().map(|s| s.terms.clone()).expect("STAR");
        let at = match fetch_one(ctx, &mut cert).await {
            Ok(Fetched::Ended) => None,
            Ok(Fetched::Installed(info) | Fetched::Unchanged(info)) => {
                Some(next_look(&terms, &info, OffsetDateTime::now_utc(), max))
            }
            Err(e) => {
                round.failures += 1;
                (ctx.events)(&Event::Failure {
                    name: Some(cert.name.clone()),
                    error: e.to_string(),
                    problem: e.problem().cloned(),
                });
                eprintln!("sceau: error: {}: {e}", cert.name);
                Some(OffsetDateTime::now_utc() + Duration::from_secs(60).min(max))
            }
        };
        round.next = match (round.next, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(round)
}

async fn watch(ctx: &Ctx, a: &StarWatchArgs) -> Result<usize> {
    let max = Duration::from_secs(a.max_interval.max(1));
    loop {
        let round = fetch_all(ctx, &a.select, max).await?;
        let Some(next) = round.next else {
            println!("every STAR series has ended");
            return Ok(0);
        };
        let wait = (next - OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::from_secs(1));
        tracing::debug!("next STAR fetch in {wait:?}");
        tokio::time::sleep(wait).await;
    }
}

async fn cancel(ctx: &Ctx, names: &[String]) -> Result<()> {
    let certs = select(
        ctx,
        &StarSelect {
            cert_name: names.to_vec(),
        },
    )?;
    for mut cert in certs {
        let series = cert.star.clone().expect("STAR");
        if let Some(ended) = &series.ended {
            return Err(Error::Config(format!(
                "{}: the series has already ended ({ended})",
                cert.name
            )));
        }
        let client = connect(&cert.server, cert.ca_bundle.as_deref()).await?;
        let account = ensure_account(ctx, &client, None).await?;
        match client.cancel_series(&account, &series.order_url).await {
            Ok(order) if order.status == OrderStatus::Canceled => {
                end(
                    ctx,
                    &mut cert,
                    "canceled",
                    "canceled at the holder's request".into(),
                )?;
            }
            Ok(order) => {
                return Err(Error::Order(format!(
                    "{}: the server answered the cancellation with an order in state {:?}",
                    cert.name, order.status
                )));
            }
            // Canceled already (by an administrator, or another copy of this state).
            Err(e)
                if e.problem()
                    .is_some_and(|p| p.is(ProblemType::AutoRenewalCanceled)) =>
            {
                end(ctx, &mut cert, "canceled", e.to_string())?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn list(ctx: &Ctx, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for c in ctx.state.list_certs()? {
        let Some(s) = &c.star else { continue };
        let files = CertFiles::new(&ctx.cert_dir, &c.name, Modes::default());
        let info = files
            .read_fullchain()
            .and_then(|p| CertInfo::from_pem_chain(&p).ok());
        rows.push(serde_json::json!({
            "name": c.name,
            "identifiers": c.identifiers.iter().map(|i| i.value.clone()).collect::<Vec<_>>(),
            "server": c.server,
            "order": s.order_url,
            "star_certificate": s.certificate_url,
            "status": s.ended.clone().unwrap_or_else(|| "active".into()),
            "lifetime": s.terms.lifetime,
            "lifetime_adjust": s.terms.lifetime_adjust,
            "end_date": rfc3339(s.terms.end_date),
            "allow_certificate_get": s.terms.allow_certificate_get.unwrap_or(false),
            "serial": info.as_ref().map(|i| i.serial_hex.clone()),
            "not_before": info.as_ref().map(|i| rfc3339(i.not_before)),
            "not_after": info.as_ref().map(|i| rfc3339(i.not_after)),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialises")
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("no STAR series in {}", ctx.state.root.display());
        return Ok(());
    }
    println!(
        "{:<30} {:<9} {:>9}  {:<25} {:<25} NAMES",
        "NAME", "STATUS", "LIFETIME", "SERIES ENDS", "CURRENT UNTIL"
    );
    for r in &rows {
        println!(
            "{:<30} {:<9} {:>9}  {:<25} {:<25} {}",
            r["name"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            sceau_wire::duration::describe(Duration::from_secs(
                r["lifetime"].as_u64().unwrap_or(0)
            )),
            r["end_date"].as_str().unwrap_or(""),
            r["not_after"].as_str().unwrap_or("-"),
            crate::misc::names_column(&r["identifiers"])
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_accepts_times_dates_and_durations() {
        let now = OffsetDateTime::parse("2027-01-10T08:00:00Z", &Rfc3339).unwrap();
        let at = |s| parse_when(s, now, "--until").map(rfc3339);
        assert_eq!(at("2027-02-01T12:30:00Z").unwrap(), "2027-02-01T12:30:00Z");
        assert_eq!(at("2027-02-01").unwrap(), "2027-02-01T00:00:00Z");
        assert_eq!(at("30d").unwrap(), "2027-02-09T08:00:00Z");
        for bad in [
            "",
            "tomorrow",
            "2027-02-30",
            "2027-13-01",
            "27-02-01",
            "-1d",
        ] {
            assert!(at(bad).is_err(), "{bad:?}");
        }
    }
}
