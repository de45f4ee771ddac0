//! Storage faults: what is wrong with the storage under the database (full, read-only, failing
//! with I/O errors, out of reach), and the one place that logs them.
//!
//! A full disk fails every write of every request. Logging each failure buried the one line that
//! mattered under hundreds of thousands (issue 10). Here every storage fault of the store goes
//! through [`Health`], which turns the failures into a few lines per episode.
//!
//! Invariants:
//! - An episode starts with one ERROR line that names the condition and where it is. While the
//!   episode lasts there is at most one WARN line per [`SUMMARY_EVERY`], saying how many
//!   operations failed since the previous line. It ends with one INFO line, at the first write
//!   that succeeds at least [`QUIET`] after the last failure, so a write that squeezes through
//!   while others still fail does not end it. If the same condition comes back within
//!   [`SUMMARY_EVERY`] of an ERROR line, the new episode opens with a WARN line, so a flapping
//!   disk logs at most one ERROR line per minute for each condition.
//! - Only the tracker logs these failures. The store returns them as
//!   [`StoreError::Unavailable`]; callers answer them (503 with Retry-After) and do not log.
//! - While storage is healthy, recording a successful write costs one atomic load.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::StoreError;

/// At most one summary (and one relapse ERROR) line per condition in this time.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// How long without a failure before a successful write ends an episode.
pub(crate) const QUIET: Duration = Duration::from_secs(2);

/// What is wrong with the storage under the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageFault {
    /// No space left: SQLITE_FULL, ENOSPC or EDQUOT, PostgreSQL SQLSTATE 53100.
    DiskFull,
    /// The storage refuses writes: SQLITE_READONLY*, EROFS, PostgreSQL SQLSTATE 25006 (a
    /// read-only transaction, a hot standby).
    ReadOnly,
    /// Reads or writes fail with I/O errors: SQLITE_IOERR*, EIO, PostgreSQL class 58.
    Io,
    /// The database cannot be opened or reached: SQLITE_CANTOPEN, a refused or lost
    /// connection, PostgreSQL classes 08 and 57P.
    Unreachable,
}

impl fmt::Display for StorageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageFault::DiskFull => "disk full",
            StorageFault::ReadOnly => "read-only",
            StorageFault::Io => "I/O error",
            StorageFault::Unreachable => "unreachable",
        })
    }
}

impl StorageFault {
    /// The condition as the log lines say it: "the disk … is still full".
    fn adjective(self) -> &'static str {
        match self {
            StorageFault::DiskFull => "full",
            StorageFault::ReadOnly => "read-only",
            StorageFault::Io => "failing with I/O errors",
            StorageFault::Unreachable => "out of reach",
        }
    }

    /// The fault an OS error stands for (a failed fsync, a failed open).
    pub(crate) fn of_io(e: &std::io::Error) -> StorageFault {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StorageFault::DiskFull,
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => StorageFault::ReadOnly,
            ErrorKind::NotFound => StorageFault::Unreachable,
            _ => StorageFault::Io,
        }
    }
}

/// Where the database lives, as the log lines name it (never with credentials).
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// "the disk holding /var/lib/sceau/sceau.db"
    pub(crate) disk: String,
    /// "/var/lib/sceau/sceau.db", "the PostgreSQL database at db.internal:5432/sceau"
    pub(crate) database: String,
}

impl Place {
    pub(crate) fn sqlite(path: &std::path::Path) -> Place {
        Place {
            disk: format!("the disk holding {}", path.display()),
            database: path.display().to_string(),
        }
    }

    pub(crate) fn postgres(host: &str, port: u16, database: &str) -> Place {
        let at = format!("the PostgreSQL database at {host}:{port}/{database}");
        Place {
            disk: format!("the disk of {at}"),
            database: at,
        }
    }

    /// What a condition is said of: the disk when it is full or failing, else the database.
    fn subject(&self, condition: StorageFault) -> &str {
        match condition {
            StorageFault::DiskFull | StorageFault::Io => &self.disk,
            StorageFault::ReadOnly | StorageFault::Unreachable => &self.database,
        }
    }

    /// The ERROR line that opens an episode.
    fn started(&self, condition: StorageFault) -> String {
        match condition {
            StorageFault::DiskFull => format!(
                "storage: {} is full; requests that write answer 503 with Retry-After until space returns",
                self.disk
            ),
            StorageFault::ReadOnly => format!(
                "storage: {} is read-only; requests that write answer 503 with Retry-After until it is writable again",
                self.database
            ),
            StorageFault::Io => format!(
                "storage: {} reports I/O errors; requests that use it answer 503 with Retry-After until they stop",
                self.disk
            ),
            StorageFault::Unreachable => format!(
                "storage: {} cannot be opened or reached; requests that use it answer 503 with Retry-After until it can",
                self.database
            ),
        }
    }
}

