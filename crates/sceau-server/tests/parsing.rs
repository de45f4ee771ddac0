//! Strict parsing of what clients send, over the wire against the real sceau-server binary
//! (issue 10, "Parsing"): the media type, the JWS protected header and payload (UTF-8, unique
//! member names), public-only JWKs, and IDNA rules for order names. Each refused request gets
//! its problem type and status, and changes nothing in the database.

mod support;

use sceau_wire::jws::Flattened;
use sceau_wire::{AccountKey, KeyKind, b64};
use serde_json::{Value, json};
use support::*;

async fn post_with_type(c: &Raw, url: &str, content_type: &str, jws: &Flattened) -> Resp {
    let r = c
        .http
        .post(url)
        .header("content-type", content_type)
        .body(serde_json::to_vec(jws).unwrap())
        .send()
        .await
        .unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

const NEW_ACCOUNT: &str = r#"{"termsOfServiceAgreed":true}"#;

#[tokio::test(flavor = "multi_thread")]
async fn content_type_is_exactly_jose_json_in_any_case() {
    let s = Server::start(&["--eab", "off"]);
    let payload: Value = serde_json::from_str(NEW_ACCOUNT).unwrap();
    for (i, wrong) in [
        "application/jose+jsonX",
        "application/jose+json2; charset=utf-8",
        "application/json",
        "application/jose+json;charset",
    ]
    .into_iter()
    .enumerate()
    {
        let c = Raw::new(&s).await;
        let url = c.dir.new_account.clone();
        let jws = c.sign(&url, Some(&payload)).await;
        let r = post_with_type(&c, &url, wrong, &jws).await;
        assert_eq!(
            (r.status, r.problem_type().as_str()),
            (415, "malformed"),
            "{wrong}: {}",
            r.text()
        );
        // The body was not read: the connection must not be reused.
        assert_eq!(r.headers["connection"], "close", "{wrong}");
        assert_eq!(counts(&s).await[0], i as i64, "{wrong} created an account");
        // Refused before the JWS was looked at: its nonce is still good.
        let r = post_with_type(&c, &url, "application/jose+json", &jws).await;
        assert_eq!(r.status, 201, "{wrong}, then the same JWS: {}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn media_type_case_and_parameters_are_accepted() {
    let s = Server::start(&["--eab", "off"]);
    for (i, right) in [
        "Application/JOSE+JSON",
        "application/jose+json; charset=utf-8",
        "APPLICATION/Jose+Json ;charset=\"UTF-8\"",
    ]
    .into_iter()
    .enumerate()
    {
        let c = Raw::new(&s).await;
        let url = c.dir.new_account.clone();
        let jws = c
            .sign(&url, Some(&serde_json::from_str(NEW_ACCOUNT).unwrap()))
            .await;
        let r = post_with_type(&c, &url, right, &jws).await;
        assert_eq!(r.status, 201, "{right}: {}", r.text());
        assert_eq!(counts(&s).await[0], i as i64 + 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwk_must_be_public_and_complete() {
    let s = Server::start(&["--eab", "off"]);
    let c = Raw::new(&s).await;
    let url = c.dir.new_account.clone();
    let public = serde_json::to_value(c.key.jwk()).unwrap();
    // Not the real scalar: what counts is that a private member is present at all.
    let d = b64::encode([0x5au8; 32]);

    let mut with_d = public.clone();
    with_d["d"] = d.clone().into();
    let mut with_k = public.clone();
    with_k["k"] = "c2VjcmV0".into();
    let mut without_y = public.clone();
    without_y.as_object_mut().unwrap().remove("y");
    for (what, jwk, needle) in [
        ("jwk with d", with_d, "\"d\""),
        ("jwk with k", with_k, "\"k\""),
        ("jwk without y", without_y, "\"y\""),
    ] {
        let header = json!({"alg": "ES256", "nonce": c.nonce().await, "url": url, "jwk": jwk});
        let jws = signed_bytes(
            &c.key,
            header.to_string().as_bytes(),
            NEW_ACCOUNT.as_bytes(),
        );
        let r = c.send(&url, &jws).await;
        assert_eq!(
            (r.status, r.problem_type().as_str()),
            (400, "badPublicKey"),
            "{what}: {}",
            r.text()
        );
        let detail = r.json()["detail"].as_str().unwrap_or("").to_owned();
        assert!(detail.contains(needle), "{what}: {detail}");
        assert!(!r.text().contains(&d), "the private value is not echoed");
    }
    assert_eq!(counts(&s).await, vec![0; 5]);

    // keyChange: the new key, in the inner JWS, must be public too; the account keeps its key.
    let mut c = c;
    c.register().await;
    let before = counts(&s).await;
    let kid = c.kid.clone().unwrap();
    let kc_url = c.dir.key_change.clone();
    let new_key = AccountKey::generate(KeyKind::P256).unwrap();
    let mut new_jwk = serde_json::to_value(new_key.jwk()).unwrap();
    new_jwk["d"] = d.clone().into();
    let inner = signed_bytes(
        &new_key,
        json!({"alg": "ES256", "url": kc_url, "jwk": new_jwk})
            .to_string()
            .as_bytes(),
        json!({"account": kid, "oldKey": c.key.jwk()})
            .to_string()
            .as_bytes(),
    );
    let r = c
        .post(&kc_url, Some(&serde_json::to_value(&inner).unwrap()))
        .await;
    assert_eq!(
        (r.status, r.problem_type().as_str()),
        (400, "badPublicKey"),
        "keyChange: {}",
        r.text()
    );
    // And `oldKey` may not carry one either.
    let mut old_jwk = serde_json::to_value(c.key.jwk()).unwrap();
    old_jwk["d"] = d.clone().into();
    let inner = sceau_wire::jws::sign(
        &new_key,
        sceau_wire::jws::Signer::Jwk,
        None,
        &kc_url,
        Some(
            json!({"account": kid, "oldKey": old_jwk})
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    let r = c
        .post(&kc_url, Some(&serde_json::to_value(&inner).unwrap()))
        .await;
    assert_eq!(
        (r.status, r.problem_type().as_str()),
        (400, "malformed"),
        "keyChange oldKey: {}",
        r.text()
    );
    assert!(r.text().contains("private-key member"), "{}", r.text());
    let r = c.post(&kid, None).await;
    assert_eq!(r.status, 200, "the old key still signs for the account");
    assert_eq!(counts(&s).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn header_and_payload_must_be_utf8_without_duplicate_members() {
    let s = Server::start(&["--eab", "off"]);
    let c = Raw::new(&s).await;
    let url = c.dir.new_account.clone();
    let jwk = serde_json::to_value(c.key.jwk()).unwrap();
    let header = |nonce: &str, extra: &[u8]| {
        let mut h =
            format!(r#"{{"alg":"ES256","nonce":"{nonce}","url":"{url}","jwk":{jwk}"#).into_bytes();
        h.extend_from_slice(extra);
        h.push(b'}');
        h
    };

    let cases: [(&str, &[u8], &[u8]); 5] = [
        (
            "invalid UTF-8 in an unknown header member",
            b",\"x-note\":\"caf\xe9\"",
            NEW_ACCOUNT.as_bytes(),
        ),
        (
            "an overlong UTF-8 encoding in the header",
            b",\"x-note\":\"\xc0\xaf\"",
            NEW_ACCOUNT.as_bytes(),
        ),
        (
            "a duplicate unknown header member",
            b",\"x-note\":1,\"x-note\":2",
            NEW_ACCOUNT.as_bytes(),
        ),
        (
            "invalid UTF-8 in the payload",
            b"",
            b"{\"termsOfServiceAgreed\":true,\"x-note\":\"\xff\"}",
        ),
        (
            "a duplicate payload member",
            b"",
            br#"{"termsOfServiceAgreed":false,"termsOfServiceAgreed":true}"#,
        ),
    ];
    for (what, extra, payload) in cases {
        let nonce = c.nonce().await;
        let jws = signed_bytes(&c.key, &header(&nonce, extra), payload);
        let r = c.send(&url, &jws).await;
        assert_eq!(
            (r.status, r.problem_type().as_str()),
            (400, "malformed"),
            "{what}: {}",
            r.text()
        );
        assert_eq!(counts(&s).await, vec![0; 5], "{what} created something");
    }
    // The same request, well-formed, is accepted.
    let nonce = c.nonce().await;
    let jws = signed_bytes(
        &c.key,
        &header(&nonce, ",\"x-note\":\"café\"".as_bytes()),
        NEW_ACCOUNT.as_bytes(),
    );
    let r = c.send(&url, &jws).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn order_names_follow_idna_rules() {
    let s = Server::start(&["--eab", "off"]);
    let mut c = Raw::new(&s).await;
    c.register().await;
    let before = counts(&s).await;
    for bad in [
        "xn--zz.test",
        "ab--cd.test",
        // decodes to "cafÉ", which IDNA maps to "café" = xn--caf-dma: no round trip
        "xn--caf-pia.test",
        // U+1F4A9, a symbol IDNA2008 disallows
        "xn--ls8h.test",
    ] {
        let r = c.new_order(&[bad]).await;
        assert_eq!(
            (r.status, r.problem_type().as_str()),
            (400, "rejectedIdentifier"),
            "{bad}: {}",
            r.text()
        );
        let sub = &r.json()["subproblems"][0];
        assert_eq!(sub["identifier"]["value"], bad, "{}", r.text());
        let detail = sub["detail"].as_str().unwrap();
        assert!(
            detail.contains("RFC 5891")
                || detail.contains("RFC 3492")
                || detail.contains("RFC 5892"),
            "{bad}: {detail}"
        );
        // One bad name refuses the whole order, good names with it included.
        let r = c.new_order(&["fine.test", bad]).await;
        assert_eq!(
            r.problem_type(),
            "rejectedIdentifier",
            "{bad} with a good name"
        );
    }
    assert_eq!(counts(&s).await, before, "refused orders wrote nothing");

    // A valid A-label, in upper case, is accepted and stored in lowercase.
    let r = c.new_order(&["XN--CAF-DMA.test"]).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["identifiers"][0]["value"], "xn--caf-dma.test");
}
