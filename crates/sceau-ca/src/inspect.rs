//! Reading certificates back: what revocation (RFC 8555 §7.6) and renewal information
//! (RFC 9773) need to know about a certificate a client presents.
//!
//! Nothing here trusts the certificate: callers look the serial up in their own records before
//! acting on it.

use sceau_wire::{Identifier, Jwk};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::der;
use crate::{CaError, hex_lower, names};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Lowercase hex of the serial's DER content octets (same form as [`crate::Issued`]).
    pub serial_hex: String,
    /// RFC 9773 §4.1 certID; `None` without an AKI keyIdentifier.
    pub ari_id: Option<String>,
    pub spki_der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// SAN dNSName (lowercased) and iPAddress entries, in certificate order.
    pub identifiers: Vec<Identifier>,
    pub key_usage_digital_signature: bool,
}

pub fn cert_info(der: &[u8]) -> Result<CertInfo, CaError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| CaError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::BadCertificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    let serial = cert.raw_serial();
    let mut aki = None;
    let mut identifiers = Vec::new();
    let mut digital_signature = false;
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            ParsedExtension::KeyUsage(ku) => digital_signature = ku.digital_signature(),
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => {
                            identifiers.push(Identifier::dns(d.to_ascii_lowercase()))
                        }
                        GeneralName::IPAddress(octets) => {
                            if let Some(ip) = names::ip_from_octets(octets) {
                                identifiers.push(Identifier::ip(ip.to_string()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::ParseError { error } => {
                return Err(CaError::BadCertificate(format!(
                    "extension {} does not parse: {error}",
                    ext.oid
                )));
            }
            _ => {}
        }
    }
    Ok(CertInfo {
        serial_hex: hex_lower(serial),
        ari_id: aki.map(|k| sceau_wire::ari_cert_id(&k, serial)),
        spki_der: cert.public_key().raw.to_vec(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        identifiers,
        key_usage_digital_signature: digital_signature,
    })
}

/// RFC 8555 §7.6: whether a revocation request signed by `jwk` is signed by the certificate's
/// own key. Compares the key material itself, so encodings that differ only in leading zeros
/// or in optional parameters still match, and a different key never does.
pub fn spki_matches_jwk(spki_der: &[u8], jwk: &Jwk) -> bool {
    let Ok((rest, spki)) = SubjectPublicKeyInfo::from_der(spki_der) else {
        return false;
    };
    if !rest.is_empty() || jwk.validate().is_err() {
        return false;
    }
    let alg = &spki.algorithm;
    let key = spki.subject_public_key.data.as_ref();
    let decode = |s: &str| sceau_wire::b64::decode(s).ok();
    match jwk {
        Jwk::Ec { crv, x, y } => {
            if alg.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
                return false;
            }
            let Some(curve) = alg.parameters.as_ref().and_then(|p| p.as_oid().ok()) else {
                return false;
            };
            let curve_matches = (crv == "P-256" && curve == OID_EC_P256)
                || (crv == "P-384" && curve == OID_NIST_EC_P384);
            let (Some(x), Some(y)) = (decode(x), decode(y)) else {
                return false;
            };
            let mut point = vec![4u8];
            point.extend(x);
            point.extend(y);
            curve_matches && point == key
        }
        Jwk::Rsa { n, e } => {
            if alg.algorithm != OID_PKCS1_RSAENCRYPTION {
                return false;
            }
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return false;
            };
            let (Some(n), Some(e)) = (decode(n), decode(e)) else {
                return false;
            };
            der::strip_zeros(rsa.modulus) == der::strip_zeros(&n)
                && der::strip_zeros(rsa.exponent) == der::strip_zeros(&e)
        }
        Jwk::Okp { crv, x } => {
            alg.algorithm == OID_SIG_ED25519
                && crv == "Ed25519"
                && decode(x).is_some_and(|x| x == key)
        }
    }
}

/// The JWK of a SubjectPublicKeyInfo, for comparing a certified key with account keys by RFC
/// 7638 thumbprint (RFC 8555 §11.1). `None` for key types an account key cannot be.
pub fn jwk_of_spki(spki_der: &[u8]) -> Option<Jwk> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let alg = &spki.algorithm;
    let key = spki.subject_public_key.data.as_ref();
    let b64 = sceau_wire::b64::encode;
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok())?;
        let (crv, len) = if curve == OID_EC_P256 {
            ("P-256", 32)
        } else if curve == OID_NIST_EC_P384 {
            ("P-384", 48)
        } else {
            return None;
        };
        if key.len() != 1 + 2 * len || key[0] != 4 {
            return None;
        }
        return Some(Jwk::Ec {
            crv: crv.into(),
            x: b64(&key[1..1 + len]),
            y: b64(&key[1 + len..]),
        });
    }
    if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return None;
        };
        // RFC 7518 §6.3.1: unsigned big-endian without leading zero octets.
        return Some(Jwk::Rsa {
            n: b64(der::strip_zeros(rsa.modulus)),
            e: b64(der::strip_zeros(rsa.exponent)),
        });
    }
    if alg.algorithm == OID_SIG_ED25519 && key.len() == 32 {
        return Some(Jwk::Okp {
            crv: "Ed25519".into(),
            x: b64(key),
        });
    }
    None
}

/// The DER SubjectPublicKeyInfo encodings a CSR may carry for `jwk`'s key: one for EC and
/// Ed25519 (RFC 5480 §2, RFC 8410 §4), two for RSA (rsaEncryption parameters NULL, RFC 3279
/// §2.3.1, or absent, which some encoders write). For matching stored certificates by the
/// SHA-256 of their SPKI (R37, RFC 8555 §11.1).
pub fn spki_der_candidates(jwk: &Jwk) -> Vec<Vec<u8>> {
    let d = |s: &str| sceau_wire::b64::decode(s).unwrap_or_default();
    let bit_string = |content: &[u8]| {
        let mut v = vec![0u8];
        v.extend_from_slice(content);
        der::tlv(0x03, &v)
    };
    match jwk {
        Jwk::Ec { crv, x, y } => {
            let curve: &[u8] = match crv.as_str() {
                "P-256" => &der::P256_OID,
                "P-384" => &der::P384_OID,
                _ => return Vec::new(),
            };
            // id-ecPublicKey 1.2.840.10045.2.1
            let alg = der::tlv(
                0x30,
                &[
                    der::tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                    curve.to_vec(),
                ]
                .concat(),
            );
            let mut point = vec![4u8];
            point.extend(d(x));
            point.extend(d(y));
            vec![der::tlv(0x30, &[alg, bit_string(&point)].concat())]
        }
        Jwk::Rsa { n, e } => {
            let key = der::tlv(0x30, &[der::uint(&d(n)), der::uint(&d(e))].concat());
            // rsaEncryption 1.2.840.113549.1.1.1
            let oid = der::tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            );
            let with_null = der::tlv(0x30, &[oid.clone(), vec![0x05, 0x00]].concat());
            let without = der::tlv(0x30, &oid);
            vec![
                der::tlv(0x30, &[with_null, bit_string(&key)].concat()),
                der::tlv(0x30, &[without, bit_string(&key)].concat()),
            ]
        }
        Jwk::Okp { x, .. } => {
            // id-Ed25519 1.3.101.112, parameters absent
            let alg = der::tlv(0x30, &der::tlv(0x06, &[0x2b, 0x65, 0x70]));
            vec![der::tlv(0x30, &[alg, bit_string(&d(x))].concat())]
        }
    }
}
