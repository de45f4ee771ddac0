//! Problem documents (RFC 7807) with the ACME error types of RFC 8555 §6.7 and the extensions
//! Sceau serves (RFC 9773 §4.2 `alreadyReplaced`, draft-ietf-acme-profiles `invalidProfile`).

use serde::{Deserialize, Serialize};

use crate::types::Identifier;

/// The `urn:ietf:params:acme:error:` namespace (RFC 8555 §6.7).
pub const ACME_ERROR_NS: &str = "urn:ietf:params:acme:error:";

macro_rules! problem_types {
    ($($variant:ident => $name:literal, $status:literal;)*) => {
        /// ACME error types (RFC 8555 §6.7 table), each with the HTTP status Sceau answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType { $($variant,)* }

        impl ProblemType {
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The short name after the namespace, e.g. `badNonce`.
            pub fn name(self) -> &'static str {
                match self { $(ProblemType::$variant => $name,)* }
            }

            /// The HTTP status code used when this type is the top-level problem.
            pub fn status(self) -> u16 {
                match self { $(ProblemType::$variant => $status,)* }
            }
        }
    };
}

problem_types! {
    AccountDoesNotExist => "accountDoesNotExist", 400;
    AlreadyReplaced => "alreadyReplaced", 409;
    AlreadyRevoked => "alreadyRevoked", 400;
    // RFC 8739 §3.1.2, §3.3, §6.4.
    AutoRenewalCanceled => "autoRenewalCanceled", 403;
    AutoRenewalCancellationInvalid => "autoRenewalCancellationInvalid", 400;
    AutoRenewalExpired => "autoRenewalExpired", 403;
    AutoRenewalRevocationNotSupported => "autoRenewalRevocationNotSupported", 403;
    BadCsr => "badCSR", 400;
    BadNonce => "badNonce", 400;
    BadPublicKey => "badPublicKey", 400;
    BadRevocationReason => "badRevocationReason", 400;
    BadSignatureAlgorithm => "badSignatureAlgorithm", 400;
    Caa => "caa", 403;
    Compound => "compound", 403;
    Connection => "connection", 400;
    Dns => "dns", 400;
    ExternalAccountRequired => "externalAccountRequired", 403;
    IncorrectResponse => "incorrectResponse", 403;
    InvalidContact => "invalidContact", 400;
    InvalidProfile => "invalidProfile", 400;
    Malformed => "malformed", 400;
    OrderNotReady => "orderNotReady", 403;
    RateLimited => "rateLimited", 429;
    RejectedIdentifier => "rejectedIdentifier", 400;
    ServerInternal => "serverInternal", 500;
    Tls => "tls", 400;
    Unauthorized => "unauthorized", 403;
    UnsupportedContact => "unsupportedContact", 400;
    UnsupportedIdentifier => "unsupportedIdentifier", 400;
    UserActionRequired => "userActionRequired", 403;
}

impl ProblemType {
    /// The full URN, e.g. `urn:ietf:params:acme:error:badNonce`.
    pub fn urn(self) -> String {
        format!("{ACME_ERROR_NS}{}", self.name())
    }

    /// Parses a full URN; `None` for types outside the ACME namespace or unknown names.
    pub fn from_urn(urn: &str) -> Option<Self> {
        let name = urn.strip_prefix(ACME_ERROR_NS)?;
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }
}

impl Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.urn())
    }
}

/// A subproblem (RFC 8555 §6.7.1): one identifier's share of a compound failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subproblem {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
}

/// An RFC 7807 problem document as ACME uses it.
///
/// `kind` stays a string so that a client can carry types from outside the ACME namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Subproblem>,
    /// Algorithms the server accepts, sent with `badSignatureAlgorithm` (RFC 8555 §6.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl Problem {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Problem {
            kind: kind.urn(),
            detail: Some(detail.into()),
            status: Some(kind.status()),
            instance: None,
            subproblems: Vec::new(),
            algorithms: None,
        }
    }

    pub fn with_subproblems(mut self, subproblems: Vec<Subproblem>) -> Self {
        self.subproblems = subproblems;
        self
    }

    /// The ACME type, if the problem is in the ACME namespace.
    pub fn acme_type(&self) -> Option<ProblemType> {
        ProblemType::from_urn(&self.kind)
    }

    pub fn is(&self, kind: ProblemType) -> bool {
        self.acme_type() == Some(kind)
    }
}

impl Subproblem {
    pub fn new(kind: ProblemType, detail: impl Into<String>, identifier: Identifier) -> Self {
        Subproblem {
            kind: kind.urn(),
            detail: Some(detail.into()),
            identifier: Some(identifier),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.kind.strip_prefix(ACME_ERROR_NS).unwrap_or(&self.kind);
        write!(f, "{name}")?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        for sub in &self.subproblems {
            let sub_name = sub.kind.strip_prefix(ACME_ERROR_NS).unwrap_or(&sub.kind);
            write!(f, "; {sub_name}")?;
            if let Some(id) = &sub.identifier {
                write!(f, " for {}", id.value)?;
            }
            if let Some(detail) = &sub.detail {
                write!(f, ": {detail}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urn_round_trip_covers_every_type() {
        for t in ProblemType::ALL {
            assert_eq!(ProblemType::from_urn(&t.urn()), Some(*t));
        }
        assert_eq!(
            ProblemType::BadCsr.urn(),
            "urn:ietf:params:acme:error:badCSR"
        );
        assert_eq!(ProblemType::from_urn("urn:other:badNonce"), None);
    }

    #[test]
    fn serialises_with_subproblems() {
        let p =
            Problem::new(ProblemType::RejectedIdentifier, "names refused").with_subproblems(vec![
                Subproblem::new(
                    ProblemType::RejectedIdentifier,
                    "not allowed",
                    Identifier::dns("a.example"),
                ),
            ]);
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:ietf:params:acme:error:rejectedIdentifier");
        assert_eq!(v["status"], 400);
        assert_eq!(v["subproblems"][0]["identifier"]["value"], "a.example");
        let back: Problem = serde_json::from_value(v).unwrap();
        assert!(back.is(ProblemType::RejectedIdentifier));
        assert!(back.to_string().contains("for a.example: not allowed"));
    }
}
