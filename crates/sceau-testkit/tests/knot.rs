//! The Knot launcher against the real knotd, checked with independent clients (kdig, knsupdate,
//! nsupdate) and with the testkit's own stub.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use hickory_proto::rr::{RData, RecordType};
use sceau_testkit::{KnotDns, require_tool};

fn kdig_short(knot: &KnotDns, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new(require_tool("kdig"))
        .arg(format!("@{}", knot.addr.ip()))
        .args(["-p", &knot.addr.port().to_string(), name, rtype, "+short"])
        .output()
        .expect("run kdig");
    assert!(
        out.status.success(),
        "kdig failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Sends an RFC 2136 update script with `tool` (knsupdate or nsupdate) and key file `key`.
fn send_update(tool: &str, key: &Path, knot: &KnotDns, body: &str) -> (bool, String) {
    let script = format!(
        "server {} {}\nzone {}\n{body}\nsend\n",
        knot.addr.ip(),
        knot.addr.port(),
        knot.zone
    );
    let mut child = Command::new(require_tool(tool))
        .arg("-k")
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn update tool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn serves_a_and_aaaa_and_replaces_them() {
    let knot = KnotDns::start("test.").expect("knotd starts");
    assert_eq!(knot.zone, "test.");
    assert!(knot.addr.ip().is_loopback());

    knot.set_a("www", "192.0.2.1".parse().unwrap());
    assert_eq!(kdig_short(&knot, "www.test.", "A"), ["192.0.2.1"]);
    // Replaces, does not add.
    knot.set_a("www.test.", "192.0.2.2".parse().unwrap());
    assert_eq!(kdig_short(&knot, "www.test.", "A"), ["192.0.2.2"]);

    knot.set_a("www.test", "2001:db8::5".parse().unwrap());
    assert_eq!(kdig_short(&knot, "www.test.", "AAAA"), ["2001:db8::5"]);
    // The A RRset is untouched by an AAAA change.
    assert_eq!(kdig_short(&knot, "www.test.", "A"), ["192.0.2.2"]);
    let via_stub = knot.query("www", RecordType::AAAA);
    assert!(
        matches!(&via_stub[..], [RData::AAAA(a)] if IpAddr::V6(a.0) == "2001:db8::5".parse::<IpAddr>().unwrap()),
        "{via_stub:?}"
    );
    // Unknown names are empty, not errors.
    assert!(kdig_short(&knot, "nothere.test.", "A").is_empty());
    assert!(knot.query("nothere", RecordType::A).is_empty());
}

#[test]
fn txt_add_remove_and_read_back() {
    let knot = KnotDns::start("example.test").expect("knotd starts");
    assert_eq!(knot.zone, "example.test.");
    let name = "_acme-challenge.host";
    assert!(knot.txt(name).is_empty());

    knot.add_txt(name, "first-value");
    knot.add_txt(name, "with \"quotes\" and \\ backslash");
    let long = "x".repeat(300); // more than one character-string
    knot.add_txt(name, &long);
    let mut got = knot.txt("_acme-challenge.host.example.test.");
    got.sort();
    let mut want = vec![
        "first-value".to_owned(),
        "with \"quotes\" and \\ backslash".to_owned(),
        long.clone(),
    ];
    want.sort();
    assert_eq!(got, want);
    // An independent client sees the same first value.
    assert!(
        kdig_short(&knot, "_acme-challenge.host.example.test.", "TXT")
            .contains(&"\"first-value\"".to_owned())
    );

    knot.remove_txt(name);
    assert!(knot.txt(name).is_empty());
    // Removing again is harmless.
    knot.remove_txt(name);
}

#[test]
fn caa_and_cname() {
    let knot = KnotDns::start("test.").expect("knotd starts");
    knot.set_caa(
        "@",
        0,
        "issue",
        "ourca.example; accounturi=https://ca/acct/1",
    );
    assert_eq!(
        kdig_short(&knot, "test.", "CAA"),
        ["0 issue \"ourca.example; accounturi=https://ca/acct/1\""]
    );
    knot.set_caa("@", 128, "issuewild", ";");
    assert_eq!(kdig_short(&knot, "test.", "CAA"), ["128 issuewild \";\""]);
    knot.remove_caa("@");
    assert!(kdig_short(&knot, "test.", "CAA").is_empty());

    knot.set_cname("_acme-challenge.www", "delegated.other.test.");
    let answer = kdig_short(&knot, "_acme-challenge.www.test.", "CNAME");
    assert_eq!(answer, ["delegated.other.test."]);
}

#[test]
fn rfc2136_update_needs_the_right_key() {
    let knot = KnotDns::start("test.").expect("knotd starts");
    let dir = tempfile::tempdir().unwrap();

    // knsupdate reads Knot's key file format.
    let knot_key = dir.path().join("knot.key");
    knot.write_knot_key_file(&knot_key).unwrap();
    let (ok, out) = send_update(
        "knsupdate",
        &knot_key,
        &knot,
        "update add k.test. 1 TXT \"via-knsupdate\"",
    );
    assert!(ok, "{out}");
    assert_eq!(knot.txt("k"), ["via-knsupdate"]);

    // nsupdate reads the BIND key file.
    let bind_key = dir.path().join("bind.key");
    knot.write_tsig_key_file(&bind_key).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&bind_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&bind_key).unwrap();
    assert!(
        text.contains(&format!("key \"{}\"", knot.tsig.name)),
        "{text}"
    );
    assert!(text.contains("algorithm hmac-sha256;"), "{text}");
    let (ok, out) = send_update(
        "nsupdate",
        &bind_key,
        &knot,
        "update add n.test. 1 TXT \"via-nsupdate\"",
    );
    assert!(ok, "{out}");
    assert_eq!(knot.txt("n"), ["via-nsupdate"]);

    // Same key name, wrong secret: refused, nothing changes.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(
        &wrong,
        format!(
            "hmac-sha256:{}:d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmc=\n",
            knot.tsig.name
        ),
    )
    .unwrap();
    let (ok, out) = send_update(
        "knsupdate",
        &wrong,
        &knot,
        "update add w.test. 1 TXT \"nope\"",
    );
    assert!(!ok, "update with a wrong key was accepted: {out}");
    assert!(out.contains("BADSIG") || out.contains("NOTAUTH"), "{out}");
    assert!(knot.txt("w").is_empty());

    // Unsigned: refused too.
    let mut child = Command::new(require_tool("knsupdate"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!(
        "server {} {}\nzone test.\nupdate add u.test. 1 TXT \"nope\"\nsend\n",
        knot.addr.ip(),
        knot.addr.port()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
    assert!(knot.txt("u").is_empty());
}

#[test]
fn instances_are_independent_and_drop_cleans_up() {
    let a = KnotDns::start("test.").expect("first knotd");
    let b = KnotDns::start("test.").expect("second knotd");
    assert_ne!(a.addr, b.addr);
    a.add_txt("only-a", "a");
    assert_eq!(a.txt("only-a"), ["a"]);
    assert!(b.txt("only-a").is_empty());
    assert_ne!(a.tsig.secret_b64, b.tsig.secret_b64);
    assert_eq!(a.tsig.secret().len(), 32);

    let dir = a.dir().to_owned();
    let addr = a.addr;
    drop(a);
    assert!(!dir.exists(), "temp dir left behind");
    // Nobody answers on the old port any more.
    assert!(sceau_testkit::query(addr, "test.", RecordType::SOA).is_err());
}

#[test]
fn free_port_and_require_tool() {
    let p = sceau_testkit::free_port();
    assert!(p > 0);
    std::net::UdpSocket::bind(("127.0.0.1", p)).expect("port is free");
    assert!(require_tool("knotd").is_absolute());
    let err = std::panic::catch_unwind(|| require_tool("no-such-tool-sceau")).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert_eq!(
        msg,
        "test needs no-such-tool-sceau: install it with the README's test command"
    );
}

#[test]
fn several_zones_in_one_server() {
    let knot = KnotDns::start_zones(&["test.", "delegated.example"]).expect("knotd starts");
    assert_eq!(knot.zone, "test.");
    assert_eq!(knot.zones, ["test.", "delegated.example."]);
    // R62: _acme-challenge in one zone points into a dedicated zone.
    knot.set_cname("_acme-challenge.www", "www.delegated.example.");
    knot.add_txt("www.delegated.example", "in-the-other-zone");
    assert_eq!(
        kdig_short(&knot, "_acme-challenge.www.test.", "CNAME"),
        ["www.delegated.example."]
    );
    assert_eq!(knot.txt("www.delegated.example."), ["in-the-other-zone"]);
    assert_eq!(kdig_short(&knot, "delegated.example.", "SOA").len(), 1);
}
