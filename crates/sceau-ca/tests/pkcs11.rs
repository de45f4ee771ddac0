//! CA keys on a real SoftHSM2 token: generation for every key kind, a CA whose root and
//! issuing keys live on the token issuing a certificate that openssl accepts, keys made by
//! opensc's pkcs11-tool, non-extractability, where the PIN and module come from, and the
//! one-line errors for every way of naming a key wrongly (never showing the PIN).
//!
//! Every scenario runs in a child process: this test binary, executed again with
//! `--exact child` and `SCEAU_TEST_SCENARIO` naming what to do. SoftHSM2 reads
//! `SOFTHSM2_CONF` from the environment once, at C_Initialize, and sceau-ca keeps one PKCS#11
//! context per module and process; so tests sharing a process would share one token
//! directory, and setting the variable while other test threads run races with their reads
//! of the environment. A child gets `SOFTHSM2_CONF` (and `SCEAU_PKCS11_*`) in its own
//! environment from the start, and its own PKCS#11 login state, which matters too: a login is
//! per process and token, so a wrong PIN is only detectable in a process that has not logged
//! in yet. The parent makes the token with softhsm2-util and pkcs11-tool (the variable set
//! on those commands only) and checks what the child printed with openssl and pkcs11-tool.
//! This works the same under `cargo test` (threads) and nextest (a process per test).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{openssl, openssl_verify};
use sceau_ca::ceremony::{InitOptions, RootKey};
use sceau_ca::manifest::CaMode;
use sceau_ca::{Ca, CaError, CaKeyKind, IssueRequest, KeyRef, OpenOptions, Profile};
use sceau_testkit::{SOFTHSM_MODULE as MODULE, SoftHsm};
use sceau_wire::Identifier;
use time::{Duration, OffsetDateTime};

/// Distinctive, so that finding it in any output means it leaked.
const PIN: &str = "58203917";
const WRONG_PIN: &str = "66600066";
const SO_PIN: &str = "77441100";
const SCENARIO: &str = "SCEAU_TEST_SCENARIO";

/// One test's own SoftHSM2 (a configuration file, a token directory and one token), and the
/// child processes that use it.
struct Lab {
    hsm: SoftHsm,
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `RESULT name: value` lines the child printed.
    fn result(&self, name: &str) -> Vec<String> {
        let prefix = format!("RESULT {name}: ");
        self.stdout
            .lines()
            .filter_map(|l| {
                // libtest prints "test child ... " before the child's first line.
                l.find(&prefix).map(|at| l[at + prefix.len()..].to_owned())
            })
            .collect()
    }

    fn one(&self, name: &str) -> String {
        let r = self.result(name);
        assert_eq!(r.len(), 1, "expected one {name} line:\n{}", self.stdout);
        r.into_iter().next().unwrap()
    }

    fn assert_no_pin(&self) {
        for pin in [PIN, WRONG_PIN, SO_PIN] {
            assert!(
                !self.stdout.contains(pin) && !self.stderr.contains(pin),
                "a PIN leaked into the output:\n{}\n{}",
                self.stdout,
                self.stderr
            );
        }
    }
}

impl Lab {
    fn new(token: &str) -> Lab {
        Lab {
            hsm: SoftHsm::with_so_pin(token, PIN, SO_PIN),
        }
    }

    fn path(&self) -> &Path {
        self.hsm.path()
    }

    fn conf(&self) -> PathBuf {
        self.hsm.conf()
    }

    fn pin_file(&self) -> PathBuf {
        self.hsm.pin_file()
    }

    /// A key URI on this lab's token, module and PIN file named in the URI.
    fn uri(&self, path_attrs: &str) -> String {
        self.hsm.key_uri(path_attrs)
    }

