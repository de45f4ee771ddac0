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

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct GroupSync {
    wal: PathBuf,
    requested: AtomicU64,
    synced: tokio::sync::Mutex<u64>,
}

impl GroupSync {
    pub(crate) fn new(wal: PathBuf) -> Self {
        GroupSync {
            wal,
            requested: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
        }
    }

    pub(crate) async fn sync(&self) -> std::io::Result<()> {
        let mine = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().await;
        if *synced >= mine {
            return Ok(());
        }
        let target = self.requested.load(Ordering::SeqCst);
        let wal = self.wal.clone();
        // Opened per flush: the WAL file is recreated if every connection ever closes.
        tokio::task::spawn_blocking(move || {
            match std::fs::OpenOptions::new().write(true).open(&wal) {
                Ok(f) => f.sync_data(),
                // No WAL file: everything was checkpointed into the (synced) database file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(std::io::Error::other)??;
        *synced = target;
        Ok(())
    }
}
