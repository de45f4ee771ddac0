//! Message protection (RFC 4210 §5.1.3): password-based MAC (PBM, §5.1.3.1) and signatures
//! (§5.1.3.3), over the DER of ProtectedPart ::= SEQUENCE { header, body }.
//!
//! Invariants:
//! - Requests are PBM-protected with SHA-256 as one-way function and HMAC-SHA256 (RFC 9481
//!   §6.1.1), a fresh 16-octet salt per message; or signed with ECDSA/RSA and SHA-256 or
//!   SHA-384 (RFC 9481 §3).
//! - A response is accepted only with a protection that verifies: a PBM with the configured
//!   secret, or a signature by one of the configured upstream certificates. An iteration count
//!   above [`MAX_ITERATIONS`] is refused before any hashing (a response cannot make us spin).
//! - MACs are compared in constant time (aws-lc-rs `hmac::verify`).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hmac, signature};
use sceau_wire::der;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::asn1::{AlgId, Tlv, tag};
use crate::error::{CmpError, ProtectionError};

/// The most PBM iterations a response may ask us to compute (OpenSSL's own cap,
/// OSSL_CRMF_PBM_MAX_ITERATION_COUNT, is the same).
pub const MAX_ITERATIONS: i64 = 100_000;

/// Object identifiers used here, by their arcs (the `oid_*` functions give their DER).
pub(crate) mod oids {
    /// PasswordBasedMac, RFC 4210 §5.1.3.1.
    pub const PBM: &[u64] = &[1, 2, 840, 113533, 7, 66, 13];
    pub const SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
    pub const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
    pub const SHA384: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 2];
    pub const SHA512: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 3];
    /// hmac-sha1 of RFC 2104 / RFC 4210 Appendix D.2 (what OpenSSL's mock server uses).
    pub const HMAC_SHA1_IPSEC: &[u64] = &[1, 3, 6, 1, 5, 5, 8, 1, 2];
    pub const HMAC_WITH_SHA1: &[u64] = &[1, 2, 840, 113549, 2, 7];
    pub const HMAC_WITH_SHA256: &[u64] = &[1, 2, 840, 113549, 2, 9];
    pub const HMAC_WITH_SHA384: &[u64] = &[1, 2, 840, 113549, 2, 10];
    pub const HMAC_WITH_SHA512: &[u64] = &[1, 2, 840, 113549, 2, 11];
    pub const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
    pub const ECDSA_SHA384: &[u64] = &[1, 2, 840, 10045, 4, 3, 3];
    pub const ECDSA_SHA512: &[u64] = &[1, 2, 840, 10045, 4, 3, 4];
    pub const RSA_SHA1: &[u64] = &[1, 2, 840, 113549, 1, 1, 5];
    pub const RSA_SHA256: &[u64] = &[1, 2, 840, 113549, 1, 1, 11];
    pub const RSA_SHA384: &[u64] = &[1, 2, 840, 113549, 1, 1, 12];
    pub const RSA_SHA512: &[u64] = &[1, 2, 840, 113549, 1, 1, 13];
    pub const ED25519: &[u64] = &[1, 3, 101, 112];
    pub const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
    pub const P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
    pub const P384: &[u64] = &[1, 3, 132, 0, 34];
}

pub(crate) fn is(oid_tlv: &[u8], arcs: &[u64]) -> bool {
    oid_tlv == der::oid(arcs).as_slice()
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut v = [0u8; N];
    SystemRandom::new()
        .fill(&mut v)
        .expect("the system random generator works");
    v
}

/// PBM key: the one-way function applied `iterations` times to secret || salt (§5.1.3.1).
fn pbm_key(
    owf: &'static digest::Algorithm,
    secret: &[u8],
    salt: &[u8],
    iterations: i64,
) -> Vec<u8> {
    let mut ctx = digest::Context::new(owf);
    ctx.update(secret);
    ctx.update(salt);
    let mut k = ctx.finish();
    // Thousands of rounds per message: each hashes the last digest in place, no allocation.
    for _ in 1..iterations {
        k = digest::digest(owf, k.as_ref());
    }
    k.as_ref().to_vec()
}

/// The PBM AlgorithmIdentifier of a request with a fresh salt, and the MAC over `protected`.
pub(crate) struct PbmRequest {
    salt: [u8; 16],
    iterations: u32,
}

impl PbmRequest {
    pub fn new(iterations: u32) -> PbmRequest {
        PbmRequest {
            salt: random(),
            iterations,
        }
    }