    /// Runs `scenario` in a child process with this lab's SoftHSM2 and `env`; no
    /// `SCEAU_PKCS11_*` variable is inherited from the test's own environment.
    fn run(&self, scenario: &str, env: &[(&str, &str)]) -> Run {
        let out = self.command(scenario, env).output().unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn command(&self, scenario: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child", "--nocapture", "--test-threads", "1"])
            .env(SCENARIO, scenario)
            .env("SOFTHSM2_CONF", self.conf())
            .env("SCEAU_TEST_DIR", self.path())
            .env_remove("SCEAU_PKCS11_PIN")
            .env_remove("SCEAU_PKCS11_MODULE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run_ok(&self, scenario: &str, env: &[(&str, &str)]) -> Run {
        let run = self.run(scenario, env);
        assert!(
            run.ok,
            "scenario {scenario} failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        run.assert_no_pin();
        run
    }

    /// opensc's pkcs11-tool on this lab's token, logged in.
    fn pkcs11_tool(&self, args: &[&str]) -> std::process::Output {
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", self.conf())
            .args(["--module", MODULE, "--token-label", &self.hsm.token])
            .args(["--login", "--pin", PIN])
            .args(args)
            .output()
            .expect("pkcs11-tool must be installed (Debian opensc)")
    }
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// The child side. Not a test of its own: the entry point of the scenarios above, which does
// nothing when the test harness runs it without a scenario.

#[test]
fn child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("SCEAU_TEST_DIR").unwrap());
    let arg = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    match scenario.as_str() {
        "init" => child_init(
            &dir,
            arg("KIND").parse().unwrap(),
            &arg("ROOT"),
            &arg("ISSUING"),
        ),
        "issue" => child_issue(&dir),
        "generate" => {
            let key = KeyRef::Pkcs11(arg("URI"))
                .generate(&dir, arg("KIND").parse().unwrap())
                .unwrap();
            println!("RESULT spki: {}", hex(key.spki_der()));
            println!("RESULT kind: {:?}", key.kind());
        }
        "generate-fails" => {
            let err = KeyRef::Pkcs11(arg("URI"))
                .generate(&dir, arg("KIND").parse().unwrap())
                .unwrap_err();
            print_error(&err);
        }
        "sign" => child_sign(&dir, &arg("URI")),
        "open-fails" => {
            let err = KeyRef::Pkcs11(arg("URI")).open(&dir).unwrap_err();
            print_error(&err);
            // The same, with the right PIN, opens: the failure changed nothing on the token.
            if let Ok(good) = std::env::var("THEN_URI") {
                child_sign(&dir, &good);
            }
        }
        "sign-across-outage" => child_sign_across_outage(&dir, &arg("URI")),
        other => panic!("unknown scenario {other}"),
    }
}

fn print_error(err: &CaError) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "not one line: {text}");
    let fault = match err {
        CaError::Pkcs11(e) => format!("{:?}", e.fault())
            .split([' ', '(', '{'])
            .next()
            .unwrap()
            .to_owned(),
        other => panic!("not a PKCS#11 error: {other:?}"),
    };
    println!("RESULT error: {text}");
    println!("RESULT fault: {fault}");
}

/// `ca init` of a dedicated CA with both keys on the token.
fn child_init(dir: &Path, kind: CaKeyKind, root: &str, issuing: &str) {
    let record = sceau_ca::ceremony::init(
        &dir.join("ca"),
        &InitOptions {
            mode: CaMode::Dedicated,
            kind,
            organization: "Token Org".into(),
            subject: None,
            issuing_key: Some(KeyRef::Pkcs11(issuing.to_owned())),
            root_key: RootKey::Pkcs11(root.to_owned()),
            staging: false,
        },
    )
    .unwrap();
    println!("RESULT record: {}", record.to_string().replace('\n', " | "));
}

/// Opens the CA made by `init` (a new process: the keys are found again on the token) and
/// issues a leaf.
fn child_issue(dir: &Path) {
    let ca = Ca::open(
        &dir.join("ca"),
        &OpenOptions {
            create: None,
            staging: false,
        },
    )
    .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let now = OffsetDateTime::now_utc();
    let issued = ca
        .sign(&IssueRequest {
            public_key_spki_der: rcgen::PublicKeyData::subject_public_key_info(&leaf_key),
            identifiers: vec![Identifier::dns("token.example")],
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(30),
            profile: Profile::Server,
            serial: None,
            crl_shard: None,
            csr_der: None,
            gate: None,
            resume: None,
        })
        .unwrap();
    std::fs::write(dir.join("leaf-chain.pem"), &issued.chain_pem).unwrap();
    println!("RESULT issued: {}", issued.serial_hex);
}

