//! OCSP requests as the responder receives them (RFC 6960 §4.1.1, App. A.1): the DER parser
//! of POST bodies and the GET form's decoding, `sceau-acme/src/ocsp/request.rs` included as
//! it is (it depends only on x509-parser's DER reader and base64, so the fuzz build does not
//! pull in the whole server). A request that parses has one CertID whose hashes have its
//! algorithm's length and whose serial is a minimal positive INTEGER.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/sceau-acme/src/ocsp/request.rs"]
mod request;

use libfuzzer_sys::fuzz_target;

fn check(der: &[u8]) {
    let Ok(req) = request::parse(der) else {
        return;
    };
    let id = &req.cert_id;
    assert!(der.len() <= request::MAX_REQUEST_BYTES);
    assert_eq!(id.issuer_name_hash.len(), id.hash.digest_len());
    assert_eq!(id.issuer_key_hash.len(), id.hash.digest_len());
    assert!(!id.serial.is_empty() && id.serial.len() <= 21);
    assert_eq!(id.serial[0] & 0x80, 0, "positive");
    if id.serial.len() > 1 {
        assert!(id.serial[0] != 0 || id.serial[1] & 0x80 != 0, "minimal");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(der) = request::decode_get(text)
    {
        assert!(der.len() <= request::MAX_REQUEST_BYTES);
        check(&der);
    }
});
