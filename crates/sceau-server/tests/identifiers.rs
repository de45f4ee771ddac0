//! Identifier policy over the wire (issue 10): `localhost`, loopback, unspecified and
//! link-local identifiers and the names of the server's own certificate are refused at newOrder
//! by default, with a subproblem per identifier and nothing stored; the operator's settings lift
//! exactly what they name.

mod support;

use sceau_store::Table;
use support::*;

async fn orders_and_authzs(s: &Server) -> Vec<i64> {
    rows(&s.store().await, &[Table::Orders, Table::Authzs]).await
}

fn refused_values(r: &Resp) -> Vec<String> {
    r.json()["subproblems"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .map(|s| s["identifier"]["value"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_and_special_identifiers_are_refused_by_default() {
    let s = Server::start(&["--eab", "off"]);
    let mut c = Raw::new(&s).await;
    c.register().await;
    let before = orders_and_authzs(&s).await;
    for name in [
        "localhost",
        "app.localhost",
        "127.0.0.1",
        "127.0.0.2",
        "::1",
        "0.0.0.0",
        "169.254.169.254",
        "fe80::1",
        "224.0.0.1",
        "x.invalid",
    ] {
        let r = c.new_order(&[name, "fine.test"]).await;
        assert_eq!(
            r.status,
            400,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.problem_type(), "rejectedIdentifier", "{name}");
        assert_eq!(refused_values(&r), [name], "only {name} is refused");
    }
    assert_eq!(orders_and_authzs(&s).await, before, "nothing was stored");
    assert_eq!(c.new_order(&["fine.test"]).await.status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_own_names_are_refused_unless_allowed_and_lab_settings_lift_only_theirs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sceau.toml");
    std::fs::write(&config, "tls_names = [\"acme.corp.test\"]\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let s = Server::start(&[
        "--eab",
        "off",
        "--allow-wildcards",
        "--allow-local-identifiers",
        "--config",
        &config,
    ]);
    let mut c = Raw::new(&s).await;
    c.register().await;
    let before = orders_and_authzs(&s).await;
    // The listener's address, "localhost" and the configured name are the server's own.
    for name in ["127.0.0.1", "localhost", "acme.corp.test", "*.corp.test"] {
        let r = c.new_order(&[name]).await;
        assert_eq!(
            r.problem_type(),
            "rejectedIdentifier",
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let detail = r.json()["subproblems"][0]["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(detail.contains("own certificate"), "{name}: {detail}");
    }
    assert_eq!(orders_and_authzs(&s).await, before);
    // Local identifiers that are not the server's own are allowed by the lab setting…
    for name in ["127.0.0.2", "app.localhost", "169.254.10.10"] {
        assert_eq!(c.new_order(&[name]).await.status, 201, "{name}");
    }
    // …but addresses that name no host stay refused.
    for name in ["0.0.0.0", "224.0.0.1"] {
        assert_eq!(
            c.new_order(&[name]).await.problem_type(),
            "rejectedIdentifier",
            "{name}"
        );
    }
    drop(s);

    let s = Server::start(&[
        "--eab",
        "off",
        "--allow-local-identifiers",
        "--allow-server-names",
        "--config",
        &config,
    ]);
    let mut c = Raw::new(&s).await;
    c.register().await;
    for name in ["127.0.0.1", "localhost", "acme.corp.test"] {
        assert_eq!(c.new_order(&[name]).await.status, 201, "{name}");
    }
}
