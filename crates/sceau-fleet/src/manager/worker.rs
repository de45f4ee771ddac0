//! The manager's worker: renewal marking, then issuance of the pending CSRs in batches.
//!
//! One batch: an order per CSR (at most `concurrency` at once), then every dns-01 record of the
//! batch put in place together — one RFC 2136 UPDATE per zone — and a single wait until every
//! authoritative server shows every record (RFC 8555 §8.4), then the challenges answered, the
//! orders finalized with the agents' CSRs and the chains downloaded, and finally the records
//! removed, whatever happened (R64).
//!
//! Invariants:
//! - A certificate is archived only when it certifies the CSR's key and exactly its names;
//!   anything else is refused and recorded, never handed to an agent.
//! - A transient failure (ACME server down, DNS unreachable or refusing, a challenge the CA
//!   could not see) keeps the CSR pending and retries it with a doubling delay, capped at an
//!   hour; a refusal of the CSR itself (badCSR, badPublicKey, rejectedIdentifier, caa,
//!   unauthorized…) asks the agent for a new one. Nothing is lost either way.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sceau_client::certinfo::CertInfo;
use sceau_client::order::OrderHandle;
use sceau_client::solver::dns::{DnsUpdater, TsigKey};
use sceau_client::solver::{ChallengeTask, Method, Presented};
use sceau_client::{Account, AcmeClient};
use sceau_store::fleet::{ArchivedCert, FleetCert};
use sceau_wire::{
    AuthorizationStatus, Identifier, NewOrder, OrderStatus, ProblemType, challenge_type,
};

use super::Manager;
use crate::error::{Error, Result};

/// How long one batch may take from order to chain.
const BATCH_DEADLINE: Duration = Duration::from_secs(600);
/// ARI is asked again after this long (RFC 9773 §4.3 lets the server say sooner or later).
const ARI_RECHECK: i64 = 6 * 3600;
/// Longest retry delay.
const MAX_RETRY: i64 = 3600;

/// Runs passes for ever: after each, sleeps until a CSR arrives or `poll_secs` pass.
pub async fn run(m: Arc<Manager>, account: Account) {
    let mut client: Option<Arc<AcmeClient>> = None;
    loop {
        if client.is_none() {
            match super::acme_client(&m.config.acme).await {
                Ok(c) => client = Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!("ACME server {}: {e}", m.config.acme.server);
                    defer_all(&m, &format!("the ACME server is unreachable: {e}")).await;
                }
            }
        }
        if let Some(c) = &client
            && let Err(e) = pass(&m, c, &account).await
        {
            tracing::warn!("manager pass: {e}");
            if matches!(e, Error::Acme(sceau_client::Error::Transport { .. })) {
                client = None;
            }
        }
        tokio::select! {
            _ = m.wake.notified() => {
                tokio::time::sleep(Duration::from_millis(m.config.renewal.gather_ms)).await;
            }
            _ = tokio::time::sleep(Duration::from_secs(m.config.renewal.poll_secs)) => {}
        }
    }
}

/// One pass: mark what is due, then issue every pending CSR whose time has come.
pub async fn pass(m: &Manager, client: &AcmeClient, account: &Account) -> Result<()> {
    renewal_pass(m, client).await?;
    loop {
        let batch = m.store.pending(m.config.renewal.batch).await?;
        let full = batch.len() as i64 == m.config.renewal.batch;
        if batch.is_empty() {
            return Ok(());
        }
        issue_batch(m, client, account, batch).await;
        if !full {
            return Ok(());
        }
    }
}

/// The instant `fraction` of the lifetime has passed (R84).
pub fn lifetime_point(not_before: i64, not_after: i64, fraction: f64) -> i64 {
    not_before + ((not_after - not_before) as f64 * fraction) as i64
}

