//! Strict reading of the JSON texts a client sends (request body, JWS protected header and
//! payload, EAB binding).
//!
//! Invariants of [`parse_strict`]:
//! - the whole input is UTF-8, checked before any JSON parsing (RFC 8259 §8.1, RFC 7515 §4:
//!   the header is UTF-8 JSON). serde_json only validates the strings it keeps, so without this
//!   an invalid byte inside an ignored member would pass;
//! - no object, at any depth, has two members with the same name (after unescaping): RFC 7515
//!   §4 lets a JWS parser either refuse them or keep the last one, and keeping one of two
//!   values lets two parsers of the same request disagree about what was signed. serde refuses
//!   duplicates only for the fields a struct names, and a `Map` keeps the last silently.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("not UTF-8: invalid byte at offset {0} (RFC 8259 §8.1)")]
    NotUtf8(usize),
    /// serde_json's message, which names the line and column (and a duplicate's name).
    #[error("{0}")]
    Syntax(String),
}

/// Parses `bytes` as `T` after the checks of the module invariants.
pub fn parse_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|e| JsonError::NotUtf8(e.valid_up_to()))?;
    serde_json::from_str::<UniqueMembers>(text).map_err(|e| JsonError::Syntax(e.to_string()))?;
    serde_json::from_str(text).map_err(|e| JsonError::Syntax(e.to_string()))
}

/// Deserializes any JSON value and keeps nothing; fails on a duplicate member name. Depth is
/// bounded by serde_json's own recursion limit.
struct UniqueMembers;

impl<'de> de::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueMembersVisitor)
    }
}

struct UniqueMembersVisitor;

impl<'de> Visitor<'de> for UniqueMembersVisitor {
    type Value = UniqueMembers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_unit<E>(self) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueMembers, A::Error> {
        while seq.next_element::<UniqueMembers>()?.is_some() {}
        Ok(UniqueMembers)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMembers, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<UniqueMembers>()?;
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
            }
        }
        Ok(UniqueMembers)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn refuses_invalid_utf8_anywhere() {
        // Inside a string no struct field keeps: serde_json alone accepts this.
        let bytes = b"{\"alg\":\"ES256\",\"x-ignored\":\"\xff\"}";
        #[derive(serde::Deserialize)]
        struct Alg {
            #[allow(dead_code)]
            alg: String,
        }
        assert!(
            serde_json::from_slice::<Alg>(bytes).is_ok(),
            "serde's own behaviour"
        );
        assert_eq!(
            parse_strict::<Alg>(bytes).err(),
            Some(JsonError::NotUtf8(28))
        );
        assert!(parse_strict::<Alg>(br#"{"alg":"ES256","x":"\u00e9"}"#).is_ok());
    }

    #[test]
    fn refuses_duplicate_members_at_any_depth() {
        #[derive(serde::Deserialize)]
        struct Alg {
            #[allow(dead_code)]
            alg: String,
        }
        // serde: a duplicate of a named field is refused, one of an ignored member or inside
        // a map is not.
        assert!(serde_json::from_str::<Alg>(r#"{"alg":"a","alg":"b"}"#).is_err());
        assert!(serde_json::from_str::<Alg>(r#"{"alg":"a","u":1,"u":2}"#).is_ok());
        assert!(serde_json::from_str::<Value>(r#"{"a":{"k":1,"k":2}}"#).is_ok());

        for dup in [
            r#"{"alg":"a","u":1,"u":2}"#,
            r#"{"alg":"a","jwk":{"kty":"EC","kty":"RSA"}}"#,
            r#"{"alg":"a","l":[{"x":1},{"y":1,"y":1}]}"#,
            // the same name once escaped
            r#"{"alg":"a","u":1,"\u0075":2}"#,
        ] {
            let err = parse_strict::<Alg>(dup.as_bytes()).err().unwrap();
            assert!(err.to_string().contains("duplicate member"), "{dup}: {err}");
        }
        assert!(parse_strict::<Alg>(br#"{"alg":"a","l":[{"x":1},{"x":1}]}"#).is_ok());
    }
}
