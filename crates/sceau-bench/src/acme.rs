//! One virtual ACME client: its account key, account URL and current nonce, and the full
//! issuance flow of RFC 8555 §7.4 with http-01 (§8.3).
//!
//! Invariants:
//! - Every POST carries a fresh nonce: the `Replay-Nonce` of the previous response or, when
//!   there is none, one from newNonce (RFC 8555 §7.2). A `badNonce` answer is retried with the
//!   nonce that came with it (RFC 8555 §6.5), at most [`BAD_NONCE_RETRIES`] times.
//! - Polling honours `Retry-After` (RFC 8555 §7.4, §8.2) but within [`Poll::min`, `Poll::max`],
//!   and gives up after [`Poll::deadline`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use sceau_wire::jws::{self, Signer};
use sceau_wire::{
    AccountKey, Authorization, AuthorizationStatus, Directory, Finalize, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, Problem, ProblemType, b64, challenge_type, eab, media,
};
use serde::de::DeserializeOwned;

use crate::error::BenchError;
use crate::guard::{Class, ClassGuard};
use crate::http01::KeyAuthorizations;

pub const BAD_NONCE_RETRIES: usize = 5;

/// External Account Binding credentials (RFC 8555 §7.3.4).
#[derive(Clone)]
pub struct Eab {
    pub kid: String,
    pub mac_key: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub min: Duration,
    pub max: Duration,
    pub deadline: Duration,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self, step: &'static str) -> Result<T, BenchError> {
        serde_json::from_slice(&self.body).map_err(|e| BenchError::Protocol {
            step,
            detail: e.to_string(),
        })
    }

    fn location(&self, step: &'static str) -> Result<String, BenchError> {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(BenchError::Protocol {
                step,
                detail: "no Location header".into(),
            })
    }

    /// Only the delay-seconds form; an HTTP-date falls back to the minimum interval.
    fn retry_after(&self) -> Option<Duration> {
        let text = self.headers.get(RETRY_AFTER)?.to_str().ok()?;
        text.trim().parse::<u64>().ok().map(Duration::from_secs)
    }
}

pub struct Session {
    http: reqwest::Client,
    directory: Arc<Directory>,
    key: AccountKey,
    account_url: Option<String>,
    nonce: Option<String>,
    poll: Poll,
    guard: Option<Arc<ClassGuard>>,
    /// PKCS#8 PEM of the key every CSR certifies (a CA that hands out one fixed certificate,
    /// such as `openssl cmp`'s mock server); `None`: a fresh key per order.
    pub csr_key: Option<Arc<String>>,
    /// The certificate URL of the last order that became valid, once the CA handed it out
    /// (even if downloading it then failed); the caller takes it.
    pub certificate_url: Option<String>,
}

impl Session {
    /// `guard`: keep newOrder and authorization fetches apart (see [`crate::guard`]).
    pub fn new(
        http: reqwest::Client,
        directory: Arc<Directory>,
        key: AccountKey,
        poll: Poll,
        guard: Option<Arc<ClassGuard>>,
    ) -> Self {
        Session {
            http,
            directory,
            key,
            account_url: None,
            nonce: None,
            csr_key: None,
            certificate_url: None,
            poll,
            guard,
        }
    }

    /// POST under the class guard, when there is one.
    async fn post_as(
        &mut self,
        class: Class,
        step: &'static str,
        url: &str,
        payload: Option<&[u8]>,
    ) -> Result<Reply, BenchError> {
        let guard = self.guard.clone();
        let _pass = match &guard {
            Some(g) => Some(g.enter(class).await),
            None => None,
        };
        self.post(step, url, payload).await
    }

    /// newAccount (RFC 8555 §7.3), with the binding of §7.3.4 when `eab` is given.
    pub async fn register(&mut self, eab: Option<&Eab>) -> Result<(), BenchError> {
        const STEP: &str = "newAccount";
        let url = self.directory.new_account.clone();
        let binding = eab.map(|e| eab::sign(&e.kid, &e.mac_key, &url, &self.key.jwk()));
        let payload = NewAccount {
            terms_of_service_agreed: Some(true),
            external_account_binding: binding,
            ..NewAccount::default()
        };
        let reply = self.post(STEP, &url, Some(&to_json(&payload))).await?;
        self.account_url = Some(reply.location(STEP)?);
        Ok(())
    }

