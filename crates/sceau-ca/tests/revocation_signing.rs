//! The signing seam's revocation operations (issue 11, for the revocation issue): a CRL signed
//! by an issuer, active or retired after a rotation, that openssl accepts with its issuer and
//! that lists the revoked serials with their reasons and the critical issuingDistributionPoint;
//! an OCSP responder certificate that openssl reads as a delegated responder (id-kp-OCSPSigning,
//! id-pkix-ocsp-nocheck) signed by the issuer; OCSP signatures that verify with that
//! certificate's key. Everything checked by a second implementation: openssl.

mod common;

use common::openssl;
use sceau_ca::ceremony::{self, RotateOptions};
use sceau_ca::{Ca, CaKeyKind, CrlRequest, RevokedEntry, Signer};
use sceau_wire::key::pem_encode;
use time::{Duration, OffsetDateTime};

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn crls_are_signed_by_each_issuer_and_read_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let first = Ca::open_or_create(&dir, CaKeyKind::P256, "Crl").unwrap();
    let first_id = first.active().id.clone();
    let first_pem = first.active().cert_pem.clone();
    drop(first);
    ceremony::rotate(&dir, &RotateOptions::default()).unwrap();
    let mut ca = Ca::open_or_create(&dir, CaKeyKind::P256, "Crl").unwrap();
    assert_ne!(ca.active().id, first_id, "a new issuer is active");
    ca.set_public_url(Some("http://ca.example/".into()));

    let now = OffsetDateTime::now_utc();
    for (id, issuer_pem) in [
        (first_id.clone(), first_pem.clone()),
        (ca.active().id.clone(), ca.active().cert_pem.clone()),
    ] {
        let crl = Signer::sign_crl(
            &ca,
            CrlRequest {
                issuer_id: id.clone(),
                this_update: now,
                next_update: now + Duration::hours(24),
                number: vec![0x01, 0x02],
                shard: Some(3),
                revoked: vec![
                    RevokedEntry {
                        serial: vec![0x0a, 0xbc],
                        revoked_at: now - Duration::minutes(5),
                        reason: Some(1),
                    },
                    RevokedEntry {
                        serial: vec![0x7f, 0x01, 0x02],
                        revoked_at: now - Duration::minutes(1),
                        reason: None,
                    },
                ],
            },
        )
        .await
        .unwrap();
        // The distribution point is the shard's URL under the public URL, as in its leaves.
        let url = format!("http://ca.example/crl/{id}/3.crl");
        let crl_path = write(tmp.path(), "crl.pem", &pem_encode("X509 CRL", &crl));
        let issuer_path = write(tmp.path(), "issuer.pem", &issuer_pem);
        let out = openssl(
            &[
                "crl",
                "-in",
                &crl_path,
                "-CAfile",
                &issuer_path,
                "-noout",
                "-text",
            ],
            None,
        );
        assert!(out.ok, "{id}: {}", out.stderr);
        assert!(out.stderr.contains("verify OK"), "{id}: {}", out.stderr);
        let text = out.stdout;
        assert!(text.contains("Serial Number: 0ABC"), "{text}");
        assert!(text.contains("Key Compromise"), "{text}");
        assert!(text.contains("Serial Number: 7F0102"), "{text}");
        assert!(text.contains("X509v3 CRL Number:"), "{text}");
        assert!(
            text.contains("X509v3 Issuing Distribution Point: critical"),
            "{text}"
        );
        assert!(text.contains(&url), "{text}");
        assert!(text.contains("Only User Certificates"), "{text}");
        // Not the other issuer's CRL.
        let other = if id == first_id {
            ca.active().cert_pem.clone()
        } else {
            first_pem.clone()
        };
        let other_path = write(tmp.path(), "other.pem", &other);
        let out = openssl(
            &["crl", "-in", &crl_path, "-CAfile", &other_path, "-noout"],
            None,
        );
        assert!(
            !out.stderr.contains("verify OK"),
            "verified with the wrong issuer"
        );
    }
    // Refused: unknown issuer, a reason RFC 5280 does not define, an empty number.
    let bad = |issuer: &str, reason: Option<u8>, number: Vec<u8>| CrlRequest {
        issuer_id: issuer.to_owned(),
        this_update: now,
        next_update: now + Duration::hours(1),
        number,
        shard: None,
        revoked: vec![RevokedEntry {
            serial: vec![1],
            revoked_at: now,
            reason,
        }],
    };
    assert!(
        Signer::sign_crl(&ca, bad("00", None, vec![1]))
            .await
            .is_err()
    );
    assert!(
        Signer::sign_crl(&ca, bad(&first_id, Some(7), vec![1]))
            .await
            .is_err()
    );
    assert!(
        Signer::sign_crl(&ca, bad(&first_id, None, vec![]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn ocsp_responders_are_delegated_certificates_whose_key_signs_responses() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(&tmp.path().join("ca"), CaKeyKind::P384, "Ocsp").unwrap();
    let id = ca.active().id.clone();
    let der = Signer::ocsp_responder(&ca, &id).await.unwrap();
    let cert_path = write(
        tmp.path(),
        "responder.pem",
        &pem_encode("CERTIFICATE", &der),
    );
    let issuer_path = write(tmp.path(), "issuer.pem", &ca.active().cert_pem);
    let root_path = write(tmp.path(), "root.pem", &ca.root_pem());
    let text = openssl(&["x509", "-in", &cert_path, "-noout", "-text"], None).stdout;
    assert!(text.contains("OCSP Signing"), "{text}");
    assert!(text.contains("OCSP No Check"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    let out = openssl(
        &[
            "verify",
            "-CAfile",
            &root_path,
            "-untrusted",
            &issuer_path,
            "-purpose",
            "ocsphelper",
            &cert_path,
        ],
        None,
    );
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
    // The same certificate while it is fresh: no new key each time.
    assert_eq!(Signer::ocsp_responder(&ca, &id).await.unwrap(), der);

    // A signature made with the responder key verifies with the certificate's public key.
    let tbs = b"ResponseData stands here".to_vec();
    let sig = Signer::sign_ocsp(&ca, &id, tbs.clone()).await.unwrap();
    let pubkey = openssl(&["x509", "-in", &cert_path, "-noout", "-pubkey"], None).stdout;
    let pub_path = write(tmp.path(), "responder.pub", &pubkey);
    std::fs::write(tmp.path().join("sig.der"), &sig).unwrap();
    std::fs::write(tmp.path().join("tbs"), &tbs).unwrap();
    let sig_path = tmp.path().join("sig.der");
    let tbs_path = tmp.path().join("tbs");
    let out = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            &pub_path,
            "-signature",
            sig_path.to_str().unwrap(),
            tbs_path.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.ok && out.stdout.contains("Verified OK"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    // The responder key file never leaves the data directory and is private.
    let key = std::fs::read_dir(tmp.path().join("ca"))
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name().to_string_lossy().starts_with("ocsp-")
                && e.file_name().to_string_lossy().ends_with(".key")
        })
        .expect("responder key file");
    assert_eq!(common::mode(&key.path()), 0o600);
    assert!(
        Signer::sign_ocsp(&ca, "00", tbs).await.is_err(),
        "unknown issuer"
    );
}

/// A leaf's CRL distribution point is, by construction, its shard CRL's issuingDistribution
/// Point: `openssl verify -crl_check` accepts the CRL's scope (a mismatch is error 44,
/// "different CRL scope") and says "certificate revoked" (error 23) once the serial is on it.
#[tokio::test]
async fn a_leaf_and_its_shard_crl_agree_and_openssl_checks_revocation_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = Ca::open_or_create(&tmp.path().join("ca"), CaKeyKind::P256, "Shard").unwrap();
    ca.set_public_url(Some("http://revocation.example:8080".into()));
    let key = rcgen::KeyPair::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    let issued = Signer::issue(
        &ca,
        sceau_ca::IssueRequest {
            public_key_spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
            identifiers: vec![sceau_wire::Identifier::dns("shard.example")],
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(30),
            profile: sceau_ca::Profile::Server,
            serial: None,
            crl_shard: Some(5),
            csr_der: None,
            gate: None,
            resume: None,
        },
    )
    .await
    .unwrap();
    let id = issued.issuer_id.clone();
    let leaf = write(
        tmp.path(),
        "leaf.pem",
        &pem_encode("CERTIFICATE", &issued.der),
    );
    let text = openssl(&["x509", "-in", &leaf, "-noout", "-text"], None).stdout;
    let cdp = format!("URI:http://revocation.example:8080/crl/{id}/5.crl");
    assert!(text.contains("X509v3 CRL Distribution Points"), "{text}");
    assert!(text.contains(&cdp), "{text}");
    assert!(
        text.contains("OCSP - URI:http://revocation.example:8080/ocsp"),
        "{text}"
    );
    let root = write(tmp.path(), "root.pem", &ca.root_pem());
    let int = write(tmp.path(), "int.pem", &ca.active().cert_pem);
    let serial = hex::decode(&issued.serial_hex);
    let crl_with = |revoked: Vec<RevokedEntry>| {
        ca.sign_crl(&CrlRequest {
            issuer_id: id.clone(),
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::hours(24),
            number: vec![9],
            shard: Some(5),
            revoked,
        })
        .unwrap()
    };
    let verify = |crl: &[u8]| {
        let path = write(tmp.path(), "shard.crl.pem", &pem_encode("X509 CRL", crl));
        openssl(
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                &root,
                "-untrusted",
                &int,
                "-CRLfile",
                &path,
                &leaf,
            ],
            None,
        )
    };
    let good = verify(&crl_with(Vec::new()));
    assert!(good.ok, "{} {}", good.stdout, good.stderr);
    let revoked = verify(&crl_with(vec![RevokedEntry {
        serial,
        revoked_at: now,
        reason: Some(4),
    }]));
    assert!(!revoked.ok);
    let said = revoked.stdout + &revoked.stderr;
    assert!(
        said.contains("error 23") && said.contains("revoked"),
        "{said}"
    );
}

mod hex {
    pub fn decode(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
