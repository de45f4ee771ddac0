//! The OCSP responder (RFC 6960, RFC 5019 profile): it answers from responses signed ahead of
//! time by the delegated responder of each issuer ([`job`]), kept in the database for every
//! instance and in memory here.
//!
//! Invariants:
//! - Answering a certificate we issued costs no signature in the steady state: the job signs
//!   both CertID hash algorithms of every unexpired certificate and signs them again at half
//!   their validity; a request finds them in memory or, after [`RECHECK`], in the database.
//! - A revocation shows within about [`RECHECK`] on every instance: it deletes the stored
//!   responses (`Store::revoke_cert`), a memory entry older than [`RECHECK`] is checked
//!   against the database before it is served, and a known certificate without a stored
//!   response is signed on demand with its current status and stored.
//! - The responder is not a signing oracle: signatures made for a request (a certificate the
//!   job has not reached yet, a serial we never issued) are one at a time and capped by a
//!   token bucket ([`OcspSettings::on_demand_per_second`]); past it the answer is `tryLater`
//!   (RFC 6960 §2.3), unsigned. `unknown` answers are kept in memory only, so a flood of
//!   invented serials cannot fill the database.
//! - An issuer hash pair that matches no issuer we hold is `unauthorized` (RFC 5019 §2.2.3),
//!   a request that does not parse `malformedRequest`; neither is signed.

pub mod job;
pub mod request;
pub mod response;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use sceau_store::{OcspCert, StoredOcsp, now};

use crate::Acme;
use request::{CertId, HashAlg, RequestError};
use response::{CertStatus, Single, Unsigned};

/// How long a response held in memory is served before the database is asked again: the
/// bound on how long another instance (or `admin cert revoke`) takes to make a revocation
/// visible here.
pub const RECHECK: Duration = Duration::from_secs(1);
/// thisUpdate is set this far back, for relying parties whose clocks run a little behind
/// (RFC 5019 §4: clients check thisUpdate against their own clock).
const BACKDATE_SECS: i64 = 60;
/// Validity of an `unknown` answer: short, as nothing vouches for a serial we do not know.
const UNKNOWN_VALIDITY_SECS: i64 = 3600;
/// Memory entries kept at most (each a few hundred octets); past it the cache starts over.
const CACHE_MAX: usize = 200_000;
/// The issuer list is read again at most this often when a request names an issuer we do
/// not know (a new issuer after a SIGHUP reload).
const ISSUER_RELOAD: Duration = Duration::from_secs(30);
/// A responder certificate is asked for again after this long (the signer renews it).
const RESPONDER_REFRESH: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspSettings {
    /// thisUpdate to nextUpdate of good and revoked responses; they are signed again at half
    /// of it. Default 4 days, refreshed every 2 (RFC 5019 §6 pre-produced responses; the
    /// CA/Browser Forum's rule of at most 10 days, refreshed at least at half validity).
    pub validity: Duration,
    /// Signatures made for requests (not ahead of time) per second, at most; as many again
    /// may be made in a burst.
    pub on_demand_per_second: u32,
}

impl Default for OcspSettings {
    fn default() -> Self {
        OcspSettings {
            validity: Duration::from_secs(4 * 86400),
            on_demand_per_second: 50,
        }
    }
}

impl OcspSettings {
    pub fn validity_secs(&self) -> i64 {
        self.validity.as_secs().max(1) as i64
    }
}

/// A signed response ready to send.
#[derive(Debug)]
pub struct Answer {
    pub der: bytes::Bytes,
    pub status: CertStatus,
    pub produced_at: i64,
    pub this_update: i64,
    pub next_update: i64,
    /// Strong entity tag of the DER (RFC 9110 §8.8.3), quoted.
    pub etag: String,
    /// IMF-fixdates (RFC 9110 §5.6.7) of producedAt and nextUpdate, made once: the
    /// `Last-Modified` and `Expires` of every answer that sends it (RFC 5019 §6.2).
    pub last_modified: String,
    pub expires: String,
    issuer_id: String,
    checked: Instant,
}

/// What the HTTP edge sends: a signed response, or an unsigned status.
#[derive(Debug, Clone)]
pub enum Reply {
    Signed(Arc<Answer>),
    Unsigned(Unsigned),
}

