//! CSR checks for finalize (RFC 8555 §7.4, RFC 2986, R37/R38).
//!
//! Invariants of a [`ParsedCsr`]:
//! - its self-signature verified with its own key (proof of possession), with an algorithm
//!   that fits the key;
//! - its key is ECDSA P-256/P-384, RSA 2048..=8192 or Ed25519 (see `keys`);
//! - its identifiers are the union of the SAN dNSName/iPAddress entries and the subject
//!   commonName(s), at least one, DNS names lowercased, IPs in canonical text; no other SAN
//!   type and no wildcard.
//!
//! Everything else in the request (other subject attributes, requested key usages, ...) is
//! ignored: the certificate profile comes from the CA, never from the CSR.

use std::collections::BTreeSet;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use sceau_wire::Identifier;
use x509_parser::asn1_rs::Tag;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSASSAPSS,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
    OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509CertificationRequest};
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::AlgorithmIdentifier;

use crate::keys::{self, KeyProblem, KeyType, RSA_MIN_BITS};
use crate::names::{self, NameProblem};

/// A CSR that passed every check of [`parse_and_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCsr {
    pub identifiers: BTreeSet<Identifier>,
    /// The request's SubjectPublicKeyInfo, DER, as received.
    pub public_key_spki_der: Vec<u8>,
    /// For logs and error details: "ECDSA P-256", "RSA 2048", "Ed25519".
    pub key_description: String,
}

/// Why a CSR was refused. Each message is one line meant for an ACME `badCSR` detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is not a well-formed DER PKCS#10 request: {0}")]
    Malformed(String),
    #[error("CSR signature does not verify with the CSR's own public key")]
    BadSignature,
    #[error(
        "CSR signature algorithm {0} is not accepted (use ECDSA with SHA-256/384/512, RSA PKCS#1 v1.5 or PSS with SHA-256/384/512, or Ed25519)"
    )]
    UnsupportedSignatureAlgorithm(String),
    #[error("CSR signature algorithm {alg} does not fit its {key} key")]
    SignatureKeyMismatch { alg: String, key: String },
    #[error("CSR key is too weak: RSA {bits} bits (minimum {RSA_MIN_BITS})")]
    WeakKey { bits: usize },
    #[error(
        "CSR key is not accepted: {0} (accepted: ECDSA P-256, ECDSA P-384, RSA 2048 to 8192 bits, Ed25519)"
    )]
    UnsupportedKey(String),
    #[error("CSR public key is malformed: {0}")]
    BadKey(String),
    #[error(
        "CSR names no identifier (no subjectAltName dNSName or iPAddress and no subject commonName)"
    )]
    NoNames,
    #[error("CSR subjectAltName contains {0}; only dNSName and iPAddress entries are accepted")]
    UnsupportedSanType(String),
    #[error("CSR name {name:?} is not acceptable: {reason}")]
    BadName { name: String, reason: String },
    #[error("CSR asks for the wildcard name {0:?}; wildcard certificates are not issued")]
    Wildcard(String),
}

impl From<KeyProblem> for CsrError {
    fn from(p: KeyProblem) -> Self {
        match p {
            KeyProblem::Weak { bits } => CsrError::WeakKey { bits },
            KeyProblem::Unsupported(what) => CsrError::UnsupportedKey(what),
            KeyProblem::Malformed(what) => CsrError::BadKey(what),
        }
    }
}

/// RFC 8555 §7.4, R37/R38: parses a DER PKCS#10 request, verifies its self-signature, checks
/// its key and collects its identifiers. See the module invariants.
pub fn parse_and_check(der: &[u8]) -> Result<ParsedCsr, CsrError> {
    parse_and_check_with(der, false)
}

