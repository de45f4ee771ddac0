//! CAA (RFC 8659, RFC 8657) against records served by a real knotd.

mod common;

use common::*;
use sceau_wire::{Identifier, ProblemType};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caa_allows() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let v = validator(config(&knot));
    v.caa(&Identifier::dns("www.test"), ACCOUNT, "http-01")
        .await
        .expect("allowed");
    // Names that do not exist have no CAA either.
    v.caa(&Identifier::dns("a.b.nothere.test"), ACCOUNT, "http-01")
        .await
        .expect("allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_names_us_or_someone_else() {
    let knot = knot();
    let v = validator(config(&knot));
    let id = Identifier::dns("www.test");
    knot.set_caa("www", 0, "issue", OUR_CA);
    v.caa(&id, ACCOUNT, "http-01").await.expect("allowed");

    knot.set_caa("www", 0, "issue", "other.example");
    let err = v.caa(&id, ACCOUNT, "http-01").await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Caa, "{err}");
    assert!(err.detail.contains("www.test"), "{err}");

    // Additive: one of several issue properties is enough.
    knot.set_caa_records(
        "www",
        &[(0, "issue", "other.example"), (0, "issue", OUR_CA)],
    );
    v.caa(&id, ACCOUNT, "http-01").await.expect("allowed");

    // Forbid everyone; and a malformed value means the same.
    knot.set_caa("www", 0, "issue", ";");
    assert_eq!(
        v.caa(&id, ACCOUNT, "http-01").await.unwrap_err().kind,
        ProblemType::Caa
    );
    knot.set_caa("www", 0, "issue", "%%%%%");
    assert_eq!(
        v.caa(&id, ACCOUNT, "http-01").await.unwrap_err().kind,
        ProblemType::Caa
    );

    // iodef alone does not restrict.
    knot.set_caa("www", 0, "iodef", "mailto:security@test");
    v.caa(&id, ACCOUNT, "http-01").await.expect("allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_and_method_parameters() {
    let knot = knot();
    let v = validator(config(&knot));
    let id = Identifier::dns("www.test");
    knot.set_caa(
        "www",
        0,
        "issue",
        &format!("{OUR_CA}; accounturi={ACCOUNT}"),
    );
    v.caa(&id, ACCOUNT, "http-01").await.expect("our account");
    let err = v
        .caa(&id, "https://ca.test/acme/acct/43", "http-01")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Caa, "{err}");

    knot.set_caa(
        "www",
        0,
        "issue",
        &format!("{OUR_CA}; validationmethods=dns-01,tls-alpn-01"),
    );
    v.caa(&id, ACCOUNT, "dns-01").await.expect("listed method");
    v.caa(&id, ACCOUNT, "tls-alpn-01")
        .await
        .expect("listed method");
    let err = v.caa(&id, ACCOUNT, "http-01").await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Caa, "{err}");
    assert!(err.detail.contains("http-01"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_domain_applies_to_children_until_a_closer_set() {
    let knot = knot();
    let v = validator(config(&knot));
    knot.set_caa("@", 0, "issue", "other.example");
    knot.set_a("deep.sub", LOCALHOST);
    let err = v
        .caa(&Identifier::dns("deep.sub.test"), ACCOUNT, "http-01")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Caa, "{err}");
    assert!(err.detail.contains("CAA at test"), "{err}");
    // A CAA set closer to the name wins over the parent's.
    knot.set_caa("sub", 0, "issue", OUR_CA);
    v.caa(&Identifier::dns("deep.sub.test"), ACCOUNT, "http-01")
        .await
        .expect("closest set wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_unknown_tag_and_wildcards() {
    let knot = knot();
    let v = validator(config(&knot));
    knot.set_caa_records("www", &[(0, "issue", OUR_CA), (128, "tbs", "unknown")]);
    let err = v
        .caa(&Identifier::dns("www.test"), ACCOUNT, "http-01")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Caa, "{err}");
    assert!(err.detail.contains("tbs"), "{err}");

    knot.set_caa_records(
        "wild",
        &[(0, "issue", OUR_CA), (0, "issuewild", "other.example")],
    );
    v.caa(&Identifier::dns("wild.test"), ACCOUNT, "dns-01")
        .await
        .expect("issue applies");
    let err = v
        .caa(&Identifier::dns("*.wild.test"), ACCOUNT, "dns-01")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Caa, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_cname_at_the_name() {
    let knot = knot();
    let v = validator(config(&knot));
    knot.set_caa("policy", 0, "issue", "other.example");
    knot.set_cname("alias", "policy.test.");
    let err = v
        .caa(&Identifier::dns("alias.test"), ACCOUNT, "http-01")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Caa, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_identifiers_and_disabled_checking_pass() {
    let knot = knot();
    knot.set_caa("@", 0, "issue", ";");
    let v = validator(config(&knot));
    v.caa(&Identifier::ip("127.0.0.1"), ACCOUNT, "http-01")
        .await
        .expect("no CAA for IPs");
    let off = validator(sceau_validate::ValidatorConfig {
        caa_identities: vec![],
        ..config(&knot)
    });
    off.caa(&Identifier::dns("www.test"), ACCOUNT, "http-01")
        .await
        .expect("checking disabled");
    // Enabled, the same name is refused.
    assert_eq!(
        v.caa(&Identifier::dns("www.test"), ACCOUNT, "http-01")
            .await
            .unwrap_err()
            .kind,
        ProblemType::Caa
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_failure_refuses() {
    let knot = knot();
    let dead = validator(sceau_validate::ValidatorConfig {
        dns_server: Some(addr(sceau_testkit::free_port())),
        timeout: std::time::Duration::from_secs(2),
        ..config(&knot)
    });
    let err = dead
        .caa(&Identifier::dns("www.test"), ACCOUNT, "http-01")
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ProblemType::Dns | ProblemType::Connection),
        "{err}"
    );
}
