//! Runtime context shared by the commands: directories, the event sink, server connections.

use std::io::IsTerminal;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sceau_client::events::{self, Event, EventSink};
use sceau_client::http::HttpOptions;
use sceau_client::state::StateDir;
use sceau_client::{AcmeClient, Error, Result};

use crate::cli::Cli;

pub struct Ctx {
    pub state: StateDir,
    pub cert_dir: PathBuf,
    pub events: EventSink,
}

pub fn is_root() -> bool {
    // The owner of /proc/self is the effective uid; avoids a libc dependency.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/sceau");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("sceau")
}

/// Short human messages on a terminal; the JSON log is the durable record.
fn progress(event: &Event) {
    let line = match event {
        Event::AccountCreated { account, .. } => format!("account created: {account}"),
        Event::AccountKeyChanged { key_type, .. } => format!("account key replaced ({key_type})"),
        Event::AccountDeactivated { account, .. } => format!("account deactivated: {account}"),
        Event::OrderCreated { identifiers, .. } => {
            format!("order placed for {}", identifiers.join(", "))
        }
        Event::ChallengeAnswered {
            identifier, method, ..
        } => format!("{identifier}: {method} ready, CA notified"),
        Event::ChallengeValid { identifier, method } => format!("{identifier}: {method} validated"),
        Event::Issued {
            name, not_after, ..
        } => format!("{name}: certificate issued, valid until {not_after}"),
        Event::Renewed {
            name, not_after, ..
        } => format!("{name}: renewed, valid until {not_after}"),
        Event::RenewalSkipped { name, reason } => format!("{name}: not due ({reason})"),
        Event::StarOrdered { name, end_date, .. } => {
            format!("{name}: STAR series ordered, renewed by the CA until {end_date}")
        }
        Event::StarInstalled {
            name, not_after, ..
        } => format!("{name}: next STAR certificate installed, valid until {not_after}"),
        Event::StarEnded { name, outcome, .. } => format!("{name}: STAR series {outcome}"),
        Event::Revoked { serial, .. } => format!("certificate {serial} revoked"),
        Event::DeployHook { name, success, .. } => {
            format!(
                "{name}: deploy hook {}",
                if *success { "succeeded" } else { "FAILED" }
            )
        }
        Event::Failure { .. } => return, // the final error line says it
    };
    eprintln!("sceau: {line}");
}

impl Ctx {
    pub fn new(cli: &Cli) -> Result<Self> {
        let root = cli.state_dir.clone().unwrap_or_else(default_state_dir);
        let state = StateDir::open(&root)?;
        let cert_dir = cli.cert_dir.clone().unwrap_or_else(|| root.join("live"));
        let mut sinks: Vec<EventSink> = Vec::new();
        match cli.event_log.as_deref() {
            Some("-") => sinks.push(events::json_lines(Box::new(std::io::stderr()))),
            Some("") | Some("none") => {}
            other => {
                let path = other
                    .map(PathBuf::from)
                    .unwrap_or_else(|| root.join("events.jsonl"));
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(Error::io(format!(
                        "opening the event log {}",
                        path.display()
                    )))?;
                sinks.push(events::json_lines(Box::new(f)));
            }
        }
        if !cli.quiet && std::io::stderr().is_terminal() && cli.event_log.as_deref() != Some("-") {
            sinks.push(Arc::new(progress));
        }
        Ok(Ctx {
            state,
            cert_dir,
            events: events::fan_out(sinks),
        })
    }
}

pub async fn connect(server: &str, ca_bundle: Option<&Path>) -> Result<AcmeClient> {
    let ca_bundle_pem = ca_bundle
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(Error::io(format!("reading the CA bundle {}", p.display())))
        })
        .transpose()?;
    let http = sceau_client::http::build_client(&HttpOptions {
        ca_bundle_pem,
        timeout: None,
    })?;
    AcmeClient::connect(server, http).await
}
