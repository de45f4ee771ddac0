//! Certificates as clients present them, in revocation requests (RFC 8555 §7.6) and ARI
//! replaces: `sceau_ca::inspect::cert_info`, then the key comparison revocation by certificate
//! key does.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    let Ok(info) = sceau_ca::inspect::cert_info(der) else {
        return;
    };
    assert!(
        info.serial_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    for jwk in common::jwks() {
        let _ = sceau_ca::inspect::spki_matches_jwk(&info.spki_der, jwk);
    }
});
