//! The file-key CA: creation, reuse, partial state, and the profile of issued certificates as
//! the real openssl sees it.

mod common;

use common::*;
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use sceau_ca::csr::parse_and_check;
use sceau_ca::inspect::{cert_info, jwk_of_spki, spki_der_candidates, spki_matches_jwk};
use sceau_ca::{Ca, CaError, CaKeyKind, IssueRequest, Issued, Profile, Signer};
use sceau_wire::{AccountKey, Identifier, KeyKind};
use time::{Duration, OffsetDateTime};

const FILES: [&str; 4] = [
    "root.pem",
    "root.key",
    "intermediate.pem",
    "intermediate.key",
];

fn request(spki: Vec<u8>, identifiers: Vec<Identifier>, profile: Profile) -> IssueRequest {
    let now = OffsetDateTime::now_utc();
    IssueRequest {
        public_key_spki_der: spki,
        identifiers,
        not_before: now - Duration::minutes(1),
        not_after: now + Duration::days(90) - Duration::minutes(1),
        profile,
        serial: None,
        crl_shard: None,
        csr_der: None,
        gate: None,
        resume: None,
    }
}

async fn issue_for_csr(ca: &Ca, csr_der: &[u8], profile: Profile) -> Issued {
    let parsed = parse_and_check(csr_der).unwrap();
    let req = request(
        parsed.public_key_spki_der,
        parsed.identifiers.into_iter().collect(),
        profile,
    );
    ca.issue(req).await.unwrap()
}

fn section<'a>(text: &'a str, header: &str) -> &'a str {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("no {header:?} in:\n{text}"));
    let rest = &text[start..];
    let end = rest[header.len()..]
        .find("X509v3")
        .map(|i| i + header.len())
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn creates_a_ca_with_private_keys_and_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = Ca::open_or_create(&dir, CaKeyKind::P256, "Example Org").unwrap();
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert_eq!(mode(&dir.join("intermediate.key")), 0o600);
    assert_eq!(mode(&dir.join("root.pem")), 0o644);
    // Nothing but the four files and the manifest (no leftover temp files).
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca.json",
            "intermediate.key",
            "intermediate.pem",
            "root.key",
            "root.pem"
        ]
    );

    let fp = openssl(
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            dir.join("root.pem").to_str().unwrap(),
        ],
        None,
    );
    assert!(fp.ok);
    assert_eq!(
        fp.stdout.trim().rsplit('=').next().unwrap(),
        ca.root_fingerprint_sha256()
    );

    let again = Ca::open_or_create(&dir, CaKeyKind::P256, "Other Org").unwrap();
    assert_eq!(
        again.root_fingerprint_sha256(),
        ca.root_fingerprint_sha256()
    );
    assert_eq!(again.issuer_chain_pem(), ca.issuer_chain_pem());
    assert_eq!(
        std::fs::read_to_string(dir.join("root.pem")).unwrap(),
        ca.root_pem()
    );

    let root = x509_text(ca.root_der());
    assert!(
        root.contains("Subject: O = Example Org, CN = Example Org Sceau Root CA"),
        "{root}"
    );
    assert!(
        section(&root, "X509v3 Basic Constraints").contains("critical"),
        "{root}"
    );
    assert!(
        section(&root, "X509v3 Basic Constraints").contains("CA:TRUE"),
        "{root}"
    );
    let int = x509_text(ca.intermediate_der());
    assert!(
        int.contains("Subject: O = Example Org, CN = Example Org Sceau Issuing CA"),
        "{int}"
    );
    assert!(int.contains("CA:TRUE, pathlen:0"), "{int}");
    assert!(
        section(&int, "X509v3 Key Usage").contains("Certificate Sign, CRL Sign"),
        "{int}"
    );
    let info = cert_info(ca.root_der()).unwrap();
    let life = info.not_after - info.not_before;
    assert!(
        life >= Duration::days(3652) && life <= Duration::days(3654),
        "{life}"
    );
    let info = cert_info(ca.intermediate_der()).unwrap();
    let life = info.not_after - info.not_before;
    assert!(
        life >= Duration::days(1826) && life <= Duration::days(1827),
        "{life}"
    );

    // openssl agrees the intermediate chains to the root.
    let out = openssl(
        &[
            "verify",
            "-CAfile",
            dir.join("root.pem").to_str().unwrap(),
            dir.join("intermediate.pem").to_str().unwrap(),
        ],
        None,
    );
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
}