/// An issuer as the responder matches it: the CertID hashes of its name and key.
#[derive(Debug)]
struct IssuerKeys {
    id: String,
    /// (algorithm, issuerNameHash, issuerKeyHash) for each algorithm.
    hashes: Vec<(HashAlg, Vec<u8>, Vec<u8>)>,
}

impl IssuerKeys {
    fn from_der(id: &str, der: &[u8]) -> Result<IssuerKeys, String> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| format!("issuer {id}: {e}"))?;
        // RFC 6960 §4.1.1: the hash of the issuer's DN and of its public key's BIT STRING
        // value (excluding tag, length and unused-bits octet).
        let name = cert.tbs_certificate.subject.as_raw();
        let key = cert.public_key().subject_public_key.data.as_ref();
        Ok(IssuerKeys {
            id: id.to_owned(),
            hashes: HashAlg::ALL
                .into_iter()
                .map(|h| (h, hash(h, name), hash(h, key)))
                .collect(),
        })
    }

    fn hashes(&self, alg: HashAlg) -> (&[u8], &[u8]) {
        let (_, n, k) = self
            .hashes
            .iter()
            .find(|(h, _, _)| *h == alg)
            .expect("every algorithm is hashed");
        (n, k)
    }
}

pub(crate) fn hash(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    let a = match alg {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha256 => &digest::SHA256,
    };
    digest::digest(a, data).as_ref().to_vec()
}

