//! The server's own HTTPS certificate: rustls completes a real handshake with it, it is reused
//! while current, and replaced when names change or it nears expiry.

mod common;

use std::sync::Arc;

use common::*;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sceau_ca::{Ca, CaKeyKind, IssueRequest, Profile};
use sceau_wire::Identifier;
use time::{Duration, OffsetDateTime};

/// A full TLS 1.3 handshake in memory between a rustls server using (chain, key) and a rustls
/// client trusting only `root_der`, asking for `name`.
fn handshake(
    root_der: &[u8],
    chain_pem: &str,
    key_pem: &str,
    name: &str,
) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        sceau_wire::key::pem_decode_all(chain_pem, "CERTIFICATE")
            .into_iter()
            .map(CertificateDer::from)
            .collect();
    let key = PrivateKeyDer::try_from(sceau_wire::key::pem_decode(key_pem, "PRIVATE KEY").unwrap())
        .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root_der.to_vec())).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut server = rustls::ServerConnection::new(Arc::new(server_config))?;
    let mut client = rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from(name.to_owned()).unwrap(),
    )?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn rustls_accepts_the_server_certificate_for_its_names_only() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(&tmp.path().join("ca"), CaKeyKind::P256, "TLS").unwrap();
    let state = tmp.path().join("tls");
    let names = vec!["sceau.internal".to_string(), "127.0.0.1".to_string()];
    let (chain, key) = ca.server_tls(&state, &names).unwrap();
    assert_eq!(mode(&state.join("server.key")), 0o600);
    assert_eq!(
        std::fs::read_to_string(state.join("server.pem")).unwrap(),
        chain
    );
    assert_eq!(
        std::fs::read_to_string(state.join("server.key")).unwrap(),
        key
    );
    assert_eq!(
        sceau_wire::key::pem_decode_all(&chain, "CERTIFICATE").len(),
        2
    );

    handshake(ca.root_der(), &chain, &key, "sceau.internal").unwrap();
    handshake(ca.root_der(), &chain, &key, "127.0.0.1").unwrap();
    let err = handshake(ca.root_der(), &chain, &key, "other.internal").unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
    // Another CA's root does not trust it.
    let stranger =
        Ca::open_or_create(&tmp.path().join("other-ca"), CaKeyKind::P256, "Other").unwrap();
    assert!(handshake(stranger.root_der(), &chain, &key, "sceau.internal").is_err());

    // And openssl agrees, with the purpose a TLS server needs.
    let leaf = sceau_wire::key::pem_decode(&chain, "CERTIFICATE").unwrap();
    let out = openssl_verify(
        &tmp.path().join("ca"),
        &sceau_wire::key::pem_encode("CERTIFICATE", &leaf),
        &[
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "sceau.internal",
        ],
    );
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
}

#[test]
fn the_server_certificate_is_reused_then_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P384, "Reuse").unwrap();
    let names = vec!["a.internal".to_string(), "::1".to_string()];
    let first = ca.server_tls(tmp.path(), &names).unwrap();
    // Same names, any order or spelling: reused.
    let reordered = vec!["0:0:0:0:0:0:0:1".to_string(), "A.internal".to_string()];
    assert_eq!(ca.server_tls(tmp.path(), &reordered).unwrap(), first);
    // Reopening the CA does not change that.
    let reopened = Ca::open_or_create(tmp.path(), CaKeyKind::P384, "Reuse").unwrap();
    assert_eq!(reopened.server_tls(tmp.path(), &names).unwrap(), first);

    // New names: new key and certificate.
    let second = ca
        .server_tls(tmp.path(), &["b.internal".to_string()])
        .unwrap();
    assert_ne!(second.0, first.0);
    assert_ne!(second.1, first.1);
    handshake(ca.root_der(), &second.0, &second.1, "b.internal").unwrap();

    // A certificate with 10 days left is replaced; one with 60 days left is kept.
    for (days_left, replaced) in [(10, true), (60, false)] {
        let key = KeyPair::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let issued = ca
            .sign(&IssueRequest {
                public_key_spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
                identifiers: vec![Identifier::dns("b.internal")],
                not_before: now - Duration::days(30),
                not_after: now + Duration::days(days_left),
                profile: Profile::Server,
                serial: None,
                crl_shard: None,
                csr_der: None,
                gate: None,
                resume: None,
            })
            .unwrap();
        std::fs::write(tmp.path().join("server.pem"), &issued.chain_pem).unwrap();
        std::fs::write(tmp.path().join("server.key"), key.serialize_pem()).unwrap();
        let (chain, _) = ca
            .server_tls(tmp.path(), &["b.internal".to_string()])
            .unwrap();
        assert_eq!(chain != issued.chain_pem, replaced, "{days_left} days left");
    }

    // A key that does not match the certificate is replaced too.
    std::fs::write(
        tmp.path().join("server.key"),
        KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let (chain, key) = ca
        .server_tls(tmp.path(), &["b.internal".to_string()])
        .unwrap();
    handshake(ca.root_der(), &chain, &key, "b.internal").unwrap();

    // Garbage in the files is replaced, not fatal.
    std::fs::write(tmp.path().join("server.pem"), "junk").unwrap();
    let (chain, key) = ca
        .server_tls(tmp.path(), &["b.internal".to_string()])
        .unwrap();
    handshake(ca.root_der(), &chain, &key, "b.internal").unwrap();

    assert!(ca.server_tls(tmp.path(), &[]).is_err());
    assert!(
        ca.server_tls(tmp.path(), &["*.internal".to_string()])
            .is_err()
    );
}
