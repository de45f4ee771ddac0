//! sceau-bench against a real Pebble (`/usr/bin/pebble`) with `pebble-challtestsrv` as its DNS:
//! full issuances are counted, failures are counted as errors, and setup mistakes stop the run
//! with exit status 2. Each test starts its own Pebble on free ports in a temporary directory.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

const BENCH: &str = env!("CARGO_BIN_EXE_sceau-bench");

/// A throwaway CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
/// Returns the CA file.
fn api_certificate(dir: &Path, name: &str) -> PathBuf {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let cert = params.signed_by(&key, &issuer).unwrap();

    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    let ca = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    ca
}

fn wait_for_tcp(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port}");
}

struct Pebble {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    directory: String,
    ca: PathBuf,
    pid: u32,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Pebble validating http-01 on `http01_port`, requiring EAB when `eab` = (kid, key) is set.
    fn start(http01_port: u16, eab: Option<(&str, &str)>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = api_certificate(dir.path(), "api");
        let (dns, dns_management) = (sceau_testkit::free_port(), sceau_testkit::free_port());
        let (api, management, tls) = (
            sceau_testkit::free_port(),
            sceau_testkit::free_port(),
            sceau_testkit::free_port(),
        );

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let cts_log = dir.path().join("challtestsrv.log");
        let mut cts = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pebble-challtestsrv must be installed");
        wait_for_tcp(dns_management, &mut cts, "pebble-challtestsrv", &cts_log);

        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("api.pem"),
            "privateKey": dir.path().join("api.key"),
            "httpPort": http01_port,
            "tlsPort": tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab.is_some(),
        }});
        if let Some((kid, key)) = eab {
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ kid: key });
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let pebble_log = dir.path().join("pebble.log");
        let mut pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .envs([
                ("PEBBLE_VA_NOSLEEP", "1"),
                ("PEBBLE_WFE_NONCEREJECT", "0"),
                ("PEBBLE_AUTHZREUSE", "0"),
            ])
            .stdout(log("pebble.log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pebble must be installed");
        let pid = pebble.id();
        let mut children = vec![cts];
        wait_for_tcp(api, &mut pebble, "pebble", &pebble_log);
        children.push(pebble);
        Pebble {
            dir,
            children,
            directory: format!("https://127.0.0.1:{api}/dir"),
            ca,
            pid,
        }
    }
}

/// Runs sceau-bench, killing it if it outlives `limit`.
fn bench(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BENCH)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "sceau-bench ran longer than {limit:?}: {:?}",
                child.wait_with_output().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

