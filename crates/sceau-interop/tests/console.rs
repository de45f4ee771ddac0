//! The web console in a real browser (issue 15; agency guide R2, R4, R6, R7, R9, R13, R86):
//! Debian's Chromium, driven by playwright-core (`console/console.mjs`), logs an operator in
//! with a password and a TOTP code it computes itself, enrols the authenticator, creates an
//! external account whose EAB credentials certbot then uses to get a real certificate, sees
//! that certificate on the account's page and invites its holder. The holder, in a browser of
//! their own, sets a password through the invitation, enrols, finds the certificate on their
//! dashboard, asks for a name, makes a new MAC key (the old one stops binding, the new one
//! binds: certbot), revokes the certificate and suspends the ACME account; the operator
//! approves the name (its CAA lookup shown) and suspends the external account, after which
//! certbot is refused. The refusals (wrong password, wrong and replayed codes, a used recovery
//! code, a form without its CSRF token, oversized fields, script in a field, a holder reaching
//! for objects of other accounts) change nothing and are audited.
//!
//! Screenshots land in `$SCEAU_CONSOLE_SHOTS` when it is set (docs/img is made this way).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sceau_interop::certcheck::{cert_info, verify};
use sceau_interop::server::sceau_server_binary;
use sceau_interop::{run, run_ok};
use sceau_testkit::{KnotDns, free_port, require_tool};
use serde_json::{Value, json};

const NAME: &str = "www.console.test";
const OWNER: &str = "Alice Martin <alice@example.org>";
const PASSWORD: &str = "a long operator passphrase";
const HOLDER_PASSWORD: &str = "the holder's own passphrase";
const REQUESTED: &str = "api.console.test";

struct Env {
    dns: KnotDns,
    dir: tempfile::TempDir,
    port: u16,
    console_port: u16,
    http01_port: u16,
    child: Child,
}

