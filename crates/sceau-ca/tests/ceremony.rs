//! The CA ceremonies as a library: `init` (dedicated, offline root, delegated), `import` of
//! what a real `openssl ca` signed, `import_alternate` of a cross-signed issuer, `rotate`, and
//! the ceremony record, each checked with openssl and by opening the CA as the signing process
//! does.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, SystemTime};

use common::*;
use rcgen::KeyPair;
use sceau_ca::ceremony::{self, InitOptions, RootKey, RotateOptions};
use sceau_ca::manifest::{CaMode, IssuerState, Manifest};
use sceau_ca::{Ca, CaError, CaKeyKind, CrlRequest, IssueRequest, Issued, KeyRef, OpenOptions};
use sceau_testkit::openssl_ca::{
    ISSUING_CA_EXT, POLICY_CA_EXT, sha256_fingerprint, subject_key_id, verify_server_chain,
};
use sceau_testkit::{OpenSslCa, Validity};
use sceau_wire::Identifier;
use time::{Duration, OffsetDateTime};

const SUBJECT: &str = "CN=Example Issuing CA,O=Example,C=FR";

fn open(dir: &Path) -> Result<Ca, CaError> {
    Ca::open(
        dir,
        &OpenOptions {
            create: None,
            staging: false,
        },
    )
}

fn leaf(ca: &Ca, name: &str) -> Issued {
    let key = KeyPair::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    ca.sign(&IssueRequest {
        public_key_spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        identifiers: vec![Identifier::dns(name)],
        not_before: now - Duration::minutes(1),
        not_after: now + Duration::days(30),
        profile: Default::default(),
        serial: None,
        crl_shard: None,
        csr_der: None,
        gate: None,
        resume: None,
    })
    .unwrap()
}

