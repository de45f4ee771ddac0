//! tls-alpn-01 (RFC 8737): a TLS listener that, for connections negotiating ALPN
//! `acme-tls/1`, presents a self-signed certificate for the SNI name carrying the
//! acmeIdentifier extension with SHA-256 of the key authorization (§3).
//!
//! Invariants: only `acme-tls/1` is offered, so the listener never serves application data;
//! an unknown SNI gets no certificate (handshake failure). IP identifiers are looked up by
//! their reverse-DNS SNI (RFC 8738 §6) and get an iPAddress SAN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
struct Certs(RwLock<HashMap<String, Arc<CertifiedKey>>>);

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let alpn_ok = hello
            .alpn()
            .is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
        let sni = hello.server_name()?.to_ascii_lowercase();
        if !alpn_ok {
            return None;
        }
        self.0
            .read()
            .expect("certs")
            .get(sni.trim_end_matches('.'))
            .cloned()
    }
}

/// The SNI an ACME server sends for an identifier (RFC 8737 §3, RFC 8738 §6).
pub fn sni_for(identifier: &str) -> String {
    match identifier.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(IpAddr::V6(v6)) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa"
        }
        Err(_) => identifier.to_ascii_lowercase(),
    }
}

/// The validation certificate for one identifier.
pub fn challenge_cert(identifier: &str, key_authorization: &str) -> Result<CertifiedKey> {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![match identifier.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            identifier
                .to_owned()
                .try_into()
                .map_err(|_| Error::Config(format!("{identifier} is not a DNS name")))?,
        ),
    }];
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest.as_ref())];
    let key = KeyPair::generate().map_err(|e| Error::Key(format!("tls-alpn-01 key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Key(format!("tls-alpn-01 certificate: {e}")))?;
    // Not CertifiedKey::from_der: its consistency check parses the certificate with webpki,
    // which rejects the critical acmeIdentifier extension that RFC 8737 §3 requires.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .map_err(|e| Error::Tls(format!("tls-alpn-01 key: {e}")))?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing_key,
    ))
}

/// A running tls-alpn-01 listener. Dropping it stops it.
pub struct TlsAlpnListener {
    pub addr: SocketAddr,
    certs: Arc<Certs>,
    task: JoinHandle<()>,
}

impl Drop for TlsAlpnListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsAlpnListener {
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = super::http::bind_dual(addr).await.map_err(|e| {
            Error::Config(format!(
                "cannot listen on {addr} for tls-alpn-01: {e} (port 443 needs root or CAP_NET_BIND_SERVICE)"
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("listener address"))?;
        let certs = Arc::new(Certs::default());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // RFC 8737 §3: the handshake is the whole exchange; close right after.
                    if let Ok(Ok(mut tls)) = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    }
                });
            }
        });
        Ok(TlsAlpnListener { addr, certs, task })
    }

    pub fn add(&self, identifier: &str, key_authorization: &str) -> Result<()> {
        let cert = challenge_cert(identifier, key_authorization)?;
        self.certs
            .0
            .write()
            .expect("certs")
            .insert(sni_for(identifier), Arc::new(cert));
        Ok(())
    }

    pub fn remove(&self, identifier: &str) {
        self.certs
            .0
            .write()
            .expect("certs")
            .remove(&sni_for(identifier));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(sni_for("192.0.2.1"), "1.2.0.192.in-addr.arpa");
        assert!(sni_for("2001:db8::1").starts_with("1.0.0.0."));
        assert!(sni_for("2001:db8::1").ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
        assert_eq!(sni_for("A.Example"), "a.example");
    }
}
