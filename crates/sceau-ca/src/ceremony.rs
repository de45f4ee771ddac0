//! The `ca` commands' work: creating a CA (`init`, dedicated or delegated), bringing in the
//! certificate the existing PKI signed (`import`) or a cross-signed one (`import_alternate`),
//! replacing the issuing key (`rotate`), revoking a retired issuer (`revoke_issuer`; the
//! authority CRL that says so is `arl`'s), and describing it all (`show`, the ceremony record).
//!
//! Invariants:
//! - A command that refuses changes nothing: every check runs before the first write, and the
//!   manifest, written last and atomically, is what makes a change real.
//! - Keys are generated where they will live (a 0600 file, or a non-extractable token object)
//!   and are never overwritten; an offline root key (`--root-key-out`) is written once outside
//!   the data directory and never referenced by it (R30).
//! - `import` accepts only a certificate for the pending issuing key that is a CA certificate
//!   fit to issue leaves only (basicConstraints CA:TRUE critical with pathLen 0, keyUsage
//!   keyCertSign and cRLSign critical), valid now, and that chains to the self-signed root at
//!   the end of the chain file (the same root as before, when there was one), through CA
//!   certificates valid now whose path lengths allow it.
//! - `import_alternate` accepts, with the same checks, a second certificate for the active
//!   issuer's key, name and key identifier (a cross-signed issuer): leaves name that issuer,
//!   so they verify through either chain.
//! - A relative key path in `ca.json` is inside the data directory; keys given on the command
//!   line outside it are stored as absolute paths, or (an offline root) not at all.

use std::path::{Path, PathBuf};

use rcgen::{DistinguishedName, DnType, Issuer};
use sceau_wire::key::{pem_decode_all, pem_encode};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use crate::ca::{
    fingerprint_sha256, issuer_id, key_matches, parse_cert, read_cert, subject_key_id,
};
use crate::ca_key::{KeyHandle, KeyRef};
use crate::fsutil::{self, CERT_MODE};
use crate::manifest::{
    CaMode, INTERMEDIATE_CERT, INTERMEDIATE_KEY, IssuerEntry, IssuerState, LEGACY_FILES, Manifest,
    ROOT_CERT, ROOT_KEY, RootEntry,
};
use crate::{CaError, CaKeyKind, profile};

/// Where `ca init` puts the root key of a dedicated CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootKey {
    /// `root.key` in the data directory (the embedded default; fine for a lab, not for R30).
    DataDir,
    /// A file outside the data directory, written once and never referenced (an offline root).
    OutFile(PathBuf),
    /// A token object; the running server never opens it.
    Pkcs11(String),
}

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub mode: CaMode,
    pub kind: CaKeyKind,
    pub organization: String,
    /// Delegated: the issuing CA's subject, RFC 4514 text (`CN=…,O=…`).
    pub subject: Option<String>,
    /// Where the issuing key goes [default: `intermediate.key` in the data directory].
    pub issuing_key: Option<KeyRef>,
    pub root_key: RootKey,
    pub staging: bool,
}

