//! `sceau-server admin cert list|show|revoke`: the certificates this server issued, found by
//! name, serial, ACME account, external account, status, expiry and issuance time; revoked one
//! by one or in bulk by the agency guide's compromise procedures (Annex A.2: an external
//! account is compromised, revoke what its suspect ACME accounts obtained; Annex A.5: an ACME
//! account is compromised, revoke what it obtained since the estimated compromise).
//!
//! Invariants:
//! - Every revocation goes through `sceau_acme::revoke_certificate`, the path ACME revocation
//!   takes: one reason check (`sceau_wire::reason::end_entity`), one transaction for the state
//!   change, the CRL shard's dirty mark, the OCSP responses' removal and the audit row. This
//!   process has no server in it: the running server's CRL job finds the dirty shard in the
//!   database at its next run, and no `good` OCSP response signed before the revocation is
//!   served again (they are deleted with it).
//! - Input is checked entirely before anything is written: a bad filter, time, reason or an
//!   unknown serial or account is one error line and no change.
//! - A bulk revocation without `--dry-run` needs `--yes`: the command is meant to be run twice,
//!   first as a dry run whose list the operator reviews, then with `--yes`. A prompt instead
//!   would hang under automation or be answered by `yes |` without review, and the flag leaves
//!   the decision in the shell history and in the audit row.
//! - Each revoked certificate gets its own `certificate.revoked` audit row with the actor, the
//!   reason, the comment and the procedure; reads are audited as every admin command is.

use clap::{Args, Subcommand};
use sceau_acme::urls::Urls;
use sceau_acme::{RevokeError, Revoker};
use sceau_admin::report::when;
use sceau_admin::{AdminError, Registry, parse_duration};
use sceau_store::{CertListing, CertQuery, CertStatus, Change, StoreError, now};
use sceau_wire::reason;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// List certificates (every filter given narrows the list)
    List(ListArgs),
    /// Show one certificate: names, accounts, validity, status, issuer, CRL shard, chain, audit
    Show {
        /// Serial number in hex (colons and case do not matter)
        serial: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one certificate (--serial), or those of an ACME account or external account
    /// issued since a time (agency guide Annex A.5, A.2)
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// A name the certificate covers (exactly, or through a wildcard)
    #[arg(long)]
    name: Option<String>,
    /// Serial number in hex
    #[arg(long)]
    serial: Option<String>,
    /// ACME account id or URL
    #[arg(long)]
    account: Option<String>,
    /// External account (EAB key id)
    #[arg(long)]
    external: Option<String>,
    /// valid, revoked or expired
    #[arg(long)]
    status: Option<String>,
    /// Expiring before this time (RFC 3339 or YYYY-MM-DD, UTC)
    #[arg(long)]
    expires_before: Option<String>,
    /// Expiring within this long from now (h, d, w or y)
    #[arg(long)]
    expires_within: Option<String>,
    /// Issued at or after this time (RFC 3339, YYYY-MM-DD, or a duration back from now)
    #[arg(long)]
    issued_since: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The certificate's serial number in hex
    #[arg(long)]
    serial: Option<String>,
    /// Every certificate of this ACME account (id or URL): Annex A.5
    #[arg(long)]
    account: Option<String>,
    /// Every certificate of the ACME accounts of this external account (EAB key id): Annex A.2
    #[arg(long)]
    external: Option<String>,
    /// With --account or --external: only those issued at or after this time (RFC 3339,
    /// YYYY-MM-DD, or a duration back from now) [default: all]
    #[arg(long)]
    since: Option<String>,
    /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded,
    /// cessationOfOperation, privilegeWithdrawn (or its code) [required]
    #[arg(long)]
    reason: Option<String>,
    /// Why, in words, for the audit trail
    #[arg(long)]
    comment: Option<String>,
    /// List what would be revoked; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Confirm a bulk revocation (required with --account or --external without --dry-run)
    #[arg(long)]
    yes: bool,
    /// Print {"revoked" or "would_revoke": [...], "skipped_already_revoked": [...], ...}
    #[arg(long)]
    json: bool,
}

fn invalid(text: impl Into<String>) -> AdminError {
    AdminError::Invalid(text.into())
}

/// A time given on the command line: RFC 3339, a UTC date, or (`ago_ok`) a duration back
/// from now.
fn parse_time(flag: &str, text: &str, ago_ok: bool) -> Result<i64, AdminError> {
    use time::format_description::well_known::Rfc3339;
    let t = text.trim();
    if let Ok(d) = time::OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(d.unix_timestamp());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(t, &date_format) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    if ago_ok && let Ok(secs) = parse_duration(t) {
        return Ok(now() - secs);
    }
    let forms = if ago_ok {
        "an RFC 3339 time (2026-05-01T12:00:00Z), a date (2026-05-01) or a duration back from now (7d)"
    } else {
        "an RFC 3339 time (2026-05-01T12:00:00Z) or a date (2026-05-01)"
    };
    Err(invalid(format!(
        "{flag} {text:?} is not a time: use {forms}"
    )))
}

