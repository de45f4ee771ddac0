//! The fuzz seeds of `cmp_response` are genuine answers of OpenSSL's CMP server (cp, pkiConf,
//! waiting cp, pollRep, rp, error): each must parse and its PBM (HMAC-SHA1, SHA-256 OWF, as
//! OpenSSL sends it) must verify with the seeds' secret, and fail with any other.

use sceau_cmp::{CmpError, ProtectionError};

#[test]
fn every_openssl_seed_parses_and_its_mac_verifies() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cmp_response");
    let mut bodies = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("seed directory") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let body = sceau_cmp::inspect_response(&bytes, b"correct horse battery staple")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bodies.push(body);
        assert!(matches!(
            sceau_cmp::inspect_response(&bytes, b"another secret"),
            Err(CmpError::Protection(ProtectionError::BadMac))
        ));
        // Any flipped bit of the protected header and body is refused, by the parser or by
        // the MAC (extraCerts lie outside ProtectedPart, RFC 4210 §5.1.3).
        let start = header_len(&bytes, 0);
        let header_end = start + tlv_len(&bytes, start);
        let protected_end = header_end + tlv_len(&bytes, header_end);
        for i in (0..protected_end).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(sceau_cmp::inspect_response(&b, b"correct horse battery staple").is_err());
        }
    }
    bodies.sort_unstable();
    bodies.dedup();
    assert_eq!(bodies, ["cp", "error", "pkiconf", "pollRep", "rp"]);
}

/// The length of the DER header (identifier and length octets) at `at`.
fn header_len(b: &[u8], at: usize) -> usize {
    if b[at + 1] < 0x80 {
        2
    } else {
        2 + usize::from(b[at + 1] & 0x7f)
    }
}

/// The whole length of the TLV at `at`.
fn tlv_len(b: &[u8], at: usize) -> usize {
    let h = header_len(b, at);
    let content = if h == 2 {
        usize::from(b[at + 1])
    } else {
        b[at + 2..at + h]
            .iter()
            .fold(0, |acc, x| (acc << 8) | usize::from(*x))
    };
    h + content
}
