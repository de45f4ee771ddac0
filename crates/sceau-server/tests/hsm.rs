//! The CA's keys on a real SoftHSM2 token, through the real binary (issue 11): `ca init` makes
//! the root and the issuing key on the token (no key file in the data directory), `serve`
//! issues with them, a wrong PIN or a missing token, module or key makes `serve` refuse in one
//! line naming the URI (never the PIN), and a token that goes away while the server runs holds
//! orders `processing` until it is back, then they complete.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use sceau_testkit::SoftHsm;
use support::*;

const PIN: &str = "73190462";

fn ca_init(s: &Server, hsm: &SoftHsm, extra: &[&str]) -> std::process::Output {
    let data = s.data_dir();
    Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args(["ca", "init", "--data-dir"])
        .arg(&data)
        .args(extra)
        .envs(hsm.env())
        .output()
        .unwrap()
}

/// `serve` on `s`'s data directory with `env`, expected to refuse: its stderr.
fn serve_refused(s: &Server, env: &[(String, String)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
        .args(["serve", "--eab", "off", "--data-dir"])
        .arg(s.data_dir())
        .args([
            "--listen",
            &format!("127.0.0.1:{}", sceau_testkit::free_port()),
        ])
        .args(["--revocation-listen", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn on_token(name: &str) -> (SoftHsm, Server, String, String) {
    let hsm = SoftHsm::new(name, PIN);
    let mut s = Server::unstarted(&["--eab", "off"]);
    s.env = hsm.env().to_vec();
    let (root, issuing) = (hsm.uri("root"), hsm.uri("issuing"));
    (hsm, s, root, issuing)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_on_a_token_issues_and_its_keys_never_touch_the_data_directory() {
    let (hsm, mut s, root, issuing) = on_token("sceau-ca");
    let out = ca_init(
        &s,
        &hsm,
        &["--root-key", &root, "--issuing-key", &issuing, "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        record["root_key"]
            .as_str()
            .unwrap()
            .starts_with("pkcs11:token=sceau-ca;object=root")
    );
    assert!(
        record["issuers"][0]["key"]
            .as_str()
            .unwrap()
            .contains("object=issuing")
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains(PIN), "the PIN was printed");
    for f in ["root.key", "intermediate.key"] {
        assert!(!s.data_dir().join(f).exists(), "{f} in the data directory");
    }
    // The private keys are on the token, sensitive and not extractable.
    let objects = Command::new("pkcs11-tool")
        .envs(hsm.env())
        .args([
            "--module",
            sceau_testkit::SOFTHSM_MODULE,
            "--token-label",
            "sceau-ca",
        ])
        .args([
            "--login",
            "--pin",
            PIN,
            "--list-objects",
            "--type",
            "privkey",
        ])
        .output()
        .expect("pkcs11-tool (Debian opensc)");
    let listed = String::from_utf8_lossy(&objects.stdout);
    assert_eq!(listed.matches("never extractable").count(), 2, "{listed}");

    s.spawn();
    s.add_host("hsm.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let (_, chain) = issue(&c, &responder, &["hsm.test"]).await;
    openssl_verify(&s, &chain);
}

#[test]
fn serve_refuses_a_wrong_pin_or_a_missing_token_module_or_key_in_one_line() {
    let (hsm, s, root, issuing) = on_token("sceau-bad");
    let out = ca_init(&s, &hsm, &["--root-key", &root, "--issuing-key", &issuing]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = hsm.env().to_vec();

    // Wrong PIN.
    std::fs::write(hsm.pin_file(), "11112222\n").unwrap();
    let err = serve_refused(&s, &env);
    assert!(err.contains("wrong PIN"), "{err}");
    assert!(
        err.contains("pkcs11:token=sceau-bad;object=issuing"),
        "names the URI: {err}"
    );
    assert!(!err.contains("11112222") && !err.contains(PIN), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::write(hsm.pin_file(), format!("{PIN}\n")).unwrap();

    // The token is gone (another token directory).
    let other = SoftHsm::new("someone-else", PIN);
    let err = serve_refused(&s, &other.env());
    assert!(err.contains("pkcs11:token=sceau-bad"), "{err}");
    assert!(err.to_lowercase().contains("token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // The module is missing: the manifest's URI names a module that is not there.
    let manifest = s.data_dir().join("ca.json");
    let saved = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        saved.replace(sceau_testkit::SOFTHSM_MODULE, "/usr/lib/no/such/module.so"),
    )
    .unwrap();
    let err = serve_refused(&s, &env);
    assert!(err.contains("/usr/lib/no/such/module.so"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The key is missing.
    std::fs::write(
        &manifest,
        saved.replace("object=issuing", "object=nothing-here"),
    )
    .unwrap();
    let err = serve_refused(&s, &env);
    assert!(err.contains("object=nothing-here"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::write(&manifest, saved).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_wait_while_the_token_is_away_and_complete_when_it_is_back() {
    let (hsm, mut s, _root, issuing) = on_token("sceau-away");
    let out = ca_init(&s, &hsm, &["--issuing-key", &issuing]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.args
        .extend(["--issuance-wait-ms".to_owned(), "500".to_owned()]);
    s.spawn();
    s.add_host("away.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let o = ready_order(&c, &responder, &["away.test"]).await;

    // The token disappears (its files move away), then the client finalizes.
    let away = hsm.path().join("tokens-away");
    std::fs::rename(hsm.token_dir(), &away).unwrap();
    let (csr_b64, _) = csr(&["away.test"]);
    let r = c.finalize(&o, &csr_b64).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "processing");
    assert!(r.headers.get("retry-after").is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = c.post(o["_url"].as_str().unwrap(), None).await.json();
    assert_eq!(still["status"], "processing", "{still}");

    // The token comes back: the queue's next attempt signs.
    std::fs::rename(&away, hsm.token_dir()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let v = c.post(o["_url"].as_str().unwrap(), None).await.json();
        if v["status"] != "processing" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "still processing a minute after the token came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(done["status"], "valid", "{done}");
    let cert = c.post(done["certificate"].as_str().unwrap(), None).await;
    openssl_verify(&s, &String::from_utf8(cert.body).unwrap());
    assert_serials_accounted_for(&s).await;
}
