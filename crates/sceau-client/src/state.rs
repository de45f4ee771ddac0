//! The client's own state: accounts per ACME server and the managed certificates' settings.
//!
//! ```text
//! <state-dir>/                          0700
//!   accounts/<server slug>/account.json 0600  URL, contact, key type (never the EAB MAC key)
//!   accounts/<server slug>/key.pem      0600  the account key, PKCS#8
//!   certs/<name>.json                   0600  what `renew` needs to redo an issuance
//! ```
//!
//! Invariant: names used as file names are checked ([`check_name`]) so that no setting can
//! make the client write outside its directories.

use std::fs;
use std::path::{Path, PathBuf};

use sceau_wire::{AccountKey, AutoRenewal, Identifier};
use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::error::{Error, Result};
use crate::files::{ensure_dir, write_atomic};
use crate::solver::Plan;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountRecord {
    pub server: String,
    pub url: String,
    #[serde(default)]
    pub contact: Vec<String>,
    pub key_type: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab_key_id: Option<String>,
}

/// Everything `renew` needs to redo an issuance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManagedCert {
    pub name: String,
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<PathBuf>,
    pub identifiers: Vec<Identifier>,
    pub plan: Plan,
    pub key_type: String,
    #[serde(default)]
    pub reuse_key: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_hook: Option<String>,
    #[serde(default = "default_fraction")]
    pub renew_fraction: f64,
    #[serde(default = "default_keep")]
    pub archive_keep: usize,
    #[serde(default)]
    pub group_readable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default)]
    pub revoked: bool,
    /// A STAR series (RFC 8739): the CA renews this certificate itself; `sceau star fetch`
    /// installs each new one and `renew` leaves the entry alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub star: Option<StarSeries>,
}

/// Where a STAR series lives on its server and what was agreed for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StarSeries {
    pub order_url: String,
    /// The rolling star-certificate URL (§3.3).
    pub certificate_url: String,
    /// The terms as the server agreed them in the order (§3.1.1).
    pub terms: AutoRenewal,
    /// Set once the series is over: `canceled` or `expired`, with the server's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

impl StarSeries {
    pub fn is_active(&self) -> bool {
        self.ended.is_none()
    }
}

fn default_fraction() -> f64 {
    crate::renewal::DEFAULT_FRACTION
}

pub fn default_keep() -> usize {
    3
}

/// Certificate names become directory names: letters, digits, `.`, `-`, `_`, not starting with `.`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name:?} is not a valid certificate name (letters, digits, . - _)"
        )))
    }
}

/// A directory name for a server's directory URL.
pub fn server_slug(directory_url: &str) -> String {
    let s = directory_url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(directory_url);
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> Result<Self> {
        ensure_dir(root, 0o700)?;
        Ok(StateDir {
            root: root.to_owned(),
        })
    }

    pub fn account_dir(&self, server: &str) -> PathBuf {
        self.root.join("accounts").join(server_slug(server))
    }

    pub fn load_account(&self, server: &str) -> Result<Option<(Account, AccountRecord)>> {
        let dir = self.account_dir(server);
        let Ok(json) = fs::read_to_string(dir.join("account.json")) else {
            return Ok(None);
        };
        let record: AccountRecord = serde_json::from_str(&json)
            .map_err(|e| Error::Config(format!("{}: {e}", dir.join("account.json").display())))?;
        let pem = fs::read_to_string(dir.join("key.pem")).map_err(Error::io(format!(
            "reading {}",
            dir.join("key.pem").display()
        )))?;
        let key = AccountKey::from_pem(&pem)
            .map_err(|e| Error::Key(format!("{}: {e}", dir.join("key.pem").display())))?;
        Ok(Some((
            Account {
                url: record.url.clone(),
                key,
            },
            record,
        )))
    }

    pub fn save_account(&self, account: &Account, record: &AccountRecord) -> Result<()> {
        let dir = self.account_dir(&record.server);
        ensure_dir(&self.root.join("accounts"), 0o700)?;
        ensure_dir(&dir, 0o700)?;
        write_atomic(&dir.join("key.pem"), account.key.to_pem().as_bytes(), 0o600)?;
        write_atomic(
            &dir.join("account.json"),
            serde_json::to_string_pretty(record)
                .expect("serialises")
                .as_bytes(),
            0o600,
        )
    }

    fn cert_path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join("certs").join(format!("{name}.json")))
    }

    pub fn load_cert(&self, name: &str) -> Result<Option<ManagedCert>> {
        let p = self.cert_path(name)?;
        let Ok(json) = fs::read_to_string(&p) else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| Error::Config(format!("{}: {e}", p.display())))
    }

    pub fn save_cert(&self, cert: &ManagedCert) -> Result<()> {
        let p = self.cert_path(&cert.name)?;
        ensure_dir(&self.root.join("certs"), 0o700)?;
        write_atomic(
            &p,
            serde_json::to_string_pretty(cert)
                .expect("serialises")
                .as_bytes(),
            0o600,
        )
    }

    /// Every managed certificate, sorted by name.
    pub fn list_certs(&self) -> Result<Vec<ManagedCert>> {
        let Ok(entries) = fs::read_dir(self.root.join("certs")) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            if let Some(c) = self.load_cert(&n)? {
                out.push(c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("www.example.org").unwrap();
        assert_eq!(
            server_slug("https://127.0.0.1:14000/dir"),
            "127.0.0.1_14000_dir"
        );
    }
}
