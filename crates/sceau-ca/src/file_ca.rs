//! A two-level CA whose keys are PKCS#8 PEM files: a self-signed root that only ever signs the
//! issuing intermediate, and the intermediate that signs every leaf (R30).
//!
//! Invariants:
//! - The four files (`root.pem`, `root.key`, `intermediate.pem`, `intermediate.key`) are
//!   created together or not at all by this code; finding only some of them is an error, never
//!   a reason to regenerate (a new root would silently break every client that trusts the old).
//! - A loaded CA is consistent: each key matches its certificate, the root is self-signed, the
//!   intermediate is signed by the root and carries a subjectKeyIdentifier.
//! - Keys are written 0600 through `fsutil::write_atomic`.

use std::collections::BTreeSet;
use std::path::Path;

use rcgen::{
    Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, RsaKeySize,
};
use sceau_wire::Identifier;
use sceau_wire::key::{pem_decode, pem_decode_all, pem_encode};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::fsutil::{self, CERT_MODE, KEY_MODE};
use crate::keys::{self, KeyType};
use crate::names::{self, SanName};
use crate::profile::{self, MAX_LEAF_VALIDITY, SERVER_TLS_RENEW_BEFORE, SERVER_TLS_VALIDITY};
use crate::{CaError, CaKeyKind, IssueFuture, IssueRequest, Issued, Profile, Signer, inspect};

const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root.key";
const INTERMEDIATE_CERT: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

pub struct FileCa {
    kind: CaKeyKind,
    root_der: Vec<u8>,
    root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate_pem: String,
    intermediate_ski: Vec<u8>,
    intermediate_not_before: OffsetDateTime,
    intermediate_not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
    /// R39: 90 days unless the operator explicitly allowed more.
    max_leaf_validity: time::Duration,
    /// R42: no wildcard names unless the operator explicitly allowed them.
    allow_wildcards: bool,
}

impl std::fmt::Debug for FileCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCa")
            .field("kind", &self.kind)
            .field("root_fingerprint_sha256", &self.root_fingerprint_sha256())
            .field("intermediate_not_after", &self.intermediate_not_after)
            .finish_non_exhaustive()
    }
}

fn generate_key(kind: CaKeyKind) -> Result<KeyPair, CaError> {
    Ok(match kind {
        CaKeyKind::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        CaKeyKind::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?,
        CaKeyKind::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072)?,
    })
}

fn kind_of(key: &KeyPair) -> Option<CaKeyKind> {
    let alg = key.algorithm();
    if alg == &PKCS_ECDSA_P256_SHA256 {
        Some(CaKeyKind::P256)
    } else if alg == &PKCS_ECDSA_P384_SHA384 {
        Some(CaKeyKind::P384)
    } else if alg == &PKCS_RSA_SHA256 {
        Some(CaKeyKind::Rsa3072)
    } else {
        None
    }
}

/// A certificate file: exactly one PEM CERTIFICATE block.
fn read_cert(path: &Path) -> Result<(String, Vec<u8>), CaError> {
    let text = fsutil::read_text(path)?;
    let mut blocks = pem_decode_all(&text, "CERTIFICATE");
    if blocks.len() != 1 {
        return Err(CaError::corrupt(
            path,
            format!("expected one PEM CERTIFICATE block, found {}", blocks.len()),
        ));
    }
    let der = blocks.remove(0);
    Ok((pem_encode("CERTIFICATE", &der), der))
}

fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let text = fsutil::read_text(path)?;
    let der = pem_decode(&text, "PRIVATE KEY")
        .ok_or_else(|| CaError::corrupt(path, "no PEM PRIVATE KEY (PKCS#8) block"))?;
    KeyPair::try_from(der.as_slice())
        .map_err(|e| CaError::corrupt(path, format!("unusable private key: {e}")))
}

fn parse_cert<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CaError::corrupt(
            path,
            "trailing bytes after the certificate",
        )),
        Err(e) => Err(CaError::corrupt(
            path,
            format!("certificate does not parse: {e}"),
        )),
    }
}

fn key_matches(key: &KeyPair, cert: &X509Certificate<'_>) -> bool {
    rcgen::PublicKeyData::der_bytes(key) == cert.public_key().subject_public_key.data.as_ref()
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

/// Canonical, de-duplicated names in their given order.
fn dedup(names: Vec<SanName>) -> Vec<SanName> {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.identifier()))
        .collect()
}

impl FileCa {
    /// Raises (or lowers) the longest leaf validity this CA signs: the explicit override of
    /// R39's 90 days that `--allow-long-validity` gives.
    pub fn set_max_leaf_validity(&mut self, max: time::Duration) {
        self.max_leaf_validity = max;
    }