fn x509_field(pem_file: &Path, args: &[&str]) -> String {
    let mut all = vec!["x509", "-noout", "-in", pem_file.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = openssl(&all, None);
    assert!(out.ok, "openssl x509 {args:?}: {}", out.stderr);
    out.stdout
}

/// Every file of a directory, by name, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn delegated(dir: &Path) -> ceremony::CaRecord {
    ceremony::init(
        dir,
        &InitOptions {
            mode: CaMode::Delegated,
            subject: Some(SUBJECT.into()),
            ..InitOptions::dedicated(CaKeyKind::P256, "Example")
        },
    )
    .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn days(n: u64) -> StdDuration {
    StdDuration::from_secs(n * 86400)
}

#[test]
fn dedicated_init_prints_a_record_openssl_agrees_with() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let record = ceremony::init(&dir, &InitOptions::dedicated(CaKeyKind::P384, "Example")).unwrap();
    assert_eq!(record.mode, CaMode::Dedicated);
    let root = record.root.as_ref().unwrap();
    let fp = |f: &str| sha256_fingerprint(&dir.join(f));
    assert_eq!(root.sha256_fingerprint, fp("root.pem"));
    assert_eq!(record.root_key, "file root.key");
    let [issuer] = record.issuers.as_slice() else {
        panic!("one issuer: {record:?}")
    };
    let cert = issuer.certificate.as_ref().unwrap();
    assert_eq!(cert.sha256_fingerprint, fp("intermediate.pem"));
    assert_eq!(issuer.state, IssuerState::Active);
    assert_eq!(issuer.key, "file intermediate.key");
    assert_eq!(issuer.key_kind, CaKeyKind::P384);
    // Key ids are the subjectKeyIdentifiers openssl reads.
    let ski = |f: &str| subject_key_id(&dir.join(f));
    assert_eq!(root.key_id, ski("root.pem"));
    assert_eq!(cert.key_id, ski("intermediate.pem"));
    assert_eq!(issuer.id, cert.key_id);
    assert!(x509_field(&dir.join("root.pem"), &["-subject"]).contains("Root CA"));
    assert!(
        root.subject.contains("CN=Example Sceau Root CA"),
        "{root:?}"
    );
    // The printed record says the same.
    let text = record.to_string();
    for needle in [
        &root.sha256_fingerprint,
        &cert.sha256_fingerprint,
        &cert.key_id,
    ] {
        assert!(text.contains(needle.as_str()), "{needle} not in\n{text}");
    }
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert_eq!(mode(&dir.join("intermediate.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.json")), 0o600);
    assert_eq!(ceremony::show(&dir).unwrap(), record);

    // A second init changes nothing.
    let before = snapshot(&dir);
    let e = ceremony::init(&dir, &InitOptions::dedicated(CaKeyKind::P256, "Example")).unwrap_err();
    assert!(
        matches!(&e, CaError::Refused(m) if m.contains("already holds a CA")),
        "{e}"
    );
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn an_offline_root_key_is_written_once_outside_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let offline = tmp.path().join("vault");
    std::fs::create_dir(&offline).unwrap();
    let out = offline.join("root.key");
    let record = ceremony::init(
        &dir,
        &InitOptions {
            root_key: RootKey::OutFile(out.clone()),
            ..InitOptions::dedicated(CaKeyKind::P256, "Example")
        },
    )
    .unwrap();
    assert_eq!(mode(&out), 0o600);
    assert!(
        record.root_key.starts_with("offline") && record.root_key.contains(out.to_str().unwrap()),
        "{}",
        record.root_key
    );
    // The key in the vault is the root's.
    let pubkey = |args: &[&str]| {
        let o = openssl(args, None);
        assert!(o.ok, "{}", o.stderr);
        o.stdout
    };
    assert_eq!(
        pubkey(&["pkey", "-in", out.to_str().unwrap(), "-pubout"]),
        pubkey(&[
            "x509",
            "-noout",
            "-pubkey",
            "-in",
            dir.join("root.pem").to_str().unwrap()
        ])
    );
    // Nothing in the data directory holds it or points to it.
    let files = snapshot(&dir);
    assert!(!files.contains_key("root.key"), "{:?}", files.keys());
    let root_key = std::fs::read(&out).unwrap();
    for (name, bytes) in &files {
        assert_ne!(bytes, &root_key, "{name} is the root key");
        assert!(
            !String::from_utf8_lossy(bytes).contains("vault"),
            "{name} names the offline key's place"
        );
    }
    let manifest = Manifest::read(&dir).unwrap().unwrap();
    assert_eq!(manifest.root.as_ref().unwrap().key, None);
    assert!(
        ceremony::show(&dir)
            .unwrap()
            .root_key
            .starts_with("offline")
    );

    // The signing process needs no root key to sign.
    let ca = open(&dir).unwrap();
    let issued = leaf(&ca, "www.example.org");
    verify_server_chain(&dir.join("root.pem"), &issued.chain_pem).unwrap();

    // The key is never overwritten, nor written into a data directory, nor anywhere odd.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let vault_before = snapshot(&offline);
    for (target, bad, why) in [
        (tmp.path().join("a"), out.clone(), "exists already"),
        (
            fresh.clone(),
            fresh.join("root.key"),
            "inside the data directory",
        ),
        (
            fresh.clone(),
            fresh.join(".").join("root.key"),
            "inside the data directory",
        ),
        (
            tmp.path().join("b"),
            tmp.path().join("no/such/dir/root.key"),
            "cannot be used",
        ),
    ] {
        let e = ceremony::init(
            &target,
            &InitOptions {
                root_key: RootKey::OutFile(bad.clone()),
                ..InitOptions::dedicated(CaKeyKind::P256, "Example")
            },
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, CaError::Refused(_)) && msg.contains(why) && !msg.contains('\n'),
            "{bad:?}: {msg}"
        );
        assert_eq!(snapshot(&offline), vault_before, "{bad:?}");
        assert!(
            target == fresh || !target.exists(),
            "a refused init created {target:?}"
        );
    }
    assert!(snapshot(&fresh).is_empty());
}