/// [`parse_and_check`], also accepting wildcard names (`*.example.org`) when the CA is
/// configured to issue them (R42's explicit exception).
pub fn parse_and_check_with(der: &[u8], allow_wildcards: bool) -> Result<ParsedCsr, CsrError> {
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} trailing bytes after the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    // RFC 2986 §4.1: version is 0.
    if info.version.0 != 0 {
        return Err(CsrError::Malformed(format!(
            "version {} (expected 0)",
            info.version.0
        )));
    }

    let key = keys::classify(&info.subject_pki)?;
    let verifier = verifier_for(&csr.signature_algorithm, key)?;
    if csr.signature_value.unused_bits != 0 {
        return Err(CsrError::Malformed(
            "signature BIT STRING has unused bits".into(),
        ));
    }
    UnparsedPublicKey::new(verifier, info.subject_pki.subject_public_key.data.as_ref())
        .verify(info.raw, csr.signature_value.data.as_ref())
        .map_err(|_| CsrError::BadSignature)?;

    let mut identifiers = BTreeSet::new();
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        identifiers.insert(general_name(name, allow_wildcards)?);
                    }
                }
                ParsedExtension::ParseError { error } => {
                    return Err(CsrError::Malformed(format!(
                        "requested extension does not parse: {error}"
                    )));
                }
                // Requested key usages, basic constraints and the like do not reach the
                // certificate; the CA's profile decides them.
                _ => {}
            }
        }
    }
    for cn in info.subject.iter_common_name() {
        let text = cn
            .as_str()
            .map_err(|e| CsrError::Malformed(format!("subject commonName is not a string: {e}")))?;
        identifiers.insert(text_name(text, allow_wildcards)?);
    }
    if identifiers.is_empty() {
        return Err(CsrError::NoNames);
    }
    Ok(ParsedCsr {
        identifiers,
        public_key_spki_der: info.subject_pki.raw.to_vec(),
        key_description: key.description(),
    })
}

fn general_name(name: &GeneralName<'_>, allow_wildcards: bool) -> Result<Identifier, CsrError> {
    match name {
        GeneralName::DNSName(dns) => dns_identifier(dns, allow_wildcards),
        GeneralName::IPAddress(octets) => names::ip_from_octets(octets)
            .map(|ip| Identifier::ip(ip.to_string()))
            .ok_or_else(|| {
                CsrError::Malformed(format!(
                    "iPAddress of {} octets (expected 4 or 16)",
                    octets.len()
                ))
            }),
        GeneralName::Invalid(tag, _) => Err(CsrError::Malformed(format!(
            "subjectAltName entry with tag {tag} does not parse"
        ))),
        GeneralName::OtherName(..) => Err(CsrError::UnsupportedSanType("an otherName".into())),
        GeneralName::RFC822Name(_) => Err(CsrError::UnsupportedSanType(
            "an rfc822Name (e-mail address)".into(),
        )),
        GeneralName::X400Address(_) => Err(CsrError::UnsupportedSanType("an x400Address".into())),
        GeneralName::DirectoryName(_) => {
            Err(CsrError::UnsupportedSanType("a directoryName".into()))
        }
        GeneralName::EDIPartyName(_) => Err(CsrError::UnsupportedSanType("an ediPartyName".into())),
        GeneralName::URI(_) => Err(CsrError::UnsupportedSanType(
            "a uniformResourceIdentifier".into(),
        )),
        GeneralName::RegisteredID(_) => Err(CsrError::UnsupportedSanType("a registeredID".into())),
    }
}

/// A commonName: an IP address in text gives an `ip` identifier (RFC 8738 §3 allows IPs in
/// CSRs only as iPAddress SANs, but clients put them in the CN too), anything else a DNS name.
fn text_name(text: &str, allow_wildcards: bool) -> Result<Identifier, CsrError> {
    match text.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(Identifier::ip(ip.to_string())),
        Err(_) => dns_identifier(text, allow_wildcards),
    }
}

fn dns_identifier(name: &str, allow_wildcards: bool) -> Result<Identifier, CsrError> {
    match names::dns_name_or_wildcard(name, allow_wildcards) {
        Ok(n) => Ok(Identifier::dns(n)),
        Err(NameProblem::Wildcard) => Err(CsrError::Wildcard(name.to_owned())),
        Err(p) => Err(CsrError::BadName {
            name: name.to_owned(),
            reason: p.to_string(),
        }),
    }
}

/// `parameters` absent, or NULL (some encoders add it; RFC 4055 §5 tolerates both for RSA).
fn absent_or_null(alg: &AlgorithmIdentifier<'_>) -> bool {
    alg.parameters.as_ref().is_none_or(|p| p.tag() == Tag::Null)
}

