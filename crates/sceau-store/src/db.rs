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
//! - Storage faults (disk full, read-only, I/O errors, unreachable) surface as
//!   [`StoreError::Unavailable`] on both databases, and every one of them passes through the
//!   database's [`Health`], which logs them; nothing else here logs them. SQLite rolls a
//!   transaction back by itself after SQLITE_FULL or an I/O error, and the writer connection
//!   stays usable afterwards. Only a writer that SQLite opened read-only (the storage was
//!   read-only when the store opened) is replaced, by a read-write one once the storage allows
//!   it: the new connection opens before the old one closes, so SQLite never deletes the WAL
//!   in between, and [`GroupSync`] reopens the WAL at its next flush.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::durable::GroupSync;
use crate::health::{Health, Place, StorageFault};
use crate::{Result, StoreError};

/// Commits between two background checkpoints (SQLite's own default is 1000 WAL pages).
const CHECKPOINT_EVERY: u64 = 1000;
/// Reader connections kept open; more may be opened under load and are closed after use.
const READERS_KEPT: usize = 8;
/// Longest wait for a PostgreSQL connection; seconds of waiting already mean overload or an
/// unreachable server.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

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
                let mut conn = s.writer.lock().await;
                s.writable(&mut conn).await;
                let n = sqlite_execute(&conn, &self);
                s.note_readonly(&conn, &n);
                drop(conn);
                let n = s.health.observe(n, true)?;
                s.committed();
                Ok(Done(n))
            }
            Target::Db(Db::Postgres(p)) => {
                let done = pg_query(&self).execute(&p.pool).await.map_err(Into::into);
                Ok(Done(p.health.observe(done, true)?.rows_affected()))
            }
            Target::Tx(Tx::Sqlite(t)) => {
                let n = sqlite_execute(&t.conn, &self);
                t.db.note_readonly(&t.conn, &n);
                Ok(Done(t.db.health.observe(n, false)?))
            }
            Target::Tx(Tx::Postgres(t)) => {
                let done = pg_query(&self)
                    .execute(&mut *t.tx)
                    .await
                    .map_err(Into::into);
                Ok(Done(t.db.health.observe(done, false)?.rows_affected()))
            }
        }
    }

    pub(crate) async fn fetch_all<'a>(self, on: impl Into<Target<'a>>) -> Result<Vec<Row>> {
        match on.into() {
            Target::Db(Db::Sqlite(s)) => {
                let rows = s.read(|c| sqlite_fetch(c, &self)).await;
                s.health.observe(rows, false)
            }
            Target::Db(Db::Postgres(p)) => {
                let rows = pg_query(&self).fetch_all(&p.pool).await.map_err(Into::into);
                pg_rows(p.health.observe(rows, false)?)
            }
            Target::Tx(Tx::Sqlite(t)) => t.db.health.observe(sqlite_fetch(&t.conn, &self), false),
            Target::Tx(Tx::Postgres(t)) => {
                let rows = pg_query(&self)
                    .fetch_all(&mut *t.tx)
                    .await
                    .map_err(Into::into);
                pg_rows(t.db.health.observe(rows, false)?)
            }
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
    Postgres(Arc<Postgres>),
}

pub(crate) struct Postgres {
    pool: sqlx::PgPool,
    health: Health,
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
            let options: sqlx::postgres::PgConnectOptions = url.parse()?;
            // Named without the user or password the URL may hold.
            let place = Place::postgres(
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or("postgres"),
            );
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .min_connections(1)
                .idle_timeout(None)
                // A ping before every query would double the round trips; a broken connection
                // shows up as an error on use and is replaced by the pool.
                .test_before_acquire(false)
                // While the server is down, the pool retries connecting until this runs out:
                // the request then answers 503 (unreachable) before its client gives up.
                .acquire_timeout(PG_ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            Ok(Db::Postgres(Arc::new(Postgres {
                pool,
                health: Health::new(place),
            })))
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
                let mut conn = s.writer.clone().lock_owned().await;
                s.writable(&mut conn).await;
                // IMMEDIATE takes the write lock now: another process (the admin CLI) cannot
                // slip in between our reads and writes and make the commit fail.
                let begun = sqlite_batch(&conn, "BEGIN IMMEDIATE");
                s.health.observe(begun, false)?;
                Ok(Tx::Sqlite(SqliteTx {
                    conn,
                    db: s.clone(),
                    open: true,
                }))
            }
            Db::Postgres(p) => {
                let tx = p.pool.begin().await.map_err(Into::into);
                Ok(Tx::Postgres(PgTx {
                    tx: p.health.observe(tx, false)?,
                    db: p.clone(),
                }))
            }
        }
    }

    /// Returns once every commit made before the call is on stable storage.
    pub(crate) async fn make_durable(&self) -> Result<()> {
        match self {
            Db::Sqlite(s) => {
                let synced = s.sync.sync().await.map_err(|e| StoreError::Unavailable {
                    condition: StorageFault::of_io(&e),
                    detail: format!("fsync of the WAL failed: {e}"),
                });
                s.health.observe(synced, true)
            }
            // PostgreSQL commits are durable themselves (synchronous_commit).
            Db::Postgres(_) => Ok(()),
        }
    }
}

