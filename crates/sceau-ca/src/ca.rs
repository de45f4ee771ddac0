//! The CA as the signing process holds it: the root certificate clients trust, the issuing
//! intermediates with their keys (files or PKCS#11), and everything they sign — leaves, the
//! server's own TLS certificate, CRLs, OCSP responder certificates and OCSP responses.
//!
//! Invariants:
//! - What `ca.json` names exists: a missing file is an error naming it, never a reason to
//!   regenerate (a new root would silently break every client that trusts the old one).
//! - A loaded CA is consistent: each issuer's key matches its certificate, each issuer
//!   certificate is a CA certificate signed by the next certificate of its chain (the root at
//!   the end), carries a subjectKeyIdentifier, and the root is self-signed.
//! - Exactly one issuer signs new leaves (the active one); retired issuers stay loaded to sign
//!   CRLs and OCSP for what they issued; revoked issuers (`ca revoke-issuer`) are not loaded
//!   at all. The root key is never opened here: the running server does not need it (R30).
//! - Every leaf follows one profile (R38, see `profile`) and is read back with a second
//!   implementation (x509-parser) before it is handed out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rcgen::{Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use sceau_wire::Identifier;
use sceau_wire::key::{pem_decode, pem_decode_all, pem_encode};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca_key::{FileKey, KeyHandle};
use crate::fsutil::{self, CERT_MODE, KEY_MODE};
use crate::keys::{self, KeyType};
use crate::manifest::{IssuerEntry, IssuerState, LEGACY_FILES, Manifest};
use crate::names::{self, SanName};
use crate::profile::{self, MAX_LEAF_VALIDITY, SERVER_TLS_RENEW_BEFORE, SERVER_TLS_VALIDITY};
use crate::{CaError, CaKeyKind, IssueRequest, Issued, Profile, hex_lower, inspect};

const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

/// How the signing process opens its CA.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Create a dedicated CA (root key in the data directory) when the directory holds none:
    /// `serve` on its embedded defaults. `None`: a missing CA is an error naming `ca init`.
    pub create: Option<(CaKeyKind, String)>,
    /// `serve --staging`: the CA must be a staging CA (and is created as one).
    pub staging: bool,
}

/// One issuing intermediate, loaded.
pub struct LoadedIssuer {
    pub id: String,
    pub state: IssuerState,
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// The PEM certificates that follow a leaf: this issuer, then those above it up to (not
    /// including) the root.
    pub chain_pem: String,
    /// Other such chains (a cross-signed issuer), for `Link: rel="alternate"`.
    pub alternate_chains: Vec<String>,
    pub key_id: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key: KeyHandle,
    signer: Issuer<'static, KeyHandle>,
}

pub struct Ca {
    dir: PathBuf,
    manifest: Manifest,
    root_der: Vec<u8>,
    root_pem: String,
    issuers: Vec<LoadedIssuer>,
    active: usize,
    /// R39: 90 days unless the operator explicitly allowed more.
    max_leaf_validity: time::Duration,
    /// R42: no wildcard names unless the operator explicitly allowed them.
    allow_wildcards: bool,
    /// `localhost` names and loopback and link-local addresses only in a lab.
    allow_local_names: bool,
    /// The base of the revocation URLs (CRL distribution points, OCSP) put in leaves.
    public_url: Option<String>,
    /// Whether leaves carry the OCSP responder URL (AIA).
    ocsp_in_leaves: bool,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("mode", &self.manifest.mode)
            .field("root_fingerprint_sha256", &self.root_fingerprint_sha256())
            .field("active_issuer", &self.active().id)
            .finish_non_exhaustive()
    }
}

/// A certificate file: exactly one PEM CERTIFICATE block.
pub(crate) fn read_cert(path: &Path) -> Result<(String, Vec<u8>), CaError> {
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

pub(crate) fn parse_cert<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
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

pub(crate) fn key_matches(key: &KeyHandle, cert: &X509Certificate<'_>) -> bool {
    rcgen::PublicKeyData::der_bytes(key) == cert.public_key().subject_public_key.data.as_ref()
}

pub(crate) fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

/// SHA-256 of a DER certificate, uppercase hex, colon-separated (as `openssl x509
/// -fingerprint -sha256` prints it).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Canonical, de-duplicated names in their given order.
fn dedup(names: Vec<SanName>) -> Vec<SanName> {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.identifier()))
        .collect()
}

