//! acme4j (shred/acme4j 4.0.0 from Maven Central, a third-party Java ACME client with RFC 8739
//! support) against the server: a STAR series ordered, validated over http-01, finalized,
//! renewed by the server itself and canceled, all through acme4j's own API
//! (`acme4j/src/main/java/StarClient.java`); openssl checks every certificate it downloaded.
//!
//! StarClient is built on first use by `sceau_testkit::java::build`, as the Bouncy Castle CMP
//! CA is: Maven resolves acme4j (the README's test command fetched it beforehand). Pebble has no
//! STAR, so this flow runs against `sceau-server` only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sceau_interop::server::SceauOptions;
use sceau_interop::{Interop, run};
use sceau_testkit::require_tool;

const POM: &str = include_str!("../acme4j/pom.xml");
const SOURCE: &str = include_str!("../acme4j/src/main/java/StarClient.java");

/// The series' terms: the server's min-lifetime, what StarClient asks for, and how long the
/// series runs from its start-date.
const MIN_LIFETIME: i64 = 10;
const LIFETIME: i64 = 12;
const SPAN: i64 = 40;

/// The compiled client: its class directory and its dependencies' classpath.
fn built() -> (PathBuf, String) {
    let b = sceau_testkit::java::build("sceau-interop-acme4j", POM, "StarClient", SOURCE);
    (b.classes, b.classpath)
}

/// A PKCS#12 truststore in `dir` holding only `root` (the server's HTTPS root), for the JVM's
/// `javax.net.ssl.trustStore`; the system's store is never touched.
fn truststore(root: &Path, dir: &Path) -> PathBuf {
    let store = dir.join("truststore.p12");
    run(
        "keytool -importcert",
        Command::new(require_tool("keytool"))
            .args(["-importcert", "-noprompt", "-alias", "sceau-tls-root"])
            .arg("-file")
            .arg(root)
            .arg("-keystore")
            .arg(&store)
            .args(["-storetype", "PKCS12", "-storepass", "changeit"]),
        Duration::from_secs(60),
    )
    .expect_success();
    store
}

/// Unix time of a UTC date and time (days from the civil calendar, Howard Hinnant's method).
fn unix_time(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + h * 3600 + mi * 60 + s
}

/// `YYYY-MM-DD HH:MM:SSZ`, openssl's `-dateopt iso_8601`.
fn parse_iso(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("not an ISO 8601 date from openssl: {s:?}"))
    };
    assert!(s.len() == 20 && s.ends_with('Z'), "{s:?}");
    unix_time(n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19))
}

/// What openssl reads in the first certificate of a PEM file.
#[derive(Debug)]
struct Fields {
    serial: String,
    not_before: i64,
    not_after: i64,
    /// The SubjectPublicKeyInfo PEM, whitespace removed.
    pubkey: String,
}

