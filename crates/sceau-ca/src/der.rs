//! The few DER encodings the CA writes itself (X.690 §8, definite lengths only): signatures and
//! public keys whose parts come from a PKCS#11 token or a JWK, not from rcgen.
//!
//! Invariant: every encoding is canonical DER (minimal lengths, minimal INTEGERs), so that the
//! same key always gives the same bytes, and so the same SHA-256 when certificates are looked
//! up by their SubjectPublicKeyInfo.

/// The named curve prime256v1, 1.2.840.10045.3.1.7 (RFC 5480 §2.1.1.1), as a whole OBJECT
/// IDENTIFIER TLV (what CKA_EC_PARAMS holds).
pub const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The named curve secp384r1, 1.3.132.0.34 (RFC 5480 §2.1.1.1), as a whole TLV.
pub const P384_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

// The generic writer lives in the bottom layer so that every crate (CMP client, OCSP, CRL)
// shares one implementation; these names stay importable from here for existing callers.
pub use sceau_wire::der::{
    OCTET_STRING, OID, SEQUENCE, bits, enumerated, explicit, generalized_time, implicit_primitive,
    int, null, octets, oid, seq, strip_zeros, tlv, uint, utf8,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_constants_are_the_oids_they_name() {
        assert_eq!(P256_OID.to_vec(), oid(&[1, 2, 840, 10045, 3, 1, 7]));
        assert_eq!(P384_OID.to_vec(), oid(&[1, 3, 132, 0, 34]));
        // The re-exported writer is the one callers of this module always had.
        assert_eq!(tlv(0x05, &[]), vec![0x05, 0x00]);
        assert_eq!(uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
    }
}