/// The delegated responder of an issuer as responses name it.
#[derive(Debug, Clone)]
struct ResponderCert {
    der: Vec<u8>,
    /// SHA-1 of its subjectPublicKey bits: ResponderID byKey (RFC 6960 §4.2.1).
    key_hash: Vec<u8>,
    fetched: Instant,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A memory entry's key: the CertID's hash algorithm and serial (serials are unique across
/// our issuers; the entry names its issuer, checked on each hit).
type CacheKey = (HashAlg, Vec<u8>);

/// Where the job has got to (see [`job`]).
#[derive(Debug, Default)]
struct Marks {
    created_from: i64,
    revoked_from: i64,
    /// Since when new certificates wait for issuance to pause (see `job`).
    deferred_since: Option<i64>,
}

pub struct Responder {
    settings: OcspSettings,
    issuers: RwLock<(Arc<Vec<IssuerKeys>>, Option<Instant>)>,
    responders: Mutex<HashMap<String, ResponderCert>>,
    cache: Mutex<HashMap<CacheKey, Arc<Answer>>>,
    /// On-demand signatures: one at a time, within the budget.
    on_demand: tokio::sync::Mutex<Bucket>,
    marks: Mutex<Marks>,
}

fn status_of(cert: &OcspCert) -> CertStatus {
    match cert.revoked_at {
        Some(at) => CertStatus::Revoked {
            at,
            reason: cert.reason.and_then(|r| u8::try_from(r).ok()),
        },
        None => CertStatus::Good,
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn http_date(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap_or_default()
}

use sceau_wire::hex::encode as hex;

impl Responder {
    pub fn new(settings: OcspSettings) -> Responder {
        let burst = f64::from(settings.on_demand_per_second);
        Responder {
            settings,
            issuers: RwLock::new((Arc::new(Vec::new()), None)),
            responders: Mutex::default(),
            cache: Mutex::default(),
            on_demand: tokio::sync::Mutex::new(Bucket {
                tokens: burst,
                last: Instant::now(),
            }),
            marks: Mutex::default(),
        }
    }

    pub fn settings(&self) -> &OcspSettings {
        &self.settings
    }

    /// The answer to a DER OCSPRequest.
    pub async fn answer(&self, acme: &Acme, der: &[u8]) -> Reply {
        match request::parse(der) {
            Ok(req) => {
                if req.nonce {
                    tracing::debug!(
                        "OCSP request with a nonce: answered without one (RFC 5019 §2.2.1)"
                    );
                }
                self.answer_cert_id(acme, &req.cert_id).await
            }
            Err(RequestError::UnsupportedHash) => Reply::Unsigned(Unsigned::Unauthorized),
            Err(e) => {
                tracing::debug!(error = %e, "OCSP request refused");
                Reply::Unsigned(Unsigned::MalformedRequest)
            }
        }
    }

    async fn answer_cert_id(&self, acme: &Acme, id: &CertId) -> Reply {
        let Some(issuer) = self.issuer_for(acme, id) else {
            return Reply::Unsigned(Unsigned::Unauthorized);
        };
        let key = (id.hash, id.serial.clone());
        let cached = self.cache.lock().expect("ocsp cache").get(&key).cloned();
        let now_s = now();
        if let Some(a) = &cached
            && a.issuer_id == issuer
            && a.checked.elapsed() < RECHECK
            && a.next_update > now_s
        {
            return Reply::Signed(a.clone());
        }
        match self.revalidate(acme, &issuer, id, cached, now_s).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "OCSP answer failed");
                Reply::Unsigned(Unsigned::InternalError)
            }
        }
    }

    /// A memory entry that is stale or missing: the database's stored response, else the
    /// status signed on demand.
    async fn revalidate(
        &self,
        acme: &Acme,
        issuer: &str,
        id: &CertId,
        cached: Option<Arc<Answer>>,
        now_s: i64,
    ) -> Result<Reply, String> {
        let serial = hex(&id.serial);
        let stored = acme
            .store
            .ocsp_response(&serial, id.hash.name())
            .await
            .map_err(|e| e.to_string())?;
        if let Some((s, owner)) = stored
            && owner == issuer
            && s.next_update > now_s
        {
            // The same response as in memory: keep its parsed form, note the check.
            let status = match &cached {
                Some(a) if a.der.as_ref() == s.der.as_slice() => a.status,
                _ => acme
                    .store
                    .ocsp_cert(&serial)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|c| status_of(&c))
                    .unwrap_or(CertStatus::Unknown),
            };
            return Ok(Reply::Signed(self.remember(id, issuer, s, status, now_s)));
        }
        let cert = acme
            .store
            .ocsp_cert(&serial)
            .await
            .map_err(|e| e.to_string())?
            .filter(|c| c.issuer_id == issuer);
        if cert.is_none()
            && let Some(a) = &cached
            && a.status == CertStatus::Unknown
            && a.issuer_id == issuer
            && a.next_update > now_s + 60
        {
            let s = StoredOcsp {
                der: a.der.to_vec(),
                this_update: a.this_update,
                next_update: a.next_update,
            };
            return Ok(Reply::Signed(self.remember(
                id,
                issuer,
                s,
                CertStatus::Unknown,
                a.produced_at,
            )));
        }
        let started = Instant::now();
        let mut bucket = self.on_demand.lock().await;
        // Another request may have signed it while this one waited.
        if let Some(a) = self
            .cache
            .lock()
            .expect("ocsp cache")
            .get(&(id.hash, id.serial.clone()))
            && a.checked >= started
            && a.issuer_id == issuer
        {
            return Ok(Reply::Signed(a.clone()));
        }
        let rate = f64::from(self.settings.on_demand_per_second);
        bucket.tokens = (bucket.tokens + bucket.last.elapsed().as_secs_f64() * rate).min(rate);
        bucket.last = Instant::now();
        if bucket.tokens < 1.0 {
            tracing::debug!(serial, "on-demand OCSP signing over budget: tryLater");
            return Ok(Reply::Unsigned(Unsigned::TryLater));
        }
        bucket.tokens -= 1.0;
        let (status, validity) = match &cert {
            Some(c) => (status_of(c), self.settings.validity_secs()),
            None => (CertStatus::Unknown, UNKNOWN_VALIDITY_SECS),
        };
        let (signed, produced) = self
            .sign(acme, issuer, id.hash, &id.serial, status, validity)
            .await?;
        if cert.is_some() {
            let good = status == CertStatus::Good;
            let stored = acme
                .store
                .put_ocsp_response(&serial, id.hash.name(), &signed, good)
                .await
                .map_err(|e| e.to_string())?;
            if !stored {
                // Revoked while it was being signed: the next request signs the revocation.
                return Ok(Reply::Unsigned(Unsigned::TryLater));
            }
        }
        Ok(Reply::Signed(
            self.remember(id, issuer, signed, status, produced),
        ))
    }

