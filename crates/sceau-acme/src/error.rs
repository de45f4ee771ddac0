//! The services' one error type: an ACME problem type with its detail, plus what the HTTP edge
//! needs to render it (status override, Retry-After, Location). Internal failures become
//! `serverInternal` with a generic detail; their cause goes to the log, not to the client.

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

impl From<StoreError> for AcmeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AcmeError::not_found("object"),
            StoreError::Conflict(what) => {
                AcmeError::malformed(format!("the object changed meanwhile: {what}"))
                    .with_status(409)
            }
            other => AcmeError::internal("accessing the database", other),
        }
    }
}
