//! Certificate keys and CSRs (RFC 2986) for orders (RFC 8555 §7.4).
//!
//! Invariants: a generated key comes from the OS CSPRNG through aws-lc-rs (R65) and is new
//! for every call (R66); a CSR names exactly the order's identifiers in its subjectAltName.

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use sceau_wire::{AccountKey, Identifier, KeyKind};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};

/// A fresh certificate key of `kind`.
pub fn generate_key(kind: KeyKind) -> Result<AccountKey> {
    AccountKey::generate(kind).map_err(|e| Error::Key(format!("generating a {kind} key: {e}")))
}

/// A DER CSR for `identifiers`, signed by `key`.
pub fn build_csr(key: &AccountKey, identifiers: &[Identifier]) -> Result<Vec<u8>> {
    let key_pair = KeyPair::try_from(key.to_pkcs8_der().as_slice())
        .map_err(|e| Error::Key(format!("the certificate key cannot sign a CSR: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // CN is optional for ACME; keep the first DNS name there for old software that reads it,
    // when it fits the 64-character limit of RFC 5280's ub-common-name.
    if let Some(first) = identifiers
        .iter()
        .find(|i| i.is_dns() && i.value.len() <= 64)
    {
        dn.push(DnType::CommonName, first.value.clone());
    }
    params.distinguished_name = dn;
    params.subject_alt_names = identifiers
        .iter()
        .map(|id| {
            if id.is_ip() {
                id.value
                    .parse::<IpAddr>()
                    .map(SanType::IpAddress)
                    .map_err(|_| Error::Config(format!("{} is not an IP address", id.value)))
            } else {
                id.value
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| Error::Config(format!("{} is not a valid DNS name", id.value)))
            }
        })
        .collect::<Result<_>>()?;
    let csr = params
        .serialize_request(&key_pair)
        .map_err(|e| Error::Key(format!("building the CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// Reads a CSR made elsewhere (PEM or DER), checks its signature and returns it as DER with
/// the identifiers it asks for (its SANs, or its CN if it has none).
pub fn read_csr(bytes: &[u8]) -> Result<(Vec<u8>, Vec<Identifier>)> {
    let der = match std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.contains("-----BEGIN"))
    {
        Some(text) => sceau_wire::key::pem_decode(text, "CERTIFICATE REQUEST")
            .or_else(|| sceau_wire::key::pem_decode(text, "NEW CERTIFICATE REQUEST"))
            .ok_or_else(|| {
                Error::Key("the CSR file has no CERTIFICATE REQUEST PEM block".into())
            })?,
        None => bytes.to_vec(),
    };
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| Error::Key(format!("the CSR does not parse: {e}")))?;
    csr.verify_signature()
        .map_err(|_| Error::Key("the CSR signature does not verify".into()))?;
    let mut ids = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => ids.push(Identifier::dns(d.to_ascii_lowercase())),
                    GeneralName::IPAddress(raw) => match raw.len() {
                        4 => ids.push(Identifier::ip(
                            IpAddr::from(<[u8; 4]>::try_from(*raw).unwrap()).to_string(),
                        )),
                        16 => ids.push(Identifier::ip(
                            IpAddr::from(<[u8; 16]>::try_from(*raw).unwrap()).to_string(),
                        )),
                        _ => {
                            return Err(Error::Key(
                                "the CSR has a malformed IP address SAN".into(),
                            ));
                        }
                    },
                    _ => {}
                }
            }
        }
    }
    if ids.is_empty()
        && let Some(cn) = csr
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
        && let Ok(cn) = cn.as_str()
    {
        ids.push(Identifier::guess(cn));
    }
    if ids.is_empty() {
        return Err(Error::Key("the CSR names no DNS name or IP address".into()));
    }
    ids.sort();
    ids.dedup();
    Ok((der, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_round_trip_names_every_identifier() {
        let key = generate_key(KeyKind::P256).unwrap();
        let ids = vec![
            Identifier::dns("a.example"),
            Identifier::ip("192.0.2.1"),
            Identifier::ip("2001:db8::1"),
        ];
        let der = build_csr(&key, &ids).unwrap();
        let (back, mut names) = read_csr(&der).unwrap();
        assert_eq!(back, der);
        let mut want = ids.clone();
        want.sort();
        names.sort();
        assert_eq!(names, want);
    }

    #[test]
    fn csr_from_pem_and_garbage() {
        let key = generate_key(KeyKind::Rsa2048).unwrap();
        let der = build_csr(&key, &[Identifier::dns("b.example")]).unwrap();
        let pem = sceau_wire::key::pem_encode("CERTIFICATE REQUEST", &der);
        assert_eq!(
            read_csr(pem.as_bytes()).unwrap().1,
            vec![Identifier::dns("b.example")]
        );
        assert!(read_csr(b"not a csr").is_err());
        let mut tampered = der.clone();
        let n = tampered.len();
        tampered[n - 5] ^= 0x55;
        assert!(read_csr(&tampered).is_err());
    }
}