struct Run {
    code: i32,
    line: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = bench(args, Duration::from_secs(120));
    Run {
        code: out.status.code().expect("exited normally"),
        line: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn issues_every_order_and_reports_the_server_memory() {
    let http = sceau_testkit::free_port();
    let pebble = Pebble::start(http, None);
    let (http, pid) = (http.to_string(), pebble.pid.to_string());
    let r = run(&[
        "--directory",
        &pebble.directory,
        "--ca-bundle",
        pebble.ca.to_str().unwrap(),
        "--concurrency",
        "4",
        "--orders",
        "12",
        "--http-port",
        &http,
        "--server-pid",
        &pid,
        "--pebble-workaround",
        "--max-seconds",
        "90",
        "--request-timeout-s",
        "15",
    ]);
    assert_eq!(r.code, 0, "{} / {}", r.line, r.stderr);
    assert!(
        r.line.starts_with("issued=12 errors=0 elapsed_s="),
        "{}",
        r.line
    );
    let names = [
        "issued",
        "errors",
        "elapsed_s",
        "certs_per_s",
        "p50_ms",
        "p99_ms",
    ];
    let positions: Vec<_> = names
        .iter()
        .map(|n| r.line.find(&format!("{n}=")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order: {}",
        r.line
    );
    assert!(field(&r.line, "certs_per_s").parse::<f64>().unwrap() > 0.0);
    let (p50, p99): (u64, u64) = (
        field(&r.line, "p50_ms").parse().unwrap(),
        field(&r.line, "p99_ms").parse().unwrap(),
    );
    assert!(p50 > 0 && p50 <= p99, "{}", r.line);
    assert_eq!(field(&r.line, "concurrency"), "4");
    let rss: f64 = field(&r.line, "rss_peak_mib").parse().unwrap();
    assert!(rss > 1.0 && rss < 1000.0, "Pebble RSS {rss} MiB");
    assert_eq!(
        field(&r.line, "rss_procs"),
        "1",
        "Pebble starts no child process"
    );
    // Issuing 12 certificates costs Pebble several 10 ms clock ticks of CPU; the bench's own
    // share may round down to no tick at all, but is reported.
    let server: f64 = field(&r.line, "server_cpu_ms_per_cert").parse().unwrap();
    assert!(server > 0.0 && server < 5000.0, "{}", r.line);
    let bench: f64 = field(&r.line, "bench_cpu_ms_per_cert").parse().unwrap();
    assert!((0.0..5000.0).contains(&bench), "{}", r.line);

    // Pebble really validated each name over http-01 against the bench's responder.
    let log = std::fs::read_to_string(pebble.dir.path().join("pebble.log")).unwrap();
    assert_eq!(log.matches("Issued certificate serial").count(), 12);
    assert!(log.contains(&format!(".bench.test:{http}/.well-known/acme-challenge/")));
}

#[test]
fn failed_validations_are_counted_not_fatal() {
    // Pebble validates on one port while the bench answers on another: every order fails.
    let pebble = Pebble::start(sceau_testkit::free_port(), None);
    let http = sceau_testkit::free_port().to_string();
    let r = run(&[
        "--directory",
        &pebble.directory,
        "--ca-bundle",
        pebble.ca.to_str().unwrap(),
        "--concurrency",
        "2",
        "--orders",
        "3",
        "--http-port",
        &http,
        "--request-timeout-s",
        "15",
    ]);
    assert_eq!(r.code, 1, "{} / {}", r.line, r.stderr);
    assert!(r.line.starts_with("issued=0 errors=3 "), "{}", r.line);
    assert_eq!(field(&r.line, "p99_ms"), "0");
    assert!(r.stderr.contains("validation"), "{}", r.stderr);
    assert!(
        r.stderr.contains("3 x validation"),
        "errors are grouped by kind: {}",
        r.stderr
    );
}

#[test]
fn external_account_binding_is_sent_and_checked() {
    let http = sceau_testkit::free_port();
    let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(http, Some(("kid-bench", key)));
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, format!("{key}\n")).unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "c2VjcmV0LWJ1dC13cm9uZw").unwrap();
    let http = http.to_string();
    let args = |file: &Path| -> Vec<String> {
        [
            "--directory",
            &pebble.directory,
            "--ca-bundle",
            pebble.ca.to_str().unwrap(),
            "--concurrency",
            "2",
            "--orders",
            "2",
            "--http-port",
            &http,
            "--eab-kid",
            "kid-bench",
            "--eab-hmac-key-file",
            file.to_str().unwrap(),
            "--request-timeout-s",
            "15",
        ]
        .map(str::to_owned)
        .to_vec()
    };

    let ok = run(&args(&good).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ok.code, 0, "{} / {}", ok.line, ok.stderr);
    assert!(ok.line.starts_with("issued=2 errors=0 "), "{}", ok.line);

    // A wrong MAC key: both accounts are refused, so both orders are never started.
    let refused = run(&args(&bad).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.code, 1, "{} / {}", refused.line, refused.stderr);
    assert!(
        refused.line.starts_with("issued=0 errors=4 "),
        "{}",
        refused.line
    );
    assert!(
        refused.stderr.contains("2 x newAccount: HTTP "),
        "{}",
        refused.stderr
    );
    let left = "2 x not started: no client with an account left";
    assert!(refused.stderr.contains(left), "{}", refused.stderr);
}

#[test]
fn an_untrusted_ca_stops_the_run_before_any_load() {
    let pebble = Pebble::start(sceau_testkit::free_port(), None);
    let dir = tempfile::tempdir().unwrap();
    let other_ca = api_certificate(dir.path(), "other");
    let http = sceau_testkit::free_port().to_string();
    let r = run(&[
        "--directory",
        &pebble.directory,
        "--ca-bundle",
        other_ca.to_str().unwrap(),
        "--orders",
        "1",
        "--http-port",
        &http,
    ]);
    assert_eq!(r.code, 2, "{} / {}", r.line, r.stderr);
    assert!(
        r.line.is_empty(),
        "no result line on a setup failure: {}",
        r.line
    );
    assert!(
        r.stderr.contains("directory") && r.stderr.contains("certificate"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_setup_is_refused_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = api_certificate(dir.path(), "api");
    let ca = ca.to_str().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let not_b64 = dir.path().join("eab");
    std::fs::write(&not_b64, "not base64 !!").unwrap();
    let http = sceau_testkit::free_port().to_string();
    let dir_url = "https://127.0.0.1:1/dir";
    let base = ["--directory", dir_url, "--http-port", http.as_str()];

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--ca-bundle", ca, "--concurrency", "0"],
            "--concurrency",
        ),
        (
            vec!["--ca-bundle", not_pem.to_str().unwrap()],
            "no CERTIFICATE",
        ),
        (vec!["--ca-bundle", "/nonexistent/ca.pem"], "CA bundle"),
        (
            vec!["--ca-bundle", ca, "--eab-kid", "k"],
            "--eab-hmac-key-file",
        ),
        (
            vec![
                "--ca-bundle",
                ca,
                "--eab-kid",
                "k",
                "--eab-hmac-key-file",
                not_b64.to_str().unwrap(),
            ],
            "base64url",
        ),
        (vec!["--ca-bundle", ca], "directory"),
    ];
    for (extra, expected) in cases {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {} / {}", r.line, r.stderr);
        assert!(
            r.stderr.contains(expected),
            "{args:?}: expected {expected:?} in {}",
            r.stderr
        );
    }

    // The http-01 port is taken: the run cannot start.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = run(&[
        "--directory",
        dir_url,
        "--ca-bundle",
        ca,
        "--http-port",
        &port,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("http-01 listener"), "{}", r.stderr);
}
