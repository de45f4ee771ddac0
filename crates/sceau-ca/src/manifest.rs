//! `ca.json`: what the data directory's CA is and where its pieces are. Written by the `ca`
//! commands (`init`, `import`, `rotate`), read by the signing process.
//!
//! Invariants:
//! - The manifest is replaced atomically (temp file, fsync, rename): readers see the old or the
//!   new one.
//! - Exactly one issuer is `active` once the CA can issue; `pending` issuers wait for their
//!   certificate (delegated mode); `retired` ones sign nothing new but stay for the CRLs and
//!   OCSP of the certificates they issued; `revoked` ones (`ca revoke-issuer`, with the time
//!   and reason the authority CRL carries) sign nothing at all and are not loaded.
//! - A data directory of the first versions (four files, no manifest) is read as a dedicated CA
//!   with its root key in the directory, and gets its manifest written on first use.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ca_key::KeyRef;
use crate::fsutil::{self, KEY_MODE};
use crate::{CaError, CaKeyKind};

pub const MANIFEST: &str = "ca.json";
pub(crate) const ROOT_CERT: &str = "root.pem";
pub(crate) const ROOT_KEY: &str = "root.key";
pub(crate) const INTERMEDIATE_CERT: &str = "intermediate.pem";
pub(crate) const INTERMEDIATE_KEY: &str = "intermediate.key";
pub(crate) const LEGACY_FILES: [&str; 4] =
    [ROOT_CERT, ROOT_KEY, INTERMEDIATE_CERT, INTERMEDIATE_KEY];

/// How the CA stands towards the organisation's PKI (the seeds' "three ways to sign"; the
/// third, registration authority, holds no CA key and has no manifest of this kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaMode {
    /// Sceau's own root and issuing intermediate.
    Dedicated,
    /// An issuing intermediate whose certificate the existing PKI signed.
    Delegated,
}

impl CaMode {
    pub fn name(self) -> &'static str {
        match self {
            CaMode::Dedicated => "dedicated",
            CaMode::Delegated => "delegated",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerState {
    Pending,
    Active,
    Retired,
    /// Revoked by the operator (its certificate is on the root's authority CRL): its key
    /// signs nothing any more.
    Revoked,
}

/// When and why an issuer was revoked (what the authority CRL says about its certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerRevocation {
    /// Unix seconds.
    pub at: i64,
    /// RFC 5280 §5.3.1 reason code.
    pub reason: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootEntry {
    /// The root certificate clients trust (in the data directory).
    pub cert: PathBuf,
    /// Where the root key is, if this CA may use it: `None` for an offline root (kept out of
    /// the data directory at `ca init`) and for a delegated CA (the root is the PKI's).
    #[serde(default)]
    pub key: Option<KeyRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerEntry {
    /// Lowercase hex of the subjectKeyIdentifier its certificate carries (or will carry).
    pub id: String,
    pub key: KeyRef,
    pub key_kind: CaKeyKind,
    /// RFC 4514 text of the subject.
    pub subject: String,
    pub state: IssuerState,
    /// The issuer's certificate, once there is one.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Certificates between the issuer and the root, PEM, nearest first (delegated mode).
    #[serde(default)]
    pub chain: Option<PathBuf>,
    /// The request for the existing PKI (delegated mode).
    #[serde(default)]
    pub csr: Option<PathBuf>,
    /// Other chains for the same issuing key (a cross-signed issuer, `ca import --alternate`),
    /// each a PEM file of the certificates that follow the leaf, the root left out; offered
    /// with `Link: rel="alternate"` (RFC 8555 §7.4.2).
    #[serde(default)]
    pub alternates: Vec<PathBuf>,
    pub created_at: i64,
    /// Set with the state `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<IssuerRevocation>,
}

impl IssuerEntry {
    /// An issuer whose certificate `cert` this CA's own root just signed: active, with no
    /// chain between it and the root, no request and no alternate chain.
    pub(crate) fn active(
        id: String,
        key: KeyRef,
        key_kind: CaKeyKind,
        subject: String,
        cert: PathBuf,
        created_at: i64,
    ) -> IssuerEntry {
        IssuerEntry {
            id,
            key,
            key_kind,
            subject,
            state: IssuerState::Active,
            cert: Some(cert),
            chain: None,
            csr: None,
            alternates: Vec::new(),
            created_at,
            revocation: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub mode: CaMode,
    /// A staging CA (agency guide R53, R54): names and leaves say TEST.
    #[serde(default)]
    pub staging: bool,
    pub organization: String,
    /// `None` until a delegated CA's first certificate is imported.
    #[serde(default)]
    pub root: Option<RootEntry>,
    pub issuers: Vec<IssuerEntry>,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    /// The manifest, `None` when the directory has none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>, CaError> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| CaError::corrupt(&path, format!("not a CA manifest: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CaError::io(&path, e)),
        }
    }

    pub fn write(&self, dir: &Path) -> Result<(), CaError> {
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        // Private like everything in the data directory but certificates: it maps where the
        // keys are.
        fsutil::write_atomic(&Self::path(dir), text.as_bytes(), KEY_MODE)
    }

    /// The first versions' layout, described as a manifest (dedicated, one active issuer).
    pub(crate) fn legacy(
        kind: CaKeyKind,
        organization: &str,
        issuer_id: String,
        subject: String,
    ) -> Manifest {
        Manifest {
            version: 1,
            mode: CaMode::Dedicated,
            staging: false,
            organization: organization.to_owned(),
            root: Some(RootEntry {
                cert: ROOT_CERT.into(),
                key: Some(KeyRef::File(ROOT_KEY.into())),
            }),
            issuers: vec![IssuerEntry::active(
                issuer_id,
                KeyRef::File(INTERMEDIATE_KEY.into()),
                kind,
                subject,
                INTERMEDIATE_CERT.into(),
                0,
            )],
        }
    }

    pub fn active(&self) -> Option<&IssuerEntry> {
        self.issuers.iter().find(|i| i.state == IssuerState::Active)
    }

    pub fn pending(&self) -> Option<&IssuerEntry> {
        self.issuers
            .iter()
            .find(|i| i.state == IssuerState::Pending)
    }
}
