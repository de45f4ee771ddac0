//! Sealing of EAB MAC keys at rest (agency guide R21): AES-256-GCM under a wrap key that lives
//! in a file beside the database, never in it, so that a copy of the database alone does not
//! yield a single MAC key.
//!
//! Invariants:
//! - The wrap key file holds exactly 32 random bytes, mode 0600. It is created once, atomically
//!   (temp file, fsync, hard link to the final name, which fails if another process won the
//!   race; the loser then reads the winner's key), so the server and an admin command started at
//!   the same time agree on one key.
//! - A sealed MAC key is `nonce (12) || ciphertext || tag (16)`, with the AA's kid as associated
//!   data: a sealed key copied onto another AA's row does not open.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::AdminError;

pub const WRAP_KEY_FILE: &str = "eab-wrap.key";
const KEY_LEN: usize = 32;

pub struct WrapKey {
    key: LessSafeKey,
    path: PathBuf,
}

impl std::fmt::Debug for WrapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("OS random source");
    bytes
}

impl WrapKey {
    /// Reads `<data_dir>/eab-wrap.key`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<WrapKey, AdminError> {
        Self::load_or_create_named(data_dir, WRAP_KEY_FILE)
    }

    /// Reads `<data_dir>/<file>`, creating it on first use: a key of its own for another kind
    /// of secret (the console's TOTP secrets), so that neither key opens the other's.
    pub fn load_or_create_named(data_dir: &Path, file: &str) -> Result<WrapKey, AdminError> {
        let path = data_dir.join(file);
        let bytes = match read_key(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(data_dir, &path)?,
            Err(e) => return Err(AdminError::WrapKey(format!("{}: {e}", path.display()))),
        };
        Self::from_bytes(&bytes, path)
    }

    fn from_bytes(bytes: &[u8], path: PathBuf) -> Result<WrapKey, AdminError> {
        if bytes.len() != KEY_LEN {
            return Err(AdminError::WrapKey(format!(
                "{} must hold exactly {KEY_LEN} bytes, not {}",
                path.display(),
                bytes.len()
            )));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| AdminError::WrapKey("bad AES-256 key".into()))?;
        Ok(WrapKey {
            key: LessSafeKey::new(unbound),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seals `mac_key` for the AA `kid`.
    pub fn seal(&self, kid: &str, mac_key: &[u8]) -> Vec<u8> {
        let nonce_bytes = random::<NONCE_LEN>();
        let mut in_out = mac_key.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(kid.as_bytes()),
                &mut in_out,
            )
            .expect("AES-GCM sealing of a short buffer");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        out
    }

    /// Opens a sealed MAC key of the AA `kid`; fails if it was sealed for another kid, with
    /// another wrap key, or altered.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, AdminError> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(AdminError::Unseal(kid.to_owned()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| AdminError::Unseal(kid.to_owned()))?;
        let mut in_out = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut in_out)
            .map_err(|_| AdminError::Unseal(kid.to_owned()))?;
        Ok(plain.to_vec())
    }
}

fn read_key(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mode = f.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "is readable by others (mode {:o}); chmod 600 it",
            mode & 0o777
        )));
    }
    let mut bytes = Vec::with_capacity(KEY_LEN);
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn create_key(dir: &Path, path: &Path) -> Result<Vec<u8>, AdminError> {
    let err = |what: &str, e: std::io::Error| {
        AdminError::WrapKey(format!("{what} {}: {e}", path.display()))
    };
    fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
    let bytes = random::<KEY_LEN>();
    let tmp = dir.join(format!(".{WRAP_KEY_FILE}.{}", crate::hex(&random::<8>())));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| err("creating", e))?;
    let written = f.write_all(&bytes).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err("writing", e));
    }
    // link() never replaces an existing file: if another process created the key meanwhile,
    // theirs is kept and read back.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(bytes.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(path).map_err(|e| err("reading", e))
        }
        Err(e) => Err(err("creating", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_0600_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let a = WrapKey::load_or_create(dir.path()).unwrap();
        let meta = fs::metadata(dir.path().join(WRAP_KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let sealed = a.seal("kid1", b"secret mac key");
        let b = WrapKey::load_or_create(dir.path()).unwrap();
        assert_eq!(b.open("kid1", &sealed).unwrap(), b"secret mac key");
        // Only the key file is left behind, no temp file.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sealed_key_is_bound_to_kid_and_wrap_key() {
        let dir = tempfile::tempdir().unwrap();
        let k = WrapKey::load_or_create(dir.path()).unwrap();
        let sealed = k.seal("kid1", &[7u8; 32]);
        assert_ne!(
            &sealed[NONCE_LEN..NONCE_LEN + 32],
            &[7u8; 32],
            "stored in clear"
        );
        assert!(k.open("kid2", &sealed).is_err(), "opened under another kid");
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(k.open("kid1", &tampered).is_err(), "tampering not detected");
        assert!(k.open("kid1", &sealed[..10]).is_err());
        let other_dir = tempfile::tempdir().unwrap();
        let other = WrapKey::load_or_create(other_dir.path()).unwrap();
        assert!(
            other.open("kid1", &sealed).is_err(),
            "opened with another wrap key"
        );
        // Two seals of one key differ (fresh nonce).
        assert_ne!(k.seal("kid1", &[7u8; 32]), sealed);
    }

    #[test]
    fn refuses_a_key_file_readable_by_others_or_of_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WRAP_KEY_FILE);
        fs::write(&path, [1u8; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = WrapKey::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("readable by others"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, [1u8; 31]).unwrap();
        assert!(WrapKey::load_or_create(dir.path()).is_err());
    }
}
