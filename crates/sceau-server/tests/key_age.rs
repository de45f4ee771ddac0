//! Agency guide R9: with `--eab-max-key-age-days`, an external account's MAC key older than the
//! limit binds no new ACME account (refused `unauthorized`, 403, audited with the reason); once the
//! key is regenerated, the new one binds. ACME accounts bound before keep working.

mod admin_support;
mod support;

use std::process::Command;

use admin_support::{admin_ok, bound_client, create_aa, register_eab};
use sceau_testkit::require_tool;
use sceau_wire::b64;
use support::{Raw, Server};

#[tokio::test(flavor = "multi_thread")]
async fn a_mac_key_past_its_age_binds_nothing_until_regenerated() {
    let s = Server::start(&["--eab-max-key-age-days", "30"]);
    let (kid, mac) = create_aa(&s, &["k.test"], &[]);
    // Bound while the key is young.
    let early = bound_client(&s, &kid, &mac).await;

    // The key was set 31 days ago (the clock of the row, not of the machine).
    let out = Command::new(require_tool("sqlite3"))
        .arg(s.data_dir().join("sceau.db"))
        .arg(format!(
            "UPDATE external_accounts SET key_updated_at = key_updated_at - 31 * 86400 WHERE kid = '{kid}'"
        ))
        .output()
        .unwrap();
    assert!(out.status.success());

    let mut late = Raw::new(&s).await;
    let r = register_eab(&mut late, &kid, &mac).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.problem_type().ends_with("unauthorized"), "{}", r.text());
    assert!(r.text().contains("maximum age"), "{}", r.text());
    let store = s.store().await;
    let refused = store
        .audit_log(&sceau_store::AuditFilter {
            event_prefix: Some("eab.refused".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        refused[0].detail["reason"]
            .as_str()
            .unwrap()
            .contains("31 days old, over the limit of 30 days"),
        "{:?}",
        refused[0].detail
    );
    // The account bound before still orders.
    let o = early
        .post(
            &early.dir.new_order.clone(),
            Some(&serde_json::json!({"identifiers": [{"type": "dns", "value": "k.test"}]})),
        )
        .await;
    assert_eq!(o.status, 201, "{}", o.text());

    // A new key binds.
    let out = admin_ok(&s, &["account", "regenerate-key", &kid, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let new_mac = b64::decode(v["hmac_key"].as_str().unwrap()).unwrap();
    bound_client(&s, &kid, &new_mac).await;
}