fn openssl_fields(pem: &Path) -> Fields {
    let r = run(
        "openssl x509",
        Command::new(require_tool("openssl"))
            .args([
                "x509", "-noout", "-serial", "-dates", "-dateopt", "iso_8601", "-pubkey", "-in",
            ])
            .arg(pem),
        Duration::from_secs(30),
    )
    .expect_success();
    let field = |name: &str| {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in\n{r}"))
            .trim()
            .to_owned()
    };
    let pubkey = r
        .stdout
        .split_once("-----BEGIN PUBLIC KEY-----")
        .map(|(_, k)| format!("-----BEGIN PUBLIC KEY-----{k}"))
        .unwrap_or_else(|| panic!("no public key in\n{r}"));
    Fields {
        serial: field("serial="),
        not_before: parse_iso(&field("notBefore=")),
        not_after: parse_iso(&field("notAfter=")),
        pubkey: squash(&pubkey),
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

/// StarClient's `key=value` records.
fn records(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// RFC 8739 §3.5 with this server's padding: which certificate of the series (0, 1, …) has
/// these dates, given the series' `start`, `end` and `adjust`; panics if none.
fn position_in_series(f: &Fields, start: i64, end: i64, adjust: i64) -> i64 {
    (0..=(end - start) / LIFETIME)
        .find(|k| {
            let nrd = start + k * LIFETIME;
            let nb = if *k == 0 { nrd } else { nrd - adjust };
            f.not_before == nb && f.not_after == (nrd + LIFETIME).min(end)
        })
        .unwrap_or_else(|| {
            panic!(
                "{f:?} is no certificate of the series start={start} end={end} lifetime={LIFETIME} adjust={adjust}"
            )
        })
}

mod sceau {
    use super::*;

    /// Register, order a STAR series (start-date now, lifetime 12 s, end-date 40 s later,
    /// unauthenticated GET asked for), answer http-01 through the webroot, finalize with
    /// acme4j's CSRBuilder, download the rolling certificate until the server renewed it,
    /// cancel.
    #[test]
    fn star_series_renewed_by_the_server_then_canceled() {
        let java = require_tool("java");
        for tool in ["javac", "mvn", "keytool", "openssl"] {
            require_tool(tool);
        }
        let (classes, cp) = built();
        let env = Interop::start_sceau_with_webroot(&SceauOptions {
            args: [
                "--star-min-lifetime",
                "10s",
                "--star-max-duration",
                "1h",
                "--star-allow-certificate-get",
                "true",
            ]
            .map(String::from)
            .to_vec(),
            ..SceauOptions::default()
        });
        let host = env.host("star");
        let out = env.path("acme4j");
        let store = truststore(&env.server.tls_ca, &out);
        let webroot = env.webroot.as_ref().expect("started with a webroot");

        let client = run(
            "acme4j StarClient",
            Command::new(java)
                .arg(format!("-Djavax.net.ssl.trustStore={}", store.display()))
                .args([
                    "-Djavax.net.ssl.trustStorePassword=changeit",
                    "-Djavax.net.ssl.trustStoreType=PKCS12",
                    // acme4j's requests and responses on stderr, shown if the test fails.
                    "-Dorg.slf4j.simpleLogger.log.org.shredzone.acme4j=debug",
                    "-cp",
                ])
                .arg(format!("{}:{cp}", classes.display()))
                .arg("StarClient")
                .arg(&env.server.directory_url)
                .arg(webroot.dir())
                .arg(&host)
                .args([LIFETIME.to_string(), SPAN.to_string()])
                .arg(&out),
            Duration::from_secs(180),
        );
        eprintln!("StarClient's records:\n{}", client.stdout);
        let rec = records(&client.stdout);
        assert!(
            client.success() && rec.get("done").is_some_and(|v| v == "true"),
            "StarClient failed\n{client}"
        );
        let get = |k: &str| -> &str {
            rec.get(k)
                .unwrap_or_else(|| panic!("StarClient printed no {k}\n{client}"))
        };
        let int = |k: &str| -> i64 {
            get(k)
                .parse()
                .unwrap_or_else(|_| panic!("{k}={} is not a number", get(k)))
        };
        let expect = |k: &str, v: &str| assert_eq!(get(k), v, "{k}\n{client}");

        // §3.2: the directory's meta.auto-renewal as acme4j's Metadata reads it; no EAB here.
        expect("meta.auto-renewal", "true");
        assert_eq!(int("meta.min-lifetime"), MIN_LIFETIME);
        assert_eq!(int("meta.max-duration"), 3600);
        expect("meta.allow-certificate-get", "true");
        expect("meta.external-account-required", "false");

        // §3.1.1: the order through its states, and the agreed terms reflected; the server
        // raises lifetime-adjust to its padding ⌈2T/3⌉.
        let (start, end) = (int("order.start"), int("order.end"));
        assert_eq!(end - start, SPAN);
        let adjust = (2 * LIFETIME + 2) / 3;
        expect("order.created-status", "PENDING");
        expect("order.ready-status", "READY");
        expect("order.status", "VALID");
        expect("order.auto-renewing", "true");
        expect("order.auto-renewal-certificate", "true");
        assert_eq!(int("order.lifetime"), LIFETIME);
        assert_eq!(int("order.lifetime-adjust"), adjust);
        assert_eq!(int("order.start-date"), start);
        assert_eq!(int("order.end-date"), end);
        expect("order.allow-certificate-get", "true");
        let order_id = get("order.url").rsplit('/').next().unwrap();
        assert!(
            get("star-certificate").ends_with(&format!("/acme/star/{order_id}")),
            "star-certificate {} is not the order's",
            get("star-certificate")
        );

        // http-01 was really fetched from the webroot, and StarClient cleaned up after itself.
        assert!(
            webroot
                .requests()
                .iter()
                .any(|p| p.starts_with("/.well-known/acme-challenge/")),
            "the server never fetched the challenge: {:?}",
            webroot.requests()
        );
        assert!(webroot.files().is_empty(), "{:?}", webroot.files());

        // Each certificate acme4j downloaded chains to the server's CA and names the host.
        let (c1, c2, g) = (
            out.join("cert1.pem"),
            out.join("cert2.pem"),
            out.join("get.pem"),
        );
        let serial1 = env.verify(&c1, None, &host).serial;
        let serial2 = env.verify(&c2, None, &host).serial;
        let serial_get = env.verify(&g, None, &host).serial;
        let (f1, f2, fg) = (openssl_fields(&c1), openssl_fields(&c2), openssl_fields(&g));
        assert_eq!(f1.serial, serial1);
        assert_eq!(f2.serial, serial2);
        assert_eq!(fg.serial, serial_get);
        assert_ne!(
            f1.serial, f2.serial,
            "the renewal has the first one's serial"
        );
        assert!(
            fg.serial == f1.serial || fg.serial == f2.serial,
            "the unauthenticated GET returned {}, neither {} nor {}",
            fg.serial,
            f1.serial,
            f2.serial
        );
        // acme4j prints serials in lowercase hex without leading zeros.
        for (k, f) in [
            ("cert1.serial", &f1),
            ("cert2.serial", &f2),
            ("get.serial", &fg),
        ] {
            assert_eq!(
                get(k),
                f.serial.trim_start_matches('0').to_ascii_lowercase(),
                "{k}"
            );
        }

        // §2.2: every certificate of the series is for the CSR's key.
        let key = squash(&std::fs::read_to_string(out.join("key.pem")).unwrap());
        for (name, f) in [("cert1", &f1), ("cert2", &f2), ("get", &fg)] {
            assert_eq!(f.pubkey, key, "{name} is not for the CSR's key");
        }

        // §3.5: two consecutive certificates of the series, each with the dates it must have
        // (the first from start-date for 12 s, every later one pre-dated by lifetime-adjust).
        let k1 = position_in_series(&f1, start, end, adjust);
        let k2 = position_in_series(&f2, start, end, adjust);
        assert_eq!(k2, k1 + 1, "not consecutive: {f1:?} then {f2:?}");
        if k1 == 0 {
            assert_eq!(f1.not_after - f1.not_before, LIFETIME);
        }
        assert!(f2.not_after - f2.not_before <= LIFETIME + adjust);
        assert!(f2.not_before >= f1.not_before);
        assert!(f2.not_after > f1.not_after);
        assert_eq!(f2.not_before, f1.not_after - adjust);
        // Published while valid, and before the one it follows expired (§3.3).
        let fetched2 = int("cert2.fetched");
        assert!(
            fetched2 >= f2.not_before,
            "cert2 was fetched at {fetched2}, before its notBefore {}",
            f2.not_before
        );
        assert!(
            fetched2 < f1.not_after,
            "cert2 only appeared at {fetched2}, when cert1 had expired ({})",
            f1.not_after
        );
        // The order stays valid while the server renews.
        expect("order.status-renewed", "VALID");

        // §3.1.2: canceled, and the rolling certificate answers autoRenewalCanceled to both
        // POST-as-GET and GET; a second cancellation is refused.
        expect("cancel.status", "CANCELED");
        expect(
            "after-cancel.post-as-get",
            "urn:ietf:params:acme:error:autoRenewalCanceled",
        );
        expect(
            "after-cancel.get",
            "urn:ietf:params:acme:error:autoRenewalCanceled",
        );
        expect(
            "after-cancel.cancel-again",
            "urn:ietf:params:acme:error:autoRenewalCancellationInvalid",
        );
        expect("after-cancel.order-status", "CANCELED");
    }
}
