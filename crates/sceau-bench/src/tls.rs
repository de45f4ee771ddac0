//! The TLS client configuration every virtual client uses to reach the CA.
//!
//! Invariant: only the roots of `--ca-bundle` are trusted (never the system store), so the
//! bench measures exactly the CA under test; the provider is aws-lc-rs, as in the server.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::BenchError;

/// Builds the rustls configuration from a PEM bundle of trust anchors.
///
/// ALPN offers only `http/1.1`: ACME clients in the field mostly speak it, and it keeps one
/// connection per virtual client so that concurrency means concurrent connections.
pub fn client_config(ca_bundle: &Path) -> Result<rustls::ClientConfig, BenchError> {
    let bad = |reason: String| BenchError::CaBundle {
        path: ca_bundle.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_bundle).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
