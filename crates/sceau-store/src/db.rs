//! The one place where SQL text meets a database driver.
//!
//! Everything above this module builds a [`Query`] (portable SQL with `$1…$n` placeholders,
//! values bound in order) and runs it on the [`Db`] or inside a [`Tx`]; rows come back as
//! [`Row`]s of [`Value`]s, so the rest of the crate never names a driver type.
//!
//! Invariants:
//! - SQLite runs inline on the calling task through `rusqlite`: a statement on this schema takes
//!   microseconds, far less than a hop to a database thread and back. Reads and writes go
//!   through one connection behind an async mutex (callers queue without blocking a runtime
//!   thread): its page cache survives its own commits, while any other connection's cache is
//!   dropped at every commit. Reader connections, which WAL lets run beside the writer, only
//!   serve reads while a checkpoint holds the writer.
//! - A [`Tx`] on SQLite holds the writer from `BEGIN IMMEDIATE` to `COMMIT`; dropping it
//!   without [`Tx::commit`] rolls back, so an early return never leaves half a change.
//! - No commit checkpoints inline (`wal_autocheckpoint=0`): every [`CHECKPOINT_EVERY`] commits
//!   a checkpoint takes the writer and runs on a blocking thread, so its fsyncs never stall a
//!   runtime thread, and the WAL is started over rather than growing without bound.
//! - Uniqueness violations surface as [`StoreError::Conflict`] on both databases.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::durable::GroupSync;
use crate::{Result, StoreError};

/// Commits between two background checkpoints (SQLite's own default is 1000 WAL pages).
const CHECKPOINT_EVERY: u64 = 1000;
/// Reader connections kept open; more may be opened under load and are closed after use.
const READERS_KEPT: usize = 8;

/// A bound value. Nulls carry their type because PostgreSQL types every parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
    NullInt,
    NullText,
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Value::NullInt, Value::Int)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Value::NullText, Into::into)
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        v.map_or(Value::NullText, Value::Text)
    }
}
impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Self {
        v.as_deref().into()
    }
}
impl From<Option<&String>> for Value {
    fn from(v: Option<&String>) -> Self {
        v.map(String::as_str).into()
    }
}

/// Decoding of one column value into a Rust type.
pub(crate) trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}
impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::NullInt | Value::NullText => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A column, by position or by name.
pub(crate) trait ColumnIndex {
    fn find(&self, row: &Row) -> Option<usize>;
    fn describe(&self) -> String;
}
impl ColumnIndex for usize {
    fn find(&self, row: &Row) -> Option<usize> {
        (*self < row.values.len()).then_some(*self)
    }
    fn describe(&self) -> String {
        format!("column {self}")
    }
}
impl ColumnIndex for &str {
    fn find(&self, row: &Row) -> Option<usize> {
        row.names.iter().position(|n| n == self)
    }
    fn describe(&self) -> String {
        (*self).to_owned()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    pub(crate) fn try_get<T: FromValue, I: ColumnIndex>(&self, col: I) -> Result<T> {
        let i = col
            .find(self)
            .ok_or_else(|| StoreError::Corrupt(format!("no {} in the row", col.describe())))?;
        T::from_value(&self.values[i]).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{}: unexpected {:?}",
                col.describe(),
                self.values[i]
            ))
        })
    }
}

/// SQL with its bound values.
pub(crate) struct Query {
    sql: Cow<'static, str>,
    args: Vec<Value>,
}

pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// What an `execute` did.
pub(crate) struct Done(u64);

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.0
    }

    /// `Ok` when exactly one row changed; otherwise the compare-and-swap lost: `Conflict(why)`.
    pub(crate) fn one_or(&self, why: impl Into<String>) -> Result<()> {
        if self.0 == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(why.into()))
        }
    }
}

/// Where a query runs: on the database (its own implicit transaction) or inside a [`Tx`].
pub(crate) enum Target<'a> {
    Db(&'a Db),
    Tx(&'a mut Tx),
}
impl<'a> From<&'a Db> for Target<'a> {
    fn from(d: &'a Db) -> Self {
        Target::Db(d)
    }
}
impl<'a> From<&'a mut Tx> for Target<'a> {
    fn from(t: &'a mut Tx) -> Self {
        Target::Tx(t)
    }
}

impl Query {
    pub(crate) fn bind(mut self, v: impl Into<Value>) -> Self {
        self.args.push(v.into());
        self
    }

