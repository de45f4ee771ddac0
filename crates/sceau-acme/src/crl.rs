//! The CRL job: every shard of every issuer the signer holds gets a CRL (RFC 5280 §5), signed
//! by the signing process, kept in the database for every instance to serve, and optionally
//! written to a directory a web server publishes.
//!
//! Invariants:
//! - One job at a time across instances (scheduler scope `OneInstance`), and even so every
//!   commit is a compare-and-swap on the shard's previous cRLNumber (`Store::commit_crl`): two
//!   signers that raced never publish two CRLs with one number.
//! - The cRLNumber of a shard is the larger of the previous one plus one and the signing time in
//!   Unix milliseconds (RFC 5280 §5.2.3 "monotonically increasing"): it goes forward even after
//!   the database is restored from a backup, whose numbers are all below the time they were
//!   signed at.
//! - A shard is signed again when a certificate of it was revoked (within the job's period, and
//!   at once on this instance), when `update_every` has passed since its thisUpdate, and before
//!   its nextUpdate in any case: `validity` is longer than `update_every`.
//! - A certificate stays on the CRL until `lookback` after it expired (RFC 5280 §3.3 allows
//!   removing it once expired; the lookback covers relying parties with skewed clocks).
//! - Every signed CRL is read back with a second implementation (x509-parser) and compared with
//!   what was asked before it is stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sceau_ca::{CrlRequest, IssuerInfo, RevokedEntry};
use sceau_store::{CrlState, StoreError, StoredCrl, now};
use time::OffsetDateTime;

use crate::Acme;

/// When and how CRLs are made.
#[derive(Debug, Clone)]
pub struct CrlSettings {
    /// A shard is signed again at least this often.
    pub update_every: Duration,
    /// thisUpdate to nextUpdate.
    pub validity: Duration,
    /// How long an expired certificate stays on its CRL.
    pub lookback: Duration,
    /// Also write each shard to `<dir>/<issuer>/<shard>.crl` (the URL's path under `/crl/`).
    pub publish_dir: Option<PathBuf>,
    /// The root's authority CRL (`sceau-server ca arl`), served at `/crl/root.crl`.
    pub authority_crl: Option<PathBuf>,
}

impl Default for CrlSettings {
    fn default() -> Self {
        CrlSettings {
            update_every: Duration::from_secs(3600),
            validity: Duration::from_secs(24 * 3600),
            lookback: Duration::from_secs(24 * 3600),
            publish_dir: None,
            authority_crl: None,
        }
    }
}

