//! http-01 against real HTTP servers on loopback, names resolved by a real knotd.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use sceau_wire::{Identifier, ProblemType};

fn challenge_path() -> String {
    format!("/.well-known/acme-challenge/{TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_body_validates_and_sends_the_domain_as_host() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let (l, port) = listener().await;
    let seen_host = Arc::new(Mutex::new(None));
    let seen = seen_host.clone();
    serve_http(
        l,
        Router::new().route(
            &challenge_path(),
            get(move |headers: HeaderMap| async move {
                *seen.lock().unwrap() = headers
                    .get(header::HOST)
                    .map(|h| h.to_str().unwrap().to_owned());
                // Trailing whitespace is allowed (RFC 8555 §8.3).
                format!("{KEY_AUTH}\r\n")
            }),
        ),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    v.http01(&Identifier::dns("www.test"), TOKEN, KEY_AUTH)
        .await
        .expect("valid");
    assert_eq!(
        seen_host.lock().unwrap().as_deref(),
        Some(format!("www.test:{port}").as_str())
    );
    // Upper case and a trailing dot are the same identifier.
    v.http01(&Identifier::dns("WWW.test."), TOKEN, KEY_AUTH)
        .await
        .expect("valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_body_is_incorrect_response() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let (l, port) = listener().await;
    serve_http(
        l,
        Router::new()
            .route(&challenge_path(), get(|| async { format!("{KEY_AUTH}x") }))
            .route(
                "/.well-known/acme-challenge/lead",
                get(|| async { format!("  {KEY_AUTH}") }),
            )
            .route(
                "/.well-known/acme-challenge/big",
                get(|| async { "x".repeat(100_000) }),
            )
            .route(
                "/.well-known/acme-challenge/page",
                get(|| async { "<html>internal secret</html>\n" }),
            ),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    let id = Identifier::dns("www.test");
    let err = v.http01(&id, TOKEN, KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(err.detail.contains("www.test"), "{err}");
    assert!(!err.detail.contains('\n'));
    // Only trailing whitespace is forgiven.
    let err = v.http01(&id, "lead", KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    let err = v.http01(&id, "big", KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(err.detail.contains("more than"), "{err}");
    // The body is described, never quoted: it may be an internal page (RFC 8555 §10.4).
    let err = v.http01(&id, "page", KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::IncorrectResponse, "{err}");
    assert!(
        err.detail
            .contains("a body of 29 bytes that is not the key authorization"),
        "{err}"
    );
    assert!(!err.detail.contains("secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_unauthorized() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let (l, port) = listener().await;
    serve_http(
        l,
        Router::new().route(
            "/.well-known/acme-challenge/other",
            get(|| async { KEY_AUTH }),
        ),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    let err = v
        .http01(&Identifier::dns("www.test"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    // Like Boulder: the server answered, but did not prove control.
    assert_eq!(err.kind, ProblemType::Unauthorized, "{err}");
    assert!(err.detail.contains("404"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_connection() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let port = sceau_testkit::free_port();
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    let err = v
        .http01(&Identifier::dns("www.test"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains(&port.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_as_connection() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let (l, port) = listener().await;
    // Accepts and never answers.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        timeout: std::time::Duration::from_secs(1),
        ..config(&knot)
    });
    let started = std::time::Instant::now();
    let err = v
        .http01(&Identifier::dns("www.test"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_missing_from_dns_are_dns_problems() {
    let knot = knot();
    knot.add_txt("txtonly", "x");
    let (l, port) = listener().await;
    serve_http(
        l,
        Router::new().route(&challenge_path(), get(|| async { KEY_AUTH })),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    for name in ["nothere.test", "txtonly.test"] {
        let err = v
            .http01(&Identifier::dns(name), TOKEN, KEY_AUTH)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ProblemType::Dns, "{err}");
        assert!(err.detail.contains(name), "{err}");
    }
    // A DNS server that does not answer is a dns problem too.
    let dead = validator(sceau_validate::ValidatorConfig {
        dns_server: Some(addr(sceau_testkit::free_port())),
        http01_port: port,
        timeout: std::time::Duration::from_secs(2),
        ..config(&knot)
    });
    let err = dead
        .http01(&Identifier::dns("www.test"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ProblemType::Dns | ProblemType::Connection),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_changes_are_seen_at_once() {
    let knot = knot();
    let (l, port) = listener().await;
    serve_http(
        l,
        Router::new().route(&challenge_path(), get(|| async { KEY_AUTH })),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    let id = Identifier::dns("late.test");
    assert_eq!(
        v.http01(&id, TOKEN, KEY_AUTH).await.unwrap_err().kind,
        ProblemType::Dns
    );
    knot.set_a("late", LOCALHOST);
    v.http01(&id, TOKEN, KEY_AUTH)
        .await
        .expect("no negative caching");
    knot.set_a("late", "127.0.0.2".parse().unwrap());
    // 127.0.0.2 is loopback on Linux but nothing listens there on this port.
    let err = v.http01(&id, TOKEN, KEY_AUTH).await.unwrap_err();
    assert_eq!(
        err.kind,
        ProblemType::Connection,
        "no positive caching: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_only_to_allowed_ports() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    knot.set_a("other", LOCALHOST);
    let (other_l, other_port) = listener().await;
    serve_http(
        other_l,
        Router::new().route(&challenge_path(), get(|| async { KEY_AUTH })),
    );
    let (l, port) = listener().await;
    let to_same_port = format!("http://other.test:{port}/final");
    let to_other_port = format!("http://other.test:{other_port}{}", challenge_path());
    serve_http(
        l,
        Router::new()
            .route("/final", get(|| async { KEY_AUTH }))
            .route(
                "/.well-known/acme-challenge/same",
                get(move || async move {
                    (StatusCode::FOUND, [(header::LOCATION, to_same_port)]).into_response()
                }),
            )
            .route(
                "/.well-known/acme-challenge/elsewhere",
                get(move || async move {
                    (
                        StatusCode::MOVED_PERMANENTLY,
                        [(header::LOCATION, to_other_port)],
                    )
                        .into_response()
                }),
            )
            .route(
                "/.well-known/acme-challenge/ftp",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, "ftp://other.test/x")],
                    )
                        .into_response()
                }),
            )
            .route(
                "/.well-known/acme-challenge/loop",
                get(|| async {
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, "/.well-known/acme-challenge/loop")],
                    )
                        .into_response()
                }),
            ),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    let id = Identifier::dns("www.test");
    v.http01(&id, "same", KEY_AUTH)
        .await
        .expect("redirect on the http-01 port is followed");

    let err = v.http01(&id, "elsewhere", KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains(&format!("port {other_port}")), "{err}");

    let err = v.http01(&id, "ftp", KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");

    let err = v.http01(&id, "loop", KEY_AUTH).await.unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains("redirects"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_identifier_uses_the_literal_address_as_host() {
    let knot = knot();
    let (l, port) = listener().await;
    let seen_host = Arc::new(Mutex::new(None));
    let seen = seen_host.clone();
    serve_http(
        l,
        Router::new().route(
            &challenge_path(),
            get(move |headers: HeaderMap| async move {
                *seen.lock().unwrap() = headers
                    .get(header::HOST)
                    .map(|h| h.to_str().unwrap().to_owned());
                KEY_AUTH
            }),
        ),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    v.http01(&Identifier::ip("127.0.0.1"), TOKEN, KEY_AUTH)
        .await
        .expect("valid");
    assert_eq!(
        seen_host.lock().unwrap().as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_what_http01_cannot_validate() {
    let knot = knot();
    let v = validator(config(&knot));
    let err = v
        .http01(&Identifier::dns("*.www.test"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Malformed, "{err}");
    let err = v
        .http01(&Identifier::dns("www.test"), "../../etc/passwd", KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Malformed, "{err}");
    let err = v
        .http01(&Identifier::ip("not-an-ip"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Malformed, "{err}");
    let err = v
        .http01(
            &Identifier {
                kind: "email".into(),
                value: "a@b".into(),
            },
            TOKEN,
            KEY_AUTH,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::UnsupportedIdentifier, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_https_accepts_any_certificate() {
    // HTTP on 127.0.0.1:P redirects to https://secure.test:P, served on 127.0.0.2:P with a
    // self-signed certificate (P is the http-01 port, so the redirect is allowed).
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let secure_ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    knot.set_a("secure", secure_ip);
    let (l, port) = listener().await;
    let tls_l = tokio::net::TcpListener::bind((secure_ip, port))
        .await
        .expect("bind 127.0.0.2");
    serve_https(tls_l, "secure.test", KEY_AUTH);
    let target = format!("https://secure.test:{port}/final");
    serve_http(
        l,
        Router::new().route(
            &challenge_path(),
            get(move || async move {
                (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
            }),
        ),
    );
    let v = validator(sceau_validate::ValidatorConfig {
        http01_port: port,
        ..config(&knot)
    });
    v.http01(&Identifier::dns("www.test"), TOKEN, KEY_AUTH)
        .await
        .expect("valid via https");
}
