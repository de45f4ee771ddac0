//! The ACME conversation (RFC 8555 §6, §7): directory, nonces, signed requests, polling.
//!
//! Invariants:
//! - Every request after the directory is a JWS POST (RFC 8555 §6.3: POST-as-GET for reads).
//! - Every `Replay-Nonce` the server sends is kept; a request uses a pooled nonce when there
//!   is one and asks newNonce otherwise (§7.2).
//! - A `badNonce` problem is retried with a fresh nonce a bounded number of times (§6.5); no
//!   other error is retried here.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use sceau_wire::jws::{self, Signer};
use sceau_wire::{AccountKey, Directory, Problem, ProblemType, media};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How many times one request is re-signed after `badNonce` before giving up.
const BAD_NONCE_RETRIES: usize = 10;
/// Upper bound on pooled nonces; servers expire them, so a large pool only wastes memory.
const NONCE_POOL_MAX: usize = 32;

/// An answer from the ACME server, already checked for a problem document.
#[derive(Debug, Clone)]
pub struct Response {
    pub url: String,
    pub status: u16,
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
    pub links: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Protocol {
            url: self.url.clone(),
            status: self.status,
            reason: format!("invalid JSON: {e}"),
        })
    }

    /// Targets of `Link` headers with relation `rel` (RFC 8288), e.g. "up" or "alternate".
    pub fn links(&self, rel: &str) -> Vec<&str> {
        self.links
            .iter()
            .filter(|(r, _)| r == rel)
            .map(|(_, u)| u.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One ACME server: its directory and the HTTP client that talks to it.
pub struct AcmeClient {
    http: reqwest::Client,
    directory_url: String,
    directory: Directory,
    nonces: Mutex<Vec<String>>,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory_url", &self.directory_url)
            .finish()
    }
}

impl AcmeClient {
    /// Fetches the directory (RFC 8555 §7.1.1); the only unauthenticated GET besides newNonce.
    pub async fn connect(directory_url: &str, http: reqwest::Client) -> Result<Self> {
        let resp = http
            .get(directory_url)
            .send()
            .await
            .map_err(|e| transport(directory_url, e))?;
        let response = read_response(directory_url, resp).await?;
        let directory: Directory = response.json()?;
        Ok(AcmeClient {
            http,
            directory_url: directory_url.to_owned(),
            directory,
            nonces: Mutex::new(Vec::new()),
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn keep_nonce(&self, headers: &HeaderMap) {
        if let Some(n) = headers.get("replay-nonce").and_then(|v| v.to_str().ok()) {
            let mut pool = self.nonces.lock().expect("nonce pool");
            if pool.len() >= NONCE_POOL_MAX {
                pool.remove(0);
            }
            pool.push(n.to_owned());
        }
    }

    async fn nonce(&self) -> Result<String> {
        if let Some(n) = self.nonces.lock().expect("nonce pool").pop() {
            return Ok(n);
        }
        // RFC 8555 §7.2: HEAD newNonce.
        let url = &self.directory.new_nonce;
        let resp = self
            .http
            .head(url)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        let status = resp.status().as_u16();
        resp.headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol {
                url: url.clone(),
                status,
                reason: "no Replay-Nonce header".into(),
            })
    }

    /// Signs and POSTs `payload` (`None`: POST-as-GET), retrying on `badNonce` (§6.5).
    pub async fn post(
        &self,
        key: &AccountKey,
        signer: Signer<'_>,
        url: &str,
        payload: Option<&[u8]>,
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let nonce = self.nonce().await?;
            let body = jws::sign(key, signer, Some(&nonce), url, payload)
                .map_err(|e| Error::Key(format!("signing the request failed: {e}")))?;
            let body = serde_json::to_vec(&body).expect("JWS serialises");
            let resp = self
                .http
                .post(url)
                .header(CONTENT_TYPE, media::JOSE_JSON)
                .body(body)
                .send()
                .await
                .map_err(|e| transport(url, e))?;
            self.keep_nonce(resp.headers());
            match read_response(url, resp).await {
                Err(Error::Server { problem, .. })
                    if problem.is(ProblemType::BadNonce) && attempt < BAD_NONCE_RETRIES =>
                {
                    tracing::debug!(url, attempt, "badNonce, retrying with a fresh nonce");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    pub async fn post_json<T: serde::Serialize>(
        &self,
        key: &AccountKey,
        signer: Signer<'_>,
        url: &str,
        payload: &T,
    ) -> Result<Response> {
        let bytes = serde_json::to_vec(payload).expect("payload serialises");
        self.post(key, signer, url, Some(&bytes)).await
    }

    /// An unauthenticated GET, used only for renewalInfo (RFC 9773 §4.1).
    pub async fn get(&self, url: &str) -> Result<Response> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transport(url, e))?;
        self.keep_nonce(resp.headers());
        read_response(url, resp).await
    }
}

fn transport(url: &str, e: reqwest::Error) -> Error {
    // reqwest's Display hides the cause (e.g. the certificate error); walk the chain.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    Error::Transport {
        url: url.to_owned(),
        reason,
    }
}

async fn read_response(url: &str, resp: reqwest::Response) -> Result<Response> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| transport(url, e))?.to_vec();
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    let content_type = header(CONTENT_TYPE).map(str::to_owned);
    let response = Response {
        url: url.to_owned(),
        status,
        location: header(LOCATION).map(str::to_owned),
        retry_after: header(RETRY_AFTER).and_then(parse_retry_after),
        links: headers
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_links)
            .collect(),
        content_type,
        body,
    };
    if status >= 400 {
        let problem: Problem = serde_json::from_slice(&response.body).unwrap_or_else(|_| Problem {
            kind: "about:blank".into(),
            detail: Some(format!(
                "HTTP {status}: {}",
                truncate(&response.text(), 200)
            )),
            status: Some(status),
            instance: None,
            subproblems: Vec::new(),
            algorithms: None,
        });
        return Err(Error::Server {
            url: url.to_owned(),
            problem: Box::new(problem),
        });
    }
    Ok(response)
}

fn truncate(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let when = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let delta = when - time::OffsetDateTime::now_utc();
    Some(Duration::from_secs(delta.whole_seconds().max(0) as u64))
}

/// Parses one `Link` header value into (rel, target) pairs (RFC 8288 §3).
pub fn parse_links(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in value.split(',') {
        let mut pieces = part.split(';');
        let Some(target) = pieces.next() else {
            continue;
        };
        let target = target.trim();
        let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
            continue;
        };
        for param in pieces {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("rel")
            {
                for rel in v.trim().trim_matches('"').split_whitespace() {
                    out.push((rel.to_owned(), target.to_owned()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn link_headers() {
        let l =
            parse_links(r#"<https://ca/dir>;rel="index", <https://ca/cert/1/1>; rel="alternate""#);
        assert_eq!(
            l,
            vec![
                ("index".into(), "https://ca/dir".into()),
                ("alternate".into(), "https://ca/cert/1/1".into())
            ]
        );
        assert!(parse_links("garbage").is_empty());
    }
}
