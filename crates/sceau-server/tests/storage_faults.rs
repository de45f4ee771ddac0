//! A real sceau-server on storage that fails for real: its SQLite database on a small tmpfs
//! that is filled (disk full) or remounted read-only, and a PostgreSQL server switched to
//! read-only transactions. While the fault lasts, requests that write get 503 `serverInternal`
//! with Retry-After, requests that only read are served, and the log holds a handful of lines
//! about it, not one per request. Once the storage is back, the same client finishes what was
//! refused, without a restart, and the tables are consistent.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sceau_testkit::Tmpfs;
use sceau_wire::{AccountKey, KeyKind};
use serde_json::{Value, json};
use support::*;

/// Failing requests sent while the storage is down: 4 writes per round.
const ROUNDS: usize = 50;
/// The bound on ERROR lines for those 200 refusals (one is expected).
const MAX_ERROR_LINES: usize = 5;

/// Flags for the server under test: a JSON log, and no limit on nonces (each of the hundreds
/// of requests below takes a fresh one).
const FLAGS: &[&str] = &[
    "--eab",
    "off",
    "--log-format",
    "json",
    "--limit-nonces-per-address",
    "off",
];

/// The server's log lines from byte `from` on: JSON objects (the server) or text (its
/// signing service, which logs on the same stderr).
fn log_since(log: &Path, from: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn level(line: &str) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => v["level"].as_str().unwrap_or("").to_owned(),
        Err(_) if line.contains("ERROR") => "ERROR".into(),
        Err(_) => String::new(),
    }
}

fn message(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v["fields"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| line.to_owned())
}

fn log_len(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |m| m.len() as usize)
}

/// Waits (at most 15 s) for a log line from `from` on whose message contains `words`.
fn wait_for_line(log: &Path, from: usize, words: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(l) = log_since(log, from)
            .into_iter()
            .find(|l| message(l).contains(words))
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {words:?}; the log has:\n{}",
            log_since(log, from).join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[track_caller]
fn assert_unavailable(r: &Resp, what: &str) -> u64 {
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 503, "{what}: {body}");
    assert_eq!(r.problem_type(), "serverInternal", "{what}: {body}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap_or("")
            .contains("storage is temporarily unavailable"),
        "{what}: {body}"
    );
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{what}: Retry-After {retry}");
    retry
}

/// What a test prepares before the fault: an order ready to finalize, and an order whose
/// http-01 challenge is still to be answered (the responder already knows the answer).
struct Prepared {
    ready: Value,
    pending: Value,
    challenge_url: String,
}

/// A registered client of `server`, its http-01 responder, and what [`prepare`] makes, for
/// names `PREFIX-ready.test`, `PREFIX-pending.test` and `PREFIX-after.test` (in its DNS).
async fn set_up(server: &Server, prefix: &str) -> (Raw, Http01, Prepared) {
    let responder = Http01::start(server.http01_port).await;
    for name in ["ready", "pending", "after"] {
        server.add_host(&format!("{prefix}-{name}.test"));
    }
    let mut c = Raw::new(server).await;
    c.register().await;
    let p = prepare(&c, &responder, prefix).await;
    (c, responder, p)
}

async fn prepare(c: &Raw, responder: &Http01, prefix: &str) -> Prepared {
    let ready = ready_order(c, responder, &[&format!("{prefix}-ready.test")]).await;
    let pending = order(c, &[&format!("{prefix}-pending.test")]).await;
    let (_, ch) = c.first_challenge(&pending, "http-01").await;
    let token = ch["token"].as_str().unwrap();
    responder.set(token, &c.key_authz(token));
    Prepared {
        ready,
        pending,
        challenge_url: ch["url"].as_str().unwrap().to_owned(),
    }
}

/// Sends 4 × [`ROUNDS`] writes that the fault must refuse, and the reads it must not.
/// Returns the Retry-After the server asked for.
async fn refused_while_down(server: &Server, c: &Raw, p: &Prepared, prefix: &str) -> u64 {
    let mut stranger = Raw::new(server).await;
    let (csr_b64, _) = csr(&[&format!("{prefix}-ready.test")]);
    let mut retry = 0;
    for round in 0..ROUNDS {
        stranger.key = AccountKey::generate(KeyKind::P256).unwrap();
        let url = stranger.dir.new_account.clone();
        let r = stranger
            .post(&url, Some(&json!({"termsOfServiceAgreed": true})))
            .await;
        retry = assert_unavailable(&r, "newAccount");
        let r = c.new_order(&[&format!("{prefix}-{round}.test")]).await;
        assert_unavailable(&r, "newOrder");
        let r = c.post(&p.challenge_url, Some(&json!({}))).await;
        assert_unavailable(&r, "challenge answer");
        let r = c.finalize(&p.ready, &csr_b64).await;
        assert_unavailable(&r, "finalize");

        // Reads are served.
        let d = c.http.get(server.directory_url()).send().await.unwrap();
        assert_eq!(d.status(), 200, "directory");
        let n = c.http.head(&c.dir.new_nonce).send().await.unwrap();
        assert_eq!(n.status(), 200, "newNonce");
        assert!(n.headers().contains_key("replay-nonce"));
        let o = c.post(p.ready["_url"].as_str().unwrap(), None).await;
        assert_eq!(o.status, 200, "POST-as-GET order");
        assert_eq!(o.json()["status"], "ready");
    }
    retry
}

