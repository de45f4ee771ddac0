//! certbot and lego through Sceau in registration-authority mode (issue 13), against each kind
//! of upstream CA, all real: `openssl ca` behind the command upstream, OpenSSL's CMP server
//! (`openssl cmp -port`), Pebble and a second, dedicated sceau-server as upstream ACME CAs.
//! Every chain a client saves verifies with `openssl verify` against the upstream's root, the
//! only root its users trust, and each revocation is confirmed in the upstream's own records.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

mod ca_flows;

use ca_flows::Trust;
use sceau_interop::process::CLIENT_TIMEOUT;
use sceau_interop::server::{PebbleOptions, SceauOptions, ValidationTargets, sceau_server_binary};
use sceau_interop::{AcmeServer, Interop, run, run_ok};
use sceau_testkit::bc_cmp::BcCmpCa;
use sceau_testkit::cmp_mock::MockCmp;
use sceau_testkit::ra_upstream::{CommandUpstream, UpstreamPki};
use sceau_testkit::{KnotDns, free_port};

/// sceau-server in RA mode with `config`; its HTTPS certificate is the PKI's, its
/// certificates chain to `issuer_root`.
fn ra_server(pki: &UpstreamPki, config: &Path, issuer_root: &Path) -> Interop {
    Interop::start_sceau_with(&SceauOptions {
        args: vec!["--config".into(), config.to_str().unwrap().into()],
        tls_ca: Some(pki.root_pem()),
        issuer_root: Some(issuer_root.to_path_buf()),
        ..SceauOptions::default()
    })
}

fn trust(pki: &UpstreamPki, issuer_root: &Path) -> Trust {
    let scratch = pki.path("checks");
    std::fs::create_dir_all(&scratch).unwrap();
    Trust {
        root: issuer_root.to_path_buf(),
        scratch,
        tls: Some(pki.root_pem()),
    }
}

/// The RA's settings for a CMP CA at `url`, password MAC with the secret in `secret`.
fn cmp_config(pki: &UpstreamPki, url: &str, secret: &Path) -> PathBuf {
    let config = pki.path("sceau.toml");
    std::fs::write(
        &config,
        format!(
            "{}[ra.cmp]\nurl = {url:?}\nmac_reference = \"sceau-ra\"\nmac_secret_file = {secret:?}\n",
            pki.ra_table(30),
        ),
    )
    .unwrap();
    config
}

fn private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn certbot_and_lego_through_ra_in_front_of_openssl_ca() {
    let up = CommandUpstream::new();
    let config = up.config("", 60);
    let env = ra_server(&up.pki, &config, &up.pki.root_pem());
    let t = trust(&up.pki, &up.pki.root_pem());
    // certbot's chain.pem: the upstream's issuing CA.
    let (c1, c2) = ca_flows::certbot_obtains_renews_and_revokes(&env, &t, 1);
    let (l1, l2) = ca_flows::lego_obtains_renews_and_revokes(&env, &t);
    // openssl ca's own database: it signed all four, and revoked the two the clients revoked.
    for s in [&c1, &l1] {
        assert_eq!(up.pki.upstream_status(s), Some('V'), "{s}");
    }
    for s in [&c2, &l2] {
        assert_eq!(up.pki.upstream_status(s), Some('R'), "{s}");
    }
    assert_eq!(
        up.pki.upstream_counts(),
        (4 + 1, 2),
        "the TLS certificate and four leaves"
    );
    assert_eq!(
        up.revoked().len(),
        2,
        "each revocation reached the upstream once"
    );
}

