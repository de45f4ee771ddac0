//! What several instances on one database rely on (issue 14): instances starting together
//! apply each migration once, they share one nonce key, and a nonce is redeemed once whichever
//! instance sees it. On a real PostgreSQL server, and on SQLite where the same calls serve one
//! instance.

mod common;

use common::Backend;
use sceau_store::Store;

#[tokio::test(flavor = "multi_thread")]
async fn instances_starting_together_migrate_once() {
    let pg = sceau_testkit::Postgres::start();
    // Eight instances open the fresh database at the same moment.
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = pg.url.clone();
            tokio::spawn(async move { Store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("every instance starts"));
    }
    let applied = stores[0]
        .scalar("SELECT COUNT(*) FROM schema_migrations")
        .await
        .unwrap();
    let distinct = stores[0]
        .scalar("SELECT COUNT(DISTINCT version) FROM schema_migrations")
        .await
        .unwrap();
    assert_eq!(applied, distinct, "each version recorded once");
    assert!(applied >= 10, "{applied}");
}

/// `first` and `second`: two instances' stores (the same one on SQLite, one process).
async fn nonces_are_shared_and_redeemed_once(first: Store, second: Store) {
    let key = first.nonce_key("key-of-the-first").await.unwrap();
    assert_eq!(key, "key-of-the-first");
    // The second instance offers its own candidate and gets the first's.
    assert_eq!(second.nonce_key("key-of-the-second").await.unwrap(), key);
    assert!(first.redeem_nonce("n1", 100).await.unwrap());
    assert!(
        !second.redeem_nonce("n1", 100).await.unwrap(),
        "replay on the other"
    );
    assert!(
        !first.redeem_nonce("n1", 100).await.unwrap(),
        "replay on the same"
    );
    assert!(second.redeem_nonce("n2", 200).await.unwrap());
    // Forgetting the old ones keeps the recent ones refused.
    assert_eq!(first.forget_nonces_before(150).await.unwrap(), 1);
    assert!(!first.redeem_nonce("n2", 200).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn nonces_on_postgresql() {
    let b = Backend::Postgres(sceau_testkit::Postgres::start());
    let first = Store::open(&b.url()).await.unwrap();
    let second = Store::open(&b.url()).await.unwrap();
    nonces_are_shared_and_redeemed_once(first, second).await
}

#[tokio::test(flavor = "multi_thread")]
async fn nonces_on_sqlite() {
    let b = Backend::Sqlite(tempfile::tempdir().unwrap());
    let store = Store::open(&b.url()).await.unwrap();
    nonces_are_shared_and_redeemed_once(store.clone(), store).await
}