    /// One full issuance for `name`: newOrder → authorizations → http-01 → finalize → download.
    /// Returns the PEM chain.
    pub async fn issue(
        &mut self,
        name: &str,
        responder: &KeyAuthorizations,
    ) -> Result<String, BenchError> {
        let new_order = NewOrder {
            identifiers: vec![Identifier::dns(name)],
            ..NewOrder::default()
        };
        let url = self.directory.new_order.clone();
        let reply = self
            .post_as(
                Class::NewOrder,
                "newOrder",
                &url,
                Some(&to_json(&new_order)),
            )
            .await?;
        let order_url = reply.location("newOrder")?;
        let mut order: Order = reply.json("newOrder")?;

        let mut answered = Vec::new();
        for authz_url in &order.authorizations {
            if let Some(token) = self.answer(authz_url, responder).await? {
                answered.push(token);
            }
        }
        // The order, not each authorization, is polled until validation ends: it is one
        // resource whatever the number of names, and RFC 8555 §7.4 makes it turn `ready` once
        // every authorization is valid (or `invalid` when one fails). Polling authorizations
        // also deadlocks Pebble 2.4 under load: its authz handler holds the authz lock while
        // it waits for the store lock that newOrder holds while it waits for that authz.
        let validated = if order.status == OrderStatus::Pending {
            self.poll_order(&order_url, "validation", |s| s != OrderStatus::Pending)
                .await
        } else {
            Ok(order)
        };
        for token in &answered {
            responder.remove(token);
        }
        order = validated?;
        if order.status != OrderStatus::Ready {
            return Err(self.validation_failed(&order).await);
        }

        let csr = csr_for(name, self.csr_key.as_deref().map(String::as_str))?;
        let body = to_json(&Finalize {
            csr: b64::encode(csr),
        });
        let reply = self.post("finalize", &order.finalize, Some(&body)).await?;
        order = reply.json("finalize")?;
        if matches!(order.status, OrderStatus::Processing | OrderStatus::Ready) {
            let wait = |s| !matches!(s, OrderStatus::Processing | OrderStatus::Ready);
            order = self.poll_order(&order_url, "order valid", wait).await?;
        }
        let Some(cert_url) = order
            .certificate
            .clone()
            .filter(|_| order.status == OrderStatus::Valid)
        else {
            return Err(order_failed("order valid", &order));
        };
        self.certificate_url = Some(cert_url.clone());

        let reply = self.post("certificate", &cert_url, None).await?;
        let pem = String::from_utf8(reply.body).map_err(|_| BenchError::Protocol {
            step: "certificate",
            detail: "not UTF-8".into(),
        })?;
        if !pem.starts_with("-----BEGIN CERTIFICATE-----") {
            return Err(BenchError::Protocol {
                step: "certificate",
                detail: "not a PEM chain".into(),
            });
        }
        Ok(pem)
    }

    /// Fetches one authorization and, when it is pending, publishes the http-01 key
    /// authorization and answers the challenge. Returns the token to withdraw afterwards.
    async fn answer(
        &mut self,
        authz_url: &str,
        responder: &KeyAuthorizations,
    ) -> Result<Option<String>, BenchError> {
        const STEP: &str = "authorization";
        let authz: Authorization = self
            .post_as(Class::Authorization, STEP, authz_url, None)
            .await?
            .json(STEP)?;
        match authz.status {
            AuthorizationStatus::Valid => return Ok(None),
            AuthorizationStatus::Pending => {}
            other => {
                return Err(BenchError::Protocol {
                    step: STEP,
                    detail: format!("authorization is {other:?}"),
                });
            }
        }
        let challenge = authz
            .challenges
            .iter()
            .find(|c| c.kind == challenge_type::HTTP_01)
            .ok_or(BenchError::Protocol {
                step: STEP,
                detail: "no http-01 challenge offered".into(),
            })?;
        let token = challenge.token.clone().ok_or(BenchError::Protocol {
            step: STEP,
            detail: "http-01 challenge without token".into(),
        })?;
        // RFC 8555 §8.1: keyAuthorization = token || '.' || base64url(Thumbprint(accountKey)).
        responder.insert(&token, format!("{token}.{}", self.key.jwk().thumbprint()));
        // RFC 8555 §7.5.1: the client signals readiness with an empty JSON object.
        if let Err(e) = self.post("challenge", &challenge.url, Some(b"{}")).await {
            responder.remove(&token);
            return Err(e);
        }
        Ok(Some(token))
    }

