//! The signing gate (agency guide R35): the signing process checks for itself, from its own
//! connection to the database, the account and every name before it signs. The front end is
//! played here by the test, as a compromised one would be: it talks to the real
//! `sceau-server sign-service` child over its pipes and asks for what the policy forbids.

mod admin_support;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use admin_support::{account_id, admin_ok, bound_client, create_aa};
use sceau_wire::b64;
use serde_json::{Value, json};
use support::*;

/// One request to a signing service started on `server`'s data directory and database, as
/// `serve` starts it; its answer.
fn ask_signer(server: &Server, request: &Value) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("sign-service")
        .arg("--data-dir")
        .arg(server.data_dir())
        .args([
            "--ca-key",
            "p256",
            "--organization",
            "Sceau",
            "--eab",
            "required",
        ])
        .env("SCEAU_SIGNER_DATABASE_URL", server.db_url())
        .env("SCEAU_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut hello = String::new();
    out.read_line(&mut hello).unwrap();
    assert!(
        hello.contains("root_pem"),
        "the service says hello: {hello}"
    );
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{request}").unwrap();
    let mut answer = String::new();
    out.read_line(&mut answer).unwrap();
    drop(input);
    let _ = child.wait();
    serde_json::from_str(&answer).unwrap()
}

fn issue_op(spki: &[u8], names: &[&str], gate: Option<Value>) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut op = json!({
        "id": 7,
        "op": "issue",
        "spki": b64::encode(spki),
        "identifiers": names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
        "not_before": now - 60,
        "not_after": now + 30 * 86400,
        "profile": "tls-server",
        "serial": null,
        "crl_shard": null,
    });
    if let Some(g) = gate {
        op["gate"] = g;
    }
    op
}

#[tokio::test(flavor = "multi_thread")]
async fn the_signer_refuses_what_the_policy_forbids_whatever_the_front_end_sends() {
    let server = Server::start(&[]);
    let (kid, mac) = create_aa(&server, &["allowed.test"], &[]);
    let c = bound_client(&server, &kid, &mac).await;
    let account = account_id(&c);
    let key = rcgen::KeyPair::generate().unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let gate = json!({"account_id": account, "profile": null});

    // A name the external account does not allow: refused by the signer itself.
    let r = ask_signer(
        &server,
        &issue_op(&spki, &["forbidden.test"], Some(gate.clone())),
    );
    let refused = r["outcome"]["gate"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        refused.contains("R35") && refused.contains("forbidden.test"),
        "{refused}"
    );
    // A request that names no account at all.
    let r = ask_signer(&server, &issue_op(&spki, &["allowed.test"], None));
    assert!(
        r["outcome"]["gate"]
            .as_str()
            .unwrap_or_default()
            .contains("names no ACME account"),
        "{r}"
    );
    // An account that does not exist.
    let r = ask_signer(
        &server,
        &issue_op(
            &spki,
            &["allowed.test"],
            Some(json!({"account_id": "nobody", "profile": null})),
        ),
    );
    assert!(
        r["outcome"]["gate"]
            .as_str()
            .unwrap_or_default()
            .contains("no ACME account nobody"),
        "{r}"
    );
    // What the policy allows is signed.
    let r = ask_signer(
        &server,
        &issue_op(&spki, &["allowed.test"], Some(gate.clone())),
    );
    assert!(r["outcome"]["issued"]["der"].is_string(), "{r}");

    // Suspend the external account: the signer refuses from then on, from its own reading.
    admin_ok(&server, &["account", "suspend", &kid]);
    let r = ask_signer(&server, &issue_op(&spki, &["allowed.test"], Some(gate)));
    let refused = r["outcome"]["gate"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(refused.contains("suspended"), "{refused}");
}
