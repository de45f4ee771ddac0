//! Two instances on one PostgreSQL database behind HAProxy, under load from sceau-bench's
//! concurrent clients: one instance is killed with SIGKILL mid-run. The clients carry on
//! through the other; each loses at most the order it had in flight on the dead instance; the
//! issuances the dead instance held are taken over once their leases expire, so no order is
//! left `processing`; lego then issues through the survivor, and the restarted instance
//! rejoins. And the database itself: its primary killed, its synchronous standby promoted
//! behind HAProxy, not one certificate whose URL was handed out is lost.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;

/// sceau-bench, built beside sceau-server by `cargo build --workspace` (the README's test
/// command builds it first).
fn bench_binary() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sceau-server"));
    let bench = exe.with_file_name("sceau-bench");
    assert!(
        bench.exists(),
        "{} is missing: build the workspace first (cargo build --workspace, as the README's test command does)",
        bench.display()
    );
    bench
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// `issued=N` and `errors=N` of the bench's result line.
fn bench_counts(line: &str) -> (u64, u64) {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    (field("issued="), field("errors="))
}

fn bench(
    base: &str,
    root: &std::path::Path,
    http_port: u16,
    orders: u64,
    timeline: Option<&std::path::Path>,
) -> Command {
    let mut c = Command::new(bench_binary());
    c.args(["--directory", &format!("{base}/directory")])
        .arg("--ca-bundle")
        .arg(root)
        .args(["--concurrency", "8", "--orders", &orders.to_string()])
        .args([
            "--http-port",
            &http_port.to_string(),
            "--domain",
            "fail.test",
        ])
        .args(["--poll-min-ms", "20", "--poll-max-ms", "200"])
        .args(["--request-timeout-s", "10", "--order-timeout-s", "60"])
        .stdout(Stdio::piped());
    if let Some(t) = timeline {
        c.arg("--timeline").arg(t);
    }
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_carry_on_through_the_other_instance_when_one_is_killed() {
    let pg = sceau_testkit::Postgres::start();
    let mut first = Server::unstarted(&[]);
    let mut second = Server::unstarted(&[]);
    let proxy = sceau_testkit::Haproxy::start(&[first.port, second.port]);
    let base = format!("https://127.0.0.1:{}", proxy.port);
    let common = [
        "--eab",
        "off",
        "--database",
        &pg.url,
        "--base-url",
        &base,
        // Issuances a dead instance held are taken over this soon.
        "--issuance-lease-secs",
        "3",
    ];
    first.args = common.iter().map(|s| s.to_string()).collect();
    first.spawn();
    // The second instance shares the first's CA, DNS server and validation port.
    second.shared_data_dir = Some(first.data_dir());
    second.http01_port = first.http01_port;
    second.args = common.iter().map(|s| s.to_string()).collect();
    second
        .args
        .extend(["--dns-server".to_owned(), first.dns.addr.to_string()]);
    second.spawn();
    proxy.wait_for(0, true);
    proxy.wait_for(1, true);
    first.add_host("*.fail");
    let store = sceau_store::Store::open(&pg.url).await.unwrap();

    // Load through the proxy; the first instance dies once some certificates are out.
    let dir = tempfile::tempdir().unwrap();
    let timeline = dir.path().join("timeline");
    let orders = 160;
    let mut run = bench(
        &base,
        &first.root_pem(),
        first.http01_port,
        orders,
        Some(&timeline),
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while store
        .scalar("SELECT COUNT(*) FROM certificates")
        .await
        .unwrap()
        < 30
    {
        if let Some(status) = run.try_wait().unwrap() {
            let mut said = String::new();
            std::io::Read::read_to_string(run.stdout.as_mut().unwrap(), &mut said).unwrap();
            panic!("the bench stopped early ({status}): {said}");
        }
        assert!(Instant::now() < deadline, "no load got through the proxy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_at = now_ms();
    first.kill(); // SIGKILL
    let out = run.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_ne!(
        out.status.code(),
        Some(2),
        "the bench could not run: {line}"
    );
    let (issued, errors) = bench_counts(&line);
    assert_eq!(issued + errors, orders, "{line}");
    assert!(
        errors <= 8,
        "each of the 8 clients loses at most the order it had on the dead instance: {line}"
    );

    // Certificates kept coming after the kill; the gap is the failover time.
    let times: Vec<(u128, bool)> = std::fs::read_to_string(&timeline)
        .unwrap()
        .lines()
        .map(|l| {
            let (t, what) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), what == "issued")
        })
        .collect();
    let last_before = times
        .iter()
        .filter(|(t, ok)| *ok && *t <= killed_at)
        .map(|(t, _)| *t)
        .max()
        .expect("certificates before the kill");
    let first_after = times
        .iter()
        .filter(|(t, ok)| *ok && *t > killed_at)
        .map(|(t, _)| *t)
        .min()
        .expect("certificates after the kill: the clients carried on");
    eprintln!(
        "failover: {line}; last certificate before the kill {} ms before it, first after {} ms after it (gap {} ms)",
        killed_at - last_before,
        first_after - killed_at,
        first_after - last_before
    );

    // What the dead instance held is finished by the survivor once its leases expire.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stuck = store
            .scalar("SELECT COUNT(*) FROM orders WHERE status = 'processing'")
            .await
            .unwrap();
        if stuck == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stuck} orders still processing a minute after the kill"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_serials_in(&store).await;
    assert_none(
        &store,
        &[(
            "a valid order whose certificate is missing",
            "SELECT COUNT(*) FROM orders o WHERE o.status = 'valid' AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.order_id = o.id)",
        )],
    )
    .await;

    // A real client through the survivor.
    let lego_dir = dir.path().join("lego");
    let out = Command::new(sceau_testkit::require_tool("lego"))
        .args(["--server", &format!("{base}/directory")])
        .arg("--path")
        .arg(&lego_dir)
        .args(["--email", "pki-team@example.org", "--accept-tos"])
        .args(["--domains", "lego.fail.test", "--http", "--http.port"])
        .arg(format!(":{}", first.http01_port))
        .arg("run")
        .env("LEGO_CA_CERTIFICATES", first.root_pem())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lego through the survivor: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chain = std::fs::read_to_string(lego_dir.join("certificates/lego.fail.test.crt")).unwrap();
    openssl_verify(&first, &chain);

    // The killed instance comes back on its port and serves again with the other.
    proxy.wait_for(0, false);
    first.spawn();
    proxy.wait_for(0, true);
    let out = bench(&base, &first.root_pem(), first.http01_port, 32, None)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(bench_counts(&line), (32, 0), "{line}");
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_primary_dies_and_its_synchronous_standby_takes_over() {
    let mut pg = sceau_testkit::ReplicatedPostgres::start();
    // The server reaches the database through HAProxy: the primary, or the standby once the
    // primary is down.
    let proxy = sceau_testkit::Haproxy::start_with_backup(pg.primary.port, pg.standby.port);
    let url = format!("postgres://postgres@127.0.0.1:{}/sceau", proxy.port);
    let server = Server::start(&[
        "--eab",
        "off",
        "--database",
        &url,
        "--issuance-lease-secs",
        "3",
    ]);
    server.add_host("*.fail");

    let dir = tempfile::tempdir().unwrap();
    let timeline = dir.path().join("timeline");
    let orders = 240;
    let mut run = bench(
        &server.base(),
        &server.root_pem(),
        server.http01_port,
        orders,
        Some(&timeline),
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: u64 = pg
            .primary
            .sql_in("sceau", "SELECT COUNT(*) FROM certificates")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if n >= 30 {
            break;
        }
        assert!(
            run.try_wait().unwrap().is_none(),
            "the bench stopped before the failover"
        );
        assert!(Instant::now() < deadline, "no load reached the database");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The primary crashes; the operator (or Patroni) promotes the standby.
    let killed_at = now_ms();
    pg.primary.kill9();
    proxy.wait_for(0, false);
    pg.promote();
    let promoted_at = now_ms();
    let out = run.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_ne!(
        out.status.code(),
        Some(2),
        "the bench could not run: {line}"
    );
    let (issued, errors) = bench_counts(&line);
    assert_eq!(issued + errors, orders, "{line}");

    let text = std::fs::read_to_string(&timeline).unwrap();
    let issued_at: Vec<u128> = text
        .lines()
        .filter_map(|l| l.strip_suffix(" issued"))
        .map(|t| t.parse().unwrap())
        .collect();
    let last_before = issued_at.iter().filter(|t| **t <= killed_at).max().copied();
    let first_after = issued_at
        .iter()
        .filter(|t| **t > killed_at)
        .min()
        .copied()
        .expect("certificates after the failover: the server carried on");
    eprintln!(
        "database failover: {line}; promoted {} ms after the kill; last certificate {} ms before the kill, first {} ms after it (gap {} ms)",
        promoted_at - killed_at,
        last_before.map_or(0, |t| killed_at - t),
        first_after - killed_at,
        first_after - last_before.unwrap_or(killed_at)
    );

    // Not one certificate whose URL a client was given is missing from the new primary.
    let handed_out: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(" url ").map(|(_, u)| u))
        .collect();
    assert!(handed_out.len() as u64 >= issued);
    let kept = pg
        .standby
        .sql_in("sceau", "SELECT id FROM certificates")
        .unwrap();
    let kept: std::collections::HashSet<&str> = kept.lines().collect();
    for url in &handed_out {
        let id = url.rsplit('/').next().unwrap();
        assert!(kept.contains(id), "{url} was handed out and is lost");
    }

    // No order is left processing: what was in flight at the crash is finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stuck = pg.standby.sql_in(
            "sceau",
            "SELECT COUNT(*) FROM orders WHERE status = 'processing'",
        );
        if stuck.as_deref() == Some("0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orders still processing a minute after the failover: {stuck:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = sceau_store::Store::open(&url).await.unwrap();
    assert_serials_in(&store).await;

    // Service as usual on the new primary.
    let out = bench(
        &server.base(),
        &server.root_pem(),
        server.http01_port,
        16,
        None,
    )
    .output()
    .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(bench_counts(&line), (16, 0), "{line}");
}
