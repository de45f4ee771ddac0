//! What an upstream CMP server answers (RFC 4210 PKIMessage over RFC 6712): the response parser
//! and the PBM check of `sceau_cmp`, which run on every byte the upstream sends before anything
//! is trusted. Neither may panic, loop or allocate without bound on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = sceau_cmp::message::parse(data) {
        // Every status quoted in an error must render.
        if let sceau_cmp::message::Body::Error { status, .. } = &m.body {
            let _ = status.to_string();
        }
    }
    // The seeds are MAC-protected with this secret, so the MAC path is reached too.
    let _ = sceau_cmp::inspect_response(data, b"correct horse battery staple");
});
