//! Group commit for SQLite in WAL mode with `synchronous=NORMAL`.
//!
//! Invariant: when [`GroupSync::sync`] returns `Ok`, every transaction committed before the
//! call began is on stable storage. Callers announce themselves (`requested`) after their
//! commit; one flusher at a time captures the newest announcement, fsyncs the WAL, and
//! records that number as `synced`. A caller whose number is already covered returns without
//! an fsync of its own, so N concurrent certificates cost one fsync, not N.
//!
//! Why the WAL file alone suffices: commits append frames to the WAL; a checkpoint moves
//! frames into the database file only after syncing the WAL and syncs the database after
//! (SQLite's NORMAL mode), so a frame is durable once either file holding it was synced.
//!
//! A failed fsync (ENOSPC on a file system that allocates at write-back, EIO) returns the OS
//! error to every caller it covered, leaves `synced` where it was and keeps the handle: the
//! writer connection is never reopened, so the WAL stays the file SQLite writes, and the next
//! caller fsyncs again. Linux may have dropped the pages that failed to write back, so a later
//! successful fsync does not prove those earlier frames reached the disk; the caller reports
//! the failure (`StoreError::Unavailable`) instead of claiming durability.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct GroupSync {
    wal: PathBuf,
    requested: AtomicU64,
    state: tokio::sync::Mutex<Flushed>,
}

struct Flushed {
    /// The newest announcement known to be on stable storage.
    synced: u64,
    /// The WAL, opened at the first flush that finds it. Keeping it open is sound because the
    /// store's own writer connection stays open as long as this value lives (a replaced writer
    /// closes only after its successor opened, and [`GroupSync::reopen`] drops the handle),
    /// and SQLite only deletes (and later recreates) the WAL when the last connection closes.
    file: Option<Arc<File>>,
}

impl GroupSync {
    pub(crate) fn new(wal: PathBuf) -> Self {
        GroupSync {
            wal,
            requested: AtomicU64::new(0),
            state: tokio::sync::Mutex::new(Flushed {
                synced: 0,
                file: None,
            }),
        }
    }

    /// Forgets the WAL handle, reopened at the next flush: the writer connection was replaced.
    pub(crate) async fn reopen(&self) {
        self.state.lock().await.file = None;
    }

    pub(crate) async fn sync(&self) -> std::io::Result<()> {
        let mine = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.state.lock().await;
        if state.synced >= mine {
            return Ok(());
        }
        let target = self.requested.load(Ordering::SeqCst);
        let file = match &state.file {
            Some(f) => Some(f.clone()),
            None => match std::fs::OpenOptions::new().write(true).open(&self.wal) {
                Ok(f) => Some(state.file.insert(Arc::new(f)).clone()),
                // No WAL file: everything was checkpointed into the (synced) database file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            },
        };
        if let Some(file) = file {
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(std::io::Error::other)??;
        }
        state.synced = target;
        Ok(())
    }
}
