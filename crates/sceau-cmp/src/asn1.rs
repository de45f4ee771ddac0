//! Strict DER reading of what an upstream CMP server sends (X.690 §10): one TLV at a time through
//! asn1-rs, which refuses indefinite lengths and non-minimal length octets.
//!
//! Invariants:
//! - Every accessor checks the identifier octet it expects; nothing is read by position alone.
//! - Every constructed value is read to its end: trailing bytes inside a SEQUENCE, or after the
//!   whole message, are an error ([`Der::finish`]).
//! - INTEGERs must be minimal (X.690 §8.3.2) and fit the Rust type asked for; nothing panics on
//!   any input (the `cmp_response` fuzz target holds this).

use asn1_rs::{Any, Class, FromDer};

/// A response that is not the DER the CMP ASN.1 module describes; `what` names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct ParseError {
    pub what: String,
}

pub(crate) fn bad(what: impl Into<String>) -> ParseError {
    ParseError { what: what.into() }
}

/// Identifier octets used in CMP (X.690 §8.1.2), single-octet tags only.
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;

    /// `[n]` constructed, context-specific (EXPLICIT tags of the PKIXCMP module).
    pub const fn ctx(n: u8) -> u8 {
        0xa0 | n
    }
}

/// One element: its identifier octet, its content and its whole encoding.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

/// A cursor over consecutive elements (the content of a SEQUENCE, or a whole message).
#[derive(Debug, Clone, Copy)]
pub struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    pub fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The identifier octet of the next element, without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    pub fn next(&mut self, what: &str) -> Result<Tlv<'a>, ParseError> {
        if self.rest.is_empty() {
            return Err(bad(format!("{what}: missing")));
        }
        let input = self.rest;
        let (rest, any) =
            Any::from_der(input).map_err(|e| bad(format!("{what}: not DER ({e})")))?;
        let h = &any.header;
        let number = h.tag().0;
        if number >= 31 {
            return Err(bad(format!("{what}: high tag number {number}")));
        }
        let class = match h.class() {
            Class::Universal => 0x00,
            Class::Application => 0x40,
            Class::ContextSpecific => 0x80,
            Class::Private => 0xc0,
        };
        let tag = class | if h.is_constructed() { 0x20 } else { 0 } | number as u8;
        let raw = &input[..input.len() - rest.len()];
        // asn1-rs accepts a long-form length where fewer octets would do; DER does not
        // (X.690 §10.1).
        let len = any.data.len();
        let minimal = if len < 0x80 {
            2
        } else {
            2 + (usize::BITS - len.leading_zeros()).div_ceil(8) as usize
        };
        if raw.len() - len != minimal {
            return Err(bad(format!("{what}: non-minimal length octets")));
        }
        self.rest = rest;
        Ok(Tlv {
            tag,
            content: any.data,
            raw,
        })
    }

    /// The next element, which must carry `tag`.
    pub fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, ParseError> {
        let t = self.next(what)?;
        if t.tag != tag {
            return Err(bad(format!(
                "{what}: tag 0x{:02x} where 0x{tag:02x} was expected",
                t.tag
            )));
        }
        Ok(t)
    }

    /// The next element if it carries `tag` (an OPTIONAL field), else nothing consumed.
    pub fn optional(&mut self, tag: u8, what: &str) -> Result<Option<Tlv<'a>>, ParseError> {
        if self.peek_tag() == Some(tag) {
            self.next(what).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Refuses anything left over.
    pub fn finish(&self, what: &str) -> Result<(), ParseError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(bad(format!("{what}: unexpected trailing data")))
        }
    }
}

impl<'a> Tlv<'a> {
    /// The elements inside a constructed value.
    pub fn inner(&self) -> Der<'a> {
        Der::new(self.content)
    }

    /// The single element inside an EXPLICIT tag, which must fill it exactly.
    pub fn explicit_inner(&self, tag: u8, what: &str) -> Result<Tlv<'a>, ParseError> {
        let mut d = self.inner();
        let t = d.expect(tag, what)?;
        d.finish(what)?;
        Ok(t)
    }

    /// A signed INTEGER that fits an i64 (minimal encoding, X.690 §8.3.2).
    pub fn int(&self, what: &str) -> Result<i64, ParseError> {
        if self.tag != tag::INTEGER {
            return Err(bad(format!("{what}: not an INTEGER")));
        }
        let c = self.content;
        check_minimal(c, what)?;
        if c.len() > 8 {
            return Err(bad(format!("{what}: INTEGER out of range")));
        }
        let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
        for b in c {
            v = (v << 8) | i64::from(*b);
        }
        Ok(v)
    }

    /// A BIT STRING as (its octets, the number of unused bits in the last one).
    pub fn bit_string(&self, what: &str) -> Result<(&'a [u8], u8), ParseError> {
        if self.tag != tag::BIT_STRING {
            return Err(bad(format!("{what}: not a BIT STRING")));
        }
        let (&unused, bits) = self
            .content
            .split_first()
            .ok_or_else(|| bad(format!("{what}: empty BIT STRING")))?;
        if unused > 7 || (bits.is_empty() && unused != 0) {
            return Err(bad(format!("{what}: bad unused-bit count")));
        }
        Ok((bits, unused))
    }

    /// A BIT STRING of whole octets (a signature or MAC value).
    pub fn whole_octet_bits(&self, what: &str) -> Result<&'a [u8], ParseError> {
        match self.bit_string(what)? {
            (bits, 0) => Ok(bits),
            _ => Err(bad(format!("{what}: not a whole number of octets"))),
        }
    }

    pub fn utf8(&self, what: &str) -> Result<String, ParseError> {
        if self.tag != tag::UTF8_STRING {
            return Err(bad(format!("{what}: not a UTF8String")));
        }
        String::from_utf8(self.content.to_vec()).map_err(|_| bad(format!("{what}: not UTF-8")))
    }
}

