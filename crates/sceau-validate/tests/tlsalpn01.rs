//! tls-alpn-01 against real rustls servers with rcgen certificates, names resolved by knotd.

mod common;

use common::*;
use sceau_wire::{Identifier, ProblemType};

const ALPN: &[u8] = b"acme-tls/1";

async fn responder(
    san: &[&str],
    ext: Option<rcgen::CustomExtension>,
    alpn: &[&[u8]],
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
    let (cert, key) = acme_cert_multi(san, ext);
    let (l, port) = listener().await;
    let rx = serve_tls(
        l,
        TlsResponder {
            cert,
            key,
            alpn: alpn.iter().map(|a| a.to_vec()).collect(),
            tls12_only: false,
        },
    );
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_certificate_validates_with_sni() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let (port, mut sni) = responder(&["www.test"], Some(good_ext(KEY_AUTH)), &[ALPN]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    v.tls_alpn01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .expect("valid");
    assert_eq!(sni.recv().await.unwrap().as_deref(), Some("www.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_is_incorrect_response() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let (port, _sni) = responder(
        &["www.test"],
        Some(good_ext("some.other-key-auth")),
        &[ALPN],
    )
    .await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v
        .tls_alpn01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(err.detail.contains("SHA-256"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_shape_is_checked() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let id = Identifier::dns("www.test");

    // No acmeIdentifier extension.
    let (port, _a) = responder(&["www.test"], None, &[ALPN]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(err.detail.contains("no acmeIdentifier"), "{err}");

    // The extension, but not critical.
    let mut ext = good_ext(KEY_AUTH);
    ext.set_criticality(false);
    let (port, _b) = responder(&["www.test"], Some(ext), &[ALPN]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(err.detail.contains("not critical"), "{err}");

    // Another name in the SAN.
    let (port, _c) = responder(&["other.test"], Some(good_ext(KEY_AUTH)), &[ALPN]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(
        err.detail.contains("does not name exactly www.test"),
        "{err}"
    );
    // What the peer's certificate says is not repeated back.
    assert!(!err.detail.contains("other.test"), "{err}");

    // The right name plus another one: must be exactly one (RFC 8737 §3).
    let (port, _d) = responder(
        &["www.test", "extra.test"],
        Some(good_ext(KEY_AUTH)),
        &[ALPN],
    )
    .await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(!err.detail.contains("extra.test"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_must_be_acme_tls() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let id = Identifier::dns("www.test");
    // Server without ALPN: handshake completes, nothing negotiated.
    let (port, _a) = responder(&["www.test"], Some(good_ext(KEY_AUTH)), &[]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Tls, "{err}");
    assert!(err.detail.contains("ALPN"), "{err}");
    // Server speaking only h2: refuses our acme-tls/1 offer.
    let (port, _b) = responder(&["www.test"], Some(good_ext(KEY_AUTH)), &[b"h2"]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Tls, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_tls_or_not_listening() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let id = Identifier::dns("www.test");
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: sceau_testkit::free_port(),
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");

    // A plain HTTP server on the port.
    let (l, port) = listener().await;
    serve_http(l, axum::Router::new());
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Tls, "{err}");

    // Name not in DNS.
    let err = v
        .tls_alpn01(&Identifier::dns("nothere.test"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Dns, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_identifier_uses_reverse_name_sni_and_ip_san() {
    let knot = knot();
    let id = Identifier::ip("127.0.0.1");
    let (port, mut sni) = responder(&["127.0.0.1"], Some(good_ext(KEY_AUTH)), &[ALPN]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    v.tls_alpn01(&id, KEY_AUTH).await.expect("valid");
    // RFC 8738 §6.
    assert_eq!(
        sni.recv().await.unwrap().as_deref(),
        Some("1.0.0.127.in-addr.arpa")
    );

    // A DNS SAN does not stand for an IP identifier.
    let (port, _b) = responder(&["localhost"], Some(good_ext(KEY_AUTH)), &[ALPN]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");

    // Nor does another IP.
    let (port, _c) = responder(&["127.0.0.2"], Some(good_ext(KEY_AUTH)), &[ALPN]).await;
    let v = validator(sceau_validate::ValidatorConfig {
        tlsalpn01_port: port,
        ..config(&knot)
    });
    let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(
        err.detail.contains("does not name exactly 127.0.0.1"),
        "{err}"
    );
    assert!(!err.detail.contains("127.0.0.2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_types_and_tls_versions() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let id = Identifier::dns("www.test");
    let algs: [&'static rcgen::SignatureAlgorithm; 4] = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
    ];
    for alg in algs {
        for tls12_only in [false, true] {
            let (cert, key) = acme_cert_with(&["www.test"], Some(good_ext(KEY_AUTH)), alg);
            let (l, port) = listener().await;
            let _sni = serve_tls(
                l,
                TlsResponder {
                    cert,
                    key,
                    alpn: vec![ALPN.to_vec()],
                    tls12_only,
                },
            );
            let v = validator(sceau_validate::ValidatorConfig {
                tlsalpn01_port: port,
                ..config(&knot)
            });
            v.tls_alpn01(&id, KEY_AUTH)
                .await
                .unwrap_or_else(|e| panic!("{alg:?} tls12_only={tls12_only}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_another_key_fails_the_handshake() {
    // The responder presents a good certificate but signs with a different key: it does not hold
    // the certificate's key, so the handshake signature check must fail.
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let (cert, _) = acme_cert("www.test", Some(good_ext(KEY_AUTH)));
    let (_, other_key) = acme_cert("www.test", None);
    for tls12_only in [false, true] {
        let (l, port) = listener().await;
        let _sni = serve_tls(
            l,
            TlsResponder {
                cert: cert.clone(),
                key: other_key.clone(),
                alpn: vec![ALPN.to_vec()],
                tls12_only,
            },
        );
        let v = validator(sceau_validate::ValidatorConfig {
            tlsalpn01_port: port,
            ..config(&knot)
        });
        let err = v
            .tls_alpn01(&Identifier::dns("www.test"), KEY_AUTH)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ProblemType::Tls, "tls12_only={tls12_only}: {err}");
        assert!(err.detail.contains("BadSignature"), "{err}");
    }
}
