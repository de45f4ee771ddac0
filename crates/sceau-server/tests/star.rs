//! STAR (RFC 8739, issue 16) over the wire against the real sceau-server binary, with lifetimes
//! of seconds: a series renewed by the server itself until its end-date, each certificate
//! checked by openssl (same key, §3.5's dates, valid when published, the chain); unauthenticated
//! GET only where agreed; cancellation and what follows it; every refused request with its
//! problem type and nothing changed; a deactivated account ends its series.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::*;

/// notBefore, notAfter, serial and public key of a certificate, as openssl prints them.
type Dates = (i64, i64, String, String);
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// What openssl reads in a PEM certificate: (notBefore, notAfter, serial, public key PEM).
fn openssl_fields(pem: &str) -> (i64, i64, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pem");
    std::fs::write(&path, pem).unwrap();
    let out = std::process::Command::new(sceau_testkit::require_tool("openssl"))
        .args([
            "x509",
            "-noout",
            "-dateopt",
            "iso_8601",
            "-startdate",
            "-enddate",
            "-serial",
            "-in",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_owned()
    };
    let date = |s: String| {
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
        time::PrimitiveDateTime::parse(&s, f)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .assume_utc()
            .unix_timestamp()
    };
    let key = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    (
        date(field("notBefore=")),
        date(field("notAfter=")),
        field("serial="),
        String::from_utf8(key.stdout).unwrap(),
    )
}

fn http_date(secs: i64) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(f)
        .unwrap()
}

/// newOrder with an `auto-renewal` object (and any other fields in `extra`).
async fn star_order(c: &Raw, names: &[&str], auto_renewal: Value, extra: Value) -> Resp {
    let ids: Vec<Value> = names
        .iter()
        .map(|n| json!({"type": "dns", "value": n}))
        .collect();
    let mut payload = json!({"identifiers": ids, "auto-renewal": auto_renewal});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            payload[k] = v;
        }
    }
    let url = c.dir.new_order.clone();
    c.post(&url, Some(&payload)).await
}