#[tokio::test]
async fn every_ca_key_kind_issues_verifiable_certificates() {
    for (kind, sig) in [
        (CaKeyKind::P256, "ecdsa-with-SHA256"),
        (CaKeyKind::P384, "ecdsa-with-SHA384"),
        (CaKeyKind::Rsa3072, "sha256WithRSAEncryption"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::open_or_create(tmp.path(), kind, "Kinds").unwrap();
        assert_eq!(ca.key_kind(), Some(kind));
        let key = KeyPair::generate().unwrap();
        let issued = issue_for_csr(&ca, &csr(&key, &["kind.example"], None), Profile::Server).await;
        let text = x509_text(&issued.der);
        assert!(
            text.contains(&format!("Signature Algorithm: {sig}")),
            "{kind}: {text}"
        );
        let out = openssl_verify(tmp.path(), &issued.chain_pem, &["-purpose", "sslserver"]);
        assert!(out.ok, "{kind}: {} {}", out.stdout, out.stderr);
        // Reopened with another configured kind: the files win.
        let reopened = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Kinds").unwrap();
        assert_eq!(reopened.key_kind(), Some(kind));
    }
}

#[test]
fn partial_state_is_an_error_naming_the_missing_file() {
    for missing in FILES {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Partial").unwrap();
        std::fs::remove_file(tmp.path().join(missing)).unwrap();
        let err = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Partial").unwrap_err();
        match &err {
            CaError::Incomplete { missing: m, .. } => assert_eq!(m, &vec![missing.to_string()]),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(missing), "{err}");
        // Nothing was regenerated.
        assert!(!tmp.path().join(missing).exists());
        if missing != "root.pem" {
            assert_eq!(
                std::fs::read_to_string(tmp.path().join("root.pem")).unwrap(),
                ca.root_pem()
            );
        }
    }
}

#[test]
fn inconsistent_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Mixed").unwrap();
    let root_key = std::fs::read(tmp.path().join("root.key")).unwrap();
    let int_key = std::fs::read(tmp.path().join("intermediate.key")).unwrap();

    std::fs::write(tmp.path().join("intermediate.key"), &root_key).unwrap();
    let err = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Mixed").unwrap_err();
    assert!(
        matches!(&err, CaError::Corrupt { path, .. } if path.ends_with("intermediate.key")),
        "{err:?}"
    );
    std::fs::write(tmp.path().join("intermediate.key"), &int_key).unwrap();

    // An intermediate from another CA under this root.
    let other = tempfile::tempdir().unwrap();
    Ca::open_or_create(other.path(), CaKeyKind::P256, "Other").unwrap();
    for f in ["intermediate.pem", "intermediate.key"] {
        std::fs::copy(other.path().join(f), tmp.path().join(f)).unwrap();
    }
    let err = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Mixed").unwrap_err();
    assert!(
        matches!(&err, CaError::Corrupt { path, .. } if path.ends_with("intermediate.pem")),
        "{err:?}"
    );

    std::fs::write(tmp.path().join("root.pem"), "garbage").unwrap();
    assert!(matches!(
        Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Mixed"),
        Err(CaError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn issues_the_r38_profile_for_every_subject_key_type() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Profile").unwrap();
    let keys = [
        (
            "p256",
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
            false,
        ),
        (
            "p384",
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
            false,
        ),
        (
            "rsa2048",
            KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap(),
            true,
        ),
        (
            "ed25519",
            KeyPair::generate_for(&PKCS_ED25519).unwrap(),
            false,
        ),
    ];
    for (label, key, rsa) in keys {
        let names = [
            "www.example.org",
            "example.org",
            "192.0.2.10",
            "2001:db8::10",
        ];
        let parsed = parse_and_check(&csr(&key, &names, None)).unwrap();
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::guess(n)).collect();
        let req = request(
            parsed.public_key_spki_der.clone(),
            identifiers.clone(),
            Profile::Server,
        );
        let issued = ca.issue(req.clone()).await.unwrap();

        let out = openssl_verify(
            tmp.path(),
            &issued.chain_pem,
            &["-purpose", "sslserver", "-verify_hostname", "example.org"],
        );
        assert!(out.ok, "{label}: {} {}", out.stdout, out.stderr);
        let out = openssl_verify(
            tmp.path(),
            &issued.chain_pem,
            &["-purpose", "sslserver", "-verify_ip", "2001:db8::10"],
        );
        assert!(out.ok, "{label}: {} {}", out.stdout, out.stderr);
        let out = openssl_verify(
            tmp.path(),
            &issued.chain_pem,
            &["-purpose", "sslserver", "-verify_hostname", "other.example"],
        );
        assert!(!out.ok, "{label}: a name not in the SAN verified");
        let out = openssl_verify(tmp.path(), &issued.chain_pem, &["-purpose", "sslclient"]);
        assert!(
            !out.ok,
            "{label}: a server-only certificate passed as a client certificate"
        );

        let text = x509_text(&issued.der);
        assert!(text.contains("Version: 3 (0x2)"), "{text}");
        assert!(
            text.contains("Subject: CN = www.example.org"),
            "{label}: {text}"
        );
        let bc = section(&text, "X509v3 Basic Constraints");
        assert!(
            bc.contains("critical") && bc.contains("CA:FALSE"),
            "{label}: {bc}"
        );
        let ku = section(&text, "X509v3 Key Usage");
        let want_ku = if rsa {
            "Digital Signature, Key Encipherment"
        } else {
            "Digital Signature\n"
        };
        assert!(
            ku.contains("critical") && ku.contains(want_ku),
            "{label}: {ku}"
        );
        let eku = section(&text, "X509v3 Extended Key Usage");
        assert!(
            eku.contains("TLS Web Server Authentication") && !eku.contains("Client"),
            "{label}: {eku}"
        );
        let san = section(&text, "X509v3 Subject Alternative Name");
        assert!(
            !san.contains("critical"),
            "{label}: SAN is critical with a subject: {san}"
        );
        assert!(
            san.contains("DNS:www.example.org, DNS:example.org, IP Address:192.0.2.10, IP Address:2001:DB8:0:0:0:0:0:10"),
            "{label}: {san}"
        );
        let aki = section(&text, "X509v3 Authority Key Identifier");
        let ski_hex: Vec<String> = ca
            .intermediate_key_id()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        assert!(aki.contains(&ski_hex.join(":")), "{label}: {aki}");
        assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");

        // Serial: what openssl reads, 16 octets, positive.
        let serial = openssl(
            &["x509", "-inform", "DER", "-noout", "-serial"],
            Some(&issued.der),
        );
        assert_eq!(
            serial.stdout.trim().trim_start_matches("serial="),
            issued.serial_hex.to_uppercase()
        );
        assert_eq!(issued.serial_hex.len(), 32);
        assert!(u8::from_str_radix(&issued.serial_hex[..2], 16).unwrap() < 0x80);

        // Validity exactly as asked (whole seconds), ARI id from AKI and serial.
        assert_eq!(
            issued.not_before,
            req.not_before.replace_nanosecond(0).unwrap()
        );
        assert_eq!(
            issued.not_after,
            req.not_after.replace_nanosecond(0).unwrap()
        );
        let info = cert_info(&issued.der).unwrap();
        assert_eq!(info.serial_hex, issued.serial_hex);
        assert_eq!(info.ari_id.as_deref(), Some(issued.ari_id.as_str()));
        let (aki, serial) = sceau_wire::parse_ari_cert_id(&issued.ari_id).unwrap();
        assert_eq!(aki, ca.intermediate_key_id());
        assert_eq!(sceau_ca_hex(&serial), issued.serial_hex);
        assert_eq!(info.identifiers, identifiers);
        assert!(info.key_usage_digital_signature);
        assert_eq!(
            (info.not_before, info.not_after),
            (issued.not_before, issued.not_after)
        );
        assert_eq!(
            info.spki_der, parsed.public_key_spki_der,
            "{label}: certificate key differs from the CSR key"
        );

        // The chain is leaf + intermediate, no root.
        let chain = sceau_wire::key::pem_decode_all(&issued.chain_pem, "CERTIFICATE");
        assert_eq!(
            chain,
            vec![issued.der.clone(), ca.intermediate_der().to_vec()]
        );
    }
}

fn sceau_ca_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn ip_only_certificates_have_an_empty_subject_and_a_critical_san() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P384, "IP").unwrap();
    let key = KeyPair::generate().unwrap();
    let issued = issue_for_csr(
        &ca,
        &csr(&key, &["192.0.2.10", "2001:db8::1"], None),
        Profile::Server,
    )
    .await;
    let text = x509_text(&issued.der);
    let subject = text
        .lines()
        .find(|l| l.trim_start().starts_with("Subject:"))
        .unwrap();
    assert_eq!(subject.trim(), "Subject:", "{text}");
    let san = section(&text, "X509v3 Subject Alternative Name");
    assert!(
        san.contains("critical")
            && san.contains("IP Address:192.0.2.10")
            && san.contains("IP Address:2001:DB8:0:0:0:0:0:1"),
        "{san}"
    );
    let out = openssl_verify(
        tmp.path(),
        &issued.chain_pem,
        &["-purpose", "sslserver", "-verify_ip", "192.0.2.10"],
    );
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
}

