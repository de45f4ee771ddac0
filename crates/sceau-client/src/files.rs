//! Files the client writes: keys, certificates, state. Layout of one certificate:
//!
//! ```text
//! <cert-dir>/                 0755  (the client's user)
//! <cert-dir>/<name>/          0750  chgrp it to the web server's group (chmod g+s keeps it)
//!     privkey.pem             0600  (0640 with group_readable: the web server's group reads it)
//!     cert.pem chain.pem fullchain.pem   0644
//!     archive/<UTC time>-<serial>/...    previous versions, same modes, pruned to `keep`
//! ```
//!
//! Invariants:
//! - Every file is replaced atomically: a temporary file in the same directory, created with
//!   its final mode (never wider, whatever the umask), fsynced, then renamed over the old one;
//!   a reader sees the old or the new content, never a mix or an empty file.
//! - A replaced file keeps the group of the file it replaces, so a `chgrp` done once by the
//!   administrator survives renewals (R58/R59).
//! - Nothing is written until the new certificate is complete: a failed renewal leaves every
//!   old file untouched.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const KEY_FILE: &str = "privkey.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const CHAIN_FILE: &str = "chain.pem";
pub const FULLCHAIN_FILE: &str = "fullchain.pem";
pub const ARCHIVE_DIR: &str = "archive";

/// Modes for one certificate's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub key: u32,
    pub cert: u32,
    pub dir: u32,
}

impl Modes {
    pub fn new(group_readable_key: bool) -> Self {
        Modes {
            key: if group_readable_key { 0o640 } else { 0o600 },
            cert: 0o644,
            dir: 0o750,
        }
    }
}

impl Default for Modes {
    fn default() -> Self {
        Self::new(false)
    }
}

/// Creates `dir` (and parents) and sets its mode; an existing directory keeps its owner and
/// group but gets `mode`.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(Error::io(format!("setting the mode of {}", dir.display())))
}

/// A temporary file written in the directory of its destination, waiting to be renamed.
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
}