    /// PBMParameter ::= SEQUENCE { salt, owf, iterationCount, mac } inside its
    /// AlgorithmIdentifier.
    pub fn alg_id(&self) -> Vec<u8> {
        let params = der::seq(&[
            &der::octets(&self.salt),
            &der::seq(&[&der::oid(oids::SHA256)]),
            &der::int(i64::from(self.iterations)),
            &der::seq(&[&der::oid(oids::HMAC_WITH_SHA256)]),
        ]);
        der::seq(&[&der::oid(oids::PBM), &params])
    }

    pub fn mac(&self, secret: &[u8], protected: &[u8]) -> Vec<u8> {
        let k = pbm_key(
            &digest::SHA256,
            secret,
            &self.salt,
            i64::from(self.iterations),
        );
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k), protected)
            .as_ref()
            .to_vec()
    }
}

/// A key that signs requests, matched to the certificate that goes first in extraCerts.
pub(crate) enum SigningKey {
    Ecdsa(signature::EcdsaKeyPair, &'static [u64]),
    Rsa(signature::RsaKeyPair),
}

impl SigningKey {
    /// A PKCS#8 private key (P-256, P-384 or RSA) that must belong to `cert_der`.
    pub fn from_pkcs8(pkcs8: &[u8], cert_der: &[u8]) -> Result<SigningKey, CmpError> {
        use signature::KeyPair;
        let key = if let Ok(k) =
            signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
        {
            SigningKey::Ecdsa(k, oids::ECDSA_SHA256)
        } else if let Ok(k) =
            signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8)
        {
            SigningKey::Ecdsa(k, oids::ECDSA_SHA384)
        } else if let Ok(k) = signature::RsaKeyPair::from_pkcs8(pkcs8) {
            SigningKey::Rsa(k)
        } else {
            return Err(CmpError::Config(
                "the signing key is not a PKCS#8 P-256, P-384 or RSA private key".into(),
            ));
        };
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| CmpError::Config(format!("the protection certificate: {e}")))?;
        let spki = cert.public_key().subject_public_key.data.as_ref();
        let public = match &key {
            SigningKey::Ecdsa(k, _) => k.public_key().as_ref().to_vec(),
            SigningKey::Rsa(k) => k.public_key().as_ref().to_vec(),
        };
        if spki != public.as_slice() {
            return Err(CmpError::Config(
                "the signing key does not belong to the protection certificate".into(),
            ));
        }
        Ok(key)
    }

    pub fn alg_id(&self) -> Vec<u8> {
        match self {
            // ECDSA AlgorithmIdentifiers carry no parameters (RFC 5758 §3.2).
            SigningKey::Ecdsa(_, oid) => der::seq(&[&der::oid(oid)]),
            // RSA ones carry NULL (RFC 4055 §5).
            SigningKey::Rsa(_) => der::seq(&[&der::oid(oids::RSA_SHA256), &der::null()]),
        }
    }

    pub fn sign(&self, protected: &[u8]) -> Result<Vec<u8>, CmpError> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Ecdsa(k, _) => k
                .sign(&rng, protected)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| CmpError::Config("ECDSA signing failed".into())),
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, protected, &mut sig)
                    .map_err(|_| CmpError::Config("RSA signing failed".into()))?;
                Ok(sig)
            }
        }
    }
}

/// What a response may be verified with.
pub(crate) struct Verifier<'a> {
    pub secret: Option<&'a [u8]>,
    pub upstream_certs: &'a [Vec<u8>],
}

impl Verifier<'_> {
    /// Verifies `protection` (the BIT STRING's octets) over `protected` with the algorithm the
    /// response's header names.
    pub fn verify(
        &self,
        alg: &Tlv<'_>,
        protected: &[u8],
        protection: &[u8],
    ) -> Result<(), CmpError> {
        let alg = AlgId::parse(alg, "PKIHeader.protectionAlg")?;
        if is(alg.oid, oids::PBM) {
            let secret = self.secret.ok_or(ProtectionError::NoSecret)?;
            return verify_pbm(&alg, secret, protected, protection);
        }
        if self.upstream_certs.is_empty() {
            return Err(match signature_alg(&alg, None) {
                Some(_) => ProtectionError::NoTrustedSigner.into(),
                None => unsupported(&alg),
            });
        }
        let mut known = false;
        for cert_der in self.upstream_certs {
            let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
                continue;
            };
            let spki = cert.public_key();
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .map(|p| p.as_bytes().to_vec());
            let key_oid = der::tlv(tag::OID, spki.algorithm.algorithm.as_bytes());
            let Some(verify_alg) = signature_alg(&alg, Some((&key_oid, curve.as_deref()))) else {
                continue;
            };
            known = true;
            let key = signature::UnparsedPublicKey::new(
                verify_alg,
                spki.subject_public_key.data.as_ref(),
            );
            if key.verify(protected, protection).is_ok() {
                return Ok(());
            }
        }
        if !known && signature_alg(&alg, None).is_none() {
            return Err(unsupported(&alg));
        }
        Err(ProtectionError::BadSignature.into())
    }
}

