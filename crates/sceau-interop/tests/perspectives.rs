//! certbot and lego through multi-perspective validation (R28): sceau-server with three real
//! `sceau-server validator` processes, their certificates made by docs/perspectives.md's own
//! OpenSSL commands. Each client's names are checked by every perspective; with two of the
//! three validators gone the quorum cannot be met and the client is refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sceau_interop::server::{SceauOptions, sceau_server_binary};
use sceau_interop::{Interop, run, run_ok};
use sceau_testkit::{free_port, require_tool};

/// The shell blocks of docs/perspectives.md's deployment section: (once, per validator).
fn documented_commands() -> (String, String) {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/perspectives.md"),
    )
    .unwrap();
    let block = |marker: &str| {
        let start = doc.find(marker).expect("the documented commands");
        let rest = &doc[start..];
        rest[..rest.find("```").unwrap()].to_owned()
    };
    (
        block("# Once: the validation CA"),
        block("# For each validator:"),
    )
}

fn bash(script: &str, dir: &Path) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the documented commands failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Validator {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Validator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "validator on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn certbot_and_lego_through_three_remote_perspectives() {
    let pki = tempfile::tempdir().unwrap();
    let (once, each) = documented_commands();
    bash(&once, pki.path());
    let names = ["dc1", "dc2", "dc3"];
    for name in names {
        let script = each.replacen(
            "NAME=dc2 HOST=dc2.internal",
            &format!("NAME={name} HOST=localhost"),
            1,
        );
        bash(&script, pki.path());
    }
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let file = |f: &str| pki.path().join(f).display().to_string();
    let mut config = format!(
        "[perspectives]\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        file("validation-ca.pem"),
        file("primary.pem"),
        file("primary.key")
    );
    for (name, port) in names.iter().zip(&ports) {
        config.push_str(&format!(
            "[[perspectives.remote]]\nname = \"{name}\"\nurl = \"https://localhost:{port}\"\n"
        ));
    }
    let config_file = pki.path().join("server.toml");
    std::fs::write(&config_file, config).unwrap();
    let env = Interop::start_sceau_with(&SceauOptions {
        args: vec!["--config".into(), config_file.display().to_string()],
        ..Default::default()
    });
    let mut validators: Vec<Validator> = names
        .iter()
        .zip(&ports)
        .map(|(name, port)| {
            let log = pki.path().join(format!("{name}.log"));
            let child = Command::new(sceau_server_binary())
                .arg("validator")
                .args(["--name", name, "--listen", &format!("127.0.0.1:{port}")])
                .args(["--tls-ca", &file("validation-ca.pem")])
                .args(["--tls-cert", &file(&format!("{name}.pem"))])
                .args(["--tls-key", &file(&format!("{name}.key"))])
                .args(["--dns-server", &env.dns.addr.to_string()])
                .args(["--http01-port", &env.http01_port.to_string()])
                .args(["--tlsalpn01-port", &env.tlsalpn01_port.to_string()])
                .args(["--validation-allow", "127.0.0.0/8"])
                .env("SCEAU_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            wait_listening(*port);
            Validator { child, log }
        })
        .collect();

    // certbot, http-01 with its standalone listener.
    let web1 = env.host("web1");
    let certbot_dir = env.path("certbot");
    let port = env.http01_port.to_string();
    let mut certbot = sceau_interop::certbot("certonly", &certbot_dir, &env.server.tls_ca);
    certbot
        .args(["--server", &env.server.directory_url])
        .args(["--agree-tos", "--register-unsafely-without-email"])
        .args(["--standalone", "--http-01-port", &port, "-d", &web1]);
    run_ok("certbot certonly", &mut certbot);
    let live = certbot_dir.join("config/live").join(&web1);
    env.verify(&live.join("cert.pem"), Some(&live.join("chain.pem")), &web1);

    // lego, tls-alpn-01 with its own listener.
    let web2 = env.host("web2");
    let lego_dir = env.path("lego");
    let lego = |host: &str| {
        let mut c = Command::new(require_tool("lego"));
        c.args(["--server", &env.server.directory_url])
            .arg("--path")
            .arg(&lego_dir)
            .args(["--email", "pki-team@example.org", "--accept-tos"])
            .args(["--domains", host])
            .args(["--tls", "--tls.port", &format!(":{}", env.tlsalpn01_port)])
            .arg("run")
            .env("LEGO_CA_CERTIFICATES", &env.server.tls_ca);
        c
    };
    run_ok("lego run", &mut lego(&web2));
    let certs = lego_dir.join("certificates");
    env.verify(
        &certs.join(format!("{web2}.crt")),
        Some(&certs.join(format!("{web2}.issuer.crt"))),
        &web2,
    );

    // Every perspective checked both clients' names.
    for v in &validators {
        let log = std::fs::read_to_string(&v.log).unwrap();
        for host in [&web1, &web2] {
            assert!(
                log.contains(host.as_str()),
                "{} never checked {host}:\n{log}",
                v.log.display()
            );
        }
    }

    // Two of three perspectives gone: the quorum (2) cannot be met, lego is refused and
    // the problem it prints says why.
    validators.truncate(1);
    let web3 = env.host("web3");
    let refused = run("lego run", &mut lego(&web3), Duration::from_secs(120)).expect_failure();
    assert!(
        refused.output().contains("remote perspectives agreed"),
        "{refused}"
    );
}
