//! JWS in the flattened JSON serialization (RFC 7515 §7.2.2) as ACME requires it (RFC 8555 §6.2):
//! parsing and verifying requests on the server, producing them on the client.
//!
//! Invariants:
//! - [`ParsedJws::parse`] refuses the general serialization, unprotected headers, padded or
//!   non-URL-safe base64, `crit` members (no extension is understood, RFC 7515 §4.1.11), and
//!   both or neither of `jwk`/`kid`; it never returns a header without `alg`.
//! - The body and the protected header are read with [`crate::json::parse_strict`] (UTF-8 as a
//!   whole, no duplicate member names, RFC 7515 §4), a non-empty payload is UTF-8 (RFC 8259
//!   §8.1) and is read the same way by [`ParsedJws::payload_json`].
//! - A header `jwk` went through [`Jwk::from_value`]: no private-key member, every member its
//!   `kty` requires; a refusal there is [`JwsError::BadKey`] (ACME `badPublicKey`).
//! - Signature checks happen only in [`ParsedJws::verify`]; a parsed JWS is not trusted yet.

use serde::{Deserialize, Serialize};

use crate::b64;
use crate::json::{self, JsonError};
use crate::jwk::{Jwk, JwkError};
use crate::key::AccountKey;

/// Flattened JWS JSON serialization, exactly the three members ACME allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flattened {
    pub protected: String,
    pub payload: String,
    pub signature: String,
}

/// Account-key signature algorithms Sceau accepts (RFC 8555 §6.2: ES256 required, EdDSA
/// recommended; RS256 and ES384 for the clients that use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Es256,
    Es384,
    Rs256,
    EdDsa,
}

impl Alg {
    pub const ALL: [Alg; 4] = [Alg::Es256, Alg::Es384, Alg::Rs256, Alg::EdDsa];

    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The protected header as ACME uses it (RFC 8555 §6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectedHeader {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<Jwk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("request body is not a flattened JWS: {0}")]
    Malformed(String),
    #[error("unsupported signature algorithm {0:?}")]
    BadAlgorithm(String),
    #[error("the protected header must contain exactly one of \"jwk\" and \"kid\"")]
    KeyReference,
    #[error("JWS signature is invalid: {0}")]
    BadSignature(String),
    #[error("bad public key: {0}")]
    BadKey(String),
}

/// A syntactically valid, not yet verified ACME JWS.
#[derive(Debug, Clone)]
pub struct ParsedJws {
    pub header: ProtectedHeader,
    pub alg: Alg,
    /// Decoded payload; empty for POST-as-GET (RFC 8555 §6.3).
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    /// `protected` "." `payload`, the bytes the signature covers.
    signing_input: Vec<u8>,
    /// The original serialization, kept for keyChange's inner JWS and EAB.
    pub raw: Flattened,
}

impl ParsedJws {
    pub fn parse(body: &[u8]) -> Result<Self, JwsError> {
        let raw: Flattened =
            json::parse_strict(body).map_err(|e| JwsError::Malformed(e.to_string()))?;
        Self::from_flattened(raw)
    }

    pub fn from_flattened(raw: Flattened) -> Result<Self, JwsError> {
        let header_bytes = b64::decode(&raw.protected)
            .map_err(|_| JwsError::Malformed("protected header is not base64url".into()))?;
        let header = parse_header(&header_bytes)?;
        if header.crit.is_some() {
            return Err(JwsError::Malformed(
                "\"crit\" names an extension this server does not understand".into(),
            ));
        }
        if header.b64.is_some() {
            return Err(JwsError::Malformed("\"b64\" is not allowed".into()));
        }
        let alg = Alg::from_name(&header.alg)
            .ok_or_else(|| JwsError::BadAlgorithm(header.alg.clone()))?;
        let payload = b64::decode(&raw.payload)
            .map_err(|_| JwsError::Malformed("payload is not base64url".into()))?;
        if let Err(e) = std::str::from_utf8(&payload) {
            return Err(JwsError::Malformed(format!(
                "payload: {}",
                JsonError::NotUtf8(e.valid_up_to())
            )));
        }
        let signature = b64::decode(&raw.signature)
            .map_err(|_| JwsError::Malformed("signature is not base64url".into()))?;
        let signing_input = format!("{}.{}", raw.protected, raw.payload).into_bytes();
        Ok(ParsedJws {
            header,
            alg,
            payload,
            signature,
            signing_input,
            raw,
        })
    }

