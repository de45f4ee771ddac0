//! What the CMP client does when the upstream is down, silent, or answers something that is
//! not a CMP message for this transaction: a typed error each time, never a panic.

mod support;

use std::time::Duration;

use sceau_cmp::{CmpClient, CmpConfig, CmpError};
use support::*;

fn config(url: String) -> CmpConfig {
    let mut c = CmpConfig::new(url, CmpConfig::mac(REFERENCE, SECRET));
    c.timeout = Duration::from_secs(2);
    c.connect_timeout = Duration::from_secs(2);
    c
}

fn csr() -> Vec<u8> {
    let mut pki = Pki::new();
    pki.party("leaf.example", "EC").csr_der
}

#[tokio::test]
async fn a_server_that_is_down_is_unreachable() {
    let port = sceau_testkit::free_port();
    let client = CmpClient::new(config(format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap();
    let err = client.enroll_p10(&csr()).await.unwrap_err();
    assert!(matches!(err, CmpError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let peer = RawPeer::start(None);
    let client = CmpClient::new(config(peer.url())).await.unwrap();
    let start = std::time::Instant::now();
    let err = client.enroll_p10(&csr()).await.unwrap_err();
    assert!(matches!(err, CmpError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(err.is_transient());
}

#[tokio::test]
async fn garbage_in_a_cmp_body_is_a_parse_error() {
    for body in [
        &b"not DER at all"[..],
        &[0x30, 0x03, 0x02, 0x01][..],
        &[0x30, 0x00][..],
        &[0x30, 0x80, 0x00, 0x00][..],
        &[][..],
    ] {
        let peer = RawPeer::start(Some(http_response("200 OK", "application/pkixcmp", body)));
        let client = CmpClient::new(config(peer.url())).await.unwrap();
        let err = client.enroll_p10(&csr()).await.unwrap_err();
        assert!(matches!(err, CmpError::Parse(_)), "{body:?}: {err}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn a_body_that_is_not_pkixcmp_is_refused_by_its_status_or_media_type() {
    let peer = RawPeer::start(Some(http_response("200 OK", "text/html", b"<html>")));
    let client = CmpClient::new(config(peer.url())).await.unwrap();
    let err = client.enroll_p10(&csr()).await.unwrap_err();
    assert!(
        matches!(&err, CmpError::ContentType(t) if t == "text/html"),
        "{err}"
    );

    let peer = RawPeer::start(Some(http_response(
        "503 Service Unavailable",
        "text/plain",
        b"down for maintenance",
    )));
    let client = CmpClient::new(config(peer.url())).await.unwrap();
    let err = client.enroll_p10(&csr()).await.unwrap_err();
    assert!(matches!(err, CmpError::HttpStatus { status: 503 }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_response_over_the_size_cap_is_refused() {
    let body = vec![0x30u8; 4096];
    let peer = RawPeer::start(Some(http_response("200 OK", "application/pkixcmp", &body)));
    let mut c = config(peer.url());
    c.max_response_bytes = 1024;
    let client = CmpClient::new(c).await.unwrap();
    let err = client.enroll_p10(&csr()).await.unwrap_err();
    assert!(matches!(err, CmpError::TooLarge { limit: 1024 }), "{err}");
}

/// A genuine response of the real mock to another transaction (captured with the `openssl cmp`
/// client), replayed: its MAC verifies, but it answers someone else's request.
#[tokio::test]
async fn a_replayed_response_of_another_transaction_is_refused() {
    let mut pki = Pki::new();
    let leaf = pki.party("leaf.example", "EC");
    let chain = pki.chain_file();
    let args = mac_args(
        leaf.cert.to_str().unwrap(),
        chain.to_str().unwrap(),
        pki.root.cert.to_str().unwrap(),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mock = MockCmp::start(&refs);
    let rsp = pki.dir.path().join("rsp.der");
    openssl(
        pki.dir.path(),
        &[
            "cmp",
            "-cmd",
            "p10cr",
            "-server",
            &format!("127.0.0.1:{}", mock.port),
            "-ref",
            REFERENCE,
            "-secret",
            &format!("pass:{SECRET}"),
            "-csr",
            leaf.csr.to_str().unwrap(),
            "-implicit_confirm",
            "-disable_confirm",
            "-rspout",
            rsp.to_str().unwrap(),
            "-certout",
            pki.dir.path().join("got.pem").to_str().unwrap(),
        ],
    );
    let captured = std::fs::read(&rsp).unwrap();
    let peer = RawPeer::start(Some(http_response(
        "200 OK",
        "application/pkixcmp",
        &captured,
    )));
    let client = CmpClient::new(config(peer.url())).await.unwrap();
    let err = client.enroll_p10(&leaf.csr_der).await.unwrap_err();
    assert!(
        matches!(&err, CmpError::Header(m) if m.contains("transactionID")),
        "{err}"
    );
}

#[tokio::test]
async fn bad_configuration_is_refused_before_anything_is_sent() {
    for url in ["ftp://127.0.0.1/", "not a url"] {
        assert!(matches!(
            CmpClient::new(config(url.into())).await,
            Err(CmpError::Config(_))
        ));
    }
    let mut c = config("http://127.0.0.1:9/".into());
    c.credentials = CmpConfig::mac(REFERENCE, "");
    assert!(matches!(CmpClient::new(c).await, Err(CmpError::Config(_))));
    let client = CmpClient::new(config("http://127.0.0.1:9/".into()))
        .await
        .unwrap();
    assert!(matches!(
        client.enroll_p10(b"not a CSR").await,
        Err(CmpError::InvalidRequest(_))
    ));
}