async fn renewal_pass(m: &Manager, client: &AcmeClient) -> Result<()> {
    let now = sceau_store::now();
    let ari = client.directory().renewal_info.is_some();
    for (cert, current) in m.store.current().await? {
        if cert.state != "issued" {
            continue;
        }
        let mut renew_at = current.renew_at;
        if ari
            && let Some(id) = &current.ari_id
            && current
                .ari_checked_at
                .is_none_or(|t| now - t >= ARI_RECHECK)
        {
            match client.renewal_info(id).await {
                Ok(Some((info, _))) => {
                    let at = match sceau_client::renewal::by_window(
                        &info,
                        time::OffsetDateTime::now_utc(),
                    ) {
                        sceau_client::renewal::Decision::Due { .. } => now,
                        sceau_client::renewal::Decision::NotYet { at, .. } => at.unix_timestamp(),
                    };
                    renew_at = at;
                    m.store.set_renew_at(&current.serial, at, now).await?;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    serial = current.serial,
                    "renewalInfo failed, keeping the lifetime rule: {e}"
                ),
            }
        }
        if now >= renew_at {
            let reason = if current.ari_checked_at.is_some() {
                "inside the CA's renewal window (ARI)"
            } else {
                "2/3 of the lifetime has passed"
            };
            if m.store
                .mark_due(&cert.agent, &cert.cert_name, &current.serial, reason)
                .await?
            {
                tracing::info!(
                    agent = cert.agent,
                    cert = cert.cert_name,
                    "renewal due: waiting for the agent's new CSR"
                );
            }
        }
    }
    Ok(())
}

/// Whether an ACME failure is a refusal of the CSR itself (a new one is needed).
fn refuses_csr(e: &Error) -> bool {
    let problem = match e {
        Error::Acme(e) => e.problem(),
        // A certificate that does not match its CSR: the agent gets a fresh try with a new key.
        Error::Refused { .. } => return true,
        _ => None,
    };
    problem.is_some_and(|p| {
        [
            ProblemType::BadCsr,
            ProblemType::BadPublicKey,
            ProblemType::BadSignatureAlgorithm,
            ProblemType::RejectedIdentifier,
            ProblemType::UnsupportedIdentifier,
            ProblemType::Caa,
            ProblemType::Unauthorized,
        ]
        .into_iter()
        .any(|t| p.is(t))
    })
}

async fn record(m: &Manager, cert: &FleetCert, e: &Error) {
    m.counters.failures.fetch_add(1, Ordering::Relaxed);
    let Some(csr) = &cert.csr else { return };
    let retry_at = (!refuses_csr(e)).then(|| {
        let delay = m
            .config
            .renewal
            .retry_secs
            .saturating_mul(1 << cert.attempts.min(12))
            .min(MAX_RETRY);
        sceau_store::now() + delay
    });
    tracing::warn!(
        agent = cert.agent,
        cert = cert.cert_name,
        retry_at,
        "issuance failed: {e}"
    );
    if let Err(se) = m
        .store
        .record_failure(&cert.agent, &cert.cert_name, csr, &e.to_string(), retry_at)
        .await
    {
        tracing::error!("recording a failure: {se}");
    }
}

/// Every pending CSR due now is deferred with `why` (the ACME server cannot be reached).
async fn defer_all(m: &Manager, why: &str) {
    let Ok(pending) = m.store.pending(m.config.renewal.batch).await else {
        return;
    };
    let e = Error::Config(why.to_owned());
    for c in &pending {
        record(m, c, &e).await;
    }
}

/// An order waiting for its challenges.
struct Job {
    cert: FleetCert,
    csr_der: Vec<u8>,
    order: OrderHandle,
    /// (authorization URL, challenge URL, task)
    tasks: Vec<(String, String, ChallengeTask)>,
}

