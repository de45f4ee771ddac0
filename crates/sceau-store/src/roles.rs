//! Least-privilege PostgreSQL roles (agency guide R33): the administration role owns the schema
//! and runs the migrations; the front end's role reads and writes rows but changes no schema;
//! the signing process's role reads only what its signing gate checks.
//!
//! Invariants:
//! - Role names are plain identifiers (`[a-z_][a-z0-9_]*`, at most 63 characters), checked
//!   before any statement is built with them; passwords are quoted as string literals.
//! - Setting up twice changes nothing more: existing roles are kept (their passwords set
//!   again when given) and the grants are the same.
//! - Tables added by later migrations, run by the administration role, get the front end's
//!   grants by default privileges; the signer's stay the few tables it reads.

use crate::db::{Db, query};
use crate::{Result, Store, StoreError};

/// The tables the signing gate reads (`sceau_admin::gate`).
pub const SIGNER_TABLES: [&str; 4] = [
    "schema_migrations",
    "accounts",
    "external_accounts",
    "external_account_names",
];

/// One role to create or update.
pub struct Role<'a> {
    pub name: &'a str,
    /// `None`: a role without a password (for `trust` or certificate authentication).
    pub password: Option<&'a str>,
}

fn checked(name: &str) -> Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Database(format!(
            "role name {name:?}: use lowercase letters, digits and _ (not first), at most 63"
        )))
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Store {
    /// Creates (or updates) the front end's and the signer's roles and grants them what they
    /// need, as this store's role (the schema's owner, after the migrations it just ran).
    pub async fn set_up_roles(&self, front: &Role<'_>, signer: &Role<'_>) -> Result<()> {
        if !matches!(self.db, Db::Postgres(_)) {
            return Err(StoreError::Database(
                "database roles exist on PostgreSQL only; SQLite has one process".into(),
            ));
        }
        for role in [front, signer] {
            let name = checked(role.name)?;
            query(format!(
                "DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            ))
            .execute(&self.db)
            .await?;
            if let Some(pw) = role.password {
                query(format!("ALTER ROLE {name} PASSWORD {}", literal(pw)))
                    .execute(&self.db)
                    .await?;
            }
        }
        let (f, s) = (checked(front.name)?, checked(signer.name)?);
        let statements = [
            format!("GRANT USAGE ON SCHEMA public TO {f}, {s}"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {f}"),
            format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {f}"
            ),
            format!("GRANT SELECT ON {} TO {s}", SIGNER_TABLES.join(", ")),
        ];
        for st in statements {
            query(st).execute(&self.db).await?;
        }
        Ok(())
    }
}
