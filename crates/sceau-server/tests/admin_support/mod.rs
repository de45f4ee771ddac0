//! Support for the external-admin-account tests: runs `sceau-server admin` against a running
//! server's data directory, and binds raw ACME clients (tests/support) with EAB.
#![allow(dead_code)]

use std::process::{Command, Output};

use sceau_wire::b64;
use serde_json::{Value, json};

use crate::support::{Raw, Resp, Server};

/// `sceau-server admin --data-dir <server's> --actor tester ARGS`.
pub fn admin(server: &Server, args: &[&str]) -> Output {
    admin_as(server, "tester", args)
}

/// `sceau-server admin --data-dir <server's> --actor ACTOR ARGS`.
pub fn admin_as(server: &Server, actor: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("admin")
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--actor", actor])
        .args(args)
        .output()
        .expect("run sceau-server admin")
}

/// Runs an admin command that must succeed; returns its stdout.
pub fn admin_ok(server: &Server, args: &[&str]) -> String {
    let out = admin(server, args);
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates an AA for `names` (plus `extra` flags); returns (kid, MAC key).
pub fn create_aa(server: &Server, names: &[&str], extra: &[&str]) -> (String, Vec<u8>) {
    let mut args = vec![
        "account",
        "create",
        "--owner",
        "Alice Martin <alice@example.org>",
        "--json",
    ];
    for n in names {
        args.extend(["--domain", n]);
    }
    args.extend(extra);
    let v: Value = serde_json::from_str(&admin_ok(server, &args)).unwrap();
    (
        v["kid"].as_str().unwrap().to_owned(),
        b64::decode(v["hmac_key"].as_str().unwrap()).unwrap(),
    )
}

/// newAccount with an external account binding (RFC 8555 §7.3.4); sets `kid` on 201.
pub async fn register_eab(c: &mut Raw, eab_kid: &str, mac_key: &[u8]) -> Resp {
    let url = c.dir.new_account.clone();
    let binding = sceau_wire::eab::sign(eab_kid, mac_key, &url, &c.key.jwk());
    let r = c
        .post(&url, Some(&json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.test"], "externalAccountBinding": binding})))
        .await;
    if r.status == 201 {
        c.kid = Some(r.location());
    }
    r
}

/// A new raw client bound to the AA `kid`.
pub async fn bound_client(server: &Server, kid: &str, mac_key: &[u8]) -> Raw {
    let mut c = Raw::new(server).await;
    let r = register_eab(&mut c, kid, mac_key).await;
    assert_eq!(
        r.status,
        201,
        "newAccount with EAB: {}",
        String::from_utf8_lossy(&r.body)
    );
    c
}

/// The ACME account id from the client's account URL.
pub fn account_id(c: &Raw) -> String {
    c.kid
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

pub fn body(r: &Resp) -> String {
    r.text()
}

/// Names of the refused identifiers in a problem's subproblems.
pub fn refused_names(problem: &Value) -> Vec<String> {
    let mut v: Vec<String> = problem["subproblems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["identifier"]["value"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