async fn open_order(
    m: &Manager,
    client: &AcmeClient,
    account: &Account,
    cert: FleetCert,
) -> std::result::Result<Job, (FleetCert, Error)> {
    let work = async {
        let csr_der = sceau_wire::b64::decode(cert.csr.as_deref().unwrap_or_default())
            .map_err(|_| Error::Config("stored CSR is not base64url".into()))?;
        let order = client
            .new_order(
                account,
                &NewOrder {
                    identifiers: cert.names.iter().map(Identifier::dns).collect(),
                    profile: m.config.acme.profile.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let mut tasks = Vec::new();
        for authz_url in &order.order.authorizations {
            let (authz, _) = client.get_authorization(account, authz_url).await?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let ch = authz
                .challenges
                .iter()
                .find(|c| c.kind == challenge_type::DNS_01)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "the CA offers no dns-01 challenge for {}",
                        authz.identifier.value
                    ))
                })?;
            let token = ch
                .token
                .clone()
                .ok_or_else(|| Error::Config("a challenge without token".into()))?;
            tasks.push((
                authz_url.clone(),
                ch.url.clone(),
                ChallengeTask {
                    identifier: authz.identifier.clone(),
                    method: Method::Trusted,
                    key_authorization: account.key_authorization(&token),
                    token,
                },
            ));
        }
        Ok::<_, Error>((csr_der, order, tasks))
    };
    match work.await {
        Ok((csr_der, order, tasks)) => Ok(Job {
            cert,
            csr_der,
            order,
            tasks,
        }),
        Err(e) => Err((cert, e)),
    }
}

/// What one batch put in DNS, to be removed.
enum Placed {
    Update(DnsUpdater, Vec<sceau_client::solver::dns::AddedRecord>),
    Hook(Presented),
    Nothing,
}

async fn place_records(m: &Manager, jobs: &[Job]) -> (Placed, Result<()>) {
    let dns = &m.config.dns;
    let tasks: Vec<&ChallengeTask> = jobs
        .iter()
        .flat_map(|j| j.tasks.iter().map(|(_, _, t)| t))
        .collect();
    if tasks.is_empty() {
        return (Placed::Nothing, Ok(()));
    }
    if let Some(program) = &dns.hook {
        let mut presented = Presented::default();
        for t in tasks {
            let mut t = t.clone();
            t.method = Method::Dns01Hook {
                program: program.clone(),
            };
            if let Err(e) = presented.present(&t).await {
                return (Placed::Hook(presented), Err(e.into()));
            }
        }
        return (Placed::Hook(presented), Ok(()));
    }
    let Some(server) = dns.update_server else {
        return (Placed::Nothing, Err(Error::Config("no DNS method".into())));
    };
    let key = match dns.tsig_key_file.as_deref().map(TsigKey::load).transpose() {
        Ok(k) => k,
        Err(e) => return (Placed::Nothing, Err(e.into())),
    };
    let mut updater = DnsUpdater::new(server, key);
    updater.check_servers = dns.check_servers.clone();
    updater.propagation_timeout = Duration::from_secs(dns.propagation_timeout_secs);
    let records: Vec<(String, String)> = tasks
        .iter()
        .map(|t| (t.identifier.value.clone(), t.dns_value()))
        .collect();
    match updater.add_txts(&records).await {
        Ok(added) => {
            let zones = count_zones(&added);
            m.counters.dns_updates.fetch_add(zones, Ordering::Relaxed);
            m.counters
                .dns_records
                .fetch_add(added.len() as u64, Ordering::Relaxed);
            let visible = updater.wait_all_visible(&added).await.map_err(Error::from);
            (Placed::Update(updater, added), visible)
        }
        Err(e) => (Placed::Nothing, Err(e.into())),
    }
}

fn count_zones(records: &[sceau_client::solver::dns::AddedRecord]) -> u64 {
    let mut zones: Vec<String> = records.iter().map(|r| r.zone.to_string()).collect();
    zones.sort();
    zones.dedup();
    zones.len() as u64
}