impl InitOptions {
    pub fn dedicated(kind: CaKeyKind, organization: &str) -> InitOptions {
        InitOptions {
            mode: CaMode::Dedicated,
            kind,
            organization: organization.to_owned(),
            subject: None,
            issuing_key: None,
            root_key: RootKey::DataDir,
            staging: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RotateOptions {
    pub kind: Option<CaKeyKind>,
    pub issuing_key: Option<KeyRef>,
    /// Dedicated CA with an offline root: where the root key is for this ceremony.
    pub root_key: Option<KeyRef>,
    /// Delegated: the new issuing CA's subject [default: the active one's].
    pub subject: Option<String>,
}

/// One certificate of the CA, as a ceremony record lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertRecord {
    pub subject: String,
    pub key_id: String,
    pub sha256_fingerprint: String,
    pub not_before: String,
    pub not_after: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IssuerRecord {
    pub id: String,
    pub state: IssuerState,
    pub subject: String,
    pub key: String,
    pub key_kind: CaKeyKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csr: Option<PathBuf>,
    pub alternate_chains: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<crate::manifest::IssuerRevocation>,
}

/// What a CA is: printed by `ca init`, `ca import`, `ca rotate` (the ceremony record) and
/// `ca show`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CaRecord {
    pub data_dir: PathBuf,
    pub mode: CaMode,
    pub staging: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<CertRecord>,
    /// Where the root key is: a path, a token URI, or "offline".
    pub root_key: String,
    pub issuers: Vec<IssuerRecord>,
}

impl std::fmt::Display for CaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cert = |f: &mut std::fmt::Formatter<'_>, c: &CertRecord| {
            writeln!(f, "    subject:     {}", c.subject)?;
            writeln!(f, "    key id:      {}", c.key_id)?;
            writeln!(f, "    SHA-256:     {}", c.sha256_fingerprint)?;
            writeln!(f, "    valid:       {} to {}", c.not_before, c.not_after)
        };
        writeln!(
            f,
            "CA in {} ({}{})",
            self.data_dir.display(),
            self.mode.name(),
            if self.staging { ", staging" } else { "" }
        )?;
        match &self.root {
            Some(r) => {
                writeln!(f, "  root:")?;
                cert(f, r)?;
                writeln!(f, "    key:         {}", self.root_key)?;
            }
            None => writeln!(
                f,
                "  root:          (the existing PKI's, known once a certificate is imported)"
            )?,
        }
        for i in &self.issuers {
            writeln!(f, "  issuer {} ({:?}):", i.id, i.state)?;
            match &i.certificate {
                Some(c) => cert(f, c)?,
                None => writeln!(f, "    subject:     {} (no certificate yet)", i.subject)?,
            }
            writeln!(f, "    key:         {} ({})", i.key, i.key_kind)?;
            if let Some(csr) = &i.csr
                && i.state == IssuerState::Pending
            {
                writeln!(
                    f,
                    "    request:     {} (have the existing PKI sign it, then: sceau-server ca import --cert FILE --chain FILE)",
                    csr.display()
                )?;
            }
            if i.alternate_chains > 0 {
                writeln!(f, "    alternates:  {}", i.alternate_chains)?;
            }
            if let Some(r) = &i.revocation {
                let at = OffsetDateTime::from_unix_timestamp(r.at)
                    .map(rfc3339)
                    .unwrap_or_else(|_| r.at.to_string());
                writeln!(
                    f,
                    "    revoked:     {at}, {}",
                    crate::arl::reason_name(r.reason)
                )?;
            }
        }
        Ok(())
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn cert_record(der: &[u8]) -> Result<CertRecord, CaError> {
    let cert = parse_cert(Path::new("certificate"), der)?;
    Ok(CertRecord {
        subject: cert.subject().to_string(),
        key_id: subject_key_id(&cert)
            .map(|k| issuer_id(&k))
            .unwrap_or_default(),
        sha256_fingerprint: fingerprint_sha256(der),
        not_before: rfc3339(cert.validity().not_before.to_datetime()),
        not_after: rfc3339(cert.validity().not_after.to_datetime()),
    })
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn refuse_existing(dir: &Path) -> Result<(), CaError> {
    for name in std::iter::once(crate::manifest::MANIFEST).chain(LEGACY_FILES) {
        let p = dir.join(name);
        if p.try_exists().map_err(|e| CaError::io(&p, e))? {
            return Err(CaError::Refused(format!(
                "{} already holds a CA ({name} exists); `sceau-server ca show` describes it",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Parses RFC 4514 text (`CN=Issuing CA,O=Example,C=FR`) into a name. The text lists the most
/// specific attribute first; the encoded name lists them the other way (RFC 4514 §2.1).
pub fn parse_dn(text: &str) -> Result<DistinguishedName, CaError> {
    let bad = |why: String| CaError::Refused(format!("subject {text:?}: {why}"));
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => cur.push(n),
                None => return Err(bad("ends with a lone backslash".into())),
            },
            ',' => parts.push(std::mem::take(&mut cur)),
            '+' => return Err(bad("multi-valued RDNs ('+') are not supported".into())),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let mut dn = DistinguishedName::new();
    for part in parts.iter().rev() {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{part:?} is not TYPE=VALUE")))?;
        let v = v.trim();
        if v.is_empty() {
            return Err(bad(format!("{} has no value", k.trim())));
        }
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => {
                if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(bad(format!("C={v} is not a two-letter country code")));
                }
                DnType::CountryName
            }
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            other => {
                return Err(bad(format!(
                    "attribute type {other} is not supported (CN, O, OU, C, L, ST)"
                )));
            }
        };
        dn.push(ty, v);
    }
    if dn.get(&DnType::CommonName).is_none() {
        return Err(bad("a CN is required".into()));
    }
    Ok(dn)
}

/// The SKI this CA would give a key (RFC 7093 method 1, SHA-256 truncated to 160 bits), the
/// provisional id of an issuer whose certificate does not exist yet.
fn provisional_id(key: &KeyHandle) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        rcgen::PublicKeyData::der_bytes(key),
    );
    issuer_id(&d.as_ref()[..20])
}

/// A certificate that parses with nothing after it.
fn parse_strict(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    use x509_parser::prelude::FromDer;
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err("trailing bytes after a certificate".into()),
        Err(e) => Err(format!("a certificate does not parse: {e}")),
    }
}

fn write_cert(dir: &Path, name: &str, der: &[u8]) -> Result<PathBuf, CaError> {
    fsutil::write_atomic(
        &dir.join(name),
        pem_encode("CERTIFICATE", der).as_bytes(),
        CERT_MODE,
    )?;
    Ok(PathBuf::from(name))
}

/// `ca init`: a new CA in `dir`, which must hold none. Returns the ceremony record.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<CaRecord, CaError> {
    refuse_existing(dir)?;
    let issuing_ref = opts
        .issuing_key
        .clone()
        .unwrap_or_else(|| KeyRef::File(INTERMEDIATE_KEY.into()));
    let mut root_out = None;
    match opts.mode {
        CaMode::Dedicated => {
            if opts.subject.is_some() {
                return Err(CaError::Refused(
                    "--subject names the issuing CA of a delegated CA; a dedicated CA names its own".into(),
                ));
            }
            if let RootKey::OutFile(p) = &opts.root_key {
                root_out = Some(offline_key_path(dir, p)?);
            }
        }
        CaMode::Delegated => {
            if opts.subject.is_none() {
                return Err(CaError::Refused(
                    "a delegated CA needs --subject \"CN=…,O=…\" for its issuing CA".into(),
                ));
            }
            if opts.root_key != RootKey::DataDir {
                return Err(CaError::Refused(
                    "a delegated CA has no root key of its own (the existing PKI's root signs)"
                        .into(),
                ));
            }
        }
    }
    let subject = opts.subject.as_deref().map(parse_dn).transpose()?;
    fsutil::ensure_dir(dir)?;
    let now = now();
    let org = opts.organization.as_str();
    let manifest = match opts.mode {
        CaMode::Dedicated => {
            let (root_ref, kept) = match &opts.root_key {
                RootKey::DataDir => (KeyRef::File(ROOT_KEY.into()), true),
                // Absolute: a relative key path would be read inside the data directory.
                RootKey::OutFile(_) => (
                    KeyRef::File(root_out.clone().expect("checked above")),
                    false,
                ),
                RootKey::Pkcs11(uri) => (KeyRef::Pkcs11(uri.clone()), true),
            };
            let root_key = root_ref.generate(dir, opts.kind)?;
            let root_params = profile::root_params(org, now, opts.staging)?;
            let root_cert = root_params.self_signed(&root_key)?;
            let root_issuer = Issuer::new(root_params, root_key);
            let int_key = issuing_ref.generate(dir, opts.kind)?;
            let int_params = profile::intermediate_params(org, now, opts.staging, 1)?;
            let int_cert = int_params.signed_by(&int_key, &root_issuer)?;
            let int_parsed = parse_cert(Path::new(INTERMEDIATE_CERT), int_cert.der())?;
            let id = issuer_id(&subject_key_id(&int_parsed).unwrap_or_default());
            let subject = int_parsed.subject().to_string();
            drop(int_parsed);
            write_cert(dir, ROOT_CERT, root_cert.der())?;
            write_cert(dir, INTERMEDIATE_CERT, int_cert.der())?;
            Manifest {
                version: 1,
                mode: CaMode::Dedicated,
                staging: opts.staging,
                organization: org.to_owned(),
                root: Some(RootEntry {
                    cert: ROOT_CERT.into(),
                    key: kept.then_some(root_ref),
                }),
                issuers: vec![IssuerEntry::active(
                    id,
                    issuing_ref,
                    opts.kind,
                    subject,
                    INTERMEDIATE_CERT.into(),
                    now.unix_timestamp(),
                )],
            }
        }
        CaMode::Delegated => {
            let dn = subject.expect("checked above");
            let text = opts.subject.as_deref().expect("checked above");
            let key = issuing_ref.generate(dir, opts.kind)?;
            let entry = pending_issuer(
                dir,
                &key,
                dn,
                text,
                "intermediate",
                opts.kind,
                issuing_ref,
                now,
            )?;
            Manifest {
                version: 1,
                mode: CaMode::Delegated,
                staging: opts.staging,
                organization: org.to_owned(),
                root: None,
                issuers: vec![entry],
            }
        }
    };
    manifest.write(dir)?;
    let mut record = show(dir)?;
    if let Some(p) = root_out {
        // Said once, in this ceremony's record: the data directory keeps no trace of it.
        record.root_key = format!(
            "offline: written to {} (0600); the data directory does not reference it",
            p.display()
        );
    }
    Ok(record)
}

/// Where `--root-key-out` writes the root key, as an absolute path: a file that does not exist
/// yet, in a directory that does, outside the data directory (R30: the running server must
/// not be able to reach it).
fn offline_key_path(dir: &Path, p: &Path) -> Result<PathBuf, CaError> {
    let refuse = |why: String| CaError::Refused(format!("--root-key-out {}: {why}", p.display()));
    let name = p
        .file_name()
        .ok_or_else(|| refuse("names no file".into()))?;
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let parent = parent
        .canonicalize()
        .map_err(|e| refuse(format!("its directory cannot be used: {e}")))?;
    let full = parent.join(name);
    if full.symlink_metadata().is_ok() {
        return Err(refuse(
            "exists already; a root key is never overwritten".into(),
        ));
    }
    // The data directory may not exist yet; then nothing existing is inside it.
    if let Ok(data) = dir.canonicalize()
        && full.starts_with(&data)
    {
        return Err(refuse(format!(
            "is inside the data directory {}; an offline root key belongs elsewhere",
            dir.display()
        )));
    }
    Ok(full)
}

/// Makes the CSR of a new delegated issuer and its manifest entry (state pending).
#[allow(clippy::too_many_arguments)]
fn pending_issuer(
    dir: &Path,
    key: &KeyHandle,
    dn: DistinguishedName,
    subject: &str,
    base: &str,
    kind: CaKeyKind,
    key_ref: KeyRef,
    now: OffsetDateTime,
) -> Result<IssuerEntry, CaError> {
    let params = profile::delegated_request_params(dn)?;
    let csr = params.serialize_request(key)?;
    let csr_name = format!("{base}.csr");
    fsutil::write_atomic(
        &dir.join(&csr_name),
        pem_encode("CERTIFICATE REQUEST", csr.der()).as_bytes(),
        CERT_MODE,
    )?;
    Ok(IssuerEntry {
        id: provisional_id(key),
        key: key_ref,
        key_kind: kind,
        subject: subject.to_owned(),
        state: IssuerState::Pending,
        cert: None,
        chain: None,
        csr: Some(csr_name.into()),
        alternates: Vec::new(),
        created_at: now.unix_timestamp(),
        revocation: None,
    })
}

/// Describes the first versions' four-file layout in a manifest, and writes it.
pub(crate) fn adopt_legacy(dir: &Path) -> Result<Manifest, CaError> {
    let path = dir.join(INTERMEDIATE_CERT);
    let (_, der) = read_cert(&path)?;
    let cert = parse_cert(&path, &der)?;
    let id = issuer_id(
        &subject_key_id(&cert)
            .ok_or_else(|| CaError::corrupt(&path, "no subjectKeyIdentifier extension"))?,
    );
    let key = KeyRef::File(INTERMEDIATE_KEY.into()).open(dir)?;
    let kind = key.kind().ok_or_else(|| {
        CaError::corrupt(
            dir.join(INTERMEDIATE_KEY),
            "key algorithm is not p256, p384 or rsa",
        )
    })?;
    let org = cert
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .unwrap_or("Sceau")
        .to_owned();
    let manifest = Manifest::legacy(kind, &org, id, cert.subject().to_string());
    drop(cert);
    manifest.write(dir)?;
    tracing::info!(dir = %dir.display(), "described the existing CA files in ca.json");
    Ok(manifest)
}

fn basic_constraints_ok(cert: &X509Certificate<'_>) -> Result<(), String> {
    let ext = cert
        .basic_constraints()
        .map_err(|e| format!("its basicConstraints do not parse: {e}"))?
        .ok_or("it has no basicConstraints (a CA certificate needs CA:TRUE)")?;
    if !ext.critical {
        return Err("its basicConstraints are not critical".into());
    }
    if !ext.value.ca {
        return Err("it is not a CA certificate (basicConstraints CA:FALSE)".into());
    }
    match ext.value.path_len_constraint {
        Some(0) => Ok(()),
        Some(n) => Err(format!(
            "its pathLenConstraint is {n}; an issuing CA for leaves needs 0"
        )),
        None => Err("it has no pathLenConstraint; an issuing CA for leaves needs pathLen 0".into()),
    }
}

fn key_usage_ok(cert: &X509Certificate<'_>) -> Result<(), String> {
    let ext = cert
        .key_usage()
        .map_err(|e| format!("its keyUsage does not parse: {e}"))?
        .ok_or("it has no keyUsage (keyCertSign and cRLSign are needed)")?;
    if !ext.critical {
        return Err("its keyUsage is not critical".into());
    }
    if !ext.value.key_cert_sign() || !ext.value.crl_sign() {
        return Err("its keyUsage lacks keyCertSign or cRLSign".into());
    }
    Ok(())
}

/// RFC 5280 §4.1.2.5: valid at `now`, both ends included.
fn valid_now(cert: &X509Certificate<'_>, what: &str, now: OffsetDateTime) -> Result<(), String> {
    let (nb, na) = (
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
    );
    if nb > now {
        return Err(format!("{what} is not valid before {}", rfc3339(nb)));
    }
    if na < now {
        return Err(format!("{what} expired on {}", rfc3339(na)));
    }
    Ok(())
}

/// A certificate from the existing PKI for one of this CA's issuing keys, and its chain, as
/// checked by [`check_issuing_cert`].
struct CheckedCert {
    cert_der: Vec<u8>,
    /// Between the certificate and the root, nearest first (the root left out).
    above: Vec<Vec<u8>>,
    root_der: Vec<u8>,
    subject: String,
    key_id: Vec<u8>,
}

/// The checks of `ca import` (see the module invariants): `cert_pem` holds one certificate for
/// `key`, fit to issue leaves only, valid now; `chain_pem` the certificates above it, nearest
/// first, each a CA valid now that signed the one below within its path length, the last one
/// a self-signed root. Refusals are one line, prefixed with "certificate refused".
fn check_issuing_cert(
    key: &KeyHandle,
    cert_pem: &str,
    chain_pem: &str,
) -> Result<CheckedCert, CaError> {
    let refuse = |why: String| CaError::Refused(format!("certificate refused: {why}"));
    let certs = pem_decode_all(cert_pem, "CERTIFICATE");
    let [cert_der] = certs.as_slice() else {
        return Err(refuse(format!(
            "the certificate file must hold exactly one PEM certificate, it holds {}",
            certs.len()
        )));
    };
    let mut chain = pem_decode_all(chain_pem, "CERTIFICATE");
    // A PKI that hands out the whole chain, the new certificate first, is not wrong.
    if chain.first() == Some(cert_der) {
        chain.remove(0);
    }
    if chain.is_empty() {
        return Err(refuse(
            "the chain file holds no PEM certificate (it needs the certificates above the issuing CA, up to and including the root)".into(),
        ));
    }
    let cert = parse_strict(cert_der).map_err(refuse)?;
    if !key_matches(key, &cert) {
        return Err(refuse(
            "it is for another key, not the issuing key this CA made (see the CSR `ca show` names)"
                .into(),
        ));
    }
    basic_constraints_ok(&cert).map_err(refuse)?;
    key_usage_ok(&cert).map_err(refuse)?;
    let now_ts = now();
    valid_now(&cert, "it", now_ts).map_err(refuse)?;
    let key_id =
        subject_key_id(&cert).ok_or_else(|| refuse("it has no subjectKeyIdentifier".into()))?;
    let mut parsed = Vec::new();
    for der in &chain {
        parsed.push(parse_strict(der).map_err(|e| refuse(format!("chain: {e}")))?);
    }
    let mut child = &cert;
    for (i, parent) in parsed.iter().enumerate() {
        let n = i + 1;
        if child.issuer() != parent.subject()
            || child.verify_signature(Some(parent.public_key())).is_err()
        {
            return Err(refuse(format!(
                "{} is not signed by certificate {n} of the chain ({})",
                if i == 0 {
                    "it".to_owned()
                } else {
                    format!("certificate {i} of the chain")
                },
                parent.subject()
            )));
        }
        if !parent.is_ca() {
            return Err(refuse(format!("certificate {n} of the chain is not a CA")));
        }
        // RFC 5280 §4.2.1.9: pathLenConstraint counts the CA certificates below, this
        // issuing CA included.
        if let Ok(Some(bc)) = parent.basic_constraints()
            && let Some(len) = bc.value.path_len_constraint
            && (len as usize) < n
        {
            return Err(refuse(format!(
                "certificate {n} of the chain has pathLenConstraint {len}, which forbids the {n} CA certificate(s) below it"
            )));
        }
        // RFC 5280 §4.2.1.3: a CA key that signs certificates has keyCertSign, if it has a
        // keyUsage at all.
        if let Ok(Some(ku)) = parent.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(refuse(format!(
                "certificate {n} of the chain has a keyUsage without keyCertSign"
            )));
        }
        valid_now(parent, &format!("certificate {n} of the chain"), now_ts).map_err(refuse)?;
        child = parent;
    }
    let root = parsed.last().expect("non-empty");
    if root.issuer() != root.subject() || root.verify_signature(None).is_err() {
        return Err(refuse(
            "the chain does not end with a self-signed root certificate".into(),
        ));
    }
    let subject = cert.subject().to_string();
    drop((cert, parsed));
    let root_der = chain.pop().expect("non-empty");
    Ok(CheckedCert {
        cert_der: cert_der.clone(),
        above: chain,
        root_der,
        subject,
        key_id,
    })
}