/// What the tracker has to say after an outcome; the state machine is kept free of logging so
/// that its timing can be tested without waiting for minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// A condition started (ERROR).
    Started { condition: StorageFault },
    /// The same condition came back within [`SUMMARY_EVERY`] of its last ERROR line (WARN).
    Again { condition: StorageFault },
    /// Still going: `failed` operations failed in the last `over` (WARN).
    Still {
        condition: StorageFault,
        failed: u64,
        over: Duration,
    },
    /// Writes succeed again after `lasted`, `failed` operations failed meanwhile (INFO).
    Ended {
        condition: StorageFault,
        failed: u64,
        lasted: Duration,
    },
}

#[derive(Debug)]
struct Episode {
    condition: StorageFault,
    since: Instant,
    last_failure: Instant,
    /// The previous line of this episode (the start or a summary).
    last_line: Instant,
    failed_since_line: u64,
    failed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    episode: Option<Episode>,
    /// The last ERROR line per condition, to keep a flapping condition to one a minute.
    last_error: Vec<(StorageFault, Instant)>,
}

impl State {
    pub(crate) fn failed(&mut self, condition: StorageFault, now: Instant) -> Option<Line> {
        if let Some(e) = &mut self.episode
            && e.condition == condition
        {
            e.failed += 1;
            e.failed_since_line += 1;
            e.last_failure = now;
            if now.duration_since(e.last_line) < SUMMARY_EVERY {
                return None;
            }
            let line = Line::Still {
                condition,
                failed: e.failed_since_line,
                over: now.duration_since(e.last_line),
            };
            e.last_line = now;
            e.failed_since_line = 0;
            return Some(line);
        }
        // A new condition, or a different one (full, then read-only): a new episode.
        self.episode = Some(Episode {
            condition,
            since: now,
            last_failure: now,
            last_line: now,
            failed_since_line: 0,
            failed: 1,
        });
        let recent = self.last_error.iter_mut().find(|(c, _)| *c == condition);
        match recent {
            Some((_, at)) if now.duration_since(*at) < SUMMARY_EVERY => {
                Some(Line::Again { condition })
            }
            Some((_, at)) => {
                *at = now;
                Some(Line::Started { condition })
            }
            None => {
                self.last_error.push((condition, now));
                Some(Line::Started { condition })
            }
        }
    }

    /// A write succeeded (`write`), or a read did (which shows the database is reachable).
    pub(crate) fn succeeded(&mut self, write: bool, now: Instant) -> Option<Line> {
        let e = self.episode.as_ref()?;
        if !write && e.condition != StorageFault::Unreachable {
            return None;
        }
        if now.duration_since(e.last_failure) < QUIET {
            return None;
        }
        let e = self.episode.take()?;
        Some(Line::Ended {
            condition: e.condition,
            failed: e.failed,
            lasted: now.duration_since(e.since),
        })
    }

    fn degraded(&self) -> bool {
        self.episode.is_some()
    }
}

/// The storage health of one store (one database), shared by all its connections.
pub(crate) struct Health {
    place: Place,
    degraded: AtomicBool,
    state: Mutex<State>,
}

