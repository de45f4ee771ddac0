//! Private keys held by clients: ACME account keys and certificate keys, generated from the
//! OS CSPRNG through aws-lc-rs (R65), stored as PKCS#8 PEM.
//!
//! Invariant: an [`AccountKey`] always knows its algorithm; the JWK it publishes is derived
//! from the private key, never stored separately.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;

use crate::b64;
use crate::jwk::Jwk;
use crate::jws::Alg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    P256,
    P384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyKind {
    pub const ALL: [KeyKind; 6] = [
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::Ed25519,
        KeyKind::Rsa2048,
        KeyKind::Rsa3072,
        KeyKind::Rsa4096,
    ];

    /// The spelling used on command lines and in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::P256 => "p256",
            KeyKind::P384 => "p384",
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Rsa2048 => "rsa2048",
            KeyKind::Rsa3072 => "rsa3072",
            KeyKind::Rsa4096 => "rsa4096",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase().replace(['-', '_'], "");
        let n = match n.as_str() {
            "ec256" | "prime256v1" | "secp256r1" | "es256" => "p256",
            "ec384" | "secp384r1" | "es384" => "p384",
            "rsa" => "rsa2048",
            other => other,
        };
        Self::ALL.into_iter().find(|k| k.name() == n)
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("not a PKCS#8 private key of a supported type (P-256, P-384, Ed25519, RSA)")]
    Unsupported,
    #[error("not a PEM \"PRIVATE KEY\" block")]
    Pem,
    #[error("signing failed")]
    Sign,
}

pub enum AccountKey {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "AccountKey({})", self.alg().name())
    }
}

impl AccountKey {
    pub fn generate(kind: KeyKind) -> Result<Self, KeyError> {
        let g = |_| KeyError::Generate;
        Ok(match kind {
            KeyKind::P256 => AccountKey::P256(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).map_err(g)?,
            ),
            KeyKind::P384 => AccountKey::P384(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).map_err(g)?,
            ),
            KeyKind::Ed25519 => AccountKey::Ed25519(Ed25519KeyPair::generate().map_err(g)?),
            KeyKind::Rsa2048 => {
                AccountKey::Rsa(aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(g)?)
            }
            KeyKind::Rsa3072 => {
                AccountKey::Rsa(aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa3072).map_err(g)?)
            }
            KeyKind::Rsa4096 => {
                AccountKey::Rsa(aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa4096).map_err(g)?)
            }
        })
    }

    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Ok(AccountKey::P256(k));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            return Ok(AccountKey::P384(k));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(AccountKey::Ed25519(k));
        }
        if let Ok(k) = aws_lc_rs::rsa::KeyPair::from_pkcs8(der) {
            return Ok(AccountKey::Rsa(k));
        }
        Err(KeyError::Unsupported)
    }

    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        Self::from_pkcs8_der(&pem_decode(text, "PRIVATE KEY").ok_or(KeyError::Pem)?)
    }

    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        let doc = match self {
            AccountKey::P256(k) | AccountKey::P384(k) => {
                k.to_pkcs8v1().map(|d| d.as_ref().to_vec())
            }
            AccountKey::Ed25519(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            AccountKey::Rsa(k) => AsDer::<Pkcs8V1Der>::as_der(k).map(|d| d.as_ref().to_vec()),
        };
        doc.expect("a key that was loaded can be serialised")
    }

    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.to_pkcs8_der())
    }

    pub fn kind(&self) -> KeyKind {
        match self {
            AccountKey::P256(_) => KeyKind::P256,
            AccountKey::P384(_) => KeyKind::P384,
            AccountKey::Ed25519(_) => KeyKind::Ed25519,
            AccountKey::Rsa(k) => match k.public_modulus_len() * 8 {
                0..=2048 => KeyKind::Rsa2048,
                2049..=3072 => KeyKind::Rsa3072,
                _ => KeyKind::Rsa4096,
            },
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            AccountKey::P256(_) => Alg::Es256,
            AccountKey::P384(_) => Alg::Es384,
            AccountKey::Ed25519(_) => Alg::EdDsa,
            AccountKey::Rsa(_) => Alg::Rs256,
        }
    }

    pub fn jwk(&self) -> Jwk {
        match self {
            AccountKey::P256(k) | AccountKey::P384(k) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                Jwk::Ec {
                    crv: if half == 32 { "P-256" } else { "P-384" }.to_owned(),
                    x: b64::encode(&point[1..1 + half]),
                    y: b64::encode(&point[1 + half..]),
                }
            }
            AccountKey::Ed25519(k) => Jwk::Okp {
                crv: "Ed25519".into(),
                x: b64::encode(k.public_key().as_ref()),
            },
            AccountKey::Rsa(k) => {
                let public = k.public_key();
                Jwk::Rsa {
                    n: b64::encode(public.modulus().big_endian_without_leading_zero()),
                    e: b64::encode(public.exponent().big_endian_without_leading_zero()),
                }
            }
        }
    }

    /// A JWS signature in the JOSE format: fixed-width r||s for ECDSA (RFC 7518 §3.4).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match self {
            AccountKey::P256(k) | AccountKey::P384(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            AccountKey::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            AccountKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
        }
    }
}

/// Encodes one PEM block with 64-column lines (RFC 7468 §2).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the first PEM block with `label`.
pub fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    pem_decode_all(text, label).into_iter().next()
}

/// Decodes every PEM block with `label`, in order (a certificate chain, say).
pub fn pem_decode_all(text: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let Some(stop) = after.find(&end) else { break };
        let body: String = after[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        match base64::engine::general_purpose::STANDARD.decode(body) {
            Ok(der) => out.push(der),
            Err(_) => break,
        }
        rest = &after[stop + end.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key() {
        for kind in [
            KeyKind::P256,
            KeyKind::P384,
            KeyKind::Ed25519,
            KeyKind::Rsa2048,
        ] {
            let key = AccountKey::generate(kind).unwrap();
            let pem = key.to_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let back = AccountKey::from_pem(&pem).unwrap();
            assert_eq!(back.kind(), kind);
            assert_eq!(back.jwk(), key.jwk());
        }
        assert!(matches!(
            AccountKey::from_pem("nothing"),
            Err(KeyError::Pem)
        ));
    }

    #[test]
    fn fresh_keys_differ() {
        let a = AccountKey::generate(KeyKind::P256).unwrap();
        let b = AccountKey::generate(KeyKind::P256).unwrap();
        assert_ne!(a.jwk(), b.jwk());
    }

    #[test]
    fn names() {
        assert_eq!(KeyKind::from_name("P-256"), Some(KeyKind::P256));
        assert_eq!(KeyKind::from_name("rsa4096"), Some(KeyKind::Rsa4096));
        assert_eq!(KeyKind::from_name("dsa"), None);
    }
}
