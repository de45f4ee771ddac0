//! Errors of the bench. An [`BenchError`] during one issuance is counted and the virtual client
//! moves on to its next order; only setup errors (bundle, directory, listener) stop the run.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("CA bundle {path}: {reason}")]
    CaBundle { path: PathBuf, reason: String },
    #[error("EAB: {0}")]
    Eab(String),
    #[error("http-01 listener on port {port}: {source}")]
    Listener { port: u16, source: std::io::Error },
    #[error("{step}: {source}")]
    Http {
        step: &'static str,
        source: reqwest::Error,
    },
    #[error("{step}: HTTP {status}: {detail}")]
    Acme {
        step: &'static str,
        status: u16,
        detail: String,
    },
    #[error("{step}: unexpected response: {detail}")]
    Protocol { step: &'static str, detail: String },
    #[error("{step}: still {state} after {secs} s")]
    Timeout {
        step: &'static str,
        state: String,
        secs: u64,
    },
    #[error("signing: {0}")]
    Key(#[from] sceau_wire::key::KeyError),
    #[error("CSR: {0}")]
    Csr(#[from] rcgen::Error),
}

impl BenchError {
    /// A short form for grouping distinct errors: per-name details are left out so that the
    /// same failure on many orders counts as one kind.
    pub fn kind(&self) -> String {
        match self {
            BenchError::Acme {
                step,
                status,
                detail,
            } => {
                let first = detail.split(':').next().unwrap_or(detail);
                format!("{step}: HTTP {status}: {first}")
            }
            BenchError::Http { step, source } => {
                let what = if source.is_timeout() {
                    "timeout"
                } else if source.is_connect() {
                    "connect"
                } else if source.is_decode() {
                    "decode"
                } else {
                    "transport"
                };
                format!("{step}: {what}")
            }
            BenchError::Protocol { step, .. } => format!("{step}: unexpected response"),
            BenchError::Timeout { step, state, .. } => format!("{step}: still {state}"),
            other => other.to_string(),
        }
    }
}
