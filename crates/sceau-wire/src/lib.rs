//! Wire types of ACME (RFC 8555) and the JOSE pieces it uses (RFC 7515 JWS, RFC 7517 JWK,
//! RFC 7638 thumbprints), shared by `sceau-server` and the `sceau` client.
//!
//! Invariants:
//! - Nothing here does I/O or keeps state; every function is a pure transformation.
//! - Every base64url value is unpadded (RFC 7515 §2); padded input is refused.
//! - Signature verification accepts exactly the algorithms of [`jws::Alg`], never `none` or a MAC
//!   for an account signature (RFC 8555 §6.2).

pub mod b64;
pub mod eab;
pub mod jwk;
pub mod jws;
pub mod key;
pub mod problem;
pub mod types;

pub use jwk::Jwk;
pub use jws::{Alg, JwsError, ParsedJws, ProtectedHeader};
pub use key::{AccountKey, KeyKind};
pub use problem::{Problem, ProblemType, Subproblem};
pub use types::*;

/// Media types used by ACME (RFC 8555 §6.2, §7.4.2, §6.7).
pub mod media {
    pub const JOSE_JSON: &str = "application/jose+json";
    pub const PROBLEM_JSON: &str = "application/problem+json";
    pub const PEM_CHAIN: &str = "application/pem-certificate-chain";
}