/// The certificates of a PEM chain file (nearest first), each checked to parse.
fn read_chain(path: &Path) -> Result<Vec<Vec<u8>>, CaError> {
    let text = fsutil::read_text(path)?;
    let blocks = pem_decode_all(&text, "CERTIFICATE");
    for der in &blocks {
        parse_cert(path, der)?;
    }
    Ok(blocks)
}

impl Ca {
    /// The data directory's CA: the manifest's, the first versions' four files, or (with
    /// `create`) a new dedicated CA. A half-present CA is an error naming what is missing.
    pub fn open(dir: &Path, opts: &OpenOptions) -> Result<Ca, CaError> {
        let manifest = match Manifest::read(dir)? {
            Some(m) => m,
            None => {
                let mut missing = Vec::new();
                for name in LEGACY_FILES {
                    let path = dir.join(name);
                    if !path.try_exists().map_err(|e| CaError::io(&path, e))? {
                        missing.push(name.to_owned());
                    }
                }
                if missing.len() < LEGACY_FILES.len() {
                    if !missing.is_empty() {
                        return Err(CaError::Incomplete {
                            dir: dir.to_path_buf(),
                            missing,
                        });
                    }
                    crate::ceremony::adopt_legacy(dir)?
                } else if let Some((kind, org)) = &opts.create {
                    crate::ceremony::init(
                        dir,
                        &crate::ceremony::InitOptions {
                            staging: opts.staging,
                            ..crate::ceremony::InitOptions::dedicated(*kind, org)
                        },
                    )?;
                    Manifest::read(dir)?.expect("written by init")
                } else {
                    return Err(CaError::NotInitialised(dir.to_path_buf()));
                }
            }
        };
        if manifest.staging != opts.staging {
            return Err(CaError::Refused(if manifest.staging {
                format!(
                    "{} holds a staging CA (certificates say TEST): start it with --staging, or use another --data-dir for production",
                    dir.display()
                )
            } else {
                format!(
                    "{} holds a production CA: --staging needs a data directory of its own (run staging beside production, not in its place)",
                    dir.display()
                )
            }));
        }
        Self::load(dir, manifest)
    }

    /// `open` with the embedded defaults: a dedicated CA created on first use.
    pub fn open_or_create(dir: &Path, kind: CaKeyKind, org: &str) -> Result<Ca, CaError> {
        let ca = Self::open(
            dir,
            &OpenOptions {
                create: Some((kind, org.to_owned())),
                staging: false,
            },
        )?;
        if ca.key_kind() != Some(kind) {
            tracing::warn!(configured = %kind, found = ?ca.key_kind(), dir = %dir.display(), "existing CA keeps its key algorithm");
        }
        Ok(ca)
    }