    pub(crate) async fn execute<'a>(self, on: impl Into<Target<'a>>) -> Result<Done> {
        match on.into() {
            Target::Db(Db::Sqlite(s)) => {
                let conn = s.writer.lock().await;
                let n = sqlite_execute(&conn, &self)?;
                drop(conn);
                s.committed();
                Ok(Done(n))
            }
            Target::Db(Db::Postgres(pool)) => {
                Ok(Done(pg_query(&self).execute(pool).await?.rows_affected()))
            }
            Target::Tx(Tx::Sqlite(t)) => Ok(Done(sqlite_execute(&t.conn, &self)?)),
            Target::Tx(Tx::Postgres(t)) => Ok(Done(
                pg_query(&self).execute(&mut **t).await?.rows_affected(),
            )),
        }
    }

    pub(crate) async fn fetch_all<'a>(self, on: impl Into<Target<'a>>) -> Result<Vec<Row>> {
        match on.into() {
            Target::Db(Db::Sqlite(s)) => s.read(|c| sqlite_fetch(c, &self)).await,
            Target::Db(Db::Postgres(pool)) => pg_rows(pg_query(&self).fetch_all(pool).await?),
            Target::Tx(Tx::Sqlite(t)) => sqlite_fetch(&t.conn, &self),
            Target::Tx(Tx::Postgres(t)) => pg_rows(pg_query(&self).fetch_all(&mut **t).await?),
        }
    }

    pub(crate) async fn fetch_optional<'a>(self, on: impl Into<Target<'a>>) -> Result<Option<Row>> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    /// The first row; [`StoreError::NotFound`] if there is none.
    pub(crate) async fn fetch_one<'a>(self, on: impl Into<Target<'a>>) -> Result<Row> {
        self.fetch_optional(on).await?.ok_or(StoreError::NotFound)
    }
}

/// A database: SQLite (embedded, one process) or PostgreSQL (shared by several instances).
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(Arc<Sqlite>),
    Postgres(sqlx::PgPool),
}

impl Db {
    pub(crate) async fn open(url: &str) -> Result<Db> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::Database("sqlite URL without a path".into()));
            }
            Ok(Db::Sqlite(Arc::new(Sqlite::open(Path::new(path))?)))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .min_connections(1)
                .idle_timeout(None)
                // A ping before every query would double the round trips; a broken connection
                // shows up as an error on use and is replaced by the pool.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(60))
                .connect(url)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::Database(format!(
                "unsupported database URL (sqlite://PATH or postgres://…): {}",
                url.split('@').next_back().unwrap_or("")
            )))
        }
    }

    pub(crate) async fn begin(&self) -> Result<Tx> {
        match self {
            Db::Sqlite(s) => {
                let conn = s.writer.clone().lock_owned().await;
                // IMMEDIATE takes the write lock now: another process (the admin CLI) cannot
                // slip in between our reads and writes and make the commit fail.
                conn.execute_batch("BEGIN IMMEDIATE")?;
                Ok(Tx::Sqlite(SqliteTx {
                    conn,
                    db: s.clone(),
                    open: true,
                }))
            }
            Db::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await?)),
        }
    }

    /// Returns once every commit made before the call is on stable storage.
    pub(crate) async fn make_durable(&self) -> Result<()> {
        match self {
            Db::Sqlite(s) => s
                .sync
                .sync()
                .await
                .map_err(|e| StoreError::Corrupt(format!("fsync of the WAL failed: {e}"))),
            // PostgreSQL commits are durable themselves (synchronous_commit).
            Db::Postgres(_) => Ok(()),
        }
    }
}

pub(crate) enum Tx {
    Sqlite(SqliteTx),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(mut t) => {
                t.conn.execute_batch("COMMIT")?;
                t.open = false;
                t.db.committed();
                Ok(())
            }
            Tx::Postgres(t) => Ok(t.commit().await?),
        }
    }
}

pub(crate) struct SqliteTx {
    conn: tokio::sync::OwnedMutexGuard<rusqlite::Connection>,
    db: Arc<Sqlite>,
    open: bool,
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if self.open {
            // Nothing of an abandoned transaction may stay; if even ROLLBACK fails the
            // connection is unusable, and the next BEGIN reports it.
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rollback failed");
            }
        }
    }
}

// ---- SQLite -------------------------------------------------------------------------------

pub(crate) struct Sqlite {
    path: PathBuf,
    writer: Arc<tokio::sync::Mutex<rusqlite::Connection>>,
    readers: Mutex<Vec<rusqlite::Connection>>,
    sync: GroupSync,
    commits: AtomicU64,
    checkpointing: AtomicBool,
}

impl Sqlite {
    fn open(path: &Path) -> Result<Sqlite> {
        let writer = connect(path)?;
        // WAL lets readers run beside the writer (persistent in the file); NORMAL does not
        // fsync each commit (see the crate docs for what does); checkpoints run in the
        // background, not inside a commit.
        writer.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864; PRAGMA cache_size = -32768;",
        )?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Sqlite {
            path: path.to_owned(),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Mutex::new(Vec::new()),
            sync: GroupSync::new(PathBuf::from(wal)),
            commits: AtomicU64::new(0),
            checkpointing: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the writer, or on a reader connection while a checkpoint holds the writer.
    ///
    /// SQLite drops a connection's whole page cache whenever another connection has written,
    /// so a reader re-reads (and re-allocates) every page it touches after each commit, while
    /// the writer's cache survives its own commits. Statements take microseconds and no
    /// transaction holds the writer across anything but its own statements, so waiting for
    /// the writer costs less than a cold reader; only a checkpoint (milliseconds of copying
    /// and fsync) sends reads to the readers, which WAL lets run beside it.
    async fn read<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> Result<T>) -> Result<T> {
        if !self.checkpointing.load(Ordering::Acquire) {
            let writer = self.writer.lock().await;
            return f(&writer);
        }
        let conn = self.readers.lock().expect("reader list").pop();
        let conn = match conn {
            Some(c) => c,
            None => connect(&self.path)?,
        };
        let out = f(&conn);
        let mut readers = self.readers.lock().expect("reader list");
        if readers.len() < READERS_KEPT {
            readers.push(conn);
        }
        out
    }

