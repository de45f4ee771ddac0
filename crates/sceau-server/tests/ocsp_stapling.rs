//! A real OCSP consumer: Debian's nginx with `ssl_stapling on; ssl_stapling_verify on`
//! fetches Sceau's OCSP response for a certificate Sceau issued (the AIA URL in it), verifies
//! it against the trusted chain and staples it; `openssl s_client -status` sees it. After the
//! certificate is revoked and nginx reloaded, nginx fetches the new response, reads
//! "revoked" in it and staples nothing (nginx staples good responses only: it logs
//! `certificate status "revoked" in the OCSP response`), so clients stop seeing a good status.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Http01, Raw, Server, csr_with_key, ready_order};

struct Nginx {
    child: Child,
    prefix: tempfile::TempDir,
}

impl Nginx {
    fn log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }

    fn signal(&self, s: &str) {
        let out = Command::new(sceau_testkit::require_tool("nginx"))
            .arg("-p")
            .arg(self.prefix.path())
            .args(["-c", "nginx.conf", "-e", "stderr", "-s", s])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx -s {s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(port: u16, chain: &str, key_pem: &str, trusted: &str) -> Nginx {
    let prefix = tempfile::tempdir().unwrap();
    let p = prefix.path();
    std::fs::write(p.join("chain.pem"), chain).unwrap();
    std::fs::write(p.join("key.pem"), key_pem).unwrap();
    std::fs::write(p.join("trusted.pem"), trusted).unwrap();
    let conf = format!(
        "daemon off;
user root;
worker_processes 1;
error_log stderr info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/chain.pem;
        ssl_certificate_key {dir}/key.pem;
        ssl_stapling on;
        ssl_stapling_verify on;
        ssl_trusted_certificate {dir}/trusted.pem;
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
",
        dir = p.display()
    );
    std::fs::write(p.join("nginx.conf"), conf).unwrap();
    let child = Command::new(sceau_testkit::require_tool("nginx"))
        .arg("-p")
        .arg(p)
        .args(["-c", "nginx.conf", "-e", "stderr"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(p.join("error.log")).unwrap(),
        ))
        .spawn()
        .expect("nginx (install with scripts/install-test-deps.sh)");
    Nginx { child, prefix }
}

/// `openssl s_client -status` until its output contains `want` (nginx fetches the response
/// on the first handshakes, in the background).
fn staple_until(port: u16, root: &std::path::Path, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(sceau_testkit::require_tool("openssl"))
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-status",
            ])
            .args(["-servername", "staple.test", "-CAfile"])
            .arg(root)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(want) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {want:?} stapled:\n{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_staples_good_then_revoked() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("staple.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let o = ready_order(&c, &responder, &["staple.test"]).await;
    let url = o["_url"].as_str().unwrap().to_owned();
    let (csr, _) = csr_with_key(&["staple.test"], &key);
    assert_eq!(c.finalize(&o, &csr).await.status, 200);
    let done = c.poll(&url, &["processing"]).await;
    let chain = String::from_utf8(
        c.post(done["certificate"].as_str().unwrap(), None)
            .await
            .body,
    )
    .unwrap();
    let root = std::fs::read_to_string(s.root_pem()).unwrap();
    let issuer = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .nth(1)
        .unwrap()
        .to_owned();

    let port = sceau_testkit::free_port();
    let nginx = start_nginx(
        port,
        &chain,
        &key.serialize_pem(),
        &format!("{root}{issuer}"),
    );
    let text = staple_until(port, &s.root_pem(), "Cert Status: good");
    assert!(text.contains("OCSP Response Status: successful"), "{text}");

    let der = sceau_wire::key::pem_decode_all(&chain, "CERTIFICATE").remove(0);
    let revoke = c.dir.revoke_cert.clone();
    let r = c
        .post(
            &revoke,
            Some(&json!({"certificate": sceau_wire::b64::encode(&der), "reason": 4})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // nginx keeps a staple until it is due; a reload starts workers that fetch it again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nginx.signal("reload");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nginx
        .log()
        .contains("certificate status \"revoked\" in the OCSP response")
    {
        assert!(
            Instant::now() < deadline,
            "nginx did not see the revocation:\n{}",
            nginx.log()
        );
        // Handshakes make the new worker fetch the response.
        staple_until(port, &s.root_pem(), "OCSP response:");
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = staple_until(port, &s.root_pem(), "OCSP response: no response sent");
    assert!(!text.contains("Cert Status: good"), "{text}");
    drop(nginx);
}