    /// Why validation failed: the order's error if the CA set one, else the first challenge
    /// error found in its authorizations (RFC 8555 §7.1.5 `error`).
    async fn validation_failed(&mut self, order: &Order) -> BenchError {
        if order.error.is_none() {
            for authz_url in &order.authorizations {
                let Ok(reply) = self.post("authorization", authz_url, None).await else {
                    continue;
                };
                let Ok(authz) = reply.json::<Authorization>("authorization") else {
                    continue;
                };
                if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
                    return BenchError::Protocol {
                        step: "validation",
                        detail: problem.to_string(),
                    };
                }
            }
        }
        order_failed("validation", order)
    }

    async fn poll_order(
        &mut self,
        order_url: &str,
        step: &'static str,
        done: impl Fn(OrderStatus) -> bool,
    ) -> Result<Order, BenchError> {
        let started = Instant::now();
        loop {
            let reply = self.post(step, order_url, None).await?;
            let order: Order = reply.json(step)?;
            if done(order.status) {
                return Ok(order);
            }
            self.pause(
                &reply,
                started,
                step,
                &format!("{:?}", order.status).to_lowercase(),
            )
            .await?;
        }
    }

    async fn pause(
        &self,
        reply: &Reply,
        started: Instant,
        step: &'static str,
        state: &str,
    ) -> Result<(), BenchError> {
        if started.elapsed() >= self.poll.deadline {
            return Err(BenchError::Timeout {
                step,
                state: state.to_owned(),
                secs: self.poll.deadline.as_secs(),
            });
        }
        let wait = reply
            .retry_after()
            .unwrap_or(self.poll.min)
            .clamp(self.poll.min, self.poll.max);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    async fn new_nonce(&self) -> Result<String, BenchError> {
        const STEP: &str = "newNonce";
        let response = self
            .http
            .head(&self.directory.new_nonce)
            .send()
            .await
            .map_err(|source| BenchError::http(STEP, source))?;
        replay_nonce(response.headers()).ok_or(BenchError::Protocol {
            step: STEP,
            detail: format!("HTTP {} without Replay-Nonce", response.status()),
        })
    }

    /// A signed POST (`payload: None` is POST-as-GET, RFC 8555 §6.3).
    async fn post(
        &mut self,
        step: &'static str,
        url: &str,
        payload: Option<&[u8]>,
    ) -> Result<Reply, BenchError> {
        let mut attempt = 0;
        loop {
            let nonce = match self.nonce.take() {
                Some(n) => n,
                None => self.new_nonce().await?,
            };
            let signer = match &self.account_url {
                Some(kid) => Signer::Kid(kid),
                None => Signer::Jwk,
            };
            let jws = jws::sign(&self.key, signer, Some(&nonce), url, payload)?;
            let response = self
                .http
                .post(url)
                .header(CONTENT_TYPE, media::JOSE_JSON)
                .body(to_json(&jws))
                .send()
                .await
                .map_err(|source| BenchError::http(step, source))?;
            self.nonce = replay_nonce(response.headers());
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(|source| BenchError::http(step, source))?
                .to_vec();
            if status.is_success() {
                return Ok(Reply {
                    status,
                    headers,
                    body,
                });
            }
            let problem = serde_json::from_slice::<Problem>(&body).ok();
            if problem
                .as_ref()
                .is_some_and(|p| p.is(ProblemType::BadNonce))
                && attempt < BAD_NONCE_RETRIES
            {
                attempt += 1;
                continue;
            }
            let detail = match problem {
                Some(p) => p.to_string(),
                None => String::from_utf8_lossy(&body).chars().take(200).collect(),
            };
            return Err(BenchError::Acme {
                step,
                status: status.as_u16(),
                detail,
            });
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reply({})", self.status)
    }
}

fn replay_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get("replay-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("ACME payloads serialise")
}

fn order_failed(step: &'static str, order: &Order) -> BenchError {
    let detail = match &order.error {
        Some(p) => p.to_string(),
        None => format!("order is {:?}", order.status).to_lowercase(),
    };
    BenchError::Protocol { step, detail }
}

/// A PKCS#10 request for `name` with a fresh P-256 key, or `key_pem` (RFC 8555 §7.4: the names
/// go in the subjectAltName extension; the CN repeats the name for CAs that still read it).
fn csr_for(name: &str, key_pem: Option<&str>) -> Result<Vec<u8>, BenchError> {
    let key = match key_pem {
        Some(pem) => rcgen::KeyPair::from_pem(pem)?,
        None => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
    };
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    Ok(params.serialize_request(&key)?.der().to_vec())
}

/// Fetches the directory (RFC 8555 §7.1.1).
pub async fn directory(http: &reqwest::Client, url: &str) -> Result<Directory, BenchError> {
    const STEP: &str = "directory";
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|source| BenchError::http(STEP, source))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|source| BenchError::http(STEP, source))?;
    if !status.is_success() {
        let detail = String::from_utf8_lossy(&body).chars().take(200).collect();
        return Err(BenchError::Acme {
            step: STEP,
            status: status.as_u16(),
            detail,
        });
    }
    serde_json::from_slice(&body).map_err(|e| BenchError::Protocol {
        step: STEP,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_the_identifier() {
        let der = csr_for("c1-o2.bench.test", None).unwrap();
        // The name must be inside the DER (SAN and CN), and it must start as a SEQUENCE.
        assert_eq!(der[0], 0x30);
        let hay = der.windows(16).filter(|w| w == b"c1-o2.bench.test").count();
        assert_eq!(hay, 2);
    }

    #[test]
    fn retry_after_is_seconds_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        let reply = Reply {
            status: StatusCode::OK,
            headers,
            body: vec![],
        };
        assert_eq!(reply.retry_after(), Some(Duration::from_secs(3)));
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        let reply = Reply {
            status: StatusCode::OK,
            headers,
            body: vec![],
        };
        assert_eq!(reply.retry_after(), None);
    }
}
