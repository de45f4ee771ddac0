//! JSON Web Keys (RFC 7517/7518) for the account key types ACME clients use, their RFC 7638
//! thumbprints, and signature verification with them.
//!
//! Invariant: a [`Jwk`] that passes [`Jwk::validate`] has coordinates of the curve's exact
//! length and an RSA modulus of at least 2048 bits, so key comparisons by thumbprint are sound.

use aws_lc_rs::{digest, signature};
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::jws::Alg;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum Jwk {
    #[serde(rename = "EC")]
    Ec { crv: String, x: String, y: String },
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
    #[serde(rename = "OKP")]
    Okp { crv: String, x: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("malformed key: {0}")]
    Malformed(String),
}

/// Smallest RSA modulus accepted for account keys (CA/B BR §6.1.5 and R38's key sizes).
pub const MIN_RSA_BITS: usize = 2048;

impl Jwk {
    /// Checks curve names, coordinate lengths and RSA size; errors name what is wrong.
    pub fn validate(&self) -> Result<(), JwkError> {
        let field = |name: &str, v: &str| {
            b64::decode(v).map_err(|_| JwkError::Malformed(format!("{name} is not base64url")))
        };
        match self {
            Jwk::Ec { crv, x, y } => {
                let len = match crv.as_str() {
                    "P-256" => 32,
                    "P-384" => 48,
                    other => return Err(JwkError::Unsupported(format!("curve {other}"))),
                };
                if field("x", x)?.len() != len || field("y", y)?.len() != len {
                    return Err(JwkError::Malformed(format!(
                        "{crv} coordinates must be {len} bytes"
                    )));
                }
            }
            Jwk::Rsa { n, e } => {
                let n = field("n", n)?;
                let e = field("e", e)?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < MIN_RSA_BITS {
                    return Err(JwkError::Unsupported(format!(
                        "RSA modulus of {bits} bits, at least {MIN_RSA_BITS} required"
                    )));
                }
                if e.is_empty() || e.len() > 8 {
                    return Err(JwkError::Malformed("RSA exponent".into()));
                }
            }
            Jwk::Okp { crv, x } => {
                if crv != "Ed25519" {
                    return Err(JwkError::Unsupported(format!("OKP curve {crv}")));
                }
                if field("x", x)?.len() != 32 {
                    return Err(JwkError::Malformed("Ed25519 key must be 32 bytes".into()));
                }
            }
        }
        Ok(())
    }

    /// The RFC 7638 §3 input: the required members only, in lexicographic order, no spaces.
    pub fn thumbprint_input(&self) -> String {
        match self {
            Jwk::Ec { crv, x, y } => format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#),
            Jwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            Jwk::Okp { crv, x } => format!(r#"{{"crv":"{crv}","kty":"OKP","x":"{x}"}}"#),
        }
    }

    /// base64url(SHA-256(thumbprint input)) (RFC 7638 §3), as used in key authorizations.
    pub fn thumbprint(&self) -> String {
        b64::encode(digest::digest(
            &digest::SHA256,
            self.thumbprint_input().as_bytes(),
        ))
    }

    /// The algorithms this key may sign with (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn allows(&self, alg: Alg) -> bool {
        match (self, alg) {
            (Jwk::Ec { crv, .. }, Alg::Es256) => crv == "P-256",
            (Jwk::Ec { crv, .. }, Alg::Es384) => crv == "P-384",
            (Jwk::Rsa { .. }, Alg::Rs256) => true,
            (Jwk::Okp { crv, .. }, Alg::EdDsa) => crv == "Ed25519",
            _ => false,
        }
    }

    /// Verifies `signature` over `message` made with `alg` by this key.
    pub fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> Result<(), JwkError> {
        if !self.allows(alg) {
            return Err(JwkError::Unsupported(format!(
                "{} with this key type",
                alg.name()
            )));
        }
        self.validate()?;
        let bad = |_| JwkError::Malformed("signature does not verify".into());
        match self {
            Jwk::Ec { x, y, .. } => {
                let mut point = vec![4u8];
                point.extend(b64::decode(x).unwrap_or_default());
                point.extend(b64::decode(y).unwrap_or_default());
                let algo: &dyn signature::VerificationAlgorithm = match alg {
                    Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                    _ => &signature::ECDSA_P384_SHA384_FIXED,
                };
                signature::UnparsedPublicKey::new(algo, &point)
                    .verify(message, sig)
                    .map_err(bad)
            }
            Jwk::Rsa { n, e } => {
                let components = signature::RsaPublicKeyComponents {
                    n: b64::decode(n).unwrap_or_default(),
                    e: b64::decode(e).unwrap_or_default(),
                };
                components
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                    .map_err(bad)
            }
            Jwk::Okp { x, .. } => {
                let key = b64::decode(x).unwrap_or_default();
                signature::UnparsedPublicKey::new(&signature::ED25519, &key)
                    .verify(message, sig)
                    .map_err(bad)
            }
        }
    }

    /// The SubjectPublicKeyInfo-independent raw public key bytes, for comparing a JWK with the
    /// key of a certificate: the uncompressed point for EC, the modulus for RSA, the key for OKP.
    pub fn raw_public_key(&self) -> Vec<u8> {
        match self {
            Jwk::Ec { x, y, .. } => {
                let mut point = vec![4u8];
                point.extend(b64::decode(x).unwrap_or_default());
                point.extend(b64::decode(y).unwrap_or_default());
                point
            }
            Jwk::Rsa { n, .. } => {
                let n = b64::decode(n).unwrap_or_default();
                n.into_iter().skip_while(|b| *b == 0).collect()
            }
            Jwk::Okp { x, .. } => b64::decode(x).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's worked example.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = Jwk::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        jwk.validate().unwrap();
    }

    #[test]
    fn refuses_short_rsa_and_odd_curves() {
        let short = Jwk::Rsa {
            n: b64::encode([0xffu8; 128]),
            e: "AQAB".into(),
        };
        assert!(matches!(short.validate(), Err(JwkError::Unsupported(_))));
        let p521 = Jwk::Ec {
            crv: "P-521".into(),
            x: "AA".into(),
            y: "AA".into(),
        };
        assert!(p521.validate().is_err());
        let bad_len = Jwk::Ec {
            crv: "P-256".into(),
            x: b64::encode([1u8; 31]),
            y: b64::encode([1u8; 32]),
        };
        assert!(bad_len.validate().is_err());
    }
}
