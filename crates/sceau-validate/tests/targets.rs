//! What validation may connect to: a client that controls its challenge's answer (a redirect, a
//! DNS record) must not turn the CA against its own loopback, link-local services or ports it
//! did not mean to reach, nor read their answers back through the challenge's error.
//! Real sockets: the "internal" services are listeners on 127.0.0.1 and ::1 that count every
//! connection; names are resolved by a real knotd.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use sceau_validate::{AddressPolicy, ValidatorConfig};
use sceau_wire::{Identifier, ProblemType};
use tokio::net::TcpListener;

/// What the internal services answer; it must never reach a challenge's error.
const INTERNAL_PAGE: &str = "INTERNAL-ONLY admin console: db password hunter2";
const ALLOWED: &str = "127.0.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A service on `addr` that answers any request with [`INTERNAL_PAGE`] (or a TLS client with
/// garbage) and counts the connections it accepted.
async fn internal_service(addr: SocketAddr) -> Arc<AtomicUsize> {
    let l = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INTERNAL_PAGE}",
                    INTERNAL_PAGE.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    seen
}

fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Serves, on `addr`, `/.well-known/acme-challenge/<case>` as a 302 to `redirects[case]` and
/// `/final` as the key authorization.
fn redirector(l: TcpListener, redirects: HashMap<String, String>) {
    let redirects = Arc::new(redirects);
    serve_http(
        l,
        Router::new()
            .route("/final", get(|| async { KEY_AUTH }))
            .route(
                "/.well-known/acme-challenge/{case}",
                get(move |Path(case): Path<String>| {
                    let redirects = redirects.clone();
                    async move {
                        match redirects.get(&case) {
                            Some(to) => (StatusCode::FOUND, [(header::LOCATION, to.clone())])
                                .into_response(),
                            None => StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                }),
            ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_into_the_ca_host_are_refused_without_connecting() {
    let knot = knot();
    let port = sceau_testkit::free_port();
    let other_port = sceau_testkit::free_port();
    let v4_internal = internal_service(SocketAddr::new(LOCALHOST, port)).await;
    let v6 = has_ipv6_loopback();
    let v6_internal = if v6 {
        Some(internal_service(SocketAddr::new(ip("::1"), port)).await)
    } else {
        eprintln!("no IPv6 loopback on this machine: the [::1] redirect case is not run");
        None
    };
    // A listener on the allowed address but another port: the port rule alone must refuse it.
    let other_port_service = internal_service(SocketAddr::new(ip(ALLOWED), other_port)).await;

    knot.set_a("www", ip(ALLOWED));
    knot.set_a("internal", LOCALHOST);
    knot.set_a("mapped", ip("::ffff:127.0.0.1"));
    knot.set_a("mixed", LOCALHOST);
    knot.add_record("mixed", "A", ALLOWED);

    let mut cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "v4",
            format!("http://127.0.0.1:{port}/internal-path-secret?q=1"),
            vec!["address 127.0.0.1 is loopback".into()],
        ),
        (
            "metadata",
            format!("http://169.254.169.254:{port}/latest/meta-data/"),
            vec!["address 169.254.169.254 is link-local".into()],
        ),
        (
            "hex",
            format!("http://0x7f000001:{port}/"),
            vec!["address 127.0.0.1 is loopback".into()],
        ),
        (
            "decimal",
            format!("http://2130706433:{port}/"),
            vec!["address 127.0.0.1 is loopback".into()],
        ),
        (
            "short",
            format!("http://127.1:{port}/"),
            vec!["address 127.0.0.1 is loopback".into()],
        ),
        (
            "unspecified",
            format!("http://0.0.0.0:{port}/"),
            vec!["address 0.0.0.0 is unspecified".into()],
        ),
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            vec!["address 127.0.0.1 is loopback".into()],
        ),
        (
            "name",
            format!("http://internal.test:{port}/"),
            vec![
                "internal.test has no address".into(),
                "address 127.0.0.1 is loopback".into(),
            ],
        ),
        (
            "mapped-name",
            format!("http://mapped.test:{port}/"),
            vec![
                "mapped.test has no address".into(),
                "address 127.0.0.1 is loopback".into(),
            ],
        ),
        (
            "port",
            format!("http://{ALLOWED}:{other_port}/"),
            vec![format!("port {other_port} is not 80, 443 or {port}")],
        ),
        (
            "loop",
            "/.well-known/acme-challenge/loop".to_owned(),
            vec!["more than 10 redirects".into()],
        ),
    ];
    if v6 {
        cases.push((
            "v6",
            format!("http://[::1]:{port}/"),
            vec!["address ::1 is loopback".into()],
        ));
    }
    let mut redirects: HashMap<String, String> = cases
        .iter()
        .map(|(case, to, _)| (case.to_string(), to.clone()))
        .collect();
    redirects.insert("mixed".into(), format!("http://mixed.test:{port}/final"));
    let l = TcpListener::bind((ip(ALLOWED), port)).await.unwrap();
    redirector(l, redirects);

    let v = validator(ValidatorConfig {
        http01_port: port,
        address_policy: AddressPolicy::default().allow(format!("{ALLOWED}/32").parse().unwrap()),
        ..config(&knot)
    });
    let id = Identifier::dns("www.test");

    // A name with one allowed and one refused address: only the allowed one is contacted.
    v.http01(&id, "mixed", KEY_AUTH)
        .await
        .expect("validated through the allowed address of mixed.test");

    for (case, _, wants) in &cases {
        let err = v.http01(&id, case, KEY_AUTH).await.unwrap_err();
        assert_eq!(err.kind, ProblemType::Connection, "{case}: {err}");
        for want in wants {
            assert!(err.detail.contains(want.as_str()), "{case}: {err}");
        }
        assert!(!err.detail.contains("hunter2"), "{case}: {err}");
        assert!(!err.detail.contains("INTERNAL"), "{case}: {err}");
        // The target's path is its own text, not repeated back.
        assert!(
            !err.detail.contains("internal-path-secret"),
            "{case}: {err}"
        );
    }
    assert_eq!(
        v4_internal.load(Ordering::SeqCst),
        0,
        "127.0.0.1 was reached"
    );
    if let Some(seen) = v6_internal {
        assert_eq!(seen.load(Ordering::SeqCst), 0, "::1 was reached");
    }
    assert_eq!(
        other_port_service.load(Ordering::SeqCst),
        0,
        "a port outside RFC 8555 §8.3's was reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_refuses_loopback_for_every_method() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    let port = sceau_testkit::free_port();
    let internal = internal_service(SocketAddr::new(LOCALHOST, port)).await;
    // No allow list at all: the default a server starts with.
    let v = validator(ValidatorConfig {
        http01_port: port,
        tlsalpn01_port: port,
        address_policy: AddressPolicy::default(),
        ..config(&knot)
    });

    for id in [Identifier::ip("127.0.0.1"), Identifier::dns("www.test")] {
        let err = v.http01(&id, TOKEN, KEY_AUTH).await.unwrap_err();
        assert_eq!(err.kind, ProblemType::Connection, "{err}");
        assert!(
            err.detail
                .contains("address 127.0.0.1 is loopback; the CA does not connect there"),
            "{err}"
        );
        let err = v.tls_alpn01(&id, KEY_AUTH).await.unwrap_err();
        assert_eq!(err.kind, ProblemType::Connection, "{err}");
        assert!(
            err.detail.contains("address 127.0.0.1 is loopback"),
            "{err}"
        );
    }
    let err = v
        .http01(&Identifier::ip("::ffff:127.0.0.1"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(
        err.detail.contains("address 127.0.0.1 is loopback"),
        "{err}"
    );
    let err = v
        .tls_alpn01(&Identifier::ip("169.254.169.254"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains("is link-local"), "{err}");
    assert_eq!(internal.load(Ordering::SeqCst), 0, "loopback was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_list_wins_over_allow_list() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    knot.set_a("denied", ip(ALLOWED));
    let port = sceau_testkit::free_port();
    let denied = internal_service(SocketAddr::new(ip(ALLOWED), port)).await;
    let l = TcpListener::bind((LOCALHOST, port)).await.unwrap();
    redirector(
        l,
        HashMap::from([("to-denied".to_owned(), format!("http://{ALLOWED}:{port}/"))]),
    );
    let v = validator(ValidatorConfig {
        http01_port: port,
        tlsalpn01_port: port,
        address_policy: AddressPolicy::default()
            .allow("127.0.0.0/8".parse().unwrap())
            .deny(format!("{ALLOWED}/32").parse().unwrap()),
        ..config(&knot)
    });
    let want = format!("address {ALLOWED} is in the denied network {ALLOWED}/32");

    let err = v
        .http01(&Identifier::ip(ALLOWED), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains(&want), "{err}");
    let err = v
        .http01(&Identifier::dns("denied.test"), TOKEN, KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains(&want), "{err}");
    let err = v
        .http01(&Identifier::dns("www.test"), "to-denied", KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains(&want), "{err}");
    let err = v
        .tls_alpn01(&Identifier::dns("denied.test"), KEY_AUTH)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProblemType::Connection, "{err}");
    assert!(err.detail.contains(&want), "{err}");
    assert_eq!(
        denied.load(Ordering::SeqCst),
        0,
        "the denied address was reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_connects_only_to_allowed_addresses_of_a_name() {
    let knot = knot();
    knot.set_a("www", LOCALHOST);
    knot.add_record("www", "A", ALLOWED);
    let port = sceau_testkit::free_port();
    let internal = internal_service(SocketAddr::new(LOCALHOST, port)).await;
    let (cert, key) = acme_cert("www.test", Some(good_ext(KEY_AUTH)));
    let l = TcpListener::bind((ip(ALLOWED), port)).await.unwrap();
    let mut sni = serve_tls(
        l,
        TlsResponder {
            cert,
            key,
            alpn: vec![b"acme-tls/1".to_vec()],
            tls12_only: false,
        },
    );
    let v = validator(ValidatorConfig {
        tlsalpn01_port: port,
        address_policy: AddressPolicy::default().allow(format!("{ALLOWED}/32").parse().unwrap()),
        ..config(&knot)
    });
    v.tls_alpn01(&Identifier::dns("www.test"), KEY_AUTH)
        .await
        .expect("validated on the allowed address");
    assert_eq!(sni.recv().await.unwrap().as_deref(), Some("www.test"));
    assert_eq!(internal.load(Ordering::SeqCst), 0, "127.0.0.1 was reached");
}
