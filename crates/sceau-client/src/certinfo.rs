//! What the client needs to know about a certificate it holds: validity, names, serial, the
//! RFC 9773 §4.1 ARI identifier, and its public key (to tell keys apart across renewals).

use std::net::IpAddr;

use sceau_wire::Identifier;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub names: Vec<Identifier>,
    /// RFC 9773 certificate identifier, when the certificate has an Authority Key Identifier.
    pub ari_id: Option<String>,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
}

impl CertInfo {
    /// Parses the first certificate of a PEM chain (the leaf, RFC 8555 §7.4.2).
    pub fn from_pem_chain(pem: &str) -> Result<Self> {
        let der = sceau_wire::key::pem_decode(pem, "CERTIFICATE")
            .ok_or_else(|| Error::Certificate("no PEM CERTIFICATE block".into()))?;
        Self::from_der(&der)
    }

    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::Certificate(format!("does not parse: {e}")))?;
        let ts = |t: x509_parser::time::ASN1Time| t.to_datetime();
        let mut names = Vec::new();
        let mut aki = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        match n {
                            GeneralName::DNSName(d) => {
                                names.push(Identifier::dns(d.to_ascii_lowercase()))
                            }
                            GeneralName::IPAddress(raw) if raw.len() == 4 => {
                                names.push(Identifier::ip(
                                    IpAddr::from(<[u8; 4]>::try_from(*raw).expect("4 bytes"))
                                        .to_string(),
                                ))
                            }
                            GeneralName::IPAddress(raw) if raw.len() == 16 => {
                                names.push(Identifier::ip(
                                    IpAddr::from(<[u8; 16]>::try_from(*raw).expect("16 bytes"))
                                        .to_string(),
                                ))
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                _ => {}
            }
        }
        let serial = cert.tbs_certificate.raw_serial();
        Ok(CertInfo {
            der: der.to_vec(),
            serial_hex: hex_lower(
                serial
                    .iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect::<Vec<_>>()
                    .as_slice(),
            ),
            not_before: ts(cert.validity().not_before),
            not_after: ts(cert.validity().not_after),
            names,
            ari_id: aki.map(|aki| sceau_wire::ari_cert_id(&aki, serial)),
            public_key_der: cert.tbs_certificate.subject_pki.raw.to_vec(),
        })
    }

    /// The instant `fraction` (0..=1) of the validity period has elapsed (R84: 2/3).
    pub fn lifetime_point(&self, fraction: f64) -> OffsetDateTime {
        let life = self.not_after - self.not_before;
        self.not_before + life * fraction.clamp(0.0, 1.0)
    }

    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

use sceau_wire::hex::encode as hex_lower;
