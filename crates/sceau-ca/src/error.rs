//! Errors of the signing side. Messages name the file or the rule at fault, never key material.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Some CA files exist and others do not: a half-written or half-deleted CA. Regenerating
    /// would silently replace a root that clients already trust, so this is left to a human.
    #[error(
        "CA directory {} is incomplete: {} missing (the other CA files exist; restore the missing file or remove all of them to create a new CA)",
        dir.display(),
        missing.join(", ")
    )]
    Incomplete { dir: PathBuf, missing: Vec<String> },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The request falls outside the certificate profile (checked again at the signer, R36).
    #[error("refused to sign: {0}")]
    InvalidRequest(String),
    #[error("not a usable certificate: {0}")]
    BadCertificate(String),
    #[error("certificate construction or signing failed: {0}")]
    Signing(String),
    /// The data directory has no CA and none may be created here.
    #[error("{} holds no CA: create one with `sceau-server ca init --data-dir {}`", .0.display(), .0.display())]
    NotInitialised(PathBuf),
    /// A delegated CA whose issuing certificate the existing PKI has not signed yet.
    #[error("the CA in {} waits for its issuing certificate: have the existing PKI sign {}, then run `sceau-server ca import --data-dir {} --cert FILE --chain FILE`", dir.display(), csr.as_ref().map_or_else(|| "its CSR".into(), |c| c.display().to_string()), dir.display())]
    AwaitingImport { dir: PathBuf, csr: Option<PathBuf> },
    /// A `ca` command, or the opening of the CA at start-up, refused: the message says why and
    /// what to do, in one line.
    #[error("{0}")]
    Refused(String),
    /// The signing process's own policy check (R35) refused: the account, its external account,
    /// a name or the profile is not allowed.
    #[error("{0}")]
    Gate(String),
    /// The upstream CA (RA mode) refused the request, or returned a certificate the RA refuses:
    /// final for this request, and not the client's fault.
    #[error("{0}")]
    Upstream(String),
    /// Signing is unavailable for now (the signing process restarts, the token is absent):
    /// retrying later may succeed.
    #[error("signing is unavailable: {0}")]
    Unavailable(String),
    /// The upstream CA (RA mode) has the request and is still working on it: the issuance
    /// queue saves `ticket` with the job and, after `after`, asks again with it
    /// ([`crate::IssueRequest::resume`]) instead of sending a new request, so a CA that takes
    /// minutes or days issues once, even across restarts of either process.
    #[error("the upstream CA is still working on the request ({detail}); asking again in {} s", after.as_secs())]
    Pending {
        ticket: String,
        after: std::time::Duration,
        detail: String,
    },
    /// A token key that cannot be used as named: module, token, PIN or key object.
    #[error(transparent)]
    Pkcs11(#[from] crate::pkcs11::Pkcs11Error),
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Signing(e.to_string())
    }
}

impl CaError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CaError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CaError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