/// Waits (bounded) for the other process to create `name` in `dir`.
fn wait_for(dir: &Path, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join(name).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Signs with one opened key before, during and after the parent takes the token away.
fn child_sign_across_outage(dir: &Path, uri: &str) {
    let key = KeyRef::Pkcs11(uri.to_owned()).open(dir).unwrap();
    let outcome = |r: Result<Vec<u8>, CaError>| match r {
        Ok(_) => "signed".to_owned(),
        Err(CaError::Unavailable(m)) => format!("unavailable {m}"),
        Err(e) => format!("failed {e}"),
    };
    println!("RESULT before: {}", outcome(key.sign(b"before")));
    std::fs::write(dir.join("opened"), "").unwrap();
    wait_for(dir, "token-gone");
    println!("RESULT during: {}", outcome(key.sign(b"during")));
    std::fs::write(dir.join("tried"), "").unwrap();
    wait_for(dir, "token-back");
    println!("RESULT after: {}", outcome(key.sign(b"after")));
}

/// Opens a key and signs a message; the parent verifies with openssl.
fn child_sign(dir: &Path, uri: &str) {
    let key = KeyRef::Pkcs11(uri.to_owned()).open(dir).unwrap();
    let message = b"a to-be-signed certificate, or anything else";
    let sig = key.sign(message).unwrap();
    std::fs::write(dir.join("message"), message).unwrap();
    std::fs::write(dir.join("signature"), &sig).unwrap();
    std::fs::write(
        dir.join("public.pem"),
        sceau_wire::key::pem_encode("PUBLIC KEY", &key.spki_der()),
    )
    .unwrap();
    println!("RESULT kind: {:?}", key.kind());
    println!("RESULT display: {}", key.key_ref());
    println!("RESULT debug: {key:?}");
}

// ---------------------------------------------------------------------------------------
// The tests.

/// `openssl dgst -verify` of what `child_sign` wrote, with the digest of the key's kind
/// (SHA-384 for P-384, SHA-256 otherwise).
fn assert_openssl_verifies(lab: &Lab, kind: CaKeyKind) {
    let digest = if kind == CaKeyKind::P384 {
        "-sha384"
    } else {
        "-sha256"
    };
    let p = |n: &str| lab.path().join(n).to_str().unwrap().to_owned();
    let out = openssl(
        &[
            "dgst",
            digest,
            "-verify",
            &p("public.pem"),
            "-signature",
            &p("signature"),
            &p("message"),
        ],
        None,
    );
    assert!(
        out.ok && out.stdout.contains("Verified OK"),
        "openssl does not verify the token's signature: {}{}",
        out.stdout,
        out.stderr
    );
}

/// A CA made on the token (root and issuing key) issues a leaf that openssl verifies, in a
/// later process, and no private key file is written anywhere in the data directory.
fn token_ca_issues(kind: CaKeyKind) {
    let lab = Lab::new(&format!("ca-{kind}"));
    let root = lab.uri("object=root");
    let issuing = lab.uri("object=issuing;id=%01");
    let run = lab.run_ok(
        "init",
        &[
            ("KIND", kind.name()),
            ("ROOT", &root),
            ("ISSUING", &issuing),
        ],
    );
    let record = run.one("record");
    assert!(record.contains("pkcs11:token="), "{record}");
    lab.run_ok("issue", &[]);
    let ca_dir = lab.path().join("ca");
    let chain = std::fs::read_to_string(lab.path().join("leaf-chain.pem")).unwrap();
    let leaf_pem = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    let out = openssl_verify(&ca_dir, leaf_pem, &[]);
    assert!(
        out.ok && out.stdout.contains(": OK"),
        "openssl verify of a leaf from a {kind} token CA: {}{}",
        out.stdout,
        out.stderr
    );
    let files: Vec<String> = std::fs::read_dir(&ca_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !files.iter().any(|f| f.ends_with(".key")),
        "a key file was written: {files:?}"
    );
    // The signature algorithm of the intermediate is the one the kind calls for.
    let int = std::fs::read(ca_dir.join("intermediate.pem")).unwrap();
    let text = openssl(&["x509", "-text", "-noout"], Some(&int)).stdout;
    let expected = match kind {
        CaKeyKind::P256 => "ecdsa-with-SHA256",
        CaKeyKind::P384 => "ecdsa-with-SHA384",
        CaKeyKind::Rsa3072 | CaKeyKind::Rsa4096 => "sha256WithRSAEncryption",
    };
    assert!(text.contains(expected), "{text}");
    // Both key pairs are on the token, with the labels the URIs gave.
    let out = lab.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("label:      root") && listing.contains("label:      issuing"),
        "{listing}"
    );
}

