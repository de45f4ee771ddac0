//! Typed errors of the CMP client, and the upstream's PKIStatusInfo (RFC 4210 §5.2.3) in a form
//! an ACME problem detail can quote.
//!
//! Invariants:
//! - Whatever the upstream said (statusString, failInfo, errorDetails) is kept verbatim in the
//!   error, failInfo bits by their ASN.1 names; nothing secret (the MAC secret, keys) ever is.
//! - Transport failures, malformed responses, protection failures and upstream refusals are
//!   distinct variants, so a queue can tell "retry later" from "the CA said no".

use std::fmt;
use std::time::Duration;

use crate::Transaction;
pub use crate::asn1::ParseError;

/// PKIStatus (RFC 4210 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PkiStatus {
    Accepted,
    GrantedWithMods,
    Rejection,
    Waiting,
    RevocationWarning,
    RevocationNotification,
    KeyUpdateWarning,
    /// A value outside the module's list.
    Unknown(i64),
}

impl PkiStatus {
    pub fn from_int(v: i64) -> PkiStatus {
        match v {
            0 => PkiStatus::Accepted,
            1 => PkiStatus::GrantedWithMods,
            2 => PkiStatus::Rejection,
            3 => PkiStatus::Waiting,
            4 => PkiStatus::RevocationWarning,
            5 => PkiStatus::RevocationNotification,
            6 => PkiStatus::KeyUpdateWarning,
            other => PkiStatus::Unknown(other),
        }
    }
}

impl fmt::Display for PkiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiStatus::Accepted => f.write_str("accepted"),
            PkiStatus::GrantedWithMods => f.write_str("grantedWithMods"),
            PkiStatus::Rejection => f.write_str("rejection"),
            PkiStatus::Waiting => f.write_str("waiting"),
            PkiStatus::RevocationWarning => f.write_str("revocationWarning"),
            PkiStatus::RevocationNotification => f.write_str("revocationNotification"),
            PkiStatus::KeyUpdateWarning => f.write_str("keyUpdateWarning"),
            PkiStatus::Unknown(v) => write!(f, "status {v}"),
        }
    }
}

/// The names of the PKIFailureInfo bits, by bit number (RFC 4210 §5.2.3, RFC 9810 §5.2.3).
pub const FAIL_INFO_NAMES: [&str; 27] = [
    "badAlg",
    "badMessageCheck",
    "badRequest",
    "badTime",
    "badCertId",
    "badDataFormat",
    "wrongAuthority",
    "incorrectData",
    "missingTimeStamp",
    "badPOP",
    "certRevoked",
    "certConfirmed",
    "wrongIntegrity",
    "badRecipientNonce",
    "timeNotAvailable",
    "unacceptedPolicy",
    "unacceptedExtension",
    "addInfoNotAvailable",
    "badSenderNonce",
    "badCertTemplate",
    "signerNotTrusted",
    "transactionIdInUse",
    "unsupportedVersion",
    "notAuthorized",
    "systemUnavail",
    "systemFailure",
    "duplicateCertReq",
];

/// PKIStatusInfo as the upstream sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    pub status: PkiStatus,
    /// statusString, each UTF8String of the PKIFreeText in order.
    pub texts: Vec<String>,
    /// The failInfo bit numbers that are set, ascending.
    pub fail_bits: Vec<u8>,
}

impl StatusInfo {
    /// The set failInfo bits by name (`bit N` for one past the module's list).
    pub fn fail_info_names(&self) -> Vec<String> {
        self.fail_bits
            .iter()
            .map(|b| {
                FAIL_INFO_NAMES
                    .get(usize::from(*b))
                    .map_or_else(|| format!("bit {b}"), |n| (*n).to_owned())
            })
            .collect()
    }

    pub fn has_fail_info(&self, name: &str) -> bool {
        self.fail_info_names().iter().any(|n| n == name)
    }
}

impl fmt::Display for StatusInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        let names = self.fail_info_names();
        if !names.is_empty() {
            write!(f, " ({})", names.join(", "))?;
        }
        for (i, t) in self.texts.iter().enumerate() {
            write!(f, "{}{t:?}", if i == 0 { ": " } else { "; " })?;
        }
        Ok(())
    }
}

