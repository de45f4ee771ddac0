//! Wire types of ACME (RFC 8555) and the JOSE pieces it uses (RFC 7515 JWS, RFC 7517 JWK,
//! RFC 7638 thumbprints), shared by `sceau-server` and the `sceau` client.
//!
//! Invariants:
//! - Nothing here does I/O or keeps state; every function is a pure transformation.
//! - Every base64url value is unpadded (RFC 7515 §2); padded input is refused.
//! - What a client sends is read strictly ([`json`]): UTF-8 as a whole, unique member names;
//!   a JWK never carries private-key members ([`jwk`]).
//! - [`dns::check_dns_name`] is the DNS name syntax (LDH, lengths, IDNA A-labels) that the order
//!   front end and the signer share.
//! - Signature verification accepts exactly the algorithms of [`jws::Alg`], never `none` or a MAC
//!   for an account signature (RFC 8555 §6.2).

pub mod b64;
pub mod der;
pub mod dns;
pub mod duration;
pub mod eab;
pub mod hex;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod key;
pub mod media;
pub mod problem;
pub mod special;
pub mod types;

pub use jwk::Jwk;
pub use jws::{Alg, JwsError, ParsedJws, ProtectedHeader};
pub use key::{AccountKey, KeyKind};
pub use problem::{Problem, ProblemType, Subproblem};
pub use types::*;