pub(crate) enum Tx {
    Sqlite(SqliteTx),
    Postgres(PgTx),
}

pub(crate) struct PgTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    db: Arc<Postgres>,
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(mut t) => {
                let done = sqlite_batch(&t.conn, "COMMIT");
                t.db.note_readonly(&t.conn, &done);
                t.db.health.observe(done, true)?;
                t.open = false;
                t.db.committed();
                Ok(())
            }
            Tx::Postgres(t) => {
                let done = t.tx.commit().await.map_err(Into::into);
                t.db.health.observe(done, true)
            }
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
        // After SQLITE_FULL or an I/O error SQLite has already rolled the transaction back
        // (the connection is in autocommit again): a ROLLBACK then only fails with "no
        // transaction is active", which said nothing true.
        if self.open && !self.conn.is_autocommit() {
            // Nothing of an abandoned transaction may stay; if even ROLLBACK fails the
            // connection is unusable, and the next BEGIN reports it.
            let undone = sqlite_batch(&self.conn, "ROLLBACK");
            if let Err(e) = self.db.health.observe(undone, false)
                && e.storage_fault().is_none()
            {
                tracing::error!(error = %e, "rollback failed");
            }
        }
    }
}

// ---- SQLite -------------------------------------------------------------------------------

pub(crate) struct Sqlite {
    path: PathBuf,
    health: Health,
    writer: Arc<tokio::sync::Mutex<rusqlite::Connection>>,
    readers: Mutex<Vec<rusqlite::Connection>>,
    sync: GroupSync,
    commits: AtomicU64,
    checkpointing: AtomicBool,
    /// When the writer was found read-only and when a read-write one was last tried.
    readonly_writer: Mutex<Option<Option<Instant>>>,
}

/// Least time between two attempts to replace a read-only writer.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// A stand-in writer for the moment a read-only one is replaced, if opening its successor
/// fails: it refuses every write as read-only (so the replacement is tried again) and holds no
/// data.
fn refusing_writes() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
    conn.execute_batch("PRAGMA query_only = ON")
        .expect("query_only on an in-memory SQLite");
    conn
}

fn open_writer(path: &Path) -> Result<rusqlite::Connection> {
    let writer = connect(path)?;
    // WAL lets readers run beside the writer (persistent in the file); NORMAL does not
    // fsync each commit (see the crate docs for what does); checkpoints run in the
    // background, not inside a commit.
    sqlite_batch(
        &writer,
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = 67108864; PRAGMA cache_size = -32768;",
    )?;
    Ok(writer)
}