    /// Lets this CA sign wildcard names (`--allow-wildcards`, R42's explicit exception).
    pub fn set_allow_wildcards(&mut self, allow: bool) {
        self.allow_wildcards = allow;
    }

    /// Loads `dir/root.pem, root.key, intermediate.pem, intermediate.key` or, if none exist,
    /// generates a root CA (10 years, CN "<org> Sceau Root CA") and an issuing intermediate
    /// (5 years, pathLen 0, CN "<org> Sceau Issuing CA") signed by it, and writes them (keys
    /// 0600, atomic write+fsync+rename). Partial state is an error naming the missing file(s).
    ///
    /// `kind` only matters when creating; a loaded CA keeps the algorithm of its files (a
    /// mismatch is logged).
    pub fn open_or_create(dir: &Path, kind: CaKeyKind, org: &str) -> Result<FileCa, CaError> {
        let files = [ROOT_CERT, ROOT_KEY, INTERMEDIATE_CERT, INTERMEDIATE_KEY];
        let mut missing = Vec::new();
        for name in files {
            let path = dir.join(name);
            if !path.try_exists().map_err(|e| CaError::io(&path, e))? {
                missing.push(name.to_owned());
            }
        }
        if missing.len() == files.len() {
            Self::create(dir, kind, org)?;
        } else if !missing.is_empty() {
            return Err(CaError::Incomplete {
                dir: dir.to_path_buf(),
                missing,
            });
        }
        let ca = Self::load(dir)?;
        if ca.kind != kind {
            tracing::warn!(configured = %kind, found = %ca.kind, dir = %dir.display(), "existing CA keeps its key algorithm");
        }
        if ca.intermediate_not_after - OffsetDateTime::now_utc() < MAX_LEAF_VALIDITY {
            tracing::warn!(not_after = %ca.intermediate_not_after, "the issuing intermediate expires within 90 days");
        }
        Ok(ca)
    }

    fn create(dir: &Path, kind: CaKeyKind, org: &str) -> Result<(), CaError> {
        fsutil::ensure_dir(dir)?;
        let now = OffsetDateTime::now_utc();
        let root_key = generate_key(kind)?;
        let root_params = profile::root_params(org, now)?;
        let root_cert = root_params.self_signed(&root_key)?;
        let root_key_pem = root_key.serialize_pem();
        let root_issuer = Issuer::new(root_params, root_key);

        let int_key = generate_key(kind)?;
        let int_cert = profile::intermediate_params(org, now)?.signed_by(&int_key, &root_issuer)?;

        // Keys first: a crash before the certificates leaves a visibly incomplete directory.
        fsutil::write_atomic(&dir.join(ROOT_KEY), root_key_pem.as_bytes(), KEY_MODE)?;
        fsutil::write_atomic(
            &dir.join(INTERMEDIATE_KEY),
            int_key.serialize_pem().as_bytes(),
            KEY_MODE,
        )?;
        fsutil::write_atomic(
            &dir.join(ROOT_CERT),
            pem_encode("CERTIFICATE", root_cert.der()).as_bytes(),
            CERT_MODE,
        )?;
        fsutil::write_atomic(
            &dir.join(INTERMEDIATE_CERT),
            pem_encode("CERTIFICATE", int_cert.der()).as_bytes(),
            CERT_MODE,
        )?;
        tracing::info!(dir = %dir.display(), %kind, "created a new root and issuing CA");
        Ok(())
    }