/// Lowercase hex without separators; refuses anything else.
fn normalize_serial(text: &str) -> Result<String, AdminError> {
    let s: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!(
            "{text:?} is not a serial number: give it in hex, as `admin cert list` shows it"
        )));
    }
    Ok(s)
}

/// The certificate with this serial; OpenSSL prints serials without the sign octet our
/// stored form keeps, so that form is tried too.
async fn cert_by_serial(r: &Registry, text: &str) -> Result<CertListing, AdminError> {
    let s = normalize_serial(text)?;
    let mut forms = vec![s.clone()];
    forms.push(if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        format!("00{s}")
    });
    for serial in forms {
        let q = CertQuery {
            serial: Some(serial),
            now: now(),
            ..CertQuery::default()
        };
        if let Some(c) = r.store().find_certs(&q).await?.into_iter().next() {
            return Ok(c);
        }
    }
    Err(invalid(format!(
        "no certificate with serial {s} (see `sceau-server admin cert list`)"
    )))
}

async fn check_account(r: &Registry, text: &str) -> Result<String, AdminError> {
    let id = Registry::acme_account_id(text).to_owned();
    match r.store().account_by_id(&id).await {
        Ok(_) => Ok(id),
        Err(StoreError::NotFound) => Err(AdminError::UnknownAcmeAccount(id)),
        Err(e) => Err(e.into()),
    }
}

async fn check_external(r: &Registry, kid: &str) -> Result<String, AdminError> {
    r.get(kid).await.map(|aa| aa.kid)
}

fn status_name(c: &CertListing, at: i64) -> &'static str {
    c.status(at).as_str()
}

fn reason_name(code: Option<i64>) -> Option<&'static str> {
    code.and_then(|c| u8::try_from(c).ok())
        .and_then(reason::name)
}

fn names_of(c: &CertListing) -> Vec<&str> {
    c.names.iter().map(|i| i.value.as_str()).collect()
}

fn listing_json(c: &CertListing, urls: &Urls, at: i64) -> Value {
    json!({
        "serial": c.cert.serial,
        "names": names_of(c),
        "account": c.cert.account_id,
        "account_url": urls.account(&c.cert.account_id),
        "external_account": c.external_kid,
        "not_before": c.cert.not_before,
        "not_after": c.cert.not_after,
        "issued_at": c.cert.created_at,
        "status": status_name(c, at),
        "revoked_at": c.cert.revoked_at,
        "reason": reason_name(c.cert.revocation_reason),
        "reason_code": c.cert.revocation_reason,
    })
}

