//! The CA's own signing keys, wherever they live: a PKCS#8 file, or a PKCS#11 token (HSM).
//! Everything the CA signs (certificates, CRLs, OCSP responses) goes through [`KeyHandle`], so
//! a file key and a token key are interchangeable.
//!
//! Invariants:
//! - A [`KeyHandle`] never exposes private key material: only its public key, its algorithm,
//!   signatures, and where it lives ([`KeyRef`], a path or an RFC 7512 URI without PIN).
//! - Signatures are in the form X.509 and CRLs carry: ECDSA as a DER `Ecdsa-Sig-Value`
//!   (RFC 5480 §2.2 / RFC 3279 §2.2.3), RSA as PKCS#1 v1.5 with SHA-256 (RFC 8017 §8.2).
//! - Key files are written 0600, atomically, and never overwritten.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, RsaKeySize,
    SignatureAlgorithm,
};
use sceau_wire::key::{pem_decode, pem_encode};
use serde::{Deserialize, Serialize};

use crate::fsutil::{self, KEY_MODE};
use crate::{CaError, CaKeyKind};

/// A CA signing key.
pub trait CaKey: Send + Sync {
    /// The signature algorithm this key makes (rcgen's view, which also names the key type).
    fn algorithm(&self) -> &'static SignatureAlgorithm;
    /// The subjectPublicKey BIT STRING contents: the EC point, or the RSAPublicKey DER.
    fn public_key(&self) -> &[u8];
    /// Signs `message` (the hash is computed here or by the token).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError>;
    /// Where the key lives, for logs and `ca show`.
    fn key_ref(&self) -> KeyRef;
}

/// A shareable handle on a [`CaKey`], usable wherever rcgen wants a signing key.
#[derive(Clone)]
pub struct KeyHandle(Arc<dyn CaKey>);

impl KeyHandle {
    pub fn new(key: impl CaKey + 'static) -> Self {
        KeyHandle(Arc::new(key))
    }

    pub fn kind(&self) -> Option<CaKeyKind> {
        let alg = self.0.algorithm();
        if alg == &PKCS_ECDSA_P256_SHA256 {
            Some(CaKeyKind::P256)
        } else if alg == &PKCS_ECDSA_P384_SHA384 {
            Some(CaKeyKind::P384)
        } else if alg == &PKCS_RSA_SHA256 {
            // The modulus size tells 3072 from 4096: RSAPublicKey ::= SEQUENCE { n, e }.
            let bits = rsa_modulus_bits(self.0.public_key())?;
            match bits {
                3072 => Some(CaKeyKind::Rsa3072),
                4096 => Some(CaKeyKind::Rsa4096),
                _ => None,
            }
        } else {
            None
        }
    }

    pub fn key_ref(&self) -> KeyRef {
        self.0.key_ref()
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        self.0.sign(message)
    }

    /// The SubjectPublicKeyInfo DER of this key.
    pub fn spki_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(self)
    }
}

impl std::fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KeyHandle").field(&self.0.key_ref()).finish()
    }
}

impl rcgen::PublicKeyData for KeyHandle {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl rcgen::SigningKey for KeyHandle {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen's error type has no room for ours; the cause is logged where it is known.
        self.0.sign(msg).map_err(|e| {
            tracing::error!(key = %self.0.key_ref(), error = %e, "CA key failed to sign");
            rcgen::Error::RemoteKeyError
        })
    }
}

fn rsa_modulus_bits(rsa_public_key_der: &[u8]) -> Option<usize> {
    use x509_parser::der_parser::ber::BerObjectContent;
    let (_, seq) = x509_parser::der_parser::parse_der(rsa_public_key_der).ok()?;
    let BerObjectContent::Sequence(items) = seq.content else {
        return None;
    };
    let n = items.first()?.as_slice().ok()?;
    Some(crate::keys::bit_len(n))
}

/// Where a CA key lives: a PKCS#8 PEM file (relative paths are inside the data directory), or
/// an RFC 7512 `pkcs11:` URI naming a key object on a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRef {
    File(PathBuf),
    Pkcs11(String),
}

