//! The authority CRL (ARL): the root's CRL of the issuing CAs the operator revoked
//! (`ca revoke-issuer`), signed with the root key at a ceremony (`ca arl`) and kept as
//! `root.crl` in the data directory, which the server publishes at `/crl/root.crl`. Also the
//! reading back of any CRL ([`crl_info`]) for those who serve one.
//!
//! Invariants:
//! - The ARL lists exactly the issuers `ca.json` says are revoked, with the time and reason
//!   recorded there (RFC 5280 §5.3.1; `unspecified` is left out of the entry).
//! - Its cRLNumber (RFC 5280 §5.2.3) goes forward from the `root.crl` it replaces: the larger
//!   of that number plus one and the signing time in Unix milliseconds.
//! - The root key is used only for this ceremony and only if it is the key of the root that
//!   clients trust; a refused ceremony writes nothing.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{CertificateRevocationList, FromDer};

use crate::ca::{fingerprint_sha256, key_matches, parse_cert, read_cert, subject_key_id};
use crate::ca_key::KeyRef;
use crate::fsutil::{self, CERT_MODE};
use crate::manifest::{CaMode, IssuerState, Manifest};
use crate::{CaError, hex_lower, profile};

/// The ARL's file in the data directory.
pub const ROOT_CRL: &str = "root.crl";

/// The longest ARL validity `ca arl --validity-days` accepts (a year: RFC 5280 sets no limit,
/// the CA/Browser Forum's baseline allows twelve months for CA certificates).
pub const MAX_ARL_VALIDITY_DAYS: u32 = 366;

/// What `ca arl` is given.
#[derive(Debug, Clone)]
pub struct ArlOptions {
    /// The root key for this ceremony; `None`: the one `ca.json` names.
    pub root_key: Option<KeyRef>,
    pub validity_days: u32,
}

/// One revoked issuer on the ARL.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArlEntry {
    pub issuer_id: String,
    /// Lowercase hex of its certificate's serial.
    pub serial: String,
    pub revoked_at: String,
    pub reason: String,
}

/// The ceremony record of `ca arl`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArlRecord {
    pub path: PathBuf,
    /// Decimal cRLNumber.
    pub number: String,
    pub this_update: String,
    pub next_update: String,
    pub root_sha256_fingerprint: String,
    pub revoked: Vec<ArlEntry>,
}

impl std::fmt::Display for ArlRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "authority CRL {}", self.path.display())?;
        writeln!(f, "  root SHA-256: {}", self.root_sha256_fingerprint)?;
        writeln!(f, "  number:       {}", self.number)?;
        writeln!(
            f,
            "  valid:        {} to {}",
            self.this_update, self.next_update
        )?;
        if self.revoked.is_empty() {
            writeln!(f, "  revoked:      none")?;
        }
        for e in &self.revoked {
            writeln!(
                f,
                "  revoked:      issuer {} (serial {}) at {}, {}",
                e.issuer_id, e.serial, e.revoked_at, e.reason
            )?;
        }
        Ok(())
    }
}

/// The RFC 5280 name of a reason code.
pub fn reason_name(code: u8) -> &'static str {
    sceau_wire::reason::name(code).unwrap_or("unknown")
}

/// A reason for revoking an issuing CA, by RFC 5280 name (any case) or code. Refused:
/// certificateHold (Sceau has no removal from hold), removeFromCRL (a delta CRL's, not a
/// revocation) and aACompromise (attribute authorities).
pub fn issuer_reason(text: &str) -> Result<u8, CaError> {
    let t = text.trim();
    let code = t.parse::<u8>().ok().or_else(|| {
        sceau_wire::reason::NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(t))
            .map(|(c, _)| *c)
    });
    match code {
        Some(c @ (0..=5 | 9)) => Ok(c),
        Some(6) => Err(CaError::Refused(
            "reason certificateHold is refused: Sceau does not take certificates off hold".into(),
        )),
        Some(c @ (8 | 10)) => Err(CaError::Refused(format!(
            "reason {} does not apply to revoking an issuing CA",
            reason_name(c)
        ))),
        _ => Err(CaError::Refused(format!(
            "unknown revocation reason {text:?}: use one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn (or its RFC 5280 code)"
        ))),
    }
}

/// What a CRL says, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// The cRLNumber, `None` without one.
    pub number: Option<u128>,
    pub this_update: OffsetDateTime,
    pub next_update: Option<OffsetDateTime>,
    /// (serial in lowercase hex, reason code) of each entry.
    pub revoked: Vec<(String, Option<u8>)>,
}

/// Reads a DER CRL (its signature is not checked: callers check who signed it).
pub fn crl_info(der: &[u8]) -> Result<CrlInfo, CaError> {
    let bad = |why: String| CaError::BadCertificate(format!("CRL: {why}"));
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes".into()));
    }
    let number = match crl.crl_number() {
        Some(n) => {
            let bytes = n.to_bytes_be();
            if bytes.len() > 16 {
                return Err(bad("cRLNumber beyond 128 bits".into()));
            }
            Some(bytes.iter().fold(0u128, |a, b| (a << 8) | u128::from(*b)))
        }
        None => None,
    };
    Ok(CrlInfo {
        number,
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| {
                (
                    hex_lower(r.raw_serial()),
                    r.reason_code().map(|(_, code)| code.0),
                )
            })
            .collect(),
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The big-endian octets of a positive number, without leading zeros (DER adds one if needed).
pub(crate) fn number_octets(n: u128) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(15);
    bytes[first..].to_vec()
}

