//! certbot and lego bound to an external admin account (agency guide R14, R19, R26; RFC 8555
//! §7.3.4): with the EAB key id and MAC key printed by `sceau-server admin account create`,
//! each obtains a certificate for a listed name and is refused one for a name off the list;
//! without a binding, the server (EAB required by default) refuses the account.
//!
//! The shared harness starts sceau-server with EAB off and keeps its data directory to itself,
//! so these tests start the server themselves, with its defaults, and run the admin commands
//! on its data directory while it serves.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sceau_interop::certcheck::{cert_info, verify};
use sceau_interop::server::sceau_server_binary;
use sceau_interop::{run, run_ok};
use sceau_testkit::{KnotDns, free_port, require_tool};

const ALLOWED: &str = "www.eab.test";
const NOT_LISTED: &str = "other.eab.test";

struct Eab {
    dns: KnotDns,
    dir: tempfile::TempDir,
    port: u16,
    http01_port: u16,
    child: Child,
    kid: String,
    hmac: String,
}

impl Eab {
    /// sceau-server with its default settings (EAB required), knot for `test.`, and one
    /// external account allowed `www.eab.test` only.
    fn start() -> Eab {
        let dns =
            KnotDns::start("test.").expect("knot DNS (install with the README's test command)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let http01_port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(sceau_server_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--revocation-listen", "127.0.0.1:0"])
            .args(["--dns-server", &dns.addr.to_string()])
            .args(["--http01-port", &http01_port.to_string()])
            // The clients answer http-01 on loopback, refused by default.
            .args(["--validation-allow", "127.0.0.0/8"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sceau-server");
        let mut env = Eab {
            dns,
            dir,
            port,
            http01_port,
            child,
            kid: String::new(),
            hmac: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = env.child.try_wait() {
                panic!("sceau-server exited: {status}\n{}", env.log());
            }
            assert!(
                Instant::now() < deadline,
                "sceau-server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for host in [ALLOWED, NOT_LISTED] {
            env.dns.set_a(host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let out = run_ok(
            "admin account create",
            Command::new(sceau_server_binary())
                .args(["admin", "--data-dir"])
                .arg(env.data())
                .args([
                    "--actor",
                    "interop",
                    "account",
                    "create",
                    "--owner",
                    "Pat Operator <pat@example.org>",
                ])
                .args(["--domain", ALLOWED, "--json"]),
        );
        env.kid = json_string(&out.stdout, "kid");
        env.hmac = json_string(&out.stdout, "hmac_key");
        env
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn root(&self) -> PathBuf {
        self.data().join("root.pem")
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/directory", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Eab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The string value of `"key": "…"` in the admin command's JSON (no JSON crate in this one).
fn json_string(text: &str, key: &str) -> String {
    let start = text
        .find(&format!("\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    let rest = &text[start + key.len() + 2..];
    let open = rest.find('"').unwrap() + 1;
    let len = rest[open..].find('"').unwrap();
    rest[open..open + len].to_owned()
}

fn check_certificate(env: &Eab, cert: &Path, chain: &Path) {
    verify(&env.root(), cert, Some(chain), Some(ALLOWED)).expect("openssl verify");
    assert_eq!(cert_info(cert).dns_names, [ALLOWED]);
}

fn certbot(env: &Eab, config: &str, host: &str, eab: bool) -> Command {
    let d = env.path(config);
    let mut c = sceau_interop::certbot("certonly", &d, &env.root());
    c.args(["--server", &env.directory()])
        .args(["--agree-tos", "--register-unsafely-without-email"])
        .args([
            "--standalone",
            "--http-01-port",
            &env.http01_port.to_string(),
        ])
        .args(["-d", host]);
    if eab {
        c.args(["--eab-kid", &env.kid, "--eab-hmac-key", &env.hmac]);
    }
    c
}

fn certbot_log(env: &Eab, config: &str) -> String {
    std::fs::read_to_string(env.path(config).join("logs/letsencrypt.log")).unwrap_or_default()
}

#[test]
fn certbot_with_eab_gets_listed_names_only() {
    let env = Eab::start();
    run_ok(
        "certbot certonly with EAB",
        &mut certbot(&env, "cb", ALLOWED, true),
    );
    let live = env.path("cb/config/live").join(ALLOWED);
    check_certificate(&env, &live.join("cert.pem"), &live.join("chain.pem"));

    // Same account, a name off the list: refused, nothing saved.
    let r = run(
        "certbot for a name off the list",
        &mut certbot(&env, "cb", NOT_LISTED, true),
        Duration::from_secs(180),
    )
    .expect_failure();
    let said = format!("{}{}", r.output(), certbot_log(&env, "cb"));
    assert!(
        said.contains("rejectedIdentifier"),
        "no rejectedIdentifier in certbot's output:\n{said}"
    );
    assert!(!env.path("cb/config/live").join(NOT_LISTED).exists());
}

#[test]
fn certbot_without_eab_is_refused() {
    let env = Eab::start();
    let r = run(
        "certbot without EAB",
        &mut certbot(&env, "noeab", ALLOWED, false),
        Duration::from_secs(180),
    )
    .expect_failure();
    let said = format!("{}{}", r.output(), certbot_log(&env, "noeab"));
    assert!(
        said.contains("externalAccountRequired") || said.contains("external account"),
        "{said}"
    );
    assert!(!env.path("noeab/config/live").join(ALLOWED).exists());
}

fn lego(env: &Eab, host: &str) -> Command {
    let mut c = Command::new(require_tool("lego"));
    c.args(["--server", &env.directory()])
        .arg("--path")
        .arg(env.path("lego"))
        .args(["--email", "pat@example.org", "--accept-tos"])
        .args(["--eab", "--kid", &env.kid, "--hmac", &env.hmac])
        .args(["--domains", host])
        .args(["--http", "--http.port", &format!(":{}", env.http01_port)])
        .arg("run")
        .env("LEGO_CA_CERTIFICATES", env.root());
    c
}

#[test]
fn lego_with_eab_gets_listed_names_only() {
    let env = Eab::start();
    run_ok("lego run with EAB", &mut lego(&env, ALLOWED));
    let certs = env.path("lego/certificates");
    let cert = certs.join(format!("{ALLOWED}.crt"));
    // lego's .crt holds leaf and chain; the issuer file holds the chain.
    check_certificate(&env, &cert, &certs.join(format!("{ALLOWED}.issuer.crt")));

    let r = run(
        "lego for a name off the list",
        &mut lego(&env, NOT_LISTED),
        Duration::from_secs(180),
    )
    .expect_failure();
    assert!(r.output().contains("rejectedIdentifier"), "{r}");
    assert!(!certs.join(format!("{NOT_LISTED}.crt")).exists());
}
