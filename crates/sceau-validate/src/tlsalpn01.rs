//! tls-alpn-01 (RFC 8737; RFC 8738 §6 for IP identifiers).
//!
//! Invariants:
//! - We offer exactly one ALPN protocol, `acme-tls/1`, and require it back (RFC 8737 §3).
//! - SNI is the domain, or for an IP the reverse-mapping name (RFC 8738 §6).
//! - The certificate chain is not checked for trust (it is self-signed by design), but the
//!   handshake signature is, so the peer holds the certificate's private key.
//! - The leaf must name exactly the identifier in subjectAltName and carry the critical
//!   id-pe-acmeIdentifier extension holding DER OCTET STRING(SHA-256(key authorization)).
//! - Only TLS 1.2 and 1.3 (RFC 8737 §4).
//! - Only addresses the [`crate::AddressPolicy`] allows are connected to: an IP identifier is
//!   checked as is, a name's resolved addresses are filtered (RFC 8555 §10.4).
//! - Error details do not repeat what the peer's certificate says (its names), only what is
//!   wrong with it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sceau_wire::{Identifier, ProblemType};
use tokio::net::TcpStream;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::dns::Dns;
use crate::ident::{self, Target};
use crate::{BuildError, ValidationError, ValidatorConfig, tls_alpn01_digest};

pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// id-pe-acmeIdentifier (RFC 8737 §6.1).
pub const ACME_IDENTIFIER_OID_STR: &str = "1.3.6.1.5.5.7.1.31";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client config (TLS 1.2+) that accepts any certificate but checks handshake signatures.
pub(crate) fn accept_any_cert_config() -> Result<rustls::ClientConfig, BuildError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth())
}

pub(crate) fn client_config() -> Result<Arc<rustls::ClientConfig>, BuildError> {
    let mut cfg = accept_any_cert_config()?;
    cfg.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    // Each validation is a fresh handshake with the current certificate.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Accepts any certificate, checks the handshake signature against its public key.
///
/// The signature is verified with aws-lc-rs on the key taken from the certificate by
/// x509-parser, not with webpki: webpki refuses certificates with critical extensions it does
/// not know, and the acmeIdentifier extension is exactly that (RFC 8737 §3).
#[derive(Debug)]
struct AnyCertificate;

const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

fn verify_handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use aws_lc_rs::signature as sig;
    let alg: &'static dyn sig::VerificationAlgorithm = match dss.scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::ECDSA_NISTP521_SHA512 => &sig::ECDSA_P521_SHA512_ASN1,
        SignatureScheme::ED25519 => &sig::ED25519,
        SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        // RFC 8446 §4.2.3: PKCS#1 v1.5 is not allowed for TLS 1.3 handshake signatures.
        SignatureScheme::RSA_PKCS1_SHA256 if !tls13 => &sig::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 if !tls13 => &sig::RSA_PKCS1_2048_8192_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512 if !tls13 => &sig::RSA_PKCS1_2048_8192_SHA512,
        _ => return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into()),
    };
    let (_, parsed) = X509Certificate::from_der(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let key = &parsed.public_key().subject_public_key.data;
    sig::UnparsedPublicKey::new(alg, key.as_ref())
        .verify(message, dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Trust is not the question: the certificate's content is checked after the handshake.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

pub(crate) async fn validate(
    dns: &Dns,
    tls: &Arc<rustls::ClientConfig>,
    cfg: &ValidatorConfig,
    id: &Identifier,
    key_authorization: &str,
) -> Result<(), ValidationError> {
    let port = cfg.tlsalpn01_port;
    let target = ident::connect_target(id, "tls-alpn-01")?;
    let what = format!("tls-alpn-01 for {}", id.value);
    let (ips, sni) = match &target {
        Target::Domain(d) => {
            let ips = dns.ips(d).await.map_err(|e| prefixed(&what, e))?;
            let ips = cfg
                .address_policy
                .connectable(d, ips)
                .map_err(|e| prefixed(&what, e))?;
            (ips, d.clone())
        }
        Target::Ip(ip) => {
            cfg.address_policy.check(*ip).map_err(|r| {
                ValidationError::new(ProblemType::Connection, format!("{what}: {r}"))
            })?;
            (vec![*ip], ident::reverse_name(*ip))
        }
    };
    let server_name = ServerName::try_from(sni.clone()).map_err(|e| {
        ValidationError::new(ProblemType::Malformed, format!("{what}: SNI {sni:?}: {e}"))
    })?;

    // A before AAAA; the first address that accepts a TCP connection is the one validated.
    let mut last_err = None;
    let mut stream = None;
    for ip in &ips {
        let addr = SocketAddr::new(*ip, port);
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some((s, addr));
                break;
            }
            Err(e) => last_err = Some(format!("connecting to {addr}: {e}")),
        }
    }
    let Some((tcp, addr)) = stream else {
        return Err(ValidationError::new(
            ProblemType::Connection,
            format!(
                "{what}: {}",
                last_err.unwrap_or_else(|| "no address".to_owned())
            ),
        ));
    };

    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let conn = connector.connect(server_name, tcp).await.map_err(|e| {
        ValidationError::new(
            ProblemType::Tls,
            format!("{what}: TLS handshake with {addr} (SNI {sni}): {e}"),
        )
    })?;
    let (_, session) = conn.get_ref();
    if session.alpn_protocol() != Some(ACME_TLS_ALPN) {
        let got = session.alpn_protocol().map(String::from_utf8_lossy);
        return Err(ValidationError::new(
            ProblemType::Tls,
            format!("{what}: {addr} negotiated ALPN {got:?}, expected \"acme-tls/1\""),
        ));
    }
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| {
            ValidationError::new(
                ProblemType::Tls,
                format!("{what}: {addr} sent no certificate"),
            )
        })?;
    // RFC 8737 §3: nothing more is exchanged; dropping the stream closes it.
    drop(conn);
    check_certificate(&leaf, &target, key_authorization).map_err(|why| {
        ValidationError::new(
            ProblemType::IncorrectResponse,
            format!("{what}: certificate from {addr} {why}"),
        )
    })
}