fn verifier_for(
    alg: &AlgorithmIdentifier<'_>,
    key: KeyType,
) -> Result<&'static dyn VerificationAlgorithm, CsrError> {
    let oid = &alg.algorithm;
    let mismatch = || CsrError::SignatureKeyMismatch {
        alg: oid.to_id_string(),
        key: key.description(),
    };
    let unsupported = || CsrError::UnsupportedSignatureAlgorithm(oid.to_id_string());
    if !(absent_or_null(alg) || *oid == OID_PKCS1_RSASSAPSS) {
        return Err(CsrError::Malformed(format!(
            "unexpected parameters for signature algorithm {oid}"
        )));
    }

    // RFC 5758 §3.2: ecdsa-with-SHA*.
    let ecdsa_hash = [
        (OID_SIG_ECDSA_WITH_SHA256, 256),
        (OID_SIG_ECDSA_WITH_SHA384, 384),
        (OID_SIG_ECDSA_WITH_SHA512, 512),
    ]
    .into_iter()
    .find(|(o, _)| o == oid)
    .map(|(_, h)| h);
    if let Some(hash) = ecdsa_hash {
        return Ok(match (key, hash) {
            (KeyType::EcP256, 256) => &signature::ECDSA_P256_SHA256_ASN1,
            (KeyType::EcP256, 384) => &signature::ECDSA_P256_SHA384_ASN1,
            (KeyType::EcP256, _) => &signature::ECDSA_P256_SHA512_ASN1,
            (KeyType::EcP384, 256) => &signature::ECDSA_P384_SHA256_ASN1,
            (KeyType::EcP384, 384) => &signature::ECDSA_P384_SHA384_ASN1,
            (KeyType::EcP384, _) => &signature::ECDSA_P384_SHA512_ASN1,
            _ => return Err(mismatch()),
        });
    }

    // RFC 4055 §5: sha*WithRSAEncryption.
    let pkcs1: Option<&'static dyn VerificationAlgorithm> = if *oid == OID_PKCS1_SHA256WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA256)
    } else if *oid == OID_PKCS1_SHA384WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA384)
    } else if *oid == OID_PKCS1_SHA512WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA512)
    } else {
        None
    };
    if let Some(v) = pkcs1 {
        return if key.is_rsa() { Ok(v) } else { Err(mismatch()) };
    }

    // RFC 4055 §3.1: RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash.
    if *oid == OID_PKCS1_RSASSAPSS {
        if !key.is_rsa() {
            return Err(mismatch());
        }
        let params = alg
            .parameters
            .as_ref()
            .and_then(|p| RsaSsaPssParams::try_from(p).ok())
            .ok_or_else(|| CsrError::Malformed("RSASSA-PSS parameters do not parse".into()))?;
        let hash = params.hash_algorithm_oid();
        let (verifier, len): (&'static dyn VerificationAlgorithm, u32) =
            if *hash == OID_NIST_HASH_SHA256 {
                (&signature::RSA_PSS_2048_8192_SHA256, 32)
            } else if *hash == OID_NIST_HASH_SHA384 {
                (&signature::RSA_PSS_2048_8192_SHA384, 48)
            } else if *hash == OID_NIST_HASH_SHA512 {
                (&signature::RSA_PSS_2048_8192_SHA512, 64)
            } else {
                return Err(CsrError::UnsupportedSignatureAlgorithm(format!(
                    "RSASSA-PSS with hash {hash}"
                )));
            };
        let mgf = params
            .mask_gen_algorithm()
            .map_err(|e| CsrError::Malformed(format!("RSASSA-PSS mask generation: {e}")))?;
        if mgf.mgf.to_id_string() != "1.2.840.113549.1.1.8" || mgf.hash != *hash {
            return Err(CsrError::UnsupportedSignatureAlgorithm(
                "RSASSA-PSS with a mask generation other than MGF1 over the same hash".into(),
            ));
        }
        if params.salt_length() != len || params.trailer_field() != 1 {
            return Err(CsrError::UnsupportedSignatureAlgorithm(
                "RSASSA-PSS with a salt length other than the hash length".into(),
            ));
        }
        return Ok(verifier);
    }

    // RFC 8410 §3: id-Ed25519, parameters absent.
    if *oid == OID_SIG_ED25519 {
        if alg.parameters.is_some() {
            return Err(CsrError::Malformed(
                "Ed25519 signature algorithm with parameters".into(),
            ));
        }
        return if key == KeyType::Ed25519 {
            Ok(&signature::ED25519)
        } else {
            Err(mismatch())
        };
    }
    Err(unsupported())
}
