//! The CMP client against the real `openssl cmp` mock server: enrollment with MAC and with
//! signature protection, implicit confirmation, polling, refusals, error messages, revocation,
//! and responses whose protection must be refused.

mod support;

use std::time::{Duration, Instant};

use sceau_cmp::{CmpClient, CmpConfig, CmpError, Credentials, PkiStatus, Polled, ProtectionError};
use support::*;

fn mac_config(url: String, secret: &str) -> CmpConfig {
    let mut c = CmpConfig::new(url, CmpConfig::mac(REFERENCE, secret));
    c.timeout = Duration::from_secs(10);
    c
}

/// A PKI, the leaf the mock will return (for `leaf`'s key) and the mock with MAC protection
/// plus `extra` options.
fn mac_mock(pki: &mut Pki, extra: &[&str]) -> (Party, MockCmp) {
    let leaf = pki.party("leaf.example", "EC");
    let chain = pki.chain_file();
    let root = pki.root.cert.clone();
    let mut args = mac_args(
        leaf.cert.to_str().unwrap(),
        chain.to_str().unwrap(),
        root.to_str().unwrap(),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (leaf, MockCmp::start(&refs))
}

#[tokio::test]
async fn mac_protected_p10cr_returns_the_certificate_with_its_chain_after_certconf() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(&mut pki, &[]);
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let enrolled = client.enroll_p10(&leaf.csr_der).await.unwrap();

    assert_eq!(
        enrolled.cert_der, leaf.cert_der,
        "the certificate the CA issued"
    );
    assert_eq!(
        enrolled.chain_der,
        vec![pki.issuing_der()],
        "issuing CA, root left out"
    );
    // caPubs belong to ip only (RFC 4210 §5.3.4); the mock rightly leaves them out of a cp.
    assert!(enrolled.ca_pubs_der.is_empty());
    assert_eq!(enrolled.status, PkiStatus::Accepted);
    assert!(!enrolled.implicitly_confirmed);
    // p10cr and certConf: OpenSSL verified our PBM and our certHash, and answered pkiConf.
    assert_eq!(mock.requests(), 2, "{}", mock.log_text());
}

#[tokio::test]
async fn signature_protected_p10cr_is_verified_both_ways() {
    let mut pki = Pki::new();
    let leaf = pki.party("leaf.example", "EC");
    let ra = pki.party("Sceau RA", "EC");
    let server = pki.party("Upstream CMP signer", "RSA");
    let chain = pki.chain_file();
    let mock = MockCmp::start(&[
        "-srv_cert",
        server.cert.to_str().unwrap(),
        "-srv_key",
        server.key.to_str().unwrap(),
        "-srv_trusted",
        pki.root.cert.to_str().unwrap(),
        "-srv_untrusted",
        chain.to_str().unwrap(),
        "-rsp_cert",
        leaf.cert.to_str().unwrap(),
        "-rsp_extracerts",
        chain.to_str().unwrap(),
    ]);
    let mut config = CmpConfig::new(
        mock.url(),
        Credentials::Signature {
            key_pkcs8_der: ra.key_der.clone(),
            cert_der: ra.cert_der.clone(),
            chain_der: vec![pki.issuing_der()],
        },
    );
    config.upstream_certs = vec![server.cert_der.clone()];
    let client = CmpClient::new(config.clone()).await.unwrap();
    let enrolled = client.enroll_p10(&leaf.csr_der).await.unwrap();
    assert_eq!(enrolled.cert_der, leaf.cert_der);
    assert_eq!(enrolled.chain_der, vec![pki.issuing_der()]);
    assert_eq!(mock.requests(), 2);

    // Pinned to another certificate, the same (validly signed) response is refused.
    let stranger = pki.party("Someone else", "RSA");
    config.upstream_certs = vec![stranger.cert_der];
    let client = CmpClient::new(config.clone()).await.unwrap();
    let err = client.enroll_p10(&leaf.csr_der).await.unwrap_err();
    assert!(
        matches!(err, CmpError::Protection(ProtectionError::BadSignature)),
        "{err}"
    );
    // With no upstream certificate at all, a signed response cannot be trusted.
    config.upstream_certs.clear();
    let client = CmpClient::new(config).await.unwrap();
    let err = client.enroll_p10(&leaf.csr_der).await.unwrap_err();
    assert!(
        matches!(err, CmpError::Protection(ProtectionError::NoTrustedSigner)),
        "{err}"
    );
}