#[test]
fn token_ca_p256_issues_certificates_openssl_verifies() {
    token_ca_issues(CaKeyKind::P256);
}

#[test]
fn token_ca_p384_issues_certificates_openssl_verifies() {
    token_ca_issues(CaKeyKind::P384);
}

#[test]
fn token_ca_rsa3072_issues_certificates_openssl_verifies() {
    token_ca_issues(CaKeyKind::Rsa3072);
}

#[test]
fn token_ca_rsa4096_issues_certificates_openssl_verifies() {
    token_ca_issues(CaKeyKind::Rsa4096);
}

/// Keys generated on the token are sensitive, never extractable and private, as opensc sees
/// them.
#[test]
fn generated_keys_never_leave_the_token() {
    let lab = Lab::new("sealed");
    for (kind, label) in [
        (CaKeyKind::P256, "sealed-ec"),
        (CaKeyKind::Rsa3072, "sealed-rsa"),
    ] {
        let run = lab.run_ok(
            "generate",
            &[
                ("URI", &lab.uri(&format!("object={label}"))),
                ("KIND", kind.name()),
            ],
        );
        assert_eq!(run.one("kind"), format!("Some({kind:?})"));
    }
    let out = lab.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let keys: Vec<&str> = listing.split("Private Key Object").skip(1).collect();
    assert_eq!(keys.len(), 2, "{listing}");
    for key in keys {
        let access = key
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .unwrap_or_else(|| panic!("no Access line in {key}"));
        let flags: Vec<&str> = access
            .split_once(':')
            .unwrap()
            .1
            .split(',')
            .map(str::trim)
            .collect();
        assert!(flags.contains(&"sensitive"), "{access}");
        assert!(flags.contains(&"never extractable"), "{access}");
        assert!(!flags.contains(&"extractable"), "{access}");
        let usage = key.lines().find(|l| l.contains("Usage:")).unwrap();
        assert!(usage.contains("sign"), "{usage}");
    }
    let anonymous = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", lab.conf())
        .args([
            "--module",
            MODULE,
            "--token-label",
            "sealed",
            "--list-objects",
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&anonymous.stdout).contains("Private Key Object"),
        "private keys are visible without login (CKA_PRIVATE false)"
    );
}

/// A second key with the label or id of one already on the token is refused, and the first
/// key is untouched.
#[test]
fn generation_never_overwrites_a_key() {
    let lab = Lab::new("once");
    let first = lab.run_ok(
        "generate",
        &[("URI", &lab.uri("object=ca;id=%aa")), ("KIND", "p256")],
    );
    let spki = first.one("spki");
    for (uri, what) in [
        (lab.uri("object=ca"), "labelled \"ca\""),
        (lab.uri("object=other;id=%aa"), "with id aa"),
    ] {
        let run = lab.run_ok("generate-fails", &[("URI", &uri), ("KIND", "p384")]);
        assert_eq!(run.one("fault"), "Exists");
        let err = run.one("error");
        assert!(
            err.contains(what) && err.contains("never overwritten"),
            "{err}"
        );
        assert!(err.starts_with("pkcs11:token=once;"), "{err}");
    }
    // The original key still signs, with its original public key.
    lab.run_ok("sign", &[("URI", &lab.uri("object=ca"))]);
    assert_openssl_verifies(&lab, CaKeyKind::P256);
    let public = std::fs::read_to_string(lab.path().join("public.pem")).unwrap();
    let der = sceau_wire::key::pem_decode(&public, "PUBLIC KEY").unwrap();
    assert_eq!(hex(der), spki);
    let out = lab.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("Private Key Object")
            .count(),
        1
    );
}