#[test]
fn a_delegated_ca_waits_for_import_then_issues_under_the_existing_pki() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let record = delegated(&dir);
    assert_eq!(record.mode, CaMode::Delegated);
    assert!(record.root.is_none());
    let pending = &record.issuers[0];
    assert_eq!(pending.state, IssuerState::Pending);
    let csr = pending.csr.clone().unwrap();
    // The request says what the PKI should sign.
    let req = openssl(
        &["req", "-in", csr.to_str().unwrap(), "-noout", "-text"],
        None,
    );
    assert!(req.ok, "{}", req.stderr);
    assert!(
        req.stdout
            .contains("C = FR, O = Example, CN = Example Issuing CA"),
        "{}",
        req.stdout
    );
    assert!(req.stdout.contains("CA:TRUE, pathlen:0"), "{}", req.stdout);
    let verified = openssl(
        &["req", "-in", csr.to_str().unwrap(), "-noout", "-verify"],
        None,
    );
    assert!(verified.ok, "{}", verified.stderr);

    let e = open(&dir).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, CaError::AwaitingImport { .. })
            && msg.contains("sceau-server ca import")
            && msg.contains(csr.to_str().unwrap())
            && !msg.contains('\n'),
        "{msg}"
    );

    let mut pki = OpenSslCa::root(&tmp.path().join("pki"), "Example Root CA").unwrap();
    let cert = tmp.path().join("issuing.pem");
    pki.sign(&csr, &cert, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let record = ceremony::import(&dir, &read(&cert), &pki.chain_pem()).unwrap();
    let issuer = &record.issuers[0];
    assert_eq!(issuer.state, IssuerState::Active);
    assert_eq!(
        record.root.as_ref().unwrap().sha256_fingerprint,
        sha256_fingerprint(&pki.cert)
    );
    assert_eq!(record.root_key, "held by the existing PKI");
    assert_eq!(read(&dir.join("root.pem")), read(&pki.cert));

    let ca = open(&dir).unwrap();
    let issued = leaf(&ca, "www.example.org");
    assert_eq!(issued.issuer_id, issuer.id);
    verify_server_chain(&pki.cert, &issued.chain_pem).unwrap();
    // A second import has nothing to import.
    let before = snapshot(&dir);
    let e = ceremony::import(&dir, &read(&cert), &pki.chain_pem()).unwrap_err();
    assert!(e.to_string().contains("no issuing key waiting"), "{e}");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_two_level_pki_gives_a_chain_of_two() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let record = delegated(&dir);
    let csr = record.issuers[0].csr.clone().unwrap();
    let mut root = OpenSslCa::root(&tmp.path().join("root"), "Example Root CA").unwrap();
    let mut policy = root
        .subordinate(
            &tmp.path().join("policy"),
            "Example Policy CA",
            POLICY_CA_EXT,
        )
        .unwrap();
    let cert = tmp.path().join("issuing.pem");
    policy
        .sign(&csr, &cert, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    // Only the policy CA: the chain does not reach a root.
    let before = snapshot(&dir);
    let e = ceremony::import(&dir, &read(&cert), &read(&policy.cert)).unwrap_err();
    assert!(e.to_string().contains("self-signed root"), "{e}");
    assert_eq!(snapshot(&dir), before);

    // The whole chain, the new certificate first, as some PKIs hand it out.
    let whole = read(&cert) + &policy.chain_pem();
    ceremony::import(&dir, &read(&cert), &whole).unwrap();
    let ca = open(&dir).unwrap();
    let issued = leaf(&ca, "www.example.org");
    assert_eq!(
        issued.chain_pem.matches("BEGIN CERTIFICATE").count(),
        3,
        "leaf, issuing CA, policy CA"
    );
    verify_server_chain(&root.cert, &issued.chain_pem).unwrap();
    assert_eq!(read(&dir.join("root.pem")), read(&root.cert));
}

#[test]
fn refused_imports_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let csr = delegated(&dir).issuers[0].csr.clone().unwrap();
    let mut pki = OpenSslCa::root(&tmp.path().join("pki"), "Example Root CA").unwrap();
    let other_dir = tmp.path().join("other");
    let other_csr = delegated(&other_dir).issuers[0].csr.clone().unwrap();
    let chain = pki.chain_pem();
    let now = SystemTime::now();
    let mut n = 0;
    let mut sign = |csr: &Path, ext: &str, validity: Validity| -> PathBuf {
        n += 1;
        let out = tmp.path().join(format!("cert-{n}.pem"));
        pki.sign(csr, &out, ext, validity).unwrap();
        out
    };
    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "another key",
            sign(&other_csr, ISSUING_CA_EXT, Validity::Days(365)),
        ),
        (
            "not a CA",
            sign(
                &csr,
                "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nsubjectKeyIdentifier = hash\n",
                Validity::Days(365),
            ),
        ),
        (
            "pathLenConstraint is 1",
            sign(
                &csr,
                "basicConstraints = critical, CA:TRUE, pathlen:1\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
                Validity::Days(365),
            ),
        ),
        (
            "no pathLenConstraint",
            sign(
                &csr,
                "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
                Validity::Days(365),
            ),
        ),
        (
            "lacks keyCertSign",
            sign(
                &csr,
                "basicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, cRLSign, digitalSignature\nsubjectKeyIdentifier = hash\n",
                Validity::Days(365),
            ),
        ),
        (
            "keyUsage is not critical",
            sign(
                &csr,
                "basicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
                Validity::Days(365),
            ),
        ),
        (
            "expired",
            sign(
                &csr,
                ISSUING_CA_EXT,
                Validity::Between(now - days(730), now - days(365)),
            ),
        ),
        (
            "not valid before",
            sign(
                &csr,
                ISSUING_CA_EXT,
                Validity::Between(now + days(365), now + days(730)),
            ),
        ),
    ];
    let before = snapshot(&dir);
    for (why, cert) in &cases {
        let e = ceremony::import(&dir, &read(cert), &chain).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, CaError::Refused(_)) && msg.contains(why) && !msg.contains('\n'),
            "{why}: {msg}"
        );
        assert_eq!(snapshot(&dir), before, "{why}: the data directory changed");
        assert!(open(&dir).is_err(), "{why}: the CA became usable");
    }
    // The chain of another root of the same name.
    let good = sign(&csr, ISSUING_CA_EXT, Validity::Days(365));
    let impostor = OpenSslCa::root(&tmp.path().join("impostor"), "Example Root CA").unwrap();
    for (why, cert, chain) in [
        (
            "not signed by certificate 1",
            read(&good),
            impostor.chain_pem(),
        ),
        ("no PEM certificate", read(&good), "garbage\n".to_owned()),
        (
            "exactly one PEM certificate, it holds 0",
            "garbage\n".to_owned(),
            chain.clone(),
        ),
        (
            "exactly one PEM certificate, it holds 2",
            read(&good) + &read(&good),
            chain.clone(),
        ),
        (
            "does not parse",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
            chain.clone(),
        ),
    ] {
        let e = ceremony::import(&dir, &cert, &chain).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(why) && !msg.contains('\n'), "{why}: {msg}");
        assert_eq!(snapshot(&dir), before, "{why}: the data directory changed");
    }
    // The right certificate is accepted after all that.
    ceremony::import(&dir, &read(&good), &chain).unwrap();
    open(&dir).unwrap();
}