impl std::fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::File(p) => f.debug_tuple("File").field(p).finish(),
            // Debug output ends up in logs and panics too: the same redaction as Display.
            KeyRef::Pkcs11(uri) => f
                .debug_tuple("Pkcs11")
                .field(&crate::pkcs11::redacted_uri(uri))
                .finish(),
        }
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::File(p) => write!(f, "file {}", p.display()),
            // A URI may carry `pin-value`: never print it.
            KeyRef::Pkcs11(uri) => f.write_str(&crate::pkcs11::redacted_uri(uri)),
        }
    }
}

impl KeyRef {
    /// `pkcs11:…` is a token key, anything else a file path.
    pub fn parse(text: &str) -> KeyRef {
        if text.starts_with("pkcs11:") {
            KeyRef::Pkcs11(text.to_owned())
        } else {
            KeyRef::File(PathBuf::from(text))
        }
    }

    fn path_in(&self, data_dir: &Path) -> Option<PathBuf> {
        match self {
            KeyRef::File(p) if p.is_relative() => Some(data_dir.join(p)),
            KeyRef::File(p) => Some(p.clone()),
            KeyRef::Pkcs11(_) => None,
        }
    }

    /// Whether the key is present (file) or assumed present (token: checked when opened).
    pub fn exists(&self, data_dir: &Path) -> Result<bool, CaError> {
        match self.path_in(data_dir) {
            Some(p) => p.try_exists().map_err(|e| CaError::io(&p, e)),
            None => Ok(true),
        }
    }

    /// Opens the key for signing.
    pub fn open(&self, data_dir: &Path) -> Result<KeyHandle, CaError> {
        match self {
            KeyRef::File(_) => {
                let path = self.path_in(data_dir).expect("file key");
                Ok(KeyHandle::new(FileKey::read(&path, self.clone())?))
            }
            KeyRef::Pkcs11(uri) => crate::pkcs11::open_key(uri),
        }
    }

    /// Makes a new key of `kind` here: a 0600 file that must not exist yet, or a key pair
    /// generated on the token, never extractable.
    pub fn generate(&self, data_dir: &Path, kind: CaKeyKind) -> Result<KeyHandle, CaError> {
        match self {
            KeyRef::File(_) => {
                let path = self.path_in(data_dir).expect("file key");
                if path.try_exists().map_err(|e| CaError::io(&path, e))? {
                    return Err(CaError::corrupt(
                        &path,
                        "exists already; a CA key is never overwritten",
                    ));
                }
                let pair = generate_pair(kind)?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fsutil::ensure_dir(dir)?;
                }
                fsutil::write_atomic(&path, pair.serialize_pem().as_bytes(), KEY_MODE)?;
                Ok(KeyHandle::new(FileKey {
                    pair,
                    at: self.clone(),
                }))
            }
            KeyRef::Pkcs11(uri) => crate::pkcs11::generate_key(uri, kind),
        }
    }
}

pub(crate) fn generate_pair(kind: CaKeyKind) -> Result<KeyPair, CaError> {
    Ok(match kind {
        CaKeyKind::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        CaKeyKind::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?,
        CaKeyKind::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072)?,
        CaKeyKind::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096)?,
    })
}

/// A key in a PKCS#8 PEM file, held in this process's memory.
pub struct FileKey {
    pair: KeyPair,
    at: KeyRef,
}

impl FileKey {
    fn read(path: &Path, at: KeyRef) -> Result<FileKey, CaError> {
        let text = fsutil::read_text(path)?;
        let der = pem_decode(&text, "PRIVATE KEY")
            .ok_or_else(|| CaError::corrupt(path, "no PEM PRIVATE KEY (PKCS#8) block"))?;
        let pair = KeyPair::try_from(der.as_slice())
            .map_err(|e| CaError::corrupt(path, format!("unusable private key: {e}")))?;
        Ok(FileKey { pair, at })
    }

    /// A key pair made in memory (the server's own TLS key, tests).
    pub fn in_memory(pair: KeyPair, label: &str) -> FileKey {
        FileKey {
            pair,
            at: KeyRef::File(PathBuf::from(label)),
        }
    }

    /// The PKCS#8 PEM, for writing the key elsewhere (`ca init --root-key-out`).
    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pair.serialize_der())
    }
}

impl CaKey for FileKey {
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.pair.algorithm()
    }

    fn public_key(&self) -> &[u8] {
        rcgen::PublicKeyData::der_bytes(&self.pair)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        rcgen::SigningKey::sign(&self.pair, message).map_err(CaError::from)
    }

    fn key_ref(&self) -> KeyRef {
        self.at.clone()
    }
}