/// Keys made by opensc's pkcs11-tool open and sign; openssl verifies the signatures. The EC
/// key is named by a binary id that is not UTF-8.
#[test]
fn keys_made_by_pkcs11_tool_sign() {
    let lab = Lab::new("opensc");
    for args in [
        [
            "--key-type",
            "EC:prime256v1",
            "--label",
            "opensc-ec",
            "--id",
            "80ff01",
        ],
        [
            "--key-type",
            "EC:secp384r1",
            "--label",
            "opensc-p384",
            "--id",
            "02",
        ],
        [
            "--key-type",
            "rsa:3072",
            "--label",
            "opensc-rsa",
            "--id",
            "03",
        ],
    ] {
        let out = lab.pkcs11_tool(&[&["--keypairgen"][..], &args[..]].concat());
        assert!(
            out.status.success(),
            "pkcs11-tool --keypairgen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (path_attrs, kind) in [
        ("id=%80%ff%01", CaKeyKind::P256),
        ("object=opensc-p384", CaKeyKind::P384),
        ("object=opensc-rsa;id=%03", CaKeyKind::Rsa3072),
    ] {
        let run = lab.run_ok("sign", &[("URI", &lab.uri(path_attrs))]);
        assert_eq!(run.one("kind"), format!("Some({kind:?})"), "{path_attrs}");
        assert_openssl_verifies(&lab, kind);
    }
    // An RSA 2048 key is no CA key kind: refused by name, not used.
    let out = lab.pkcs11_tool(&["--keypairgen", "--key-type", "rsa:2048", "--label", "small"]);
    assert!(out.status.success());
    let run = lab.run_ok("open-fails", &[("URI", &lab.uri("object=small"))]);
    assert_eq!(run.one("fault"), "Unsupported");
    assert!(run.one("error").contains("RSA 2048"), "{}", run.stdout);
}

/// The PIN from a `file:` pin-source, a plain path, `pin-value` or `SCEAU_PKCS11_PIN`, and
/// the module from `SCEAU_PKCS11_MODULE`; the PIN never shows in Display or Debug.
#[test]
fn pin_and_module_sources() {
    let lab = Lab::new("sources");
    let made = lab.run_ok(
        "generate",
        &[("URI", &lab.uri("object=k")), ("KIND", "p256")],
    );
    assert_eq!(made.one("kind"), "Some(P256)");
    let pin_file = lab.pin_file().display().to_string();
    // Without a trailing newline, and with CRLF, the file gives the same PIN.
    let crlf = lab.path().join("pin-crlf");
    std::fs::write(&crlf, format!("{PIN}\r\n")).unwrap();
    let bare = lab.path().join("pin-bare");
    std::fs::write(&bare, PIN).unwrap();
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            format!(
                "pkcs11:token=sources;object=k?module-path={MODULE}&pin-source=file:{pin_file}"
            ),
            vec![],
        ),
        (
            format!(
                "pkcs11:token=sources;object=k?module-path={MODULE}&pin-source=file://{pin_file}"
            ),
            vec![],
        ),
        (
            format!(
                "pkcs11:token=sources;object=k?module-path={MODULE}&pin-source={}",
                crlf.display()
            ),
            vec![],
        ),
        (
            format!(
                "pkcs11:token=sources;object=k?module-path={MODULE}&pin-source={}",
                bare.display()
            ),
            vec![],
        ),
        (
            format!("pkcs11:token=sources;object=k?module-path={MODULE}&pin-value={PIN}"),
            vec![],
        ),
        (
            format!("pkcs11:token=sources;object=k?module-path={MODULE}"),
            vec![("SCEAU_PKCS11_PIN", PIN.to_owned())],
        ),
        (
            "pkcs11:token=sources;object=k".to_owned(),
            vec![
                ("SCEAU_PKCS11_PIN", PIN.to_owned()),
                ("SCEAU_PKCS11_MODULE", MODULE.to_owned()),
            ],
        ),
    ];
    for (uri, env) in cases {
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("URI", &uri));
        let run = lab.run_ok("sign", &env);
        assert_openssl_verifies(&lab, CaKeyKind::P256);
        let display = run.one("display");
        assert!(
            display.starts_with("pkcs11:token=sources;object=k"),
            "{display}"
        );
        if uri.contains("pin-value") {
            assert!(display.contains("pin-value=***"), "{display}");
            assert!(run.one("debug").contains("pin-value=***"), "{}", run.stdout);
        }
    }
    // The same redaction without a token.
    let key_ref = KeyRef::parse(&format!(
        "pkcs11:token=t;object=k?pin-value={PIN}&module-path=/m.so"
    ));
    assert!(!key_ref.to_string().contains(PIN));
    assert!(!format!("{key_ref:?}").contains(PIN), "{key_ref:?}");
}