    fn load(dir: &Path) -> Result<FileCa, CaError> {
        let (root_path, int_path) = (dir.join(ROOT_CERT), dir.join(INTERMEDIATE_CERT));
        let (root_pem, root_der) = read_cert(&root_path)?;
        let (intermediate_pem, intermediate_der) = read_cert(&int_path)?;
        let root_key = read_key(&dir.join(ROOT_KEY))?;
        let int_key = read_key(&dir.join(INTERMEDIATE_KEY))?;

        let root = parse_cert(&root_path, &root_der)?;
        let int = parse_cert(&int_path, &intermediate_der)?;
        if !key_matches(&root_key, &root) {
            return Err(CaError::corrupt(
                dir.join(ROOT_KEY),
                "does not match root.pem",
            ));
        }
        if !key_matches(&int_key, &int) {
            return Err(CaError::corrupt(
                dir.join(INTERMEDIATE_KEY),
                "does not match intermediate.pem",
            ));
        }
        if !root.is_ca() || root.verify_signature(None).is_err() {
            return Err(CaError::corrupt(
                &root_path,
                "not a self-signed CA certificate",
            ));
        }
        if !int.is_ca()
            || int.issuer() != root.subject()
            || int.verify_signature(Some(root.public_key())).is_err()
        {
            return Err(CaError::corrupt(
                &int_path,
                "not a CA certificate signed by root.pem",
            ));
        }
        let intermediate_ski = subject_key_id(&int)
            .ok_or_else(|| CaError::corrupt(&int_path, "no subjectKeyIdentifier extension"))?;
        let kind = kind_of(&int_key).ok_or_else(|| {
            CaError::corrupt(
                dir.join(INTERMEDIATE_KEY),
                "key algorithm is not p256, p384 or rsa",
            )
        })?;
        let intermediate_not_before = int.validity().not_before.to_datetime();
        let intermediate_not_after = int.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_pem(&intermediate_pem, int_key)
            .map_err(|e| CaError::corrupt(&int_path, format!("unusable as issuer: {e}")))?;
        drop((root, int));
        Ok(FileCa {
            kind,
            root_der,
            root_pem,
            intermediate_der,
            intermediate_pem,
            intermediate_ski,
            intermediate_not_before,
            intermediate_not_after,
            issuer,
            max_leaf_validity: MAX_LEAF_VALIDITY,
            allow_wildcards: false,
        })
    }

    /// SHA-256 of the root certificate DER, uppercase hex, colon-separated (as
    /// `openssl x509 -fingerprint -sha256` prints it).
    pub fn root_fingerprint_sha256(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.root_der);
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    pub fn key_kind(&self) -> CaKeyKind {
        self.kind
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The intermediate's subjectKeyIdentifier: the AKI of every leaf, the first half of
    /// every ARI certID it issues.
    pub fn intermediate_key_id(&self) -> &[u8] {
        &self.intermediate_ski
    }

    pub fn intermediate_not_after(&self) -> OffsetDateTime {
        self.intermediate_not_after
    }

    /// Signs a leaf certificate now, on the calling thread (the [`Signer::issue`] future does
    /// exactly this). See the crate invariants for what is checked.
    pub fn sign(&self, req: &IssueRequest) -> Result<Issued, CaError> {
        let key = keys::classify_der(&req.public_key_spki_der)
            .map_err(|p| CaError::InvalidRequest(format!("subject public key: {p}")))?;
        let names = req
            .identifiers
            .iter()
            .map(|id| names::san_name(id, self.allow_wildcards))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CaError::InvalidRequest)?;
        let names = dedup(names);
        if names.is_empty() {
            return Err(CaError::InvalidRequest("no identifiers".into()));
        }
        let (not_before, not_after) = (
            profile::whole_seconds(req.not_before),
            profile::whole_seconds(req.not_after),
        );
        self.check_validity(not_before, not_after)?;
        self.sign_leaf(
            &names,
            not_before,
            not_after,
            req.profile,
            key,
            &req.public_key_spki_der,
        )
    }