/// After the fault: what was refused now succeeds, for the same client and server process.
async fn resumed(server: &Server, c: &Raw, responder: &Http01, p: &Prepared, prefix: &str) {
    // The refused finalize, again.
    let (csr_b64, _) = csr(&[&format!("{prefix}-ready.test")]);
    let r = c.finalize(&p.ready, &csr_b64).await;
    assert_eq!(
        r.status,
        200,
        "finalize after the fault: {}",
        String::from_utf8_lossy(&r.body)
    );
    let done = c
        .poll(p.ready["_url"].as_str().unwrap(), &["processing"])
        .await;
    assert_eq!(done["status"], "valid", "{done}");
    let cert = c.post(done["certificate"].as_str().unwrap(), None).await;
    assert_eq!(cert.status, 200);
    openssl_verify(server, &String::from_utf8(cert.body).unwrap());

    // The refused challenge answer, again, through to a certificate.
    let r = c.post(&p.challenge_url, Some(&json!({}))).await;
    assert_eq!(
        r.status,
        200,
        "challenge after the fault: {}",
        String::from_utf8_lossy(&r.body)
    );
    let url = p.pending["_url"].as_str().unwrap();
    let ready = c.poll(url, &["pending"]).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let (csr_b64, _) = csr(&[&format!("{prefix}-pending.test")]);
    let r = c.finalize(&p.pending, &csr_b64).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(c.poll(url, &["processing"]).await["status"], "valid");

    // And a new account and a whole new issuance.
    let mut newcomer = Raw::new(server).await;
    newcomer.register().await;
    issue(&newcomer, responder, &[&format!("{prefix}-after.test")]).await;
}

/// Rows of [`TABLES`] as they were `before` the fault: every refused request changed nothing.
async fn assert_no_rows_added(store: &sceau_store::Store, before: &[i64]) {
    assert_eq!(
        rows(store, &TABLES).await,
        before,
        "a refused request wrote rows"
    );
}