/// The signer refuses what the front end's identifier policy refuses (defence in depth):
/// local names and addresses unless allowed for a lab, and never addresses that name no host.
#[tokio::test]
async fn local_and_special_names_are_signed_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Local").unwrap();
    let key = KeyPair::generate().unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let req = |names: &[&str]| {
        request(
            spki.clone(),
            names.iter().map(|n| Identifier::guess(n)).collect(),
            Profile::Server,
        )
    };
    for local in [
        "localhost",
        "app.localhost",
        "127.0.0.1",
        "::1",
        "169.254.169.254",
    ] {
        let err = ca.issue(req(&["web.example", local])).await.unwrap_err();
        assert!(
            matches!(&err, CaError::InvalidRequest(m) if m.contains(local)),
            "{local}: {err}"
        );
    }
    ca.set_allow_local_names(true);
    for local in ["localhost", "127.0.0.1", "::1"] {
        ca.issue(req(&[local])).await.unwrap();
    }
    for never in ["0.0.0.0", "224.0.0.1", "x.invalid"] {
        assert!(ca.issue(req(&[never])).await.is_err(), "{never}");
    }
}

#[tokio::test]
async fn server_client_profile_adds_client_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Both").unwrap();
    let key = KeyPair::generate().unwrap();
    let issued = issue_for_csr(
        &ca,
        &csr(&key, &["both.example"], None),
        Profile::ServerClient,
    )
    .await;
    let eku = x509_text(&issued.der);
    let eku = section(&eku, "X509v3 Extended Key Usage");
    assert!(
        eku.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{eku}"
    );
    for purpose in ["sslserver", "sslclient"] {
        let out = openssl_verify(tmp.path(), &issued.chain_pem, &["-purpose", purpose]);
        assert!(out.ok, "{purpose}: {} {}", out.stdout, out.stderr);
    }
    assert_eq!(
        Profile::from_name("tls-server-client"),
        Some(Profile::ServerClient)
    );
    assert_eq!(Profile::Server.name(), "tls-server");
}