    fn load(dir: &Path, manifest: Manifest) -> Result<Ca, CaError> {
        let Some(root) = &manifest.root else {
            let csr = manifest
                .pending()
                .and_then(|p| p.csr.clone())
                .map(|c| dir.join(c));
            return Err(CaError::AwaitingImport {
                dir: dir.to_path_buf(),
                csr,
            });
        };
        // Every file the manifest names must be there, the root key included even though it
        // is not opened: a key that disappears is a human's business.
        let mut missing = Vec::new();
        let mut check = |path: &Path| -> Result<(), CaError> {
            let p = if path.is_relative() {
                dir.join(path)
            } else {
                path.to_path_buf()
            };
            if !p.try_exists().map_err(|e| CaError::io(&p, e))? {
                missing.push(path.display().to_string());
            }
            Ok(())
        };
        check(&root.cert)?;
        if let Some(crate::KeyRef::File(k)) = &root.key {
            check(k)?;
        }
        for i in manifest
            .issuers
            .iter()
            .filter(|i| !matches!(i.state, IssuerState::Pending | IssuerState::Revoked))
        {
            for p in [&i.cert, &i.chain].into_iter().flatten() {
                check(p)?;
            }
            if let crate::KeyRef::File(k) = &i.key {
                check(k)?;
            }
        }
        if !missing.is_empty() {
            return Err(CaError::Incomplete {
                dir: dir.to_path_buf(),
                missing,
            });
        }

        let root_path = dir.join(&root.cert);
        let (root_pem, root_der) = read_cert(&root_path)?;
        let root_cert = parse_cert(&root_path, &root_der)?;
        if !root_cert.is_ca() || root_cert.verify_signature(None).is_err() {
            return Err(CaError::corrupt(
                &root_path,
                "not a self-signed CA certificate",
            ));
        }
        let mut issuers = Vec::new();
        for entry in &manifest.issuers {
            // A revoked issuer's key signs nothing, not even CRLs: the root's authority CRL
            // speaks for its certificates.
            if matches!(entry.state, IssuerState::Pending | IssuerState::Revoked) {
                continue;
            }
            issuers.push(load_issuer(dir, entry, &root_cert, &root_path)?);
        }
        let active = issuers
            .iter()
            .position(|i| i.state == IssuerState::Active)
            .ok_or_else(|| match manifest.pending() {
                Some(p) => CaError::AwaitingImport {
                    dir: dir.to_path_buf(),
                    csr: p.csr.as_ref().map(|c| dir.join(c)),
                },
                None => CaError::corrupt(Manifest::path(dir), "no active issuer"),
            })?;
        drop(root_cert);
        let ca = Ca {
            dir: dir.to_path_buf(),
            manifest,
            root_der,
            root_pem,
            issuers,
            active,
            max_leaf_validity: MAX_LEAF_VALIDITY,
            allow_wildcards: false,
            allow_local_names: false,
            public_url: None,
            ocsp_in_leaves: true,
        };
        if ca.active().not_after - OffsetDateTime::now_utc() < MAX_LEAF_VALIDITY {
            tracing::warn!(not_after = %ca.active().not_after, "the issuing intermediate expires within 90 days");
        }
        Ok(ca)
    }

    /// Raises (or lowers) the longest leaf validity this CA signs: the explicit override of
    /// R39's 90 days that `--allow-long-validity` gives.
    pub fn set_max_leaf_validity(&mut self, max: time::Duration) {
        self.max_leaf_validity = max;
    }

    /// Lets this CA sign wildcard names (`--allow-wildcards`, R42's explicit exception).
    pub fn set_allow_wildcards(&mut self, allow: bool) {
        self.allow_wildcards = allow;
    }

    /// Lets this CA sign leaves for `localhost` names and loopback and link-local addresses
    /// (`--allow-local-identifiers`, for labs). Unspecified, multicast and broadcast addresses
    /// and `invalid` names are never signed.
    pub fn set_allow_local_names(&mut self, allow: bool) {
        self.allow_local_names = allow;
    }