impl CrlSettings {
    /// Refuses settings under which a CRL could expire before the next one is signed.
    pub fn check(&self) -> Result<(), String> {
        if self.update_every < Duration::from_secs(10) {
            return Err("the CRL update period must be at least 10 seconds".into());
        }
        if self.validity < self.update_every * 2 {
            return Err(format!(
                "the CRL validity ({}s) must be at least twice its update period ({}s), so that a CRL is replaced well before its nextUpdate",
                self.validity.as_secs(),
                self.update_every.as_secs()
            ));
        }
        if self.validity > Duration::from_secs(10 * 86400) {
            return Err(
                "the CRL validity may not exceed 10 days (relying parties would keep a stale CRL that long)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// How often the job looks at the shards (the bound between a revocation on another instance
/// and the CRL that lists it).
pub const CRL_JOB_PERIOD: Duration = Duration::from_secs(10);

/// Shards signed concurrently by one run.
const SHARDS_AT_ONCE: usize = 2;

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CrlRun {
    pub signed: usize,
    /// Entries on the CRLs signed.
    pub entries: usize,
    /// CRLs dropped because another signer committed the shard first.
    pub lost_races: usize,
}

/// Why a shard must be signed now, if it must.
fn due(state: Option<&CrlState>, settings: &CrlSettings, now: i64) -> bool {
    let Some(s) = state else { return true };
    s.number == 0
        || s.dirty > 0
        || now >= s.this_update + settings.update_every.as_secs() as i64
        || now >= s.next_update - settings.update_every.as_secs() as i64
}

/// The cRLNumber after `previous` (see the module invariants).
pub fn next_number(previous: i64, now: OffsetDateTime) -> i64 {
    let millis = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    (previous + 1).max(millis)
}

use sceau_wire::hex::decode as unhex;

impl Acme {
    /// Signs every shard that is due (see [`due`]) for every issuer the signer serves.
    pub async fn run_crls(self: &Arc<Self>) -> Result<CrlRun, String> {
        let started = std::time::Instant::now();
        let settings = &self.config.crl;
        let states: HashMap<(String, u32), CrlState> = self
            .store
            .crl_states()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| ((s.issuer_id.clone(), s.shard), s))
            .collect();
        let mut run = CrlRun::default();
        let now_s = now();
        let mut work = Vec::new();
        for issuer in self.signer.issuers() {
            // An issuer past its own expiry cannot vouch for anything any more.
            if issuer.not_after <= now_s {
                continue;
            }
            for shard in 0..self.config.crl_shards.max(1) {
                let state = states.get(&(issuer.id.clone(), shard)).cloned();
                if due(state.as_ref(), settings, now_s) {
                    work.push((issuer.clone(), shard, state));
                }
            }
        }
        // Two shards at a time: one is read from the database or committed while the signing
        // process signs the other.
        let mut tasks = tokio::task::JoinSet::new();
        let mut work = work.into_iter();
        let mut first_error = None;
        loop {
            while tasks.len() < SHARDS_AT_ONCE {
                let Some((issuer, shard, state)) = work.next() else {
                    break;
                };
                let me = Arc::clone(self);
                tasks.spawn(async move {
                    me.sign_shard(&issuer, shard, state.as_ref())
                        .await
                        .map_err(|e| format!("CRL {}/{shard}: {e}", issuer.id))
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(Some(n)) => {
                    run.signed += 1;
                    run.entries += n;
                }
                Ok(None) => run.lost_races += 1,
                // The other shards are still signed: one failing shard must not keep the
                // others from being refreshed.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if run.signed > 0 {
            tracing::info!(
                signed = run.signed,
                entries = run.entries,
                lost_races = run.lost_races,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "CRLs signed"
            );
        }
        Ok(run)
    }

    /// Signs one shard and commits it: the number of entries, `None` when another signer
    /// committed it first.
    async fn sign_shard(
        &self,
        issuer: &IssuerInfo,
        shard: u32,
        state: Option<&CrlState>,
    ) -> Result<Option<usize>, String> {
        let settings = &self.config.crl;
        let (previous, seen_dirty) = match state {
            Some(s) => (s.number, s.dirty),
            None => {
                // The placeholder exists before the certificates are read, so a revocation
                // from now on marks it dirty and is on the next CRL if not on this one.
                self.store
                    .add_crl_placeholder(&issuer.id, shard)
                    .await
                    .map_err(|e| e.to_string())?;
                let s = self
                    .store
                    .crl_states()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|s| s.issuer_id == issuer.id && s.shard == shard)
                    .ok_or("the CRL placeholder vanished")?;
                (s.number, s.dirty)
            }
        };
        let now = OffsetDateTime::now_utc();
        let this_update = now.replace_nanosecond(0).unwrap_or(now);
        let next_update = this_update + settings.validity;
        let from = this_update.unix_timestamp() - settings.lookback.as_secs() as i64;
        let t0 = std::time::Instant::now();
        let rows = self
            .store
            .crl_revoked(&issuer.id, shard, from)
            .await
            .map_err(|e| e.to_string())?;
        let mut revoked = Vec::with_capacity(rows.len());
        for r in &rows {
            revoked.push(RevokedEntry {
                serial: unhex(&r.serial).ok_or_else(|| format!("serial {:?}", r.serial))?,
                revoked_at: OffsetDateTime::from_unix_timestamp(r.revoked_at)
                    .map_err(|e| e.to_string())?,
                // RFC 5280 §5.3.1: the reason code unspecified should be left out.
                reason: r
                    .reason
                    .and_then(|c| u8::try_from(c).ok())
                    .filter(|c| *c != 0),
            });
        }
        let number = next_number(previous, now);
        let read_ms = t0.elapsed().as_millis() as u64;
        let der = self
            .signer
            .sign_crl(CrlRequest {
                issuer_id: issuer.id.clone(),
                this_update,
                next_update,
                number: number
                    .to_be_bytes()
                    .iter()
                    .copied()
                    .skip_while(|b| *b == 0)
                    .collect(),
                shard: Some(shard),
                revoked,
            })
            .await
            .map_err(|e| e.to_string())?;
        let sign_ms = t0.elapsed().as_millis() as u64 - read_ms;
        let info = sceau_ca::arl::crl_info(&der).map_err(|e| e.to_string())?;
        if info.number != Some(number as u128)
            || info.revoked.len() != rows.len()
            || info.next_update.map(|t| t.unix_timestamp()) != Some(next_update.unix_timestamp())
        {
            return Err(format!(
                "the signed CRL does not say what was asked (number {:?}, {} entries)",
                info.number,
                info.revoked.len()
            ));
        }
        let stored = StoredCrl {
            number,
            this_update: this_update.unix_timestamp(),
            next_update: next_update.unix_timestamp(),
            der,
        };
        match self
            .store
            .commit_crl(&issuer.id, shard, previous, seen_dirty, &stored)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
        if let Some(dir) = &settings.publish_dir {
            let path = dir.join(&issuer.id).join(format!("{shard}.crl"));
            std::fs::create_dir_all(dir.join(&issuer.id))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            sceau_ca::publish_file(&path, &stored.der).map_err(|e| e.to_string())?;
        }
        tracing::debug!(
            issuer = %issuer.id,
            shard,
            number,
            entries = rows.len(),
            read_ms,
            sign_ms,
            total_ms = t0.elapsed().as_millis() as u64,
            "CRL signed"
        );
        Ok(Some(rows.len()))
    }

    /// Starts the CRL job on `scheduler`: every [`CRL_JOB_PERIOD`], and at once after a
    /// revocation on this instance.
    pub fn start_crls(self: &Arc<Self>, scheduler: &crate::scheduler::Scheduler) {
        let me = Arc::clone(self);
        scheduler.every_or_woken(
            "crls",
            CRL_JOB_PERIOD,
            Duration::ZERO,
            crate::scheduler::Scope::OneInstance,
            Some(self.events.revoked.clone()),
            move || {
                let me = Arc::clone(&me);
                async move { me.run_crls().await.map(|_| ()) }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_forward_from_the_previous_and_from_time() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(next_number(0, t), 1_800_000_000_000);
        // A number signed later in the same millisecond, or a clock that went back.
        assert_eq!(next_number(1_800_000_000_000, t), 1_800_000_000_001);
        assert_eq!(next_number(1_900_000_000_000, t), 1_900_000_000_001);
    }

    #[test]
    fn shards_are_due_when_dirty_old_or_never_signed() {
        let s = CrlSettings::default();
        let fresh = CrlState {
            issuer_id: "i".into(),
            shard: 0,
            number: 5,
            this_update: 1000,
            next_update: 1000 + 86400,
            dirty: 0,
        };
        assert!(!due(Some(&fresh), &s, 1000 + 3599));
        assert!(due(Some(&fresh), &s, 1000 + 3600));
        assert!(due(
            Some(&CrlState {
                dirty: 1,
                ..fresh.clone()
            }),
            &s,
            1001
        ));
        assert!(due(
            Some(&CrlState {
                number: 0,
                ..fresh.clone()
            }),
            &s,
            1001
        ));
        assert!(due(None, &s, 1001));
        let short = CrlState {
            next_update: 1000 + 3000,
            ..fresh
        };
        assert!(due(Some(&short), &s, 1001));
    }

    #[test]
    fn settings_that_let_a_crl_lapse_are_refused() {
        let mut s = CrlSettings::default();
        assert!(s.check().is_ok());
        s.validity = Duration::from_secs(3600);
        assert!(s.check().unwrap_err().contains("twice"));
        s.update_every = Duration::from_secs(5);
        assert!(s.check().unwrap_err().contains("10 seconds"));
        let long = CrlSettings {
            validity: Duration::from_secs(11 * 86400),
            ..CrlSettings::default()
        };
        assert!(long.check().unwrap_err().contains("10 days"));
    }
}