/// Why a response's protection (RFC 4210 §5.1.3) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectionError {
    #[error("the response is not protected")]
    Missing,
    #[error("unsupported protection algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("PBM parameters refused: {0}")]
    Parameters(String),
    #[error("the MAC does not verify with the configured secret")]
    BadMac,
    #[error("MAC-protected response, but no shared secret is configured")]
    NoSecret,
    #[error("the signature does not verify with any configured upstream certificate")]
    BadSignature,
    #[error("signature-protected response, but no upstream certificate is configured")]
    NoTrustedSigner,
}

/// Everything that can go wrong talking CMP to the upstream CA.
#[derive(Debug, thiserror::Error)]
pub enum CmpError {
    #[error("CMP configuration: {0}")]
    Config(String),
    #[error("request refused before sending: {0}")]
    InvalidRequest(String),
    #[error("CMP server {url} unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("CMP server {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("CMP server answered HTTP {status} without a CMP message")]
    HttpStatus { status: u16 },
    #[error("CMP response Content-Type {0:?} is not application/pkixcmp (RFC 6712 §3.4)")]
    ContentType(String),
    #[error("CMP response larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed CMP response: {0}")]
    Parse(#[from] ParseError),
    #[error("CMP response protection refused: {0}")]
    Protection(#[from] ProtectionError),
    #[error("CMP response header refused: {0}")]
    Header(String),
    #[error("the upstream CA refused: {0}")]
    Rejected(StatusInfo),
    #[error("the upstream CA answered with a status that does not fit the request: {0}")]
    UnexpectedStatus(StatusInfo),
    #[error("the upstream CA sent an error message: {}", error_message_text(.status, .code, .details))]
    ErrorMessage {
        status: StatusInfo,
        code: Option<i64>,
        details: Vec<String>,
    },
    #[error("unexpected CMP response body {got} (expected {expected})")]
    UnexpectedBody {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the certificate the upstream CA returned is refused: {0}")]
    CertificateRefused(String),
    #[error("the upstream CA is still working on the request; poll again in {check_after:?}")]
    StillWaiting {
        transaction: Box<Transaction>,
        check_after: Duration,
    },
}

fn error_message_text(status: &StatusInfo, code: &Option<i64>, details: &[String]) -> String {
    let mut s = status.to_string();
    if let Some(c) = code {
        s.push_str(&format!("; errorCode {c}"));
    }
    if !details.is_empty() {
        s.push_str(&format!("; errorDetails {details:?}"));
    }
    s
}

impl CmpError {
    /// The upstream's own status, when the CA answered with a refusal or an error message.
    pub fn upstream_status(&self) -> Option<&StatusInfo> {
        match self {
            CmpError::Rejected(s)
            | CmpError::UnexpectedStatus(s)
            | CmpError::ErrorMessage { status: s, .. } => Some(s),
            _ => None,
        }
    }

    /// Whether trying the same request again later may succeed (the upstream was unreachable,
    /// slow, or busy), as opposed to a refusal or a protocol fault.
    pub fn is_transient(&self) -> bool {
        match self {
            CmpError::Unreachable { .. }
            | CmpError::Timeout { .. }
            | CmpError::StillWaiting { .. } => true,
            CmpError::HttpStatus { status } => *status >= 500,
            CmpError::ErrorMessage { status, .. } | CmpError::Rejected(status) => {
                status.has_fail_info("systemUnavail")
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_quotes_the_upstream() {
        let s = StatusInfo {
            status: PkiStatus::Rejection,
            texts: vec!["no such profile".into(), "second".into()],
            fail_bits: vec![2, 9, 30],
        };
        assert_eq!(
            s.to_string(),
            "rejection (badRequest, badPOP, bit 30): \"no such profile\"; \"second\""
        );
        assert!(s.has_fail_info("badPOP"));
        assert!(!s.has_fail_info("badAlg"));
        assert_eq!(PkiStatus::from_int(9), PkiStatus::Unknown(9));
    }
}
