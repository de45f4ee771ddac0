//! `/metrics` on the operators' listener (issue 15): what an issuance, a failed validation and
//! a refused request do to the figures, in a text Prometheus' own `promtool check metrics`
//! accepts; and the ACME listener does not serve it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use sceau_testkit::{free_port, require_tool};
use serde_json::json;
use support::{Http01, Raw, Server, challenge, issue, order};

async fn scrape(http: &reqwest::Client, port: u16) -> String {
    let r = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    r.text().await.unwrap()
}

/// The value of the sample `series` (name and labels as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn promtool_accepts(text: &str) {
    let mut child = Command::new(require_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issuance_validation_and_refusals_show_in_metrics_promtool_accepts() {
    let port = free_port();
    let s = Server::start(&[
        "--eab",
        "off",
        "--metrics-listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let http = support::http_client(&s.root_pem());
    let before = scrape(&http, port).await;
    promtool_accepts(&before);
    assert_eq!(
        sample(&before, "sceau_certificates_issued_total"),
        Some(0.0)
    );
    assert_eq!(sample(&before, "sceau_database_up"), Some(1.0));
    assert_eq!(sample(&before, "sceau_signer_up"), Some(1.0));

    s.add_host("m.test");
    s.add_host("gone.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    issue(&c, &responder, &["m.test"]).await;

    // A validation that fails: no key authorization is served for this one.
    let o = order(&c, &["gone.test"]).await;
    let authz = c
        .post(o["authorizations"][0].as_str().unwrap(), None)
        .await
        .json();
    let ch = challenge(&authz, "http-01");
    c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    c.poll(ch["url"].as_str().unwrap(), &["pending", "processing"])
        .await;

    // A request whose nonce was used already (a replay): badNonce.
    let url = format!("{}/acme/new-order", s.base());
    let jws = c.sign(&url, Some(&json!({"identifiers": []}))).await;
    c.send(&url, &jws).await;
    let r = c.send(&url, &jws).await;
    assert!(r.problem_type().ends_with("badNonce"), "{}", r.text());

    let after = scrape(&http, port).await;
    promtool_accepts(&after);
    assert_eq!(
        sample(&after, "sceau_certificates_issued_total"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "sceau_validations_total{type=\"http-01\",result=\"valid\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "sceau_validations_total{type=\"http-01\",result=\"invalid\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert!(
        sample(&after, "sceau_problems_total{type=\"badNonce\"}").unwrap_or(0.0) >= 1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "sceau_signer_duration_seconds_count"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "sceau_signer_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&after, "sceau_issuance_queue_depth"), Some(0.0));
    assert!(sample(&after, "sceau_database_latency_seconds").unwrap() < 1.0);

    // The ACME listener has no such page; the operators' listener answers health too.
    let acme = http
        .get(format!("{}/metrics", s.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(acme.status(), 404);
    let ready = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
