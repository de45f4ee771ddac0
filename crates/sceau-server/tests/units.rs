//! The systemd units of a split deployment (dist/sceau-signer.service, dist/sceau-server.service)
//! as an operator installs them: systemd itself (`systemd-analyze verify`) accepts every line,
//! the command lines are ones sceau-server takes, and the separation they promise (R31–R34)
//! is in them.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 2] = ["sceau-signer.service", "sceau-server.service"];

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dist")
        .join(name)
}

/// The unit's `Key=value` settings, in order.
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn get<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Verifies `unit` with systemd, its binary replaced by the one just built; returns its
/// settings.
fn verified(unit: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dist(unit)).unwrap();
    let exe = env!("CARGO_BIN_EXE_sceau-server");
    // Both units side by side: the front end's requires the signer's.
    let dir = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for name in UNITS {
        let copy = dir.path().join(name);
        let text = std::fs::read_to_string(dist(name)).unwrap();
        std::fs::write(&copy, text.replace("/usr/bin/sceau-server", exe)).unwrap();
        copies.push(copy);
    }
    let analyze = sceau_testkit::require_tool("systemd-analyze");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(dir.path().join(unit))
        .args(copies.iter().filter(|c| !c.ends_with(unit)))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // systemd ignores what it does not understand with a warning, and still exits 0.
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{unit}: {err}"
    );
    let s = settings(&text);
    // The command line is one sceau-server takes: every flag known (clap refuses an unknown
    // one before it looks at --help).
    let exec = get(&s, "ExecStart");
    assert_eq!(exec.len(), 1, "{unit}");
    let mut words = exec[0].split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/sceau-server"));
    let args: Vec<&str> = words.collect();
    let out = Command::new(exe)
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{unit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "UMask",
    ] {
        assert_eq!(get(&s, hardening).len(), 1, "{unit} sets {hardening}");
    }
    assert_eq!(get(&s, "ProtectSystem"), ["strict"], "{unit}");
    assert_eq!(get(&s, "UMask"), ["0077"], "{unit}");
    s
}

#[test]
fn the_split_deployments_units_are_valid_and_keep_the_roles_apart() {
    let signer = verified("sceau-signer.service");
    let front = verified("sceau-server.service");

    // Two users, two state directories: neither reads the other's files.
    assert_eq!(get(&signer, "User"), ["sceau-signer"]);
    assert_eq!(get(&front, "User"), ["sceau-front"]);
    assert_ne!(
        get(&signer, "StateDirectory"),
        get(&front, "StateDirectory")
    );
    assert_eq!(get(&signer, "StateDirectoryMode"), ["0700"]);
    assert_eq!(get(&front, "StateDirectoryMode"), ["0700"]);

    // The signer has no capability at all; the front end only the low port.
    assert_eq!(get(&signer, "CapabilityBoundingSet"), [""]);
    assert!(get(&signer, "AmbientCapabilities").is_empty());
    assert_eq!(
        get(&front, "CapabilityBoundingSet"),
        ["CAP_NET_BIND_SERVICE"]
    );

    // The signer runs `signer`, the front end `serve` and starts after the signer, each on
    // its own database credentials (R33).
    let exec = |s: &[(String, String)]| get(s, "ExecStart")[0].to_owned();
    assert!(exec(&signer).contains(" signer "));
    assert!(exec(&signer).contains("--database-url-file /etc/sceau/signer-db-url"));
    assert!(exec(&front).contains(" serve "));
    assert!(exec(&front).contains("--database-url-file /etc/sceau/front-db-url"));
    assert!(get(&front, "Requires").contains(&"sceau-signer.service"));
    assert!(get(&front, "After")[0].contains("sceau-signer.service"));
}
