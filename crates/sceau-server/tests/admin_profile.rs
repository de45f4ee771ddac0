//! The certificate profile (agency guide R37–R39), checked by `openssl x509 -text`: every name
//! in the SAN, basicConstraints CA:FALSE critical, keyUsage critical with digitalSignature (and
//! keyEncipherment for RSA keys only), extendedKeyUsage serverAuth, at most 90 days; and the
//! "server and client auth" profile only for an AA allowed to use it.

mod admin_support;
mod support;

use std::process::Command;

use admin_support::*;
use sceau_store::Table;
use serde_json::{Value, json};
use support::{Http01, Raw, Server, csr_with_key};

struct Text(String);

impl Text {
    /// The value lines under an extension header, and whether it is marked critical.
    fn extension(&self, header: &str) -> (bool, String) {
        let mut lines = self.0.lines();
        let head = lines
            .find(|l| l.trim_start().starts_with(header))
            .unwrap_or_else(|| panic!("no {header} in:\n{}", self.0));
        (
            head.contains("critical"),
            lines.next().unwrap_or("").trim().to_owned(),
        )
    }
}

fn openssl(args: &[&str], pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leaf.pem");
    std::fs::write(&path, pem).unwrap();
    let out = Command::new(sceau_testkit::require_tool("openssl"))
        .args(["x509", "-noout", "-in"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn leaf(chain: &str) -> String {
    chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_owned()
}

/// newOrder (with a profile if given), http-01, finalize with `key`; returns the PEM chain.
async fn issue_with(
    c: &Raw,
    responder: &Http01,
    names: &[&str],
    profile: Option<&str>,
    key: &rcgen::KeyPair,
) -> String {
    let ids: Vec<_> = names
        .iter()
        .map(|n| json!({"type": "dns", "value": n}))
        .collect();
    let mut payload = json!({"identifiers": ids});
    if let Some(p) = profile {
        payload["profile"] = json!(p);
    }
    let url = c.dir.new_order.clone();
    let r = c.post(&url, Some(&payload)).await;
    assert_eq!(r.status, 201, "{}", body(&r));
    let mut o = r.json();
    o["_url"] = json!(r.location());
    assert_eq!(c.solve_http01(&o, responder).await["status"], "ready");
    let (csr, _) = csr_with_key(names, key);
    let r = c.finalize(&o, &csr).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let done = c.poll(o["_url"].as_str().unwrap(), &["processing"]).await;
    let cert = c.post(done["certificate"].as_str().unwrap(), None).await;
    String::from_utf8(cert.body).unwrap()
}

fn days_valid(pem: &str) -> i64 {
    let dates = openssl(&["-startdate", "-enddate", "-dateopt", "iso_8601"], pem);
    let parse = |prefix: &str| {
        let line = dates
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .trim()
            .replace(' ', "T");
        time::OffsetDateTime::parse(&line, &time::format_description::well_known::Rfc3339).unwrap()
    };
    (parse("notAfter=") - parse("notBefore=")).whole_days()
}

#[tokio::test(flavor = "multi_thread")]
async fn default_profile_is_the_agency_guides() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    let names = ["www.a.test", "api.a.test"];
    for n in names {
        server.add_host(n);
    }
    let (kid, key) = create_aa(&server, &names, &[]);
    let c = bound_client(&server, &kid, &key).await;

    let ec = issue_with(
        &c,
        &responder,
        &names,
        None,
        &rcgen::KeyPair::generate().unwrap(),
    )
    .await;
    support::openssl_verify(&server, &ec);
    let text = Text(openssl(&["-text"], &leaf(&ec)));
    let (critical, san) = text.extension("X509v3 Subject Alternative Name");
    assert!(!critical);
    assert!(
        san.contains("DNS:www.a.test") && san.contains("DNS:api.a.test"),
        "{san}"
    );
    assert_eq!(
        text.extension("X509v3 Basic Constraints"),
        (true, "CA:FALSE".to_owned())
    );
    assert_eq!(
        text.extension("X509v3 Key Usage"),
        (true, "Digital Signature".to_owned())
    );
    assert_eq!(
        text.extension("X509v3 Extended Key Usage"),
        (false, "TLS Web Server Authentication".to_owned())
    );
    let days = days_valid(&leaf(&ec));
    assert!((89..=90).contains(&days), "validity {days} days");

    let rsa_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa = issue_with(&c, &responder, &names, None, &rsa_key).await;
    let text = Text(openssl(&["-text"], &leaf(&rsa)));
    assert_eq!(
        text.extension("X509v3 Key Usage"),
        (true, "Digital Signature, Key Encipherment".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_client_profile_only_when_allowed() {
    let server = Server::start(&[]);
    let responder = Http01::start(server.http01_port).await;
    server.add_host("www.a.test");
    let (kid, key) = create_aa(&server, &["www.a.test"], &[]);
    let c = bound_client(&server, &kid, &key).await;

    let url = c.dir.new_order.clone();
    let r = c.post(&url, Some(&json!({"identifiers": [{"type": "dns", "value": "www.a.test"}], "profile": "tls-server-client"}))).await;
    assert_eq!(r.problem_type(), "invalidProfile", "{}", body(&r));
    assert_eq!(server.store().await.count(Table::Orders).await.unwrap(), 0);

    admin_ok(
        &server,
        &["account", "allow-profile", &kid, "tls-server-client"],
    );
    let shown: Value =
        serde_json::from_str(&admin_ok(&server, &["account", "show", &kid, "--json"])).unwrap();
    assert_eq!(
        shown["profiles"],
        json!(["tls-server", "tls-server-client"])
    );
    let chain = issue_with(
        &c,
        &responder,
        &["www.a.test"],
        Some("tls-server-client"),
        &rcgen::KeyPair::generate().unwrap(),
    )
    .await;
    let text = Text(openssl(&["-text"], &leaf(&chain)));
    assert_eq!(
        text.extension("X509v3 Extended Key Usage"),
        (
            false,
            "TLS Web Server Authentication, TLS Web Client Authentication".to_owned()
        )
    );
    assert_eq!(
        text.extension("X509v3 Basic Constraints"),
        (true, "CA:FALSE".to_owned())
    );
}