/// certbot and lego obtain, renew (a new key each time) and revoke through the RA in front of
/// a CMP CA that signs every request (Bouncy Castle's CMP implementation, password MAC): the
/// CA's own records show each certificate issued once and each revocation received once.
#[test]
fn certbot_and_lego_through_ra_in_front_of_a_bouncy_castle_cmp_ca() {
    let pki = UpstreamPki::new();
    let issuing = pki.path("issuing.pem");
    std::fs::write(&issuing, pki.issuing.chain_pem()).unwrap();
    let secret = pki.path("cmp-secret");
    private(&secret, "interop bc cmp secret\n");
    let ca = BcCmpCa::start(&issuing, &pki.issuing.dir().join("ca.key"), &secret);
    let config = cmp_config(&pki, &ca.url(), &secret);
    // The operator's PBM iteration count reaches the CA in every request.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("mac_iterations = 2000\n");
    std::fs::write(&config, text).unwrap();
    let env = ra_server(&pki, &config, &pki.root_pem());
    let t = trust(&pki, &pki.root_pem());
    let (c1, c2) = ca_flows::certbot_obtains_renews_and_revokes(&env, &t, 1);
    let (l1, l2) = ca_flows::lego_obtains_renews_and_revokes(&env, &t);
    let norm = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
    let issued: Vec<String> = ca.issued();
    assert_eq!(issued.len(), 4, "{:?}\n{}", ca.records(), ca.log_text());
    for s in [&c1, &c2, &l1, &l2] {
        assert_eq!(
            issued.iter().filter(|i| **i == norm(s)).count(),
            1,
            "{s} issued once by the CA: {issued:?}"
        );
    }
    for s in [&c1, &l1] {
        assert_eq!(ca.revoked(s), None, "{s} kept");
    }
    for s in [&c2, &l2] {
        assert!(
            ca.revoked(s).is_some(),
            "{s} revoked at the CA: {:?}",
            ca.records()
        );
    }
    let rounds: Vec<String> = ca
        .records()
        .into_iter()
        .filter(|l| l.starts_with("pbm "))
        .collect();
    assert!(rounds.len() >= 6, "{rounds:?}");
    assert!(rounds.iter().all(|l| l == "pbm 2000"), "{rounds:?}");
    let revocations = ca
        .records()
        .iter()
        .filter(|l| l.starts_with("revoked "))
        .count();
    assert_eq!(revocations, 2, "each revocation reached the CA once");
}

/// OpenSSL's CMP server (password MAC) handing out one certificate, for `cmp.test`, and the RA
/// in front of it; the key of that certificate is `cmp.key` in the PKI's directory.
struct CmpRa {
    pki: UpstreamPki,
    mock: MockCmp,
    env: Interop,
}

impl CmpRa {
    fn start() -> CmpRa {
        let (pki, mock, config) = cmp_upstream(&[]);
        let env = ra_server(&pki, &config, &pki.root_pem());
        CmpRa { pki, mock, env }
    }

    /// A CSR (PEM) for `cmp.test` with the key in `key`, at `out`.
    fn csr(&self, key: &Path, out: &Path) {
        cmp_csr(key, out);
    }
}

/// OpenSSL's CMP server (password MAC, `extra` switches) handing out one certificate for
/// `cmp.test`, whose key is `cmp.key` in the PKI's directory, and the RA settings for it.
fn cmp_upstream(extra: &[&str]) -> (UpstreamPki, MockCmp, PathBuf) {
    let mut pki = UpstreamPki::new();
    let leaf = pki.leaf("cmp", "cmp.test", "DNS:cmp.test");
    let issuing = pki.path("issuing.pem");
    std::fs::write(&issuing, pki.issuing.chain_pem()).unwrap();
    let mut args = vec![
        "-srv_ref",
        "upstream",
        "-srv_secret",
        "pass:interop cmp secret",
        "-rsp_cert",
        leaf.to_str().unwrap(),
        "-rsp_extracerts",
        issuing.to_str().unwrap(),
    ];
    args.extend(extra);
    let mock = MockCmp::start(&args);
    let secret = pki.path("cmp-secret");
    private(&secret, "interop cmp secret\n");
    let config = cmp_config(&pki, &mock.url(), &secret);
    (pki, mock, config)
}

