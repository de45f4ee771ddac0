//! Client errors. Every variant renders as one line that says what failed and, where the
//! cause is known, what to do about it; server problem documents are kept whole so that the
//! event log can carry them (R72).

use sceau_wire::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the ACME server at {url}: {reason} (check --server and the network)")]
    Transport { url: String, reason: String },
    #[error("the ACME server at {url} answered HTTP {status} with an unexpected body: {reason}")]
    Protocol {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("the ACME server refused the request to {url}: {problem}")]
    Server { url: String, problem: Box<Problem> },
    #[error("challenge {method} for {identifier} failed: {detail}")]
    Challenge {
        identifier: String,
        method: String,
        detail: String,
        problem: Option<Box<Problem>>,
    },
    #[error("order failed: {0}")]
    Order(String),
    #[error("{0}")]
    Config(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("key or CSR: {0}")]
    Key(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("DNS: {0}")]
    Dns(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// The server's problem document, if this error carries one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Server { problem, .. } => Some(problem),
            Error::Challenge { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
