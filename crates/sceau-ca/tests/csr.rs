//! CSR checks (RFC 8555 §7.4, R37/R38): what finalize accepts and what it refuses, and why.

mod common;

use common::*;
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, SanType,
};
use sceau_ca::csr::{CsrError, parse_and_check};
use sceau_wire::Identifier;

fn ids(list: &[Identifier]) -> std::collections::BTreeSet<Identifier> {
    list.iter().cloned().collect()
}

#[test]
fn accepts_every_supported_key_type() {
    let cases = [
        (
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
            "ECDSA P-256",
        ),
        (
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
            "ECDSA P-384",
        ),
        (KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap(), "RSA 2048"),
        (KeyPair::generate_for(&PKCS_ED25519).unwrap(), "Ed25519"),
    ];
    for (key, description) in cases {
        let parsed = parse_and_check(&csr(&key, &["a.example.org"], None)).unwrap();
        assert_eq!(parsed.key_description, description);
        assert_eq!(
            parsed.public_key_spki_der,
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
        assert_eq!(parsed.identifiers, ids(&[Identifier::dns("a.example.org")]));
    }
}

#[test]
fn collects_names_from_san_and_common_name_in_canonical_form() {
    let key = KeyPair::generate().unwrap();
    let der = csr(
        &key,
        &["WWW.Example.ORG", "10.0.0.7", "2001:db8:0::1"],
        Some("Mail.Example.ORG"),
    );
    let parsed = parse_and_check(&der).unwrap();
    assert_eq!(
        parsed.identifiers,
        ids(&[
            Identifier::dns("www.example.org"),
            Identifier::dns("mail.example.org"),
            Identifier::ip("10.0.0.7"),
            Identifier::ip("2001:db8::1"),
        ])
    );
    // A CN that is an IP address names an ip identifier; duplicates collapse.
    let parsed = parse_and_check(&csr(&key, &["192.0.2.1"], Some("192.0.2.1"))).unwrap();
    assert_eq!(parsed.identifiers, ids(&[Identifier::ip("192.0.2.1")]));
    // Only a CN, no SAN at all.
    let parsed = parse_and_check(&csr(&key, &[], Some("only-cn.example"))).unwrap();
    assert_eq!(
        parsed.identifiers,
        ids(&[Identifier::dns("only-cn.example")])
    );
}

#[test]
fn accepts_openssl_made_csrs_including_rsa_pss() {
    let dir = tempfile::tempdir().unwrap();
    let der = openssl_csr(
        dir.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        &["-subj", "/CN=pss.example", "-sha384"],
    );
    assert_eq!(
        parse_and_check(&der).unwrap().key_description,
        "ECDSA P-384"
    );
    let der = openssl_csr(
        dir.path(),
        &["-newkey", "rsa:3072"],
        &[
            "-subj",
            "/CN=pss.example",
            "-addext",
            "subjectAltName=DNS:pss.example,IP:127.0.0.1",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ],
    );
    const RSASSA_PSS_OID: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
    ];
    assert!(
        der.windows(RSASSA_PSS_OID.len())
            .any(|w| w == RSASSA_PSS_OID),
        "openssl did not sign with PSS"
    );
    let parsed = parse_and_check(&der).unwrap();
    assert_eq!(parsed.key_description, "RSA 3072");
    assert_eq!(
        parsed.identifiers,
        ids(&[Identifier::dns("pss.example"), Identifier::ip("127.0.0.1")])
    );
}

#[test]
fn refuses_a_tampered_signature() {
    let key = KeyPair::generate().unwrap();
    let mut der = csr(&key, &["a.example.org"], None);
    let last = der.len() - 2;
    der[last] ^= 0x01;
    assert_eq!(parse_and_check(&der), Err(CsrError::BadSignature));
}

#[test]
fn refuses_a_tampered_name() {
    // Same signature, a name changed after signing: the proof of possession no longer covers it.
    for key in [
        KeyPair::generate().unwrap(),
        KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap(),
    ] {
        let mut der = csr(&key, &["good.example.org"], None);
        let at = der.windows(4).position(|w| w == b"good").unwrap();
        der[at..at + 4].copy_from_slice(b"evil");
        assert_eq!(parse_and_check(&der), Err(CsrError::BadSignature));
    }
}