impl Staged {
    fn write(dest: &Path, bytes: &[u8], mode: u32) -> Result<Self> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let mut rnd = [0u8; 6];
        aws_lc_rs::rand::fill(&mut rnd).expect("CSPRNG");
        let tmp = dir.join(format!(
            ".{name}.{}.tmp",
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let ctx = || format!("writing {}", tmp.display());
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(Error::io(ctx()))?;
        let staged = Staged {
            tmp: tmp.clone(),
            dest: dest.to_owned(),
        };
        // The umask can only narrow `mode`; set it exactly so group-readable keys stay readable.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(Error::io(ctx()))?;
        if let Ok(old) = fs::metadata(dest)
            && let Err(e) = std::os::unix::fs::fchown(&f, None, Some(old.gid()))
        {
            tracing::warn!("cannot keep group {} on {}: {e}", old.gid(), dest.display());
        }
        f.write_all(bytes).map_err(Error::io(ctx()))?;
        f.sync_all().map_err(Error::io(ctx()))?;
        Ok(staged)
    }

    fn commit(mut self) -> Result<()> {
        let tmp = std::mem::take(&mut self.tmp);
        fs::rename(&tmp, &self.dest)
            .map_err(Error::io(format!("replacing {}", self.dest.display())))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes one file atomically with `mode` (see the module invariants).
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    Staged::write(dest, bytes, mode)?.commit()?;
    sync_dir(dest.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// The files of one managed certificate.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub dir: PathBuf,
    pub modes: Modes,
}

impl CertFiles {
    pub fn new(cert_dir: &Path, name: &str, modes: Modes) -> Self {
        CertFiles {
            dir: cert_dir.join(name),
            modes,
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn read_fullchain(&self) -> Option<String> {
        fs::read_to_string(self.path(FULLCHAIN_FILE)).ok()
    }

    pub fn read_key(&self) -> Option<String> {
        fs::read_to_string(self.path(KEY_FILE)).ok()
    }

    /// Installs a new chain (leaf first) and, unless the key stays elsewhere, its key. The
    /// current files are archived first and the archive pruned to `keep` versions (R67).
    pub fn install(&self, key_pem: Option<&str>, chain_pem: &str, keep: usize) -> Result<()> {
        let certs = sceau_wire::key::pem_decode_all(chain_pem, "CERTIFICATE");
        let Some((leaf, rest)) = certs.split_first() else {
            return Err(Error::Certificate("the chain to install is empty".into()));
        };
        let enc = |ders: &[Vec<u8>]| {
            ders.iter()
                .map(|d| sceau_wire::key::pem_encode("CERTIFICATE", d))
                .collect::<String>()
        };
        let cert = enc(std::slice::from_ref(leaf));
        let chain = enc(rest);
        let full = enc(&certs);
        if let Some(parent) = self.dir.parent()
            && !parent.exists()
        {
            ensure_dir(parent, 0o755)?;
        }
        if !self.dir.exists() {
            ensure_dir(&self.dir, self.modes.dir)?;
        }
        self.archive_current(keep)?;
        // Stage everything before renaming anything: a failure while writing leaves the old set.
        let mut staged = Vec::new();
        if let Some(key) = key_pem {
            staged.push(Staged::write(
                &self.path(KEY_FILE),
                key.as_bytes(),
                self.modes.key,
            )?);
        }
        staged.push(Staged::write(
            &self.path(CERT_FILE),
            cert.as_bytes(),
            self.modes.cert,
        )?);
        staged.push(Staged::write(
            &self.path(CHAIN_FILE),
            chain.as_bytes(),
            self.modes.cert,
        )?);
        staged.push(Staged::write(
            &self.path(FULLCHAIN_FILE),
            full.as_bytes(),
            self.modes.cert,
        )?);
        for s in staged {
            s.commit()?;
        }
        sync_dir(&self.dir);
        Ok(())
    }

    /// Copies the current set into `archive/<time>-<serial>/` and keeps the `keep` newest.
    fn archive_current(&self, keep: usize) -> Result<()> {
        let Some(full) = self.read_fullchain() else {
            return Ok(());
        };
        let serial = crate::certinfo::CertInfo::from_pem_chain(&full)
            .map(|c| c.serial_hex)
            .unwrap_or_default();
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z-{serial}",
            now.year(),
            now.month() as u8,
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let archive = self.dir.join(ARCHIVE_DIR);
        if keep > 0 {
            ensure_dir(&archive, 0o700)?;
            let dest = archive.join(stamp);
            ensure_dir(&dest, 0o700)?;
            for (file, mode) in [
                (KEY_FILE, self.modes.key),
                (CERT_FILE, self.modes.cert),
                (CHAIN_FILE, self.modes.cert),
                (FULLCHAIN_FILE, self.modes.cert),
            ] {
                if let Ok(bytes) = fs::read(self.path(file)) {
                    write_atomic(&dest.join(file), &bytes, mode)?;
                }
            }
        }
        self.prune_archive(keep)
    }

    /// Removes archived versions beyond the `keep` newest (names sort by time).
    pub fn prune_archive(&self, keep: usize) -> Result<()> {
        let archive = self.dir.join(ARCHIVE_DIR);
        let Ok(entries) = fs::read_dir(&archive) else {
            return Ok(());
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        names.sort();
        let excess = names.len().saturating_sub(keep);
        for old in &names[..excess] {
            fs::remove_dir_all(old).map_err(Error::io(format!("pruning {}", old.display())))?;
        }
        Ok(())
    }

    /// Archived versions, oldest first.
    pub fn archived(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.dir.join(ARCHIVE_DIR))
            .map(|e| e.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Runs a deploy hook after `files` were installed: `/bin/sh -c HOOK` with `SCEAU_CERT_NAME`,
/// `SCEAU_CERT_DIR` and `SCEAU_DOMAINS` (space-separated), stdin closed. A hook that fails
/// is an error that says the certificate is installed nonetheless.
pub async fn run_deploy_hook(
    files: &CertFiles,
    name: &str,
    domains: &[&str],
    hook: &str,
) -> Result<()> {
    let status = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(hook)
        .env("SCEAU_CERT_NAME", name)
        .env("SCEAU_CERT_DIR", &files.dir)
        .env("SCEAU_DOMAINS", domains.join(" "))
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| Error::Config(format!("{name}: cannot run the deploy hook: {e}")))?;
    if !status.success() {
        return Err(Error::Config(format!(
            "{name}: the certificate was installed but the deploy hook `{hook}` failed ({status}); fix it and run it by hand"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_exact_mode_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn install_refuses_an_empty_chain_and_touches_nothing() {
        let d = tempfile::tempdir().unwrap();
        let files = CertFiles::new(d.path(), "x", Modes::default());
        assert!(files.install(Some("k"), "no certificate here", 3).is_err());
        assert!(!files.dir.exists());
    }
}
