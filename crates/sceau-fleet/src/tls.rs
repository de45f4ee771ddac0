//! Identities of fleet mode.
//!
//! - The manager's HTTPS certificate is signed by a root made for it at `manager init`; the
//!   root's key is thrown away at once, so nothing can sign another certificate under it, and
//!   agents trust exactly that root (`manager-ca.pem`). An organisation may use a certificate of
//!   its own PKI instead.
//! - An agent's client certificate is self-signed and made on the agent; the manager pins its
//!   SHA-256 at enrolment. [`AnyClientCert`] therefore asks for a certificate and checks that
//!   the peer holds its key (the handshake signature), and leaves "who is this" to the
//!   fingerprint lookup, where revocation takes effect at once.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as TlsName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::error::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// SHA-256 of a DER certificate, lowercase hex: how the manager knows an agent.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// PEM texts of a certificate, its key, and (for the manager) the root agents trust.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: Option<String>,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

/// The manager's HTTPS identity for `hosts` (names or addresses), under a root whose key is
/// dropped when this returns.
pub fn manager_identity(hosts: &[String]) -> Result<Identity> {
    if hosts.is_empty() {
        return Err(Error::Config(
            "give the manager's host name (--hostname), as agents will reach it".into(),
        ));
    }
    let root_key = KeyPair::generate().map_err(tls_err)?;
    let mut root = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sceau fleet manager root");
    root.distinguished_name = dn;
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    validity(&mut root, 3650);
    let root_cert = root.self_signed(&root_key).map_err(tls_err)?;
    let issuer = Issuer::new(root, root_key);

    let key = KeyPair::generate().map_err(tls_err)?;
    let mut leaf = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hosts[0].clone());
    leaf.distinguished_name = dn;
    leaf.subject_alt_names = hosts
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => h
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| Error::Config(format!("{h} is not a host name or address"))),
        })
        .collect::<Result<_>>()?;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut leaf, 3650);
    let cert = leaf.signed_by(&key, &issuer).map_err(tls_err)?;
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: Some(root_cert.pem()),
    })
}

/// An agent's self-signed client certificate.
pub fn agent_identity(host: &str) -> Result<Identity> {
    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("sceau agent {host}"));
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 3650);
    let cert = params.self_signed(&key).map_err(tls_err)?;
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: None,
    })
}

fn chain_and_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls("no certificate in the PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("key PEM: {e}")))?;
    Ok((chain, key))
}

/// The manager's listener: TLS 1.3, a client certificate required.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig> {
    let (chain, key) = chain_and_key(cert_pem, key_pem)?;
    let p = provider();
    let mut config = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(Arc::new(AnyClientCert { provider: p }))
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The agent's client: trusts exactly `ca_pem`, presents its own certificate.
pub fn client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let der = der.map_err(|e| Error::Tls(format!("manager CA PEM: {e}")))?;
        roots
            .add(der)
            .map_err(|e| Error::Tls(format!("manager CA refused: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls(
            "the manager CA file holds no certificate".into(),
        ));
    }
    let (chain, key) = chain_and_key(cert_pem, key_pem)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Requires a client certificate and proof of its key; identity is decided by fingerprint.
#[derive(Debug)]
pub struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[TlsName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        // Only a certificate that parses; who it is comes later, by fingerprint.
        x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
