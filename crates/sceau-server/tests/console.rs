//! The web console over HTTP (issue 15), for what a browser cannot be made to do: guessing
//! passwords until the limit holds, posting without a session or a CSRF token, reusing a
//! token from before the login, reaching pages with half a login; and the operator commands'
//! refusals. The browser flows are in sceau-interop's tests/console.rs.

mod admin_support;
mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use admin_support::{account_id, bound_client, create_aa};
use sceau_testkit::free_port;
use support::{Http01, Server, issue};

const PASSWORD: &str = "operator passphrase 1";

fn console_cmd(server: &Server, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args(["console", "--data-dir"])
        .arg(server.data_dir())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form_body(form: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

struct Console {
    http: reqwest::Client,
    base: String,
}

/// What a console answer carried.
struct Page {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    retry_after: Option<String>,
    body: String,
}

impl Console {
    fn new(server: &Server, port: u16) -> Console {
        Console {
            http: reqwest::Client::builder()
                .use_preconfigured_tls(support::tls_config(&server.root_pem()))
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("https://127.0.0.1:{port}"),
        }
    }

    async fn read(r: reqwest::Response) -> Page {
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let cookie = header("set-cookie")
            .and_then(|c| c.split(';').next().map(str::to_owned))
            .filter(|c| !c.ends_with('='));
        Page {
            status: r.status().as_u16(),
            location: header("location"),
            retry_after: header("retry-after"),
            cookie,
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Self::read(req.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Self::read(req.send().await.unwrap()).await
    }

    /// The first CSRF token in a page.
    fn csrf_of(body: &str) -> String {
        body.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a CSRF token in the page")
            .to_owned()
    }

    /// A fresh login page: its session cookie and CSRF token.
    async fn login_page(&self) -> (String, String) {
        let p = self.get("/login", None).await;
        assert_eq!(p.status, 200);
        let csrf = p
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a CSRF token in the login form")
            .to_owned();
        (p.cookie.expect("a session cookie"), csrf)
    }
}

fn start() -> (Server, Console) {
    let port = free_port();
    let server = Server::start(&["--console-listen", &format!("127.0.0.1:{port}")]);
    let out = console_cmd(&server, &["add-operator", "bob"], &format!("{PASSWORD}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = Console::new(&server, port);
    (server, console)
}

#[tokio::test]
async fn password_guessing_stops_at_the_limit_even_for_the_right_password() {
    let (server, console) = start();
    for i in 0..5 {
        let (cookie, csrf) = console.login_page().await;
        let p = console
            .post(
                "/login",
                Some(&cookie),
                &[
                    ("csrf", &csrf),
                    ("user", "bob"),
                    ("password", &format!("guess {i} guess")),
                ],
            )
            .await;
        assert_eq!(p.status, 401, "guess {i}");
        assert!(p.body.contains("Wrong user name or password."));
    }
    let (cookie, csrf) = console.login_page().await;
    let p = console
        .post(
            "/login",
            Some(&cookie),
            &[("csrf", &csrf), ("user", "bob"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(
        p.status, 429,
        "the right password after 5 failures: {}",
        p.body
    );
    let secs: u64 = p.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=900).contains(&secs), "{secs}");
    assert!(
        p.body.contains("limit_console_failures_per_user"),
        "{}",
        p.body
    );
    // Nothing moved on: the session is still before the password.
    let after = console.get("/login/code", Some(&cookie)).await;
    assert_eq!(after.location.as_deref(), Some("/login"));

    let store = server.store().await;
    let failures = store
        .audit_log(&sceau_store::AuditFilter {
            event_prefix: Some("console.login_failed".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failures.len(), 5);
    assert!(
        failures
            .iter()
            .all(|f| f.client_ip.as_deref() == Some("127.0.0.1") && f.detail["user"] == "bob")
    );
}

#[tokio::test]
async fn nothing_happens_without_a_session_a_csrf_token_or_the_whole_login() {
    let (server, console) = start();
    // No session: every page sends to the login; a POST creates nothing.
    for path in [
        "/",
        "/accounts",
        "/accounts/new",
        "/audit",
        "/login/code",
        "/enrol",
    ] {
        let p = console.get(path, None).await;
        assert_eq!(
            (p.status, p.location.as_deref()),
            (303, Some("/login")),
            "{path}"
        );
    }
    let p = console
        .post(
            "/accounts/new",
            None,
            &[
                ("owner", "Eve Intruder <eve@example.org>"),
                ("names", "eve.test"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(p.status, 303);

    // A login form posted without its token, or with another session's: refused.
    let (cookie, csrf) = console.login_page().await;
    let (_, other_csrf) = console.login_page().await;
    for token in ["", other_csrf.as_str()] {
        let p = console
            .post(
                "/login",
                Some(&cookie),
                &[("csrf", token), ("user", "bob"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(p.status, 403, "token {token:?}");
        assert!(p.body.contains("CSRF"), "{}", p.body);
    }

    // The right password: a new session token, the old one worth nothing; half a login
    // reaches no operator page.
    let p = console
        .post(
            "/login",
            Some(&cookie),
            &[("csrf", &csrf), ("user", "bob"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!((p.status, p.location.as_deref()), (303, Some("/enrol")));
    let half = p.cookie.expect("a new session cookie");
    assert_ne!(half, cookie, "the session token is replaced at login");
    assert_eq!(
        console
            .get("/enrol", Some(&cookie))
            .await
            .location
            .as_deref(),
        Some("/login"),
        "the token from before the login still works"
    );
    let enrol = console.get("/enrol", Some(&half)).await;
    assert_eq!(enrol.status, 200);
    assert!(
        enrol.body.contains("<img src=\"data:image"),
        "no QR code: {}",
        enrol.body
    );
    for path in ["/accounts", "/accounts/new", "/audit"] {
        let p = console.get(path, Some(&half)).await;
        assert_eq!(
            p.location.as_deref(),
            Some("/login"),
            "{path} with half a login"
        );
    }

    let store = server.store().await;
    assert!(store.external_accounts().await.unwrap().is_empty());
    let refused = store
        .audit_log(&sceau_store::AuditFilter {
            event_prefix: Some("console.refused".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refused.len(), 2, "both forged logins are audited");
    let bob = store.console_user("bob").await.unwrap();
    assert!(bob.totp_sealed.is_none(), "enrolment is not done");
}

#[tokio::test]
async fn operator_commands_refuse_bad_input_and_change_nothing() {
    let (server, _console) = start();
    let fail = |args: &[&str], stdin: &str, says: &str| {
        let out = console_cmd(&server, args, stdin);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };
    fail(
        &["add-operator", "carol"],
        "short\n",
        "at least 12 characters",
    );
    fail(
        &["add-operator", "bob"],
        &format!("{PASSWORD}\n"),
        "exists already",
    );
    fail(
        &["add-operator", "carol smith"],
        &format!("{PASSWORD}\n"),
        "user name",
    );
    let file = server.dir.path().join("password");
    std::fs::write(&file, PASSWORD).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file_arg = file.display().to_string();
    fail(
        &["add-operator", "carol", "--password-file", &file_arg],
        "",
        "readable",
    );
    // The password never appears in the database, the log or the audit trail in clear.
    let out = console_cmd(&server, &["list"], "");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.starts_with("bob\toperator\tactive\tno second factor yet"),
        "{listed}"
    );
    let db = std::fs::read(server.data_dir().join("sceau.db")).unwrap();
    let wal = std::fs::read(server.data_dir().join("sceau.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes())
        );
    }
}

/// Logs `user` in with its password and a TOTP code of `secret`; the session cookie.
async fn log_in(console: &Console, user: &str, password: &str, secret: &[u8]) -> String {
    let (cookie, csrf) = console.login_page().await;
    let p = console
        .post(
            "/login",
            Some(&cookie),
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/login/code"), "{}", p.body);
    let half = p.cookie.unwrap();
    let page = console.get("/login/code", Some(&half)).await;
    let code =
        sceau_console::totp::code_at(secret, sceau_console::totp::step_at(sceau_store::now()));
    let p = console
        .post(
            "/login/code",
            Some(&half),
            &[("csrf", &Console::csrf_of(&page.body)), ("code", &code)],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/"), "{}", p.body);
    p.cookie.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_holder_reaches_only_their_own_external_account() {
    let (server, console) = start();
    let (kid_a, mac_a) = create_aa(&server, &["a.test"], &[]);
    let (kid_b, mac_b) = create_aa(&server, &["b.test"], &[]);
    server.add_host("a.test");
    server.add_host("b.test");
    let responder = Http01::start(server.http01_port).await;
    let client_a = bound_client(&server, &kid_a, &mac_a).await;
    let client_b = bound_client(&server, &kid_b, &mac_b).await;
    issue(&client_a, &responder, &["a.test"]).await;
    issue(&client_b, &responder, &["b.test"]).await;
    let store = server.store().await;
    let serial_of = |kid: String| {
        let store = store.clone();
        async move {
            store.certificates_of_external(&kid).await.unwrap()[0]
                .serial
                .clone()
        }
    };
    let serial_a = serial_of(kid_a.clone()).await;
    let serial_b = serial_of(kid_b.clone()).await;

    // The holder of A, enrolled (the browser test enrols through the pages).
    let secret = sceau_console::totp::new_secret();
    let key = sceau_admin::WrapKey::load_or_create_named(
        &server.data_dir(),
        sceau_console::TOTP_KEY_FILE,
    )
    .unwrap();
    let holder = sceau_store::ConsoleUser {
        name: "hana".into(),
        role: "holder".into(),
        kid: Some(kid_a.clone()),
        password_hash: sceau_console::password::hash(PASSWORD),
        totp_sealed: Some(sceau_wire::hex::encode(
            &key.seal("console-totp:hana", &secret),
        )),
        totp_last_step: 0,
        status: "active".into(),
        created_at: sceau_store::now(),
        created_by: "test".into(),
    };
    let audit = sceau_store::AuditEntry {
        event: "test.fixture",
        account_id: None,
        client_ip: None,
        detail: serde_json::json!({}),
    };
    store
        .insert_console_user(&holder, None, &audit)
        .await
        .unwrap();
    let cookie = log_in(&console, "hana", PASSWORD, &secret).await;

    // Their dashboard shows A's certificate and nothing of B's, whatever the search.
    let mine = console.get("/mine", Some(&cookie)).await;
    assert_eq!(mine.status, 200);
    assert!(mine.body.contains(&serial_a) && !mine.body.contains(&serial_b));
    let search = console.get("/mine?q=b.test", Some(&cookie)).await;
    assert!(!search.body.contains(&serial_b));
    let csrf = Console::csrf_of(&mine.body);

    // B's certificate and ACME account, named in the URL: not found, nothing changed, audited.
    let p = console
        .post(
            &format!("/mine/certs/{serial_b}/revoke"),
            Some(&cookie),
            &[("csrf", &csrf), ("reason", "1")],
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    assert!(
        store
            .cert_by_serial(&serial_b)
            .await
            .unwrap()
            .revoked_at
            .is_none()
    );
    let acme_b = account_id(&client_b);
    let p = console
        .post(
            &format!("/mine/acme/{acme_b}/suspend"),
            Some(&cookie),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, 404, "{}", p.body);
    assert_eq!(store.account_by_id(&acme_b).await.unwrap().status, "valid");
    // Operator pages: refused, B's page included.
    for path in [
        format!("/accounts/{kid_b}"),
        "/accounts".into(),
        "/approvals".into(),
        "/audit".into(),
    ] {
        assert_eq!(
            console.get(&path, Some(&cookie)).await.status,
            403,
            "{path}"
        );
    }
    let refused = store
        .audit_log(&sceau_store::AuditFilter {
            event_prefix: Some("console.refused".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refused.len(), 2);

    // Their own certificate, the same way: revoked (the refusal above was not blanket).
    let p = console
        .post(
            &format!("/mine/certs/{serial_a}/revoke"),
            Some(&cookie),
            &[("csrf", &csrf), ("reason", "1")],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/mine"), "{}", p.body);
    let a = store.cert_by_serial(&serial_a).await.unwrap();
    assert_eq!(a.revocation_reason, Some(1));
}

#[tokio::test]
async fn a_client_reloading_the_login_page_cannot_fill_the_database() {
    let (server, console) = start();
    for _ in 0..30 {
        assert_eq!(console.get("/login", None).await.status, 200);
    }
    let p = console.get("/login", None).await;
    assert_eq!(p.status, 429, "{}", p.body);
    assert!(p.retry_after.is_some());
    assert!(p.cookie.is_none(), "no session for the refused request");
    let store = server.store().await;
    assert_eq!(
        store
            .forget_console_sessions(sceau_store::now() + 1, 0)
            .await
            .unwrap(),
        30,
        "30 sessions, not 31"
    );
}

#[tokio::test]
async fn passkeys_need_a_host_name_and_the_csrf_token() {
    let (server, console) = start();
    // An operator with TOTP enrolled, so the password leads to the second-factor step.
    let key = sceau_admin::WrapKey::load_or_create_named(
        &server.data_dir(),
        sceau_console::TOTP_KEY_FILE,
    )
    .unwrap();
    let secret = sceau_console::totp::new_secret();
    let pat = sceau_store::ConsoleUser {
        name: "pat".into(),
        role: "operator".into(),
        kid: None,
        password_hash: sceau_console::password::hash(PASSWORD),
        totp_sealed: Some(sceau_wire::hex::encode(
            &key.seal("console-totp:pat", &secret),
        )),
        totp_last_step: 0,
        status: "active".into(),
        created_at: sceau_store::now(),
        created_by: "test".into(),
    };
    let audit = sceau_store::AuditEntry {
        event: "test.fixture",
        account_id: None,
        client_ip: None,
        detail: serde_json::json!({}),
    };
    let store = server.store().await;
    store.insert_console_user(&pat, None, &audit).await.unwrap();
    let (cookie, csrf) = console.login_page().await;
    let p = console
        .post(
            "/login",
            Some(&cookie),
            &[("csrf", &csrf), ("user", "pat"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/login/code"));
    let half = p.cookie.unwrap();
    let page = console.get("/login/code", Some(&half)).await;
    assert!(
        page.body.contains("id=\"passkey-login\" hidden"),
        "{}",
        page.body
    );
    let token = Console::csrf_of(&page.body);
    let json = |body: String| {
        console
            .http
            .post(format!("{}/login/passkey/options", console.base))
            .header("cookie", &half)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Without the session's token: refused.
    let r = json("{\"csrf\": \"wrong\"}".into()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));
    // Reached by an IP address: WebAuthn has no relying party id for it.
    let r = json(format!("{{\"csrf\": \"{token}\"}}")).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("host name"));
    // Nothing moved: the login still waits for its second factor.
    assert_eq!(
        console
            .get("/accounts", Some(&half))
            .await
            .location
            .as_deref(),
        Some("/login")
    );
}
