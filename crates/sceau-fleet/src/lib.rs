//! Fleet mode (issue 18): one manager obtains certificates for many machines, which keep
//! their keys.
//!
//! - [`manager`]: `sceau manager`, an HTTPS service (client certificates required) holding the
//!   ACME account and the DNS credentials. It answers dns-01 for every agent's names in batches
//!   (one RFC 2136 UPDATE per zone per batch, then a wait until every authoritative server shows
//!   every record), archives every certificate, keeps an audit trail, asks for a new CSR at 2/3
//!   of the lifetime or in the ARI window, and exposes expiry monitoring.
//! - [`agent`]: `sceau agent`, run by each machine from a timer, without root. It makes a fresh
//!   key and CSR for every issuance (R66), sends only the CSR, installs the certificate
//!   atomically and runs its deploy hook.
//! - [`api`]: the JSON both speak; [`tls`]: their identities.
//!
//! Invariants:
//! - No private key of a certificate leaves its agent's directory: the manager receives CSRs,
//!   stores the SHA-256 of their public keys, and refuses a key it has seen before.
//! - An agent is known by the SHA-256 of the client certificate it presented when it used its
//!   one-time enrolment token (possession proven by the TLS handshake). The manager signs no
//!   client certificate and so holds no CA key in the process that parses agents' requests; a
//!   revoked agent is refused at its next request.
//! - An agent may only have certificates for the names the operator allowed it.

pub mod agent;
pub mod api;
pub mod error;
pub mod manager;
pub mod names;
pub mod tls;

pub use error::{Error, Result};
