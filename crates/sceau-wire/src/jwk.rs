//! JSON Web Keys (RFC 7517/7518) for the account key types ACME clients use, their RFC 7638
//! thumbprints, and signature verification with them.
//!
//! Invariants:
//! - A [`Jwk`] is only ever read through [`Jwk::from_value`] (its `Deserialize` goes there too),
//!   so a JWK with a private-key member (RFC 7517 §4, RFC 7518 §6.2.2, §6.3.2, §6.4.1, RFC 8037
//!   §2) or without a member its `kty` requires never becomes one: a client that sends its
//!   private key is told so instead of having it silently dropped.
//! - A [`Jwk`] that passes [`Jwk::validate`] has coordinates of the curve's exact length and an
//!   RSA modulus of at least 2048 bits, so key comparisons by thumbprint are sound.

use aws_lc_rs::{digest, signature};
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::jws::Alg;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty", try_from = "serde_json::Value")]
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
    #[error(
        "the JWK carries the private-key member {0:?}; send the public key only (RFC 7517 §4, RFC 7518 §6)"
    )]
    PrivateMember(&'static str),
}

/// Members that hold private or symmetric key material: EC and OKP `d` (RFC 7518 §6.2.2,
/// RFC 8037 §2), RSA `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth` (RFC 7518 §6.3.2), `oct` `k`
/// (RFC 7518 §6.4.1).
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl TryFrom<serde_json::Value> for Jwk {
    type Error = JwkError;

    fn try_from(value: serde_json::Value) -> Result<Self, JwkError> {
        Jwk::from_value(value)
    }
}

/// Smallest RSA modulus accepted for account keys (CA/B BR §6.1.5 and R38's key sizes).
pub const MIN_RSA_BITS: usize = 2048;

impl Jwk {
    /// Reads a public JWK (RFC 7517 §4): a JSON object with a string `kty`, the members that
    /// `kty` requires as strings (RFC 7518 §6.2.1, §6.3.1; RFC 8037 §2), and no private-key
    /// member. Other members (`use`, `alg`, `kid`, ...) are ignored, as RFC 7517 §4 asks.
    /// Curve names and lengths are [`Jwk::validate`]'s job.
    pub fn from_value(value: serde_json::Value) -> Result<Jwk, JwkError> {
        let serde_json::Value::Object(mut members) = value else {
            return Err(JwkError::Malformed("a JWK must be a JSON object".into()));
        };
        if let Some(private) = PRIVATE_MEMBERS
            .into_iter()
            .find(|m| members.contains_key(*m))
        {
            return Err(JwkError::PrivateMember(private));
        }
        let kty = match members.remove("kty") {
            Some(serde_json::Value::String(kty)) => kty,
            Some(_) => return Err(JwkError::Malformed("\"kty\" must be a string".into())),
            None => {
                return Err(JwkError::Malformed(
                    "the JWK has no \"kty\" (RFC 7517 §4.1)".into(),
                ));
            }
        };
        let (required, section): (&[&str], &str) = match kty.as_str() {
            "EC" => (&["crv", "x", "y"], "RFC 7518 §6.2.1"),
            "RSA" => (&["n", "e"], "RFC 7518 §6.3.1"),
            "OKP" => (&["crv", "x"], "RFC 8037 §2"),
            other => {
                return Err(JwkError::Unsupported(format!(
                    "key type {other:?} (EC, RSA or OKP expected)"
                )));
            }
        };
        let mut values = Vec::with_capacity(required.len());
        for name in required {
            match members.remove(*name) {
                Some(serde_json::Value::String(v)) => values.push(v),
                Some(_) => {
                    return Err(JwkError::Malformed(format!(
                        "{kty} JWK member {name:?} must be a string"
                    )));
                }
                None => {
                    return Err(JwkError::Malformed(format!(
                        "{kty} JWK has no {name:?}; it needs {} ({section})",
                        required
                            .iter()
                            .map(|r| format!("{r:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        let mut values = values.into_iter();
        let mut next = || values.next().expect("one value per required member");
        Ok(match kty.as_str() {
            "EC" => Jwk::Ec {
                crv: next(),
                x: next(),
                y: next(),
            },
            "RSA" => Jwk::Rsa {
                n: next(),
                e: next(),
            },
            _ => Jwk::Okp {
                crv: next(),
                x: next(),
            },
        })
    }

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

    #[test]
    fn private_members_and_missing_members_are_refused() {
        let public = serde_json::to_value(
            crate::AccountKey::generate(crate::KeyKind::P256)
                .unwrap()
                .jwk(),
        )
        .unwrap();
        let jwk = Jwk::from_value(public.clone()).unwrap();
        assert_eq!(serde_json::from_value::<Jwk>(public.clone()).unwrap(), jwk);
        // Members RFC 7517 §4 defines for public keys are ignored.
        let mut with_use = public.clone();
        with_use["use"] = "sig".into();
        with_use["kid"] = "k1".into();
        assert_eq!(Jwk::from_value(with_use).unwrap(), jwk);

        for private in PRIVATE_MEMBERS {
            let mut v = public.clone();
            v[private] = "AAAA".into();
            assert_eq!(
                Jwk::from_value(v.clone()),
                Err(JwkError::PrivateMember(private))
            );
            // Every path that reads a JWK refuses it, serde included.
            let e = serde_json::from_value::<Jwk>(v).unwrap_err().to_string();
            assert!(e.contains("private-key member"), "{e}");
        }
        for (kty, missing) in [("EC", "y"), ("EC", "crv"), ("RSA", "e"), ("OKP", "x")] {
            let mut v = serde_json::json!({"kty": kty, "crv": "P-256", "x": "AA", "y": "AA", "n": "AA", "e": "AQAB"});
            v.as_object_mut().unwrap().remove(missing);
            let e = Jwk::from_value(v).unwrap_err();
            assert!(
                matches!(e, JwkError::Malformed(_)),
                "{kty} without {missing}: {e}"
            );
            assert!(e.to_string().contains(missing), "{e}");
        }
        for bad in [
            serde_json::json!({"crv": "P-256", "x": "AA", "y": "AA"}),
            serde_json::json!({"kty": 1, "crv": "P-256", "x": "AA", "y": "AA"}),
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": 5, "y": "AA"}),
            serde_json::json!({"kty": "oct", "alg": "HS256"}),
            serde_json::json!(["EC"]),
        ] {
            assert!(Jwk::from_value(bad.clone()).is_err(), "{bad}");
        }
    }
}
