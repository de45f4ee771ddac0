//! Test support shared by Sceau's integration tests: real servers on loopback.
//!
//! Invariants:
//! - Everything listens on 127.0.0.1 on a port the kernel handed out, so tests can run in
//!   parallel (nextest runs each test in its own process).
//! - Every launched server lives in its own temp dir and is killed when its handle drops.
//! - A missing tool is a test failure, never a silent skip.

pub mod bc_cmp;
pub mod cmp_mock;
mod dnsquery;
mod haproxy;
pub mod java;
mod knot;
pub mod netns;
pub mod openssl_ca;
mod pg_replica;
mod postgres;
pub mod ra_upstream;
mod softhsm;
mod tmpfs;
mod tools;

pub use dnsquery::{QueryError, query};
pub use haproxy::Haproxy;
pub use knot::{KnotDns, Tsig};
pub use netns::Lab;
pub use openssl_ca::{OpenSslCa, Validity};
pub use pg_replica::{PgNode, ReplicatedPostgres};
pub use postgres::Postgres;
pub use softhsm::{SOFTHSM_MODULE, SoftHsm};
pub use tmpfs::Tmpfs;
pub use tools::{find_tool, free_port, require_tool};
