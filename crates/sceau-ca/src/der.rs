//! The few DER encodings the CA writes itself (X.690 §8, definite lengths only): signatures and
//! public keys whose parts come from a PKCS#11 token or a JWK, not from rcgen.
//!
//! Invariant: every encoding is canonical DER (minimal lengths, minimal INTEGERs), so that the
//! same key always gives the same bytes, and so the same SHA-256 when certificates are looked
//! up by their SubjectPublicKeyInfo.

/// The named curve prime256v1, 1.2.840.10045.3.1.7 (RFC 5480 §2.1.1.1), as a whole OBJECT
/// IDENTIFIER TLV (what CKA_EC_PARAMS holds).
pub(crate) const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The named curve secp384r1, 1.3.132.0.34 (RFC 5480 §2.1.1.1), as a whole TLV.
pub(crate) const P384_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// One TLV with a definite length (X.690 §8.1.3: short form below 128, else long form with the
/// fewest length octets).
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from unsigned big-endian octets (X.690 §8.3: minimal, with a
/// leading zero when the high bit would make it negative).
pub(crate) fn uint(be: &[u8]) -> Vec<u8> {
    let v = strip_zeros(be);
    let mut content = Vec::with_capacity(v.len() + 1);
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(v);
    tlv(0x02, &content)
}

/// An unsigned big-endian number without its leading zero octets.
pub(crate) fn strip_zeros(be: &[u8]) -> &[u8] {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    &be[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers_are_minimal() {
        assert_eq!(uint(&[0, 0]), vec![0x02, 0x01, 0x00]);
        assert_eq!(uint(&[0, 0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        let long = tlv(0x30, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(&tlv(0x04, &[0u8; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(tlv(0x05, &[]), vec![0x05, 0x00]);
    }
}
