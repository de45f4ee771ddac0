//! Shared fixtures: a knotd per test, real HTTP and TLS servers on loopback.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sceau_testkit::KnotDns;
use sceau_validate::{AddressPolicy, Validator, ValidatorConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const KEY_AUTH: &str =
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
pub const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
pub const OUR_CA: &str = "ourca.example";
pub const ACCOUNT: &str = "https://ca.test/acme/acct/42";

pub fn knot() -> KnotDns {
    KnotDns::start("test.").expect("knotd starts")
}

/// Validation through `knot`, allowed to reach the loopback responders (the default refuses
/// loopback; tests of that refusal set their own policy).
pub fn config(knot: &KnotDns) -> ValidatorConfig {
    ValidatorConfig {
        dns_server: Some(knot.addr),
        http01_port: 80,
        tlsalpn01_port: 443,
        timeout: Duration::from_secs(5),
        caa_identities: vec![OUR_CA.to_owned()],
        address_policy: loopback_allowed(),
    }
}

pub fn loopback_allowed() -> AddressPolicy {
    AddressPolicy::default()
        .allow("127.0.0.0/8".parse().unwrap())
        .allow("::1".parse().unwrap())
}

pub fn validator(cfg: ValidatorConfig) -> Validator {
    Validator::new(cfg).expect("validator builds")
}

/// A listener on a free loopback port.
pub async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind((LOCALHOST, 0))
        .await
        .expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Serves `router` on `listener` until the test ends.
pub fn serve_http(listener: TcpListener, router: axum::Router) {
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("HTTP server");
    });
}

/// What a tls-alpn-01 responder serves.
pub struct TlsResponder {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub alpn: Vec<Vec<u8>>,
    pub tls12_only: bool,
}

/// A self-signed certificate for `san` (a DNS name or IP) with `acme_ext` as extension.
pub fn acme_cert(san: &str, acme_ext: Option<rcgen::CustomExtension>) -> (Vec<u8>, Vec<u8>) {
    acme_cert_multi(&[san], acme_ext)
}

pub fn acme_cert_multi(
    sans: &[&str],
    acme_ext: Option<rcgen::CustomExtension>,
) -> (Vec<u8>, Vec<u8>) {
    acme_cert_with(sans, acme_ext, &rcgen::PKCS_ECDSA_P256_SHA256)
}

pub fn acme_cert_with(
    sans: &[&str],
    acme_ext: Option<rcgen::CustomExtension>,
    alg: &'static rcgen::SignatureAlgorithm,
) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName((*s).try_into().unwrap()),
        })
        .collect();
    params.custom_extensions.extend(acme_ext);
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

pub fn good_ext(key_auth: &str) -> rcgen::CustomExtension {
    rcgen::CustomExtension::new_acme_identifier(&sceau_validate::tls_alpn01_digest(key_auth))
}

/// Serves TLS on `listener`; each handshake's SNI is sent on the returned channel.
pub fn serve_tls(
    listener: TcpListener,
    responder: TlsResponder,
) -> mpsc::UnboundedReceiver<Option<String>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // with_single_cert would refuse the critical acmeIdentifier extension (webpki does not know
    // it), so the certificate is handed over as is.
    let key = provider
        .key_provider
        .load_private_key(rustls_pki_types::PrivateKeyDer::Pkcs8(responder.key.into()))
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(
        vec![rustls_pki_types::CertificateDer::from(responder.cert)],
        key,
    );
    let versions: &[&rustls::SupportedProtocolVersion] = if responder.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    cfg.alpn_protocols = responder.alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(tls.get_ref().1.server_name().map(str::to_owned));
                }
            });
        }
    });
    rx
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(LOCALHOST, port)
}

/// A minimal HTTPS responder: any request gets `200 OK` with `body`, over TLS with a self-signed
/// certificate for `name` (which the validator must accept, RFC 8555 §8.3).
pub fn serve_https(listener: TcpListener, name: &str, body: &'static str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cert, key) = acme_cert(name, None);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls_pki_types::CertificateDer::from(cert)],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
}
