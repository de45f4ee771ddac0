//! Storage faults, made for real: SQLite on a tmpfs that is filled or remounted read-only, and
//! a PostgreSQL server switched to read-only transactions or stopped. Each fault must come back
//! as `StoreError::Unavailable` with its condition, change nothing, and go away by itself when
//! the storage recovers, on the same `Store`.

mod common;

use sceau_store::*;
use sceau_testkit::{Postgres, Tmpfs};

fn account(id: &str) -> AccountRecord {
    common::account(id, &format!("thumb-{id}"))
}

fn created(order_id: &str) -> AuditEntry<'_> {
    AuditEntry {
        event: "order.created",
        account_id: Some("a1"),
        client_ip: None,
        detail: serde_json::json!({ "order": order_id }),
    }
}

async fn create_order(store: &Store, name: &str) -> Result<OrderRecord> {
    let (o, a) = common::order("a1", name, &["http-01", "dns-01", "tls-alpn-01"]);
    store.create_order(&o, &[a], &created(&o.id)).await?;
    Ok(o)
}

#[track_caller]
fn assert_fault<T: std::fmt::Debug>(r: Result<T>, want: StorageFault, what: &str) {
    match r {
        Err(StoreError::Unavailable { condition, detail }) => {
            assert_eq!(condition, want, "{what}: {detail}");
        }
        other => panic!("{what}: expected a {want} storage fault, got {other:?}"),
    }
}

/// A single-row insert and a transaction of many rows, both refused as `want` (`on` says where
/// the store is).
async fn assert_writes_refused(store: &Store, want: StorageFault, on: &str) {
    assert_fault(
        store.insert_account(&account("a2")).await,
        want,
        &format!("insert {on}"),
    );
    assert_fault(
        create_order(store, "b.test").await,
        want,
        &format!("transaction {on}"),
    );
}

/// After refused writes: reads still work (`first` reads back as created), and no table
/// gained a row since `before`.
async fn assert_nothing_written(store: &Store, first: &OrderRecord, before: &[i64]) {
    assert_eq!(
        store.order_by_id(&first.id).await.unwrap().status,
        "pending"
    );
    assert_eq!(
        counts(store).await,
        before,
        "a refused write left rows behind"
    );
}

/// Rows in every table the writes above touch.
async fn counts(store: &Store) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        Table::Accounts,
        Table::Orders,
        Table::Authzs,
        Table::Challenges,
        Table::Audit,
    ] {
        out.push(store.count(t).await.unwrap());
    }
    out
}

#[tokio::test]
async fn sqlite_full_disk_fails_writes_as_disk_full_keeps_reads_and_resumes() {
    let disk = Tmpfs::mount(8);
    let url = format!("sqlite://{}", disk.path().join("sceau.db").display());
    let store = Store::open(&url).await.unwrap();
    store.insert_account(&account("a1")).await.unwrap();
    let first = create_order(&store, "a.test").await.unwrap();
    let before = counts(&store).await;

    disk.fill();
    // A single statement, a transaction of many rows, and the audit trail: all refused as a
    // full disk, none half-done.
    for _ in 0..3 {
        assert_writes_refused(&store, StorageFault::DiskFull, "on a full disk").await;
        assert_fault(
            store.audit(&created("x")).await,
            StorageFault::DiskFull,
            "audit row on a full disk",
        );
    }
    // Reads still work.
    assert_nothing_written(&store, &first, &before).await;

    disk.free();
    // The same store, without reopening: the writer connection was not left stuck.
    store.insert_account(&account("a2")).await.unwrap();
    let second = create_order(&store, "b.test").await.unwrap();
    assert_eq!(
        store.order_by_id(&second.id).await.unwrap().authz_ids.len(),
        1
    );
    store.make_durable().await.unwrap();
    let after = counts(&store).await;
    assert_eq!(
        after,
        vec![
            before[0] + 1,
            before[1] + 1,
            before[2] + 1,
            before[3] + 3,
            before[4] + 1
        ]
    );
}

