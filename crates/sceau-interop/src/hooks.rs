//! Hook scripts the clients call to publish challenge responses, written per test.
//!
//! Invariants:
//! - Scripts are POSIX sh, executable, and append one line per call to a call log so a test
//!   can check the client really called them (publish AND clean up, R64).
//! - DNS changes go over the network as RFC 2136 updates signed with the zone's TSIG key; the
//!   key is read from a 0600 file, never put on a command line.
//! - A script exits non-zero when its work fails, so the client sees the failure.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sceau_testkit::{KnotDns, require_tool};

/// What a DNS hook does when asked to publish the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsHookMode {
    /// Add the TXT record on `auth`, delete it on `cleanup`.
    Publish,
    /// Log the call and succeed without publishing anything: the server must then refuse.
    PublishNothing,
}

/// Writes a certbot `--manual-auth-hook` / `--manual-cleanup-hook` script at `path`, called
/// as `<path> auth` and `<path> cleanup` (certbot passes `CERTBOT_DOMAIN` and
/// `CERTBOT_VALIDATION` in the environment). Returns the call log's path.
pub fn certbot_dns_hook(path: &Path, dns: &KnotDns, mode: DnsHookMode) -> io::Result<PathBuf> {
    let dir = path.parent().expect("hook path has a parent");
    let key = dir.join("tsig.knot-key");
    dns.write_knot_key_file(&key)?;
    let calls = dir.join("dns-hook.calls");
    let knsupdate = require_tool("knsupdate");
    let publish = match mode {
        DnsHookMode::Publish => "true",
        DnsHookMode::PublishNothing => "false",
    };
    let script = format!(
        r#"#!/bin/sh
# certbot manual hook: publish / remove _acme-challenge TXT by RFC 2136 + TSIG.
set -eu
echo "$1 $CERTBOT_DOMAIN $CERTBOT_VALIDATION" >> '{calls}'
if ! {publish}; then exit 0; fi
name="_acme-challenge.$CERTBOT_DOMAIN."
case "$1" in
  auth) op="add $name 1 TXT \"$CERTBOT_VALIDATION\"" ;;
  cleanup) op="delete $name TXT \"$CERTBOT_VALIDATION\"" ;;
  *) echo "unknown hook action $1" >&2; exit 2 ;;
esac
printf 'server {ip} {port}\nzone {zone}\nupdate %s\nsend\nquit\n' "$op" | '{knsupdate}' -k '{key}'
"#,
        calls = calls.display(),
        ip = dns.addr.ip(),
        port = dns.addr.port(),
        zone = dns.zone,
        knsupdate = knsupdate.display(),
        key = key.display(),
    );
    write_executable(path, &script)?;
    Ok(calls)
}

/// Writes a uacme `-h` hook at `path` that answers http-01 by writing the key authorization
/// into `webroot_dir/<token>` and declines the other challenge types. Returns the call log.
pub fn uacme_http_hook(path: &Path, webroot_dir: &Path) -> io::Result<PathBuf> {
    let calls = path.with_extension("calls");
    let script = format!(
        r#"#!/bin/sh
# uacme hook: METHOD TYPE IDENT TOKEN AUTH
set -eu
echo "$1 $2 $3" >> '{calls}'
[ "$2" = http-01 ] || exit 1
case "$1" in
  begin) printf '%s' "$5" > '{dir}'/"$4" ;;
  done|failed) rm -f '{dir}'/"$4" ;;
  *) exit 1 ;;
esac
"#,
        calls = calls.display(),
        dir = webroot_dir.display(),
    );
    write_executable(path, &script)?;
    Ok(calls)
}

/// The lines of a hook's call log (empty if it was never called).
pub fn calls(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_executable(path: &Path, text: &str) -> io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}