#[test]
fn refuses_weak_and_unsupported_keys() {
    let dir = tempfile::tempdir().unwrap();
    let der = openssl_csr(
        dir.path(),
        &["-newkey", "rsa:1024"],
        &["-subj", "/CN=weak.example", "-sha256"],
    );
    let err = parse_and_check(&der).unwrap_err();
    assert_eq!(err, CsrError::WeakKey { bits: 1024 });
    assert!(err.to_string().contains("too weak"), "{err}");

    let der = openssl_csr(
        dir.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
        &["-subj", "/CN=p521.example", "-sha512"],
    );
    assert!(
        matches!(parse_and_check(&der), Err(CsrError::UnsupportedKey(_))),
        "{:?}",
        parse_and_check(&der)
    );

    let der = openssl_csr(
        dir.path(),
        &["-newkey", "ed448"],
        &["-subj", "/CN=ed448.example"],
    );
    assert!(matches!(
        parse_and_check(&der),
        Err(CsrError::UnsupportedKey(_))
    ));
}

#[test]
fn refuses_sha1_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let der = openssl_csr(
        dir.path(),
        &["-newkey", "rsa:2048"],
        &["-subj", "/CN=sha1.example", "-sha1"],
    );
    assert!(matches!(
        parse_and_check(&der),
        Err(CsrError::UnsupportedSignatureAlgorithm(_))
    ));
}

#[test]
fn refuses_a_csr_without_names() {
    let key = KeyPair::generate().unwrap();
    assert_eq!(
        parse_and_check(&csr(&key, &[], None)),
        Err(CsrError::NoNames)
    );
}

#[test]
fn refuses_other_san_types_wildcards_and_bad_names() {
    let key = KeyPair::generate().unwrap();
    let email = csr_with_san_types(
        &key,
        vec![
            SanType::DnsName("a.example".try_into().unwrap()),
            SanType::Rfc822Name("admin@example.org".try_into().unwrap()),
        ],
    );
    assert!(matches!(
        parse_and_check(&email),
        Err(CsrError::UnsupportedSanType(_))
    ));
    let uri = csr_with_san_types(
        &key,
        vec![SanType::URI("https://a.example/".try_into().unwrap())],
    );
    assert!(matches!(
        parse_and_check(&uri),
        Err(CsrError::UnsupportedSanType(_))
    ));

    assert_eq!(
        parse_and_check(&csr(&key, &["*.example.org"], None)),
        Err(CsrError::Wildcard("*.example.org".into()))
    );
    assert!(matches!(
        parse_and_check(&csr(&key, &["bad_name.example"], None)),
        Err(CsrError::BadName { .. })
    ));
    assert!(matches!(
        parse_and_check(&csr(&key, &["a.example"], Some("not a hostname"))),
        Err(CsrError::BadName { .. })
    ));
}

#[test]
fn refuses_garbage_truncated_and_padded_der() {
    assert!(matches!(
        parse_and_check(b"not a csr at all"),
        Err(CsrError::Malformed(_))
    ));
    assert!(matches!(parse_and_check(&[]), Err(CsrError::Malformed(_))));
    let key = KeyPair::generate().unwrap();
    let der = csr(&key, &["a.example"], None);
    assert!(matches!(
        parse_and_check(&der[..der.len() - 10]),
        Err(CsrError::Malformed(_))
    ));
    let mut padded = der.clone();
    padded.push(0);
    assert!(matches!(
        parse_and_check(&padded),
        Err(CsrError::Malformed(_))
    ));
    // A certificate is not a CSR.
    let cert = rcgen::CertificateParams::new(vec!["a.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert!(parse_and_check(cert.der()).is_err());
}

#[test]
fn every_error_message_is_one_line() {
    let errors = [
        CsrError::Malformed("x".into()),
        CsrError::BadSignature,
        CsrError::UnsupportedSignatureAlgorithm("1.2.3".into()),
        CsrError::SignatureKeyMismatch {
            alg: "1.2".into(),
            key: "Ed25519".into(),
        },
        CsrError::WeakKey { bits: 1024 },
        CsrError::UnsupportedKey("RSA 16384".into()),
        CsrError::BadKey("x".into()),
        CsrError::NoNames,
        CsrError::UnsupportedSanType("an otherName".into()),
        CsrError::BadName {
            name: "a b".into(),
            reason: "spaces".into(),
        },
        CsrError::Wildcard("*.a".into()),
    ];
    for e in errors {
        let text = e.to_string();
        assert!(!text.contains('\n') && text.len() > 10, "{text}");
    }
}
