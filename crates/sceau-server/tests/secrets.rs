//! Secrets and files (issue 10): a database password never sits in argv and is never printed,
//! the data directory and what it holds are the service user's alone whatever existed before,
//! and the log carries no JWS, MAC or key material at any level, even at `trace`.

mod support;

use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sceau_testkit::{Postgres, free_port};
use serde_json::json;

/// A `sceau-server serve` started by hand: stdout until "ready" is kept, stderr goes to a file.
struct Started {
    child: Child,
    port: u16,
    stdout: String,
    log: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Started {
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs `serve` with `args`; `Ok` once it says it is ready, `Err(stdout + stderr)` if it exits.
fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Started, String> {
    let port = free_port();
    let log = dir.join(format!("server-{port}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--revocation-listen", "127.0.0.1:0"])
        .args(if args.contains(&"--eab") {
            &[][..]
        } else {
            &["--eab", "off"][..]
        })
        .args(args)
        .env_remove("SCEAU_DATABASE_URL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            // The last line of the start-up banner.
            if line.trim_start().starts_with("database:") {
                let _ = tx.send(Ok(seen.clone()));
            }
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(stdout)) => Ok(Started {
            child,
            port,
            stdout,
            log,
        }),
        Ok(Err(stdout)) => {
            let _ = child.wait();
            Err(stdout + &std::fs::read_to_string(&log).unwrap_or_default())
        }
        Err(_) => {
            let _ = child.kill();
            panic!("sceau-server neither started nor exited within 60 s");
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

#[test]
fn a_database_password_on_the_command_line_or_in_the_config_file_is_refused_unseen() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let secret = "hunter2-do-not-print";
    let url = format!("postgres://sceau:{secret}@127.0.0.1:1/sceau");
    let out = serve(
        tmp.path(),
        &["--data-dir", data.to_str().unwrap(), "--database", &url],
        &[],
    )
    .err()
    .expect("refused");
    assert!(out.contains("carries a password"), "{out}");
    assert!(out.contains("--database-url-file"), "{out}");
    assert!(!out.contains(secret), "the password was printed: {out}");
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    assert!(!data.exists(), "nothing is created before the refusal");

    let config = tmp.path().join("sceau.toml");
    std::fs::write(&config, format!("database = \"{url}\"\n")).unwrap();
    let out = serve(
        tmp.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    )
    .err()
    .expect("refused");
    assert!(out.contains("carries a password"), "{out}");
    assert!(!out.contains(secret), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_url_comes_from_a_private_file_or_the_environment_and_is_never_printed() {
    let secret = "pg-s3cret-Password";
    let pg = Postgres::start_with_password(secret);
    let tmp = tempfile::tempdir().unwrap();
    let url_file = tmp.path().join("db-url");
    std::fs::write(&url_file, format!("{}\n", pg.url_with_password(secret))).unwrap();

    // Readable by others: refused, and the message names the file, not its content.
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = tmp.path().join("data1");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--database-url-file",
        url_file.to_str().unwrap(),
    ];
    let out = serve(tmp.path(), &args, &[]).err().expect("refused");
    assert!(out.contains("readable by others"), "{out}");
    assert!(!out.contains(secret), "{out}");

    // 0600: used (the server only gets ready once the database answered with the password).
    std::fs::set_permissions(&url_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = serve(tmp.path(), &args, &[]).expect("starts");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", s.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(secret));
    assert!(
        s.stdout.contains(&format!(
            "database:    postgres://postgres:***@127.0.0.1:{}/sceau",
            pg.port
        )),
        "{}",
        s.stdout
    );
    let c = support::Raw::at(
        &format!("https://127.0.0.1:{}/directory", s.port),
        &data.join("root.pem"),
    )
    .await;
    let r = c
        .post(
            &c.dir.new_account.clone(),
            Some(&json!({"termsOfServiceAgreed": true})),
        )
        .await;
    assert_eq!(r.status, 201, "an account is stored in PostgreSQL");
    let stdout = s.stdout.clone();
    let log = s.stop();
    assert!(
        !stdout.contains(secret) && !log.contains(secret),
        "{stdout}{log}"
    );

    // A wrong password in the file: refused, without echoing it.
    std::fs::write(&url_file, pg.url_with_password("wrong-Password-xyz")).unwrap();
    let out = serve(tmp.path(), &args, &[]).err().expect("refused");
    assert!(out.contains("database"), "{out}");
    assert!(!out.contains("wrong-Password-xyz"), "{out}");

    // From the environment.
    let data2 = tmp.path().join("data2");
    let env_url = pg.url_with_password(secret);
    let s = serve(
        tmp.path(),
        &["--data-dir", data2.to_str().unwrap()],
        &[("SCEAU_DATABASE_URL", env_url.as_str())],
    )
    .expect("starts");
    assert!(
        s.stdout.contains("postgres://postgres:***@"),
        "{}",
        s.stdout
    );
    let stdout = s.stdout.clone();
    let log = s.stop();
    assert!(
        !stdout.contains(secret) && !log.contains(secret),
        "{stdout}{log}"
    );
}

#[test]
fn the_data_directory_and_its_private_files_are_made_private_whatever_existed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap()];
    // A data directory that existed open to everyone.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = serve(tmp.path(), &args, &[]).expect("starts");
    assert_eq!(mode(&data), 0o700);
    for private in [
        "sceau.db",
        "sceau.db-wal",
        "sceau.db-shm",
        "root.key",
        "intermediate.key",
        "server.key",
        "eab-wrap.key",
    ] {
        assert_eq!(mode(&data.join(private)), 0o600, "{private}");
    }
    assert_eq!(
        mode(&data.join("root.pem")),
        0o644,
        "certificates stay public"
    );
    drop(s);

    // Opened up by someone since: closed again at the next start, and said so.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["sceau.db", "intermediate.key"] {
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let s = serve(tmp.path(), &args, &[]).expect("starts");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("sceau.db")), 0o600);
    assert_eq!(mode(&data.join("intermediate.key")), 0o600);
    let log = s.stop();
    assert!(log.contains("restricted permissions"), "{log}");

    // Another user's directory: refused in one line.
    let status = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "chown needs root (the test command runs as root)"
    );
    let out = serve(tmp.path(), &args, &[]).err().expect("refused");
    assert!(out.contains("belongs to uid"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_holds_no_jws_mac_or_key_material_even_at_trace_level() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let s = serve(
        tmp.path(),
        &["--data-dir", data.to_str().unwrap(), "--eab", "required"],
        &[("SCEAU_LOG", "trace")],
    )
    .expect("starts");
    let admin = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args([
            "admin",
            "--data-dir",
            data.to_str().unwrap(),
            "account",
            "create",
        ])
        .args([
            "--owner",
            "Alice Martin <alice@example.org>",
            "--domain",
            "web.test",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    let aa: serde_json::Value = serde_json::from_slice(&admin.stdout).unwrap();
    let kid = aa["kid"].as_str().unwrap().to_owned();
    let mac_b64 = aa["hmac_key"].as_str().unwrap().to_owned();
    let mac = sceau_wire::b64::decode(&mac_b64).unwrap();

    let mut c = support::Raw::at(
        &format!("https://127.0.0.1:{}/directory", s.port),
        &data.join("root.pem"),
    )
    .await;
    let url = c.dir.new_account.clone();
    let mut secrets: Vec<String> = vec![mac_b64.clone()];
    let mut remember = |jws: &sceau_wire::jws::Flattened| {
        for part in [&jws.protected, &jws.payload, &jws.signature] {
            if part.len() >= 16 {
                secrets.push(part.clone());
            }
        }
    };

    // A binding with the wrong MAC, then one sent as a JSON string (parse errors quote strings).
    let wrong = sceau_wire::eab::sign(
        &kid,
        b"not the MAC key of this account!",
        &url,
        &c.key.jwk(),
    );
    remember(&wrong);
    let jws = c
        .sign(
            &url,
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": wrong})),
        )
        .await;
    remember(&jws);
    assert_eq!(c.send(&url, &jws).await.status, 403);
    let good = sceau_wire::eab::sign(&kid, &mac, &url, &c.key.jwk());
    remember(&good);
    let as_string = serde_json::to_string(&good).unwrap();
    let jws = c
        .sign(
            &url,
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": as_string})),
        )
        .await;
    remember(&jws);
    assert_eq!(c.send(&url, &jws).await.status, 400);
    // The good binding, then a refused and an accepted request of the account.
    let jws = c
        .sign(
            &url,
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": good})),
        )
        .await;
    remember(&jws);
    let r = c.send(&url, &jws).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    c.kid = Some(r.location());
    let order_url = c.dir.new_order.clone();
    let jws = c
        .sign(
            &order_url,
            Some(&json!({"identifiers": [{"type": "dns", "value": "other.test"}]})),
        )
        .await;
    remember(&jws);
    assert!(
        c.send(&order_url, &jws).await.status >= 400,
        "a name outside the AA"
    );
    let jws = c
        .sign(
            &order_url,
            Some(&json!({"identifiers": [{"type": "dns", "value": "web.test"}]})),
        )
        .await;
    remember(&jws);
    assert_eq!(c.send(&order_url, &jws).await.status, 201);

    let log = s.stop();
    assert!(log.lines().count() > 20, "trace logging is on: {log}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log holds {secret:?}:\n{}",
            log.lines()
                .filter(|l| l.contains(secret.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Nor the CA's or the listener's keys, nor the key that seals MAC keys.
    for key in ["root.key", "intermediate.key", "server.key"] {
        let text = std::fs::read_to_string(data.join(key)).unwrap();
        for line in text
            .lines()
            .filter(|l| l.len() >= 32 && !l.starts_with("-----"))
        {
            assert!(!log.contains(line), "{key} material in the log");
        }
    }
    let wrap = std::fs::read(data.join("eab-wrap.key")).unwrap();
    assert!(!log.contains(&sceau_wire::b64::encode(&wrap)));
    let hex: String = wrap.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!log.contains(&hex));
}