    /// The base of the revocation URLs leaves and CRLs carry (the server's `--public-url`);
    /// with none, leaves carry no CRL distribution point and no OCSP URL.
    pub fn set_public_url(&mut self, url: Option<String>) {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_owned());
    }

    /// Whether leaves carry the OCSP responder URL (on by default, as the agency guide asks).
    pub fn set_ocsp_in_leaves(&mut self, on: bool) {
        self.ocsp_in_leaves = on;
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn issuers(&self) -> &[LoadedIssuer] {
        &self.issuers
    }

    /// The issuer that signs new leaves.
    pub fn active(&self) -> &LoadedIssuer {
        &self.issuers[self.active]
    }

    pub fn issuer(&self, id: &str) -> Result<&LoadedIssuer, CaError> {
        self.issuers
            .iter()
            .find(|i| i.id == id)
            .ok_or_else(|| CaError::InvalidRequest(format!("no issuer {id} in this CA")))
    }

    pub fn root_fingerprint_sha256(&self) -> String {
        fingerprint_sha256(&self.root_der)
    }

    /// The active issuer's key algorithm.
    pub fn key_kind(&self) -> Option<CaKeyKind> {
        self.active().key.kind()
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    pub fn intermediate_der(&self) -> &[u8] {
        &self.active().cert_der
    }

    /// The active issuer's subjectKeyIdentifier: the AKI of every leaf it issues, the first
    /// half of their ARI certIDs.
    pub fn intermediate_key_id(&self) -> &[u8] {
        &self.active().key_id
    }

    pub fn intermediate_not_after(&self) -> OffsetDateTime {
        self.active().not_after
    }

    /// The certificates that follow a leaf of the active issuer (PEM).
    pub fn issuer_chain_pem(&self) -> String {
        self.active().chain_pem.clone()
    }

    /// Signs a leaf certificate now, on the calling thread. See the module invariants for
    /// what is checked.
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
        // The front end's identifier policy, checked again where the key is.
        for name in &names {
            let special = match name {
                SanName::Dns(d) => sceau_wire::special::name_category(d),
                SanName::Ip(ip) => sceau_wire::special::ip_category(*ip),
            };
            if let Some(kind) = special
                && (!kind.is_local() || !self.allow_local_names)
            {
                return Err(CaError::InvalidRequest(format!(
                    "{} is {}; this CA does not certify it",
                    name.identifier().value,
                    kind.describe()
                )));
            }
        }
        let serial = match &req.serial {
            Some(s) => profile::check_serial(s)?,
            None => profile::random_serial()?,
        };
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
            serial,
            req.crl_shard,
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
        if not_after > self.active().not_after {
            return Err(CaError::InvalidRequest(format!(
                "notAfter {not_after} is after the issuing CA's notAfter {}",
                self.active().not_after
            )));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn sign_leaf(
        &self,
        names: &[SanName],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        profile: Profile,
        key: KeyType,
        spki_der: &[u8],
        serial: rcgen::SerialNumber,
        crl_shard: Option<u32>,
    ) -> Result<Issued, CaError> {
        let issuer = self.active();
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der)?;
        let mut params = profile::leaf_params(names, not_before, not_after, profile, key)?;
        params.serial_number = Some(serial);
        if self.manifest.staging {
            profile::mark_test(&mut params);
        }
        if let Some(base) = &self.public_url {
            if let Some(shard) = crl_shard {
                // RFC 5280 §4.2.1.13; equal to the shard CRL's issuingDistributionPoint.
                params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                    uris: vec![crate::crl_url(base, &issuer.id, shard)],
                }];
            }
            if self.ocsp_in_leaves {
                params
                    .custom_extensions
                    .push(profile::ocsp_access(&crate::ocsp_url(base)));
            }
        }
        let der = params
            .signed_by(&public_key, &issuer.signer)?
            .der()
            .to_vec();

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
                sceau_wire::parse_ari_cert_id(id).is_some_and(|(aki, _)| aki == issuer.key_id)
            })
            .ok_or_else(|| {
                CaError::Signing("the signed certificate lacks the issuer's key identifier".into())
            })?;
        let leaf_pem = pem_encode("CERTIFICATE", &der);
        Ok(Issued {
            chain_pem: leaf_pem.clone() + &issuer.chain_pem,
            alternate_chains: issuer
                .alternate_chains
                .iter()
                .map(|c| leaf_pem.clone() + c)
                .collect(),
            der,
            serial_hex: info.serial_hex,
            not_before: info.not_before,
            not_after: info.not_after,
            ari_id,
            issuer_id: issuer.id.clone(),
        })
    }

    /// TLS certificate for the server's own HTTPS listener, signed by the active issuer, for
    /// DNS names and/or IP addresses. Stored in `dir/server.pem` (leaf and chain) and
    /// `dir/server.key` (0600); reused while it is valid for more than 30 more days, is for the
    /// same names, chains to the active issuer and matches its key; otherwise a new key and
    /// certificate replace them. Returns (chain PEM, PKCS#8 key PEM).
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
        let active = self.active();
        let not_before = (now - profile::CA_BACKDATE).max(active.not_before);
        let not_after = (now + SERVER_TLS_VALIDITY).min(active.not_after);
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let issued = self.sign_leaf(
            &wanted,
            not_before,
            not_after,
            Profile::Server,
            KeyType::EcP256,
            &spki,
            profile::random_serial()?,
            None,
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
        let expected = pem_decode_all(&self.active().chain_pem, "CERTIFICATE");
        if chain.len() != 1 + expected.len() || chain[1..] != expected[..] {
            return Ok(None);
        }
        let leaf = parse_cert(cert_path, &chain[0])?;
        let int = parse_cert(cert_path, &self.active().cert_der)?;
        if leaf.verify_signature(Some(int.public_key())).is_err() {
            return Ok(None);
        }
        let der = pem_decode(&key_pem, "PRIVATE KEY")
            .ok_or_else(|| CaError::corrupt(key_path, "no PEM PRIVATE KEY (PKCS#8) block"))?;
        let pair = KeyPair::try_from(der.as_slice())
            .map_err(|e| CaError::corrupt(key_path, format!("unusable private key: {e}")))?;
        if !key_matches(
            &KeyHandle::new(FileKey::in_memory(pair, "server.key")),
            &leaf,
        ) {
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

/// The OCSP responder certificates' lifetime, and when they are replaced (RFC 6960 §4.2.2.2.1:
/// with id-pkix-ocsp-nocheck a responder certificate should be short-lived).
const OCSP_RESPONDER_VALIDITY: time::Duration = time::Duration::days(30);
const OCSP_RESPONDER_RENEW_BEFORE: time::Duration = time::Duration::days(10);

impl Ca {
    /// Signs a CRL (RFC 5280 §5) with the issuer `req.issuer_id`, active or retired.
    pub fn sign_crl(&self, req: &crate::CrlRequest) -> Result<Vec<u8>, CaError> {
        use rcgen::{
            CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint,
            CrlScope, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
        };
        let issuer = self.issuer(&req.issuer_id)?;
        let reason = |code: u8| -> Result<RevocationReason, CaError> {
            Ok(match code {
                0 => RevocationReason::Unspecified,
                1 => RevocationReason::KeyCompromise,
                2 => RevocationReason::CaCompromise,
                3 => RevocationReason::AffiliationChanged,
                4 => RevocationReason::Superseded,
                5 => RevocationReason::CessationOfOperation,
                6 => RevocationReason::CertificateHold,
                8 => RevocationReason::RemoveFromCrl,
                9 => RevocationReason::PrivilegeWithdrawn,
                10 => RevocationReason::AaCompromise,
                other => {
                    return Err(CaError::InvalidRequest(format!(
                        "revocation reason {other} is not an RFC 5280 §5.3.1 code"
                    )));
                }
            })
        };
        if req.number.is_empty() || req.number.len() > 20 {
            return Err(CaError::InvalidRequest(
                "a cRLNumber has 1 to 20 octets (RFC 5280 §5.2.3)".into(),
            ));
        }
        let params = CertificateRevocationListParams {
            this_update: profile::whole_seconds(req.this_update),
            next_update: profile::whole_seconds(req.next_update),
            crl_number: SerialNumber::from_slice(&req.number),
            issuing_distribution_point: match (req.shard, &self.public_url) {
                (Some(shard), Some(base)) => Some(crate::crl_url(base, &issuer.id, shard)),
                (Some(_), None) => {
                    return Err(CaError::InvalidRequest(
                        "a shard CRL needs the public URL of its distribution point".into(),
                    ));
                }
                (None, _) => None,
            }
            .map(|url| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint { uris: vec![url] },
                scope: Some(CrlScope::UserCertsOnly),
            }),
            revoked_certs: req
                .revoked
                .iter()
                .map(|r| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&r.serial),
                        revocation_time: profile::whole_seconds(r.revoked_at),
                        reason_code: r.reason.map(reason).transpose()?,
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_, CaError>>()?,
            key_identifier_method: KeyIdMethod::PreSpecified(issuer.key_id.clone()),
        };
        Ok(params.signed_by(&issuer.signer)?.der().to_vec())
    }

    fn responder_files(&self, issuer: &LoadedIssuer) -> (PathBuf, PathBuf) {
        let short = &issuer.id[..issuer.id.len().min(16)];
        (
            self.dir.join(format!("ocsp-{short}.pem")),
            self.dir.join(format!("ocsp-{short}.key")),
        )
    }

    /// The issuer's delegated OCSP responder certificate (RFC 6960 §4.2.2.2): EKU
    /// id-kp-OCSPSigning, id-pkix-ocsp-nocheck, 30 days, signed by the issuer; made, or renewed
    /// with a fresh key when it has less than 10 days left. Its key (P-256, 0600) stays here.
    pub fn ocsp_responder(&self, issuer_id: &str) -> Result<Vec<u8>, CaError> {
        let issuer = self.issuer(issuer_id)?;
        let (cert_path, key_path) = self.responder_files(issuer);
        if cert_path.exists() && key_path.exists() {
            let (_, der) = read_cert(&cert_path)?;
            let cert = parse_cert(&cert_path, &der)?;
            let fresh = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc()
                > OCSP_RESPONDER_RENEW_BEFORE;
            let ours = cert
                .verify_signature(Some(parse_cert(&cert_path, &issuer.cert_der)?.public_key()))
                .is_ok();
            if fresh && ours {
                return Ok(der);
            }
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();
        let mut params = rcgen::CertificateParams::default();
        params.not_before =
            profile::whole_seconds((now - profile::CA_BACKDATE).max(issuer.not_before));
        params.not_after =
            profile::whole_seconds((now + OCSP_RESPONDER_VALIDITY).min(issuer.not_after));
        params.serial_number = Some(profile::random_serial()?);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("OCSP responder {}", &issuer.id[..issuer.id.len().min(16)]),
        );
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::OcspSigning];
        // id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1), value NULL.
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5],
                vec![0x05, 0x00],
            ));
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = rcgen::KeyIdMethod::Sha256;
        let cert = params.signed_by(&key, &issuer.signer)?;
        fsutil::write_atomic(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
        fsutil::write_atomic(
            &cert_path,
            pem_encode("CERTIFICATE", cert.der()).as_bytes(),
            CERT_MODE,
        )?;
        tracing::info!(issuer = %issuer.id, "issued an OCSP responder certificate");
        Ok(cert.der().to_vec())
    }

    /// Signs an OCSP `ResponseData` with the issuer's responder key (ecdsa-with-SHA256, a DER
    /// Ecdsa-Sig-Value). The responder certificate must exist ([`Ca::ocsp_responder`]).
    pub fn sign_ocsp(&self, issuer_id: &str, tbs_der: &[u8]) -> Result<Vec<u8>, CaError> {
        let issuer = self.issuer(issuer_id)?;
        let (cert_path, key_path) = self.responder_files(issuer);
        if !cert_path.exists() {
            return Err(CaError::InvalidRequest(format!(
                "issuer {issuer_id} has no OCSP responder certificate yet"
            )));
        }
        let text = fsutil::read_text(&key_path)?;
        let der = pem_decode(&text, "PRIVATE KEY")
            .ok_or_else(|| CaError::corrupt(&key_path, "no PEM PRIVATE KEY (PKCS#8) block"))?;
        let key = KeyPair::try_from(der.as_slice())
            .map_err(|e| CaError::corrupt(&key_path, format!("unusable private key: {e}")))?;
        rcgen::SigningKey::sign(&key, tbs_der).map_err(CaError::from)
    }
}