fn unsupported(alg: &AlgId<'_>) -> CmpError {
    ProtectionError::UnsupportedAlgorithm(oid_text(alg.oid)).into()
}

/// Dotted form of an OID TLV, for messages.
pub(crate) fn oid_text(tlv: &[u8]) -> String {
    let content = tlv.get(2..).unwrap_or_default();
    let mut arcs = Vec::new();
    let mut v: u64 = 0;
    for b in content {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.push(first);
                arcs.push(v - first * 40);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
        if v > u64::MAX >> 8 {
            break;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The aws-lc-rs verification algorithm for a signature AlgorithmIdentifier and (when given)
/// the verifying key's algorithm OID and curve parameters; `None` when we do not support it.
fn signature_alg(
    alg: &AlgId<'_>,
    key: Option<(&[u8], Option<&[u8]>)>,
) -> Option<&'static dyn signature::VerificationAlgorithm> {
    use signature as s;
    let ec_curve = |key: Option<(&[u8], Option<&[u8]>)>| -> Option<Option<bool>> {
        // Some(Some(true)) = P-256, Some(Some(false)) = P-384, Some(None) = no key to check.
        match key {
            None => Some(None),
            Some((k, Some(curve))) if is(k, oids::EC_PUBLIC_KEY) => {
                let curve = der::tlv(tag::OID, curve);
                if is(&curve, oids::P256) {
                    Some(Some(true))
                } else if is(&curve, oids::P384) {
                    Some(Some(false))
                } else {
                    None
                }
            }
            _ => None,
        }
    };
    let rsa_key = |key: Option<(&[u8], Option<&[u8]>)>| {
        key.is_none_or(|(k, _)| is(k, &[1, 2, 840, 113549, 1, 1, 1]))
    };
    let o = alg.oid;
    if is(o, oids::ECDSA_SHA256) || is(o, oids::ECDSA_SHA384) {
        let sha256 = is(o, oids::ECDSA_SHA256);
        return match (ec_curve(key)?, sha256) {
            (None, _) => Some(&s::ECDSA_P256_SHA256_ASN1),
            (Some(true), true) => Some(&s::ECDSA_P256_SHA256_ASN1),
            (Some(true), false) => Some(&s::ECDSA_P256_SHA384_ASN1),
            (Some(false), true) => Some(&s::ECDSA_P384_SHA256_ASN1),
            (Some(false), false) => Some(&s::ECDSA_P384_SHA384_ASN1),
        };
    }
    if !rsa_key(key) {
        return if is(o, oids::ED25519)
            && key.is_some_and(|(k, _)| is(k, oids::ED25519))
            && alg.params.is_none()
        {
            Some(&s::ED25519)
        } else {
            None
        };
    }
    if !alg.params_absent_or_null() {
        return None;
    }
    if is(o, oids::RSA_SHA256) {
        Some(&s::RSA_PKCS1_2048_8192_SHA256)
    } else if is(o, oids::RSA_SHA384) {
        Some(&s::RSA_PKCS1_2048_8192_SHA384)
    } else if is(o, oids::RSA_SHA512) {
        Some(&s::RSA_PKCS1_2048_8192_SHA512)
    } else {
        None
    }
}

fn verify_pbm(
    alg: &AlgId<'_>,
    secret: &[u8],
    protected: &[u8],
    protection: &[u8],
) -> Result<(), CmpError> {
    let p = |m: &str| ProtectionError::Parameters(m.to_owned());
    let params = alg.params.ok_or_else(|| p("missing PBMParameter"))?;
    if params.tag != tag::SEQUENCE {
        return Err(p("PBMParameter is not a SEQUENCE").into());
    }
    let mut d = params.inner();
    let salt = d.expect(tag::OCTET_STRING, "PBMParameter.salt")?.content;
    let owf = AlgId::parse(&d.expect(tag::SEQUENCE, "PBMParameter.owf")?, "owf")?;
    let iterations = d
        .expect(tag::INTEGER, "PBMParameter.iterationCount")?
        .int("PBMParameter.iterationCount")?;
    let mac = AlgId::parse(&d.expect(tag::SEQUENCE, "PBMParameter.mac")?, "mac")?;
    d.finish("PBMParameter")?;
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        return Err(p(&format!(
            "iterationCount {iterations} outside 1..={MAX_ITERATIONS}"
        ))
        .into());
    }
    if salt.is_empty() || salt.len() > 1024 {
        return Err(p("salt length").into());
    }
    if !owf.params_absent_or_null() || !mac.params_absent_or_null() {
        return Err(p("unexpected algorithm parameters").into());
    }
    let owf_alg: &'static digest::Algorithm = if is(owf.oid, oids::SHA256) {
        &digest::SHA256
    } else if is(owf.oid, oids::SHA384) {
        &digest::SHA384
    } else if is(owf.oid, oids::SHA512) {
        &digest::SHA512
    } else if is(owf.oid, oids::SHA1) {
        // RFC 4210 Appendix D.2's default one-way function; still what some CAs send.
        &digest::SHA1_FOR_LEGACY_USE_ONLY
    } else {
        return Err(ProtectionError::UnsupportedAlgorithm(oid_text(owf.oid)).into());
    };
    let mac_alg = if is(mac.oid, oids::HMAC_WITH_SHA256) {
        hmac::HMAC_SHA256
    } else if is(mac.oid, oids::HMAC_WITH_SHA384) {
        hmac::HMAC_SHA384
    } else if is(mac.oid, oids::HMAC_WITH_SHA512) {
        hmac::HMAC_SHA512
    } else if is(mac.oid, oids::HMAC_SHA1_IPSEC) || is(mac.oid, oids::HMAC_WITH_SHA1) {
        // HMAC-SHA1 remains a sound MAC (RFC 9481 §6.1.1 still lists it); OpenSSL's default.
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
    } else {
        return Err(ProtectionError::UnsupportedAlgorithm(oid_text(mac.oid)).into());
    };
    let k = pbm_key(owf_alg, secret, salt, iterations);
    hmac::verify(&hmac::Key::new(mac_alg, &k), protected, protection)
        .map_err(|_| ProtectionError::BadMac.into())
}