#[test]
fn dedicated_rotation_retires_the_old_issuer_which_still_signs_crls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    ceremony::init(&dir, &InitOptions::dedicated(CaKeyKind::P256, "Example")).unwrap();
    let old_ca = open(&dir).unwrap();
    let old = leaf(&old_ca, "old.example.org");
    drop(old_ca);

    let record = ceremony::rotate(&dir, &RotateOptions::default()).unwrap();
    let [first, second] = record.issuers.as_slice() else {
        panic!("two issuers: {record:?}")
    };
    assert_eq!(first.state, IssuerState::Retired);
    assert_eq!(second.state, IssuerState::Active);
    assert_ne!(first.id, second.id);
    let second_cert = second.certificate.as_ref().unwrap();
    assert!(
        second_cert.subject.ends_with("Issuing CA 2"),
        "{second_cert:?}"
    );

    let ca = open(&dir).unwrap();
    assert_eq!(ca.active().id, second.id);
    let new = leaf(&ca, "new.example.org");
    assert_eq!(new.issuer_id, second.id);
    assert_eq!(old.issuer_id, first.id);
    for chain in [&old.chain_pem, &new.chain_pem] {
        verify_server_chain(&dir.join("root.pem"), chain).unwrap();
    }
    // A third issuer is named after its generation, and a dedicated CA names its own.
    drop(ca);
    let e = ceremony::rotate(
        &dir,
        &RotateOptions {
            subject: Some(SUBJECT.into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--subject"), "{e}");
    let third = ceremony::rotate(&dir, &RotateOptions::default()).unwrap();
    let subject = &third.issuers[2].certificate.as_ref().unwrap().subject;
    assert!(
        subject.ends_with("CN=Example Sceau Issuing CA 3"),
        "{subject}"
    );
    let states: Vec<_> = third.issuers.iter().map(|i| i.state).collect();
    assert_eq!(
        states,
        [
            IssuerState::Retired,
            IssuerState::Retired,
            IssuerState::Active
        ]
    );
    let ca = open(&dir).unwrap();
    // The retired issuer still signs the CRL of what it issued.
    let now = OffsetDateTime::now_utc();
    let crl = ca
        .sign_crl(&CrlRequest {
            issuer_id: first.id.clone(),
            this_update: now,
            next_update: now + Duration::days(1),
            number: vec![1],
            shard: None,
            revoked: Vec::new(),
        })
        .unwrap();
    let crl_file = tmp.path().join("old.crl");
    std::fs::write(&crl_file, &crl).unwrap();
    let old_int = tmp.path().join("old-int.pem");
    std::fs::write(&old_int, read(&dir.join("intermediate.pem"))).unwrap();
    let v = openssl(
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            crl_file.to_str().unwrap(),
            "-noout",
            "-CAfile",
            old_int.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        v.ok && v.stderr.contains("verify OK"),
        "{}{}",
        v.stdout,
        v.stderr
    );
}

#[test]
fn rotation_with_an_offline_root_needs_that_root_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = tmp.path().join("root.key");
    ceremony::init(
        &dir,
        &InitOptions {
            root_key: RootKey::OutFile(out.clone()),
            ..InitOptions::dedicated(CaKeyKind::P256, "Example")
        },
    )
    .unwrap();
    let before = snapshot(&dir);
    let e = ceremony::rotate(&dir, &RotateOptions::default()).unwrap_err();
    assert!(e.to_string().contains("--root-key"), "{e}");
    assert_eq!(snapshot(&dir), before);

    // Another CA's root key.
    let other = tmp.path().join("other");
    ceremony::init(&other, &InitOptions::dedicated(CaKeyKind::P256, "Example")).unwrap();
    let e = ceremony::rotate(
        &dir,
        &RotateOptions {
            root_key: Some(KeyRef::File(other.join("root.key"))),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("is not the key of this CA's root"),
        "{e}"
    );
    assert_eq!(snapshot(&dir), before);

    let record = ceremony::rotate(
        &dir,
        &RotateOptions {
            root_key: Some(KeyRef::File(out.clone())),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(record.issuers[1].state, IssuerState::Active);
    // Still offline afterwards: the ceremony's key is not remembered.
    assert_eq!(
        Manifest::read(&dir).unwrap().unwrap().root.unwrap().key,
        None
    );
    let ca = open(&dir).unwrap();
    verify_server_chain(
        &dir.join("root.pem"),
        &leaf(&ca, "www.example.org").chain_pem,
    )
    .unwrap();
}

#[test]
fn delegated_rotation_keeps_the_old_issuer_until_import() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let csr = delegated(&dir).issuers[0].csr.clone().unwrap();
    let mut pki = OpenSslCa::root(&tmp.path().join("pki"), "Example Root CA").unwrap();
    let cert = tmp.path().join("issuing.pem");
    pki.sign(&csr, &cert, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    ceremony::import(&dir, &read(&cert), &pki.chain_pem()).unwrap();
    let first_id = open(&dir).unwrap().active().id.clone();

    let record = ceremony::rotate(&dir, &RotateOptions::default()).unwrap();
    let pending = record
        .issuers
        .iter()
        .find(|i| i.state == IssuerState::Pending)
        .unwrap();
    let new_csr = pending.csr.clone().unwrap();
    assert_ne!(new_csr, csr);
    assert_eq!(pending.subject, SUBJECT);
    // Until the import, the old issuer signs.
    let ca = open(&dir).unwrap();
    assert_eq!(ca.active().id, first_id);
    assert_eq!(leaf(&ca, "a.example.org").issuer_id, first_id);
    drop(ca);
    // A second rotation waits for the first.
    let before = snapshot(&dir);
    let e = ceremony::rotate(&dir, &RotateOptions::default()).unwrap_err();
    assert!(e.to_string().contains("already waits"), "{e}");
    assert_eq!(snapshot(&dir), before);
    // The old CSR is not the pending key's.
    let stale = tmp.path().join("stale.pem");
    pki.sign(&csr, &stale, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let e = ceremony::import(&dir, &read(&stale), &pki.chain_pem()).unwrap_err();
    assert!(e.to_string().contains("another key"), "{e}");
    assert_eq!(snapshot(&dir), before);

    let new_cert = tmp.path().join("issuing-2.pem");
    pki.sign(&new_csr, &new_cert, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let record = ceremony::import(&dir, &read(&new_cert), &pki.chain_pem()).unwrap();
    let states: Vec<_> = record.issuers.iter().map(|i| i.state).collect();
    assert_eq!(states, [IssuerState::Retired, IssuerState::Active]);
    let ca = open(&dir).unwrap();
    let issued = leaf(&ca, "b.example.org");
    assert_ne!(issued.issuer_id, first_id);
    verify_server_chain(&pki.cert, &issued.chain_pem).unwrap();
}

#[test]
fn a_cross_signed_issuer_gives_each_leaf_an_alternate_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let csr = delegated(&dir).issuers[0].csr.clone().unwrap();
    let mut first = OpenSslCa::root(&tmp.path().join("first"), "Example Root CA").unwrap();
    let cert = tmp.path().join("issuing.pem");
    first
        .sign(&csr, &cert, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    ceremony::import(&dir, &read(&cert), &first.chain_pem()).unwrap();

    // The same request, signed by a second root with its own policy CA.
    let mut second_root = OpenSslCa::root(&tmp.path().join("second"), "Partner Root CA").unwrap();
    let mut partner = second_root
        .subordinate(
            &tmp.path().join("partner"),
            "Partner Policy CA",
            POLICY_CA_EXT,
        )
        .unwrap();
    let cross = tmp.path().join("cross.pem");
    partner
        .sign(&csr, &cross, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();

    // Refused: the active issuer's own chain, another name for the key, another key id.
    let before = snapshot(&dir);
    let e = ceremony::import_alternate(&dir, &read(&cert), &first.chain_pem()).unwrap_err();
    assert!(e.to_string().contains("own chain"), "{e}");
    let renamed_csr = tmp.path().join("renamed.csr");
    let o = openssl(
        &[
            "req",
            "-new",
            "-key",
            dir.join("intermediate.key").to_str().unwrap(),
            "-subj",
            "/CN=Another Name",
            "-out",
            renamed_csr.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.ok, "{}", o.stderr);
    let renamed = tmp.path().join("renamed.pem");
    partner
        .sign(&renamed_csr, &renamed, ISSUING_CA_EXT, Validity::Days(365))
        .unwrap();
    let e = ceremony::import_alternate(&dir, &read(&renamed), &partner.chain_pem()).unwrap_err();
    assert!(e.to_string().contains("is not the active issuer's"), "{e}");
    let other_ski = tmp.path().join("other-ski.pem");
    partner
        .sign(
            &csr,
            &other_ski,
            &ISSUING_CA_EXT.replace(
                "subjectKeyIdentifier = hash",
                "subjectKeyIdentifier = 0102030405060708090a0b0c0d0e0f1011121314",
            ),
            Validity::Days(365),
        )
        .unwrap();
    let e = ceremony::import_alternate(&dir, &read(&other_ski), &partner.chain_pem()).unwrap_err();
    assert!(e.to_string().contains("subjectKeyIdentifier"), "{e}");
    assert_eq!(snapshot(&dir), before);

    let record = ceremony::import_alternate(&dir, &read(&cross), &partner.chain_pem()).unwrap();
    assert_eq!(record.issuers[0].alternate_chains, 1);
    let e = ceremony::import_alternate(&dir, &read(&cross), &partner.chain_pem()).unwrap_err();
    assert!(e.to_string().contains("already"), "{e}");

    let ca = open(&dir).unwrap();
    let issued = leaf(&ca, "www.example.org");
    let [alternate] = issued.alternate_chains.as_slice() else {
        panic!("one alternate chain: {:?}", issued.alternate_chains)
    };
    assert!(
        alternate.starts_with(
            issued
                .chain_pem
                .split_inclusive("-----END CERTIFICATE-----\n")
                .next()
                .unwrap()
        )
    );
    drop(ca);
    // Each chain verifies against its own root only.
    for (chain, root, other) in [
        (&issued.chain_pem, &first.cert, &second_root.cert),
        (alternate, &second_root.cert, &first.cert),
    ] {
        verify_server_chain(root, chain).unwrap();
        assert!(verify_server_chain(other, chain).is_err());
    }
    // A chain file that does not fit the issuer makes the CA unusable, naming the file.
    let alt_file = dir.join("intermediate-alt-1.pem");
    std::fs::write(&alt_file, partner.chain_pem()).unwrap();
    let e = open(&dir).unwrap_err();
    assert!(
        matches!(&e, CaError::Corrupt { path, .. } if path == &alt_file),
        "{e}"
    );
}

#[test]
fn a_staging_ca_says_test_and_is_never_opened_as_production() {
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging");
    let ca = Ca::open(
        &staging,
        &OpenOptions {
            create: Some((CaKeyKind::P256, "Example".into())),
            staging: true,
        },
    )
    .unwrap();
    for f in ["root.pem", "intermediate.pem"] {
        let subject = x509_field(&staging.join(f), &["-subject"]);
        assert!(subject.contains("TEST"), "{f}: {subject}");
    }
    let issued = leaf(&ca, "www.example.org");
    let leaf_file = tmp.path().join("leaf.pem");
    std::fs::write(&leaf_file, &issued.chain_pem).unwrap();
    let subject = x509_field(&leaf_file, &["-subject"]);
    assert!(subject.contains(sceau_ca::TEST_MARK), "{subject}");
    drop(ca);

    let e = open(&staging).unwrap_err();
    assert!(
        matches!(&e, CaError::Refused(m) if m.contains("staging") && m.contains("--staging")),
        "{e}"
    );
    let production = tmp.path().join("production");
    ceremony::init(
        &production,
        &InitOptions::dedicated(CaKeyKind::P256, "Example"),
    )
    .unwrap();
    let leaf_prod = leaf(&open(&production).unwrap(), "www.example.org");
    std::fs::write(&leaf_file, &leaf_prod.chain_pem).unwrap();
    assert!(!x509_field(&leaf_file, &["-subject"]).contains("TEST"));
    let e = Ca::open(
        &production,
        &OpenOptions {
            create: Some((CaKeyKind::P256, "Example".into())),
            staging: true,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, CaError::Refused(m) if m.contains("production")),
        "{e}"
    );
}

#[test]
fn bad_subjects_and_options_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    for (subject, why) in [
        ("O=Example", "a CN is required"),
        ("CN=X,C=France", "two-letter"),
        ("CN=X+OU=Y", "multi-valued"),
        ("CN=X,EMAIL=a@b", "not supported"),
        ("CN=", "no value"),
        ("CN=X\\", "backslash"),
    ] {
        let dir = tmp.path().join(format!("d{}", rand_u64()));
        let e = ceremony::init(
            &dir,
            &InitOptions {
                mode: CaMode::Delegated,
                subject: Some(subject.into()),
                ..InitOptions::dedicated(CaKeyKind::P256, "Example")
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains(why), "{subject}: {e}");
        assert!(
            !dir.exists(),
            "{subject}: a refused init created the directory"
        );
    }
    let dir = tmp.path().join("d");
    for opts in [
        InitOptions {
            mode: CaMode::Delegated,
            ..InitOptions::dedicated(CaKeyKind::P256, "Example")
        },
        InitOptions {
            subject: Some(SUBJECT.into()),
            ..InitOptions::dedicated(CaKeyKind::P256, "Example")
        },
        InitOptions {
            mode: CaMode::Delegated,
            subject: Some(SUBJECT.into()),
            root_key: RootKey::OutFile(tmp.path().join("root.key")),
            ..InitOptions::dedicated(CaKeyKind::P256, "Example")
        },
    ] {
        assert!(ceremony::init(&dir, &opts).is_err(), "{opts:?}");
        assert!(!dir.exists());
        assert!(!tmp.path().join("root.key").exists());
    }
}
