//! Fleet mode end to end (issue 18): `sceau manager` answering dns-01 through knot with TSIG
//! for several `sceau agent` processes, against sceau-server and against Pebble. The agents'
//! keys must never leave their directories; every bad case must be refused clearly, change
//! nothing and, where it makes sense, be retried until it succeeds.

#[path = "../../sceau-client/tests/support/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sceau_testkit::{KnotDns, free_port, require_tool};
use serde_json::Value;

fn sceau() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sceau"));
    c.env_remove("SCEAU_MANAGER_DIR")
        .env_remove("SCEAU_AGENT_DIR")
        .env_remove("SCEAU_CERT_DIR");
    c
}

fn run(args: &[&str]) -> Output {
    sceau().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "sceau {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failure with exit 1 and a one-line `sceau: error:` message containing `needle`.
fn refused(args: &[&str], needle: &str) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "sceau {args:?}: {}", text(&o));
    assert!(
        err.contains(needle),
        "sceau {args:?}: expected {needle:?} in {err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("sceau: error:")),
        "no error line: {err}"
    );
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A restartable sceau-server (same data directory and port), validating through knot.
struct Ca {
    data: PathBuf,
    listen: SocketAddr,
    dns: SocketAddr,
    child: Option<Child>,
}

impl Ca {
    fn start(dir: &Path, dns: SocketAddr) -> Ca {
        let mut ca = Ca {
            data: dir.join("ca-data"),
            listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            dns,
            child: None,
        };
        ca.up();
        ca
    }

    fn up(&mut self) {
        let mut cmd = Command::new(support::sceau_server_bin());
        cmd.args(["serve", "--data-dir", s(&self.data)])
            .args(["--listen", &self.listen.to_string()])
            .args(["--revocation-listen", "127.0.0.1:0"])
            .args(["--dns-server", &self.dns.to_string()])
            .args(["--validation-allow", "127.0.0.0/8", "--eab", "off"])
            .env("SCEAU_LOG", "info");
        self.child = Some(spawn_logged(
            cmd,
            &self.data.with_extension("log"),
            self.listen,
        ));
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("https://{}/directory", self.listen)
    }

    fn root(&self) -> PathBuf {
        self.data.join("root.pem")
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        self.down();
    }
}

/// Starts `cmd` with its output appended to `log`, and waits until it listens on `addr`.
fn spawn_logged(mut cmd: Command, log: &Path, addr: SocketAddr) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = cmd
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    wait_port(addr);
    child
}

