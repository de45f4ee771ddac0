//! Validation outcomes as ACME problem types.

use sceau_wire::ProblemType;

/// Why a validation failed: the problem type for the challenge's `error` and a one-line detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {detail}")]
pub struct ValidationError {
    pub kind: ProblemType,
    pub detail: String,
}

impl ValidationError {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        // One line, whatever the peer sent us.
        let detail = detail.into().replace(['\n', '\r'], " ");
        ValidationError { kind, detail }
    }

    /// The problem document for a challenge's `error` field.
    pub fn to_problem(&self) -> sceau_wire::Problem {
        sceau_wire::Problem::new(self.kind, self.detail.clone())
    }
}

/// `Validator::new` failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("DNS resolver: {0}")]
    Resolver(String),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Peer-controlled text cut short and made printable for a detail line.
pub(crate) fn snippet(text: &str) -> String {
    snippet_of(text, 100)
}

/// [`snippet`] up to `max` characters.
pub(crate) fn snippet_of(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > max {
        format!("{}…", clean.chars().take(max).collect::<String>())
    } else {
        clean
    }
}
