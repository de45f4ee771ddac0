//! The signer on another host, reached over mutual TLS (agency guide R32: the link between the
//! front end and the signer is authenticated and encrypted both ways).
//!
//! One deployment CA (`signer_tls_ca`) certifies both ends: the signer's certificate (server
//! authentication, for the name in the front end's `signer_address`) and each front end's
//! (client authentication). Each side's own certificate and key are `signer_tls_cert` and
//! `signer_tls_key` in its own configuration.
//!
//! Invariants:
//! - The signer reads nothing from a peer whose certificate does not chain to the deployment
//!   CA: rustls ends the handshake first. A handshake is given [`HANDSHAKE_TIMEOUT`], and
//!   sessions are capped at [`sceau_ca::remote::MAX_SESSIONS`], so a silent or flooding peer
//!   holds nothing for long.
//! - TLS 1.3 only: both ends are ours.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sceau_ca::CaError;
use sceau_ca::remote::{DialFn, OpenSession, Stream};

/// How long a TLS handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of one end.
pub struct TlsFiles<'a> {
    /// The settings' prefix in messages: `signer_tls`, `validator_tls`.
    pub label: &'static str,
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load(files: &TlsFiles<'_>) -> Result<LoadedTls, String> {
    let ca_pem = std::fs::read(files.ca).map_err(|e| {
        format!(
            "{}_ca: cannot read {}: {e}",
            files.label,
            files.ca.display()
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        let cert = cert.map_err(|e| format!("{}_ca {}: {e}", files.label, files.ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}_ca {}: {e}", files.label, files.ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{}_ca {} holds no certificate",
            files.label,
            files.ca.display()
        ));
    }
    let chain_pem = std::fs::read(files.cert).map_err(|e| {
        format!(
            "{}_cert: cannot read {}: {e}",
            files.label,
            files.cert.display()
        )
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}_cert {}: {e}", files.label, files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}_cert {} holds no certificate",
            files.label,
            files.cert.display()
        ));
    }
    let key_pem =
        sceau_ca::read_private_file(files.key).map_err(|e| format!("{}_key: {e}", files.label))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}_key {}: {e}", files.label, files.key.display()))?;
    Ok(LoadedTls {
        roots: Arc::new(roots),
        chain,
        key,
    })
}

struct LoadedTls {
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The signer's side: accepts only peers certified by the deployment CA.
pub fn acceptor(files: &TlsFiles<'_>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let t = load(files)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(t.roots, provider())
        .build()
        .map_err(|e| format!("{}_ca: {e}", files.label))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(t.chain, t.key)
        .map_err(|e| format!("{0}_cert/{0}_key: {e}", files.label))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves sessions over mutual TLS on `listener`, for ever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    open: OpenSession,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(sceau_ca::remote::MAX_SESSIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "signing listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "signing listener: too many sessions; closed");
            continue;
        };
        let (acceptor, open) = (acceptor.clone(), open.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "signing listener: refused a peer (TLS)");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "signing listener: handshake timed out");
                    return;
                }
            };
            let (input, output) = tokio::io::split(tls);
            sceau_ca::remote::serve_session(input, output, &open, &peer.to_string()).await;
        });
    }
}

/// The front end's side: a dialer for `address` (`host:port`) that checks the signer's
/// certificate for `host` and shows its own.
pub fn dialer(address: &str, files: &TlsFiles<'_>) -> Result<DialFn, String> {
    let (host, _) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("signer_address {address:?} is not host:port"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = ServerName::try_from(host.clone())
        .map_err(|_| format!("signer_address {address:?}: {host:?} is not a host name"))?;
    let t = load(files)?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(t.roots)
        .with_client_auth_cert(t.chain, t.key)
        .map_err(|e| format!("{0}_cert/{0}_key: {e}", files.label))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let address = address.to_owned();
    Ok(Box::new(move || {
        let (connector, name, address) = (connector.clone(), name.clone(), address.clone());
        Box::pin(async move {
            let unavailable =
                |e: String| CaError::Unavailable(format!("signing service at {address}: {e}"));
            let tcp =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio::net::TcpStream::connect(&address))
                    .await
                    .map_err(|_| unavailable("connection timed out".into()))?
                    .map_err(|e| unavailable(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| unavailable("TLS handshake timed out".into()))?
                // A certificate the deployment CA did not issue for this name is a refusal to
                // start, not a reason to retry.
                .map_err(|e| CaError::Refused(format!("signing service at {address}: TLS: {e}")))?;
            let (read, write) = tokio::io::split(tls);
            let stream: Stream = (Box::new(read), Box::new(write));
            Ok(stream)
        })
    }))
}

/// Binds the signer's TCP listener.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (--signer-listen): {e}"))
}