    /// Counts a commit and, every [`CHECKPOINT_EVERY`], checkpoints the WAL in the background.
    ///
    /// The checkpoint holds the writer: with no commit appending frames meanwhile it can copy
    /// every frame, so that the next write starts the WAL over instead of growing it (a
    /// checkpoint racing the writer never catches up, and a long WAL slows every read). The
    /// copy and its fsyncs run on a blocking thread; writers wait for it asynchronously.
    fn committed(self: &Arc<Self>) {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if !n.is_multiple_of(CHECKPOINT_EVERY) || self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.checkpointing.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        runtime.spawn(async move {
            let writer = me.writer.clone().lock_owned().await;
            let done = tokio::task::spawn_blocking(move || {
                writer.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")
            })
            .await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint task failed"),
            }
            me.checkpointing.store(false, Ordering::Release);
        });
    }
}

fn connect(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    // Another process (the admin CLI) may hold the write lock for a moment.
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::NullInt | Value::NullText => ValueRef::Null,
        }))
    }
}

/// Prepares (cached) and binds `$n` placeholders by number, as PostgreSQL reads them.
fn sqlite_prepare<'c>(
    conn: &'c rusqlite::Connection,
    q: &Query,
) -> Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(&q.sql)?;
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            Some(name) => name
                .strip_prefix('$')
                .and_then(|d| d.parse::<usize>().ok())
                .ok_or_else(|| StoreError::Database(format!("placeholder {name} is not $n")))?,
            None => i,
        };
        let v = q
            .args
            .get(n - 1)
            .ok_or_else(|| StoreError::Database(format!("no value bound for ${n}")))?;
        stmt.raw_bind_parameter(i, v)?;
    }
    Ok(stmt)
}

fn sqlite_execute(conn: &rusqlite::Connection, q: &Query) -> Result<u64> {
    let mut stmt = sqlite_prepare(conn, q)?;
    Ok(stmt.raw_execute()? as u64)
}

fn sqlite_fetch(conn: &rusqlite::Connection, q: &Query) -> Result<Vec<Row>> {
    use rusqlite::types::ValueRef;
    let mut stmt = sqlite_prepare(conn, q)?;
    let names: Arc<[String]> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let width = names.len();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match r.get_ref(i)? {
                ValueRef::Null => Value::NullText,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Text(t) => Value::Text(
                    std::str::from_utf8(t)
                        .map_err(|_| StoreError::Corrupt(format!("{}: not UTF-8", names[i])))?
                        .to_owned(),
                ),
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "{}: unexpected {:?}",
                        names[i],
                        other.data_type()
                    )));
                }
            });
        }
        out.push(Row {
            names: names.clone(),
            values,
        });
    }
    Ok(out)
}

// ---- PostgreSQL ---------------------------------------------------------------------------

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn pg_query(q: &Query) -> PgQuery<'_> {
    let mut out = sqlx::query(sqlx::AssertSqlSafe(q.sql.as_ref()));
    for v in &q.args {
        out = match v {
            Value::Int(i) => out.bind(*i),
            Value::Text(s) => out.bind(s.as_str()),
            Value::NullInt => out.bind(None::<i64>),
            Value::NullText => out.bind(None::<String>),
        };
    }
    out
}

fn pg_rows(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Row>> {
    use sqlx::{Column, Row as _, TypeInfo};
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let kinds: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.type_info().name().to_owned())
        .collect();
    rows.iter()
        .map(|r| {
            let values = kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| {
                    Ok(match kind.as_str() {
                        "INT8" => r.try_get::<Option<i64>, _>(i)?.into(),
                        "INT4" => r.try_get::<Option<i32>, _>(i)?.map(i64::from).into(),
                        "INT2" => r.try_get::<Option<i16>, _>(i)?.map(i64::from).into(),
                        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
                            r.try_get::<Option<String>, _>(i)?.into()
                        }
                        other => {
                            return Err(StoreError::Corrupt(format!(
                                "{}: unexpected type {other}",
                                names[i]
                            )));
                        }
                    })
                })
                .collect::<Result<Vec<Value>>>()?;
            Ok(Row {
                names: names.clone(),
                values,
            })
        })
        .collect()
}

// ---- errors -------------------------------------------------------------------------------

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        match &e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}
