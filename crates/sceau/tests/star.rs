//! `sceau star` against sceau-server with STAR lifetimes shortened to seconds: a series
//! followed by `watch` to its end, every certificate checked by openssl; fetching without the
//! account key where it was agreed; cancellation; and the refusals, each leaving no state.

#[path = "../../sceau-client/tests/support/mod.rs"]
#[allow(unused_macros)]
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sceau_testkit::require_tool;
use support::Env;

struct Cli<'a> {
    env: &'a Env,
    state: PathBuf,
    certs: PathBuf,
}

impl<'a> Cli<'a> {
    fn new(env: &'a Env) -> Self {
        Cli {
            env,
            state: env.path("state"),
            certs: env.path("live"),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sceau"));
        c.arg("--state-dir")
            .arg(&self.state)
            .arg("--cert-dir")
            .arg(&self.certs)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `sceau star order` for `name` with the test server, http-01 on the test's port.
    fn order(&self, name: &str, extra: &[&str]) -> Output {
        let port = self.env.params.http_port.to_string();
        let url = self.env.server.directory_url();
        let bundle = self.env.server.ca_bundle().display().to_string();
        let mut args = vec![
            "star",
            "order",
            "--agree-tos",
            "--server",
            &url,
            "--ca-bundle",
            &bundle,
            "-d",
            name,
            "--http-port",
            &port,
            "--listen-address",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["event"] == kind)
            .collect()
    }

    fn list(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["star", "list", "--json"]);
        ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Exit status 1 and a last stderr line that says `needle`.
fn fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.lines().last().unwrap_or("");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        last.starts_with("sceau: error: ") && err.contains(needle),
        "no {needle:?} in the error; stderr: {err}"
    );
}

fn openssl(args: &[&str], file: &Path) -> String {
    let out = Command::new(require_tool("openssl"))
        .args(args)
        .arg("-in")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// openssl's `-dates` of a certificate, as Unix times.
fn dates(file: &Path) -> (i64, i64) {
    let text = openssl(&["x509", "-noout", "-dates", "-dateopt", "iso_8601"], file);
    let field = |k: &str| {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{k} in {text}"));
        let v = v.trim().replace(' ', "T");
        time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{v}: {e}"))
            .unix_timestamp()
    };
    (field("notBefore="), field("notAfter="))
}

/// `openssl verify` of `leaf` against the server's issuing root, as of `at`.
fn verify_at(env: &Env, leaf: &Path, chain: &Path, at: i64) {
    let root = env.path("issuing-root.pem");
    std::fs::write(&root, env.server.issuing_root_pem()).unwrap();
    let out = Command::new(require_tool("openssl"))
        .args(["verify", "-attime", &at.to_string(), "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(chain)
        .arg(leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify {}: {}{}",
        leaf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn server_star_env() -> Env {
    Env::start_with(support::sceau_server, |p| {
        p.extra_server_args = ["--star-min-lifetime", "10s", "--star-max-duration", "1d"]
            .map(String::from)
            .to_vec();
    })
}

/// A series ordered for 12 s certificates until 40 s from now, followed by `watch` to its end:
/// every certificate the CA publishes is installed, with the series' one key, the deploy hook
/// runs for each, and watch exits by itself once the server says the series expired.
#[test]
fn watch_installs_every_certificate_of_a_series_until_it_expires() {
    let env = server_star_env();
    let cli = Cli::new(&env);
    let hooked = env.path("hooked");
    std::fs::create_dir_all(&hooked).unwrap();
    let hook = format!(
        "cp \"$SCEAU_CERT_DIR/cert.pem\" {}/$(date +%s%N).pem",
        hooked.display()
    );
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp();
    ok(&cli.order(
        "series.test",
        &[
            "--lifetime",
            "12s",
            "--until",
            "40s",
            "--deploy-hook",
            &hook,
            "--archive-keep",
            "10",
        ],
    ));
    let dir = cli.certs.join("series.test");
    let key_pub = openssl(&["pkey", "-pubout"], &dir.join("privkey.pem"));
    assert_eq!(
        std::fs::metadata(dir.join("privkey.pem")).unwrap().mode() & 0o777,
        0o600
    );
    let series = cli.list();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["status"], "active");
    assert_eq!(series[0]["lifetime"], 12);
    let end = time::OffsetDateTime::parse(
        series[0]["end_date"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(
        (t0 + 39..=t0 + 42).contains(&end),
        "end {end} vs start {t0}"
    );
    assert_eq!(cli.events("star_ordered").len(), 1);

    // `status` does not call a 12 s certificate "expiring" (its default threshold is 14 days).
    ok(&cli.run(&["status"]));
    // `renew` leaves a STAR series to the CA, and says so when it is named.
    ok(&cli.run(&["renew"]));
    fails_with(
        &cli.run(&["renew", "--cert-name", "series.test"]),
        "is a STAR series",
    );

    let started = Instant::now();
    let out = cli
        .cmd(&["star", "watch", "--max-interval", "5"])
        .output()
        .unwrap();
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("every STAR series has ended"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "watch ran {:?}",
        started.elapsed()
    );

    // The first certificate (from `order`) and each one `watch` installed went through the
    // deploy hook; together they are the whole series.
    let mut copies: Vec<PathBuf> = std::fs::read_dir(&hooked)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    copies.sort();
    let installed = cli.events("star_installed");
    assert!(
        installed.len() >= 2,
        "at least two renewals in 40 s of 12 s certificates: {installed:?}"
    );
    assert_eq!(copies.len(), installed.len() + 1, "{copies:?}");
    let mut serials = Vec::new();
    let mut previous: Option<(i64, i64)> = None;
    for copy in &copies {
        let (nb, na) = dates(copy);
        // At a time within its validity: by now the early ones have expired.
        verify_at(&env, copy, &dir.join("chain.pem"), nb + 1);
        assert_eq!(openssl(&["x509", "-noout", "-pubkey"], copy), key_pub);
        assert!(
            openssl(&["x509", "-noout", "-ext", "subjectAltName"], copy)
                .contains("DNS:series.test")
        );
        serials.push(openssl(&["x509", "-noout", "-serial"], copy));
        assert!(
            na <= end,
            "no certificate outlives the series: {na} > {end}"
        );
        assert!(
            na - nb <= 12 + 8 + 1,
            "lifetime plus the pre-dating: {nb}..{na}"
        );
        if let Some((pnb, pna)) = previous {
            assert!(nb > pnb, "each certificate is newer");
            assert!(nb <= pna, "no gap between consecutive certificates");
        }
        previous = Some((nb, na));
    }
    let mut unique = serials.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), serials.len(), "{serials:?}");
    // The installed files are the last one, and the archive holds the earlier ones.
    assert_eq!(
        std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
        std::fs::read_to_string(copies.last().unwrap()).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(dir.join("archive")).unwrap().count(),
        copies.len() - 1
    );

    let ended = cli.events("star_ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["outcome"], "expired");
    assert_eq!(cli.list()[0]["status"], "expired");
    // An ended series is not fetched again, and is not a failure for `status`.
    let again = cli.run(&["star", "fetch"]);
    ok(&again);
    assert_eq!(cli.events("star_ended").len(), 1);
    let status = cli.run(&["status", "--json"]);
    ok(&status);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows[0]["status"], "star-expired");
}

/// Fetching by unauthenticated GET where the order agreed to it (a machine without the account
/// key), refusal where it did not, cancellation, and the bad cases: each refused with one line,
/// no managed entry left behind.
#[test]
fn delegated_fetch_cancellation_and_refusals() {
    let env = server_star_env();
    let cli = Cli::new(&env);

    // Refusals before anything exists: none leaves a managed entry.
    fails_with(
        &cli.order("short.test", &["--lifetime", "5s", "--until", "1h"]),
        "lifetime",
    );
    fails_with(
        &cli.order("long.test", &["--lifetime", "1h", "--until", "2d"]),
        "max",
    );
    fails_with(
        &cli.order(
            "order.test",
            &["--lifetime", "1h", "--start", "2h", "--until", "1h"],
        ),
        "not after the series' start",
    );
    fails_with(
        &cli.order("when.test", &["--lifetime", "1h", "--until", "tomorrow"]),
        "--until \"tomorrow\"",
    );
    fails_with(
        &cli.order("unit.test", &["--lifetime", "1.5h", "--until", "1d"]),
        "--lifetime",
    );
    assert!(
        !cli.state.join("certs").exists()
            || std::fs::read_dir(cli.state.join("certs")).unwrap().count() == 0
    );
    assert!(cli.list().is_empty());

    ok(&cli.order(
        "open.test",
        &[
            "--lifetime",
            "10m",
            "--until",
            "1h",
            "--allow-certificate-get",
        ],
    ));
    ok(&cli.order("closed.test", &["--lifetime", "10m", "--until", "1h"]));
    let list = cli.list();
    assert_eq!(list.len(), 2);
    let open = list.iter().find(|r| r["name"] == "open.test").unwrap();
    assert_eq!(open["allow_certificate_get"], true);
    let open_url = open["star_certificate"].as_str().unwrap().to_owned();
    let first = std::fs::read_to_string(cli.certs.join("open.test/cert.pem")).unwrap();

    // Another order under an active series' name is refused.
    fails_with(
        &cli.order("open.test", &["--lifetime", "10m", "--until", "1h"]),
        "is an active STAR series",
    );

    // The account key moved away: the agreed series is fetched by GET, the other is refused.
    let accounts = cli.state.join("accounts");
    let aside = env.path("accounts-aside");
    std::fs::rename(&accounts, &aside).unwrap();
    ok(&cli.run(&["star", "fetch", "--cert-name", "open.test"]));
    assert_eq!(
        std::fs::read_to_string(cli.certs.join("open.test/cert.pem")).unwrap(),
        first,
        "the same certificate: nothing new yet"
    );
    let (status, body) = support::https_get(&open_url, &env.server.ca_bundle());
    assert_eq!(status, 200);
    assert_eq!(
        body.trim_end(),
        std::fs::read_to_string(cli.certs.join("open.test/fullchain.pem"))
            .unwrap()
            .trim_end()
    );
    fails_with(
        &cli.run(&["star", "fetch", "--cert-name", "closed.test"]),
        "not ordered with --allow-certificate-get",
    );
    // Cancellation needs the account key.
    fails_with(
        &cli.run(&["star", "cancel", "--cert-name", "open.test"]),
        "no account",
    );
    std::fs::rename(&aside, &accounts).unwrap();

    // Names that are not series.
    fails_with(
        &cli.run(&["star", "fetch", "--cert-name", "nothing.test"]),
        "not a managed certificate",
    );

    ok(&cli.run(&["star", "cancel", "--cert-name", "open.test"]));
    assert_eq!(cli.events("star_ended")[0]["outcome"], "canceled");
    let list = cli.list();
    let open = list.iter().find(|r| r["name"] == "open.test").unwrap();
    assert_eq!(open["status"], "canceled");
    // The server agrees: the star-certificate URL now answers autoRenewalCanceled.
    let (status, body) = support::https_get(&open_url, &env.server.ca_bundle());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("autoRenewalCanceled"), "{body}");
    // Canceling twice is refused by the client, without a request.
    fails_with(
        &cli.run(&["star", "cancel", "--cert-name", "open.test"]),
        "already ended",
    );
    // The other series goes on.
    ok(&cli.run(&["star", "fetch"]));
    assert_eq!(cli.events("star_ended").len(), 1);
    let list = cli.list();
    let closed = list.iter().find(|r| r["name"] == "closed.test").unwrap();
    assert_eq!(closed["status"], "active");
    let closed_order = closed["order"].as_str().unwrap().to_owned();

    // The operator's view: both series, one canceled, one active with its certificate.
    let data = env.server.data_dir().unwrap();
    let admin = |args: &[&str]| {
        Command::new(support::sceau_server_bin())
            .args(["admin", "--data-dir"])
            .arg(&data)
            .args(["--actor", "star tests"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = admin(&["star", "list", "--json"]);
    ok(&out);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let state_of = |url: &str| {
        rows.iter()
            .find(|r| r["order"] == url.rsplit('/').next().unwrap())
            .map(|r| r["state"].clone())
    };
    assert_eq!(state_of(&closed_order), Some("active".into()));
    let out = admin(&["star", "show", &closed_order, "--json"]);
    ok(&out);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let serial = openssl(
        &["x509", "-noout", "-serial"],
        &cli.certs.join("closed.test/cert.pem"),
    );
    assert_eq!(shown["certificates"].as_array().unwrap().len(), 1);
    assert!(
        serial
            .trim()
            .trim_start_matches("serial=")
            .eq_ignore_ascii_case(shown["certificates"][0]["serial"].as_str().unwrap()),
        "{serial} vs {shown}"
    );
    // An operator cancels it; the holder's next fetch records the end the server reports.
    let out = admin(&["star", "cancel", &closed_order]);
    ok(&out);
    let out = admin(&["star", "cancel", &closed_order]);
    assert!(!out.status.success(), "canceling twice is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not valid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin(&["star", "cancel", "no-such-order"]);
    assert!(!out.status.success());
    ok(&cli.run(&["star", "fetch"]));
    let ended = cli.events("star_ended");
    assert_eq!(ended.len(), 2);
    assert_eq!(ended[1]["name"], "closed.test");
    assert_eq!(ended[1]["outcome"], "canceled");
    let audit = support::SceauServer::sql(
        &data,
        "SELECT count(*) FROM audit WHERE event = 'star.canceled' AND detail LIKE '%operator:star tests%'",
    );
    assert_eq!(audit.trim(), "1");
    // The canceled series' certificate is still installed and still shown.
    assert!(cli.certs.join("open.test/cert.pem").is_file());
    ok(&cli.run(&["status"]));
}

/// A server without STAR (Pebble) is told apart before any order is placed.
#[test]
fn a_server_without_star_is_refused_up_front() {
    let env = Env::start(support::pebble);
    let cli = Cli::new(&env);
    fails_with(
        &cli.order("plain.test", &["--lifetime", "1d", "--until", "7d"]),
        "does not offer STAR",
    );
    assert!(cli.list().is_empty());
}
