//! External Account Binding (RFC 8555 §7.3.4): an HS256 JWS over the account's JWK, keyed by
//! the MAC key the CA handed out with its key identifier.
//!
//! Invariant: [`verify`] only returns `Ok` when the MAC matches, the `url` is the newAccount URL
//! of the outer request, no nonce is present, and the payload is exactly the outer JWK.

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::jwk::Jwk;
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
    serde_json::from_slice(&bytes).map_err(|e| EabError::Malformed(e.to_string()))
}

/// Verifies a binding against the MAC key of its `kid`, the outer request URL and account key.
pub fn verify(
    binding: &Flattened,
    mac_key: &[u8],
    url: &str,
    account_jwk: &Jwk,
) -> Result<(), EabError> {
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
    let signature =
        b64::decode(&binding.signature).map_err(|_| EabError::Malformed("signature".into()))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
    hmac::verify(
        &key,
        format!("{}.{}", binding.protected, binding.payload).as_bytes(),
        &signature,
    )
    .map_err(|_| EabError::BadMac)?;
    let payload =
        b64::decode(&binding.payload).map_err(|_| EabError::Malformed("payload".into()))?;
    let inner: Jwk = serde_json::from_slice(&payload).map_err(|_| EabError::KeyMismatch)?;
    if inner.thumbprint() != account_jwk.thumbprint() {
        return Err(EabError::KeyMismatch);
    }
    Ok(())
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
}
