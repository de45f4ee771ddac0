//! The services' one error type: an ACME problem type with its detail, plus what the HTTP edge
//! needs to render it (status override, Retry-After, Location). Internal failures become
//! `serverInternal` with a generic detail; their cause goes to the log, not to the client.
//! A storage fault (disk full, read-only, unreachable database) becomes 503 `serverInternal`
//! with Retry-After and is not logged here: the store logs each such condition once, not once
//! per request.

use sceau_store::StoreError;
use sceau_wire::{Problem, ProblemType, Subproblem};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.name())]
pub struct AcmeError {
    pub kind: ProblemType,
    pub detail: String,
    pub subproblems: Vec<Subproblem>,
    /// HTTP status when it differs from the type's usual one (404, 405, 413, 415, 409).
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    /// For 409 on keyChange and newAccount: the account that already has the key.
    pub location: Option<String>,
    pub algorithms: Option<Vec<String>>,
}

pub type AcmeResult<T> = Result<T, AcmeError>;

/// Seconds a client is told to wait after a storage fault: long enough not to hammer a full
/// disk, short enough that issuance resumes soon after space returns.
pub const STORAGE_RETRY_AFTER: u64 = 5;

impl AcmeError {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        AcmeError {
            kind,
            detail: detail.into(),
            subproblems: Vec::new(),
            status: None,
            retry_after: None,
            location: None,
            algorithms: None,
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::Malformed, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::Unauthorized, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::malformed(format!("no such {what}")).with_status(404)
    }

    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(context, %cause, "internal error");
        Self::new(
            ProblemType::ServerInternal,
            format!("internal error while {context}; try again later"),
        )
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_subproblems(mut self, subproblems: Vec<Subproblem>) -> Self {
        self.subproblems = subproblems;
        self
    }

    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.kind.status())
    }

    pub fn problem(&self) -> Problem {
        let mut p =
            Problem::new(self.kind, self.detail.clone()).with_subproblems(self.subproblems.clone());
        p.status = Some(self.http_status());
        p.algorithms = self.algorithms.clone();
        p
    }
}

/// Runs `op` until it succeeds or fails for another reason than a storage fault, waiting
/// between attempts (1 s, doubling up to 30 s). For work that a passing fault must not lose
/// and that nobody else would redo before a restart: a validation's outcome, a signed
/// certificate. The store counts each failed attempt; nothing is logged per attempt.
pub(crate) async fn until_stored<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match op().await {
            Err(e) if e.storage_fault().is_some() => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            done => return done,
        }
    }
}

impl From<StoreError> for AcmeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AcmeError::not_found("object"),
            StoreError::Conflict(what) => {
                AcmeError::malformed(format!("the object changed meanwhile: {what}"))
                    .with_status(409)
            }
            // RFC 9110 §15.6.4: 503 with Retry-After says the condition is temporary.
            StoreError::Unavailable { .. } => {
                let mut err = Self::new(
                    ProblemType::ServerInternal,
                    "the server's storage is temporarily unavailable; try again in a few seconds",
                )
                .with_status(503);
                err.retry_after = Some(STORAGE_RETRY_AFTER);
                err
            }
            other => AcmeError::internal("accessing the database", other),
        }
    }
}