fn wait_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A manager process with its directory.
struct Manager {
    dir: PathBuf,
    listen: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Manager {
    /// `manager init` with RFC 2136 + TSIG to `dns`, then quick timings for the test.
    fn init(root: &Path, server: &str, ca_bundle: &Path, dns: &KnotDns) -> Manager {
        let key = root.join("tsig.key");
        dns.write_tsig_key_file(&key).unwrap();
        let dns_args = [
            "--dns-server".to_owned(),
            dns.addr.to_string(),
            "--tsig-key-file".to_owned(),
            s(&key).to_owned(),
            "--check-server".to_owned(),
            dns.addr.to_string(),
        ];
        Self::init_with(root, server, ca_bundle, &dns_args)
    }

    /// `manager init` with these `[dns]` flags.
    fn init_with(root: &Path, server: &str, ca_bundle: &Path, dns_args: &[String]) -> Manager {
        let dir = root.join("manager");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (listen_s, metrics_s) = (listen.to_string(), metrics.to_string());
        let mut args = vec![
            "manager",
            "init",
            "--dir",
            s(&dir),
            "--server",
            server,
            "--ca-bundle",
            s(ca_bundle),
            "--agree-tos",
            "--hostname",
            "127.0.0.1",
            "--listen",
            &listen_s,
            "--metrics-listen",
            &metrics_s,
        ];
        args.extend(dns_args.iter().map(String::as_str));
        let out = ok(&args);
        assert!(out.contains("manager-ca.pem"), "{out}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("tls/manager.key")), 0o600);
        assert_eq!(mode(&dir.join("manager.toml")), 0o600);
        // Short timings: a new CSR gathers 1.5 s, retries start at 1 s, alerts after 3 s.
        let config = dir.join("manager.toml");
        let t = std::fs::read_to_string(&config).unwrap();
        let t = t
            .replace("pickup_grace_secs = 86400", "pickup_grace_secs = 3")
            .replace("poll_secs = 60", "poll_secs = 1")
            .replace("retry_secs = 60", "retry_secs = 1")
            .replace("gather_ms = 2000", "gather_ms = 1500");
        assert!(
            t.contains("pickup_grace_secs = 3") && t.contains("gather_ms = 1500"),
            "{t}"
        );
        std::fs::write(&config, t).unwrap();
        let mut m = Manager {
            log: root.join("manager.log"),
            dir,
            listen,
            metrics,
            child: None,
        };
        m.start();
        m
    }

    fn start(&mut self) {
        let mut cmd = sceau();
        cmd.args(["manager", "serve", "--dir", s(&self.dir)]);
        self.child = Some(spawn_logged(cmd, &self.log, self.listen));
    }

    fn url(&self) -> String {
        format!("https://{}", self.listen)
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("tls/manager-ca.pem")
    }

    fn d(&self) -> &str {
        s(&self.dir)
    }

    fn invite(&self, name: &str, allow: &[&str], token: &Path) {
        let mut args = vec!["manager", "agent", "add", "--dir", self.d(), name];
        for a in allow {
            args.extend(["--allow", a]);
        }
        args.extend(["--token-file", s(token)]);
        let out = ok(&args);
        let tok = std::fs::read_to_string(token).unwrap();
        assert!(!out.contains(tok.trim()), "the token was printed: {out}");
        assert_eq!(
            std::fs::metadata(token).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// `status --json` and its exit code.
    fn status(&self) -> (Value, i32) {
        let o = run(&["manager", "status", "--dir", self.d(), "--json"]);
        assert!(matches!(o.status.code(), Some(0 | 3)), "{}", text(&o));
        (
            serde_json::from_slice(&o.stdout).unwrap(),
            o.status.code().unwrap(),
        )
    }

    fn cert(&self, agent: &str, name: &str) -> Value {
        let (v, _) = self.status();
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["agent"] == agent && c["cert_name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn wait_state(&self, agent: &str, name: &str, state: &str, secs: u64) -> Value {
        self.wait_field(agent, name, "state", state, secs)
    }

    fn wait_field(&self, agent: &str, name: &str, field: &str, want: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.cert(agent, name);
            if c[field] == want {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "{agent}/{name}: {field} never became {want}: {c}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(self.metrics).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    }

    fn counter(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One agent's directory and commands.
struct Agent {
    dir: PathBuf,
}

impl Agent {
    fn new(root: &Path, name: &str) -> Agent {
        Agent {
            dir: root.join(format!("agent-{name}")),
        }
    }

    fn args<'a>(&'a self, cmd: &[&'a str]) -> Vec<&'a str> {
        let mut v = cmd.to_vec();
        v.extend(["--dir", s(&self.dir)]);
        v
    }

    fn enrol(&self, m: &Manager, token: &Path) -> String {
        let url = m.url();
        let ca = m.ca();
        let mut a = self.args(&["agent", "enrol"]);
        a.extend([
            "--manager",
            &url,
            "--manager-ca",
            s(&ca),
            "--token-file",
            s(token),
        ]);
        ok(&a)
    }

    fn add(&self, name: &str, domains: &[&str], hook: Option<&str>) {
        let mut a = self.args(&["agent", "cert", "add", name]);
        for d in domains {
            a.extend(["--domain", d]);
        }
        if let Some(h) = hook {
            a.extend(["--deploy-hook", h]);
        }
        ok(&a);
    }

    fn run_cmd(&self, wait: u64) -> Command {
        let mut c = sceau();
        let w = wait.to_string();
        c.args(self.args(&["agent", "run", "--wait", &w]));
        c
    }

    fn run(&self, wait: u64) -> String {
        let o = self.run_cmd(wait).output().unwrap();
        assert!(o.status.success(), "agent run: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn live(&self, name: &str) -> PathBuf {
        self.dir.join("live").join(name)
    }

    fn key_pem(&self, name: &str) -> String {
        std::fs::read_to_string(self.live(name).join("privkey.pem")).unwrap()
    }

    fn serial(&self, name: &str) -> String {
        let o = Command::new(require_tool("openssl"))
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(self.live(name).join("cert.pem"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_ascii_lowercase()
    }
}

/// notBefore and notAfter of a PEM certificate, Unix seconds (read by openssl).
fn dates(cert: &Path) -> (i64, i64) {
    let out = openssl(&[
        "x509",
        "-noout",
        "-dates",
        "-dateopt",
        "iso_8601",
        "-in",
        s(cert),
    ]);
    let get = |k: &str| {
        let v = out
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {out}"));
        let v = v.trim().replace(' ', "T");
        time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{v}: {e}"))
            .unix_timestamp()
    };
    (get("notBefore="), get("notAfter="))
}

/// The DER body of a PEM key, base64 as in the file, and raw.
fn key_material(pem: &str) -> (String, Vec<u8>) {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = sceau_wire::key::pem_decode(pem, "PRIVATE KEY").unwrap();
    (b64, der)
}

/// Every file under `root`, read as bytes.
fn all_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// No byte of an agent's key (PEM body or DER) is anywhere outside its own directory.
fn assert_key_stays(key_pem: &str, owner: &Path, places: &[&Path]) {
    let (b64, der) = key_material(key_pem);
    // A 32-byte window of the DER's private part is enough to find a copy in any encoding
    // the manager would plausibly use (raw, base64 of the whole).
    let probe = &der[der.len() - 32..];
    for place in places {
        for (p, bytes) in all_files(place) {
            if p.starts_with(owner) {
                continue;
            }
            assert!(
                !contains(&bytes, b64.as_bytes()) && !contains(&bytes, probe),
                "a private key of {} is in {}",
                owner.display(),
                p.display()
            );
        }
    }
}

fn openssl(args: &[&str]) -> String {
    let o = Command::new(require_tool("openssl"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The installed files: modes, chain verified by openssl against `root`, names, and the key
/// being the certificate's.
fn check_installed(agent: &Agent, name: &str, root: &Path, names: &[&str]) {
    let live = agent.live(name);
    let mode = |f: &str| {
        std::fs::metadata(live.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("privkey.pem"), 0o600);
    assert_eq!(mode("fullchain.pem"), 0o644);
    let verified = openssl(&[
        "verify",
        "-CAfile",
        s(root),
        "-untrusted",
        s(&live.join("chain.pem")),
        s(&live.join("cert.pem")),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let san = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        s(&live.join("cert.pem")),
    ]);
    for n in names {
        assert!(san.contains(&format!("DNS:{n}")), "{n} not in {san}");
    }
    let cert_pub = openssl(&[
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        s(&live.join("cert.pem")),
    ]);
    let key_pub = openssl(&["pkey", "-pubout", "-in", s(&live.join("privkey.pem"))]);
    assert_eq!(
        cert_pub, key_pub,
        "the installed key is not the certificate's"
    );
}

/// The agent's mTLS client, for the requests the CLI never makes (a reused key).
fn agent_http(agent: &Agent, m: &Manager) -> reqwest::Client {
    let r = |f: &str| std::fs::read_to_string(agent.dir.join(f)).unwrap();
    let tls = sceau_fleet::tls::client_config(
        &std::fs::read_to_string(m.ca()).unwrap(),
        &r("client.pem"),
        &r("client.key"),
    )
    .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

#[test]
fn fleet_against_sceau_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dns = KnotDns::start("test").expect("knot starts");
    let mut ca = Ca::start(root, dns.addr);

    // A bad configuration stops init with one line and writes nothing.
    refused(
        &[
            "manager",
            "init",
            "--dir",
            s(&root.join("bad")),
            "--server",
            &ca.url(),
            "--ca-bundle",
            s(&ca.root()),
            "--hostname",
            "127.0.0.1",
        ],
        "[dns]: give update_server (RFC 2136) or hook",
    );
    assert!(!root.join("bad").exists());

    let m = Manager::init(root, &ca.url(), &ca.root(), &dns);
    refused(
        &[
            "manager",
            "init",
            "--dir",
            m.d(),
            "--server",
            &ca.url(),
            "--hostname",
            "x",
            "--dns-server",
            "127.0.0.1:53",
        ],
        "already holds a manager",
    );

    // Three machines, each allowed its own names.
    let agents = [
        ("web", vec!["*.web.test"]),
        ("db", vec!["db.test"]),
        ("mail", vec!["mail.test"]),
    ];
    for (name, allow) in &agents {
        let token = root.join(format!("{name}.token"));
        m.invite(name, allow, &token);
        let out = Agent::new(root, name).enrol(&m, &token);
        assert!(out.contains(&format!("enrolled as {name}")), "{out}");
    }
    // A used token enrols nobody, and leaves no directory behind.
    let stranger = Agent::new(root, "stranger");
    refused(
        &[
            "agent",
            "enrol",
            "--dir",
            s(&stranger.dir),
            "--manager",
            &m.url(),
            "--manager-ca",
            s(&m.ca()),
            "--token-file",
            s(&root.join("web.token")),
        ],
        "unknown, used or expired",
    );
    assert!(!stranger.dir.exists());

    let web = Agent::new(root, "web");
    let db = Agent::new(root, "db");
    let mail = Agent::new(root, "mail");
    let hook_log = root.join("web-hook.log");
    web.add(
        "web",
        &["www.web.test", "api.web.test"],
        Some(&format!(
            "echo \"$SCEAU_CERT_NAME $SCEAU_DOMAINS\" >> {}",
            hook_log.display()
        )),
    );
    db.add("db", &["db.test"], None);
    mail.add("mail", &["mail.test"], None);

    // The three run at once, as timers do: one batch, one UPDATE to add and one to remove.
    let children: Vec<Child> = [&web, &db, &mail]
        .iter()
        .map(|a| {
            a.run_cmd(90)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "agent run: {}", text(&o));
        assert!(text(&o).contains("installed"), "{}", text(&o));
    }
    assert_eq!(m.counter("sceau_fleet_dns_records_total"), 4);
    assert_eq!(
        m.counter("sceau_fleet_dns_updates_total"),
        2,
        "{}",
        m.metrics()
    );
    check_installed(&web, "web", &ca.root(), &["www.web.test", "api.web.test"]);
    check_installed(&db, "db", &ca.root(), &["db.test"]);
    check_installed(&mail, "mail", &ca.root(), &["mail.test"]);
    assert_eq!(
        std::fs::read_to_string(&hook_log).unwrap(),
        "web www.web.test api.web.test\n"
    );
    assert!(
        dns.txt("_acme-challenge.www.web.test").is_empty(),
        "records left in the zone"
    );
    let (status, code) = m.status();
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["agents_active"], 3);
    for c in status["certificates"].as_array().unwrap() {
        assert_eq!(c["state"], "issued", "{c}");
        assert_eq!(c["picked_up"], true, "{c}");
    }
    // The CA speaks ARI (RFC 9773): the renewal point comes from its window, which
    // sceau-server opens at 2/3 of the lifetime for a twelfth of it.
    let c = m.wait_field("mail", "mail", "renew_by", "ari", 20);
    let (not_before, not_after) = dates(&mail.live("mail").join("cert.pem"));
    let life = not_after - not_before;
    let renew_at = c["renew_at"].as_i64().unwrap();
    let start = not_before + life * 2 / 3;
    assert!(
        (start..=start + life / 12).contains(&renew_at),
        "renew_at {renew_at} outside the CA's window {start}..{}",
        start + life / 12
    );
    // Running again changes nothing.
    assert!(web.run(5).contains("web: up to date"));

    // Renewal with a new key: the manager asks, the agent makes a new key and CSR.
    let first_key = web.key_pem("web");
    let first_serial = web.serial("web");
    ok(&[
        "manager",
        "renew",
        "--dir",
        m.d(),
        "--agent",
        "web",
        "--cert-name",
        "web",
    ]);
    assert_eq!(m.cert("web", "web")["state"], "due");
    // A CSR made with the old key is refused (R66), and the renewal stays due.
    let (_, old_der) = key_material(&first_key);
    let old = sceau_wire::AccountKey::from_pkcs8_der(&old_der).unwrap();
    let csr = sceau_client::csr::build_csr(
        &old,
        &[
            sceau_wire::Identifier::dns("www.web.test"),
            sceau_wire::Identifier::dns("api.web.test"),
        ],
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, body) = rt.block_on(async {
        let r = agent_http(&web, &m)
            .put(format!("{}/v1/certs/web", m.url()))
            .json(&serde_json::json!({ "csr": sceau_wire::b64::encode(&csr) }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("reusedKey"), "{body}");
    assert_eq!(m.cert("web", "web")["state"], "due");
    assert!(web.run(60).contains("installed"));
    check_installed(&web, "web", &ca.root(), &["www.web.test"]);
    assert_ne!(web.key_pem("web"), first_key, "renewal kept the key");
    assert_ne!(web.serial("web"), first_serial);
    assert_eq!(
        std::fs::read_to_string(&hook_log).unwrap().lines().count(),
        2
    );
    let archive = ok(&[
        "manager",
        "archive",
        "--dir",
        m.d(),
        "--agent",
        "web",
        "--json",
    ]);
    let archive: Value = serde_json::from_str(&archive).unwrap();
    assert_eq!(archive.as_array().unwrap().len(), 2);

    // An agent that was off when its renewal came due: alerts, then it catches up.
    ok(&[
        "manager",
        "renew",
        "--dir",
        m.d(),
        "--agent",
        "db",
        "--cert-name",
        "db",
    ]);
    std::thread::sleep(Duration::from_secs(4));
    let (status, code) = m.status();
    assert_eq!(code, 3, "an alert must make status fail: {status}");
    assert!(
        m.cert("db", "db")["alerts"]
            .as_array()
            .unwrap()
            .contains(&"no-new-csr".into())
    );
    assert!(m.metrics().contains(
        "sceau_fleet_certificate_alert{agent=\"db\",cert=\"db\",alert=\"no-new-csr\"} 1"
    ));
    // It sends its CSR but does not wait: the certificate waits for it at the manager.
    assert!(db.run(0).contains("waiting for the manager"));
    m.wait_state("db", "db", "issued", 60);
    std::thread::sleep(Duration::from_secs(4));
    let c = m.cert("db", "db");
    assert_eq!(c["alerts"], serde_json::json!(["not-picked-up"]), "{c}");
    assert!(db.run(10).contains("installed"));
    check_installed(&db, "db", &ca.root(), &["db.test"]);
    assert_eq!(m.status().1, 0);

    // A name the agent may not have: refused, nothing stored.
    mail.add("other", &["www.web.test"], None);
    let o = mail.run_cmd(5).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("may not have a certificate for www.web.test"),
        "{}",
        text(&o)
    );
    assert_eq!(m.cert("mail", "other"), Value::Null);

    // An unknown client certificate, and none at all.
    let rogue = sceau_fleet::tls::agent_identity("rogue").unwrap();
    let (code, body) = rt.block_on(async {
        let tls = sceau_fleet::tls::client_config(
            &std::fs::read_to_string(m.ca()).unwrap(),
            &rogue.cert_pem,
            &rogue.key_pem,
        )
        .unwrap();
        let c = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let r = c
            .get(format!("{}/v1/certs/web", m.url()))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("unknownAgent"), "{body}");
    let no_cert = rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read_to_string(m.ca()).unwrap();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                sceau_wire::key::pem_decode(&pem, "CERTIFICATE").unwrap(),
            ))
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let c = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        c.get(format!("{}/v1/agent", m.url())).send().await
    });
    assert!(no_cert.is_err(), "served without a client certificate");

    // A revoked agent is refused at its next request; its certificates stay in the archive.
    ok(&["manager", "agent", "revoke", "--dir", m.d(), "mail"]);
    refused(
        &["agent", "run", "--dir", s(&mail.dir), "--wait", "1"],
        "was revoked",
    );
    let list: Value =
        serde_json::from_str(&ok(&["manager", "agent", "list", "--dir", m.d(), "--json"])).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "mail" && a["status"] == "revoked")
    );
    refused(
        &["manager", "agent", "revoke", "--dir", m.d(), "mail"],
        "revoked already",
    );

    // The DNS server refuses the update (a wrong TSIG secret): retried until it is fixed.
    let key_file = root.join("tsig.key");
    let good_key = std::fs::read_to_string(&key_file).unwrap();
    let secret = &dns.tsig.secret_b64;
    std::fs::write(
        &key_file,
        good_key.replace(
            secret.as_str(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
    )
    .unwrap();
    // A new name, so that the CA needs a fresh dns-01 (it reuses db.test's authorization).
    ok(&[
        "manager",
        "agent",
        "allow",
        "--dir",
        m.d(),
        "db",
        "--allow",
        "db.test",
        "--allow",
        "*.db.test",
    ]);
    db.add("db2", &["x.db.test"], None);
    let out = db.run(4);
    assert!(out.contains("db2: waiting"), "{out}");
    let c = m.cert("db", "db2");
    assert_eq!(c["state"], "pending", "{c}");
    assert!(
        c["alerts"].as_array().unwrap().contains(&"retrying".into()),
        "{c}"
    );
    let err = c["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(err.contains("TSIG") || err.contains("NOTAUTH"), "{err}");
    assert!(!m.metrics().contains(secret.as_str()));
    std::fs::write(&key_file, &good_key).unwrap();
    m.wait_state("db", "db2", "issued", 60);
    assert!(db.run(10).contains("db2: certificate"));
    check_installed(&db, "db2", &ca.root(), &["x.db.test"]);

    // The ACME server is down: the CSR waits, the error says so, and it is issued once the
    // server is back.
    ca.down();
    ok(&[
        "manager",
        "renew",
        "--dir",
        m.d(),
        "--agent",
        "db",
        "--cert-name",
        "db",
    ]);
    assert!(db.run(3).contains("waiting"));
    let c = m.cert("db", "db");
    assert_eq!(c["state"], "pending", "{c}");
    assert!(
        c["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{c}"
    );
    ca.up();
    m.wait_state("db", "db", "issued", 90);
    assert!(db.run(10).contains("installed"));
    check_installed(&db, "db", &ca.root(), &["db.test"]);

    // Revocation goes to the CA and is recorded once it confirmed; the agent is asked for a
    // replacement.
    let serial = m.cert("db", "db")["serial"].as_str().unwrap().to_owned();
    ok(&[
        "manager",
        "revoke",
        "--dir",
        m.d(),
        "--serial",
        &serial,
        "--reason",
        "4",
    ]);
    assert_eq!(m.cert("db", "db")["state"], "due");
    let revoked = support::SceauServer::sql(
        &ca.data,
        &format!(
            "SELECT revocation_reason FROM certificates WHERE lower(serial) = lower('{serial}')"
        ),
    );
    assert_eq!(revoked, "4");
    refused(
        &["manager", "revoke", "--dir", m.d(), "--serial", &serial],
        "revoked already",
    );
    refused(
        &["manager", "revoke", "--dir", m.d(), "--serial", "00ff"],
        "no certificate 00ff",
    );

    // Hostile clients: a flood from one address is cut off past its share, garbage gets the
    // connection closed, and the manager keeps serving once they are gone.
    {
        use std::io::{Read, Write};
        let idle: Vec<std::net::TcpStream> = (0..64)
            .map(|_| std::net::TcpStream::connect(m.listen).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut extra = std::net::TcpStream::connect(m.listen).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0u8; 64];
        let closed = match extra.read(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "a 65th connection from one address was kept");
        drop(idle);
        let mut garbage = std::net::TcpStream::connect(m.listen).unwrap();
        garbage
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let started = Instant::now();
        while let Ok(n) = garbage.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "garbage kept open"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(web.run(5).contains("web: up to date"));
    }

    // The keys never left their agents: not in the manager's directory (database, WAL,
    // logs), not in the CA's, not in another agent's.
    let manager_log = m.log.clone();
    let places: Vec<&Path> = vec![&m.dir, &ca.data, root];
    for a in [&web, &db, &mail] {
        for (p, bytes) in all_files(&a.dir) {
            let t = String::from_utf8_lossy(&bytes);
            if t.contains("PRIVATE KEY") && !p.ends_with("client.key") {
                assert_key_stays(&t, &a.dir, &places);
            }
        }
    }
    let log = std::fs::read_to_string(&manager_log).unwrap();
    assert!(!log.contains("PRIVATE KEY"));

    // The audit trail tells the story, and never holds a token.
    let audit = ok(&["manager", "audit", "--dir", m.d()]);
    for action in [
        "agent.invited",
        "agent.enrolled",
        "enrolment.refused",
        "csr.submitted",
        "certificate.issued",
        "certificate.installed",
        "renewal.due",
        "csr.refused",
        "agent.revoked",
        "issuance.retry",
        "certificate.revoked",
    ] {
        assert!(
            audit.contains(action),
            "{action} not in the audit:\n{audit}"
        );
    }
    let token = std::fs::read_to_string(root.join("db.token")).unwrap();
    assert!(!audit.contains(token.trim()));
}

/// The manager against Pebble, with `_acme-challenge` delegated by CNAME to another name.
#[test]
fn fleet_against_pebble_with_cname_delegation() {
    let env = support::Env::start(support::pebble);
    let root = env.dir.path();
    env.dns
        .set_cname("_acme-challenge.app.test", "app.challenges.test");
    let m = Manager::init(
        root,
        &env.server.directory_url(),
        &env.server.ca_bundle(),
        &env.dns,
    );
    let token = root.join("app.token");
    m.invite("app", &["app.test"], &token);
    let app = Agent::new(root, "app");
    app.enrol(&m, &token);
    app.add("app", &["app.test"], None);
    assert!(app.run(120).contains("installed"));
    let live = app.live("app");
    env.openssl_verify(
        &std::fs::read_to_string(live.join("cert.pem")).unwrap(),
        &std::fs::read_to_string(live.join("chain.pem")).unwrap(),
    );
    let first = app.key_pem("app");
    ok(&[
        "manager",
        "renew",
        "--dir",
        m.d(),
        "--agent",
        "app",
        "--cert-name",
        "app",
    ]);
    assert!(app.run(120).contains("installed"));
    assert_ne!(app.key_pem("app"), first);
    assert!(env.dns.txt("app.challenges.test").is_empty());
    assert_key_stays(&app.key_pem("app"), &app.dir, &[&m.dir]);
    assert_key_stays(&first, &app.dir, &[&m.dir]);
}

/// The manager with a dns-01 hook program instead of RFC 2136 (here a script calling
/// knsupdate), against sceau-server: the hook is called once per name to present and once to
/// clean up, and the agents get their certificates.
#[test]
fn fleet_with_a_dns_hook() {
    let env = support::Env::start(support::sceau_server);
    let root = env.dir.path();
    let keyfile = root.join("knot.key");
    env.dns.write_knot_key_file(&keyfile).unwrap();
    let calls = root.join("calls.log");
    let hook = root.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\necho \"$1 $SCEAU_DOMAIN\" >> {calls}\n\
             if [ \"$1\" = present ]; then op=add; ttl=1; else op=del; ttl=; fi\n\
             printf 'server 127.0.0.1 {port}\\nzone test.\\nupdate %s %s. %s TXT \"%s\"\\nsend\\n' \
             \"$op\" \"$SCEAU_RECORD_NAME\" \"$ttl\" \"$SCEAU_TXT_VALUE\" | {knsupdate} -k {key}\n",
            calls = calls.display(),
            port = env.dns.addr.port(),
            knsupdate = require_tool("knsupdate").display(),
            key = keyfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = Manager::init_with(
        root,
        &env.server.directory_url(),
        &env.server.ca_bundle(),
        &["--dns-hook".to_owned(), s(&hook).to_owned()],
    );
    let mut children = Vec::new();
    for name in ["h1", "h2"] {
        let token = root.join(format!("{name}.token"));
        m.invite(name, &[&format!("{name}.test")], &token);
        let a = Agent::new(root, name);
        a.enrol(&m, &token);
        a.add(name, &[&format!("{name}.test")], None);
        children.push(a);
    }
    for a in &children {
        assert!(a.run(90).contains("installed"));
    }
    for (a, name) in children.iter().zip(["h1", "h2"]) {
        check_installed(a, name, &env.server.ca_bundle(), &[&format!("{name}.test")]);
    }
    let mut log: Vec<String> = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    log.sort();
    assert_eq!(
        log,
        [
            "cleanup h1.test",
            "cleanup h2.test",
            "present h1.test",
            "present h2.test"
        ]
    );
    assert!(env.dns.txt("_acme-challenge.h1").is_empty());
}