fn load_issuer(
    dir: &Path,
    entry: &IssuerEntry,
    root: &X509Certificate<'_>,
    root_path: &Path,
) -> Result<LoadedIssuer, CaError> {
    let cert_rel = entry.cert.as_ref().ok_or_else(|| {
        CaError::corrupt(
            Manifest::path(dir),
            format!("issuer {} has no certificate", entry.id),
        )
    })?;
    let cert_path = dir.join(cert_rel);
    let (cert_pem, cert_der) = read_cert(&cert_path)?;
    let cert = parse_cert(&cert_path, &cert_der)?;
    let key = entry.key.open(dir)?;
    if !key_matches(&key, &cert) {
        let at = match &entry.key {
            crate::KeyRef::File(p) => dir.join(p),
            crate::KeyRef::Pkcs11(_) => cert_path.clone(),
        };
        return Err(CaError::corrupt(
            at,
            format!("the key does not match {}", cert_path.display()),
        ));
    }
    // The chain above the issuer (delegated mode): each certificate signed by the next, the
    // last one by the root.
    let above = match &entry.chain {
        Some(c) => read_chain(&dir.join(c))?,
        None => Vec::new(),
    };
    let chain_path = entry.chain.as_ref().map(|c| dir.join(c));
    let mut path: Vec<&[u8]> = vec![&cert_der];
    path.extend(above.iter().map(Vec::as_slice));
    path.push(root.as_raw());
    for (i, pair) in path.windows(2).enumerate() {
        let at = if i == 0 {
            &cert_path
        } else {
            chain_path.as_ref().unwrap_or(&cert_path)
        };
        let child = parse_cert(at, pair[0])?;
        let parent = parse_cert(at, pair[1])?;
        if !child.is_ca()
            || child.issuer() != parent.subject()
            || child.verify_signature(Some(parent.public_key())).is_err()
        {
            let by = if i + 2 == path.len() {
                root_path.display().to_string()
            } else {
                "the next certificate of its chain".to_owned()
            };
            return Err(CaError::corrupt(
                at,
                format!("not a CA certificate signed by {by}"),
            ));
        }
    }
    let key_id = subject_key_id(&cert)
        .ok_or_else(|| CaError::corrupt(&cert_path, "no subjectKeyIdentifier extension"))?;
    if keys::classify_der(cert.public_key().raw).is_err() {
        return Err(CaError::corrupt(
            &cert_path,
            "key algorithm is not p256, p384 or rsa",
        ));
    }
    let mut chain_pem = cert_pem.clone();
    for der in &above {
        chain_pem += &pem_encode("CERTIFICATE", der);
    }
    let mut alternate_chains = Vec::new();
    for alt in &entry.alternates {
        let alt_path = dir.join(alt);
        let certs = read_chain(&alt_path)?;
        check_alternate(&alt_path, &certs, &cert, &key_id)?;
        alternate_chains.push(
            certs
                .iter()
                .map(|d| pem_encode("CERTIFICATE", d))
                .collect::<String>(),
        );
    }
    let signer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key.clone())
        .map_err(|e| CaError::corrupt(&cert_path, format!("unusable as issuer: {e}")))?;
    Ok(LoadedIssuer {
        id: entry.id.clone(),
        state: entry.state,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        cert_pem,
        cert_der: cert_der.clone(),
        chain_pem,
        alternate_chains,
        key_id,
        key,
        signer,
    })
}