#[tokio::test]
async fn sqlite_on_read_only_storage_reports_read_only_and_writes_once_it_is_writable() {
    let disk = Tmpfs::mount(8);
    let db = disk.path().join("live").join("sceau.db");
    let copy = disk.path().join("copy");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&copy).unwrap();
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    store.insert_account(&account("a1")).await.unwrap();
    // What a killed server leaves: the database with its WAL and shared-memory files.
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("sceau.db{suffix}");
        std::fs::copy(db.with_file_name(&name), copy.join(&name)).unwrap();
    }
    drop(store);

    disk.remount(true)
        .expect("read-only remount with no file open for writing");
    // Cleanly closed, SQLite cannot even open a WAL database on read-only storage: it can
    // make no shared-memory file (SQLITE_CANTOPEN).
    assert_fault(
        Store::open(&format!("sqlite://{}", db.display()))
            .await
            .map(|_| "opened"),
        StorageFault::Unreachable,
        "opening a cleanly closed database on read-only storage",
    );
    // With its WAL files it opens, read-only: reads work, writes are refused as read-only.
    let store = Store::open(&format!("sqlite://{}", copy.join("sceau.db").display()))
        .await
        .unwrap();
    assert_eq!(store.account_by_id("a1").await.unwrap().id, "a1");
    for _ in 0..3 {
        assert_writes_refused(&store, StorageFault::ReadOnly, "on read-only storage").await;
    }
    assert_eq!(store.count(Table::Accounts).await.unwrap(), 1);
    assert_eq!(store.count(Table::Orders).await.unwrap(), 0);

    // Writable again: the same store writes, without a restart (its writer, opened read-only,
    // is replaced). Attempts are spaced by a second; a client retries after Retry-After.
    disk.remount(false).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    store.insert_account(&account("a2")).await.unwrap();
    create_order(&store, "b.test").await.unwrap();
    store.make_durable().await.unwrap();
    assert_eq!(store.count(Table::Accounts).await.unwrap(), 2);
    assert_eq!(store.count(Table::Orders).await.unwrap(), 1);
}

/// Runs SQL statements one by one on a connection of their own (ALTER SYSTEM takes no
/// transaction block, not even the implicit one of several statements in one query).
async fn pg_admin(url: &str, statements: &[&str]) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn postgres_read_only_transactions_report_read_only_and_writes_resume() {
    let pg = Postgres::start();
    let store = Store::open(&pg.url).await.unwrap();
    store.insert_account(&account("a1")).await.unwrap();
    let first = create_order(&store, "a.test").await.unwrap();
    let before = counts(&store).await;

    // What a demoted primary or a hot standby answers: SQLSTATE 25006 to every write.
    pg_admin(
        &pg.url,
        &[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    // Backends apply the reload at their next command; give the signal a moment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert_writes_refused(&store, StorageFault::ReadOnly, "in a read-only PostgreSQL").await;
    }
    assert_nothing_written(&store, &first, &before).await;

    pg_admin(
        &pg.url,
        &[
            "SET default_transaction_read_only = off",
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    store.insert_account(&account("a2")).await.unwrap();
    create_order(&store, "b.test").await.unwrap();
    assert_eq!(store.count(Table::Orders).await.unwrap(), before[1] + 1);
}

#[tokio::test]
async fn postgres_that_stopped_is_reported_unreachable_within_seconds() {
    let pg = Postgres::start();
    let store = Store::open(&pg.url).await.unwrap();
    store.insert_account(&account("a1")).await.unwrap();
    drop(pg);
    let started = std::time::Instant::now();
    assert_fault(
        store.insert_account(&account("a2")).await,
        StorageFault::Unreachable,
        "insert with the server gone",
    );
    assert_fault(
        store.account_by_id("a1").await,
        StorageFault::Unreachable,
        "read with the server gone",
    );
    // Soon enough for the client to get its 503 before it gives up (30 s is a usual timeout).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "took {:?}",
        started.elapsed()
    );
}