    /// Checks that exactly one of `jwk` and `kid` is present (RFC 8555 §6.2).
    pub fn key_reference(&self) -> Result<KeyRef<'_>, JwsError> {
        match (&self.header.jwk, &self.header.kid) {
            (Some(jwk), None) => Ok(KeyRef::Jwk(jwk)),
            (None, Some(kid)) => Ok(KeyRef::Kid(kid)),
            _ => Err(JwsError::KeyReference),
        }
    }

    pub fn verify(&self, key: &Jwk) -> Result<(), JwsError> {
        if !key.allows(self.alg) {
            return Err(JwsError::BadAlgorithm(format!(
                "{} does not match the key type",
                self.alg.name()
            )));
        }
        key.validate()
            .map_err(|e| JwsError::BadKey(e.to_string()))?;
        key.verify(self.alg, &self.signing_input, &self.signature)
            .map_err(|e| match e {
                JwkError::Malformed(m) | JwkError::Unsupported(m) => JwsError::BadSignature(m),
                private @ JwkError::PrivateMember(_) => JwsError::BadKey(private.to_string()),
            })
    }

    /// The signing input, for MAC checks (EAB) done outside this module.
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }

    pub fn is_post_as_get(&self) -> bool {
        self.raw.payload.is_empty()
    }

    /// The payload as JSON, read strictly (see the module invariants).
    pub fn payload_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, JsonError> {
        json::parse_strict(&self.payload)
    }
}

/// RFC 7515 §4: the header is a UTF-8 JSON object with unique member names. The `jwk` is read
/// on its own so that a bad key is reported as a key problem, not as a malformed header.
fn parse_header(bytes: &[u8]) -> Result<ProtectedHeader, JwsError> {
    let mut members: serde_json::Map<String, serde_json::Value> = json::parse_strict(bytes)
        .map_err(|e| JwsError::Malformed(format!("protected header: {e}")))?;
    let jwk = members
        .remove("jwk")
        .map(Jwk::from_value)
        .transpose()
        .map_err(|e| JwsError::BadKey(format!("protected header \"jwk\": {e}")))?;
    let mut header: ProtectedHeader = serde_json::from_value(serde_json::Value::Object(members))
        .map_err(|e| JwsError::Malformed(format!("protected header: {e}")))?;
    header.jwk = jwk;
    Ok(header)
}

#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    Jwk(&'a Jwk),
    Kid(&'a str),
}

/// Which key reference the client puts in the header.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// newAccount, revocation by certificate key, keyChange's inner JWS.
    Jwk,
    /// Every other request: the account URL.
    Kid(&'a str),
}

