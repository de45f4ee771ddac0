//! Schema migrations: an ordered list of portable SQL scripts, each applied once, recorded in
//! `schema_migrations`. Every script runs in a transaction with its record, so a crash never
//! leaves a half-applied version; on PostgreSQL that transaction first takes an advisory lock,
//! so instances starting at once on one database apply each script exactly once.

use crate::Result;
use crate::db::{Db, query};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_external_accounts.sql")),
    (3, include_str!("../migrations/0003_processing_indexes.sql")),
    (4, include_str!("../migrations/0004_limits.sql")),
    (5, include_str!("../migrations/0005_issuance_queue.sql")),
    (6, include_str!("../migrations/0006_revocation.sql")),
    (7, include_str!("../migrations/0007_crls.sql")),
    (8, include_str!("../migrations/0008_ocsp.sql")),
    (9, include_str!("../migrations/0009_ocsp_upkeep.sql")),
    (10, include_str!("../migrations/0010_shared_nonces.sql")),
    (11, include_str!("../migrations/0011_validation_leases.sql")),
    (12, include_str!("../migrations/0012_upstream_tickets.sql")),
    (13, include_str!("../migrations/0013_console.sql")),
    (14, include_str!("../migrations/0014_star.sql")),
];

/// PostgreSQL advisory lock key of the migrations: instances starting together on one database
/// apply each script once, one after the other (the others wait, then find it applied).
const MIGRATION_LOCK: i64 = 0x5CEA_u64 as i64 * 1_000_003;

/// Takes the migration lock for the rest of `tx` (PostgreSQL; SQLite has one process and
/// serializes its writers itself).
async fn lock(db: &Db, tx: &mut crate::db::Tx) -> Result<()> {
    if matches!(db, Db::Postgres(_)) {
        query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(MIGRATION_LOCK)
            .fetch_one(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The fleet manager's schema (`sceau manager`, issue 18): its own tables and its own record of
/// applied versions, so a manager database never holds the server's tables nor the reverse.
const FLEET_MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/fleet/0001_fleet.sql"))];

/// One schema: where its applied versions are recorded, and its scripts in order.
pub(crate) struct Schema {
    table: &'static str,
    migrations: &'static [(i64, &'static str)],
}

pub(crate) const SERVER: Schema = Schema {
    table: "schema_migrations",
    migrations: MIGRATIONS,
};

pub(crate) const FLEET: Schema = Schema {
    table: "fleet_schema_migrations",
    migrations: FLEET_MIGRATIONS,
};

pub(crate) async fn migrate(db: &Db) -> Result<()> {
    migrate_schema(db, &SERVER).await
}

pub(crate) async fn migrate_schema(db: &Db, schema: &Schema) -> Result<()> {
    let table = schema.table;
    // Up to date: nothing to run, and so nothing a role without schema rights may not do (the
    // front end's and the signer's least-privilege roles, R33).
    if let Ok(rows) = query(format!("SELECT version FROM {table}"))
        .fetch_all(db)
        .await
    {
        let applied: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.try_get::<i64, _>(0).ok())
            .collect();
        if schema.migrations.iter().all(|(v, _)| applied.contains(v)) {
            return Ok(());
        }
    }
    let mut tx = db.begin().await?;
    lock(db, &mut tx).await?;
    query(format!("CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"))
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    for (version, script) in schema.migrations {
        let mut tx = db.begin().await?;
        lock(db, &mut tx).await?;
        let done = query(format!("SELECT COUNT(*) FROM {table} WHERE version = $1"))
            .bind(*version)
            .fetch_one(&mut tx)
            .await?
            .try_get::<i64, _>(0)?;
        if done > 0 {
            continue;
        }
        for statement in statements(script) {
            query(statement).execute(&mut tx).await?;
        }
        query(format!(
            "INSERT INTO {table} (version, applied_at) VALUES ($1, $2)"
        ))
        .bind(*version)
        .bind(crate::now())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The statements of a migration script: `--` comments removed first (so that a comment may
/// hold a `;`), then split on `;`. The scripts hold no string literal with `--` or `;`.
fn statements(script: &str) -> Vec<String> {
    let code: String = script
        .lines()
        .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_may_hold_semicolons_and_every_script_splits_cleanly() {
        let script = "-- why; and how\nCREATE TABLE t (a INT, -- note; more\n b INT);\n-- end;\nDROP INDEX i";
        assert_eq!(
            statements(script),
            ["CREATE TABLE t (a INT, \n b INT)", "DROP INDEX i"]
        );
        for (version, script) in MIGRATIONS.iter().chain(FLEET_MIGRATIONS) {
            for statement in statements(script) {
                assert!(
                    !statement.contains("--"),
                    "migration {version}: {statement}"
                );
                let head = statement.split_whitespace().next().unwrap_or("");
                assert!(
                    ["CREATE", "DROP", "ALTER", "INSERT"].contains(&head),
                    "migration {version} starts a statement with {head:?}"
                );
            }
        }
    }
}