/// The digest a certificate's own signature algorithm uses (RFC 4210 §5.3.18, certHash; RFC
/// 9810 §5.3.18): `None` for algorithms without one (EdDSA) or unknown ones, for which the
/// caller names SHA-256 explicitly in hashAlg.
pub(crate) fn cert_hash_alg(cert_der: &[u8]) -> Option<&'static digest::Algorithm> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let oid = der::tlv(tag::OID, cert.signature_algorithm.algorithm.as_bytes());
    if is(&oid, oids::ECDSA_SHA256) || is(&oid, oids::RSA_SHA256) {
        Some(&digest::SHA256)
    } else if is(&oid, oids::ECDSA_SHA384) || is(&oid, oids::RSA_SHA384) {
        Some(&digest::SHA384)
    } else if is(&oid, oids::ECDSA_SHA512) || is(&oid, oids::RSA_SHA512) {
        Some(&digest::SHA512)
    } else if is(&oid, oids::RSA_SHA1) {
        Some(&digest::SHA1_FOR_LEGACY_USE_ONLY)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asn1::single;

    #[test]
    fn pbm_round_trips_and_refuses_a_wrong_secret_or_tampering() {
        let req = PbmRequest::new(1000);
        let alg_der = req.alg_id();
        let alg = single(&alg_der, tag::SEQUENCE, "alg").unwrap();
        let mac = req.mac(b"s3cret", b"protected part");
        let v = Verifier {
            secret: Some(b"s3cret"),
            upstream_certs: &[],
        };
        v.verify(&alg, b"protected part", &mac).unwrap();
        let wrong = Verifier {
            secret: Some(b"other"),
            upstream_certs: &[],
        };
        assert!(matches!(
            wrong.verify(&alg, b"protected part", &mac),
            Err(CmpError::Protection(ProtectionError::BadMac))
        ));
        assert!(matches!(
            v.verify(&alg, b"protected parT", &mac),
            Err(CmpError::Protection(ProtectionError::BadMac))
        ));
    }

    #[test]
    fn a_huge_iteration_count_is_refused_before_hashing() {
        let params = der::seq(&[
            &der::octets(&[1; 16]),
            &der::seq(&[&der::oid(oids::SHA256)]),
            &der::int(i64::from(u32::MAX)),
            &der::seq(&[&der::oid(oids::HMAC_WITH_SHA256)]),
        ]);
        let alg_der = der::seq(&[&der::oid(oids::PBM), &params]);
        let alg = single(&alg_der, tag::SEQUENCE, "alg").unwrap();
        let v = Verifier {
            secret: Some(b"s"),
            upstream_certs: &[],
        };
        assert!(matches!(
            v.verify(&alg, b"x", &[0; 32]),
            Err(CmpError::Protection(ProtectionError::Parameters(_)))
        ));
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(oid_text(&der::oid(oids::PBM)), "1.2.840.113533.7.66.13");
        assert_eq!(oid_text(&der::oid(oids::SHA256)), "2.16.840.1.101.3.4.2.1");
    }
}
