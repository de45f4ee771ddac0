//! PostgreSQL over TLS with certificate verification (agency guide R32): the store connects to
//! a real server that accepts TLS only, verifying it against the right root, and refuses a
//! server its root did not sign, or a link without TLS.

use sceau_store::Store;
use sceau_testkit::Postgres;
use sceau_testkit::ra_upstream::UpstreamPki;

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_over_verified_tls_only() {
    // The PKI's certificate for localhost and 127.0.0.1, its chain, its key.
    let pki = UpstreamPki::new();
    let pg = Postgres::start_tls(&pki.path("tls.pem"), &pki.path("tls.key"));
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url,
        pki.root_pem().display()
    );
    let store = Store::open(&verified)
        .await
        .expect("TLS verified against the root");
    assert!(
        store
            .scalar("SELECT COUNT(*) FROM schema_migrations")
            .await
            .unwrap()
            > 0
    );

    // Another root did not sign the server's certificate: refused.
    let stranger = UpstreamPki::new();
    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url,
        stranger.root_pem().display()
    );
    let e = Store::open(&wrong)
        .await
        .err()
        .expect("a server another root signed is refused");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // Without TLS the server refuses the link (pg_hba.conf: hostssl only).
    let plain = format!("{}?sslmode=disable", pg.url);
    let e = Store::open(&plain)
        .await
        .err()
        .expect("a link without TLS is refused");
    assert!(
        e.to_string().contains("pg_hba") || e.to_string().contains("rejects"),
        "{e}"
    );
}
