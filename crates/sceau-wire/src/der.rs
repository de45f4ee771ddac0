//! The workspace's one DER writer (X.690 §8, definite lengths only): the few structures Sceau
//! builds by hand (PKCS#11 signatures and keys, OCSP and CRL pieces, CMP messages) are composed
//! from these primitives.
//!
//! Invariant: every encoding is canonical DER (minimal lengths, minimal INTEGERs, X.690 §10/§11),
//! so that the same value always gives the same bytes: the same key the same SHA-256, the same
//! CMP ProtectedPart the same MAC.

/// Tag of a SEQUENCE / SEQUENCE OF (constructed, universal 16).
pub const SEQUENCE: u8 = 0x30;
/// Tag of an OCTET STRING.
pub const OCTET_STRING: u8 = 0x04;
/// Tag of an OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;

/// One TLV with a definite length (X.690 §8.1.3: short form below 128, else long form with the
/// fewest length octets).
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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
pub fn uint(be: &[u8]) -> Vec<u8> {
    let v = strip_zeros(be);
    let mut content = Vec::with_capacity(v.len() + 1);
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(v);
    tlv(0x02, &content)
}

/// A signed INTEGER (X.690 §8.3: two's complement in the fewest octets).
pub fn int(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    // Drop a leading octet while the next one carries the same sign (§8.3.2).
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(0x02, &bytes[start..])
}

/// An unsigned big-endian number without its leading zero octets.
pub fn strip_zeros(be: &[u8]) -> &[u8] {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    &be[start..]
}

/// A SEQUENCE of already encoded elements, in order.
pub fn seq(elements: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &elements.concat())
}

/// An OCTET STRING.
pub fn octets(content: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, content)
}

/// A BIT STRING of whole octets (no unused bits, X.690 §8.6.2.2).
pub fn bits(content: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(content.len() + 1);
    v.push(0);
    v.extend_from_slice(content);
    tlv(0x03, &v)
}

/// NULL (X.690 §8.8).
pub fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// An ENUMERATED (X.690 §8.4: encoded as an INTEGER with tag 10).
pub fn enumerated(v: u8) -> Vec<u8> {
    let mut e = int(i64::from(v));
    e[0] = 0x0a;
    e
}

/// A UTF8String.
pub fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

/// A GeneralizedTime `YYYYMMDDHHMMSSZ` (X.690 §11.7: UTC, no fraction) from its parts.
pub fn generalized_time(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> Vec<u8> {
    tlv(
        0x18,
        format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z").as_bytes(),
    )
}

/// An OBJECT IDENTIFIER from its arcs (X.690 §8.19: first two arcs in one subidentifier,
/// base-128 with the high bit on all but the last octet). Panics on fewer than two arcs or a
/// first arc above 2: OIDs here are constants of the code, never input.
pub fn oid(arcs: &[u64]) -> Vec<u8> {
    assert!(arcs.len() >= 2 && arcs[0] <= 2, "malformed OID constant");
    let mut content = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        content.extend(tmp.into_iter().rev());
    };
    push(arcs[0] * 40 + arcs[1]);
    for a in &arcs[2..] {
        push(*a);
    }
    tlv(OID, &content)
}

/// A context-specific constructed tag `[n]` around an encoding: EXPLICIT tagging (X.690
/// §8.14.3), or the IMPLICIT tagging of a constructed type.
pub fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    debug_assert!(n < 31, "high tag numbers are not used");
    tlv(0xa0 | n, inner)
}

/// A context-specific primitive tag `[n]` with the given content: IMPLICIT tagging of a
/// primitive type (X.690 §8.14.4), e.g. `[1] IMPLICIT INTEGER`.
pub fn implicit_primitive(n: u8, content: &[u8]) -> Vec<u8> {
    debug_assert!(n < 31, "high tag numbers are not used");
    tlv(0x80 | n, content)
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

    #[test]
    fn signed_integers_are_minimal_twos_complement() {
        assert_eq!(int(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(int(-1), vec![0x02, 0x01, 0xff]);
        assert_eq!(int(127), vec![0x02, 0x01, 0x7f]);
        assert_eq!(int(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(int(-128), vec![0x02, 0x01, 0x80]);
        assert_eq!(int(-129), vec![0x02, 0x02, 0xff, 0x7f]);
        assert_eq!(int(256), vec![0x02, 0x02, 0x01, 0x00]);
        assert_eq!(enumerated(1), vec![0x0a, 0x01, 0x01]);
    }

    #[test]
    fn oids_and_times_match_known_encodings() {
        // 1.2.840.10045.3.1.7 (prime256v1), as RFC 5480 prints it.
        assert_eq!(
            oid(&[1, 2, 840, 10045, 3, 1, 7]),
            vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        );
        // 1.2.840.113533.7.66.13 (PasswordBasedMac, RFC 4210 §5.1.3.1).
        assert_eq!(
            oid(&[1, 2, 840, 113533, 7, 66, 13]),
            vec![
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf6, 0x7d, 0x07, 0x42, 0x0d
            ]
        );
        assert_eq!(
            generalized_time(2025, 1, 2, 3, 4, 5),
            [&[0x18, 15][..], b"20250102030405Z"].concat()
        );
        assert_eq!(bits(&[0xaa]), vec![0x03, 0x02, 0x00, 0xaa]);
        assert_eq!(explicit(4, &[0x05, 0x00]), vec![0xa4, 0x02, 0x05, 0x00]);
        assert_eq!(implicit_primitive(1, &[0x07]), vec![0x81, 0x01, 0x07]);
    }
}
