//! Crash safety (issue 5): clients issue under load while the server is killed with SIGKILL at
//! random moments and restarted. Afterwards every certificate a client received is stored and
//! downloadable, no order is left `processing`, no authorization is half-updated, and new
//! orders succeed.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

async fn try_post(c: &Raw, url: &str, payload: Option<&Value>) -> Result<Resp, String> {
    let nonce = c
        .http
        .head(&c.dir.new_nonce)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .headers()
        .get("replay-nonce")
        .ok_or("no nonce")?
        .to_str()
        .unwrap()
        .to_owned();
    let body = payload.map(|p| serde_json::to_vec(p).unwrap());
    let signer = sceau_wire::jws::Signer::Kid(c.kid.as_deref().unwrap());
    let jws = sceau_wire::jws::sign(&c.key, signer, Some(&nonce), url, body.as_deref()).unwrap();
    let r = c
        .http
        .post(url)
        .header("content-type", "application/jose+json")
        .body(serde_json::to_vec(&jws).unwrap())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.map_err(|e| e.to_string())?.to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

async fn poll(c: &Raw, url: &str, waiting: &[&str]) -> Result<Value, String> {
    for _ in 0..100 {
        let v = try_post(c, url, None).await?.json();
        if !waiting.iter().any(|w| v["status"] == *w) {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{url} stuck"))
}

/// One issuance that returns an error instead of panicking when the server goes away.
async fn try_issue(c: &Raw, responder: &Http01, name: &str) -> Result<(String, String), String> {
    let r = try_post(
        c,
        &c.dir.new_order,
        Some(&json!({"identifiers": [{"type": "dns", "value": name}]})),
    )
    .await?;
    if r.status != 201 {
        return Err(format!("newOrder {}", r.status));
    }
    let order_url = r.location();
    let order = r.json();
    let authz = try_post(c, order["authorizations"][0].as_str().unwrap(), None)
        .await?
        .json();
    let ch = authz["challenges"]
        .as_array()
        .ok_or("no challenges")?
        .iter()
        .find(|c| c["type"] == "http-01")
        .ok_or("no http-01")?
        .clone();
    let token = ch["token"].as_str().unwrap();
    responder.set(token, &c.key_authz(token));
    try_post(c, ch["url"].as_str().unwrap(), Some(&json!({}))).await?;
    let ready = poll(c, &order_url, &["pending"]).await?;
    if ready["status"] != "ready" {
        return Err(format!("order {}", ready["status"]));
    }
    let (csr, _) = csr(&[name]);
    try_post(
        c,
        order["finalize"].as_str().unwrap(),
        Some(&json!({"csr": csr})),
    )
    .await?;
    let done = poll(c, &order_url, &["processing"]).await?;
    let cert_url = done["certificate"]
        .as_str()
        .ok_or("no certificate URL")?
        .to_owned();
    let chain = try_post(c, &cert_url, None).await?;
    if chain.status != 200 {
        return Err(format!("download {}", chain.status));
    }
    Ok((cert_url, String::from_utf8(chain.body).unwrap()))
}

fn pseudo_random(max_ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % max_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_under_load_loses_no_certificate() {
    let mut server = Server::start(&["--eab", "off"]);
    server.dns.add_record("*.load", "A", "127.0.0.1");
    server.add_host("after.test");
    let responder = Http01::start(server.http01_port).await;
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..8 {
        let mut c = Raw::new(&server).await;
        c.register().await;
        let (received, stop, responder) = (received.clone(), stop.clone(), responder.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            let mut failures = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                match try_issue(&c, &responder, &format!("c{i}-{n}.load.test")).await {
                    Ok(got) => received.lock().unwrap().push(got),
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            failures
        }));
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400 + pseudo_random(900))).await;
        let child = server.child.as_mut().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        server.child = None;
        tokio::time::sleep(Duration::from_millis(50)).await;
        server.spawn();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = 0;
    for c in clients {
        failures += c.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() >= 20,
        "too few issuances to mean anything: {} ({failures} interrupted)",
        received.len()
    );
    assert!(
        failures > 0,
        "the kills should have interrupted some issuances"
    );

    // Every certificate a client received is there, byte for byte.
    let http = http_client(&server.root_pem());
    for (url, chain) in &received {
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{url} lost after a crash");
        assert_eq!(&r.text().await.unwrap(), chain);
    }
    assert_none(
        &server.store().await,
        &[
            (
                "orders left processing",
                "SELECT COUNT(*) FROM orders WHERE status = 'processing'",
            ),
            (
                "challenges left processing",
                "SELECT COUNT(*) FROM challenges WHERE status = 'processing'",
            ),
            (
                "challenge finished but its authorization not",
                "SELECT COUNT(*) FROM challenges c JOIN authzs a ON a.id = c.authz_id WHERE c.status IN ('valid', 'invalid') AND a.status = 'pending'",
            ),
            (
                "valid authorization without a valid challenge",
                "SELECT COUNT(*) FROM authzs a WHERE a.status = 'valid' AND NOT EXISTS (SELECT 1 FROM challenges c WHERE c.authz_id = a.id AND c.status = 'valid')",
            ),
            (
                "valid order without its certificate",
                "SELECT COUNT(*) FROM orders o WHERE o.status = 'valid' AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.id = o.cert_id)",
            ),
        ],
    )
    .await;

    assert_serials_accounted_for(&server).await;

    // New orders still succeed.
    let mut c = Raw::new(&server).await;
    c.register().await;
    let (_, chain) = issue(&c, &responder, &["after.test"]).await;
    openssl_verify(&server, &chain);
}