async fn remove_records(m: &Manager, placed: Placed) {
    match placed {
        Placed::Update(updater, added) => {
            let zones = count_zones(&added);
            match updater.remove_txts(&added).await {
                Ok(()) => {
                    m.counters.dns_updates.fetch_add(zones, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("removing the batch's TXT records: {e}"),
            }
        }
        Placed::Hook(p) => {
            for e in p.cleanup().await {
                tracing::warn!("{e}");
            }
        }
        Placed::Nothing => {}
    }
}

/// Answers the challenges of one order, finalizes it with the agent's CSR and checks the chain.
async fn complete(
    client: &AcmeClient,
    account: &Account,
    job: &Job,
    fraction: f64,
) -> Result<ArchivedCert> {
    let deadline = Instant::now() + BATCH_DEADLINE;
    for (_, ch_url, _) in &job.tasks {
        client.respond_challenge(account, ch_url).await?;
    }
    for (authz_url, _, task) in &job.tasks {
        let authz = client
            .poll_authorization(account, authz_url, deadline)
            .await?;
        if authz.status != AuthorizationStatus::Valid {
            let why = authz
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref().map(|p| p.to_string()))
                .unwrap_or_else(|| format!("authorization is {:?}", authz.status));
            return Err(Error::Config(format!(
                "dns-01 for {} failed: {why}",
                task.identifier.value
            )));
        }
    }
    let ready = client
        .poll_order(account, &job.order.url, true, deadline)
        .await?;
    if ready.status == OrderStatus::Invalid {
        return Err(Error::Config(format!(
            "the CA made the order invalid: {}",
            ready.error.map(|p| p.to_string()).unwrap_or_default()
        )));
    }
    let mut done = client.finalize(account, &job.order, &job.csr_der).await?;
    if !(done.status == OrderStatus::Valid && done.certificate.is_some()) {
        done = client
            .poll_order(account, &job.order.url, false, deadline)
            .await?;
    }
    if done.status != OrderStatus::Valid {
        return Err(Error::Config(format!(
            "the order ended {:?}: {}",
            done.status,
            done.error.map(|p| p.to_string()).unwrap_or_default()
        )));
    }
    let url = done
        .certificate
        .ok_or_else(|| Error::Config("a valid order without certificate URL".into()))?;
    let chain = client.download_certificate(account, &url).await?;
    verified(&job.cert, &chain.pem, fraction)
}

async fn complete_job<'a>(
    client: &AcmeClient,
    account: &Account,
    job: &'a Job,
    fraction: f64,
) -> (&'a Job, Result<ArchivedCert>) {
    (job, complete(client, account, job, fraction).await)
}

/// The archive entry for `chain_pem` when it certifies exactly the CSR's key and names.
pub fn verified(cert: &FleetCert, chain_pem: &str, fraction: f64) -> Result<ArchivedCert> {
    let info = CertInfo::from_pem_chain(chain_pem)?;
    let spki = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &info.public_key_der,
    ));
    let refuse = |detail: String| Error::Refused {
        kind: "badCertificate".into(),
        detail,
    };
    if Some(&spki) != cert.spki_sha256.as_ref() {
        return Err(refuse(
            "the CA returned a certificate for another key; it is not handed out".into(),
        ));
    }
    let mut names: Vec<String> = info
        .names
        .iter()
        .filter_map(|i| crate::names::normalise(&i.value))
        .collect();
    names.sort();
    names.dedup();
    if names != cert.names {
        return Err(refuse(format!(
            "the CA returned a certificate for {} instead of {}; it is not handed out",
            names.join(", "),
            cert.names.join(", ")
        )));
    }
    let not_before = info.not_before.unix_timestamp();
    let not_after = info.not_after.unix_timestamp();
    Ok(ArchivedCert {
        serial: info.serial_hex.clone(),
        agent: cert.agent.clone(),
        cert_name: cert.cert_name.clone(),
        names,
        spki_sha256: spki,
        not_before,
        not_after,
        renew_at: lifetime_point(not_before, not_after, fraction),
        ari_id: info.ari_id.clone(),
        ari_checked_at: None,
        chain_pem: chain_pem.to_owned(),
        issued_at: sceau_store::now(),
        picked_up_at: None,
        revoked_at: None,
    })
}