fn assert_open_fails(lab: &Lab, uri: &str, env: &[(&str, &str)], fault: &str, says: &[&str]) {
    let mut env = env.to_vec();
    env.push(("URI", uri));
    let run = lab.run_ok("open-fails", &env);
    assert_eq!(run.one("fault"), fault, "{uri}");
    let err = run.one("error");
    let shown = sceau_ca::pkcs11::redacted_uri(uri);
    assert!(
        err.starts_with(&format!("{shown}: ")),
        "{err} does not name {shown}"
    );
    for s in says {
        assert!(err.contains(s), "{err:?} does not say {s:?}");
    }
}

/// Wrong PIN, missing token, key or module, no PIN: a one-line error naming the URI without
/// the PIN, the kind of fault typed; and a wrong PIN changes nothing.
#[test]
fn naming_a_key_wrongly_gives_one_line_errors() {
    let lab = Lab::new("faults");
    lab.run_ok(
        "generate",
        &[("URI", &lab.uri("object=k;id=%07")), ("KIND", "p256")],
    );
    let wrong_pin_file = lab.path().join("wrong-pin");
    std::fs::write(&wrong_pin_file, WRONG_PIN).unwrap();
    let good = lab.uri("object=k");
    let with = |q: &str| format!("pkcs11:token=faults;object=k?{q}");

    // A wrong PIN from each source; then the right one still works (nothing was changed).
    let wrong_file = with(&format!(
        "module-path={MODULE}&pin-source=file:{}",
        wrong_pin_file.display()
    ));
    let mut env = vec![("THEN_URI", good.as_str())];
    assert_open_fails(
        &lab,
        &wrong_file,
        &env,
        "WrongPin",
        &["wrong PIN (CKR_PIN_INCORRECT)"],
    );
    let wrong_value = with(&format!("module-path={MODULE}&pin-value={WRONG_PIN}"));
    assert_open_fails(
        &lab,
        &wrong_value,
        &env,
        "WrongPin",
        &["pin-value=***", "CKR_PIN_INCORRECT"],
    );
    env.push(("SCEAU_PKCS11_PIN", WRONG_PIN));
    assert_open_fails(
        &lab,
        &with(&format!("module-path={MODULE}")),
        &env,
        "WrongPin",
        &["CKR_PIN_INCORRECT"],
    );
    assert_openssl_verifies(&lab, CaKeyKind::P256);

    // No PIN anywhere.
    assert_open_fails(
        &lab,
        &with(&format!("module-path={MODULE}")),
        &[],
        "NoPin",
        &["no PIN", "pin-source", "SCEAU_PKCS11_PIN"],
    );
    // A PIN file that is not there, or empty.
    let missing = lab.path().join("no-such-pin");
    assert_open_fails(
        &lab,
        &with(&format!(
            "module-path={MODULE}&pin-source=file:{}",
            missing.display()
        )),
        &[],
        "PinFile",
        &["cannot read the PIN file", "no-such-pin"],
    );
    let empty = lab.path().join("empty-pin");
    std::fs::write(&empty, "\n").unwrap();
    assert_open_fails(
        &lab,
        &with(&format!(
            "module-path={MODULE}&pin-source={}",
            empty.display()
        )),
        &[],
        "EmptyPin",
        &["PIN is empty"],
    );
    // No such token: the tokens present are listed.
    assert_open_fails(
        &lab,
        &lab.uri("object=k")
            .replace("token=faults", "token=elsewhere"),
        &[],
        "NoToken",
        &["no token matches", "\"faults\""],
    );
    // No such key, by label and by id.
    assert_open_fails(
        &lab,
        &lab.uri("object=nope"),
        &[],
        "NoKey",
        &["no private key labelled \"nope\""],
    );
    assert_open_fails(
        &lab,
        &lab.uri("object=k;id=%08"),
        &[],
        "NoKey",
        &["with id 08"],
    );
    // No key named at all.
    assert_open_fails(
        &lab,
        &format!("pkcs11:token=faults?module-path={MODULE}&pin-value={PIN}"),
        &[],
        "NoKeyNamed",
        &["object=", "pin-value=***"],
    );
    // A misspelt attribute is refused, not ignored.
    assert_open_fails(&lab, &lab.uri("objekt=k"), &[], "Uri", &["objekt"]);
    // No module, a missing module, a file that is no PKCS#11 module.
    assert_open_fails(
        &lab,
        &format!("pkcs11:token=faults;object=k?pin-value={PIN}"),
        &[],
        "NoModule",
        &["module-path=", "SCEAU_PKCS11_MODULE"],
    );
    assert_open_fails(
        &lab,
        &with("module-path=/nonexistent/libpkcs11.so"),
        &[("SCEAU_PKCS11_PIN", PIN)],
        "ModuleMissing",
        &["/nonexistent/libpkcs11.so does not exist"],
    );
    let not_a_module = lab.path().join("not-a-module.so");
    std::fs::write(&not_a_module, "not a shared object").unwrap();
    assert_open_fails(
        &lab,
        &with(&format!("module-path={}", not_a_module.display())),
        &[("SCEAU_PKCS11_PIN", PIN)],
        "ModuleLoad",
        &["cannot be loaded"],
    );
    assert_open_fails(
        &lab,
        "pkcs11:token=faults;object=k",
        &[
            ("SCEAU_PKCS11_PIN", PIN),
            ("SCEAU_PKCS11_MODULE", "/nonexistent/env.so"),
        ],
        "ModuleMissing",
        &["/nonexistent/env.so"],
    );
}

/// A token that goes away while the signing process runs: signing fails as "unavailable"
/// (which the issuance queue retries), names the key, and works again once the token is back,
/// in the same process and with the same opened key. SoftHSM2 loses every token for good
/// when its token directory disappears, so this also covers the module restart.
#[test]
fn a_token_that_goes_away_is_unavailable_then_signs_again() {
    let lab = Lab::new("outage");
    lab.run_ok(
        "generate",
        &[("URI", &lab.uri("object=k")), ("KIND", "p256")],
    );
    let child = lab
        .command("sign-across-outage", &[("URI", &lab.uri("object=k"))])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(lab.path(), "opened");
    let tokens = lab.path().join("tokens");
    let away = lab.path().join("tokens-away");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();
    std::fs::write(lab.path().join("token-gone"), "").unwrap();
    wait_for(lab.path(), "tried");
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    std::fs::write(lab.path().join("token-back"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    run.assert_no_pin();
    assert_eq!(run.one("before"), "signed");
    let during = run.one("during");
    assert!(
        during.starts_with("unavailable pkcs11:token=outage;object=k?"),
        "{during}"
    );
    assert_eq!(run.one("after"), "signed");
}
