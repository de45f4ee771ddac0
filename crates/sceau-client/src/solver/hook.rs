//! dns-01 through a hook program, for DNS providers without RFC 2136.
//!
//! The program is run directly (no shell) as `PROGRAM present` and later `PROGRAM cleanup`,
//! with this environment:
//!
//! | variable | value |
//! |---|---|
//! | `SCEAU_ACTION` | `present` or `cleanup` |
//! | `SCEAU_DOMAIN` | the identifier, e.g. `www.example.org` |
//! | `SCEAU_RECORD_NAME` | `_acme-challenge.www.example.org` (CNAMEs not followed: the hook's job) |
//! | `SCEAU_TXT_VALUE` | the TXT value, base64url(SHA-256(key authorization)) (RFC 8555 §8.4) |
//! | `SCEAU_TOKEN` | the challenge token |
//! | `SCEAU_KEY_AUTHORIZATION` | token.thumbprint |
//!
//! `present` must return only once the record is visible on the zone's authoritative servers.
//! A non-zero exit fails the challenge with the hook's last stderr line.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct DnsHookCall {
    pub program: PathBuf,
    pub domain: String,
    pub txt_value: String,
    pub token: String,
    pub key_authorization: String,
}

impl DnsHookCall {
    pub async fn run(&self, action: &str) -> Result<()> {
        run_hook(&self.program, action, self).await
    }
}

async fn run_hook(program: &Path, action: &str, call: &DnsHookCall) -> Result<()> {
    let out = tokio::process::Command::new(program)
        .arg(action)
        .env("SCEAU_ACTION", action)
        .env("SCEAU_DOMAIN", &call.domain)
        .env(
            "SCEAU_RECORD_NAME",
            format!("_acme-challenge.{}", call.domain),
        )
        .env("SCEAU_TXT_VALUE", &call.txt_value)
        .env("SCEAU_TOKEN", &call.token)
        .env("SCEAU_KEY_AUTHORIZATION", &call.key_authorization)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot run the DNS hook {}: {e}",
                program.display()
            ))
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(Error::Dns(format!(
        "the DNS hook {} {action} failed ({}): {last}",
        program.display(),
        out.status
    )))
}
