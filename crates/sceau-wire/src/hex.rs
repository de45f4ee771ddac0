//! Lowercase hexadecimal, as serials, key identifiers and stored DER are written throughout
//! Sceau: one encoder and one decoder for every crate.
//!
//! Invariant: [`decode`] accepts exactly what [`encode`] writes, and upper case too; anything
//! else (odd length, another character) is `None`.

/// Lowercase hex without separators; one allocation (CRL and certificate paths call it per
/// entry).
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// The bytes of a hex string; `None` unless it has an even number of hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            let pair = text.get(i..i + 2)?;
            pair.bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| u8::from_str_radix(pair, 16).ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let bytes = [0x00, 0x7f, 0x80, 0xff, 0x0a];
        assert_eq!(encode(&bytes), "007f80ff0a");
        assert_eq!(decode("007f80ff0a").unwrap(), bytes);
        assert_eq!(decode("007F80FF0A").unwrap(), bytes);
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
        for bad in ["0", "0g", "+1", "é0", "0 "] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
