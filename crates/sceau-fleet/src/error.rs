//! Typed errors of fleet mode; the manager turns them into JSON problems only at its HTTP edge.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Store(#[from] sceau_store::StoreError),
    #[error(transparent)]
    Acme(#[from] sceau_client::Error),
    #[error("TLS: {0}")]
    Tls(String),
    /// The manager refused a request; `kind` is the problem's machine-readable name.
    #[error("the manager refused: {detail}")]
    Refused { kind: String, detail: String },
    #[error("cannot reach the manager at {url}: {detail}")]
    Unreachable { url: String, detail: String },
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