async fn issue_batch(m: &Manager, client: &AcmeClient, account: &Account, batch: Vec<FleetCert>) {
    let n = m.config.renewal.concurrency;
    let opened: Vec<_> = futures::stream::iter(batch)
        .map(|c| open_order(m, client, account, c))
        .buffer_unordered(n)
        .collect()
        .await;
    let mut jobs = Vec::new();
    for r in opened {
        match r {
            Ok(j) => jobs.push(j),
            Err((cert, e)) => record(m, &cert, &e).await,
        }
    }
    if jobs.is_empty() {
        return;
    }
    let (placed, ready) = place_records(m, &jobs).await;
    if let Err(e) = ready {
        for j in &jobs {
            record(m, &j.cert, &e).await;
        }
        remove_records(m, placed).await;
        return;
    }
    let fraction = m.config.renewal.fraction;
    // Collected first: a stream over a closure on `&Job` trips rustc's Send inference.
    let work: Vec<_> = jobs
        .iter()
        .map(|j| complete_job(client, account, j, fraction))
        .collect();
    let results: Vec<_> = futures::stream::iter(work)
        .buffer_unordered(n)
        .collect()
        .await;
    remove_records(m, placed).await;
    for (job, r) in results {
        match r {
            Ok(archived) => {
                let csr = job.cert.csr.clone().unwrap_or_default();
                match m.store.record_issued(&csr, &archived).await {
                    Ok(current) => {
                        m.counters.issued.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            agent = archived.agent,
                            cert = archived.cert_name,
                            serial = archived.serial,
                            current,
                            "certificate issued and archived"
                        );
                    }
                    Err(e) => tracing::error!("archiving {}: {e}", archived.serial),
                }
            }
            Err(e) => {
                if let Error::Refused { detail, .. } = &e {
                    tracing::error!(agent = job.cert.agent, "{detail}");
                }
                record(m, &job.cert, &e).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(names: &[&str], spki: &str) -> FleetCert {
        FleetCert {
            agent: "a".into(),
            cert_name: "c".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            state: "pending".into(),
            csr: Some("x".into()),
            spki_sha256: Some(spki.into()),
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            serial: None,
            submitted_at: None,
            updated_at: 0,
        }
    }

    /// A self-signed certificate for `names`, and its key's SPKI hash.
    fn cert(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut p = rcgen::CertificateParams::new(names).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        let c = p.self_signed(&key).unwrap();
        let spki = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        ));
        (c.pem(), spki)
    }

    #[test]
    fn only_the_csrs_key_and_names_are_archived() {
        let (pem, spki) = cert(&["b.example.org", "a.example.org"]);
        let both = ["a.example.org", "b.example.org"];
        let ok = verified(&pending(&both, &spki), &pem, 2.0 / 3.0).unwrap();
        assert_eq!(
            ok.renew_at,
            lifetime_point(ok.not_before, ok.not_after, 2.0 / 3.0)
        );
        let (_, other_spki) = cert(&["a.example.org"]);
        let wrong_key = verified(&pending(&both, &other_spki), &pem, 0.5);
        assert!(
            matches!(wrong_key, Err(Error::Refused { .. })),
            "{wrong_key:?}"
        );
        let fewer = verified(&pending(&["a.example.org"], &spki), &pem, 0.5);
        assert!(matches!(fewer, Err(Error::Refused { .. })), "{fewer:?}");
        // Such a certificate makes the manager ask the agent for a new key and CSR.
        assert!(refuses_csr(&fewer.unwrap_err()));
    }

    #[test]
    fn renewal_at_two_thirds() {
        assert_eq!(lifetime_point(0, 90 * 86400, 2.0 / 3.0), 60 * 86400);
    }
}
