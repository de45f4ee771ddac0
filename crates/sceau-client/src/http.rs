//! The HTTPS client the ACME conversation runs over.
//!
//! Invariant: with a CA bundle, only the certificates of that bundle are trusted (a private
//! PKI's ACME server is usually not in the system store, and trusting both would widen who can
//! impersonate it); without one, the platform's trust store is used. TLS always runs on the
//! aws-lc-rs provider.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// How to reach the ACME server.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// PEM text of the roots to trust instead of the system store.
    pub ca_bundle_pem: Option<String>,
    /// Whole-request timeout; 30 seconds when `None`.
    pub timeout: Option<Duration>,
}

pub const USER_AGENT: &str = concat!("sceau/", env!("CARGO_PKG_VERSION"));

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client configuration trusting exactly the certificates in `pem`.
pub fn tls_config_from_bundle(pem: &str) -> Result<rustls::ClientConfig> {
    let ders = sceau_wire::key::pem_decode_all(pem, "CERTIFICATE");
    if ders.is_empty() {
        return Err(Error::Tls(
            "the CA bundle contains no PEM CERTIFICATE block".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for der in ders {
        roots
            .add(rustls_pki_types::CertificateDer::from(der))
            .map_err(|e| Error::Tls(format!("CA bundle certificate refused: {e}")))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Builds the HTTP client used for every ACME request.
pub fn build_client(options: &HttpOptions) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(options.timeout.unwrap_or(Duration::from_secs(30)))
        .connect_timeout(Duration::from_secs(10))
        // ACME servers never need redirects; following one would re-target a signed request.
        .redirect(reqwest::redirect::Policy::none());
    let builder = match &options.ca_bundle_pem {
        Some(pem) => builder.use_preconfigured_tls(tls_config_from_bundle(pem)?),
        None => {
            // reqwest's platform verifier needs a process-wide provider; an embedding program
            // may have installed its own already, which is fine.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            builder
        }
    };
    builder
        .build()
        .map_err(|e| Error::Tls(format!("HTTP client: {e}")))
}