#[tokio::test]
async fn a_signing_key_that_is_not_the_certificates_is_refused_at_setup() {
    let mut pki = Pki::new();
    let a = pki.party("a", "EC");
    let b = pki.party("b", "EC");
    let config = CmpConfig::new(
        "http://127.0.0.1:9/",
        Credentials::Signature {
            key_pkcs8_der: a.key_der,
            cert_der: b.cert_der,
            chain_der: vec![],
        },
    );
    assert!(matches!(
        CmpClient::new(config).await,
        Err(CmpError::Config(_))
    ));
}

#[tokio::test]
async fn implicit_confirmation_skips_certconf_only_when_granted() {
    let mut pki = Pki::new();
    let (leaf, granted) = mac_mock(&mut pki, &["-grant_implicitconf"]);
    let mut config = mac_config(granted.url(), SECRET);
    config.implicit_confirm = true;
    let enrolled = CmpClient::new(config.clone())
        .await
        .unwrap()
        .enroll_p10(&leaf.csr_der)
        .await
        .unwrap();
    assert!(enrolled.implicitly_confirmed);
    assert_eq!(enrolled.cert_der, leaf.cert_der);
    assert_eq!(granted.requests(), 1, "no certConf: {}", granted.log_text());

    // Requested but not granted: certConf is sent and answered.
    let (leaf, refused) = mac_mock(&mut pki, &[]);
    config.url = refused.url();
    let enrolled = CmpClient::new(config)
        .await
        .unwrap()
        .enroll_p10(&leaf.csr_der)
        .await
        .unwrap();
    assert!(!enrolled.implicitly_confirmed);
    assert_eq!(refused.requests(), 2);

    // Granted but not requested by us: we confirm anyway.
    let (leaf, unasked) = mac_mock(&mut pki, &["-grant_implicitconf"]);
    let enrolled = CmpClient::new(mac_config(unasked.url(), SECRET))
        .await
        .unwrap()
        .enroll_p10(&leaf.csr_der)
        .await
        .unwrap();
    assert!(!enrolled.implicitly_confirmed);
    assert_eq!(unasked.requests(), 2);
}

#[tokio::test]
async fn a_waiting_enrollment_is_handed_back_and_resumed_from_a_saved_transaction() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(&mut pki, &["-poll_count", "2", "-check_after", "1"]);
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();

    let (tx, polled) = client.request_p10(&leaf.csr_der).await.unwrap();
    // The waiting cp was followed by one pollReq, whose pollRep gave checkAfter.
    assert!(
        matches!(polled, Polled::Wait(d) if d == Duration::from_secs(1)),
        "{polled:?}"
    );
    // A queue saves the transaction and polls it later, from another client even.
    let saved = serde_json::to_string(&tx).unwrap();
    let mut tx: sceau_cmp::Transaction = serde_json::from_str(&saved).unwrap();
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let mut rounds = 0;
    let enrolled = loop {
        rounds += 1;
        assert!(rounds < 10, "never ready");
        match client.poll(&mut tx).await.unwrap() {
            Polled::Ready(e) => break e,
            Polled::Wait(d) => tokio::time::sleep(d).await,
        }
    };
    assert_eq!(enrolled.cert_der, leaf.cert_der);
    // p10cr, pollReq (pollRep), pollReq (cp), certConf.
    assert_eq!(mock.requests(), 4, "{}", mock.log_text());
}

#[tokio::test]
async fn the_polling_convenience_waits_as_told_and_gives_up_at_its_deadline() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(&mut pki, &["-poll_count", "2", "-check_after", "1"]);
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let start = Instant::now();
    let enrolled = client.enroll_p10(&leaf.csr_der).await.unwrap();
    assert_eq!(enrolled.cert_der, leaf.cert_der);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited checkAfter"
    );

    // A deadline shorter than checkAfter: the transaction comes back to be polled later.
    let err = client
        .enroll_p10_by(&leaf.csr_der, Instant::now() + Duration::from_millis(100))
        .await
        .unwrap_err();
    let CmpError::StillWaiting {
        mut transaction,
        check_after,
    } = err
    else {
        panic!("expected StillWaiting, got {err}");
    };
    assert!(err_is_transient_shape(check_after));
    tokio::time::sleep(check_after).await;
    let done = loop {
        match client.poll(&mut transaction).await.unwrap() {
            Polled::Ready(e) => break e,
            Polled::Wait(d) => tokio::time::sleep(d).await,
        }
    };
    assert_eq!(done.cert_der, leaf.cert_der);
}

