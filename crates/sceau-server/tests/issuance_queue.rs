//! The durable issuance queue (issue 11) against the real binary: the signing process killed
//! under load is restarted and no order is lost or stuck; a signer that stays away makes orders
//! wait `processing` and then fail at their deadline, and readiness says so; a stalled
//! instance loses its job to another instance once its lease expires, and its late signature
//! is never stored. Every reserved serial ends issued, failed or abandoned.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// The pids of `parent`'s children whose command line contains `needle`.
fn children(parent: u32, needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn signer_of(s: &Server) -> u32 {
    let pid = s.child.as_ref().unwrap().id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = children(pid, "sign-service");
        if let [one] = found.as_slice() {
            return *one;
        }
        assert!(
            Instant::now() < deadline,
            "no signing service under {pid}: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An order for `name` made ready with http-01; returns (order URL, finalize URL).
async fn ready_urls(c: &Raw, responder: &Http01, name: &str) -> (String, String) {
    let o = ready_order(c, responder, &[name]).await;
    (
        o["_url"].as_str().unwrap().to_owned(),
        o["finalize"].as_str().unwrap().to_owned(),
    )
}

async fn finalize(c: &Raw, url: &str, name: &str) -> Resp {
    let (csr, _) = csr(&[name]);
    c.post(url, Some(&json!({"csr": csr}))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_signing_service_is_restarted_and_no_order_is_lost() {
    let server = Server::start(&["--eab", "off"]);
    server.dns.add_record("*.load", "A", "127.0.0.1");
    let responder = Http01::start(server.http01_port).await;
    let done: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = Raw::new(&server).await;
        c.register().await;
        let (done, stop, responder) = (done.clone(), stop.clone(), responder.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let name = format!("c{i}-{n}.load.test");
                let (order_url, fin) = ready_urls(&c, &responder, &name).await;
                let r = finalize(&c, &fin, &name).await;
                assert_eq!(
                    r.status,
                    200,
                    "finalize: {}",
                    String::from_utf8_lossy(&r.body)
                );
                let status = r.json()["status"].clone();
                assert!(status == "valid" || status == "processing", "{status}");
                if status == "processing" {
                    assert!(r.headers.get("retry-after").is_some());
                }
                let v = c.poll(&order_url, &["processing"]).await;
                assert_eq!(v["status"], "valid", "{v}");
                done.lock()
                    .unwrap()
                    .push(v["certificate"].as_str().unwrap().to_owned());
            }
        }));
    }
    let mut killed = Vec::new();
    for _ in 0..4 {
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
            % 500;
        tokio::time::sleep(Duration::from_millis(300 + jitter)).await;
        let pid = signer_of(&server);
        signal(pid, "-KILL");
        killed.push(pid);
        // A new one comes up, under the same front end.
        let deadline = Instant::now() + Duration::from_secs(10);
        while signer_of(&server) == pid {
            assert!(
                Instant::now() < deadline,
                "the signing service was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let certs = done.lock().unwrap().clone();
    assert!(
        certs.len() >= 10,
        "too few issuances to mean anything: {}",
        certs.len()
    );
    // The killed services were reaped: no zombie child.
    let server_pid = server.child.as_ref().unwrap().id();
    for pid in children(server_pid, "") {
        assert_ne!(state_of(pid), Some('Z'), "zombie child {pid}");
    }
    for pid in killed {
        assert!(
            state_of(pid).is_none(),
            "killed signer {pid} still in the process table"
        );
    }
    let store = server.store().await;
    assert_eq!(
        store
            .scalar("SELECT COUNT(*) FROM orders WHERE status IN ('processing', 'invalid')")
            .await
            .unwrap(),
        0
    );
    assert_serials_accounted_for(&server).await;
    let ready = http_client(&server.root_pem())
        .get(format!("{}/readyz", server.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signer_that_stays_away_makes_orders_wait_then_fail_at_their_deadline() {
    let server = Server::start(&[
        "--eab",
        "off",
        "--issuance-deadline-secs",
        "4",
        "--issuance-wait-ms",
        "300",
    ]);
    server.add_host("late.test");
    server.add_host("back.test");
    let responder = Http01::start(server.http01_port).await;
    let mut c = Raw::new(&server).await;
    c.register().await;
    let http = http_client(&server.root_pem());
    let readyz = format!("{}/readyz", server.base());
    assert_eq!(http.get(&readyz).send().await.unwrap().status(), 200);

    // The issuing key goes away: the signing service cannot start again.
    let key = server.data_dir().join("intermediate.key");
    let hidden = server.data_dir().join("intermediate.key.away");
    std::fs::rename(&key, &hidden).unwrap();
    signal(signer_of(&server), "-KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http.get(&readyz).send().await.unwrap();
        if r.status() == 503 {
            assert!(r.headers().get("retry-after").is_some());
            assert!(r.text().await.unwrap().contains("signing"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never said signing is away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (order_url, fin) = ready_urls(&c, &responder, "late.test").await;
    let r = finalize(&c, &fin, "late.test").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "processing");
    assert!(r.headers.get("retry-after").is_some());
    let failed = c.poll(&order_url, &["processing"]).await;
    assert_eq!(failed["status"], "invalid", "{failed}");
    let detail = failed["error"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("could not be signed within 4 s"),
        "{detail}"
    );
    assert_eq!(
        failed["error"]["type"],
        "urn:ietf:params:acme:error:serverInternal"
    );

    // The key comes back: the service starts again and issues.
    std::fs::rename(&hidden, &key).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(&readyz).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "readiness did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (order_url, fin) = ready_urls(&c, &responder, "back.test").await;
    finalize(&c, &fin, "back.test").await;
    let v = c.poll(&order_url, &["processing"]).await;
    assert_eq!(v["status"], "valid", "{v}");
    assert_serials_accounted_for(&server).await;
    let counts = server.store().await.serial_counts().await.unwrap();
    assert_eq!(counts.issued, 1);
    assert!(counts.failed + counts.abandoned >= 1, "{counts:?}");
    assert_eq!(counts.reserved, 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_instance_loses_its_job_to_another_and_its_late_certificate_is_dropped() {
    let pg = sceau_testkit::Postgres::start();
    let common = [
        "--eab",
        "off",
        "--database",
        pg.url.as_str(),
        "--issuance-lease-secs",
        "3",
        "--issuance-wait-ms",
        "300",
    ];
    let first = Server::start(&common);
    first.add_host("stall.test");
    let base = first.base();
    let mut args = common.to_vec();
    args.extend(["--base-url", base.as_str()]);
    let second = Server::start_sibling(&first, &args);
    let responder = Http01::start(first.http01_port).await;
    let mut c = Raw::new(&first).await;
    c.register().await;
    let (order_url, fin) = ready_urls(&c, &responder, "stall.test").await;

    // The first instance takes the job, and stalls: its signer first, then itself.
    let first_pid = first.child.as_ref().unwrap().id();
    let first_signer = signer_of(&first);
    signal(first_signer, "-STOP");
    let r = finalize(&c, &fin, "stall.test").await;
    assert_eq!(
        r.json()["status"],
        "processing",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    signal(first_pid, "-STOP");

    // The second instance takes it over once the lease expired, and issues.
    let store = sceau_store::Store::open(&pg.url).await.unwrap();
    let order_id = order_url.rsplit('/').next().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let done: Value = loop {
        let o = store.order_by_id(&order_id).await.unwrap();
        if o.status == "valid" {
            break json!({"cert": o.cert_id});
        }
        assert!(
            Instant::now() < deadline,
            "the second instance did not take the job over: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(done["cert"].is_string());

    // The first instance resumes: its signer answers, but the job is no longer its own.
    signal(first_signer, "-CONT");
    signal(first_pid, "-CONT");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let certs = store
        .scalar("SELECT COUNT(*) FROM certificates")
        .await
        .unwrap();
    assert_eq!(certs, 1, "exactly one certificate for the order");
    let serials = store.serial_counts().await.unwrap();
    assert_eq!(serials.issued, 1, "{serials:?}");
    assert_eq!(
        serials.abandoned, 1,
        "the stalled attempt's serial: {serials:?}"
    );
    assert_eq!(serials.reserved, 0, "{serials:?}");
    let v = c.post(&order_url, None).await.json();
    assert_eq!(v["status"], "valid");
    drop(second);
}