fn print_table(list: &[CertListing], at: i64) {
    println!(
        "{:<40} {:<8} {:<20} {:<22} {:<24} NAMES",
        "SERIAL", "STATUS", "NOT AFTER", "ACME ACCOUNT", "EXTERNAL"
    );
    for c in list {
        let mut status = status_name(c, at).to_owned();
        if let Some(r) = reason_name(c.cert.revocation_reason) {
            status = format!("{status} ({r})");
        }
        println!(
            "{:<40} {:<8} {:<20} {:<22} {:<24} {}",
            c.cert.serial,
            status,
            when(c.cert.not_after),
            c.cert.account_id,
            c.external_kid.as_deref().unwrap_or("-"),
            names_of(c).join(",")
        );
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

pub async fn run(
    r: &Registry,
    urls: &Urls,
    public_url: Option<&str>,
    upstream: Option<&dyn sceau_ca::Signer>,
    actor: &str,
    command: CertCommand,
) -> Result<(), AdminError> {
    match command {
        CertCommand::List(a) => list(r, urls, actor, a).await,
        CertCommand::Show { serial, json } => show(r, urls, public_url, actor, &serial, json).await,
        CertCommand::Revoke(a) => revoke(r, urls, upstream, actor, a).await,
    }
}

impl CertCommand {
    /// Whether the command may revoke (and so, in RA mode, reach the upstream CA).
    pub fn revokes(&self) -> bool {
        matches!(self, CertCommand::Revoke(a) if !a.dry_run)
    }
}

async fn list(r: &Registry, urls: &Urls, actor: &str, a: ListArgs) -> Result<(), AdminError> {
    let at = now();
    if a.expires_before.is_some() && a.expires_within.is_some() {
        return Err(invalid(
            "--expires-before and --expires-within conflict: give one",
        ));
    }
    let status = match a.status.as_deref() {
        None => None,
        Some("valid") => Some(CertStatus::Valid),
        Some("revoked") => Some(CertStatus::Revoked),
        Some("expired") => Some(CertStatus::Expired),
        Some(other) => {
            return Err(invalid(format!(
                "--status {other:?}: use valid, revoked or expired"
            )));
        }
    };
    let expires_before = match (&a.expires_before, &a.expires_within) {
        (Some(t), _) => Some(parse_time("--expires-before", t, false)?),
        (_, Some(d)) => Some(at + parse_duration(d)?),
        _ => None,
    };
    let issued_since = a
        .issued_since
        .as_deref()
        .map(|t| parse_time("--issued-since", t, true))
        .transpose()?;
    let account_id = match &a.account {
        Some(t) => Some(check_account(r, t).await?),
        None => None,
    };
    let external_kid = match &a.external {
        Some(k) => Some(check_external(r, k).await?),
        None => None,
    };
    let serial = a.serial.as_deref().map(normalize_serial).transpose()?;
    let q = CertQuery {
        serial,
        account_id,
        external_kid,
        status,
        expires_before,
        issued_since,
        name: a.name.map(|n| n.trim().trim_end_matches('.').to_owned()),
        now: at,
    };
    let found = r.store().find_certs(&q).await?;
    r.record_read("certificates_listed", q.external_kid.as_deref(), actor)
        .await?;
    if a.json {
        let v: Vec<Value> = found.iter().map(|c| listing_json(c, urls, at)).collect();
        print_json(&Value::Array(v));
    } else if found.is_empty() {
        println!("No certificate matches.");
    } else {
        print_table(&found, at);
        println!("{} certificate(s)", found.len());
    }
    Ok(())
}

async fn show(
    r: &Registry,
    urls: &Urls,
    public_url: Option<&str>,
    actor: &str,
    serial: &str,
    json: bool,
) -> Result<(), AdminError> {
    let at = now();
    let c = cert_by_serial(r, serial).await?;
    let events = r.store().cert_audit_events(&c.cert.serial).await?;
    let change = Change {
        actor,
        action: "certificate_shown",
        detail: json!({"serial": c.cert.serial}),
    };
    r.store().record_admin_event(None, None, &change).await?;
    let shard = c.cert.crl_shard.and_then(|s| u32::try_from(s).ok());
    let crl_url = match (public_url, &c.cert.issuer_id, shard) {
        (Some(base), Some(issuer), Some(shard)) => Some(sceau_ca::crl_url(base, issuer, shard)),
        _ => None,
    };
    let pem = sceau_wire::key::pem_encode("CERTIFICATE", &c.cert.der);
    if json {
        let mut v = listing_json(&c, urls, at);
        let extra = json!({
            "id": c.cert.id,
            "order": c.cert.order_id,
            "issuer": c.cert.issuer_id,
            "crl_shard": c.cert.crl_shard,
            "crl_url": crl_url,
            "ari_id": c.cert.ari_id,
            "replaced_by": c.cert.replaced_by,
            "pem": pem,
            "chain_pem": c.cert.chain_pem,
            "audit": events.iter().map(|e| json!({"at": e.at, "event": e.event, "account": e.account_id, "client_ip": e.client_ip, "detail": e.detail})).collect::<Vec<_>>(),
        });
        if let (Some(map), Value::Object(more)) = (v.as_object_mut(), extra) {
            map.extend(more);
        }
        print_json(&v);
        return Ok(());
    }
    println!("Certificate {}", c.cert.serial);
    println!("  names:         {}", names_of(&c).join(", "));
    let status = match reason_name(c.cert.revocation_reason) {
        Some(reason) => format!(
            "revoked at {} ({reason})",
            when(c.cert.revoked_at.unwrap_or_default())
        ),
        None => status_name(&c, at).to_owned(),
    };
    println!("  status:        {status}");
    println!(
        "  validity:      {} to {}",
        when(c.cert.not_before),
        when(c.cert.not_after)
    );
    println!("  issued:        {}", when(c.cert.created_at));
    println!(
        "  ACME account:  {} ({})",
        c.cert.account_id,
        urls.account(&c.cert.account_id)
    );
    println!(
        "  external:      {}",
        c.external_kid.as_deref().unwrap_or("-")
    );
    println!(
        "  issuer:        {}",
        c.cert.issuer_id.as_deref().unwrap_or("-")
    );
    match (shard, &crl_url) {
        (Some(s), Some(u)) => println!("  CRL shard:     {s} ({u})"),
        (Some(s), None) => println!(
            "  CRL shard:     {s} (served by the server at /crl/<issuer>/{s}.crl on its revocation listener)"
        ),
        _ => println!("  CRL shard:     - (issued before certificates carried one)"),
    }
    println!("  audit:");
    for e in &events {
        println!("    {}  {}  {}", when(e.at), e.event, e.detail);
    }
    print!("{pem}");
    Ok(())
}

/// What a revocation command selected, before anything is written.
struct Plan {
    procedure: &'static str,
    targets: Vec<CertListing>,
    already_revoked: Vec<CertListing>,
    expired: Vec<CertListing>,
}

async fn revoke(
    r: &Registry,
    urls: &Urls,
    upstream: Option<&dyn sceau_ca::Signer>,
    actor: &str,
    a: RevokeArgs,
) -> Result<(), AdminError> {
    let at = now();
    // Every check first: nothing is written unless the whole command is acceptable.
    // Required, but checked here rather than by clap, so that its absence is one line too.
    let Some(reason_text) = a.reason.as_deref() else {
        return Err(invalid(
            "--reason is required: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn",
        ));
    };
    let code = reason::parse_end_entity(reason_text).map_err(|e| invalid(e.to_string()))?;
    let bulk = match (&a.serial, &a.account, &a.external) {
        (Some(_), None, None) => false,
        (None, Some(_), None) | (None, None, Some(_)) => true,
        (None, None, None) => {
            return Err(invalid(
                "say what to revoke: --serial S, or --account ID or --external KID (with --since T)",
            ));
        }
        _ => {
            return Err(invalid(
                "--serial, --account and --external conflict: give exactly one",
            ));
        }
    };
    if !bulk && a.since.is_some() {
        return Err(invalid(
            "--since applies to --account or --external, not to --serial",
        ));
    }
    if a.dry_run && a.yes {
        return Err(invalid(
            "--dry-run and --yes conflict: a dry run changes nothing",
        ));
    }
    let since = a
        .since
        .as_deref()
        .map(|t| parse_time("--since", t, true))
        .transpose()?;
    let plan = if let Some(serial) = &a.serial {
        let c = cert_by_serial(r, serial).await?;
        if c.cert.revoked_at.is_some() {
            return Err(AdminError::State(format!(
                "certificate {} is already revoked (at {}, reason {})",
                c.cert.serial,
                when(c.cert.revoked_at.unwrap_or_default()),
                reason_name(c.cert.revocation_reason).unwrap_or("unspecified")
            )));
        }
        if c.status(at) == CertStatus::Expired {
            return Err(AdminError::State(format!(
                "certificate {} expired at {}: an expired certificate is not revoked (it no longer appears on CRLs, RFC 5280 §3.3)",
                c.cert.serial,
                when(c.cert.not_after)
            )));
        }
        Plan {
            procedure: "single",
            targets: vec![c],
            already_revoked: Vec::new(),
            expired: Vec::new(),
        }
    } else {
        let (account_id, external_kid, procedure) = match (&a.account, &a.external) {
            (Some(t), _) => (Some(check_account(r, t).await?), None, "acme_account"),
            (_, Some(k)) => (None, Some(check_external(r, k).await?), "external_account"),
            _ => unreachable!("checked above"),
        };
        if !a.dry_run && !a.yes {
            return Err(invalid(
                "a bulk revocation needs --yes: run it with --dry-run first, review the list, then again with --yes",
            ));
        }
        let q = CertQuery {
            account_id,
            external_kid,
            issued_since: since,
            now: at,
            ..CertQuery::default()
        };
        let mut plan = Plan {
            procedure,
            targets: Vec::new(),
            already_revoked: Vec::new(),
            expired: Vec::new(),
        };
        for c in r.store().find_certs(&q).await? {
            match c.status(at) {
                CertStatus::Valid => plan.targets.push(c),
                CertStatus::Revoked => plan.already_revoked.push(c),
                CertStatus::Expired => plan.expired.push(c),
            }
        }
        plan
    };
    let reason_text = reason::name(code).unwrap_or("?");
    if a.dry_run {
        let change = Change {
            actor,
            action: "certificates_revoke_dry_run",
            detail: json!({"procedure": plan.procedure, "account": a.account, "external": a.external, "since": since, "reason": code, "would_revoke": plan.targets.len()}),
        };
        r.store().record_admin_event(None, None, &change).await?;
        report(&plan, &[], urls, at, reason_text, true, a.json);
        return Ok(());
    }
    let mut revoked = Vec::new();
    let mut raced = Vec::new();
    for c in &plan.targets {
        let mut detail = serde_json::Map::new();
        detail.insert("actor".into(), actor.into());
        detail.insert("procedure".into(), plan.procedure.into());
        if let Some(comment) = &a.comment {
            detail.insert("comment".into(), comment.clone().into());
        }
        if let Some(since) = since {
            detail.insert("since".into(), since.into());
        }
        let who = Revoker {
            by: format!("admin:{actor}"),
            account: None,
            client_ip: None,
            detail,
        };
        match sceau_acme::revoke_certificate(r.store(), None, upstream, &c.cert, code, &who).await {
            Ok(()) => revoked.push(c.cert.serial.clone()),
            // Revoked meanwhile (by ACME or another administrator): a bulk run counts it.
            Err(RevokeError::AlreadyRevoked(s)) if plan.procedure != "single" => raced.push(s),
            Err(RevokeError::AlreadyRevoked(s)) => {
                return Err(AdminError::State(format!(
                    "certificate {s} is already revoked"
                )));
            }
            Err(RevokeError::Reason(e)) => return Err(invalid(e.to_string())),
            // Nothing recorded for this one; those before it stay revoked (upstream and here).
            Err(e @ RevokeError::Upstream { .. }) => {
                if !revoked.is_empty() {
                    eprintln!(
                        "revoked before the error: {} (run the command again for the rest)",
                        revoked.join(", ")
                    );
                }
                return Err(AdminError::State(e.to_string()));
            }
            Err(RevokeError::Store(e)) => {
                if !revoked.is_empty() {
                    eprintln!(
                        "revoked before the error: {} (run the command again for the rest)",
                        revoked.join(", ")
                    );
                }
                return Err(e.into());
            }
        }
    }
    report(&plan, &raced, urls, at, reason_text, false, a.json);
    if plan.procedure != "single" {
        note_account_status(r, &plan).await;
    }
    Ok(())
}

/// The procedures start by deactivating the account (Annex A.2 step A, A.5 step 1): say so
/// when it still can obtain certificates.
async fn note_account_status(r: &Registry, plan: &Plan) {
    let mut seen = std::collections::BTreeSet::new();
    for c in plan.targets.iter().chain(&plan.already_revoked) {
        if !seen.insert(c.cert.account_id.clone()) {
            continue;
        }
        if let Ok(acc) = r.store().account_by_id(&c.cert.account_id).await
            && acc.status == "valid"
        {
            eprintln!(
                "note: ACME account {} is still valid and can obtain new certificates; deactivate it (admin acme-account deactivate) as the procedure's first step",
                acc.id
            );
        }
    }
}

fn report(
    plan: &Plan,
    raced: &[String],
    urls: &Urls,
    at: i64,
    reason_text: &str,
    dry_run: bool,
    json: bool,
) {
    let serials = |v: &[CertListing]| v.iter().map(|c| c.cert.serial.clone()).collect::<Vec<_>>();
    let done: Vec<String> = serials(&plan.targets)
        .into_iter()
        .filter(|s| !raced.contains(s))
        .collect();
    let mut already = serials(&plan.already_revoked);
    already.extend(raced.iter().cloned());
    if json {
        let key = if dry_run { "would_revoke" } else { "revoked" };
        let listed: Vec<Value> = plan
            .targets
            .iter()
            .filter(|c| !raced.contains(&c.cert.serial))
            .map(|c| listing_json(c, urls, at))
            .collect();
        print_json(&json!({
            "dry_run": dry_run,
            "procedure": plan.procedure,
            "reason": reason_text,
            key: listed,
            "skipped_already_revoked": already,
            "skipped_expired": serials(&plan.expired),
        }));
        return;
    }
    let verb = if dry_run { "Would revoke" } else { "Revoked" };
    println!(
        "{verb} {} certificate(s), reason {reason_text}:",
        done.len()
    );
    for c in plan
        .targets
        .iter()
        .filter(|c| !raced.contains(&c.cert.serial))
    {
        println!(
            "  {}  {}  issued {}",
            c.cert.serial,
            names_of(c).join(","),
            when(c.cert.created_at)
        );
    }
    if !already.is_empty() || !plan.expired.is_empty() {
        println!(
            "Skipped: {} already revoked, {} expired",
            already.len(),
            plan.expired.len()
        );
    }
    if dry_run {
        println!("Nothing was changed (dry run). Run again with --yes to revoke.");
    } else if !done.is_empty() {
        println!(
            "The running server signs the CRL shards again at its CRL job's next run; the earlier OCSP responses are withdrawn."
        );
    }
}
