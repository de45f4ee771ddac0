//! CMP over HTTP (RFC 6712): one POST of `application/pkixcmp` per request, the response read
//! with a size cap.
//!
//! Invariants:
//! - Redirects are not followed (RFC 6712 §3.7 lets a client refuse them; a protected message
//!   has no business going elsewhere).
//! - A response body is read up to `max_response_bytes` and no further; a Content-Length above
//!   the cap is refused before reading.
//! - A response is handed on only if it is `application/pkixcmp` (§3.4), whatever its HTTP
//!   status, so that a CMP error message sent with a 4xx/5xx is still read; any other body is
//!   an [`CmpError::HttpStatus`] or [`CmpError::ContentType`].

use std::sync::Arc;
use std::time::Duration;

use crate::error::CmpError;

pub(crate) const MEDIA_TYPE: &str = "application/pkixcmp";

pub(crate) struct Transport {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    max_response_bytes: usize,
}

impl Transport {
    pub fn new(
        url: &str,
        timeout: Duration,
        connect_timeout: Duration,
        max_response_bytes: usize,
        tls_roots_pem: Option<&str>,
    ) -> Result<Transport, CmpError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| CmpError::Config(format!("CMP server URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CmpError::Config(format!(
                "CMP server URL {url:?}: only http and https are supported (RFC 6712)"
            )));
        }
        let builder = reqwest::Client::builder()
            .user_agent(concat!("sceau-cmp/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per message (and `Connection: close` on each request): a
            // waiting transaction is polled minutes later, maybe by another process, so no
            // message may depend on the connection of the one before; servers that tie a
            // transaction to a kept-alive connection (OpenSSL's cancels the transaction when
            // such a connection drops) keep it open across connections when asked to close.
            // RFC 6712 §3.2 allows, never requires, persistent connections. A POST lost on a
            // stale pooled connection could not be replayed safely anyway.
            .pool_max_idle_per_host(0);
        let builder = match tls_roots_pem {
            Some(pem) => builder.use_preconfigured_tls(tls_config(pem)?),
            None => {
                // reqwest's default verifier needs a process-wide provider; an embedding
                // program may have installed one already, which is fine.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                builder
            }
        };
        let client = builder
            .build()
            .map_err(|e| CmpError::Config(format!("HTTP client: {e}")))?;
        Ok(Transport {
            client,
            url: url.to_owned(),
            timeout,
            max_response_bytes,
        })
    }

    pub async fn post(&self, message: Vec<u8>) -> Result<Vec<u8>, CmpError> {
        let fail = |e: reqwest::Error| self.error(e);
        let mut resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .header(reqwest::header::ACCEPT, MEDIA_TYPE)
            .header(reqwest::header::CONNECTION, "close")
            .body(message)
            .send()
            .await
            .map_err(fail)?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != MEDIA_TYPE {
            return Err(if (200..300).contains(&status) {
                CmpError::ContentType(content_type)
            } else {
                CmpError::HttpStatus { status }
            });
        }
        if resp
            .content_length()
            .is_some_and(|l| l > self.max_response_bytes as u64)
        {
            return Err(CmpError::TooLarge {
                limit: self.max_response_bytes,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(CmpError::TooLarge {
                    limit: self.max_response_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn error(&self, e: reqwest::Error) -> CmpError {
        if e.is_timeout() {
            CmpError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            }
        } else {
            // The chain of sources says "connection refused", "dns error" and the like.
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                source = s.source();
            }
            CmpError::Unreachable {
                url: self.url.clone(),
                detail,
            }
        }
    }
}

/// A rustls client configuration trusting exactly the certificates of `pem`.
fn tls_config(pem: &str) -> Result<rustls::ClientConfig, CmpError> {
    let ders = sceau_wire::key::pem_decode_all(pem, "CERTIFICATE");
    if ders.is_empty() {
        return Err(CmpError::Config(
            "the CMP TLS trust bundle contains no PEM CERTIFICATE".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for der in ders {
        roots
            .add(rustls_pki_types::CertificateDer::from(der))
            .map_err(|e| CmpError::Config(format!("CMP TLS trust bundle: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CmpError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