fn check_minimal(c: &[u8], what: &str) -> Result<(), ParseError> {
    match c {
        [] => Err(bad(format!("{what}: empty INTEGER"))),
        [0x00, b, ..] if b & 0x80 == 0 => Err(bad(format!("{what}: non-minimal INTEGER"))),
        [0xff, b, ..] if b & 0x80 != 0 => Err(bad(format!("{what}: non-minimal INTEGER"))),
        _ => Ok(()),
    }
}

/// Reads exactly one element from `bytes`, refusing trailing data.
pub(crate) fn single<'a>(bytes: &'a [u8], tag: u8, what: &str) -> Result<Tlv<'a>, ParseError> {
    let mut d = Der::new(bytes);
    let t = d.expect(tag, what)?;
    d.finish(what)?;
    Ok(t)
}

/// An AlgorithmIdentifier (RFC 5280 §4.1.1.2): its OID TLV and its parameters, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AlgId<'a> {
    pub oid: &'a [u8],
    pub params: Option<Tlv<'a>>,
}

impl<'a> AlgId<'a> {
    pub fn parse(t: &Tlv<'a>, what: &str) -> Result<AlgId<'a>, ParseError> {
        if t.tag != tag::SEQUENCE {
            return Err(bad(format!(
                "{what}: AlgorithmIdentifier is not a SEQUENCE"
            )));
        }
        let mut d = t.inner();
        let oid = d.expect(tag::OID, what)?.raw;
        let params = if d.is_empty() {
            None
        } else {
            Some(d.next(what)?)
        };
        d.finish(what)?;
        Ok(AlgId { oid, params })
    }

    /// Whether the parameters are absent or NULL (both are seen for hash and HMAC OIDs).
    pub fn params_absent_or_null(&self) -> bool {
        self.params
            .is_none_or(|p| p.tag == tag::NULL && p.content.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sceau_wire::der;

    #[test]
    fn integers_are_read_back_and_non_minimal_ones_refused() {
        for v in [
            0i64,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            65_535,
            i64::MAX,
            i64::MIN,
        ] {
            let enc = der::int(v);
            assert_eq!(
                single(&enc, tag::INTEGER, "i").unwrap().int("i").unwrap(),
                v
            );
        }
        assert!(
            single(&[0x02, 0x02, 0x00, 0x01], tag::INTEGER, "i")
                .unwrap()
                .int("i")
                .is_err()
        );
        assert!(
            single(&[0x02, 0x02, 0xff, 0x80], tag::INTEGER, "i")
                .unwrap()
                .int("i")
                .is_err()
        );
        assert!(
            single(&[0x02, 0x00], tag::INTEGER, "i")
                .unwrap()
                .int("i")
                .is_err()
        );
        let nine = [0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(single(&nine, tag::INTEGER, "i").unwrap().int("i").is_err());
    }

    #[test]
    fn truncated_indefinite_and_trailing_input_is_refused() {
        assert!(single(&[0x30, 0x05, 0x02, 0x01], tag::SEQUENCE, "s").is_err());
        assert!(single(&[0x30, 0x80, 0x00, 0x00], tag::SEQUENCE, "s").is_err());
        assert!(single(&[0x05, 0x00, 0x00], tag::NULL, "n").is_err());
        // A long-form length where the short form fits is not DER (X.690 §10.1).
        assert!(single(&[0x04, 0x81, 0x01, 0xaa], tag::OCTET_STRING, "o").is_err());
        assert!(single(&[], tag::NULL, "n").is_err());
        assert!(single(&[0x04, 0x01, 0xaa], tag::NULL, "n").is_err());
    }

    #[test]
    fn bit_strings_check_their_unused_bits() {
        let t = single(&[0x03, 0x02, 0x03, 0xf8], tag::BIT_STRING, "b").unwrap();
        assert_eq!(t.bit_string("b").unwrap(), (&[0xf8][..], 3));
        assert!(t.whole_octet_bits("b").is_err());
        assert!(
            single(&[0x03, 0x01, 0x01], tag::BIT_STRING, "b")
                .unwrap()
                .bit_string("b")
                .is_err()
        );
        assert!(
            single(&[0x03, 0x00], tag::BIT_STRING, "b")
                .unwrap()
                .bit_string("b")
                .is_err()
        );
    }
}