fn err_is_transient_shape(d: Duration) -> bool {
    d >= Duration::from_secs(1)
}

#[tokio::test]
async fn a_rejection_quotes_the_upstream_status_string_and_fail_info() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(
        &mut pki,
        &[
            "-pkistatus",
            "2",
            "-failurebits",
            &((1u32 << 9) | (1 << 23)).to_string(),
            "-statusstring",
            "key too weak for profile",
        ],
    );
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let err = client.enroll_p10(&leaf.csr_der).await.unwrap_err();
    let CmpError::Rejected(status) = &err else {
        panic!("expected Rejected, got {err}");
    };
    assert_eq!(status.status, PkiStatus::Rejection);
    assert_eq!(status.texts, vec!["key too weak for profile".to_owned()]);
    assert_eq!(status.fail_info_names(), vec!["badPOP", "notAuthorized"]);
    let text = err.to_string();
    assert!(
        text.contains("badPOP") && text.contains("key too weak for profile"),
        "{text}"
    );
    assert!(!err.is_transient());
    // No certConf after a rejection.
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn an_error_message_is_a_typed_error_with_its_details() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(&mut pki, &["-send_error"]);
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let err = client.enroll_p10(&leaf.csr_der).await.unwrap_err();
    let CmpError::ErrorMessage {
        status, details, ..
    } = &err
    else {
        panic!("expected ErrorMessage, got {err}");
    };
    assert_eq!(status.status, PkiStatus::Rejection);
    assert!(!details.is_empty() || !status.texts.is_empty(), "{err}");
    assert!(err.upstream_status().is_some());
}

#[tokio::test]
async fn a_response_under_another_secret_is_refused() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(&mut pki, &[]);
    let client = CmpClient::new(mac_config(mock.url(), "not the shared secret"))
        .await
        .unwrap();
    let err = client.enroll_p10(&leaf.csr_der).await.unwrap_err();
    assert!(
        matches!(err, CmpError::Protection(ProtectionError::BadMac)),
        "{err}"
    );
}

#[tokio::test]
async fn an_unprotected_response_is_refused() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(&mut pki, &["-send_unprotected"]);
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let err = client.enroll_p10(&leaf.csr_der).await.unwrap_err();
    assert!(
        matches!(err, CmpError::Protection(ProtectionError::Missing)),
        "{err}"
    );
    // Nothing was confirmed: the certificate was never taken.
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn a_certificate_for_another_key_is_refused_in_certconf() {
    let mut pki = Pki::new();
    let (_other, mock) = mac_mock(&mut pki, &[]);
    let ours = pki.party("ours.example", "EC");
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let err = client.enroll_p10(&ours.csr_der).await.unwrap_err();
    assert!(matches!(err, CmpError::CertificateRefused(_)), "{err}");
    // The refusal went to the CA as a certConf with status rejection.
    assert_eq!(mock.requests(), 2);
}

#[tokio::test]
async fn revocation_of_the_issued_certificate_is_accepted_and_of_another_refused() {
    let mut pki = Pki::new();
    let (leaf, mock) = mac_mock(&mut pki, &[]);
    let client = CmpClient::new(mac_config(mock.url(), SECRET))
        .await
        .unwrap();
    let (serial, issuer) = serial_and_issuer(&leaf.cert_der);
    // keyCompromise (1).
    client.revoke(&serial, &issuer, 1).await.unwrap();

    let other = pki.party("other.example", "EC");
    let (serial, issuer) = serial_and_issuer(&other.cert_der);
    let err = client.revoke(&serial, &issuer, 4).await.unwrap_err();
    let Some(status) = err.upstream_status() else {
        panic!("expected the CA's refusal, got {err}");
    };
    assert_eq!(status.status, PkiStatus::Rejection, "{err}");

    // A reason that does not exist, or serial zero, is refused before anything is sent.
    let before = mock.requests();
    assert!(matches!(
        client.revoke(&serial, &issuer, 7).await,
        Err(CmpError::InvalidRequest(_))
    ));
    assert!(matches!(
        client.revoke(&[0, 0], &issuer, 1).await,
        Err(CmpError::InvalidRequest(_))
    ));
    assert_eq!(mock.requests(), before);
}

fn serial_and_issuer(cert_der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert_der).unwrap();
    (c.raw_serial().to_vec(), c.issuer().as_raw().to_vec())
}
