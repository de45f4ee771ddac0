//! The OCSP pre-signing job: one instance at a time ([`Scope::OneInstance`]), woken by
//! issuances and revocations (`Events::issued`) and otherwise run every [`PERIOD`].
//!
//! Each run signs, for both CertID hash algorithms:
//! - certificates issued or revoked since the previous run that lack their responses (two
//!   index range scans from marks kept in memory, [`SLACK_SECS`] back; an instance that has
//!   not run the job yet starts from the beginning, once);
//! - unexpired certificates whose stored responses are past half their validity.
//!
//! and deletes responses past their nextUpdate.
//!
//! While this instance is signing certificates (its issuance queue has jobs running), a run
//! signs only the responses of revocations, which relying parties must see at once, and
//! leaves new certificates and refreshes for when issuance pauses, at most [`MAX_DEFER_SECS`]
//! later: the signing process serves issuance first, so upkeep does not lower issuance
//! throughput (a response asked for meanwhile is signed on demand, within its budget).
//!
//! Invariants:
//! - At most [`BATCH`] certificates of each kind per run, so that the signing process keeps
//!   serving issuance in between; a run that filled a batch wakes the job again, and its mark
//!   moves to the end of the batch only.
//! - A `good` response is stored only if the certificate is still unrevoked when it is
//!   written (`Store::put_ocsp_response`); a revocation that races the job is signed at the
//!   job's next wake or on the first request.

use std::sync::Arc;
use std::time::Duration;

use sceau_store::{MissingBy, OcspCert, now};

use super::request::HashAlg;
use super::response::serial_octets;
use super::status_of;
use crate::Acme;
use crate::scheduler::{Scheduler, Scope};

/// The job's period when nothing wakes it: refreshes are due at half validity (days), new
/// certificates wake it themselves.
pub const PERIOD: Duration = Duration::from_secs(600);
/// Certificates handled per run.
pub const BATCH: i64 = 1000;
/// How far behind its previous start a run looks again: a certificate row is written a
/// moment after its `created_at` (and a revocation after its `revoked_at`) were taken.
pub const SLACK_SECS: i64 = 300;

/// How long new certificates and refreshes may wait for issuance to pause.
pub const MAX_DEFER_SECS: i64 = 30;

/// Registers the job on the instance's scheduler.
pub fn start(acme: &Arc<Acme>, scheduler: &Scheduler) -> tokio::task::JoinHandle<()> {
    let me = Arc::clone(acme);
    scheduler.every_or_woken(
        "ocsp-presign",
        PERIOD,
        Duration::ZERO,
        Scope::OneInstance,
        Some(acme.events.issued.clone()),
        move || {
            let me = Arc::clone(&me);
            async move { run(&me).await.map(|_| ()) }
        },
    )
}

/// One run; returns how many responses it stored.
pub async fn run(acme: &Acme) -> Result<usize, String> {
    let ocsp = &acme.ocsp;
    let started = now();
    ocsp.load_issuers(acme)?;
    let busy = acme.queue.running() > 0;
    let (marks, defer) = {
        let mut m = ocsp.marks.lock().expect("ocsp marks");
        let defer = busy && started - *m.deferred_since.get_or_insert(started) < MAX_DEFER_SECS;
        if !defer {
            m.deferred_since = None;
        }
        (
            [
                (MissingBy::Issued, m.created_from),
                (MissingBy::Revoked, m.revoked_from),
            ],
            defer,
        )
    };
    let store = &acme.store;
    let want = HashAlg::ALL.len() as i64;
    let mut work: Vec<OcspCert> = Vec::new();
    let mut next_marks = [started - SLACK_SECS; 2];
    let mut full = false;
    for (i, (by, from)) in marks.into_iter().enumerate() {
        if defer && by == MissingBy::Issued {
            next_marks[i] = from;
            continue;
        }
        let found = store
            .ocsp_missing(by, from, started, want, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if found.len() as i64 >= BATCH {
            // More after these: the next run starts where this batch ends (the certificates
            // signed here no longer lack responses, so none is taken twice).
            full = true;
            next_marks[i] = found.last().map_or(from, |(_, at)| *at);
        }
        for (c, _) in found {
            if !work.iter().any(|w| w.serial == c.serial) {
                work.push(c);
            }
        }
    }
    let refresh_before = started + ocsp.settings.validity_secs() / 2;
    let due = if defer {
        Vec::new()
    } else {
        store
            .ocsp_due(refresh_before, started, BATCH)
            .await
            .map_err(|e| e.to_string())?
    };
    full |= due.len() as i64 >= BATCH;
    for c in due {
        if !work.iter().any(|w| w.serial == c.serial) {
            work.push(c);
        }
    }
    let mut stored = 0;
    for cert in &work {
        let Some(serial) = serial_octets(&cert.serial) else {
            tracing::warn!(
                serial = cert.serial,
                "stored serial is not hex; no OCSP response"
            );
            continue;
        };
        if ocsp.issuer_hashes(&cert.issuer_id, HashAlg::Sha1).is_none() {
            // A retired issuer the signer no longer holds: nothing can sign for it.
            continue;
        }
        let status = status_of(cert);
        for alg in HashAlg::ALL {
            let (signed, _) = ocsp
                .sign(
                    acme,
                    &cert.issuer_id,
                    alg,
                    &serial,
                    status,
                    ocsp.settings.validity_secs(),
                )
                .await?;
            let good = status == super::response::CertStatus::Good;
            if store
                .put_ocsp_response(&cert.serial, alg.name(), &signed, good)
                .await
                .map_err(|e| e.to_string())?
            {
                stored += 1;
            }
        }
    }
    let removed = store
        .delete_expired_ocsp(started)
        .await
        .map_err(|e| e.to_string())?;
    if full {
        // More is waiting: run again soon rather than at the next period.
        acme.events.issued.notify_one();
    }
    if defer {
        // Look again once issuance may have paused.
        let wake = acme.events.issued.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            wake.notify_one();
        });
    }
    {
        let mut m = ocsp.marks.lock().expect("ocsp marks");
        m.created_from = next_marks[0];
        m.revoked_from = next_marks[1];
    }
    if stored > 0 || removed > 0 {
        tracing::debug!(stored, removed, "OCSP responses signed ahead");
    }
    Ok(stored)
}
