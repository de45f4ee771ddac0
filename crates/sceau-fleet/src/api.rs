//! What the agent and the manager say to each other: JSON over HTTPS with client
//! certificates. Paths are under `/v1/`; errors are `{"kind": …, "detail": …}` with a status
//! that says whether retrying can help (5xx) or the request must change (4xx).

use serde::{Deserialize, Serialize};

/// `POST /v1/enrol`: the one-time token. The client certificate of the TLS connection is the
/// one the agent will use from now on.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrolRequest {
    pub token: String,
}

/// `GET /v1/agent` and the answer to enrolment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: String,
    pub status: String,
    pub allowed: Vec<String>,
}

/// `PUT /v1/certs/{name}`: a new CSR for this certificate.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitCsr {
    /// base64url DER (RFC 8555's encoding of a CSR).
    pub csr: String,
    /// Replace a current certificate that is not due yet (a forced renewal).
    #[serde(default)]
    pub replace: bool,
}

/// `GET /v1/certs/{name}`: where one certificate stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertStatus {
    pub cert_name: String,
    pub names: Vec<String>,
    /// `pending`, `issued`, `due` or `failed`.
    pub state: String,
    /// The manager wants a new CSR (renewal due, or the last one was refused).
    pub csr_wanted: bool,
    /// The current certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// Whether this agent has reported the current certificate installed.
    #[serde(default)]
    pub picked_up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/certs/{name}/installed`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Installed {
    pub serial: String,
}

/// Every refusal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: String,
    pub detail: String,
}