/// A CSR (PEM) for `cmp.test` with the key in `key`, at `out`.
fn cmp_csr(key: &Path, out: &Path) {
    run_ok(
        "openssl req",
        Command::new("openssl")
            .args(["req", "-new", "-key"])
            .arg(key)
            .args([
                "-subj",
                "/CN=cmp.test",
                "-addext",
                "subjectAltName=DNS:cmp.test",
                "-out",
            ])
            .arg(out),
    );
}

/// lego against `env`, its state in `dir`, trusting the PKI's root: `args` follow.
fn lego(env: &Interop, pki: &UpstreamPki, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(sceau_testkit::require_tool("lego"));
    c.args(["--server", &env.server.directory_url])
        .arg("--path")
        .arg(dir)
        .args(["--email", "pki-team@example.org", "--accept-tos"])
        .args(args)
        .env("LEGO_CA_CERTIFICATES", pki.root_pem());
    c
}

/// A sceau-server (`extra` flags) as the RA's upstream ACME CA: EAB required, validating in
/// its own knot DNS, with an external account for `domains`. Returns the server, its DNS, and
/// the RA's `[ra.acme]` table for dns-01 through that DNS (key id, MAC and TSIG key files
/// written 0600 in the PKI's directory).
fn sceau_upstream(
    pki: &UpstreamPki,
    domains: &[&str],
    ra_config: Option<&Path>,
    extra: &[&str],
) -> (AcmeServer, KnotDns, String) {
    let upstream_dns = KnotDns::start("test.").expect("knot DNS");
    let targets = ValidationTargets {
        dns: upstream_dns.addr,
        http01_port: free_port(),
        tlsalpn01_port: free_port(),
    };
    // The harness turns EAB off; the upstream requires it.
    let mut args = vec!["--eab".to_owned(), "required".to_owned()];
    if let Some(c) = ra_config {
        args.extend(["--config".to_owned(), c.to_str().unwrap().to_owned()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let upstream = AcmeServer::start_sceau_with(
        &pki.path("upstream"),
        targets,
        &SceauOptions {
            args,
            // An upstream in RA mode serves the PKI's certificate and hands out the PKI's.
            tls_ca: ra_config.map(|_| pki.root_pem()),
            issuer_root: ra_config.map(|_| pki.root_pem()),
            ..SceauOptions::default()
        },
    );
    let mut admin = Command::new(sceau_server_binary());
    admin
        .args(["admin", "--data-dir"])
        .arg(upstream.data_dir().unwrap())
        .args(["--actor", "interop", "account", "create"])
        .args(["--owner", "RA <ra@example.org>", "--json"]);
    for d in domains {
        admin.args(["--domain", d]);
    }
    let out = run_ok("admin account create", &mut admin);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let hmac = pki.path("eab-hmac");
    private(&hmac, v["hmac_key"].as_str().unwrap());
    let tsig = pki.path("tsig.key");
    upstream_dns.write_tsig_key_file(&tsig).unwrap();
    let table = format!(
        "[ra.acme]\ndirectory = {:?}\ntls_roots = {:?}\naccount_key_file = {:?}\neab_kid = {:?}\neab_hmac_file = {hmac:?}\nchallenges = \"dns-01\"\ndns_server = \"{}\"\ntsig_key_file = {tsig:?}\n",
        upstream.directory_url,
        upstream.tls_ca,
        pki.path("ra-account.pem"),
        v["kid"].as_str().unwrap(),
        upstream_dns.addr,
    );
    (upstream, upstream_dns, table)
}

/// certbot enrolls the key of the mock's certificate with `--csr`; the same certificate for
/// any other key is refused; revocation goes to the CA with rr.
#[test]
fn certbot_through_ra_in_front_of_a_cmp_ca() {
    let up = CmpRa::start();
    let (pki, mock, env) = (&up.pki, &up.mock, &up.env);
    let host = env.host("cmp");
    let dir = env.path("certbot");
    let certbot = |sub: &str| sceau_interop::certbot(sub, &dir, &pki.root_pem());
    let csr = |key: &Path, out: &Path| up.csr(key, out);
    let obtain = |csr: &Path, n: u32| {
        let mut c = certbot("certonly");
        c.args(["--server", &env.server.directory_url])
            .args(["--agree-tos", "--register-unsafely-without-email"])
            .args([
                "--standalone",
                "--http-01-port",
                &env.http01_port.to_string(),
            ])
            .arg("--csr")
            .arg(csr)
            .arg("--cert-path")
            .arg(dir.join(format!("cert{n}.pem")))
            .arg("--chain-path")
            .arg(dir.join(format!("chain{n}.pem")))
            .arg("--fullchain-path")
            .arg(dir.join(format!("fullchain{n}.pem")));
        c
    };
    let good = pki.path("good.csr");
    csr(&pki.path("cmp.key"), &good);
    run_ok("certbot certonly --csr", &mut obtain(&good, 1));
    let t = trust(pki, &pki.root_pem());
    let serial = t.verify(&dir.join("cert1.pem"), Some(&dir.join("chain1.pem")), &host);
    assert_eq!(pki.upstream_status(&serial), Some('V'));
    // p10cr and certConf (the mock does not grant implicit confirmation).
    assert_eq!(mock.requests(), 2, "{}", mock.log_text());

    // A CSR for another key: the CA's certificate is for the first key, so it is refused.
    let other_key = pki.path("other.key");
    run_ok(
        "openssl genpkey",
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&other_key),
    );
    let bad = pki.path("bad.csr");
    csr(&other_key, &bad);
    let refused = run(
        "certbot certonly --csr (other key)",
        &mut obtain(&bad, 2),
        CLIENT_TIMEOUT,
    )
    .expect_failure();
    let log = std::fs::read_to_string(dir.join("logs/letsencrypt.log")).unwrap();
    assert!(
        log.contains("CMP upstream") && log.contains("key"),
        "the problem names the CMP upstream's fault\n{refused}"
    );
    assert!(!dir.join("cert2.pem").exists());

    // Revocation goes to the CA (rr) before it is recorded.
    let before = mock.requests();
    run_ok(
        "certbot revoke",
        certbot("revoke")
            .args(["--server", &env.server.directory_url])
            .arg("--cert-path")
            .arg(dir.join("cert1.pem"))
            .args(["--reason", "superseded", "--no-delete-after-revoke"]),
    );
    assert_eq!(mock.requests(), before + 1, "one rr");
}

/// lego, with the key of the mock's certificate (`--csr`): obtains it, and revokes it there.
#[test]
fn lego_through_ra_in_front_of_a_cmp_ca() {
    let up = CmpRa::start();
    let host = up.env.host("cmp");
    let dir = up.env.path("lego");
    let csr = up.pki.path("lego.csr");
    up.csr(&up.pki.path("cmp.key"), &csr);
    let lego = |args: &[&str]| lego(&up.env, &up.pki, &dir, args);
    let csr_arg = csr.to_str().unwrap().to_owned();
    let port = format!(":{}", up.env.http01_port);
    run_ok(
        "lego --csr run",
        &mut lego(&["--csr", &csr_arg, "--http", "--http.port", &port, "run"]),
    );
    let crt = dir.join("certificates").join(format!("{host}.crt"));
    let t = trust(&up.pki, &up.pki.root_pem());
    let serial = t.verify(
        &crt,
        Some(&dir.join("certificates").join(format!("{host}.issuer.crt"))),
        &host,
    );
    assert_eq!(up.pki.upstream_status(&serial), Some('V'));
    let before = up.mock.requests();
    run_ok(
        "lego revoke",
        &mut lego(&["--domains", &host, "revoke", "--reason", "4", "--keep"]),
    );
    assert_eq!(up.mock.requests(), before + 1, "one rr");
}

/// Pebble with external account binding required and every challenge accepted unchecked: the
/// upstream trusts the RA's account, the RA validates the names itself.
#[test]
fn certbot_and_lego_through_ra_in_front_of_pebble() {
    let pki = UpstreamPki::new();
    let dns = KnotDns::start("test.").expect("knot DNS");
    let targets = ValidationTargets {
        dns: dns.addr,
        http01_port: free_port(),
        tlsalpn01_port: free_port(),
    };
    let mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = AcmeServer::start_pebble_with(
        &pki.path("pebble"),
        targets,
        &PebbleOptions {
            eab_keys: vec![("sceau-ra".into(), mac.into())],
            always_valid: true,
            validity_secs: Some(30 * 86400),
        },
    );
    let hmac = pki.path("eab-hmac");
    private(&hmac, mac);
    let config = pki.path("sceau.toml");
    std::fs::write(
        &config,
        format!(
            "{}accept_client_auth = true\n[ra.acme]\ndirectory = {:?}\ntls_roots = {:?}\naccount_key_file = {:?}\neab_kid = \"sceau-ra\"\neab_hmac_file = {hmac:?}\nchallenges = \"trusted\"\nconcurrency = 1\n",
            pki.ra_table_for(&pebble.issuer_root, 60),
            pebble.directory_url,
            pebble.tls_ca,
            pki.path("ra-account.pem"),
        ),
    )
    .unwrap();
    let env = ra_server(&pki, &config, &pebble.issuer_root);
    let t = trust(&pki, &pebble.issuer_root);
    let (c1, c2) = ca_flows::certbot_obtains_renews_and_revokes(&env, &t, 1);
    let (l1, l2) = ca_flows::lego_obtains_renews_and_revokes(&env, &t);
    for s in [&c1, &l1] {
        assert_eq!(pebble.revoked_per_server(s), Some(false), "{s}");
    }
    for s in [&c2, &l2] {
        assert_eq!(pebble.revoked_per_server(s), Some(true), "{s}");
    }
    // The RA's account key was created private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pki.path("ra-account.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A dedicated sceau-server as the upstream ACME CA: EAB required, dns-01 validation against
/// its own DNS server, which the RA updates with RFC 2136 (TSIG-signed).
#[test]
fn certbot_and_lego_through_ra_in_front_of_a_dedicated_sceau_with_dns01() {
    let pki = UpstreamPki::new();
    let (upstream, upstream_dns, acme_table) =
        sceau_upstream(&pki, &["web1.test", "web2.test"], None, &[]);
    let config = pki.path("sceau.toml");
    std::fs::write(
        &config,
        format!(
            "{}{acme_table}",
            pki.ra_table_for(&upstream.issuer_root, 60)
        ),
    )
    .unwrap();
    let root: PathBuf = upstream.issuer_root.clone();
    let env = ra_server(&pki, &config, &root);
    // The upstream resolves the names in its own DNS too.
    upstream_dns.set_a("web1", IpAddr::V4(Ipv4Addr::LOCALHOST));
    upstream_dns.set_a("web2", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let t = trust(&pki, &root);
    ca_flows::certbot_obtains_renews_and_revokes(&env, &t, 1);
    let (first, revoked) = ca_flows::lego_obtains_renews_and_revokes(&env, &t);
    assert_ne!(first, revoked);
    // The upstream's own records: its admin CLI lists the revoked certificate as revoked.
    let listed = run_ok(
        "upstream admin cert show",
        Command::new(sceau_server_binary())
            .args(["admin", "--data-dir"])
            .arg(upstream.data_dir().unwrap())
            .args(["cert", "show", &revoked.to_ascii_lowercase()]),
    );
    assert!(listed.stdout.contains("revoked"), "{listed}");
    // The upstream validated the RA with dns-01 (the renewal reused that authorization), and
    // the RA removed its TXT record afterwards (R64).
    let log = upstream.log_text();
    assert!(
        log.contains(r#""type":"dns-01""#),
        "the upstream validated with dns-01\n{log}"
    );
    assert!(upstream_dns.txt("_acme-challenge.web1").is_empty());
    assert!(upstream_dns.txt("_acme-challenge.web2").is_empty());

    // A name the upstream does not allow the RA's external account: the RA validated it, the
    // upstream refuses it, and lego reports the upstream's own words; nothing is issued.
    let other = env.host("web3");
    let dir = env.path("lego-refused");
    let refused = run(
        "lego run (name refused upstream)",
        Command::new(sceau_testkit::require_tool("lego"))
            .args(["--server", &env.server.directory_url])
            .arg("--path")
            .arg(&dir)
            .args(["--email", "pki-team@example.org", "--accept-tos"])
            .args(["--domains", &other])
            .args(["--http", "--http.port", &format!(":{}", env.http01_port)])
            .arg("run")
            .env("LEGO_CA_CERTIFICATES", pki.root_pem()),
        CLIENT_TIMEOUT,
    )
    .expect_failure();
    let said = refused.output();
    assert!(
        said.contains("ACME upstream") && said.contains("rejectedIdentifier"),
        "{refused}"
    );
    assert!(
        !dir.join("certificates")
            .join(format!("{other}.crt"))
            .exists()
    );
}

/// An upstream ACME CA that takes longer than one of the RA's attempts to issue (here a second
/// sceau-server, itself an RA in front of a CMP CA that makes it poll): the RA keeps the
/// upstream order's URL with its job and continues that order, so lego gets its certificate
/// and the upstream issues it once, from one order.
#[test]
fn an_upstream_acme_order_still_processing_is_continued_never_ordered_twice() {
    // Four pollReq, 2 s apart: the upstream's order stays processing for 8 s or more, and
    // the upstream answers finalize with `processing` after 200 ms.
    let (pki, mock, upstream_config) = cmp_upstream(&["-poll_count", "4", "-check_after", "2"]);
    let (upstream, upstream_dns, acme_table) = sceau_upstream(
        &pki,
        &["cmp.test"],
        Some(&upstream_config),
        &["--issuance-wait-ms", "200"],
    );
    upstream_dns.set_a("cmp", IpAddr::V4(Ipv4Addr::LOCALHOST));
    // The RA gives each attempt 2 s: the first ends with the upstream order still processing.
    let config = pki.path("ra.toml");
    std::fs::write(&config, format!("{}{acme_table}", pki.ra_table(2))).unwrap();
    let env = ra_server(&pki, &config, &pki.root_pem());
    let host = env.host("cmp");
    let dir = env.path("lego");
    let csr = pki.path("lego.csr");
    cmp_csr(&pki.path("cmp.key"), &csr);
    let port = format!(":{}", env.http01_port);
    run_ok(
        "lego --csr run",
        &mut lego(
            &env,
            &pki,
            &dir,
            &[
                "--csr",
                csr.to_str().unwrap(),
                "--http",
                "--http.port",
                &port,
                "--cert.timeout",
                "90",
                "run",
            ],
        ),
    );
    let t = trust(&pki, &pki.root_pem());
    t.verify(
        &dir.join("certificates").join(format!("{host}.crt")),
        Some(&dir.join("certificates").join(format!("{host}.issuer.crt"))),
        &host,
    );
    // The RA waited on the upstream order rather than ordering again...
    let log = env.server.log_text();
    assert!(
        log.contains("the upstream CA is still working on the request"),
        "{log}"
    );
    // ...so the CMP CA behind the upstream saw one request: p10cr, four pollReq, certConf.
    assert_eq!(mock.requests(), 6, "{}", mock.log_text());
    let upstream_log = upstream.log_text();
    assert_eq!(
        upstream_log.matches("certificate.issued").count(),
        1,
        "{upstream_log}"
    );
    assert!(
        !upstream_log.contains("certificate.refused"),
        "{upstream_log}"
    );
}