/// Signs `payload` (`None` for POST-as-GET) into a flattened JWS for `url`.
pub fn sign(
    key: &AccountKey,
    signer: Signer<'_>,
    nonce: Option<&str>,
    url: &str,
    payload: Option<&[u8]>,
) -> Result<Flattened, crate::key::KeyError> {
    let header = ProtectedHeader {
        alg: key.alg().name().to_owned(),
        nonce: nonce.map(str::to_owned),
        url: Some(url.to_owned()),
        jwk: matches!(signer, Signer::Jwk).then(|| key.jwk()),
        kid: match signer {
            Signer::Kid(kid) => Some(kid.to_owned()),
            Signer::Jwk => None,
        },
        crit: None,
        b64: None,
    };
    let protected = b64::encode(serde_json::to_vec(&header).expect("header serialises"));
    let payload = payload.map(b64::encode).unwrap_or_default();
    let signature = key.sign(format!("{protected}.{payload}").as_bytes())?;
    Ok(Flattened {
        protected,
        payload,
        signature: b64::encode(signature),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyKind;

    #[test]
    fn sign_then_verify_every_key_kind() {
        for kind in [
            KeyKind::P256,
            KeyKind::P384,
            KeyKind::Ed25519,
            KeyKind::Rsa2048,
        ] {
            let key = AccountKey::generate(kind).unwrap();
            let jws = sign(
                &key,
                Signer::Jwk,
                Some("n1"),
                "https://ca/new-acct",
                Some(b"{}"),
            )
            .unwrap();
            let body = serde_json::to_vec(&jws).unwrap();
            let parsed = ParsedJws::parse(&body).unwrap();
            assert_eq!(parsed.alg, key.alg());
            let KeyRef::Jwk(jwk) = parsed.key_reference().unwrap() else {
                panic!("jwk expected")
            };
            parsed.verify(jwk).unwrap();
            assert_eq!(jwk.thumbprint(), key.jwk().thumbprint());

            // A different key must not verify it.
            let other = AccountKey::generate(kind).unwrap();
            assert!(parsed.verify(&other.jwk()).is_err());
        }
    }

    #[test]
    fn tampered_payload_fails() {
        let key = AccountKey::generate(KeyKind::P256).unwrap();
        let mut jws = sign(
            &key,
            Signer::Kid("https://ca/acct/1"),
            Some("n"),
            "https://ca/x",
            Some(b"{}"),
        )
        .unwrap();
        jws.payload = b64::encode(b"{\"a\":1}");
        let parsed = ParsedJws::from_flattened(jws).unwrap();
        assert!(matches!(
            parsed.verify(&key.jwk()),
            Err(JwsError::BadSignature(_))
        ));
    }

    #[test]
    fn refuses_what_acme_forbids() {
        let key = AccountKey::generate(KeyKind::P256).unwrap();
        let good = sign(&key, Signer::Jwk, Some("n"), "https://ca/x", None).unwrap();

        let with_header = format!(
            r#"{{"protected":"{}","payload":"","signature":"{}","header":{{}}}}"#,
            good.protected, good.signature
        );
        assert!(matches!(
            ParsedJws::parse(with_header.as_bytes()),
            Err(JwsError::Malformed(_))
        ));

        let hdr = |h: serde_json::Value| Flattened {
            protected: b64::encode(h.to_string()),
            payload: String::new(),
            signature: good.signature.clone(),
        };
        let jwk = serde_json::to_value(key.jwk()).unwrap();
        let none = hdr(serde_json::json!({"alg":"none","url":"u","nonce":"n","jwk":jwk}));
        assert!(matches!(
            ParsedJws::from_flattened(none),
            Err(JwsError::BadAlgorithm(_))
        ));
        let hs = hdr(serde_json::json!({"alg":"HS256","url":"u","nonce":"n","jwk":jwk}));
        assert!(matches!(
            ParsedJws::from_flattened(hs),
            Err(JwsError::BadAlgorithm(_))
        ));
        let crit = hdr(serde_json::json!({"alg":"ES256","url":"u","jwk":jwk,"crit":["exp"]}));
        assert!(matches!(
            ParsedJws::from_flattened(crit),
            Err(JwsError::Malformed(_))
        ));
        let both = hdr(serde_json::json!({"alg":"ES256","url":"u","jwk":jwk,"kid":"k"}));
        assert!(matches!(
            ParsedJws::from_flattened(both).unwrap().key_reference(),
            Err(JwsError::KeyReference)
        ));
        let neither = hdr(serde_json::json!({"alg":"ES256","url":"u"}));
        assert!(
            ParsedJws::from_flattened(neither)
                .unwrap()
                .key_reference()
                .is_err()
        );
        let padded = Flattened {
            payload: "e30=".into(),
            ..good.clone()
        };
        assert!(ParsedJws::from_flattened(padded).is_err());
    }

    #[test]
    fn header_and_payload_are_read_strictly() {
        let key = AccountKey::generate(KeyKind::P256).unwrap();
        let jwk = serde_json::to_value(key.jwk()).unwrap();
        let with = |protected: Vec<u8>, payload: &[u8]| Flattened {
            protected: b64::encode(protected),
            payload: b64::encode(payload),
            signature: "AA".into(),
        };
        let header = |extra: &str| {
            format!(r#"{{"alg":"ES256","url":"u","nonce":"n","jwk":{jwk}{extra}}}"#).into_bytes()
        };
        ParsedJws::from_flattened(with(header(""), b"{}")).unwrap();

        // Invalid UTF-8 inside a member nobody reads.
        let mut bad = header(r#","x-unknown":"?""#);
        let at = bad.iter().rposition(|b| *b == b'?').unwrap();
        bad[at] = 0xff;
        let e = ParsedJws::from_flattened(with(bad, b"{}")).unwrap_err();
        assert!(
            matches!(&e, JwsError::Malformed(m) if m.contains("UTF-8")),
            "{e}"
        );
        // Duplicate member names, unknown or known.
        for dup in [r#","x":1,"x":2"#, r#","url":"v""#] {
            let e = ParsedJws::from_flattened(with(header(dup), b"{}")).unwrap_err();
            assert!(
                matches!(&e, JwsError::Malformed(m) if m.contains("duplicate")),
                "{dup}: {e}"
            );
        }
        // A payload that is not UTF-8; a payload with duplicate members.
        let e = ParsedJws::from_flattened(with(header(""), b"{\"a\":\"\xff\"}")).unwrap_err();
        assert!(
            matches!(&e, JwsError::Malformed(m) if m.contains("UTF-8")),
            "{e}"
        );
        let p = ParsedJws::from_flattened(with(header(""), br#"{"a":1,"a":2}"#)).unwrap();
        assert!(p.payload_json::<serde_json::Value>().is_err());
        // The body itself: duplicates and bad UTF-8.
        let good = sign(&key, Signer::Jwk, Some("n"), "u", None).unwrap();
        let body = format!(
            r#"{{"protected":"{}","payload":"","payload":"e30","signature":"{}"}}"#,
            good.protected, good.signature
        );
        assert!(ParsedJws::parse(body.as_bytes()).is_err());
        let mut body = serde_json::to_vec(&good).unwrap();
        body.extend_from_slice(b" \xff");
        assert!(ParsedJws::parse(&body).is_err());
    }

    #[test]
    fn a_header_jwk_with_private_members_is_a_bad_key() {
        let key = AccountKey::generate(KeyKind::P256).unwrap();
        let mut jwk = serde_json::to_value(key.jwk()).unwrap();
        jwk["d"] = b64::encode([1u8; 32]).into();
        let header = serde_json::json!({"alg":"ES256","url":"u","nonce":"n","jwk":jwk});
        let f = Flattened {
            protected: b64::encode(header.to_string()),
            payload: String::new(),
            signature: "AA".into(),
        };
        let e = ParsedJws::from_flattened(f).unwrap_err();
        assert!(
            matches!(&e, JwsError::BadKey(m) if m.contains("\"d\"")),
            "{e}"
        );
        let missing =
            serde_json::json!({"alg":"ES256","url":"u","jwk":{"kty":"EC","crv":"P-256","x":"AA"}});
        let f = Flattened {
            protected: b64::encode(missing.to_string()),
            payload: String::new(),
            signature: "AA".into(),
        };
        assert!(matches!(
            ParsedJws::from_flattened(f),
            Err(JwsError::BadKey(_))
        ));
    }
}