/// An alternate chain (what follows a leaf, for a cross-signed issuer) fits the issuer: its
/// first certificate is for the issuer's key, under the issuer's name and key identifier (the
/// leaves' issuer name and AKI point at it as well), and each certificate is a CA signed by
/// the next. Its root is not in the file: a client has it in its trust store.
fn check_alternate(
    path: &Path,
    certs: &[Vec<u8>],
    issuer: &X509Certificate<'_>,
    key_id: &[u8],
) -> Result<(), CaError> {
    let Some(first) = certs.first() else {
        return Err(CaError::corrupt(
            path,
            "an alternate chain holds no certificate",
        ));
    };
    let first = parse_cert(path, first)?;
    if first.public_key().raw != issuer.public_key().raw
        || first.subject() != issuer.subject()
        || subject_key_id(&first).as_deref() != Some(key_id)
    {
        return Err(CaError::corrupt(
            path,
            "its first certificate is not for the issuer's key, name and key identifier",
        ));
    }
    for pair in certs.windows(2) {
        let child = parse_cert(path, &pair[0])?;
        let parent = parse_cert(path, &pair[1])?;
        if !child.is_ca()
            || child.issuer() != parent.subject()
            || child.verify_signature(Some(parent.public_key())).is_err()
        {
            return Err(CaError::corrupt(
                path,
                "not a chain of CA certificates, each signed by the next",
            ));
        }
    }
    Ok(())
}

/// The issuer id of a key identifier: its lowercase hex.
pub(crate) fn issuer_id(key_id: &[u8]) -> String {
    hex_lower(key_id)
}
