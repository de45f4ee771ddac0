//! CSRs as finalize receives them: `sceau_ca::csr::parse_and_check_with`, with and without
//! wildcards; a CSR that passes must name only identifiers that the name check keeps as they
//! are (DNS) or canonical IP text, and its key is then compared with account keys as
//! revocation and the §11.1 checks do.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sceau_wire::dns::check_dns_name;

fuzz_target!(|der: &[u8]| {
    for wildcards in [false, true] {
        let Ok(csr) = sceau_ca::csr::parse_and_check_with(der, wildcards) else {
            continue;
        };
        assert!(!csr.identifiers.is_empty());
        for id in &csr.identifiers {
            if id.is_dns() {
                assert_eq!(
                    check_dns_name(&id.value, wildcards).as_deref(),
                    Ok(id.value.as_str())
                );
            } else {
                let ip: std::net::IpAddr = id.value.parse().expect("an ip identifier");
                assert_eq!(ip.to_string(), id.value);
            }
        }
        for jwk in common::jwks() {
            let _ = sceau_ca::inspect::spki_matches_jwk(&csr.public_key_spki_der, jwk);
        }
    }
});