    fn check_validity(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(), CaError> {
        if not_after <= not_before {
            return Err(CaError::InvalidRequest(
                "notAfter is not after notBefore".into(),
            ));
        }
        if not_after - not_before > self.max_leaf_validity {
            return Err(CaError::InvalidRequest(format!(
                "validity of {} exceeds the {}-day maximum (R39)",
                not_after - not_before,
                self.max_leaf_validity.whole_days()
            )));
        }
        // RFC 5280 §6.1.3: a leaf outliving its issuer fails validation once the issuer
        // expires. (A leaf backdated before the issuer's notBefore is harmless: validation
        // happens at the current time.)
        if not_after > self.intermediate_not_after {
            return Err(CaError::InvalidRequest(format!(
                "notAfter {not_after} is after the issuing CA's notAfter {}",
                self.intermediate_not_after
            )));
        }
        Ok(())
    }

    fn sign_leaf(
        &self,
        names: &[SanName],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        profile: Profile,
        key: KeyType,
        spki_der: &[u8],
    ) -> Result<Issued, CaError> {
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        let params = profile::leaf_params(names, not_before, not_after, profile, key)?;
        let der = params.signed_by(&public_key, &self.issuer)?.der().to_vec();

        // Read the certificate back with a second implementation before handing it out.
        let info = inspect::cert_info(&der)?;
        let wanted: Vec<Identifier> = names.iter().map(SanName::identifier).collect();
        let same_key = rcgen::SubjectPublicKeyInfo::from_der(&info.spki_der).is_ok_and(|k| {
            rcgen::PublicKeyData::der_bytes(&k) == rcgen::PublicKeyData::der_bytes(&public_key)
        });
        if !same_key || info.identifiers != wanted {
            return Err(CaError::Signing(
                "the signed certificate does not read back as built".into(),
            ));
        }
        let ari_id = info
            .ari_id
            .filter(|id| {
                sceau_wire::parse_ari_cert_id(id)
                    .is_some_and(|(aki, _)| aki == self.intermediate_ski)
            })
            .ok_or_else(|| {
                CaError::Signing("the signed certificate lacks the issuer's key identifier".into())
            })?;
        let chain_pem = pem_encode("CERTIFICATE", &der) + &self.intermediate_pem;
        Ok(Issued {
            der,
            chain_pem,
            serial_hex: info.serial_hex,
            not_before: info.not_before,
            not_after: info.not_after,
            ari_id,
        })
    }

    /// TLS certificate for the server's own HTTPS listener, signed by the intermediate, for DNS
    /// names and/or IP addresses. Stored in `dir/server.pem` (leaf + intermediate) and
    /// `dir/server.key` (0600); reused while it is valid for more than 30 more days, is for the
    /// same names, chains to this CA's intermediate and matches its key; otherwise a new key
    /// and certificate replace them. Returns (chain PEM, PKCS#8 key PEM).
    pub fn server_tls(&self, dir: &Path, names: &[String]) -> Result<(String, String), CaError> {
        let wanted = dedup(
            names
                .iter()
                .map(|n| names::guess(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(CaError::InvalidRequest)?,
        );
        if wanted.is_empty() {
            return Err(CaError::InvalidRequest(
                "the server certificate needs at least one name".into(),
            ));
        }
        let (cert_path, key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
        match self.reusable_server_tls(&cert_path, &key_path, &wanted) {
            Ok(Some(pair)) => return Ok(pair),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "replacing the server's TLS certificate"),
        }

        fsutil::ensure_dir(dir)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let not_before = (now - profile::CA_BACKDATE).max(self.intermediate_not_before);
        let not_after = (now + SERVER_TLS_VALIDITY).min(self.intermediate_not_after);
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let issued = self.sign_leaf(
            &wanted,
            not_before,
            not_after,
            Profile::Server,
            KeyType::EcP256,
            &spki,
        )?;
        let key_pem = key.serialize_pem();
        // Key first: a crash in between leaves a pair that fails the match check and is replaced.
        fsutil::write_atomic(&key_path, key_pem.as_bytes(), KEY_MODE)?;
        fsutil::write_atomic(&cert_path, issued.chain_pem.as_bytes(), CERT_MODE)?;
        tracing::info!(names = ?names, not_after = %issued.not_after, "issued the server's TLS certificate");
        Ok((issued.chain_pem, key_pem))
    }

    /// `Ok(None)` when there is nothing (or nothing current) to reuse; `Err` when the files
    /// exist but are unusable, which is logged before they are replaced.
    fn reusable_server_tls(
        &self,
        cert_path: &Path,
        key_path: &Path,
        wanted: &[SanName],
    ) -> Result<Option<(String, String)>, CaError> {
        if !cert_path.exists() || !key_path.exists() {
            return Ok(None);
        }
        let chain_pem = fsutil::read_text(cert_path)?;
        let key_pem = fsutil::read_text(key_path)?;
        let chain = pem_decode_all(&chain_pem, "CERTIFICATE");
        if chain.len() != 2 || chain[1] != self.intermediate_der {
            return Ok(None);
        }
        let leaf = parse_cert(cert_path, &chain[0])?;
        let int = parse_cert(cert_path, &self.intermediate_der)?;
        if leaf.verify_signature(Some(int.public_key())).is_err() {
            return Ok(None);
        }
        let key = read_key(key_path)?;
        if !key_matches(&key, &leaf) {
            return Err(CaError::corrupt(key_path, "does not match server.pem"));
        }
        let info = inspect::cert_info(&chain[0])?;
        let have: BTreeSet<Identifier> = info.identifiers.into_iter().collect();
        let want: BTreeSet<Identifier> = wanted.iter().map(SanName::identifier).collect();
        if have != want || info.not_after - OffsetDateTime::now_utc() <= SERVER_TLS_RENEW_BEFORE {
            return Ok(None);
        }
        Ok(Some((chain_pem, key_pem)))
    }
}

impl Signer for FileCa {
    fn issue<'a>(&'a self, req: IssueRequest) -> IssueFuture<'a> {
        // ECDSA signing takes microseconds and RSA-3072 a few milliseconds: not worth a thread.
        Box::pin(async move { self.sign(&req) })
    }

    fn issuer_chain_pem(&self) -> String {
        self.intermediate_pem.clone()
    }

    fn root_pem(&self) -> String {
        self.root_pem.clone()
    }
}
