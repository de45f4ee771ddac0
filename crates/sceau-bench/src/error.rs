//! Errors of the bench. An [`BenchError`] during one issuance is counted and the virtual client
//! moves on to its next order; only setup errors (bundle, directory, listener) stop the run.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("CA bundle {path}: {reason}")]
    CaBundle { path: PathBuf, reason: String },
    #[error("EAB: {0}")]
    Eab(String),
    #[error("--csr-key {path}: {reason}")]
    CsrKey { path: PathBuf, reason: String },
    #[error("http-01 listener on port {port}: {source}")]
    Listener { port: u16, source: std::io::Error },
    #[error("{step}: {detail}")]
    Http {
        step: &'static str,
        what: &'static str,
        detail: String,
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
    /// A transport error with its whole cause chain: reqwest's own message alone ("error
    /// sending request") does not say whether the peer refused, reset or timed out.
    pub fn http(step: &'static str, source: reqwest::Error) -> Self {
        let what = if source.is_timeout() {
            "timeout"
        } else if source.is_connect() {
            "connect"
        } else if source.is_decode() {
            "decode"
        } else {
            "transport"
        };
        let mut detail = source.to_string();
        let mut cause = std::error::Error::source(&source);
        while let Some(c) = cause {
            detail.push_str(": ");
            detail.push_str(&c.to_string());
            cause = c.source();
        }
        BenchError::Http { step, what, detail }
    }

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
            BenchError::Http { step, what, .. } => format!("{step}: {what}"),
            BenchError::Protocol { step, .. } => format!("{step}: unexpected response"),
            BenchError::Timeout { step, state, .. } => format!("{step}: still {state}"),
            other => other.to_string(),
        }
    }
}
