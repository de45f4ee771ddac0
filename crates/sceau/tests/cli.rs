//! The `sceau` command against a real ACME server and DNS: files, modes, exit codes, errors.

#[path = "../../sceau-client/tests/support/mod.rs"]
#[macro_use]
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Env, ServerFactory};

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
        c.env_remove("SCEAU_EAB_KID")
            .env_remove("SCEAU_EAB_HMAC_KEY");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn server_args(&self) -> Vec<String> {
        vec![
            "--server".into(),
            self.env.server.directory_url(),
            "--ca-bundle".into(),
            self.env.server.ca_bundle().display().to_string(),
        ]
    }

    fn issue(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec!["issue".into(), "--agree-tos".into()];
        args.extend(self.server_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&refs)
    }

    fn http(&self) -> Vec<String> {
        vec![
            "--http-port".into(),
            self.env.params.http_port.to_string(),
            "--listen-address".into(),
            "127.0.0.1".into(),
        ]
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Whether the server's directory offers renewalInfo (RFC 9773 §3).
fn has_ari(env: &Env) -> bool {
    let (status, body) = support::https_get(&env.server.directory_url(), &env.server.ca_bundle());
    assert_eq!(status, 200);
    let dir: serde_json::Value = serde_json::from_str(&body).unwrap();
    dir["renewalInfo"].is_string()
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

fn last_err_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o777
}

fn spki(pem_path: &Path) -> Vec<u8> {
    let info = sceau_client::CertInfo::from_pem_chain(&std::fs::read_to_string(pem_path).unwrap())
        .unwrap();
    info.public_key_der
}

fn args<'x>(v: &'x [String], more: &[&'x str]) -> Vec<&'x str> {
    v.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

fn issue_installs_files_with_documented_modes_and_logs_events(server: ServerFactory) {
    let env = Env::start(server);
    let cli = Cli::new(&env);
    let http = cli.http();
    let out = cli.issue(&args(
        &http,
        &[
            "-d",
            "www.test",
            "-d",
            "api.test",
            "--deploy-hook",
            &format!("touch {}", env.path("deployed").display()),
        ],
    ));
    ok(&out);
    let dir = cli.certs.join("www.test");
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    for f in ["cert.pem", "chain.pem", "fullchain.pem"] {
        assert_eq!(mode(&dir.join(f)), 0o644, "{f}");
    }
    assert_eq!(mode(&cli.state), 0o700);
    let acct_dir = std::fs::read_dir(cli.state.join("accounts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&acct_dir.join("key.pem")), 0o600);
    assert_eq!(mode(&acct_dir.join("account.json")), 0o600);
    assert!(env.path("deployed").exists(), "deploy hook ran");
    // The key in privkey.pem is the certificate's key.
    let key = sceau_wire::AccountKey::from_pem(
        &std::fs::read_to_string(dir.join("privkey.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        sceau_client::issue::key_spki(&key).unwrap(),
        spki(&dir.join("cert.pem"))
    );
    let full = std::fs::read_to_string(dir.join("fullchain.pem")).unwrap();
    let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    let chain = std::fs::read_to_string(dir.join("chain.pem")).unwrap();
    assert_eq!(full, format!("{cert}{chain}"));
    env.openssl_verify(&cert, &chain);
    // Temp files never left behind.
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.'))
    );

    let kinds: Vec<String> = cli
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    for k in [
        "account_created",
        "order_created",
        "challenge_answered",
        "challenge_valid",
        "issued",
        "deploy_hook",
    ] {
        assert!(kinds.contains(&k.to_owned()), "{k} in {kinds:?}");
    }
    assert!(cli.events().iter().all(|e| e["time"].is_string()));

    // status: fine with the default threshold, failing with a huge one; JSON lists the names.
    ok(&cli.run(&["status"]));
    let s = cli.run(&["status", "--json"]);
    ok(&s);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(
        v[0]["identifiers"],
        serde_json::json!(["www.test", "api.test"])
    );
    assert!(v[0]["days_left"].as_i64().unwrap() > 0);
    let s = cli.run(&["status", "--warn-days", "100000"]);
    assert_eq!(s.status.code(), Some(1));
}

fn renewal_by_lifetime_uses_a_fresh_key_archives_and_prunes(server: ServerFactory) {
    let env = Env::start(server);
    let cli = Cli::new(&env);
    let http = cli.http();
    ok(&cli.issue(&args(&http, &["-d", "r.test", "--archive-keep", "2"])));
    let dir = cli.certs.join("r.test");
    let first = std::fs::read(dir.join("fullchain.pem")).unwrap();

    // Not due (a fresh certificate, 2/3 rule): nothing changes.
    ok(&cli.run(&["renew"]));
    assert_eq!(std::fs::read(dir.join("fullchain.pem")).unwrap(), first);
    assert!(cli.events().iter().any(|e| e["event"] == "renewal_skipped"));

    // Due when 0% of the lifetime is the threshold: three renewals, three new keys. A server
    // with ARI decides by its window instead (tests/ari.rs), so there renewal is forced.
    let trigger: &[&str] = if has_ari(&env) {
        &["renew", "--force"]
    } else {
        &["renew", "--renew-fraction", "0"]
    };
    let mut keys = vec![spki(&dir.join("cert.pem"))];
    for _ in 0..3 {
        ok(&cli.run(trigger));
        let k = spki(&dir.join("cert.pem"));
        assert!(!keys.contains(&k), "every renewal has a fresh key (R66)");
        keys.push(k);
        assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    }
    assert!(
        cli.events()
            .iter()
            .filter(|e| e["event"] == "renewed")
            .count()
            == 3
    );
    // The archive keeps the 2 previous versions, with their key still 0600.
    let archived: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("archive"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(archived.len(), 2);
    assert_eq!(spki(&archived[1].join("cert.pem")), keys[2]);
    assert_eq!(mode(&archived[1].join("privkey.pem")), 0o600);
}

fn failed_renewal_leaves_old_files_intact_and_exits_nonzero(server: ServerFactory) {
    let mut env = Env::start(server);
    let cli_dirs = (env.path("state"), env.path("live"));
    {
        let cli = Cli::new(&env);
        let http = cli.http();
        ok(&cli.issue(&args(&http, &["-d", "keep.test"])));
    }
    let dir = cli_dirs.1.join("keep.test");
    let snapshot: Vec<(String, Vec<u8>)> =
        ["privkey.pem", "cert.pem", "chain.pem", "fullchain.pem"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
            .collect();
    // The CA goes away (its CA bundle stays where the settings point).
    let bundle = env.server.ca_bundle();
    let pem = std::fs::read(&bundle).unwrap();
    env.server = Box::new(Gone);
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    std::fs::write(&bundle, pem).unwrap();
    let cli = Cli::new(&env);
    let out = cli.run(&["renew", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    let line = last_err_line(&out);
    assert!(line.contains("failed to renew"), "{line}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("keep.test") && stderr.contains("cannot reach the ACME server"),
        "{stderr}"
    );
    for (f, bytes) in snapshot {
        assert_eq!(std::fs::read(dir.join(&f)).unwrap(), bytes, "{f} untouched");
    }
    assert!(
        !dir.join("archive").exists(),
        "nothing archived by a failed renewal"
    );
    assert!(cli.events().iter().any(|e| e["event"] == "failure"));
    let _ = std::fs::remove_dir_all(bundle.parent().unwrap());
}

/// A server that has stopped.
struct Gone;
impl support::AcmeServerUnderTest for Gone {
    fn directory_url(&self) -> String {
        "https://127.0.0.1:1/dir".into()
    }
    fn ca_bundle(&self) -> PathBuf {
        PathBuf::new()
    }
    fn issuing_root_pem(&self) -> String {
        String::new()
    }
    fn revocation_status(&self, _: &str) -> Option<(String, Option<u8>)> {
        None
    }
}

fn dns01_and_tls_alpn_through_the_cli(server: ServerFactory) {
    let env = Env::start(server);
    let cli = Cli::new(&env);
    let key = env.path("tsig.key");
    env.dns.write_tsig_key_file(&key).unwrap();
    let dns = env.dns.addr.to_string();
    ok(&cli.issue(&[
        "-d",
        "dnscli.test",
        "--dns-update",
        &dns,
        "--tsig-key",
        key.to_str().unwrap(),
        "--dns-timeout",
        "10",
    ]));
    assert!(env.dns.txt("_acme-challenge.dnscli").is_empty());
    let port = env.params.tls_port.to_string();
    ok(&cli.issue(&[
        "-d",
        "alpncli.test",
        "--tls-alpn-port",
        &port,
        "--listen-address",
        "127.0.0.1",
    ]));
    // The stored method is reused by renew.
    ok(&cli.run(&["renew", "--force", "--jobs", "2"]));
    assert_eq!(
        cli.events()
            .iter()
            .filter(|e| e["event"] == "renewed")
            .count(),
        2
    );
}

fn revoke_with_reason(server: ServerFactory) {
    let env = Env::start(server);
    let cli = Cli::new(&env);
    let http = cli.http();
    ok(&cli.issue(&args(&http, &["-d", "rv.test"])));
    let serial = sceau_client::CertInfo::from_pem_chain(
        &std::fs::read_to_string(cli.certs.join("rv.test/cert.pem")).unwrap(),
    )
    .unwrap()
    .serial_hex;
    let out = cli.run(&["revoke", "--cert-name", "rv.test", "--reason", "bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(last_err_line(&out).contains("unknown revocation reason"));
    ok(&cli.run(&[
        "revoke",
        "--cert-name",
        "rv.test",
        "--reason",
        "keyCompromise",
    ]));
    assert_eq!(
        env.server.revocation_status(&serial),
        Some(("Revoked".into(), Some(1)))
    );
    let s = cli.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v[0]["status"], "revoked");
    assert!(
        cli.events()
            .iter()
            .any(|e| e["event"] == "revoked" && e["reason"] == 1)
    );
}

fn eab_from_file_or_environment_and_never_stored(server: ServerFactory) {
    let env = Env::start_with(server, |p| p.eab_required = true);
    let (kid, hmac) = env.server.eab_credentials().expect("an EAB key");
    let hmac = hmac.as_str();
    let cli = Cli::new(&env);
    let sa = cli.server_args();
    // Without EAB: one line saying what to give.
    let mut a: Vec<&str> = vec!["account", "register", "--agree-tos"];
    a.extend(sa.iter().map(String::as_str));
    let out = cli.run(&a);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        last_err_line(&out).contains("external account binding"),
        "{}",
        last_err_line(&out)
    );
    // From the environment.
    let out = cli
        .cmd(&a)
        .env("SCEAU_EAB_KID", &kid)
        .env("SCEAU_EAB_HMAC_KEY", hmac)
        .output()
        .unwrap();
    ok(&out);
    let all: String = walk(&cli.state)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(!all.contains(hmac), "the MAC key is not stored (R92)");
    assert!(all.contains(&kid));

    // From a file, in a second state dir.
    let cli2 = Cli {
        env: &env,
        state: env.path("state2"),
        certs: env.path("live2"),
    };
    let eab = env.path("eab");
    std::fs::write(&eab, format!("kid={kid}\nhmac_key={hmac}\n")).unwrap();
    let mut a2 = a.clone();
    a2.extend(["--eab-file", eab.to_str().unwrap()]);
    ok(&cli2.run(&a2));
    let http = cli2.http();
    let mut issue: Vec<&str> = vec!["issue"];
    issue.extend(sa.iter().map(String::as_str));
    issue.extend(http.iter().map(String::as_str));
    issue.extend(["-d", "eabcli.test"]);
    ok(&cli2.run(&issue));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

fn account_rollover_and_deactivate(server: ServerFactory) {
    let env = Env::start(server);
    let cli = Cli::new(&env);
    let sa = cli.server_args();
    let with = |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .map(|s| s.to_string())
            .chain(sa.iter().cloned())
            .collect()
    };
    let run = |v: Vec<String>| cli.run(&v.iter().map(String::as_str).collect::<Vec<_>>());
    ok(&run(with(&[
        "account",
        "register",
        "--agree-tos",
        "--contact",
        "mailto:pki@example.org",
    ])));
    let before = run(with(&["account", "show"]));
    ok(&before);
    let out = run(with(&["account", "rollover", "--account-key-type", "p384"]));
    ok(&out);
    let after: serde_json::Value =
        serde_json::from_slice(&run(with(&["account", "show"])).stdout).unwrap();
    assert_eq!(after["key_type"], "p384");
    let b: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();
    assert_eq!(b["url"], after["url"]);
    assert_ne!(b["thumbprint"], after["thumbprint"]);
    let out = run(with(&["account", "deactivate"]));
    assert_eq!(out.status.code(), Some(1), "needs --yes");
    ok(&run(with(&["account", "deactivate", "--yes"])));
    let out = run(with(&["account", "show"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        last_err_line(&out).contains("account register"),
        "{}",
        last_err_line(&out)
    );
}

fn errors_are_one_line_with_what_to_do(server: ServerFactory) {
    let env = Env::start(server);
    let cli = Cli::new(&env);
    // A challenge that fails: the name, the method and the server's detail on the last line.
    let wrong = sceau_testkit::free_port().to_string();
    let out = cli.issue(&[
        "-d",
        "bad.test",
        "--http-port",
        &wrong,
        "--listen-address",
        "127.0.0.1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = last_err_line(&out);
    assert!(
        line.starts_with("sceau: error: challenge http-01 (listener) for bad.test failed:"),
        "{line}"
    );
    assert!(
        line.contains("connection") || line.contains("Connection") || line.contains("refused"),
        "{line}"
    );
    assert!(!std::path::Path::new(&cli.certs.join("bad.test")).exists());
    assert!(
        cli.events()
            .iter()
            .any(|e| e["event"] == "failure" && e["problem"]["type"].is_string())
    );
    // Wrong option combinations.
    let out = cli.issue(&["-d", "x.test", "--method", "dns"]);
    assert!(
        last_err_line(&out).contains("--dns-update"),
        "{}",
        last_err_line(&out)
    );
    let out = cli.issue(&["-d", "*.test"]);
    assert!(last_err_line(&out).contains("wildcard"));
    let out = cli.issue(&["-d", "x.test", "--cert-name", "../evil"]);
    assert!(last_err_line(&out).contains("not a valid certificate name"));
    let out = cli.run(&["renew", "--cert-name", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}

fn external_csr_is_signed_and_no_key_is_written(server: ServerFactory) {
    let env = Env::start(server);
    let cli = Cli::new(&env);
    let key = sceau_client::csr::generate_key(sceau_wire::KeyKind::P384).unwrap();
    let csr =
        sceau_client::csr::build_csr(&key, &[sceau_wire::Identifier::dns("csr.test")]).unwrap();
    let csr_path = env.path("req.pem");
    std::fs::write(
        &csr_path,
        sceau_wire::key::pem_encode("CERTIFICATE REQUEST", &csr),
    )
    .unwrap();
    let http = cli.http();
    ok(&cli.issue(&args(&http, &["--csr", csr_path.to_str().unwrap()])));
    let dir = cli.certs.join("csr.test");
    assert!(
        !dir.join("privkey.pem").exists(),
        "the key stays where the CSR was made"
    );
    assert_eq!(
        spki(&dir.join("cert.pem")),
        sceau_client::issue::key_spki(&key).unwrap()
    );
}

both_servers!(sync:
    issue_installs_files_with_documented_modes_and_logs_events,
    renewal_by_lifetime_uses_a_fresh_key_archives_and_prunes,
    failed_renewal_leaves_old_files_intact_and_exits_nonzero,
    dns01_and_tls_alpn_through_the_cli,
    revoke_with_reason,
    eab_from_file_or_environment_and_never_stored,
    account_rollover_and_deactivate,
    errors_are_one_line_with_what_to_do,
    external_csr_is_signed_and_no_key_is_written,
);

// ---- sceau-server only: ARI (RFC 9773) and account key types Pebble lacks --------------------

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A library client on the same server, and the account the CLI registered there.
async fn cli_account(cli: &Cli<'_>) -> (sceau_client::AcmeClient, sceau_client::account::Account) {
    let http = sceau_client::http::build_client(&sceau_client::http::HttpOptions {
        ca_bundle_pem: Some(std::fs::read_to_string(cli.env.server.ca_bundle()).unwrap()),
        timeout: None,
    })
    .unwrap();
    let c = sceau_client::AcmeClient::connect(&cli.env.server.directory_url(), http)
        .await
        .unwrap();
    let acct_dir = std::fs::read_dir(cli.state.join("accounts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let key = sceau_wire::AccountKey::from_pem(
        &std::fs::read_to_string(acct_dir.join("key.pem")).unwrap(),
    )
    .unwrap();
    let account = c.find_account(key).await.unwrap();
    (c, account)
}

fn cert_info(path: &Path) -> sceau_client::CertInfo {
    sceau_client::CertInfo::from_pem_chain(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn count(cli: &Cli, event: &str) -> usize {
    cli.events().iter().filter(|e| e["event"] == event).count()
}

/// The renewal decision follows the server's window, not the lifetime threshold: a fresh
/// certificate is left alone even at `--renew-fraction 0` (window not open), and renewed at the
/// default 2/3 threshold once the CA moves its window into the past (here: by revoking it). Had
/// the client ignored ARI, both halves would go the other way.
#[test]
fn ari_window_decides_renewal_and_the_new_order_replaces_the_old_one() {
    let env = Env::start(support::sceau_server);
    assert!(has_ari(&env), "sceau-server announces renewalInfo");
    let cli = Cli::new(&env);
    let http = cli.http();
    ok(&cli.issue(&args(&http, &["-d", "ari.test"])));
    let dir = cli.certs.join("ari.test");
    let first = std::fs::read(dir.join("fullchain.pem")).unwrap();
    let old = cert_info(&dir.join("cert.pem"));
    let old_ari = old
        .ari_id
        .clone()
        .expect("an ARI identifier (AKI + serial)");

    // Window from day 60 of 90: not due, although 0% of the lifetime would make it due.
    ok(&cli.run(&["renew", "--renew-fraction", "0"]));
    assert_eq!(std::fs::read(dir.join("fullchain.pem")).unwrap(), first);
    let skipped = cli
        .events()
        .into_iter()
        .rfind(|e| e["event"] == "renewal_skipped")
        .expect("a renewal_skipped event");
    assert!(
        skipped["reason"].as_str().unwrap().contains("ARI"),
        "{skipped}"
    );

    // Revoked behind the client's back (with the certificate key, as a key-compromise report
    // would be): the server's window is now in the past (RFC 9773 §4.2).
    let cert_key = sceau_wire::AccountKey::from_pem(
        &std::fs::read_to_string(dir.join("privkey.pem")).unwrap(),
    )
    .unwrap();
    let (c, account) = block_on(cli_account(&cli));
    block_on(c.revoke(
        sceau_client::order::RevokeWith::CertificateKey(&cert_key),
        &old.der,
        Some(sceau_wire::reason::KEY_COMPROMISE),
    ))
    .unwrap();

    // Default threshold (2/3, far from reached): renewed, only because of the window.
    ok(&cli.run(&["renew"]));
    assert_ne!(std::fs::read(dir.join("fullchain.pem")).unwrap(), first);
    assert_eq!(count(&cli, "renewed"), 1);
    let new = cert_info(&dir.join("cert.pem"));
    assert_ne!(new.serial_hex, old.serial_hex);

    // The renewal order said which certificate it replaces, and the server recorded it.
    let order_url = cli
        .events()
        .into_iter()
        .rfind(|e| e["event"] == "order_created")
        .unwrap()["order"]
        .as_str()
        .unwrap()
        .to_owned();
    let (order, _) = block_on(c.get_order(&account, &order_url)).unwrap();
    assert_eq!(order.replaces.as_deref(), Some(old_ari.as_str()));
    let data = env.server.data_dir().unwrap();
    let order_id = order_url.rsplit('/').next().unwrap();
    assert_eq!(
        support::SceauServer::sql(
            &data,
            &format!("SELECT replaced_by FROM certificates WHERE ari_id = '{old_ari}'")
        ),
        order_id
    );

    // Replacing it a second time is refused (RFC 9773 §5: 409 alreadyReplaced).
    let err = block_on(c.new_order(
        &account,
        &sceau_wire::NewOrder {
            identifiers: vec![sceau_wire::Identifier::dns("ari.test")],
            replaces: Some(old_ari.clone()),
            ..Default::default()
        },
    ))
    .unwrap_err();
    let problem = err.problem().expect("a problem document");
    assert!(
        problem.is(sceau_wire::ProblemType::AlreadyReplaced),
        "{err}"
    );
    assert_eq!(problem.status, Some(409));

    // The new certificate's window is ahead again: left alone whatever the threshold.
    let second = std::fs::read(dir.join("fullchain.pem")).unwrap();
    ok(&cli.run(&["renew", "--renew-fraction", "0"]));
    assert_eq!(std::fs::read(dir.join("fullchain.pem")).unwrap(), second);
    assert_eq!(count(&cli, "renewed"), 1);
}

/// A certificate replaced elsewhere (another copy of the state, a restored backup) still renews:
/// the client drops `replaces` after `alreadyReplaced` instead of failing every renewal.
#[test]
fn renewal_of_a_certificate_replaced_elsewhere_still_succeeds() {
    let env = Env::start(support::sceau_server);
    let cli = Cli::new(&env);
    let http = cli.http();
    ok(&cli.issue(&args(&http, &["-d", "twice.test"])));
    let dir = cli.certs.join("twice.test");
    let old = cert_info(&dir.join("cert.pem"));
    let old_ari = old.ari_id.clone().unwrap();
    // Someone else, with the same account, replaces it first.
    let (c, account) = block_on(cli_account(&cli));
    let elsewhere = block_on(sceau_client::issue(
        &c,
        &account,
        sceau_client::IssueRequest {
            identifiers: vec![sceau_wire::Identifier::dns("twice.test")],
            key: sceau_client::KeySource::Generate(sceau_wire::KeyKind::P256),
            plan: sceau_client::Plan::single(sceau_client::Method::Http01 {
                port: env.params.http_port,
                address: Some("127.0.0.1".parse().unwrap()),
            }),
            replaces: Some(old_ari.clone()),
            profile: None,
            auto_renewal: None,
            timeout: std::time::Duration::from_secs(60),
        },
        &sceau_client::events::discard(),
    ))
    .unwrap();
    let (order, _) = block_on(c.get_order(&account, &elsewhere.order_url)).unwrap();
    assert_eq!(order.replaces.as_deref(), Some(old_ari.as_str()));

    let out = cli.run(&["renew", "--force"]);
    ok(&out);
    let new = cert_info(&dir.join("cert.pem"));
    assert_ne!(new.serial_hex, old.serial_hex);
    assert_ne!(new.serial_hex, elsewhere.info.serial_hex);
    let order_url = cli
        .events()
        .into_iter()
        .rfind(|e| e["event"] == "order_created")
        .unwrap()["order"]
        .as_str()
        .unwrap()
        .to_owned();
    let (order, _) = block_on(c.get_order(&account, &order_url)).unwrap();
    assert_eq!(order.replaces, None, "ordered as a new certificate");
}

/// Ed25519 (which Pebble lacks) and P-384 account keys through the whole CLI life cycle:
/// register, issue, renew, roll over to the other type, issue again, revoke.
fn account_key_type_end_to_end(first: &str, second: &str) {
    let env = Env::start(support::sceau_server);
    let cli = Cli::new(&env);
    let sa = cli.server_args();
    let run = |cmd: &[&str]| -> Output {
        let v: Vec<&str> = cmd
            .iter()
            .copied()
            .chain(sa.iter().map(String::as_str))
            .collect();
        cli.run(&v)
    };
    ok(&run(&[
        "account",
        "register",
        "--agree-tos",
        "--account-key-type",
        first,
    ]));
    let shown: serde_json::Value =
        serde_json::from_slice(&run(&["account", "show"]).stdout).unwrap();
    assert_eq!(shown["key_type"], first);
    assert_eq!(shown["account"]["status"], "valid", "{shown}");
    let http = cli.http();
    let name = format!("{first}.test");
    ok(&cli.issue(&args(&http, &["-d", &name])));
    ok(&cli.run(&["renew", "--force"]));
    assert_eq!(count(&cli, "renewed"), 1);
    ok(&run(&["account", "rollover", "--account-key-type", second]));
    let after: serde_json::Value =
        serde_json::from_slice(&run(&["account", "show"]).stdout).unwrap();
    assert_eq!(after["key_type"], second);
    assert_eq!(after["url"], shown["url"]);
    let name2 = format!("{second}.test");
    ok(&cli.issue(&args(&http, &["-d", &name2])));
    ok(&cli.run(&["revoke", "--cert-name", &name, "--reason", "superseded"]));
    let serial = cert_info(&cli.certs.join(&name).join("cert.pem")).serial_hex;
    assert_eq!(
        env.server.revocation_status(&serial),
        Some(("Revoked".into(), Some(4)))
    );
}

#[test]
fn ed25519_account_then_p384_end_to_end_sceau_server() {
    account_key_type_end_to_end("ed25519", "p384");
}

#[test]
fn p384_account_then_ed25519_end_to_end_sceau_server() {
    account_key_type_end_to_end("p384", "ed25519");
}