/// No half-written order or certificate, and nothing left in flight.
async fn assert_consistent(store: &sceau_store::Store) {
    let checks: &[(&str, &'static str)] = &[
        (
            "orders processing without a CSR",
            "SELECT COUNT(*) FROM orders WHERE status = 'processing' AND csr IS NULL",
        ),
        (
            "orders left processing",
            "SELECT COUNT(*) FROM orders WHERE status = 'processing'",
        ),
        (
            "valid orders without their certificate",
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'valid' AND NOT EXISTS
             (SELECT 1 FROM certificates c WHERE c.id = o.cert_id AND c.order_id = o.id)",
        ),
        (
            "certificates whose order is not valid with them",
            "SELECT COUNT(*) FROM certificates c WHERE NOT EXISTS
             (SELECT 1 FROM orders o WHERE o.id = c.order_id AND o.status = 'valid' AND o.cert_id = c.id)",
        ),
        (
            "authorizations without challenges",
            "SELECT COUNT(*) FROM authzs a WHERE NOT EXISTS (SELECT 1 FROM challenges c WHERE c.authz_id = a.id)",
        ),
        (
            "valid challenges of authorizations that are not valid",
            "SELECT COUNT(*) FROM challenges c JOIN authzs a ON a.id = c.authz_id
             WHERE c.status = 'valid' AND a.status <> 'valid'",
        ),
        (
            "challenges left processing",
            "SELECT COUNT(*) FROM challenges WHERE status = 'processing'",
        ),
    ];
    assert_none(store, checks).await;
}

/// The log of a fault episode: a handful of lines, exactly one ERROR about the storage that
/// says what is wrong, nothing misleading, and no line per refused request.
fn assert_quiet_log(log: &Path, from: usize, says: &str) {
    let lines = log_since(log, from);
    let errors: Vec<&String> = lines.iter().filter(|l| level(l) == "ERROR").collect();
    assert!(
        errors.len() <= MAX_ERROR_LINES,
        "{} ERROR lines for {} refused requests:\n{}",
        errors.len(),
        4 * ROUNDS,
        errors
            .iter()
            .take(10)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let storage: Vec<&&String> = errors
        .iter()
        .filter(|l| message(l).starts_with("storage:"))
        .collect();
    assert_eq!(storage.len(), 1, "storage ERROR lines: {storage:?}");
    assert!(
        message(storage[0]).contains(says),
        "the ERROR line should say {says:?}: {}",
        storage[0]
    );
    assert!(message(storage[0]).contains("503 with Retry-After"));
    for l in &lines {
        assert!(!l.contains("rollback failed"), "misleading line: {l}");
        assert!(!l.contains("internal error"), "line per request: {l}");
    }
    let warnings = lines.iter().filter(|l| level(l) == "WARN").count();
    assert!(
        warnings <= MAX_ERROR_LINES,
        "{warnings} WARN lines:\n{}",
        lines.join("\n")
    );
}

/// No descriptor of the server refers to a WAL file that was deleted: the group-commit handle
/// (and SQLite's own) are the live WAL.
fn assert_wal_is_live(server: &Server) {
    let pid = server.child.as_ref().unwrap().id();
    let mut wal_fds = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.display().to_string();
        if target.contains("sceau.db-wal") {
            wal_fds += 1;
            assert!(!target.ends_with("(deleted)"), "stale WAL handle: {target}");
        }
    }
    assert!(wal_fds > 0, "the server has no WAL open");
}

fn log_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.log");
    (dir, file)
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_answers_503_logs_once_and_resumes_when_space_returns() {
    let disk = Tmpfs::mount(16);
    let (_logs, log) = log_file();
    let server = Server::start_logged(disk.path().join("data"), log.clone(), "info", FLAGS);
    let (c, responder, p) = set_up(&server, "full").await;
    let before = rows(&server.store().await, &TABLES).await;

    let from = log_len(&log);
    let filled = disk.fill();
    assert!(filled > 0);
    let retry = refused_while_down(&server, &c, &p, "full").await;
    let db = server.data_dir().join("sceau.db");
    assert_quiet_log(
        &log,
        from,
        &format!("the disk holding {} is full", db.display()),
    );

    disk.free();
    // A client waits as Retry-After says before trying again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let store = server.store().await;
    assert_no_rows_added(&store, &before).await;
    resumed(&server, &c, &responder, &p, "full").await;
    wait_for_line(&log, from, "succeed again");
    assert_quiet_log(
        &log,
        from,
        &format!("the disk holding {} is full", db.display()),
    );
    assert_consistent(&store).await;
    assert_wal_is_live(&server);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_storage_answers_503_logs_once_and_resumes_when_writable() {
    let disk = Tmpfs::mount(16);
    let (_logs, log) = log_file();
    let mut server = Server::start_logged(disk.path().join("data"), log.clone(), "info", FLAGS);
    let (c, responder, p) = set_up(&server, "ro").await;
    let before = rows(&server.store().await, &TABLES).await;

    // The kernel refuses a read-only remount while a file on it is open for writing, which a
    // running SQLite always has: read-only storage meets a server that (re)starts on it, as
    // after a crash or a reboot onto a disk mounted read-only. One restart on writable storage
    // first: a start makes the data directory's files private (the CA writes ca.json 0644),
    // which it cannot do on read-only storage.
    server.restart();
    server.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = disk.remount(true) {
        // The signing service exits once its parent is gone.
        assert!(Instant::now() < deadline, "remount read-only: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let from = log_len(&log);
    server.spawn();
    let retry = refused_while_down(&server, &c, &p, "ro").await;
    let db = server.data_dir().join("sceau.db");
    assert_quiet_log(&log, from, &format!("{} is read-only", db.display()));

    disk.remount(false).unwrap();
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let store = server.store().await;
    assert_no_rows_added(&store, &before).await;
    resumed(&server, &c, &responder, &p, "ro").await;
    wait_for_line(&log, from, "succeed again");
    assert_quiet_log(&log, from, &format!("{} is read-only", db.display()));
    assert_consistent(&store).await;
    assert_wal_is_live(&server);
}

/// psql, one statement per `-c` (ALTER SYSTEM runs in no transaction block).
fn psql(pg: &sceau_testkit::Postgres, statements: &[&str]) {
    let mut cmd = std::process::Command::new(sceau_testkit::require_tool("psql"));
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U"])
        .arg("postgres")
        .arg("-p")
        .arg(pg.port.to_string())
        .arg("-d")
        .arg("sceau");
    for s in statements {
        cmd.arg("-c").arg(s);
    }
    let out = cmd.output().expect("run psql");
    assert!(
        out.status.success(),
        "psql {statements:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_postgresql_answers_503_logs_once_and_resumes_while_running() {
    let pg = sceau_testkit::Postgres::start();
    let (_logs, log) = log_file();
    let data = tempfile::tempdir().unwrap();
    let mut flags = FLAGS.to_vec();
    flags.extend(["--database", &pg.url]);
    let server = Server::start_logged(data.path().join("data"), log.clone(), "info", &flags);
    let (c, responder, p) = set_up(&server, "pgro").await;
    let store = sceau_store::Store::open(&pg.url).await.unwrap();
    let before = rows(&store, &TABLES).await;

    // A primary demoted to a standby answers every write with SQLSTATE 25006, as does this.
    let from = log_len(&log);
    psql(
        &pg,
        &[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
        ],
    );
    // Backends apply the reload at their next command; give the signal a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let retry = refused_while_down(&server, &c, &p, "pgro").await;
    let says = format!(
        "the PostgreSQL database at 127.0.0.1:{}/sceau is read-only",
        pg.port
    );
    assert_quiet_log(&log, from, &says);

    psql(
        &pg,
        &[
            "SET default_transaction_read_only = off",
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        ],
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_no_rows_added(&store, &before).await;
    resumed(&server, &c, &responder, &p, "pgro").await;
    wait_for_line(&log, from, "succeed again");
    assert_quiet_log(&log, from, &says);
    assert_consistent(&store).await;
}

/// The pid of the server's signing service (its child running `sign-service`).
fn signing_service_of(server: &Server) -> u32 {
    let parent = server.child.as_ref().unwrap().id().to_string();
    let out = std::process::Command::new("pgrep")
        .args(["-P", &parent, "-f", "sign-service"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("one signing service")
}

fn signal(pid: u32, sig: &str) {
    assert!(
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Issue 11: the disk fills while the signer holds a request. The signed certificate is kept
/// and stored once space returns, under the serial reserved before signing; it is never signed
/// a second time, and the order completes without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_signed_while_the_disk_fills_is_stored_once_space_returns() {
    let disk = Tmpfs::mount(16);
    let (_logs, log) = log_file();
    let mut flags = FLAGS.to_vec();
    flags.extend(["--issuance-wait-ms", "300"]);
    let server = Server::start_logged(disk.path().join("data"), log.clone(), "info", &flags);
    let (c, _responder, p) = set_up(&server, "late").await;

    // The signer stalls; finalize commits the job, then waits.
    let signer = signing_service_of(&server);
    signal(signer, "-STOP");
    let (csr_b64, _) = csr(&["late-ready.test"]);
    let r = c.finalize(&p.ready, &csr_b64).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "processing");
    let order_id = p.ready["_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let reserved: Vec<String> = {
        let store = server.store().await;
        let (_, _, _, attempts, _) = store.issuance_state(&order_id).await.unwrap();
        assert_eq!(attempts, Some(1));
        vec![store.serial_counts().await.unwrap().reserved.to_string()]
    };
    assert_eq!(reserved, ["1"], "the serial is reserved before signing");

    // The disk fills, then the signer answers: the certificate cannot be stored yet.
    let from = log_len(&log);
    disk.fill();
    signal(signer, "-CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = c.post(p.ready["_url"].as_str().unwrap(), None).await;
    assert!(
        still.status == 503 || still.json()["status"] == "processing",
        "{} {}",
        still.status,
        String::from_utf8_lossy(&still.body)
    );

    wait_for_line(&log, from, "is full");
    // Space returns: stored without a restart, under the first serial, signed once.
    disk.free();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let r = c.post(p.ready["_url"].as_str().unwrap(), None).await;
        if r.status == 200 && r.json()["status"] != "processing" {
            break r.json();
        }
        assert!(
            Instant::now() < deadline,
            "not stored a minute after space returned"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(done["status"], "valid", "{done}");
    let store = server.store().await;
    let counts = store.serial_counts().await.unwrap();
    assert_eq!(
        (
            counts.issued,
            counts.failed,
            counts.abandoned,
            counts.reserved
        ),
        (1, 0, 0, 0),
        "one serial, issued: {counts:?}"
    );
    let (_, _, _, attempts, _) = store.issuance_state(&order_id).await.unwrap();
    assert_eq!(attempts, Some(1), "signed once");
    let cert = c.post(done["certificate"].as_str().unwrap(), None).await;
    openssl_verify(&server, &String::from_utf8(cert.body).unwrap());
    assert_serials_accounted_for(&server).await;
    assert_consistent(&store).await;
}