fn prefixed(what: &str, e: ValidationError) -> ValidationError {
    ValidationError::new(e.kind, format!("{what}: {}", e.detail))
}

/// The certificate checks of RFC 8737 §3; `Err` says what is wrong, for the detail line.
pub(crate) fn check_certificate(
    der: &[u8],
    target: &Target,
    key_authorization: &str,
) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("does not parse: {e}"))?;

    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("has an invalid subjectAltName: {e}"))?
        .ok_or("has no subjectAltName")?;
    let names = &san.value.general_names;
    let matches = names.len() == 1
        && match (&names[0], target) {
            (GeneralName::DNSName(n), Target::Domain(d)) => {
                n.trim_end_matches('.').eq_ignore_ascii_case(d)
            }
            (GeneralName::IPAddress(bytes), Target::Ip(ip)) => match ip {
                IpAddr::V4(v4) => *bytes == v4.octets().as_slice(),
                IpAddr::V6(v6) => *bytes == v6.octets().as_slice(),
            },
            _ => false,
        };
    if !matches {
        let want = match target {
            Target::Domain(d) => d.clone(),
            Target::Ip(ip) => ip.to_string(),
        };
        return Err(format!(
            "does not name exactly {want} in subjectAltName ({} name(s))",
            names.len()
        ));
    }

    let oid =
        x509_parser::der_parser::oid::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 1, 31]).expect("static OID");
    let mut found = cert.extensions().iter().filter(|ext| ext.oid == oid);
    let ext = found
        .next()
        .ok_or("has no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)")?;
    if found.next().is_some() {
        return Err("has more than one acmeIdentifier extension".into());
    }
    if !ext.critical {
        return Err("has an acmeIdentifier extension that is not critical".into());
    }
    // extnValue holds the DER of `Authorization ::= OCTET STRING (SIZE (32))`.
    let expected = tls_alpn01_digest(key_authorization);
    let mut der_octets = vec![0x04, 0x20];
    der_octets.extend_from_slice(&expected);
    if ext.value != der_octets.as_slice() {
        return Err("has an acmeIdentifier that is not SHA-256 of the key authorization".into());
    }
    Ok(())
}
