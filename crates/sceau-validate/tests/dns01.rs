//! dns-01 against a real knotd.

mod common;

use common::*;
use sceau_testkit::KnotDns;
use sceau_validate::dns01_txt_value;
use sceau_wire::{Identifier, ProblemType};

#[test]
fn txt_value_is_base64url_sha256() {
    // RFC 8555 §8.4 example shape: 43 base64url characters, no padding.
    let v = dns01_txt_value(KEY_AUTH);
    assert_eq!(v.len(), 43);
    assert!(
        v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{v}"
    );
    // Independent computation with openssl.
    let out = std::process::Command::new(sceau_testkit::require_tool("openssl"))
        .args(["dgst", "-sha256", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(KEY_AUTH.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(sceau_wire::b64::decode(&v).unwrap(), out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_txt_validates_among_others() {
    let knot = knot();
    knot.add_txt("_acme-challenge.www", "unrelated");
    knot.add_txt("_acme-challenge.www", &dns01_txt_value(KEY_AUTH));
    let v = validator(config(&knot));
    v.dns01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .expect("valid");
    // A wildcard is validated at its base domain (RFC 8555 §8.4).
    v.dns01(&Identifier::dns("*.www.test"), KEY_AUTH)
        .await
        .expect("valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_txt_is_incorrect_response_and_fixes_are_seen_at_once() {
    let knot = knot();
    let wrong = dns01_txt_value("another.key-authorization");
    knot.add_txt("_acme-challenge.www", &wrong);
    knot.add_txt("_acme-challenge.www", "some other text");
    let v = validator(config(&knot));
    let id = Identifier::dns("www.test");
    let err = v.dns01(&id, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(err.detail.contains("_acme-challenge.www.test"), "{err}");
    // How many records and what was expected; the records' values are not repeated.
    assert!(err.detail.contains("2 TXT record(s)"), "{err}");
    assert!(err.detail.contains(&dns01_txt_value(KEY_AUTH)), "{err}");
    assert!(!err.detail.contains(&wrong), "{err}");
    assert!(!err.detail.contains("other text"), "{err}");

    knot.remove_txt("_acme-challenge.www");
    knot.add_txt("_acme-challenge.www", &dns01_txt_value(KEY_AUTH));
    v.dns01(&id, KEY_AUTH)
        .await
        .expect("no caching of the old value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_txt() {
    let knot = knot();
    let v = validator(config(&knot));
    // The name does not exist at all: NXDOMAIN is a dns problem.
    let err = v
        .dns01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Dns, "{err}");
    assert!(err.detail.contains("NXDOMAIN"), "{err}");
    // The name exists without TXT: unauthorized.
    knot.set_a("_acme-challenge.www", LOCALHOST);
    let err = v
        .dns01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Unauthorized, "{err}");
    // An unreachable DNS server: dns problem.
    let dead = validator(sceau_validate::ValidatorConfig {
        dns_server: Some(addr(sceau_testkit::free_port())),
        timeout: std::time::Duration::from_secs(2),
        ..config(&knot)
    });
    let err = dead
        .dns01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ProblemType::Dns | ProblemType::Connection),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_cname_within_the_zone() {
    let knot = knot();
    knot.set_cname("_acme-challenge.www", "www.acme-zone.test.");
    knot.add_txt("www.acme-zone", &dns01_txt_value(KEY_AUTH));
    let v = validator(config(&knot));
    v.dns01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .expect("valid through CNAME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_cname_into_a_dedicated_zone() {
    // R62: _acme-challenge is a CNAME into another zone; the server answers with the CNAME only
    // and the validator must ask again for the target.
    let knot = KnotDns::start_zones(&["test.", "acme-delegated.example."]).expect("knotd");
    knot.set_cname("_acme-challenge.www", "www.acme-delegated.example.");
    knot.add_txt("www.acme-delegated.example.", &dns01_txt_value(KEY_AUTH));
    let v = validator(config(&knot));
    v.dns01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .expect("valid through CNAME");
    knot.remove_txt("www.acme-delegated.example.");
    knot.add_txt("www.acme-delegated.example.", "wrong");
    let err = v
        .dns01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_identifiers_cannot_use_dns01() {
    let knot = knot();
    let v = validator(config(&knot));
    let err = v
        .dns01(&Identifier::ip("127.0.0.1"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Malformed, "{err}");
}