impl Sqlite {
    fn open(path: &Path) -> Result<Sqlite> {
        let writer = open_writer(path)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Sqlite {
            path: path.to_owned(),
            health: Health::new(Place::sqlite(path)),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Mutex::new(Vec::new()),
            sync: GroupSync::new(PathBuf::from(wal)),
            commits: AtomicU64::new(0),
            checkpointing: AtomicBool::new(false),
            readonly_writer: Mutex::new(None),
        })
    }

    /// After a write failed as read-only: remembers it if the writer itself is read-only.
    ///
    /// SQLite opens a database read-only, silently, when the storage refuses read-write; such
    /// a connection stays read-only after the storage is writable again, so it must be
    /// replaced, not retried.
    fn note_readonly<T>(&self, conn: &rusqlite::Connection, r: &Result<T>) {
        if let Err(e) = r
            && e.storage_fault() == Some(StorageFault::ReadOnly)
            && conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false)
        {
            let mut state = self.readonly_writer.lock().expect("writer state");
            state.get_or_insert(None);
        }
    }

    /// Before a write: replaces a read-only writer by a read-write one if the storage now
    /// allows it (at most every [`REOPEN_EVERY`]). The caller holds the writer lock.
    ///
    /// SQLite shares one shared-memory mapping of the WAL index among a process's connections
    /// to a file: while the read-only writer (or a reader) is open, a new connection would
    /// map it read-only too. So they all close first. A read-only connection cannot
    /// checkpoint, so closing it never deletes the WAL.
    async fn writable(&self, conn: &mut rusqlite::Connection) {
        {
            let mut state = self.readonly_writer.lock().expect("writer state");
            match &mut *state {
                None => return,
                Some(Some(tried)) if tried.elapsed() < REOPEN_EVERY => return,
                Some(tried) => *tried = Some(Instant::now()),
            }
        }
        self.readers.lock().expect("reader list").clear();
        drop(std::mem::replace(conn, refusing_writes()));
        let Ok(fresh) = open_writer(&self.path) else {
            // The stand-in refuses writes as read-only; the next write tries again.
            return;
        };
        let still_read_only = fresh.is_readonly(rusqlite::MAIN_DB).unwrap_or(true);
        *conn = fresh;
        if still_read_only {
            return;
        }
        self.sync.reopen().await;
        *self.readonly_writer.lock().expect("writer state") = None;
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
            None => self.health.observe(connect(&self.path), false)?,
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
                sqlite_batch(&writer, "PRAGMA wal_checkpoint(PASSIVE)")
            })
            .await;
            match done {
                // A storage fault is the tracker's to log, with the requests that hit it.
                Ok(done) => {
                    if let Err(e) = me.health.observe(done, false)
                        && e.storage_fault().is_none()
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
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
    sqlite_batch(&conn, "PRAGMA foreign_keys = ON;")?;
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
    let done = sqlite_prepare(conn, q).and_then(|mut stmt| Ok(stmt.raw_execute()? as u64));
    with_errno(conn, done)
}

fn sqlite_batch(conn: &rusqlite::Connection, sql: &str) -> Result<()> {
    with_errno(conn, conn.execute_batch(sql).map_err(Into::into))
}

/// SQLite reports most failed system calls as SQLITE_IOERR or SQLITE_CANTOPEN; the OS error
/// behind one tells a full disk (ENOSPC on an fsync) or a read-only one (EROFS: no -shm file
/// can be made) from a failing or missing one. It must be read before the connection makes
/// another call.
fn with_errno<T>(conn: &rusqlite::Connection, r: Result<T>) -> Result<T> {
    match r {
        Err(StoreError::Unavailable {
            condition: condition @ (StorageFault::Io | StorageFault::Unreachable),
            detail,
        }) => {
            // SAFETY: the handle is only read, on the thread that owns the connection, and no
            // call on it runs in between.
            let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
            let os = std::io::Error::from_raw_os_error(errno);
            Err(StoreError::Unavailable {
                condition: match StorageFault::of_io(&os) {
                    _ if errno == 0 => condition,
                    // An I/O error whose OS error says nothing more stays an I/O error.
                    StorageFault::Unreachable if condition == StorageFault::Io => condition,
                    refined => refined,
                },
                detail: if errno == 0 {
                    detail
                } else {
                    format!("{detail} ({os})")
                },
            })
        }
        other => other,
    }
}

fn sqlite_fetch(conn: &rusqlite::Connection, q: &Query) -> Result<Vec<Row>> {
    with_errno(conn, sqlite_fetch_inner(conn, q))
}

fn sqlite_fetch_inner(conn: &rusqlite::Connection, q: &Query) -> Result<Vec<Row>> {
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

/// The storage fault a PostgreSQL SQLSTATE stands for (PostgreSQL manual, appendix A).
fn pg_fault(sqlstate: &str) -> Option<StorageFault> {
    Some(match sqlstate {
        "53100" => StorageFault::DiskFull,
        // read_only_sql_transaction: a read-only transaction, or a hot standby after failover.
        "25006" => StorageFault::ReadOnly,
        // too_many_connections: the server is there, but not for us.
        "53300" => StorageFault::Unreachable,
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up, in recovery).
        "57P01" | "57P02" | "57P03" => StorageFault::Unreachable,
        s if s.starts_with("58") => StorageFault::Io,
        s if s.starts_with("08") => StorageFault::Unreachable,
        _ => return None,
    })
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = |condition| StoreError::Unavailable {
            condition,
            detail: e.to_string(),
        };
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) => match db.code().as_deref().and_then(pg_fault) {
                Some(condition) => unavailable(condition),
                None => StoreError::Database(e.to_string()),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => unavailable(StorageFault::Unreachable),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::{ErrorCode, ffi};
        let unavailable = |condition| StoreError::Unavailable {
            condition,
            detail: e.to_string(),
        };
        match &e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
            }
            // Primary result codes: every extended SQLITE_READONLY_* and SQLITE_IOERR_* too.
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::DiskFull => unavailable(StorageFault::DiskFull),
                ErrorCode::ReadOnly => unavailable(StorageFault::ReadOnly),
                ErrorCode::SystemIoFailure => unavailable(StorageFault::Io),
                ErrorCode::CannotOpen => unavailable(StorageFault::Unreachable),
                _ => StoreError::Database(e.to_string()),
            },
            _ => StoreError::Database(e.to_string()),
        }
    }
}
