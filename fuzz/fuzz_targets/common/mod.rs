//! What the targets share: four fixed public account keys (P-256, P-384, Ed25519, RSA 2048),
//! written by examples/make_seeds.rs together with the seed corpus whose SPKIs and bindings
//! use them. Public keys only: nothing secret is kept in the repository.

// Not every target uses every item.
#![allow(dead_code)]

use std::sync::OnceLock;

use sceau_wire::Jwk;

pub fn jwks() -> &'static [Jwk] {
    static JWKS: OnceLock<Vec<Jwk>> = OnceLock::new();
    JWKS.get_or_init(|| serde_json::from_str(include_str!("jwks.json")).expect("jwks.json"))
}

/// The newAccount URL the EAB target binds to.
pub const EAB_URL: &str = "https://ca.test/acme/new-account";
/// The MAC key of the EAB target's external account.
pub const EAB_MAC_KEY: [u8; 32] = [7; 32];
