//! `sceau_ca::inspect::spki_matches_jwk`: a SubjectPublicKeyInfo from a certificate against
//! the JWK that signed a revocation request. The first byte picks one of the fixed keys (0 to
//! 3) for the rest of the input, or (any other value) says that the rest is a big-endian u16
//! length, that many bytes of JWK JSON, then the SPKI. One SPKI never matches two different
//! keys.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sceau_ca::inspect::spki_matches_jwk;
use sceau_wire::Jwk;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let fixed = common::jwks();
    let (jwk, spki) = match fixed.get(usize::from(selector)) {
        Some(jwk) => (jwk.clone(), rest),
        None => {
            if rest.len() < 2 {
                return;
            }
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let Some(json) = rest.get(2..2 + len) else {
                return;
            };
            let Ok(value) = serde_json::from_slice(json) else {
                return;
            };
            let Ok(jwk) = Jwk::from_value(value) else {
                return;
            };
            (jwk, &rest[2 + len..])
        }
    };
    if spki_matches_jwk(spki, &jwk) {
        for other in fixed {
            if other.thumbprint() != jwk.thumbprint() {
                assert!(!spki_matches_jwk(spki, other));
            }
        }
    }
});