#[tokio::test]
async fn the_signer_refuses_requests_outside_the_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Strict").unwrap();
    let key = KeyPair::generate().unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let good = request(
        spki.clone(),
        vec![Identifier::dns("ok.example")],
        Profile::Server,
    );
    ca.issue(good.clone()).await.unwrap();

    let refused = |req: IssueRequest| {
        let ca = &ca;
        async move {
            match ca.issue(req).await {
                Err(CaError::InvalidRequest(why)) => why,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    let mut long = good.clone();
    long.not_after = long.not_before + Duration::days(91);
    assert!(refused(long).await.contains("90-day"));
    let mut backwards = good.clone();
    backwards.not_after = backwards.not_before - Duration::days(1);
    refused(backwards).await;
    let mut past_issuer = good.clone();
    past_issuer.not_before = ca.intermediate_not_after() - Duration::days(10);
    past_issuer.not_after = ca.intermediate_not_after() + Duration::days(10);
    refused(past_issuer).await;
    let mut wildcard = good.clone();
    wildcard.identifiers = vec![Identifier::dns("*.example")];
    assert!(refused(wildcard).await.contains("wildcard"));
    let mut none = good.clone();
    none.identifiers.clear();
    refused(none).await;
    let mut email = good.clone();
    email.identifiers = vec![Identifier {
        kind: "email".into(),
        value: "a@example".into(),
    }];
    refused(email).await;
    let mut bad_ip = good.clone();
    bad_ip.identifiers = vec![Identifier::ip("300.1.1.1")];
    refused(bad_ip).await;
    let mut garbage_key = good.clone();
    garbage_key.public_key_spki_der = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    refused(garbage_key).await;

    // A 1024-bit RSA key never gets a certificate, even if the front end let it through.
    let out = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ],
        None,
    );
    assert!(out.ok, "{}", out.stderr);
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(out.stdout.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap()
        .stdout;
    let mut weak = good.clone();
    weak.public_key_spki_der = der;
    assert!(refused(weak).await.contains("too weak"));
}

#[tokio::test]
async fn serials_are_unique() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Serials").unwrap();
    let key = KeyPair::generate().unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let issued = ca
            .issue(request(
                spki.clone(),
                vec![Identifier::dns("s.example")],
                Profile::Server,
            ))
            .await
            .unwrap();
        assert_eq!(issued.serial_hex.len(), 32);
        assert!(seen.insert(issued.serial_hex));
    }
}