fn revocation_reason(code: u8) -> Option<RevocationReason> {
    Some(match code {
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        9 => RevocationReason::PrivilegeWithdrawn,
        // unspecified (and anything `issuer_reason` refused) stays out of the entry.
        _ => return None,
    })
}

/// `ca arl`: signs the authority CRL with the root key and writes it to `root.crl`.
pub fn sign_arl(dir: &Path, opts: &ArlOptions) -> Result<ArlRecord, CaError> {
    let manifest =
        Manifest::read(dir)?.ok_or_else(|| CaError::NotInitialised(dir.to_path_buf()))?;
    if manifest.mode == CaMode::Delegated {
        return Err(CaError::Refused(
            "a delegated CA's root is the existing PKI's: that PKI revokes the issuing CA's certificate and publishes its CRL".into(),
        ));
    }
    if opts.validity_days == 0 || opts.validity_days > MAX_ARL_VALIDITY_DAYS {
        return Err(CaError::Refused(format!(
            "--validity-days must be between 1 and {MAX_ARL_VALIDITY_DAYS}"
        )));
    }
    let root = manifest
        .root
        .clone()
        .ok_or_else(|| CaError::corrupt(Manifest::path(dir), "a dedicated CA without its root"))?;
    let root_ref = opts.root_key.clone().or(root.key.clone()).ok_or_else(|| {
        CaError::Refused(
            "the root key is offline: give it for this ceremony with --root-key PATH or pkcs11:URI"
                .into(),
        )
    })?;
    let root_path = dir.join(&root.cert);
    let (_, root_der) = read_cert(&root_path)?;
    let root_key = root_ref.open(dir)?;
    let root_cert = parse_cert(&root_path, &root_der)?;
    if !key_matches(&root_key, &root_cert) {
        return Err(CaError::Refused(format!(
            "{root_ref} is not the key of this CA's root ({})",
            fingerprint_sha256(&root_der)
        )));
    }
    let root_ski = subject_key_id(&root_cert);
    drop(root_cert);

    let mut revoked = Vec::new();
    let mut entries = Vec::new();
    for issuer in manifest
        .issuers
        .iter()
        .filter(|i| i.state == IssuerState::Revoked)
    {
        let (Some(cert), Some(rev)) = (&issuer.cert, issuer.revocation) else {
            return Err(CaError::corrupt(
                Manifest::path(dir),
                format!(
                    "revoked issuer {} lacks its certificate or revocation",
                    issuer.id
                ),
            ));
        };
        let path = dir.join(cert);
        let (_, der) = read_cert(&path)?;
        let serial = parse_cert(&path, &der)?.raw_serial().to_vec();
        let at = OffsetDateTime::from_unix_timestamp(rev.at)
            .map_err(|e| CaError::corrupt(Manifest::path(dir), format!("revocation time: {e}")))?;
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: profile::whole_seconds(at),
            reason_code: revocation_reason(rev.reason),
            invalidity_date: None,
        });
        entries.push(ArlEntry {
            issuer_id: issuer.id.clone(),
            serial: hex_lower(&serial),
            revoked_at: rfc3339(at),
            reason: reason_name(rev.reason).to_owned(),
        });
    }

    let out = dir.join(ROOT_CRL);
    let previous = match std::fs::read(&out) {
        Ok(der) => crl_info(&der)
            .map_err(|e| CaError::corrupt(&out, e.to_string()))?
            .number
            .unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(CaError::io(&out, e)),
    };
    let now = OffsetDateTime::now_utc();
    let millis = (now.unix_timestamp_nanos() / 1_000_000) as u128;
    let number = (previous + 1).max(millis);
    let this_update = profile::whole_seconds(now);
    let next_update = this_update + time::Duration::days(i64::from(opts.validity_days));
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&number_octets(number)),
        // A complete CRL of everything the root signed: no issuingDistributionPoint, which
        // would need the intermediates to name it as their distribution point.
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: match root_ski {
            Some(ski) => KeyIdMethod::PreSpecified(ski),
            None => KeyIdMethod::Sha256,
        },
    };
    let signer = Issuer::from_ca_cert_der(&root_der.as_slice().into(), root_key)?;
    let der = params.signed_by(&signer)?.der().to_vec();
    // Relying parties fetch it: public, like the certificates.
    fsutil::write_atomic(&out, &der, CERT_MODE)?;
    Ok(ArlRecord {
        path: out,
        number: number.to_string(),
        this_update: rfc3339(this_update),
        next_update: rfc3339(next_update),
        root_sha256_fingerprint: fingerprint_sha256(&root_der),
        revoked: entries,
    })
}
