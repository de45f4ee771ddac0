//! Scheduled reports by e-mail (issue 15, agency guide R49): a real SMTP server (Python's
//! aiosmtpd, from Debian) that requires STARTTLS receives each external account's report, with
//! the certificates issued in its text, HTML and CSV; a server that offers no STARTTLS gets
//! nothing; bad `[reports]` settings stop the server at start in one line.

mod admin_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use admin_support::{bound_client, create_aa};
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use sceau_testkit::free_port;
use support::{Http01, Server, issue};

/// A CA and a certificate for `localhost` signed by it, in `dir`: (cert, key, CA) files.
fn mail_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mail test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (c, k, a) = (
        dir.join("mail.pem"),
        dir.join("mail.key"),
        dir.join("mail-ca.pem"),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, ca_cert.pem()).unwrap();
    (c, k, a)
}

/// aiosmtpd on `port`, delivering to the maildir `maildir`; with `tls`, STARTTLS required.
struct Smtp {
    child: Child,
    maildir: PathBuf,
}

impl Smtp {
    fn start(port: u16, maildir: &Path, tls: Option<(&Path, &Path)>) -> Smtp {
        let python = Path::new("/usr/bin/python3");
        assert!(
            python.exists(),
            "Debian's python3 is needed (README's test command)"
        );
        let mut cmd = Command::new(python);
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
        if let Some((cert, key)) = tls {
            cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
        }
        cmd.args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("aiosmtpd (python3-aiosmtpd, installed by the README's test command)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp {
            child,
            maildir: maildir.to_owned(),
        }
    }

    fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The decoded body of the MIME part whose headers contain `marker`.
fn part(message: &str, marker: &str) -> String {
    let message = message.replace("\r\n", "\n");
    let start = message
        .find(marker)
        .unwrap_or_else(|| panic!("no part with {marker}:\n{message}"));
    let rest = &message[start..];
    let body_start = rest.find("\n\n").unwrap() + 2;
    let body_end = rest[body_start..].find("\n--").unwrap() + body_start;
    let b64: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

fn config(dir: &Path, port: u16, ca: &Path, extra: &str) -> PathBuf {
    let file = dir.join("reports.toml");
    std::fs::write(
        &file,
        format!(
            "[reports]\nsmtp_server = \"localhost:{port}\"\nfrom = \"Sceau <sceau@example.org>\"\ntls_roots = \"{}\"\ncheck_every_secs = 1\n{extra}",
            ca.display()
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn each_owner_gets_the_report_over_starttls_once_per_period() {
    let mut s = Server::start(&[]);
    let (kid, mac) = create_aa(&s, &["r.test"], &[]);
    s.add_host("r.test");
    let responder = Http01::start(s.http01_port).await;
    let c = bound_client(&s, &kid, &mac).await;
    issue(&c, &responder, &["r.test"]).await;
    let store = s.store().await;
    let serial = store.certificates_of_external(&kid).await.unwrap()[0]
        .serial
        .clone();

    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = mail_certificate(dir.path());
    let port = free_port();
    let smtp = Smtp::start(port, &dir.path().join("maildir"), Some((&cert, &key)));
    let file = config(dir.path(), port, &ca, "");
    s.args
        .extend(["--config".into(), file.display().to_string()]);
    s.restart();

    let deadline = Instant::now() + Duration::from_secs(60);
    while smtp.messages().is_empty() {
        assert!(Instant::now() < deadline, "no report arrived within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A check every second, a weekly period: one report, not one a second.
    std::thread::sleep(Duration::from_secs(3));
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "one report per period");
    let m = &messages[0];
    assert!(m.contains("To: Alice Martin <alice@example.org>"), "{m}");
    assert!(m.contains("Subject: Sceau report for Alice Martin <alice@example.org>: 1 issued, 0 revoked, 1 valid"), "{m}");
    let text = part(m, "text/plain");
    assert!(text.contains(&serial), "{text}");
    let html = part(m, "text/html");
    assert!(
        html.contains(&serial) && html.contains("1 issued, 0 revoked, 1 valid now"),
        "{html}"
    );
    let csv = part(m, "filename=\"sceau-report-");
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("issued,,{serial},r.test,"))),
        "{csv}"
    );
    assert!(store.report_sent_at(&kid).await.unwrap().is_some());
    let sent = store
        .audit_log(&sceau_store::AuditFilter {
            event_prefix: Some("report.sent".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].detail["to"], "alice@example.org");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_sent_without_starttls_and_bad_settings_stop_the_start() {
    let mut s = Server::start(&[]);
    let (kid, _) = create_aa(&s, &["q.test"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let (_, _, ca) = mail_certificate(dir.path());
    let port = free_port();
    // A server that offers no STARTTLS: the report is not sent in clear.
    let smtp = Smtp::start(port, &dir.path().join("maildir"), None);
    let file = config(dir.path(), port, &ca, "");
    s.args
        .extend(["--config".into(), file.display().to_string()]);
    s.restart();
    std::thread::sleep(Duration::from_secs(8));
    assert!(smtp.messages().is_empty());
    let store = s.store().await;
    assert_eq!(store.report_sent_at(&kid).await.unwrap(), None);
    s.kill();

    // Settings that cannot work: refused at start, in one line, before serving.
    let pass = dir.path().join("smtp.pass");
    std::fs::write(&pass, "secret").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (extra, says) in [
        ("period = \"daily\"\n", "weekly or monthly"),
        (
            &format!("username = \"u\"\npassword_file = \"{}\"\n", pass.display()) as &str,
            "readable by others",
        ),
        ("username = \"u\"\n", "both username and password_file"),
    ] {
        let file = config(dir.path(), port, &ca, extra);
        let out = Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .args(["serve", "--data-dir"])
            .arg(s.data_dir())
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--revocation-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{extra}: {err}");
        assert!(!err.contains("secret"));
    }
}