/// The key types an ACME account key can have.
const ACCOUNT_KEY_KINDS: [KeyKind; 4] = [
    KeyKind::P256,
    KeyKind::P384,
    KeyKind::Rsa2048,
    KeyKind::Ed25519,
];

/// The SubjectPublicKeyInfo of a certificate `ca` issues for `account`'s own key, from a CSR
/// for `name` signed with it.
async fn certified_spki(ca: &Ca, account: &AccountKey, name: &str) -> Vec<u8> {
    let key = KeyPair::try_from(account.to_pkcs8_der()).unwrap();
    let issued = issue_for_csr(ca, &csr(&key, &[name], None), Profile::Server).await;
    cert_info(&issued.der).unwrap().spki_der
}

#[tokio::test]
async fn revocation_key_check_matches_only_the_certificate_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(tmp.path(), CaKeyKind::P256, "Revoke").unwrap();
    for kind in ACCOUNT_KEY_KINDS {
        let account = AccountKey::generate(kind).unwrap();
        let other = AccountKey::generate(kind).unwrap();
        let spki = certified_spki(&ca, &account, "revoke.example").await;
        assert!(spki_matches_jwk(&spki, &account.jwk()), "{kind}");
        assert!(!spki_matches_jwk(&spki, &other.jwk()), "{kind}");
    }
    let ec = AccountKey::generate(KeyKind::P256).unwrap();
    let rsa = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    assert!(!spki_matches_jwk(
        &rcgen::PublicKeyData::subject_public_key_info(&rsa),
        &ec.jwk()
    ));
    assert!(!spki_matches_jwk(b"garbage", &ec.jwk()));
    assert!(cert_info(b"garbage").is_err());
}

/// RFC 8555 §11.1 checks compare certified keys with account keys: the JWK read from a
/// certificate's SPKI has the account key's thumbprint, and the SPKI encodings rebuilt from the
/// account's JWK include the one the certificate carries (SPKIs written by rcgen and by openssl).
#[tokio::test]
async fn certified_keys_and_account_keys_compare_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(dir.path(), CaKeyKind::P256, "Test").unwrap();
    for kind in ACCOUNT_KEY_KINDS {
        let account = AccountKey::generate(kind).unwrap();
        let spki = certified_spki(&ca, &account, "same-key.example").await;
        let jwk = jwk_of_spki(&spki).unwrap_or_else(|| panic!("{kind}: no JWK"));
        assert_eq!(jwk.thumbprint(), account.jwk().thumbprint(), "{kind}");
        assert!(
            spki_der_candidates(&account.jwk()).contains(&spki),
            "{kind}"
        );
        let other = AccountKey::generate(kind).unwrap();
        assert!(!spki_der_candidates(&other.jwk()).contains(&spki), "{kind}");

        // The same key's SPKI as openssl writes it.
        let pem = sceau_wire::key::pem_encode("PRIVATE KEY", &account.to_pkcs8_der());
        let out = openssl(&["pkey", "-pubout"], Some(pem.as_bytes()));
        assert!(out.ok, "{kind}: {}", out.stderr);
        let der = sceau_wire::key::pem_decode(&out.stdout, "PUBLIC KEY").unwrap();
        assert!(
            spki_der_candidates(&account.jwk()).contains(&der),
            "{kind} openssl"
        );
        assert_eq!(jwk_of_spki(&der).unwrap(), jwk, "{kind} openssl");
    }
    assert!(jwk_of_spki(b"garbage").is_none());
}

#[test]
fn key_kind_names() {
    for kind in CaKeyKind::ALL {
        assert_eq!(kind.to_string().parse::<CaKeyKind>().unwrap(), kind);
    }
    assert_eq!("P-384".parse::<CaKeyKind>().unwrap(), CaKeyKind::P384);
    assert!("rsa1024".parse::<CaKeyKind>().is_err());
    assert_eq!(CaKeyKind::default(), CaKeyKind::P256);
}
