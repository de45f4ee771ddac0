//! Validation cannot be turned against the CA's own network (RFC 8555 §10.4), over the wire:
//! a real ACME client whose http-01 responder redirects to an internal service on the CA's
//! loopback, or whose name resolves there, gets an invalid challenge that says which address was
//! refused and nothing of what the internal service would have answered.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const INTERNAL_PAGE: &str = "INTERNAL-ONLY admin console: db password hunter2";

/// Answers every request with `body(path)` as a plain HTTP/1.1 response and counts connections.
async fn http_service(
    addr: SocketAddr,
    respond: impl Fn(&str) -> String + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let l = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let _ = s.write_all(respond(path).as_bytes()).await;
            });
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn challenges_aimed_at_the_ca_host_are_invalid_and_reveal_nothing() {
    // Only the client's own responder address is allowed, as a lab would allow its network.
    let s = Server::start(&["--eab", "off", "--validation-allow", "127.0.0.2/32"]);
    let responder_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let port = s.http01_port;
    s.dns.set_a("www", responder_ip);
    s.dns.set_a("direct", loopback);

    let internal = http_service(SocketAddr::new(loopback, port), |_| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INTERNAL_PAGE}",
            INTERNAL_PAGE.len()
        )
    })
    .await;
    // The client's responder sends every challenge to the internal service.
    let responder = http_service(SocketAddr::new(responder_ip, port), move |_| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/admin\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    })
    .await;

    let mut c = Raw::new(&s).await;
    c.register().await;
    let o = order(&c, &["www.test", "direct.test"]).await;
    for authz_url in o["authorizations"].as_array().unwrap() {
        let authz_url = authz_url.as_str().unwrap();
        let authz = c.post(authz_url, None).await.json();
        let name = authz["identifier"]["value"].as_str().unwrap().to_owned();
        let ch = challenge(&authz, "http-01");
        let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

        let done = c.poll(authz_url, &["pending"]).await;
        assert_eq!(done["status"], "invalid", "{name}: {done}");
        let ch = challenge(&done, "http-01");
        assert_eq!(ch["status"], "invalid", "{name}: {ch}");
        let error = &ch["error"];
        assert_eq!(
            error["type"], "urn:ietf:params:acme:error:connection",
            "{name}: {error}"
        );
        let detail = error["detail"].as_str().unwrap();
        assert!(
            detail.contains("address 127.0.0.1 is loopback; the CA does not connect there"),
            "{name}: {detail}"
        );
        assert!(!detail.contains("hunter2"), "{name}: {detail}");
        assert!(!detail.contains("INTERNAL"), "{name}: {detail}");
        assert!(!detail.contains('\n'), "{name}: {detail}");
    }
    assert!(
        responder.load(Ordering::SeqCst) >= 1,
        "the allowed responder was asked"
    );
    assert_eq!(
        internal.load(Ordering::SeqCst),
        0,
        "the internal service on the CA's loopback was reached"
    );
}

#[test]
fn a_bad_network_setting_is_a_one_line_start_up_error_that_writes_nothing() {
    for (flag, value, want) in [
        ("--validation-allow", "10.0.0.0/33", "longer than 32"),
        (
            "--validation-allow",
            "10.0.0.1/8",
            "the network is 10.0.0.0/8",
        ),
        ("--validation-deny", "intranet", "is not an IP address"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sceau-server"))
            .args(["serve", "--eab", "off", "--listen"])
            .arg(format!("127.0.0.1:{}", sceau_testkit::free_port()))
            .args(["--revocation-listen", "127.0.0.1:0"])
            .args([flag, value])
            .arg("--data-dir")
            .arg(dir.path().join("d"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A server that accepted the setting would run until killed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{flag} {value} was accepted: the server kept running");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(!status.success(), "{flag} {value} was accepted");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
        assert!(err.contains(flag), "names the setting: {err}");
        assert!(err.contains(value), "names the value: {err}");
        assert!(err.contains(want), "{err}");
        assert!(
            !dir.path().join("d").exists(),
            "a refused start writes nothing"
        );
    }
}
