//! Which subject public keys the CA certifies (R37/R38, CA/B BR §6.1.5): ECDSA P-256 and
//! P-384 (uncompressed points), RSA 2048..=8192 bits with a modulus that is a whole number of
//! octets, Ed25519 (RFC 8410). The key itself is also checked by aws-lc (point on the curve,
//! well-formed RSA key), so a certificate never carries a key nobody can use.

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use x509_parser::asn1_rs::Tag;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

pub(crate) const RSA_MIN_BITS: usize = 2048;
pub(crate) const RSA_MAX_BITS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    EcP256,
    EcP384,
    Rsa { bits: usize },
    Ed25519,
}

impl KeyType {
    pub(crate) fn description(self) -> String {
        match self {
            KeyType::EcP256 => "ECDSA P-256".into(),
            KeyType::EcP384 => "ECDSA P-384".into(),
            KeyType::Rsa { bits } => format!("RSA {bits}"),
            KeyType::Ed25519 => "Ed25519".into(),
        }
    }

    pub(crate) fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    /// An RSA key below [`RSA_MIN_BITS`].
    Weak { bits: usize },
    /// A key type, curve or size the CA does not certify.
    Unsupported(String),
    /// Not a well-formed key of its declared type.
    Malformed(String),
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Weak { bits } => {
                write!(f, "RSA {bits} is too weak (minimum {RSA_MIN_BITS})")
            }
            KeyProblem::Unsupported(what) => write!(f, "{what} is not accepted"),
            KeyProblem::Malformed(what) => f.write_str(what),
        }
    }
}

/// Bit length of a big-endian unsigned integer.
pub(crate) fn bit_len(be: &[u8]) -> usize {
    let trimmed: &[u8] = match be.iter().position(|b| *b != 0) {
        Some(i) => &be[i..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

pub(crate) fn classify_der(spki_der: &[u8]) -> Result<KeyType, KeyProblem> {
    match SubjectPublicKeyInfo::from_der(spki_der) {
        Ok(([], spki)) => classify(&spki),
        Ok(_) => Err(KeyProblem::Malformed(
            "trailing bytes after the SubjectPublicKeyInfo".into(),
        )),
        Err(e) => Err(KeyProblem::Malformed(format!(
            "SubjectPublicKeyInfo does not parse: {e}"
        ))),
    }
}

pub(crate) fn classify(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, KeyProblem> {
    let alg = &spki.algorithm;
    let key = spki.subject_public_key.data.as_ref();
    if spki.subject_public_key.unused_bits != 0 {
        return Err(KeyProblem::Malformed(
            "public key BIT STRING has unused bits".into(),
        ));
    }
    let check = |verifier: &'static dyn VerificationAlgorithm, what: &str| {
        ParsedPublicKey::new(verifier, key)
            .map(|_| ())
            .map_err(|e| KeyProblem::Malformed(format!("{what} public key rejected: {e}")))
    };
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        // RFC 5480 §2.1.1: parameters is the namedCurve OID.
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
        let Some(curve) = curve else {
            return Err(KeyProblem::Malformed("EC key without a named curve".into()));
        };
        let (kind, len, verifier): (_, usize, &'static dyn VerificationAlgorithm) =
            if curve == OID_EC_P256 {
                (KeyType::EcP256, 65, &signature::ECDSA_P256_SHA256_ASN1)
            } else if curve == OID_NIST_EC_P384 {
                (KeyType::EcP384, 97, &signature::ECDSA_P384_SHA384_ASN1)
            } else {
                return Err(KeyProblem::Unsupported(format!("elliptic curve {curve}")));
            };
        if key.len() != len || key[0] != 4 {
            return Err(KeyProblem::Malformed(format!(
                "{} key is not an uncompressed point",
                kind.description()
            )));
        }
        check(verifier, "EC")?;
        return Ok(kind);
    }
    if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        // RFC 3279 §2.3.1: parameters NULL.
        if alg
            .parameters
            .as_ref()
            .is_some_and(|p| p.tag() != Tag::Null)
        {
            return Err(KeyProblem::Malformed(
                "rsaEncryption parameters are not NULL".into(),
            ));
        }
        let parsed = spki
            .parsed()
            .map_err(|e| KeyProblem::Malformed(format!("RSA key does not parse: {e}")))?;
        let x509_parser::public_key::PublicKey::RSA(rsa) = parsed else {
            return Err(KeyProblem::Malformed("RSA key does not parse".into()));
        };
        let bits = bit_len(rsa.modulus);
        if bits < RSA_MIN_BITS {
            return Err(KeyProblem::Weak { bits });
        }
        if bits > RSA_MAX_BITS {
            return Err(KeyProblem::Unsupported(format!(
                "RSA {bits} (largest accepted: {RSA_MAX_BITS})"
            )));
        }
        if !bits.is_multiple_of(8) {
            return Err(KeyProblem::Unsupported(format!(
                "RSA {bits} (the modulus size must be a multiple of 8 bits)"
            )));
        }
        check(&signature::RSA_PKCS1_2048_8192_SHA256, "RSA")?;
        return Ok(KeyType::Rsa { bits });
    }
    if alg.algorithm == OID_SIG_ED25519 {
        // RFC 8410 §3: parameters absent.
        if alg.parameters.is_some() || key.len() != 32 {
            return Err(KeyProblem::Malformed(
                "Ed25519 key is not 32 octets without parameters".into(),
            ));
        }
        check(&signature::ED25519, "Ed25519")?;
        return Ok(KeyType::Ed25519);
    }
    Err(KeyProblem::Unsupported(format!(
        "public key algorithm {}",
        alg.algorithm
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x01, 0]), 9);
        assert_eq!(bit_len(&[0, 0]), 0);
    }
}
