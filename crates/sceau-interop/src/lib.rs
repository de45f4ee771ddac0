//! Test support for Sceau's interoperability suite (issue 2): real ACME clients from Debian
//! (certbot, lego, dehydrated, uacme) obtain, renew and revoke certificates from a freshly
//! started server, and openssl checks every certificate they save.
//!
//! Invariants:
//! - Real programs only: knotd for DNS, the server under test as a child process, the
//!   clients as the distribution ships them, openssl for verification. A missing tool fails
//!   the test, it never skips.
//! - The same client flows run against `sceau-server` and against Pebble ([`ServerKind`]):
//!   Pebble passing shows the flow and harness are right, so a Sceau failure is Sceau's.
//! - Every test owns its ports (kernel-chosen) and temp dir, so nextest may run them in
//!   parallel.

use std::path::Path;
use std::process::Command;

pub mod certcheck;
pub mod hooks;
pub mod interop;
pub mod process;
pub mod server;
pub mod tlsca;
pub mod webroot;

pub use certcheck::CertInfo;
pub use interop::Interop;
pub use process::{Run, assert_revoked_again_refused, run, run_ok};
pub use server::{AcmeServer, ServerKind};
pub use webroot::Webroot;

/// RFC 8555 §6.7 problem types that say "the challenge was checked and failed" (as opposed
/// to a malformed request or a server error). Which one fits is the server's call: Pebble
/// says `connection` for an unresolvable name and `unauthorized` for a wrong TXT record;
/// `dns` fits a DNS lookup that found nothing.
pub const VALIDATION_PROBLEMS: &[&str] =
    &["dns", "connection", "unauthorized", "incorrectResponse"];

/// Whether a client's output relays one of [`VALIDATION_PROBLEMS`], either as a full URN or
/// as certbot's "Type: <name>" summary.
pub fn reports_validation_problem(output: &str) -> bool {
    VALIDATION_PROBLEMS.iter().any(|t| {
        output.contains(&format!("urn:ietf:params:acme:error:{t}"))
            || output.contains(&format!("Type:   {t}\n"))
    })
}

/// `certbot <sub>` with its configuration, work files and logs under `dir` (the log in
/// `dir/logs/letsencrypt.log`), never prompting, and trusting `tls_root` for the ACME server's
/// own HTTPS certificate.
pub fn certbot(sub: &str, dir: &Path, tls_root: &Path) -> Command {
    let mut c = Command::new(sceau_testkit::require_tool("certbot"));
    c.arg(sub)
        .arg("--config-dir")
        .arg(dir.join("config"))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--logs-dir")
        .arg(dir.join("logs"))
        .arg("--non-interactive")
        .env("REQUESTS_CA_BUNDLE", tls_root);
    c
}

/// Declares, for each flow `fn name(kind: ServerKind)` in scope, the tests `sceau::name` and
/// `pebble::name`, so one flow runs against both servers (filter with `test(/^sceau::/)`).
#[macro_export]
macro_rules! against_both_servers {
    ($($flow:ident),+ $(,)?) => {
        mod sceau {
            $(
                #[test]
                fn $flow() {
                    super::$flow($crate::ServerKind::Sceau)
                }
            )+
        }
        mod pebble {
            $(
                #[test]
                fn $flow() {
                    super::$flow($crate::ServerKind::Pebble)
                }
            )+
        }
    };
}
