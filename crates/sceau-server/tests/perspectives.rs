//! Multi-perspective validation (agency guide R28, BR §3.2.2.9): a primary sceau-server and
//! real `sceau-server validator` processes, each perspective with its own knot DNS server, on
//! loopback. A perspective is hijacked by its own resolver sending the name to "mallory"
//! (127.0.0.2), which answers the challenge with an attacker's key authorization.

mod support;

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
use sceau_testkit::{KnotDns, Lab, free_port};
use serde_json::{Value, json};
use support::*;

const GOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const MALLORY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A running `sceau-server validator`, killed on drop.
struct RemoteValidator {
    child: Child,
    port: u16,
}

impl Drop for RemoteValidator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a validator named `name` with the certificate `tls` (pem, key), trusting primaries
/// certified by `ca`, resolving with `dns`.
fn start_validator(
    name: &str,
    ca: &Path,
    tls: &(String, String),
    dns: &KnotDns,
    http01_port: u16,
) -> RemoteValidator {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("validator")
        .args(["--name", name, "--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-ca")
        .arg(ca)
        .args(["--tls-cert", &tls.0, "--tls-key", &tls.1])
        .args(["--dns-server", &dns.addr.to_string()])
        .args(["--http01-port", &http01_port.to_string()])
        .args(["--validation-allow", "127.0.0.0/8", "--timeout-secs", "5"])
        .env("SCEAU_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sceau-server validator");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("is ready"), "validator {name}: {line:?}");
    RemoteValidator { child, port }
}

