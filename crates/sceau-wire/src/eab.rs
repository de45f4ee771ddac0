//! External Account Binding (RFC 8555 §7.3.4): an HS256 JWS over the account's JWK, keyed by
//! the MAC key the CA handed out with its key identifier.
//!
//! Invariants:
//! - [`verify`] only returns `Ok` when the MAC matches, the `url` is the newAccount URL of the
//!   outer request, no nonce is present, and the payload is exactly the outer JWK.
//! - The protected header and the payload are read with [`crate::json::parse_strict`] (UTF-8,
//!   unique member names), the payload key through [`Jwk::from_value`], so a payload carrying
//!   a private-key member is refused even when its public part matches.

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::json;
use crate::jwk::{Jwk, JwkError};
use crate::jws::Flattened;

#[derive(Debug, Serialize, Deserialize)]
struct EabHeader {
    alg: String,
    kid: String,
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EabError {
    #[error("externalAccountBinding is malformed: {0}")]
    Malformed(String),
    #[error("externalAccountBinding uses {0}; only HS256 is accepted")]
    Algorithm(String),
    #[error("externalAccountBinding \"url\" does not match the request URL")]
    Url,
    #[error("externalAccountBinding must not contain a nonce")]
    Nonce,
    #[error("externalAccountBinding payload is not the account key")]
    KeyMismatch,
    #[error("externalAccountBinding payload is not an acceptable public key: {0}")]
    BadKey(JwkError),
    #[error("externalAccountBinding MAC does not verify")]
    BadMac,
}

/// Builds the binding a client puts in newAccount.
pub fn sign(kid: &str, mac_key: &[u8], url: &str, account_jwk: &Jwk) -> Flattened {
    let header = EabHeader {
        alg: "HS256".into(),
        kid: kid.into(),
        url: url.into(),
        nonce: None,
    };
    let protected = b64::encode(serde_json::to_vec(&header).expect("header serialises"));
    let payload = b64::encode(serde_json::to_vec(account_jwk).expect("jwk serialises"));
    let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
    let tag = hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
    Flattened {
        protected,
        payload,
        signature: b64::encode(tag.as_ref()),
    }
}

/// The key identifier named by a binding, read before the MAC key can be looked up.
pub fn key_id(binding: &Flattened) -> Result<String, EabError> {
    Ok(header(binding)?.kid)
}

fn header(binding: &Flattened) -> Result<EabHeader, EabError> {
    let bytes = b64::decode(&binding.protected)
        .map_err(|_| EabError::Malformed("protected is not base64url".into()))?;
    json::parse_strict(&bytes).map_err(|e| EabError::Malformed(format!("protected header: {e}")))
}

/// Verifies a binding against the MAC key of its `kid`, the outer request URL and account key.
pub fn verify(
    binding: &Flattened,
    mac_key: &[u8],
    url: &str,
    account_jwk: &Jwk,
) -> Result<(), EabError> {
    if check(binding, url, account_jwk)?.matches(mac_key) {
        Ok(())
    } else {
        Err(EabError::BadMac)
    }
}

/// What the MAC of a binding covers, and the MAC itself: checked by whoever holds the key
/// (in a split deployment, the signer: the front end never sees MAC keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacInput {
    /// `protected.payload`, as signed.
    pub signing_input: Vec<u8>,
    pub mac: Vec<u8>,
}

impl MacInput {
    /// Whether `mac_key` made this MAC (HMAC-SHA256, compared in constant time).
    pub fn matches(&self, mac_key: &[u8]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
        hmac::verify(&key, &self.signing_input, &self.mac).is_ok()
    }
}

/// Every check of a binding but its MAC (RFC 8555 §7.3.4): HS256, no nonce, the newAccount
/// URL, and a payload that is exactly the account's public key.
pub fn check(binding: &Flattened, url: &str, account_jwk: &Jwk) -> Result<MacInput, EabError> {
    let header = header(binding)?;
    if header.alg != "HS256" {
        return Err(EabError::Algorithm(header.alg));
    }
    if header.nonce.is_some() {
        return Err(EabError::Nonce);
    }
    if header.url != url {
        return Err(EabError::Url);
    }
    let mac =
        b64::decode(&binding.signature).map_err(|_| EabError::Malformed("signature".into()))?;
    let payload =
        b64::decode(&binding.payload).map_err(|_| EabError::Malformed("payload".into()))?;
    let inner: serde_json::Value =
        json::parse_strict(&payload).map_err(|e| EabError::Malformed(format!("payload: {e}")))?;
    let inner = Jwk::from_value(inner).map_err(EabError::BadKey)?;
    if inner.thumbprint() != account_jwk.thumbprint() {
        return Err(EabError::KeyMismatch);
    }
    Ok(MacInput {
        signing_input: format!("{}.{}", binding.protected, binding.payload).into_bytes(),
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{AccountKey, KeyKind};

    #[test]
    fn binding_verifies_only_with_its_key_url_and_account() {
        let account = AccountKey::generate(KeyKind::P256).unwrap().jwk();
        let other = AccountKey::generate(KeyKind::P256).unwrap().jwk();
        let mac = [7u8; 32];
        let url = "https://ca/new-account";
        let b = sign("kid-1", &mac, url, &account);
        assert_eq!(key_id(&b).unwrap(), "kid-1");
        verify(&b, &mac, url, &account).unwrap();
        assert_eq!(verify(&b, &[8u8; 32], url, &account), Err(EabError::BadMac));
        assert_eq!(
            verify(&b, &mac, "https://ca/other", &account),
            Err(EabError::Url)
        );
        assert_eq!(verify(&b, &mac, url, &other), Err(EabError::KeyMismatch));
    }

    #[test]
    fn binding_payload_with_a_private_key_is_refused() {
        let account = AccountKey::generate(KeyKind::P256).unwrap().jwk();
        let mac = [7u8; 32];
        let url = "https://ca/new-account";
        let mut payload = serde_json::to_value(&account).unwrap();
        payload["d"] = b64::encode([1u8; 32]).into();
        let header = serde_json::json!({"alg": "HS256", "kid": "kid-1", "url": url});
        let b = mac_signed(
            &mac,
            header.to_string().as_bytes(),
            payload.to_string().as_bytes(),
        );
        assert_eq!(
            verify(&b, &mac, url, &account),
            Err(EabError::BadKey(JwkError::PrivateMember("d")))
        );
        // A header with a duplicate member is malformed even with a good MAC.
        let dup = br#"{"alg":"HS256","kid":"kid-1","url":"https://ca/new-account","kid":"kid-2"}"#;
        let b = mac_signed(
            &mac,
            dup,
            serde_json::to_string(&account).unwrap().as_bytes(),
        );
        assert!(matches!(key_id(&b), Err(EabError::Malformed(_))));
        assert!(matches!(
            verify(&b, &mac, url, &account),
            Err(EabError::Malformed(_))
        ));
    }

    fn mac_signed(mac: &[u8], header: &[u8], payload: &[u8]) -> Flattened {
        let protected = b64::encode(header);
        let payload = b64::encode(payload);
        let key = hmac::Key::new(hmac::HMAC_SHA256, mac);
        let tag = hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
        Flattened {
            protected,
            payload,
            signature: b64::encode(tag.as_ref()),
        }
    }
}
