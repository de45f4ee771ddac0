//! `sceau-server admin` as an operator runs it (agency guide R1, R8, R20, R21, R72): the MAC key
//! printed once and stored sealed, the refusals that change nothing, and an audit record with
//! the actor for every command.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use sceau_store::Store;
use sceau_wire::b64;
use serde_json::Value;

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn store(data: &Path) -> Store {
    Store::open(&format!("sqlite://{}", data.join("sceau.db").display()))
        .await
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn create_prints_the_key_once_and_stores_it_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = ok(
        &data,
        &[
            "account",
            "create",
            "--owner",
            "Alice Martin <alice@example.org>",
            "--domain",
            "www.a.test",
            "--valid-for",
            "3y",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["hmac_key", "kid"]);
    let key_text = v["hmac_key"].as_str().unwrap();
    let key = b64::decode(key_text).unwrap();
    assert_eq!(key.len(), 32, "256-bit MAC key (R20)");
    let kid = v["kid"].as_str().unwrap();

    // Shown once: `show` and `list` never print it.
    for args in [
        vec!["account", "show", kid],
        vec!["account", "show", kid, "--json"],
        vec!["account", "list", "--json"],
    ] {
        assert!(
            !ok(&data, &args).contains(key_text),
            "{args:?} printed the MAC key"
        );
    }
    // Sealed at rest (R21): neither the raw key nor its text is in any database file.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("sceau.db") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, &key) && !contains(&bytes, key_text.as_bytes()),
                "MAC key in clear in {name}"
            );
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                !contains(&bytes, hex.as_bytes()),
                "MAC key in hex in {name}"
            );
        }
    }
    let wrap = std::fs::metadata(data.join("eab-wrap.key")).unwrap();
    assert_eq!(wrap.permissions().mode() & 0o777, 0o600);
    assert_eq!(wrap.len(), 32);

    let shown: Value =
        serde_json::from_str(&ok(&data, &["account", "show", kid, "--json"])).unwrap();
    let years =
        (shown["not_after"].as_i64().unwrap() - shown["created_at"].as_i64().unwrap()) / 86400;
    assert_eq!(years, 3 * 365);
    assert_eq!(shown["owner"], "Alice Martin <alice@example.org>");
    assert_eq!(shown["names"][0]["name"], "www.a.test");
    assert_eq!(shown["key_regenerations"], 0);
}

#[tokio::test]
async fn refused_creations_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases: [&[&str]; 6] = [
        &["account", "create", "--domain", "www.a.test"],
        &[
            "account",
            "create",
            "--owner",
            "Alice",
            "--domain",
            "www.a.test",
        ],
        &["account", "create", "--owner", "Alice <alice@example.org>"],
        &[
            "account",
            "create",
            "--owner",
            "Alice <alice@example.org>",
            "--domain",
            "www.a.test",
            "--valid-for",
            "4y",
        ],
        &[
            "account",
            "create",
            "--owner",
            "Alice <alice@example.org>",
            "--domain",
            "*.a.test",
        ],
        &[
            "account",
            "create",
            "--owner",
            "Alice <alice@example.org>",
            "--domain",
            "www.a.test",
            "--profile",
            "code-signing",
        ],
    ];
    for args in cases {
        let out = run(&data, args);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let err = String::from_utf8(run(&data, cases[3]).stderr).unwrap();
    assert!(err.contains("at most 3 years"), "{err}");
    let list: Value = serde_json::from_str(&ok(&data, &["account", "list", "--json"])).unwrap();
    assert_eq!(list, serde_json::json!([]));
    // Refusals that reached the registry are in the audit trail.
    let audit = store(&data).await.audit_events(None, 0).await.unwrap();
    assert!(
        audit.iter().filter(|e| e.event == "admin.refused").count() >= 4,
        "{audit:?}"
    );
}

#[tokio::test]
async fn every_command_is_audited_with_its_actor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let v: Value = serde_json::from_str(&ok(
        &data,
        &[
            "--actor",
            "alice",
            "account",
            "create",
            "--owner",
            "Bob Durand <bob@example.org>",
            "--domain",
            "b.test",
            "--json",
        ],
    ))
    .unwrap();
    let kid = v["kid"].as_str().unwrap();
    ok(&data, &["--actor", "carol", "account", "list"]);
    ok(&data, &["--actor", "carol", "account", "show", kid]);
    ok(
        &data,
        &[
            "--actor",
            "dave",
            "account",
            "add-domain",
            kid,
            "c.test",
            "--with-subdomains",
        ],
    );
    ok(
        &data,
        &["--actor", "dave", "account", "regenerate-key", kid],
    );
    let audit = store(&data).await.audit_events(None, 0).await.unwrap();
    let by = |event: &str| {
        audit
            .iter()
            .find(|e| e.event == event)
            .map(|e| e.detail["actor"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(
        by("admin.external_account.created").as_deref(),
        Some("alice")
    );
    assert_eq!(
        by("admin.external_accounts_listed").as_deref(),
        Some("carol")
    );
    assert_eq!(by("admin.external_account_shown").as_deref(), Some("carol"));
    assert_eq!(
        by("admin.external_account.names_added").as_deref(),
        Some("dave")
    );
    assert_eq!(
        by("admin.external_account.key_regenerated").as_deref(),
        Some("dave")
    );
    // No audit record holds a MAC key.
    for e in &audit {
        assert!(
            !e.detail
                .to_string()
                .contains(v["hmac_key"].as_str().unwrap())
        );
    }
    // Without --actor, the OS user is recorded.
    ok(&data, &["account", "list"]);
    let audit = store(&data).await.audit_events(None, 0).await.unwrap();
    let last = audit
        .iter()
        .rev()
        .find(|e| e.event == "admin.external_accounts_listed")
        .unwrap();
    assert!(!last.detail["actor"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn config_file_names_the_data_directory_as_for_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("elsewhere");
    let conf = dir.path().join("sceau.toml");
    std::fs::write(&conf, format!("data_dir = {:?}\n", data.to_str().unwrap())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args(["admin", "--config"])
        .arg(&conf)
        .args([
            "account",
            "create",
            "--owner",
            "Alice <alice@example.org>",
            "--domain",
            "a.test",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("sceau.db").exists() && data.join("eab-wrap.key").exists());
    let list: Value = serde_json::from_str(&ok(&data, &["account", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}