    fn remember(
        &self,
        id: &CertId,
        issuer: &str,
        s: StoredOcsp,
        status: CertStatus,
        produced_at: i64,
    ) -> Arc<Answer> {
        let etag = format!("\"{}\"", hex(&hash(HashAlg::Sha256, &s.der)[..16]));
        let a = Arc::new(Answer {
            der: bytes::Bytes::from(s.der),
            status,
            produced_at,
            this_update: s.this_update,
            next_update: s.next_update,
            etag,
            last_modified: http_date(produced_at),
            expires: http_date(s.next_update),
            issuer_id: issuer.to_owned(),
            checked: Instant::now(),
        });
        let mut cache = self.cache.lock().expect("ocsp cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert((id.hash, id.serial.clone()), a.clone());
        a
    }

    /// Signs one response with the issuer's delegated responder; returns it with producedAt.
    async fn sign(
        &self,
        acme: &Acme,
        issuer_id: &str,
        alg: HashAlg,
        serial: &[u8],
        status: CertStatus,
        validity: i64,
    ) -> Result<(StoredOcsp, i64), String> {
        let (name_hash, key_hash) = self
            .issuer_hashes(issuer_id, alg)
            .ok_or_else(|| format!("issuer {issuer_id} is not served"))?;
        let responder = self.responder(acme, issuer_id).await?;
        let produced = now();
        let this_update = produced - BACKDATE_SECS;
        let single = Single {
            hash: alg,
            issuer_name_hash: &name_hash,
            issuer_key_hash: &key_hash,
            serial,
            status,
            this_update,
            next_update: this_update + validity,
        };
        let tbs = response::response_data(&responder.key_hash, produced, &single);
        let sig = acme
            .signer
            .sign_ocsp(issuer_id, tbs.clone())
            .await
            .map_err(|e| format!("signing an OCSP response: {e}"))?;
        Ok((
            StoredOcsp {
                der: response::ocsp_response(&tbs, &sig, &responder.der),
                this_update,
                next_update: single.next_update,
            },
            produced,
        ))
    }

    async fn responder(&self, acme: &Acme, issuer_id: &str) -> Result<ResponderCert, String> {
        if let Some(r) = self.responders.lock().expect("responders").get(issuer_id)
            && r.fetched.elapsed() < RESPONDER_REFRESH
        {
            return Ok(r.clone());
        }
        let der = acme
            .signer
            .ocsp_responder(issuer_id)
            .await
            .map_err(|e| format!("the OCSP responder certificate of {issuer_id}: {e}"))?;
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|e| format!("responder certificate of {issuer_id}: {e}"))?;
        let key_hash = hash(
            HashAlg::Sha1,
            cert.public_key().subject_public_key.data.as_ref(),
        );
        let r = ResponderCert {
            der,
            key_hash,
            fetched: Instant::now(),
        };
        self.responders
            .lock()
            .expect("responders")
            .insert(issuer_id.to_owned(), r.clone());
        Ok(r)
    }

    /// (issuerNameHash, issuerKeyHash) of an issuer we serve.
    fn issuer_hashes(&self, id: &str, alg: HashAlg) -> Option<(Vec<u8>, Vec<u8>)> {
        let guard = self.issuers.read().expect("issuers");
        let k = guard.0.iter().find(|k| k.id == id)?;
        let (n, key) = k.hashes(alg);
        Some((n.to_vec(), key.to_vec()))
    }

    /// The id of the issuer a CertID names, reading the issuer list when it is not loaded or
    /// a request names an issuer it lacks (at most every [`ISSUER_RELOAD`]).
    fn issuer_for(&self, acme: &Acme, id: &CertId) -> Option<String> {
        let find = |list: &[IssuerKeys]| {
            list.iter()
                .find(|k| {
                    let (n, key) = k.hashes(id.hash);
                    n == id.issuer_name_hash.as_slice() && key == id.issuer_key_hash.as_slice()
                })
                .map(|k| k.id.clone())
        };
        let (list, loaded) = self.issuers.read().expect("issuers").clone();
        if let Some(found) = find(&list) {
            return Some(found);
        }
        if loaded.is_some_and(|t| t.elapsed() < ISSUER_RELOAD) {
            return None;
        }
        if let Err(e) = self.load_issuers(acme) {
            tracing::warn!(error = %e, "cannot read the issuers for OCSP");
            return None;
        }
        find(&self.issuers.read().expect("issuers").0)
    }

    /// Reads the issuers from the signer (active and retired).
    pub fn load_issuers(&self, acme: &Acme) -> Result<(), String> {
        let infos = acme.signer.issuers();
        let keys = infos
            .iter()
            .map(|i| IssuerKeys::from_der(&i.id, &i.cert_der))
            .collect::<Result<Vec<_>, _>>()?;
        *self.issuers.write().expect("issuers") = (Arc::new(keys), Some(Instant::now()));
        Ok(())
    }
}