impl Env {
    fn start() -> Env {
        let dns =
            KnotDns::start("test.").expect("knot DNS (install with the README's test command)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let console_port = free_port();
        let http01_port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        // CAA is checked for this CA's identity (RFC 8659), so the approval page can say what
        // a name's CAA records mean for it.
        let config = dir.path().join("sceau.toml");
        std::fs::write(&config, "caa_identities = [\"sceau.test\"]\n").unwrap();
        let child = Command::new(sceau_server_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--console-listen", &format!("127.0.0.1:{console_port}")])
            .arg("--config")
            .arg(&config)
            .args(["--revocation-listen", "127.0.0.1:0"])
            .args(["--dns-server", &dns.addr.to_string()])
            .args(["--http01-port", &http01_port.to_string()])
            .args(["--validation-allow", "127.0.0.0/8"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sceau-server");
        let mut env = Env {
            dns,
            dir,
            port,
            console_port,
            http01_port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", console_port)).is_err() {
            if let Ok(Some(status)) = env.child.try_wait() {
                panic!("sceau-server exited: {status}\n{}", env.log());
            }
            assert!(
                Instant::now() < deadline,
                "the console did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        env.dns.set_a(NAME, IpAddr::V4(Ipv4Addr::LOCALHOST));
        // The name the holder asks for names another CA only (R7: the operator sees it).
        env.dns.set_caa(REQUESTED, 0, "issue", "other-ca.example");
        env
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn add_operator(&self, name: &str, password: &str) {
        let mut child = Command::new(sceau_server_binary())
            .args(["console", "--data-dir"])
            .arg(self.data())
            .args(["--actor", "interop", "add-operator", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "add-operator: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of the browser script, with playwright-core installed by the test command.
fn script_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing in {}: install it with the README's test command",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing (/usr/bin/chromium): install it with the README's test command"
    );
    dir
}

fn browser(phase: &str, config: &Value) -> Value {
    let dir = script_dir();
    let r = run(
        &format!("Chromium: console {phase}"),
        Command::new(require_tool("node"))
            .current_dir(&dir)
            .arg("console.mjs")
            .arg(phase)
            .arg(config.to_string()),
        Duration::from_secs(240),
    )
    .expect_success();
    let line = r
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no result line from console.mjs {phase}: {r}"));
    serde_json::from_str(line).unwrap()
}

fn sqlite(env: &Env, sql: &str) -> String {
    let out = run_ok(
        "sqlite3",
        Command::new(require_tool("sqlite3"))
            .arg(env.data().join("sceau.db"))
            .arg(sql),
    );
    out.stdout.trim().to_owned()
}

#[test]
fn an_operator_runs_an_external_account_from_chromium() {
    let env = Env::start();
    env.add_operator("alice", PASSWORD);
    let shots = std::env::var("SCEAU_CONSOLE_SHOTS").ok();
    let url = format!("https://127.0.0.1:{}", env.console_port);
    let first = browser(
        "first",
        &json!({"url": url, "user": "alice", "password": PASSWORD, "owner": OWNER,
                "names": [NAME], "shots": shots}),
    );
    let kid = first["kid"].as_str().unwrap().to_owned();
    let mac = first["mac"].as_str().unwrap().to_owned();

    // What the browser refused left nothing behind: one external account, the one created.
    assert_eq!(
        sqlite(&env, "SELECT COUNT(*) FROM external_accounts"),
        "1",
        "{}",
        env.log()
    );
    assert_eq!(
        sqlite(
            &env,
            &format!("SELECT status FROM external_accounts WHERE kid = '{kid}'")
        ),
        "valid"
    );

    // certbot binds to the account with the credentials the console showed, and gets a
    // certificate for the account's name.
    let root = env.data().join("root.pem");
    let cb = env.dir.path().join("certbot");
    let certbot = |d: &Path, mac: &str| {
        let mut c = sceau_interop::certbot("certonly", d, &root);
        c.args([
            "--server",
            &format!("https://127.0.0.1:{}/directory", env.port),
        ])
        .args(["--agree-tos", "--register-unsafely-without-email"])
        .args([
            "--standalone",
            "--http-01-port",
            &env.http01_port.to_string(),
        ])
        // `=`: a base64url key may start with `-`, which argparse would take for an option.
        .args(["--eab-kid", &kid, &format!("--eab-hmac-key={mac}")])
        .args(["-d", NAME]);
        c
    };
    run_ok(
        "certbot with the console's EAB credentials",
        &mut certbot(&cb, &mac),
    );
    let live = cb.join("config/live").join(NAME);
    verify(
        &root,
        &live.join("cert.pem"),
        Some(&live.join("chain.pem")),
        Some(NAME),
    )
    .expect("openssl verify");
    assert_eq!(cert_info(&live.join("cert.pem")).dns_names, [NAME]);

    let second = browser(
        "second",
        &json!({"url": url, "user": "alice", "password": PASSWORD, "owner": OWNER,
                "kid": kid, "name": NAME, "secret": first["secret"], "step": first["step"],
                "code": first["code"], "holder": "hana", "shots": shots}),
    );

    // The holder, invited by the link the operator was shown, in a browser of their own.
    let holder = browser(
        "holder",
        &json!({"url": url, "user": "hana", "password": HOLDER_PASSWORD, "kid": kid,
                "link": second["link"], "name": NAME, "requested": REQUESTED, "shots": shots}),
    );
    let new_mac = holder["mac"].as_str().unwrap().to_owned();
    assert_ne!(new_mac, mac);
    // The holder's revocation went through the one revocation path (keyCompromise).
    assert_eq!(
        sqlite(&env, "SELECT revocation_reason FROM certificates"),
        "1",
        "the holder's revocation is not recorded"
    );
    let revoked_by = sqlite(
        &env,
        "SELECT json_extract(detail, '$.by') FROM audit WHERE event = 'certificate.revoked'",
    );
    assert_eq!(revoked_by, "console:hana");
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM audit WHERE event = 'console.refused' AND json_extract(detail, '$.reason') LIKE '%is not of this external account'"
        ),
        "2",
        "the holder's two attempts on objects not theirs are audited"
    );
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM audit WHERE event = 'console.refused' AND json_extract(detail, '$.reason') = 'missing or wrong CSRF token'"
        ),
        "1",
        "the form without its CSRF token is audited"
    );
    // The old MAC key binds no new ACME account any more (R9); the new one does.
    let cb_old = env.dir.path().join("certbot-old-key");
    run(
        "certbot with the MAC key from before the regeneration",
        &mut certbot(&cb_old, &mac),
        Duration::from_secs(180),
    )
    .expect_failure();
    let cb_new = env.dir.path().join("certbot-new-key");
    run_ok(
        "certbot with the new MAC key",
        &mut certbot(&cb_new, &new_mac),
    );

    let third = browser(
        "third",
        &json!({"url": url, "user": "alice", "password": PASSWORD, "owner": OWNER,
                "kid": kid, "secret": first["secret"], "step": second["step"],
                "recovery": first["recovery"], "requested": REQUESTED, "shots": shots}),
    );
    assert_eq!(
        sqlite(
            &env,
            &format!(
                "SELECT COUNT(*) FROM external_account_names WHERE kid = '{kid}' AND name = '{REQUESTED}'"
            )
        ),
        "1",
        "the approved name is not on the account's list"
    );

    // Annex A.2 in the browser revoked the remaining certificate, with its procedure recorded.
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL"
        ),
        "0"
    );
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM audit WHERE event = 'certificate.revoked' AND json_extract(detail, '$.procedure') = 'external_account'"
        ),
        "1"
    );

    // The suspension made in the browser holds for ACME at once (R15): certbot's account is
    // refused a new certificate.
    assert_eq!(
        sqlite(
            &env,
            &format!("SELECT status FROM external_accounts WHERE kid = '{kid}'")
        ),
        "suspended"
    );
    let again = run(
        "certbot after the suspension",
        certbot(&cb_new, &new_mac).arg("--force-renewal"),
        Duration::from_secs(180),
    );
    again.expect_failure();

    // A passkey, on the console's host name with the server's root trusted (WebAuthn runs
    // only on a page without certificate errors).
    browser(
        "passkey",
        &json!({"url": format!("https://localhost:{}", env.console_port), "user": "alice",
                "password": PASSWORD, "secret": first["secret"], "step": third["step"],
                "root": env.data().join("root.pem"), "shots": shots}),
    );
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM audit WHERE event = 'console.login' AND json_extract(detail, '$.factor') = 'passkey'"
        ),
        "1",
        "the passkey login is audited"
    );
    assert_ne!(
        sqlite(&env, "SELECT sign_count FROM console_passkeys"),
        "",
        "the passkey is stored"
    );

    // Who did what, when and from where.
    let created = sqlite(
        &env,
        "SELECT detail FROM audit WHERE event = 'admin.external_account.created'",
    );
    assert!(
        created.contains("alice (console from 127.0.0.1)"),
        "{created}"
    );
    let suspended = sqlite(
        &env,
        "SELECT actor FROM external_account_changes WHERE action = 'external_account.suspended'",
    );
    assert_eq!(suspended, "alice (console from 127.0.0.1)");
    let failures = sqlite(
        &env,
        "SELECT group_concat(json_extract(detail, '$.reason'), '|') FROM audit WHERE event = 'console.login_failed' AND client_ip = '127.0.0.1'",
    );
    for reason in [
        "wrong password or unknown user",
        "wrong enrolment code",
        "replayed code",
        "wrong code",
    ] {
        assert!(failures.contains(reason), "no {reason:?} in {failures}");
    }
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM audit WHERE event = 'console.totp_enrolled'"
        ),
        "2",
        "the operator's and the holder's enrolments"
    );
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM audit WHERE event = 'console.login'"
        ),
        "5",
        "the operator's logins: three with TOTP, one with a recovery code, one with a passkey (enrolments are console.totp_enrolled)"
    );
    assert_eq!(
        sqlite(
            &env,
            "SELECT COUNT(*) FROM console_recovery_codes WHERE used_at IS NOT NULL"
        ),
        "1"
    );
    // The TOTP secret is stored sealed: its base32 text and bytes are nowhere in the database.
    let secret = first["secret"].as_str().unwrap();
    for file in ["sceau.db", "sceau.db-wal"] {
        let bytes = std::fs::read(env.data().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the TOTP secret is in {file} in clear"
        );
    }
}