/// The primary's configuration file: CAA for `sceau.test`, the perspectives with `extra`
/// settings (`quorum`, `mode`).
fn primary_config(dir: &Path, link: &Path, remotes: &[(&str, u16)], extra: &str) -> PathBuf {
    let mut text = format!(
        "caa_identities = [\"sceau.test\"]\ncaa_recheck_secs = 1\n[perspectives]\ntimeout_secs = 3\n{extra}\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        link.join("validation-ca.pem").display(),
        link.join("primary.pem").display(),
        link.join("primary.key").display()
    );
    for (name, port) in remotes {
        text.push_str(&format!(
            "[[perspectives.remote]]\nname = \"{name}\"\nurl = \"https://127.0.0.1:{port}\"\n"
        ));
    }
    let path = dir.join(format!("primary-{}.toml", free_port()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Orders `name`, answers http-01 (mallory answers with an attacker's key authorization) and
/// waits for the authorization's outcome: (authorization, its http-01 challenge, seconds taken).
async fn validate(c: &Raw, good: &Http01, mallory: &Http01, name: &str) -> (Value, Value, f64) {
    let order = order(c, &[name]).await;
    let (authz_url, ch) = c.first_challenge(&order, "http-01").await;
    let token = ch["token"].as_str().unwrap();
    good.set(token, &c.key_authz(token));
    mallory.set(token, &format!("{token}.mallory-account-thumbprint"));
    let started = Instant::now();
    let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let authz = c.poll(&authz_url, &["pending"]).await;
    let took = started.elapsed().as_secs_f64();
    let ch = challenge(&authz, "http-01");
    (authz, ch, took)
}

/// The audit row of `name`'s validation outcome.
async fn outcome(server: &Server, name: &str) -> sceau_store::AuditRecord {
    let store = server.store().await;
    let events = store.audit_events(None, 0).await.unwrap();
    events
        .into_iter()
        .rev()
        .find(|e| e.event.starts_with("validation.") && e.detail["identifier"] == name)
        .unwrap_or_else(|| panic!("no validation outcome audited for {name}"))
}

/// The last audit row of `event`.
async fn outcome_event(server: &Server, event: &str) -> sceau_store::AuditRecord {
    let store = server.store().await;
    let events = store.audit_events(None, 0).await.unwrap();
    events
        .into_iter()
        .rev()
        .find(|e| e.event == event)
        .unwrap_or_else(|| panic!("no {event} audited"))
}

/// The perspectives that agreed and those that did not, from an audit row.
fn findings(e: &sceau_store::AuditRecord) -> (Vec<String>, Vec<(String, String)>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for f in e.detail["perspectives"]["findings"].as_array().unwrap() {
        let name = f["perspective"].as_str().unwrap().to_owned();
        if f["ok"] == true {
            ok.push(name);
        } else {
            failed.push((name, f["detail"].as_str().unwrap_or("").to_owned()));
        }
    }
    ok.sort();
    (ok, failed)
}

/// Points `name` at `ip` in each of `dns`.
fn resolve(dns: &[&KnotDns], name: &str, ip: IpAddr) {
    for d in dns {
        d.set_a(name, ip);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_remote_perspectives_decide_by_quorum_with_caa() {
    let link = tempfile::tempdir().unwrap();
    let ca = LinkCa::new(link.path(), "validation");
    let primary_tls = ca.issue("primary", &[], ClientAuth);
    let mut server = Server::unstarted(&["--eab", "off"]);
    let http01_port = server.http01_port;
    let views: Vec<KnotDns> = (0..3).map(|_| KnotDns::start("test.").unwrap()).collect();
    let validators: Vec<RemoteValidator> = (0..3)
        .map(|i| {
            let tls = ca.issue(&format!("dc{}", i + 1), &["127.0.0.1"], ServerAuth);
            start_validator(
                &format!("dc{}", i + 1),
                &link.path().join("validation-ca.pem"),
                &tls,
                &views[i],
                http01_port,
            )
        })
        .collect();
    let remotes: Vec<(&str, u16)> = ["dc1", "dc2", "dc3"]
        .into_iter()
        .zip(validators.iter().map(|v| v.port))
        .collect();
    let config = primary_config(link.path(), link.path(), &remotes, "");
    server
        .args
        .extend(["--config".into(), config.display().to_string()]);
    server.spawn();
    assert_eq!(
        primary_tls.1,
        link.path().join("primary.key").display().to_string()
    );
    let good = Http01::start_at(GOOD, http01_port).await;
    let mallory = Http01::start_at(MALLORY, http01_port).await;
    let mut c = Raw::new(&server).await;
    c.register().await;
    let [dc1, dc2, dc3] = [&views[0], &views[1], &views[2]];
    let primary = &server.dns;

    // Every perspective sees the real host: valid, and every one of them agreed.
    resolve(&[primary, dc1, dc2, dc3], "all.mpic", GOOD);
    let (authz, _, _) = validate(&c, &good, &mallory, "all.mpic.test").await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let e = outcome(&server, "all.mpic.test").await;
    assert_eq!(e.event, "validation.succeeded");
    assert_eq!(
        findings(&e).0,
        ["dc1", "dc2", "dc3", "primary"],
        "{}",
        e.detail
    );

    // One hijacked perspective of three: the quorum (2) holds, and the audit names it.
    resolve(&[primary, dc1, dc2], "one.mpic", GOOD);
    resolve(&[dc3], "one.mpic", MALLORY);
    let (authz, _, _) = validate(&c, &good, &mallory, "one.mpic.test").await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let e = outcome(&server, "one.mpic.test").await;
    let (ok, failed) = findings(&e);
    assert_eq!(ok, ["dc1", "dc2", "primary"], "{}", e.detail);
    assert_eq!(failed.len(), 1, "{}", e.detail);
    assert_eq!(failed[0].0, "dc3");
    assert!(failed[0].1.contains("one.mpic.test"), "{failed:?}");

    // Two hijacked: refused, and the problem names both and why.
    resolve(&[primary, dc1], "two.mpic", GOOD);
    resolve(&[dc2, dc3], "two.mpic", MALLORY);
    let (authz, ch, _) = validate(&c, &good, &mallory, "two.mpic.test").await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    let detail = ch["error"]["detail"].as_str().unwrap();
    assert_eq!(
        ch["error"]["type"], "urn:ietf:params:acme:error:incorrectResponse",
        "{ch}"
    );
    assert!(
        detail.contains("only 1 of 3 remote perspectives agreed (dc1), 2 needed"),
        "{detail}"
    );
    assert!(
        detail.contains("dc2: ") && detail.contains("dc3: "),
        "{detail}"
    );
    assert_eq!(
        outcome(&server, "two.mpic.test").await.event,
        "validation.failed"
    );

    // A hijacked primary: refused whatever the remotes say.
    resolve(&[dc1, dc2, dc3], "home.mpic", GOOD);
    resolve(&[primary], "home.mpic", MALLORY);
    let (authz, ch, _) = validate(&c, &good, &mallory, "home.mpic.test").await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    let detail = ch["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("from the primary perspective"), "{detail}");

    // dns-01 through each perspective's own resolver: the record is missing from dc3's view
    // only (a stale or poisoned resolver there): valid by the quorum, dc3 named.
    let order_v = order(&c, &["dns.mpic.test"]).await;
    let (authz_url, ch) = c.first_challenge(&order_v, "dns-01").await;
    let txt = c.dns01_txt(ch["token"].as_str().unwrap());
    for d in [primary, dc1, dc2] {
        d.add_txt("_acme-challenge.dns.mpic", &txt);
    }
    let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let authz = c.poll(&authz_url, &["pending"]).await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let (ok, failed) = findings(&outcome(&server, "dns.mpic.test").await);
    assert_eq!(ok, ["dc1", "dc2", "primary"]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "dc3", "{failed:?}");
    assert!(
        failed[0].1.contains("_acme-challenge.dns.mpic.test"),
        "{failed:?}"
    );

    // CAA forbidding Sceau seen by a quorum (two remotes; the primary and dc3 see none): refused.
    resolve(&[primary, dc1, dc2, dc3], "caa.mpic", GOOD);
    for d in [dc1, dc2] {
        d.set_caa("caa.mpic", 0, "issue", "other-ca.test");
    }
    let (authz, ch, _) = validate(&c, &good, &mallory, "caa.mpic.test").await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    assert_eq!(
        ch["error"]["type"], "urn:ietf:params:acme:error:caa",
        "{ch}"
    );
    let detail = ch["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("dc1: ") && detail.contains("dc2: "),
        "{detail}"
    );
    // Seen by one remote only: the quorum issues, the audit keeps who saw it.
    resolve(&[primary, dc1, dc2, dc3], "caa1.mpic", GOOD);
    dc2.set_caa("caa1.mpic", 0, "issue", "other-ca.test");
    let (authz, _, _) = validate(&c, &good, &mallory, "caa1.mpic.test").await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let (_, failed) = findings(&outcome(&server, "caa1.mpic.test").await);
    assert_eq!(
        failed.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        ["dc2"]
    );
    // Seen by the primary: refused (the primary always has to pass).
    resolve(&[primary, dc1, dc2, dc3], "caa2.mpic", GOOD);
    primary.set_caa("caa2.mpic", 0, "issue", "other-ca.test");
    let (authz, ch, _) = validate(&c, &good, &mallory, "caa2.mpic.test").await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    assert_eq!(
        ch["error"]["type"], "urn:ietf:params:acme:error:caa",
        "{ch}"
    );

    // CAA changed after validation: finalize checks it again (the authorization is older than
    // caa_recheck_secs) under the same quorum, refuses, and the order stays ready.
    resolve(&[primary, dc1, dc2, dc3], "late.mpic", GOOD);
    let late = order(&c, &["late.mpic.test"]).await;
    let ready = c.solve_http01(&late, &good).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    for d in [dc1, dc3] {
        d.set_caa("late.mpic", 0, "issue", "other-ca.test");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (csr_b64, _key) = csr(&["late.mpic.test"]);
    let r = c.finalize(&late, &csr_b64).await;
    assert_eq!(r.problem_type(), "caa", "{}", r.text());
    assert!(
        r.text().contains("CAA checked again at issuance"),
        "{}",
        r.text()
    );
    let again = c.post(late["_url"].as_str().unwrap(), None).await.json();
    assert_eq!(again["status"], "ready", "{again}");
    let e = outcome_event(&server, "caa.recheck_failed").await;
    assert_eq!(e.detail["identifier"], "late.mpic.test", "{}", e.detail);
    for d in [dc1, dc3] {
        d.remove_caa("late.mpic");
    }
    let r = c.finalize(&late, &csr_b64).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The whole set-up issues: an order through all perspectives gets its certificate.
    resolve(&[primary, dc1, dc2, dc3], "cert.mpic", GOOD);
    let (order_v, chain) = issue(&c, &good, &["cert.mpic.test"]).await;
    assert_eq!(order_v["status"], "valid");
    openssl_verify(&server, &chain);

    // Log-only (roll-out): the same two hijacked perspectives do not refuse, but the audit and
    // the log say the quorum failed.
    let log_only = primary_config(link.path(), link.path(), &remotes, "mode = \"log-only\"");
    let mut second = Server::unstarted(&["--eab", "off"]);
    second.http01_port = http01_port;
    second
        .args
        .extend(["--config".into(), log_only.display().to_string()]);
    second.spawn();
    let mut c2 = Raw::new(&second).await;
    c2.register().await;
    resolve(&[&second.dns, dc1], "roll.mpic", GOOD);
    resolve(&[dc2, dc3], "roll.mpic", MALLORY);
    let (authz, _, _) = validate(&c2, &good, &mallory, "roll.mpic.test").await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let e = outcome(&second, "roll.mpic.test").await;
    assert_eq!(
        e.detail["perspectives"]["quorum_failed"], true,
        "{}",
        e.detail
    );
    assert_eq!(findings(&e).1.len(), 2, "{}", e.detail);
}

#[tokio::test(flavor = "multi_thread")]
async fn faulty_remote_perspectives_count_as_failures_and_nothing_hangs() {
    let link = tempfile::tempdir().unwrap();
    let ca = LinkCa::new(link.path(), "validation");
    ca.issue("primary", &[], ClientAuth);
    let rogue = LinkCa::new(link.path(), "rogue");
    let mut server = Server::unstarted(&["--eab", "off"]);
    let http01_port = server.http01_port;
    let view = KnotDns::start("test.").unwrap();
    let ca_file = link.path().join("validation-ca.pem");
    let good_tls = ca.issue("dc1", &["127.0.0.1"], ServerAuth);
    let dc1 = start_validator("dc1", &ca_file, &good_tls, &view, http01_port);
    // A certificate the validation CA did not issue.
    let rogue_tls = rogue.issue("dc3", &["127.0.0.1"], ServerAuth);
    let dc3 = start_validator("dc3", &ca_file, &rogue_tls, &view, http01_port);
    // A genuine validator that calls itself dc1 where the primary expects dc4.
    let dc4_tls = ca.issue("dc4", &["127.0.0.1"], ServerAuth);
    let dc4 = start_validator("dc1", &ca_file, &dc4_tls, &view, http01_port);
    // Nothing listens (down), and a listener that never answers (slow).
    let down = free_port();
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = black_hole.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in black_hole.incoming().take(8) {
            conns.push(c);
        }
    });
    let remotes = [
        ("dc1", dc1.port),
        ("dc2", down),
        ("dc3", dc3.port),
        ("dc4", dc4.port),
        ("dc5", slow),
    ];
    // Two of five must agree: only dc1 can, so each fault must count as a failure.
    let config = primary_config(link.path(), link.path(), &remotes, "quorum = 2");
    server
        .args
        .extend(["--config".into(), config.display().to_string()]);
    server.spawn();
    let good = Http01::start_at(GOOD, http01_port).await;
    let mallory = Http01::start_at(MALLORY, http01_port).await;
    let mut c = Raw::new(&server).await;
    c.register().await;
    resolve(&[&server.dns, &view], "faults.mpic", GOOD);
    let (authz, ch, took) = validate(&c, &good, &mallory, "faults.mpic.test").await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    let detail = ch["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("only 1 of 5 remote perspectives agreed (dc1), 2 needed"),
        "{detail}"
    );
    assert!(detail.contains("dc2: unreachable"), "{detail}");
    assert!(
        detail.contains("dc3: unreachable") && detail.contains("certificate"),
        "{detail}"
    );
    assert!(
        detail.contains("dc4: answered as perspective \"dc1\""),
        "{detail}"
    );
    assert!(detail.contains("dc5: no answer within 3s"), "{detail}");
    // Decided when the slow one timed out (3 s), not later.
    assert!(took < 12.0, "took {took} s");
    drop(held);

    // The validator itself: no client certificate, or one from another CA, gets no answer;
    // a certified primary sending garbage gets a 400 and no check.
    let url = format!("https://127.0.0.1:{}/v1/check", dc1.port);
    let rogue_client = rogue.issue("rogue-primary", &[], ClientAuth);
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(&ca_file)
            .args(args)
            .arg(&url)
            .output()
            .unwrap()
    };
    let out = curl(&["-d", "{}"]);
    assert!(!out.status.success(), "no client certificate was served");
    let out = curl(&[
        "--cert",
        &rogue_client.0,
        "--key",
        &rogue_client.1,
        "-d",
        "{}",
    ]);
    assert!(
        !out.status.success(),
        "a rogue client certificate was served"
    );
    let primary = (
        link.path().join("primary.pem").display().to_string(),
        link.path().join("primary.key").display().to_string(),
    );
    let out = curl(&[
        "--cert",
        &primary.0,
        "--key",
        &primary.1,
        "-d",
        "{\"identifier\": 1}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(64 * 1024));
    // Refused with 413 once 16 KiB are read; the validator may close on the rest of the body
    // before curl reads the answer. Either way nothing was checked, and it keeps serving.
    let out = curl(&["--cert", &primary.0, "--key", &primary.1, "-d", &big]);
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        code == "413" || !out.status.success(),
        "oversized request answered {code}"
    );
    let out = curl(&["--cert", &primary.0, "--key", &primary.1, "-d", "[]"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
}

#[test]
fn a_bad_perspectives_section_stops_the_server_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LinkCa::new(dir.path(), "validation");
    ca.issue("primary", &[], ClientAuth);
    let start = |extra: &str, remotes: &[(&str, u16)]| {
        let config = primary_config(dir.path(), dir.path(), remotes, extra);
        let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--eab", "off", "--listen", "127.0.0.1:0"])
            .args(["--revocation-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra} started");
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    };
    let two = [("dc1", 1), ("dc2", 2)];
    assert!(start("quorum = 3", &two).contains("quorum 3 is more than the 2 remote perspectives"));
    assert!(start("quorum = 0", &two).contains("log-only"));
    assert!(start("", &[("dc1", 1), ("dc1", 2)]).contains("used twice"));
    assert!(start("", &[("primary", 1)]).contains("reserved"));
    assert!(start("", &[]).contains("no [[perspectives.remote]]"));
    assert!(start("mode = \"sometimes\"", &two).contains("unknown variant"));
}

/// Serves `dir` over HTTP on `ip:port` from inside namespace `ns` (python3's http.server),
/// once it accepts connections.
fn web_server(lab: &Lab, ns: &str, ip: &str, port: u16, dir: &Path) -> RemoteValidator {
    let child = lab
        .command(ns, &sceau_testkit::require_tool("python3"))
        .args(["-m", "http.server", &port.to_string(), "--bind", ip])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect((ip, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "web server on {ip}:{port} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    RemoteValidator { child, port }
}

/// Orders `name` and answers http-01 by files: the real host's web root gets the key
/// authorization, mallory's an attacker's. The authorization and its challenge once validated.
async fn validate_by_files(c: &Raw, web: &Path, mallory: &Path, name: &str) -> (Value, Value) {
    let order = order(c, &[name]).await;
    let (authz_url, ch) = c.first_challenge(&order, "http-01").await;
    let token = ch["token"].as_str().unwrap();
    for (root, body) in [
        (web, c.key_authz(token)),
        (mallory, format!("{token}.mallory-account-thumbprint")),
    ] {
        let dir = root.join(".well-known/acme-challenge");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(token), body).unwrap();
    }
    let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let authz = c.poll(&authz_url, &["pending"]).await;
    let ch = challenge(&authz, "http-01");
    (authz, ch)
}

/// The issue's set-up: the primary (this namespace), three validators and the target each in
/// their own network namespace on a bridge (203.0.113.0/24), each validator with its own knot;
/// "mallory" owns the target's address on a link of its own, and a route sends a validator
/// (or the primary) there.
#[tokio::test(flavor = "multi_thread")]
async fn a_hijacked_route_in_network_namespaces() {
    let mut lab = Lab::new("203.0.113.1/24");
    let target = lab.host("t", "203.0.113.10/24");
    let link = tempfile::tempdir().unwrap();
    let ca = LinkCa::new(link.path(), "validation");
    ca.issue("primary", &[], ClientAuth);
    let ca_file = link.path().join("validation-ca.pem");
    let mut server = Server::unstarted(&["--eab", "off", "--validation-allow", "203.0.113.0/24"]);
    let port = server.http01_port;
    let web = link.path().join("web");
    let mallory_web = link.path().join("mallory");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::create_dir_all(&mallory_web).unwrap();
    let _target = web_server(&lab, &target, "203.0.113.10", port, &web);

    let mut namespaces = Vec::new();
    let mut views = Vec::new();
    let mut validators = Vec::new();
    let mut remotes = Vec::new();
    for i in 1..=3 {
        let ns = lab.host(&format!("v{i}"), &format!("203.0.113.2{i}/24"));
        lab.add_address(&format!("203.0.113.5{i}/24"));
        let dns = KnotDns::start_on("test.", format!("203.0.113.5{i}").parse().unwrap()).unwrap();
        let addr = format!("203.0.113.2{i}");
        let tls = ca.issue(&format!("dc{i}"), &[&addr], ServerAuth);
        let mut child = lab
            .command(&ns, Path::new(env!("CARGO_BIN_EXE_sceau-server")))
            .arg("validator")
            .args([
                "--name",
                &format!("dc{i}"),
                "--listen",
                &format!("{addr}:8445"),
            ])
            .arg("--tls-ca")
            .arg(&ca_file)
            .args(["--tls-cert", &tls.0, "--tls-key", &tls.1])
            .args(["--dns-server", &dns.addr.to_string()])
            .args(["--http01-port", &port.to_string()])
            .args([
                "--validation-allow",
                "203.0.113.0/24",
                "--timeout-secs",
                "5",
            ])
            .env("SCEAU_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("is ready"), "validator dc{i}: {line:?}");
        validators.push(RemoteValidator { child, port: 8445 });
        remotes.push((format!("dc{i}"), addr));
        namespaces.push(ns);
        views.push(dns);
    }
    let mut text = format!(
        "caa_identities = [\"sceau.test\"]\n[perspectives]\ntimeout_secs = 5\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        ca_file.display(),
        link.path().join("primary.pem").display(),
        link.path().join("primary.key").display()
    );
    for (name, addr) in &remotes {
        text.push_str(&format!(
            "[[perspectives.remote]]\nname = \"{name}\"\nurl = \"https://{addr}:8445\"\n"
        ));
    }
    let config = link.path().join("primary.toml");
    std::fs::write(&config, text).unwrap();
    server
        .args
        .extend(["--config".into(), config.display().to_string()]);
    server.spawn();
    let mut c = Raw::new(&server).await;
    c.register().await;
    let target_ip: IpAddr = "203.0.113.10".parse().unwrap();
    for name in ["one.mpic", "two.mpic", "home.mpic"] {
        server.dns.set_a(name, target_ip);
        for v in &views {
            v.set_a(name, target_ip);
        }
    }
    // Mallory behind dc3: a link of its own, owning the target's address, and a route in
    // dc3's namespace that sends the target's address there.
    let hijack = |lab: &mut Lab, from: Option<&str>, n: u32| {
        let near = format!("198.51.100.{}/30", 4 * n + 1);
        let far = format!("198.51.100.{}", 4 * n + 2);
        let ns = lab.linked_host(
            &format!("m{n}"),
            from,
            &near,
            &format!("{far}/30"),
            &["203.0.113.10/32"],
        );
        lab.ip(from, &["route", "add", "203.0.113.10/32", "via", &far]);
        ns
    };
    let m3 = hijack(&mut lab, Some(&namespaces[2]), 3);
    let _m3 = web_server(&lab, &m3, "203.0.113.10", port, &mallory_web);
    let (authz, _) = validate_by_files(&c, &web, &mallory_web, "one.mpic.test").await;
    assert_eq!(authz["status"], "valid", "{authz}");
    let (ok, failed) = findings(&outcome(&server, "one.mpic.test").await);
    assert_eq!(ok, ["dc1", "dc2", "primary"]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "dc3", "{failed:?}");

    // dc2's route hijacked too: refused, both named.
    let m2 = hijack(&mut lab, Some(&namespaces[1]), 2);
    let _m2 = web_server(&lab, &m2, "203.0.113.10", port, &mallory_web);
    let (authz, ch) = validate_by_files(&c, &web, &mallory_web, "two.mpic.test").await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    let detail = ch["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("only 1 of 3 remote perspectives agreed (dc1)"),
        "{detail}"
    );
    assert!(
        detail.contains("dc2: ") && detail.contains("dc3: "),
        "{detail}"
    );

    // The validators' routes mended, the primary's hijacked: refused.
    for ns in [&namespaces[1], &namespaces[2]] {
        lab.ip(Some(ns), &["route", "del", "203.0.113.10/32"]);
    }
    let m0 = hijack(&mut lab, None, 0);
    let _m0 = web_server(&lab, &m0, "203.0.113.10", port, &mallory_web);
    let (authz, ch) = validate_by_files(&c, &web, &mallory_web, "home.mpic.test").await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    let detail = ch["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("from the primary perspective"), "{detail}");
    drop(validators);
}
