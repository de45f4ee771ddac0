//! The OCSP responder end to end (RFC 6960, RFC 5019), checked by OpenSSL's client
//! (`openssl ocsp`), compared with OpenSSL's own responder (`openssl ocsp -index … -port`) on
//! the same certificates, and fed the malformed requests real clients never send.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Http01, Raw, Server, issue};

const MALFORMED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x01];
const TRY_LATER: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x03];
const UNAUTHORIZED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x06];

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new(sceau_testkit::require_tool("openssl"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Leaf, issuer and root files of an issued chain.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(s: &Server) -> Files {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::copy(s.root_pem(), f.path("root.pem")).unwrap();
        f
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// Writes `<name>.pem` (the leaf) and `issuer.pem`; returns the leaf's serial (hex).
    fn chain(&self, name: &str, chain: &str) -> String {
        let blocks: Vec<&str> = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        std::fs::write(self.path(&format!("{name}.pem")), blocks[0]).unwrap();
        std::fs::write(self.path("issuer.pem"), blocks[1]).unwrap();
        let der = sceau_wire::key::pem_decode_all(chain, "CERTIFICATE").remove(0);
        sceau_ca::inspect::cert_info(&der).unwrap().serial_hex
    }
}

/// `openssl ocsp` against `url` for the leaf `<name>.pem` (or `-serial`), with `extra`.
fn query(f: &Files, url: &str, target: &[&str], extra: &[&str]) -> String {
    let issuer = f.path("issuer.pem");
    let root = f.path("root.pem");
    let mut args = vec![
        "ocsp",
        "-issuer",
        &issuer,
        "-url",
        url,
        "-CAfile",
        &root,
        "-resp_text",
        "-timeout",
        "10",
    ];
    // A digest option applies to the -cert or -serial after it.
    args.extend_from_slice(extra);
    args.extend_from_slice(target);
    let (_, text) = openssl(&args);
    text
}

async fn responses_of(s: &Server, serial: &str) -> i64 {
    let store = s.store().await;
    let sql: &'static str = Box::leak(
        format!("SELECT COUNT(*) FROM ocsp_responses WHERE serial = '{serial}'").into_boxed_str(),
    );
    store.scalar(sql).await.unwrap()
}

/// Waits until the job has stored `want` responses for `serial`.
async fn wait_responses(s: &Server, serial: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = responses_of(s, serial).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{serial}: {n} OCSP responses, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn revoke(c: &Raw, chain: &str, reason: u8) {
    let der = sceau_wire::key::pem_decode_all(chain, "CERTIFICATE").remove(0);
    let url = c.dir.revoke_cert.clone();
    let r = c
        .post(
            &url,
            Some(&json!({"certificate": sceau_wire::b64::encode(&der), "reason": reason})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_sees_good_revoked_and_unknown_as_openssls_own_responder_does() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("a.test");
    s.add_host("b.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let (_, chain_a) = issue(&c, &responder, &["a.test"]).await;
    let (_, chain_b) = issue(&c, &responder, &["b.test"]).await;
    let f = Files::new(&s);
    let serial_a = f.chain("a", &chain_a);
    let serial_b = f.chain("b", &chain_b);
    let url = format!("{}/ocsp", s.revocation_url());

    // Pre-signed by the job, both CertID hash algorithms, without a request.
    wait_responses(&s, &serial_a, 2).await;
    wait_responses(&s, &serial_b, 2).await;

    let a = f.path("a.pem");
    for extra in [&[][..], &["-sha256"][..]] {
        let text = query(&f, &url, &["-cert", &a], extra);
        assert!(text.contains("Response verify OK"), "{text}");
        assert!(text.contains(&format!("{a}: good")), "{text}");
        assert!(
            text.contains("This Update:") && text.contains("Next Update:"),
            "{text}"
        );
        // OpenSSL sends a nonce by default; pre-signed answers carry none (RFC 5019 §2.2.1).
        assert!(text.contains("WARNING: no nonce in response"), "{text}");
        // The delegated responder is in the response and named by key.
        assert!(text.contains("Responder Id:"), "{text}");
        assert!(text.contains("OCSP Signing"), "{text}");
    }

    // Revoked via ACME with keyCompromise: seen within seconds, with reason and time.
    revoke(&c, &chain_a, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = query(&f, &url, &["-cert", &a], &["-no_nonce"]);
        if text.contains(&format!("{a}: revoked")) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.contains(&format!("{a}: revoked")), "{text}");
    assert!(text.contains("Reason: keyCompromise"), "{text}");
    assert!(text.contains("Revocation Time:"), "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    let text = query(&f, &url, &["-cert", &a], &["-sha256", "-no_nonce"]);
    assert!(text.contains("Reason: keyCompromise"), "{text}");
    // The job signs the revoked responses ahead too.
    wait_responses(&s, &serial_a, 2).await;

    // A serial never issued: unknown, signed.
    let never = "0x7E57AB1E00000000000000000000000001";
    let text = query(&f, &url, &["-serial", never], &["-no_nonce"]);
    assert!(text.contains(": unknown"), "{text}");
    assert!(text.contains("Response verify OK"), "{text}");

    // OpenSSL's own responder over an index of the same certificates gives the same statuses.
    let b = f.path("b.pem");
    let expiry = |pem: &str| {
        let (_, t) = openssl(&["x509", "-in", pem, "-noout", "-enddate"]);
        let date = t.trim().trim_start_matches("notAfter=").to_owned();
        let ts = time::PrimitiveDateTime::parse(
            date.trim_end_matches(" GMT"),
            time::macros::format_description!(
                "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
            ),
        )
        .unwrap();
        format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            ts.year() % 100,
            u8::from(ts.month()),
            ts.day(),
            ts.hour(),
            ts.minute(),
            ts.second()
        )
    };
    let rev_time = time::OffsetDateTime::now_utc();
    let rev = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z,keyCompromise",
        rev_time.year() % 100,
        u8::from(rev_time.month()),
        rev_time.day(),
        rev_time.hour(),
        rev_time.minute(),
        rev_time.second()
    );
    let index = format!(
        "R\t{}\t{rev}\t{}\tunknown\t/CN=a.test\nV\t{}\t\t{}\tunknown\t/CN=b.test\n",
        expiry(&a),
        serial_a.to_uppercase(),
        expiry(&b),
        serial_b.to_uppercase()
    );
    std::fs::write(f.path("index.txt"), index).unwrap();
    let (rkey, rcert) = (f.path("ref.key"), f.path("ref.pem"));
    let (ok, text) = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=reference responder",
        "-days",
        "2",
        "-keyout",
        &rkey,
        "-out",
        &rcert,
    ]);
    assert!(ok, "{text}");
    let port = sceau_testkit::free_port();
    let port_s = port.to_string();
    let mut reference = Command::new(sceau_testkit::require_tool("openssl"))
        .args([
            "ocsp",
            "-index",
            &f.path("index.txt"),
            "-port",
            &port_s,
            "-rsigner",
            &rcert,
            "-rkey",
            &rkey,
            "-CA",
            &f.path("issuer.pem"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ref_url = format!("http://127.0.0.1:{port}");
    // Ready once it answers (a bare connection would count as a request to it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !query(
        &f,
        &ref_url,
        &["-serial", "0x01"],
        &["-no_nonce", "-VAfile", &rcert],
    )
    .contains("Response verify OK")
    {
        assert!(
            Instant::now() < deadline,
            "the reference responder does not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for target in [
        vec!["-cert", a.as_str()],
        vec!["-cert", b.as_str()],
        vec!["-serial", never],
    ] {
        let ours = query(&f, &url, &target, &["-no_nonce"]);
        let theirs = query(&f, &ref_url, &target, &["-no_nonce", "-VAfile", &rcert]);
        let status = |t: &str| {
            ["good", "revoked", "unknown"]
                .into_iter()
                .find(|w| t.contains(&format!(": {w}")))
                .map(str::to_owned)
        };
        assert!(theirs.contains("Response verify OK"), "{theirs}");
        assert_eq!(
            status(&ours),
            status(&theirs),
            "ours:\n{ours}\nreference:\n{theirs}"
        );
        assert!(status(&ours).is_some(), "{ours}");
        assert_eq!(
            ours.contains("Reason: keyCompromise"),
            theirs.contains("Reason: keyCompromise"),
            "ours:\n{ours}\nreference:\n{theirs}"
        );
    }
    let _ = reference.kill();
    let _ = reference.wait();
}

fn b64_std(der: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn reqout(f: &Files, target: &[&str], extra: &[&str]) -> Vec<u8> {
    let out = f.path("req.der");
    let issuer = f.path("issuer.pem");
    let mut args = vec!["ocsp", "-issuer", &issuer, "-reqout", &out];
    args.extend_from_slice(target);
    args.extend_from_slice(extra);
    let (ok, text) = openssl(&args);
    assert!(ok, "{text}");
    std::fs::read(out).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn get_form_caching_headers_and_bad_input() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("g.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let (_, chain) = issue(&c, &responder, &["g.test"]).await;
    let f = Files::new(&s);
    let serial = f.chain("g", &chain);
    wait_responses(&s, &serial, 2).await;
    let url = format!("{}/ocsp", s.revocation_url());
    let http = support::http_client(&s.root_pem());

    // GET: base64 of the DER request, with `/` `+` `=` percent-encoded (RFC 6960 App. A.1).
    let der = reqout(&f, &["-cert", &f.path("g.pem")], &["-no_nonce"]);
    let encoded = b64_std(&der)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let r = http.get(format!("{url}/{encoded}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/ocsp-response");
    let cc = h["cache-control"].to_str().unwrap().to_owned();
    let max_age: i64 = cc
        .split(',')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .unwrap()
        .parse()
        .unwrap();
    // Up to nextUpdate: 4 days from a thisUpdate a minute back, by default.
    assert!((4 * 86400 - 600..=4 * 86400).contains(&max_age), "{cc}");
    assert!(
        h.contains_key("last-modified") && h.contains_key("expires"),
        "{h:?}"
    );
    let etag = h["etag"].to_str().unwrap().to_owned();
    let body = r.bytes().await.unwrap();
    std::fs::write(f.path("resp.der"), &body).unwrap();
    let (_, text) = openssl(&[
        "ocsp",
        "-respin",
        &f.path("resp.der"),
        "-issuer",
        &f.path("issuer.pem"),
        "-cert",
        &f.path("g.pem"),
        "-CAfile",
        &f.path("root.pem"),
        "-resp_text",
    ]);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": good"), "{text}");
    // The same response unescaped, and as POST; a conditional GET is 304.
    let raw = http
        .get(format!("{url}/{}", b64_std(&der)))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.bytes().await.unwrap(), body);
    let post = http
        .post(&url)
        .header("content-type", "application/ocsp-request")
        .body(der.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(post.bytes().await.unwrap(), body);
    let r = http
        .get(format!("{url}/{encoded}"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let before = s
        .store()
        .await
        .scalar("SELECT COUNT(*) FROM ocsp_responses")
        .await
        .unwrap();
    let ocsp_body = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/ocsp-response");
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.bytes().await.unwrap().to_vec()
    };
    // GET with bad base64, and with none.
    for path in ["not*base64!", "%zz", ""] {
        let r = http.get(format!("{url}/{path}")).send().await.unwrap();
        assert_eq!(ocsp_body(r).await, MALFORMED, "GET {path:?}");
    }
    let post = |body: Vec<u8>| {
        http.post(&url)
            .header("content-type", "application/ocsp-request")
            .body(body)
            .send()
    };
    // POST garbage DER, and a valid request with trailing bytes.
    assert_eq!(
        ocsp_body(post(b"\x30\x82garbage".to_vec()).await.unwrap()).await,
        MALFORMED
    );
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(ocsp_body(post(trailing).await.unwrap()).await, MALFORMED);
    // Two CertIDs in one request (RFC 5019 §2.1.1 allows one).
    let two = reqout(
        &f,
        &["-cert", &f.path("g.pem"), "-serial", "0x01"],
        &["-no_nonce"],
    );
    assert_eq!(ocsp_body(post(two).await.unwrap()).await, MALFORMED);
    // An issuer we do not serve (the root): unauthorized, unsigned.
    std::fs::copy(f.path("root.pem"), f.path("issuer.pem")).unwrap();
    let foreign = reqout(&f, &["-serial", "0x01"], &["-no_nonce"]);
    assert_eq!(ocsp_body(post(foreign).await.unwrap()).await, UNAUTHORIZED);
    // Oversized: 413 without reading it; another media type: 415.
    let r = post(vec![0x30; 5000]).await.unwrap();
    assert_eq!(r.status(), 413);
    let r = http
        .post(&url)
        .header("content-type", "application/octet-stream")
        .body(der.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Nothing stored by any of it.
    let after = s
        .store()
        .await
        .scalar("SELECT COUNT(*) FROM ocsp_responses")
        .await
        .unwrap();
    assert_eq!(before, after);
}

/// Requests for invented serials cannot make the responder sign without bound: past the
/// on-demand budget (50 a second, as many in a burst) the answer is an unsigned tryLater,
/// and nothing is written to the database.
#[tokio::test(flavor = "multi_thread")]
async fn invented_serials_are_answered_within_a_signing_budget() {
    let s = Server::start(&["--eab", "off"]);
    s.add_host("u.test");
    let responder = Http01::start(s.http01_port).await;
    let mut c = Raw::new(&s).await;
    c.register().await;
    let (_, chain) = issue(&c, &responder, &["u.test"]).await;
    let f = Files::new(&s);
    let serial = f.chain("u", &chain);
    wait_responses(&s, &serial, 2).await;
    let url = format!("{}/ocsp", s.revocation_url());
    // Without a nonce the serial's 8 octets end the DER: vary them.
    let template = reqout(&f, &["-serial", "0x1122334455667788"], &["-no_nonce"]);
    assert_eq!(
        &template[template.len() - 8..],
        &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
    );
    let before = s
        .store()
        .await
        .scalar("SELECT COUNT(*) FROM ocsp_responses")
        .await
        .unwrap();
    let http = support::http_client(&s.root_pem());
    let start = Instant::now();
    let (mut signed, mut later) = (0u32, 0u32);
    for i in 0..200u32 {
        let mut der = template.clone();
        let n = der.len();
        der[n - 4..].copy_from_slice(&i.to_be_bytes());
        let r = http
            .post(&url)
            .header("content-type", "application/ocsp-request")
            .body(der)
            .send()
            .await
            .unwrap();
        let body = r.bytes().await.unwrap();
        if body.as_ref() == TRY_LATER {
            later += 1;
        } else {
            assert!(body.len() > 100, "a signed answer: {body:?}");
            signed += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(
        later > 0,
        "200 invented serials in {secs:.2} s were all signed"
    );
    assert!(
        f64::from(signed) <= 50.0 + 50.0 * secs + 1.0,
        "{signed} signed in {secs:.2} s"
    );
    let after = s
        .store()
        .await
        .scalar("SELECT COUNT(*) FROM ocsp_responses")
        .await
        .unwrap();
    assert_eq!(before, after, "unknown answers are not stored");
    // The known certificate is still answered from its pre-signed response.
    let text = query(&f, &url, &["-cert", &f.path("u.pem")], &["-no_nonce"]);
    assert!(text.contains(": good"), "{text}");
}
