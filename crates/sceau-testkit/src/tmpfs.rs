//! A small tmpfs of its own, for tests of storage faults: filled to make the disk full, emptied
//! to bring space back, remounted read-only and read-write.
//!
//! Invariants:
//! - Mounting needs root (CI runs the tests as root); anyone else gets a panic that says so,
//!   never a skipped test.
//! - Dropped, it is unmounted lazily (`umount -l`): a process that still has a file open on it
//!   (a server under test) keeps the file, and the mount point leaves the tree at once.
//! - The kernel refuses a read-only remount while any process holds a file on it open for
//!   writing; [`Tmpfs::remount`] reports that refusal instead of hiding it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn mount(args: &[&str], target: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(target)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

impl Tmpfs {
    /// A fresh tmpfs of `mib` MiB on a temporary directory.
    pub fn mount(mib: u32) -> Tmpfs {
        assert!(
            is_root(),
            "this test mounts a tmpfs to make real storage faults and needs root (CI runs the tests as root): run it as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("sceau-tmpfs-")
            .tempdir()
            .expect("temp dir");
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ],
            dir.path(),
        )
        .unwrap_or_else(|e| panic!("mount -t tmpfs on {}: {e}", dir.path().display()));
        let filler = dir.path().join("filler");
        Tmpfs { dir, filler }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills every free byte with a filler file; returns its size. Afterwards any write that
    /// needs a new block fails with ENOSPC.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("filler file");
        let chunk = vec![0u8; 1 << 20];
        // Large writes first, then page by page for what a short write left.
        for size in [chunk.len(), 4096, 1] {
            loop {
                match f.write_all(&chunk[..size]) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling {}: {e}", self.filler.display()),
                }
            }
        }
        f.metadata().expect("filler size").len()
    }

    /// Removes the filler: the space comes back.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler");
    }

    /// Remounts read-only (`true`) or read-write; `Err` with mount's message if the kernel
    /// refuses (a read-only remount while a file is open for writing: "mount point is busy").
    pub fn remount(&self, read_only: bool) -> Result<(), String> {
        let opts = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        mount(&["-o", opts], self.dir.path())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