fn pem_chain(certs: &[Vec<u8>]) -> String {
    certs.iter().map(|d| pem_encode("CERTIFICATE", d)).collect()
}

/// `ca import`: the existing PKI's certificate for the pending issuing key, and the chain up to
/// its root (PEM, nearest first, the self-signed root last). The new issuer becomes active; the
/// previous one, if any, retires.
pub fn import(dir: &Path, cert_pem: &str, chain_pem: &str) -> Result<CaRecord, CaError> {
    let mut manifest =
        Manifest::read(dir)?.ok_or_else(|| CaError::NotInitialised(dir.to_path_buf()))?;
    let pending = manifest.pending().cloned().ok_or_else(|| {
        CaError::Refused(format!(
            "{} has no issuing key waiting for a certificate (`ca init --delegated` or `ca rotate` makes one; a second chain for the active issuer is `ca import --alternate`)",
            dir.display()
        ))
    })?;
    let key = pending.key.open(dir)?;
    let checked = check_issuing_cert(&key, cert_pem, chain_pem)?;
    if let Some(existing) = &manifest.root {
        let (_, have) = read_cert(&dir.join(&existing.cert))?;
        if have != checked.root_der {
            return Err(CaError::Refused(format!(
                "certificate refused: its chain ends at another root ({}) than this CA's ({}), which the clients trust",
                fingerprint_sha256(&checked.root_der),
                fingerprint_sha256(&have)
            )));
        }
    }

    // All checks passed: write the files, then the manifest.
    let base = pending
        .csr
        .as_ref()
        .and_then(|c| c.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("intermediate")
        .to_owned();
    let cert_name = write_cert(dir, &format!("{base}.pem"), &checked.cert_der)?;
    let chain_name = format!("{base}-chain.pem");
    fsutil::write_atomic(
        &dir.join(&chain_name),
        pem_chain(&checked.above).as_bytes(),
        CERT_MODE,
    )?;
    if manifest.root.is_none() {
        write_cert(dir, ROOT_CERT, &checked.root_der)?;
        manifest.root = Some(RootEntry {
            cert: ROOT_CERT.into(),
            key: None,
        });
    }
    for i in &mut manifest.issuers {
        if i.state == IssuerState::Active {
            i.state = IssuerState::Retired;
        }
        if i.id == pending.id && i.state == IssuerState::Pending {
            i.id = issuer_id(&checked.key_id);
            i.subject = checked.subject.clone();
            i.cert = Some(cert_name.clone());
            i.chain = Some(chain_name.clone().into());
            i.state = IssuerState::Active;
        }
    }
    manifest.write(dir)?;
    show(dir)
}

/// `ca import --alternate`: a second certificate for the active issuer's key (a cross-signed
/// issuer: the same key and name certified by another root) and its chain up to that root.
/// Leaves keep their chain; the certificate URL offers the new one too, with `Link:
/// rel="alternate"` (RFC 8555 §7.4.2). The same checks as `import`, and the certificate must
/// carry the active issuer's name and key identifier, which the leaves name as their issuer.
pub fn import_alternate(dir: &Path, cert_pem: &str, chain_pem: &str) -> Result<CaRecord, CaError> {
    let mut manifest =
        Manifest::read(dir)?.ok_or_else(|| CaError::NotInitialised(dir.to_path_buf()))?;
    let root = manifest
        .root
        .clone()
        .ok_or_else(|| CaError::AwaitingImport {
            dir: dir.to_path_buf(),
            csr: manifest
                .pending()
                .and_then(|p| p.csr.as_ref())
                .map(|c| dir.join(c)),
        })?;
    let active = manifest
        .active()
        .cloned()
        .ok_or_else(|| CaError::corrupt(Manifest::path(dir), "no active issuer"))?;
    let active_path = dir.join(active.cert.as_ref().ok_or_else(|| {
        CaError::corrupt(Manifest::path(dir), "the active issuer has no certificate")
    })?);
    let (_, active_der) = read_cert(&active_path)?;
    let key = active.key.open(dir)?;
    let checked = check_issuing_cert(&key, cert_pem, chain_pem)?;
    let active_cert = parse_cert(&active_path, &active_der)?;
    let refuse = |why: String| CaError::Refused(format!("certificate refused: {why}"));
    let new_cert = parse_strict(&checked.cert_der).map_err(refuse)?;
    if new_cert.subject().as_raw() != active_cert.subject().as_raw() {
        return Err(refuse(format!(
            "its subject ({}) is not the active issuer's ({}): leaves name that issuer, so this chain would not verify",
            new_cert.subject(),
            active_cert.subject()
        )));
    }
    if issuer_id(&checked.key_id) != active.id {
        return Err(refuse(format!(
            "its subjectKeyIdentifier ({}) is not the active issuer's ({}), which leaves carry as their authorityKeyIdentifier",
            issuer_id(&checked.key_id),
            active.id
        )));
    }
    drop((new_cert, active_cert));
    let (_, main_root) = read_cert(&dir.join(&root.cert))?;
    let mut alternate = vec![checked.cert_der.clone()];
    alternate.extend(checked.above.iter().cloned());
    let main: Vec<Vec<u8>> = std::iter::once(active_der.clone())
        .chain(match &active.chain {
            Some(c) => pem_decode_all(&fsutil::read_text(&dir.join(c))?, "CERTIFICATE"),
            None => Vec::new(),
        })
        .collect();
    if alternate == main && checked.root_der == main_root {
        return Err(refuse(
            "it is the active issuer's own chain, not another one".into(),
        ));
    }
    for (n, path) in active.alternates.iter().enumerate() {
        let have = pem_decode_all(&fsutil::read_text(&dir.join(path))?, "CERTIFICATE");
        if have == alternate {
            return Err(refuse(format!(
                "alternate chain {} ({}) is this one already",
                n + 1,
                path.display()
            )));
        }
    }

    let base = active_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("intermediate")
        .to_owned();
    let name = format!("{base}-alt-{}.pem", active.alternates.len() + 1);
    fsutil::write_atomic(
        &dir.join(&name),
        pem_chain(&alternate).as_bytes(),
        CERT_MODE,
    )?;
    for i in &mut manifest.issuers {
        if i.id == active.id && i.state == IssuerState::Active {
            i.alternates.push(name.clone().into());
        }
    }
    manifest.write(dir)?;
    show(dir)
}

/// `ca rotate`: a new issuing key. Dedicated: signed by the root now (its key from the data
/// directory, the token, or `root_key` for an offline root) and active at once. Delegated: a
/// pending issuer with its CSR; the current one issues until `ca import`.
pub fn rotate(dir: &Path, opts: &RotateOptions) -> Result<CaRecord, CaError> {
    let mut manifest =
        Manifest::read(dir)?.ok_or_else(|| CaError::NotInitialised(dir.to_path_buf()))?;
    if manifest.pending().is_some() {
        return Err(CaError::Refused(
            "an issuing key already waits for its certificate: `ca import` it first".into(),
        ));
    }
    let active = manifest
        .active()
        .cloned()
        .ok_or_else(|| CaError::corrupt(Manifest::path(dir), "no active issuer"))?;
    if manifest.mode == CaMode::Dedicated && opts.subject.is_some() {
        return Err(CaError::Refused(
            "--subject names the issuing CA of a delegated CA; a dedicated CA names its own".into(),
        ));
    }
    let kind = opts.kind.unwrap_or(active.key_kind);
    let n = manifest.issuers.len() + 1;
    let base = format!("issuer-{n}");
    let key_ref = opts
        .issuing_key
        .clone()
        .unwrap_or_else(|| KeyRef::File(format!("{base}.key").into()));
    let now = now();
    match manifest.mode {
        CaMode::Dedicated => {
            let root = manifest.root.clone().expect("a dedicated CA has its root");
            let root_ref = opts.root_key.clone().or(root.key.clone()).ok_or_else(|| {
                CaError::Refused(
                    "the root key is offline: give it for this ceremony with --root-key PATH or pkcs11:URI".into(),
                )
            })?;
            let root_key = root_ref.open(dir)?;
            let (_, root_der) = read_cert(&dir.join(&root.cert))?;
            let root_cert = parse_cert(&dir.join(&root.cert), &root_der)?;
            if !key_matches(&root_key, &root_cert) {
                return Err(CaError::Refused(format!(
                    "{root_ref} is not the key of this CA's root ({})",
                    fingerprint_sha256(&root_der)
                )));
            }
            drop(root_cert);
            let root_issuer = Issuer::from_ca_cert_der(&root_der.as_slice().into(), root_key)?;
            let key = key_ref.generate(dir, kind)?;
            let params =
                profile::intermediate_params(&manifest.organization, now, manifest.staging, n)?;
            let cert = params.signed_by(&key, &root_issuer)?;
            let parsed = parse_cert(Path::new("new issuer"), cert.der())?;
            let id = issuer_id(&subject_key_id(&parsed).unwrap_or_default());
            let subject = parsed.subject().to_string();
            drop(parsed);
            let cert_name = write_cert(dir, &format!("{base}.pem"), cert.der())?;
            for i in &mut manifest.issuers {
                if i.state == IssuerState::Active {
                    i.state = IssuerState::Retired;
                }
            }
            manifest.issuers.push(IssuerEntry::active(
                id,
                key_ref,
                kind,
                subject,
                cert_name,
                now.unix_timestamp(),
            ));
        }
        CaMode::Delegated => {
            let text = match &opts.subject {
                Some(s) => s.clone(),
                None => rfc4514_from_display(&active.subject),
            };
            let dn = parse_dn(&text)?;
            let key = key_ref.generate(dir, kind)?;
            let entry = pending_issuer(dir, &key, dn, &text, &base, kind, key_ref, now)?;
            manifest.issuers.push(entry);
        }
    }
    manifest.write(dir)?;
    show(dir)
}

/// `ca revoke-issuer`: the issuer `id` becomes `revoked` with `reason` (an RFC 5280 code,
/// see [`crate::arl::issuer_reason`]) at the current time; from the next start of the signing
/// process its key signs nothing. Refused for the active issuer (another must be active first:
/// `ca rotate`), a pending one (it has no certificate) and one already revoked. The authority
/// CRL says so once `ca arl` signs it again.
pub fn revoke_issuer(dir: &Path, id: &str, reason: u8) -> Result<CaRecord, CaError> {
    let mut manifest =
        Manifest::read(dir)?.ok_or_else(|| CaError::NotInitialised(dir.to_path_buf()))?;
    let issuer = manifest
        .issuers
        .iter_mut()
        .find(|i| i.id == id)
        .ok_or_else(|| {
            CaError::Refused(format!(
                "no issuer {id} in this CA (`sceau-server ca show` lists them)"
            ))
        })?;
    match issuer.state {
        IssuerState::Active => {
            return Err(CaError::Refused(format!(
                "issuer {id} is the active issuer: make another one active first (`sceau-server ca rotate`, then `ca import` for a delegated CA), then revoke this one"
            )));
        }
        IssuerState::Pending => {
            return Err(CaError::Refused(format!(
                "issuer {id} is pending: it has no certificate to revoke"
            )));
        }
        IssuerState::Revoked => {
            return Err(CaError::Refused(format!("issuer {id} is already revoked")));
        }
        IssuerState::Retired => {}
    }
    crate::arl::issuer_reason(&reason.to_string())?;
    issuer.state = IssuerState::Revoked;
    issuer.revocation = Some(crate::manifest::IssuerRevocation {
        at: now().unix_timestamp(),
        reason,
    });
    manifest.write(dir)?;
    show(dir)
}

/// x509-parser prints names in encoding order (`C=FR, O=Example, CN=Issuing`); RFC 4514 text
/// lists them the other way.
fn rfc4514_from_display(subject: &str) -> String {
    let mut parts: Vec<&str> = subject.split(", ").collect();
    parts.reverse();
    parts.join(",")
}

/// `ca show`: the CA as it is (also the ceremony record of the other commands).
pub fn show(dir: &Path) -> Result<CaRecord, CaError> {
    let manifest =
        Manifest::read(dir)?.ok_or_else(|| CaError::NotInitialised(dir.to_path_buf()))?;
    let root = match &manifest.root {
        Some(r) => Some(cert_record(&read_cert(&dir.join(&r.cert))?.1)?),
        None => None,
    };
    let root_key = match manifest.root.as_ref().and_then(|r| r.key.as_ref()) {
        Some(k) => k.to_string(),
        None if manifest.mode == CaMode::Delegated => "held by the existing PKI".into(),
        None => "offline (not in the data directory)".into(),
    };
    let mut issuers = Vec::new();
    for i in &manifest.issuers {
        let certificate = match &i.cert {
            Some(c) => Some(cert_record(&read_cert(&dir.join(c))?.1)?),
            None => None,
        };
        issuers.push(IssuerRecord {
            id: i.id.clone(),
            state: i.state,
            subject: i.subject.clone(),
            key: i.key.to_string(),
            key_kind: i.key_kind,
            certificate,
            csr: i.csr.as_ref().map(|c| dir.join(c)),
            alternate_chains: i.alternates.len(),
            revocation: i.revocation,
        });
    }
    Ok(CaRecord {
        data_dir: dir.to_path_buf(),
        mode: manifest.mode,
        staging: manifest.staging,
        root,
        root_key,
        issuers,
    })
}