impl Health {
    pub(crate) fn new(place: Place) -> Health {
        Health {
            place,
            degraded: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// Passes `r` through, counting a storage fault or a success; `write` says whether the
    /// operation wrote (only a write shows that a full or read-only storage recovered).
    pub(crate) fn observe<T>(&self, r: crate::Result<T>, write: bool) -> crate::Result<T> {
        match &r {
            Ok(_) => {
                if self.degraded.load(Ordering::Acquire) {
                    self.succeeded(write);
                }
            }
            Err(StoreError::Unavailable { condition, detail }) => self.failed(*condition, detail),
            Err(_) => {}
        }
        r
    }

    fn failed(&self, condition: StorageFault, detail: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let line = state.failed(condition, Instant::now());
        self.degraded.store(true, Ordering::Release);
        drop(state);
        if let Some(line) = line {
            self.log(&line, Some(detail));
        }
    }

    fn succeeded(&self, write: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let line = state.succeeded(write, Instant::now());
        self.degraded.store(state.degraded(), Ordering::Release);
        drop(state);
        if let Some(line) = line {
            self.log(&line, None);
        }
    }

    fn log(&self, line: &Line, detail: Option<&str>) {
        let detail = detail.unwrap_or("");
        match line {
            Line::Started { condition } => {
                tracing::error!(%condition, detail, "{}", self.place.started(*condition))
            }
            Line::Again { condition } => tracing::warn!(
                %condition,
                detail,
                "{} (again)",
                self.place.started(*condition)
            ),
            Line::Still {
                condition,
                failed,
                over,
            } => tracing::warn!(
                %condition,
                failed,
                "storage: {} is still {}: {failed} operations failed in the last {} s",
                self.place.subject(*condition),
                condition.adjective(),
                over.as_secs()
            ),
            Line::Ended {
                condition,
                failed,
                lasted,
            } => tracing::info!(
                %condition,
                failed,
                "storage: writes to {} succeed again; it was {} for {} s, {failed} operations failed meanwhile",
                self.place.database,
                condition.adjective(),
                lasted.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: StorageFault = StorageFault::DiskFull;

    /// Instants `ms` milliseconds after the test's start, so timing is tested without waiting.
    fn clock() -> impl Fn(u64) -> Instant {
        let t0 = Instant::now();
        move |ms| t0 + Duration::from_millis(ms)
    }

    #[test]
    fn an_episode_logs_once_then_once_a_minute_then_once_at_the_end() {
        let at = clock();
        let mut s = State::default();
        assert_eq!(
            s.failed(FULL, at(0)),
            Some(Line::Started { condition: FULL })
        );
        // 10,000 failures within the first minute: nothing more.
        for i in 1..=10_000 {
            assert_eq!(s.failed(FULL, at(i * 5)), None, "failure {i}");
        }
        // Reads do not end it, nor a write that succeeds while failures are recent.
        assert_eq!(s.succeeded(false, at(50_100)), None);
        assert_eq!(s.succeeded(true, at(50_500)), None);
        // A minute after the start: one summary of what failed since.
        assert_eq!(
            s.failed(FULL, at(60_000)),
            Some(Line::Still {
                condition: FULL,
                failed: 10_001,
                over: Duration::from_secs(60)
            })
        );
        assert_eq!(s.failed(FULL, at(60_001)), None);
        // The first write QUIET after the last failure ends it, with the totals.
        assert_eq!(s.succeeded(true, at(61_000)), None);
        assert_eq!(
            s.succeeded(true, at(62_001)),
            Some(Line::Ended {
                condition: FULL,
                failed: 10_003,
                lasted: Duration::from_millis(62_001)
            })
        );
        assert_eq!(s.succeeded(true, at(62_002)), None);
    }

    #[test]
    fn a_flapping_condition_logs_one_error_a_minute_and_a_new_condition_its_own() {
        let at = clock();
        let mut s = State::default();
        assert_eq!(
            s.failed(FULL, at(0)),
            Some(Line::Started { condition: FULL })
        );
        assert!(matches!(
            s.succeeded(true, at(3_000)),
            Some(Line::Ended { .. })
        ));
        // Back within the minute: a WARN, not another ERROR.
        assert_eq!(
            s.failed(FULL, at(4_000)),
            Some(Line::Again { condition: FULL })
        );
        // Another condition is news: its own ERROR line.
        assert_eq!(
            s.failed(StorageFault::ReadOnly, at(5_000)),
            Some(Line::Started {
                condition: StorageFault::ReadOnly
            })
        );
        assert!(matches!(
            s.succeeded(true, at(8_000)),
            Some(Line::Ended { .. })
        ));
        // A minute after the last ERROR for it, a full disk is news again.
        assert_eq!(
            s.failed(FULL, at(70_000)),
            Some(Line::Started { condition: FULL })
        );
    }

    #[test]
    fn a_read_ends_only_an_unreachable_episode() {
        let at = clock();
        let mut s = State::default();
        s.failed(StorageFault::Unreachable, at(0));
        assert!(matches!(
            s.succeeded(false, at(3_000)),
            Some(Line::Ended {
                condition: StorageFault::Unreachable,
                ..
            })
        ));
        s.failed(StorageFault::ReadOnly, at(4_000));
        assert_eq!(s.succeeded(false, at(9_000)), None);
        assert!(s.succeeded(true, at(9_000)).is_some());
    }

    #[test]
    fn os_errors_map_to_their_condition() {
        let of = |kind| StorageFault::of_io(&std::io::Error::from(kind));
        use std::io::ErrorKind;
        assert_eq!(of(ErrorKind::StorageFull), StorageFault::DiskFull);
        assert_eq!(of(ErrorKind::QuotaExceeded), StorageFault::DiskFull);
        assert_eq!(of(ErrorKind::ReadOnlyFilesystem), StorageFault::ReadOnly);
        assert_eq!(of(ErrorKind::Other), StorageFault::Io);
    }
}
