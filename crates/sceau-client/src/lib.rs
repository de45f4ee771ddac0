//! An ACME (RFC 8555) client library: the protocol ([`client`], [`account`], [`order`]), the
//! challenge solvers ([`solver`]), a one-call issuance ([`issue`]), renewal timing
//! ([`renewal`]), and safe local files ([`files`], [`state`]). It does not depend on the
//! server's storage and can be embedded in other programs.
//!
//! Invariants kept across the crate:
//! - Private keys are generated from the OS CSPRNG, fresh for every certificate unless the
//!   caller explicitly reuses one (R65/R66), and written only with mode 0600 (0640 on request),
//!   atomically.
//! - Secrets (account keys, EAB MAC keys, TSIG secrets) never appear in `Debug`, errors or events.
//! - Everything a challenge puts in place is removed afterwards (R64).

pub mod account;
pub mod certinfo;
pub mod client;
pub mod csr;
pub mod error;
pub mod events;
pub mod files;
pub mod http;
pub mod issue;
pub mod order;
pub mod renewal;
pub mod solver;
pub mod star;
pub mod state;

pub use account::{Account, Eab, NewAccountOptions};
pub use certinfo::CertInfo;
pub use client::AcmeClient;
pub use error::{Error, Result};
pub use events::{Event, EventSink};
pub use issue::{IssueRequest, Issued, KeySource, issue};
pub use solver::{Method, Plan};
pub use star::StarFetch;
