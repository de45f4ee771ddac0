//! The one request verifier (RFC 8555 §6.2–§6.5). Checks happen in an order that never
//! changes state before the request is known to be authentic: syntax, algorithm, key
//! reference, URL, account lookup, signature, and only then the nonce is consumed.

use sceau_store::AccountRecord;
use sceau_wire::jws::KeyRef;
use sceau_wire::{Alg, Jwk, JwsError, ParsedJws, ProblemType};

use crate::{Acme, AcmeError, AcmeResult};

/// Which key reference an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// newAccount: a `jwk`, no account yet.
    Jwk,
    /// Everything bound to an account.
    Kid,
    /// revokeCert: the account's `kid` or the certificate key's `jwk` (§7.6).
    Either,
}

#[derive(Debug, Clone)]
pub enum VerifiedKey {
    Account(AccountRecord),
    Jwk(Jwk),
}

#[derive(Debug, Clone)]
pub struct Verified {
    pub jws: ParsedJws,
    pub key: VerifiedKey,
    pub jwk: Jwk,
}

impl Verified {
    pub fn account(&self) -> AcmeResult<&AccountRecord> {
        match &self.key {
            VerifiedKey::Account(a) => Ok(a),
            VerifiedKey::Jwk(_) => Err(AcmeError::malformed(
                "this request must be signed with an account key (\"kid\")",
            )),
        }
    }

    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> AcmeResult<T> {
        self.jws
            .payload_json()
            .map_err(|e| AcmeError::malformed(format!("payload: {e}")))
    }
}

pub(crate) fn jws_error(e: JwsError) -> AcmeError {
    match e {
        JwsError::BadAlgorithm(alg) => {
            let mut err = AcmeError::new(
                ProblemType::BadSignatureAlgorithm,
                format!("unsupported JWS algorithm {alg}"),
            );
            err.algorithms = Some(Alg::ALL.iter().map(|a| a.name().to_owned()).collect());
            err
        }
        JwsError::BadKey(detail) => AcmeError::new(ProblemType::BadPublicKey, detail),
        other => AcmeError::malformed(other.to_string()),
    }
}

impl Acme {
    /// Verifies a POST body sent to `url`; see the module invariants for the order of checks.
    pub async fn verify(&self, url: &str, body: &[u8], rule: KeyRule) -> AcmeResult<Verified> {
        if body.len() > self.config.max_body_bytes {
            return Err(AcmeError::malformed(format!(
                "request body larger than {} bytes",
                self.config.max_body_bytes
            ))
            .with_status(413));
        }
        let jws = ParsedJws::parse(body).map_err(jws_error)?;
        let key_ref = jws.key_reference().map_err(jws_error)?;
        match jws.header.url.as_deref() {
            Some(u) if u == url => {}
            Some(u) => {
                return Err(AcmeError::unauthorized(format!(
                    "JWS \"url\" {u:?} is not the request URL {url:?}"
                )));
            }
            None => return Err(AcmeError::malformed("JWS protected header has no \"url\"")),
        }
        let Some(nonce) = jws.header.nonce.clone() else {
            return Err(AcmeError::new(
                ProblemType::BadNonce,
                "JWS protected header has no \"nonce\"",
            ));
        };
        let (key, jwk) = match (key_ref, rule) {
            (KeyRef::Kid(_), KeyRule::Jwk) => {
                return Err(AcmeError::malformed(
                    "newAccount must be signed with a \"jwk\", not a \"kid\"",
                ));
            }
            (KeyRef::Jwk(_), KeyRule::Kid) => {
                return Err(AcmeError::malformed(
                    "this request must be signed with an account key (\"kid\"), not a \"jwk\"",
                ));
            }
            (KeyRef::Jwk(jwk), _) => {
                jwk.validate()
                    .map_err(|e| AcmeError::new(ProblemType::BadPublicKey, e.to_string()))?;
                (VerifiedKey::Jwk(jwk.clone()), jwk.clone())
            }
            (KeyRef::Kid(kid), _) => {
                let account = self.account_for_kid(kid).await?;
                let jwk: Jwk = serde_json::from_str(&account.jwk)
                    .map_err(|e| AcmeError::internal("reading an account key", e))?;
                (VerifiedKey::Account(account), jwk)
            }
        };
        jws.verify(&jwk).map_err(|e| match e {
            JwsError::BadSignature(_) => {
                AcmeError::malformed("JWS signature does not verify with the account key")
            }
            other => jws_error(other),
        })?;
        if !self.redeem_nonce(&nonce).await? {
            return Err(AcmeError::new(
                ProblemType::BadNonce,
                "nonce unknown, expired or already used; retry with a fresh one",
            ));
        }
        if let VerifiedKey::Account(account) = &key {
            match account.status.as_str() {
                "valid" => {}
                "suspended" => {
                    return Err(AcmeError::unauthorized(
                        "account is suspended by its administrator; requests are refused until it is resumed",
                    ));
                }
                other => return Err(AcmeError::unauthorized(format!("account is {other}"))),
            }
        }
        Ok(Verified { jws, key, jwk })
    }

    async fn account_for_kid(&self, kid: &str) -> AcmeResult<AccountRecord> {
        let Some(id) = self.urls.account_id_from_kid(kid) else {
            return Err(AcmeError::new(
                ProblemType::AccountDoesNotExist,
                format!("\"kid\" {kid:?} is not an account URL of this server"),
            ));
        };
        match self.store.account_by_id(id).await {
            Ok(a) => Ok(a),
            Err(sceau_store::StoreError::NotFound) => Err(AcmeError::new(
                ProblemType::AccountDoesNotExist,
                "no account with this URL",
            )),
            Err(e) => Err(e.into()),
        }
    }
}