/// A STAR order for `name` made valid: returns (order JSON with `_url`, the CSR's key PEM).
async fn valid_series(
    c: &Raw,
    responder: &Http01,
    name: &str,
    auto_renewal: Value,
) -> (Value, String) {
    let r = star_order(c, &[name], auto_renewal, json!({})).await;
    assert_eq!(r.status, 201, "STAR newOrder: {}", r.text());
    let mut o = r.json();
    o["_url"] = json!(r.location());
    let ready = c.solve_http01(&o, responder).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let (csr, key) = csr(&[name]);
    let f = c.finalize(&o, &csr).await;
    assert_eq!(f.status, 200, "finalize: {}", f.text());
    let url = o["_url"].as_str().unwrap().to_owned();
    let mut done = c.poll(&url, &["processing"]).await;
    assert_eq!(done["status"], "valid", "{done}");
    done["_url"] = json!(url);
    let spki = std::process::Command::new("openssl")
        .args(["pkey", "-pubout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin
                .take()
                .unwrap()
                .write_all(key.serialize_pem().as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    (done, String::from_utf8(spki.stdout).unwrap())
}

fn order_id(order: &Value) -> String {
    order["_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_series_is_renewed_by_the_server_until_its_end_date() {
    let s = Server::start(&["--eab", "off", "--star-min-lifetime", "10s"]);
    s.add_host("star.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;

    // §3.2: the directory announces the terms.
    let dir: Value = c
        .http
        .get(s.directory_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        dir["meta"]["auto-renewal"],
        json!({"min-lifetime": 10, "max-duration": 365 * 86400, "allow-certificate-get": true})
    );

    let lifetime = 12;
    let end = unix_now() + 34;
    let (order, key) = valid_series(
        &c,
        &responder,
        "star.test",
        json!({"end-date": rfc3339(end), "lifetime": lifetime, "allow-certificate-get": true}),
    )
    .await;
    // §3.1.1: the terms reflected, lifetime-adjust raised to the server's padding (⌈2T/3⌉).
    let terms = &order["auto-renewal"];
    assert_eq!(terms["lifetime"], lifetime);
    assert_eq!(terms["lifetime-adjust"], 8);
    assert_eq!(terms["allow-certificate-get"], true);
    assert!(order.get("certificate").is_none(), "{order}");
    let star_url = order["star-certificate"].as_str().unwrap().to_owned();
    let adjust = 8;

    // Poll the rolling certificate without authentication (§3.4) until the series ends.
    // (fetched at, PEM, (notBefore, notAfter, serial, public key)) of each new certificate.
    let mut seen: Vec<(i64, String, Dates)> = Vec::new();
    let mut headers_checked = false;
    loop {
        let r = c.http.get(&star_url).send().await.unwrap();
        let at = unix_now();
        if r.status() == 403 {
            let p: Value = r.json().await.unwrap();
            assert_eq!(
                p["type"], "urn:ietf:params:acme:error:autoRenewalExpired",
                "{p}"
            );
            assert!(at >= end - 1, "expired at {at}, before the end-date {end}");
            break;
        }
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        let pem = r.text().await.unwrap();
        let fields = openssl_fields(&pem);
        if !headers_checked {
            // §3.3: the headers equal the certificate's own dates.
            assert_eq!(h["cert-not-before"], http_date(fields.0).as_str());
            assert_eq!(h["cert-not-after"], http_date(fields.1).as_str());
            assert_eq!(h["content-type"], "application/pem-certificate-chain");
            headers_checked = true;
        }
        if seen.last().map(|(_, _, f)| &f.2) != Some(&fields.2) {
            openssl_verify(&s, &pem);
            seen.push((at, pem, fields));
            // The order stays valid while it renews (§3.1.1).
            let o = c.post(order["_url"].as_str().unwrap(), None).await.json();
            assert_eq!(o["status"], "valid", "{o}");
        }
        assert!(at < end + 10, "the series never ended");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_eq!(
        seen.len(),
        3,
        "certificates seen: {:?}",
        seen.iter().map(|s| &s.2).collect::<Vec<_>>()
    );
    for (i, (at, _, (nb, na, _, pk))) in seen.iter().enumerate() {
        assert_eq!(pk, &key, "certificate {i} is not for the CSR's key");
        assert!(*na <= end, "certificate {i} outlives the end-date");
        assert!(
            at >= nb,
            "certificate {i} was published at {at}, before its notBefore {nb}"
        );
        if i > 0 {
            let (_, _, (_, prev_na, _, _)) = &seen[i - 1];
            // §3.5: nrd − adjust, nrd + T (or the end-date).
            assert_eq!(*nb, prev_na - adjust, "certificate {i}'s notBefore");
            assert_eq!(
                *na,
                (prev_na + lifetime).min(end),
                "certificate {i}'s notAfter"
            );
            // Published before the one it follows expired (§3.3: by half its lifetime).
            assert!(
                at < prev_na,
                "certificate {i} published at {at}, after {prev_na}"
            );
            eprintln!("certificate {i}: published {} s after it was due", at - nb);
        }
    }
    assert_eq!(
        seen.last().unwrap().2.1,
        end,
        "the last certificate ends at the end-date"
    );
    // Every certificate of the series is stored, and every serial accounted for.
    let store = s.store().await;
    assert_eq!(
        store.certs_of_order(&order_id(&order)).await.unwrap().len(),
        3
    );
    assert_serials_accounted_for(&s).await;

    // An expired series' order remains valid (§3.3).
    let o = c.post(order["_url"].as_str().unwrap(), None).await.json();
    assert_eq!(o["status"], "valid");

    // §3.1.2: a STAR certificate is not revoked through revokeCert; nothing changes.
    let der = sceau_wire::key::pem_decode_all(&seen[0].1, "CERTIFICATE").remove(0);
    let url = c.dir.revoke_cert.clone();
    let r = c
        .post(
            &url,
            Some(&json!({"certificate": sceau_wire::b64::encode(&der)})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.problem_type(), "autoRenewalRevocationNotSupported");
    let certs = store.certs_of_order(&order_id(&order)).await.unwrap();
    assert!(certs.iter().all(|c| c.revoked_at.is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancellation_agreement_and_refused_star_requests() {
    let s = Server::start(&[
        "--eab",
        "off",
        "--star-min-lifetime",
        "10s",
        "--star-max-duration",
        "1h",
    ]);
    for h in ["a.test", "b.test", "plain.test", "p.test"] {
        s.add_host(h);
    }
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let mut other = Raw::new(&s).await;
    other.register().await;
    let end = rfc3339(unix_now() + 1800);

    // Refused newOrders: malformed with a reason, and not a row written.
    let before = counts(&s).await;
    let refused = [
        (
            json!({"end-date": end, "lifetime": 5}),
            json!({}),
            "min-lifetime",
        ),
        (
            json!({"end-date": rfc3339(unix_now() + 7200), "lifetime": 60}),
            json!({}),
            "max-duration",
        ),
        (
            json!({"start-date": rfc3339(unix_now() + 600), "end-date": rfc3339(unix_now() + 300), "lifetime": 60}),
            json!({}),
            "after start-date",
        ),
        (
            json!({"end-date": end, "lifetime": 60}),
            json!({"notAfter": rfc3339(unix_now() + 900)}),
            "notBefore and notAfter",
        ),
        (
            json!({"end-date": end, "lifetime": 60, "renew": true}),
            json!({}),
            "unknown field",
        ),
        (
            json!({"end-date": end, "lifetime": 91 * 86400}),
            json!({}),
            "maximum certificate validity",
        ),
        (json!({"lifetime": 60}), json!({}), "end-date"),
    ];
    for (ar, extra, why) in refused {
        let r = star_order(&c, &["a.test"], ar.clone(), extra).await;
        assert_eq!(r.status, 400, "{ar}: {}", r.text());
        assert_eq!(r.problem_type(), "malformed", "{ar}");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(why),
            "{ar}: {}",
            r.text()
        );
    }
    assert_eq!(
        counts(&s).await,
        before,
        "a refused STAR order changed the database"
    );

    // A pending STAR order cannot be canceled.
    let p = star_order(
        &c,
        &["p.test"],
        json!({"end-date": end, "lifetime": 60}),
        json!({}),
    )
    .await;
    assert_eq!(p.status, 201);
    let r = c
        .post(&p.location(), Some(&json!({"status": "canceled"})))
        .await;
    assert_eq!(
        r.problem_type(),
        "autoRenewalCancellationInvalid",
        "{}",
        r.text()
    );
    assert_eq!(r.status, 400);

    // A series without the GET agreement.
    let (order, _) = valid_series(
        &c,
        &responder,
        "a.test",
        json!({"end-date": end, "lifetime": 10}),
    )
    .await;
    assert_eq!(order["auto-renewal"]["allow-certificate-get"], false);
    assert_eq!(order["auto-renewal"]["lifetime-adjust"], 7);
    let url = order["_url"].as_str().unwrap().to_owned();
    let star_url = order["star-certificate"].as_str().unwrap().to_owned();
    let r = c.http.get(&star_url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:ietf:params:acme:error:unauthorized", "{p}");
    let r = c.post(&star_url, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.contains_key("cert-not-after"));
    // Another account sees no such certificate, and cannot cancel the series.
    assert_eq!(other.post(&star_url, None).await.status, 404);
    let r = other.post(&url, Some(&json!({"status": "canceled"}))).await;
    assert_eq!(r.status, 404, "{}", r.text());
    // Only "canceled" is a change an order takes.
    let r = c.post(&url, Some(&json!({"status": "deactivated"}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.problem_type(), "malformed");
    assert_eq!(c.post(&url, None).await.json()["status"], "valid");

    // Cancel: the order says so, the certificate resource answers autoRenewalCanceled.
    let store = s.store().await;
    let issued_before = store.certs_of_order(&order_id(&order)).await.unwrap().len();
    let r = c.post(&url, Some(&json!({"status": "canceled"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let o = r.json();
    assert_eq!(o["status"], "canceled");
    let expires = time::OffsetDateTime::parse(
        o["expires"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!((expires.unix_timestamp() - unix_now()).abs() <= 5, "{o}");
    let r = c.post(&star_url, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.problem_type(), "autoRenewalCanceled");
    let r = c.post(&url, Some(&json!({"status": "canceled"}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.problem_type(), "autoRenewalCancellationInvalid");
    // Nothing is issued for it afterwards (its next one was due within 3 s).
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(store.certs_of_order(&order_id(&order)).await.unwrap().len() <= issued_before + 1);
    let settled = store.certs_of_order(&order_id(&order)).await.unwrap().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        store.certs_of_order(&order_id(&order)).await.unwrap().len(),
        settled
    );
    assert_eq!(
        store.order_by_id(&order_id(&order)).await.unwrap().status,
        "canceled"
    );
    assert_serials_accounted_for(&s).await;

    // An ordinary order is not canceled.
    let (plain, _) = issue(&c, &responder, &["plain.test"]).await;
    let r = c
        .post(
            plain["_url"].as_str().unwrap(),
            Some(&json!({"status": "canceled"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.problem_type(), "autoRenewalCancellationInvalid");

    // A deactivated account ends its series at its next renewal.
    let (b, _) = valid_series(
        &other,
        &responder,
        "b.test",
        json!({"end-date": end, "lifetime": 10, "allow-certificate-get": true}),
    )
    .await;
    let kid = other.kid.clone().unwrap();
    let r = other
        .post(&kid, Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = order_id(&b);
    let mut status = String::new();
    for _ in 0..60 {
        status = store.order_by_id(&id).await.unwrap().status;
        if status == "canceled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, "canceled");
    let r = c
        .http
        .get(b["star-certificate"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let events = store.audit_events(None, 0).await.unwrap();
    assert!(
        events.iter().any(|e| e.event == "star.canceled"
            && e.detail["order"] == id.as_str()
            && e.detail["by"] == "server: the account is deactivated"),
        "{events:?}"
    );
}
