//! A request body as `acme_post` hands it to the verifier: `ParsedJws::parse`, then the key
//! reference, the payload and the signature check against the header's `jwk`; a payload that
//! is itself a flattened JWS goes through the same steps, as keyChange's inner JWS does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sceau_wire::jws::{Flattened, KeyRef};
use sceau_wire::{Alg, ParsedJws};

fn check(jws: &ParsedJws) {
    // Invariants of a parsed JWS (sceau-wire jws.rs).
    assert!(Alg::ALL.contains(&jws.alg));
    assert!(jws.header.crit.is_none() && jws.header.b64.is_none());
    assert!(jws.payload.is_empty() || std::str::from_utf8(&jws.payload).is_ok());
    let _ = jws.payload_json::<serde_json::Value>();
    if let Ok(KeyRef::Jwk(jwk)) = jws.key_reference() {
        let _ = jwk.validate();
        let _ = jwk.thumbprint();
        let _ = jwk.raw_public_key();
        let _ = jws.verify(jwk);
    }
}

fuzz_target!(|body: &[u8]| {
    let Ok(outer) = ParsedJws::parse(body) else {
        return;
    };
    check(&outer);
    if let Ok(inner) = outer.payload_json::<Flattened>()
        && let Ok(inner) = ParsedJws::from_flattened(inner)
    {
        check(&inner);
    }
});
