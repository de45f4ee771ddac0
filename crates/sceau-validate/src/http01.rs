//! http-01 (RFC 8555 §8.3; RFC 8738 §7 for IP identifiers).
//!
//! Invariants:
//! - Host names are resolved only through [`Dns`] (never the system's getaddrinfo), A before AAAA.
//! - Redirects: at most 10, only to http/https on ports 80, 443 or the configured http-01 port
//!   (anything else could aim the CA at internal services, RFC 8555 §10.2).
//! - At most `MAX_BODY` bytes are read; the body, without trailing whitespace, must equal the key
//!   authorization exactly.
//! - No proxy from the environment, no connection reuse between validations.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use sceau_wire::{Identifier, ProblemType};

use crate::dns::Dns;
use crate::ident::{self, Target};
use crate::{BuildError, ValidationError, ValidatorConfig, error::snippet, tlsalpn01};

/// Largest body we read; a key authorization is about 87 bytes.
pub(crate) const MAX_BODY: usize = 8 * 1024;
const MAX_REDIRECTS: usize = 10;

pub(crate) fn client(cfg: &ValidatorConfig, dns: Dns) -> Result<reqwest::Client, BuildError> {
    let http01_port = cfg.http01_port;
    let policy = Policy::custom(move |attempt| {
        // `previous` holds the original URL plus every redirect already followed.
        if attempt.previous().len() > MAX_REDIRECTS {
            let msg = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(RedirectRefused(msg));
        }
        let url = attempt.url();
        if !matches!(url.scheme(), "http" | "https") {
            let msg = format!("redirect to {url} refused: only http and https are followed");
            return attempt.error(RedirectRefused(msg));
        }
        match url.port_or_known_default() {
            Some(p) if p == 80 || p == 443 || p == http01_port => attempt.follow(),
            p => {
                let p = p.map_or_else(|| "none".to_owned(), |p| p.to_string());
                let msg =
                    format!("redirect to {url} refused: port {p} is not 80, 443 or {http01_port}");
                attempt.error(RedirectRefused(msg))
            }
        }
    });
    let mut tls = tlsalpn01::accept_any_cert_config()?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(policy)
        .dns_resolver(Arc::new(ValidationResolve(dns)))
        .tls_backend_preconfigured(tls)
        .http1_only()
        .pool_max_idle_per_host(0)
        .connect_timeout(cfg.timeout)
        .timeout(cfg.timeout)
        .user_agent(concat!("sceau-validate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

pub(crate) async fn validate(
    http: &reqwest::Client,
    cfg: &ValidatorConfig,
    id: &Identifier,
    token: &str,
    key_authorization: &str,
) -> Result<(), ValidationError> {
    let target = ident::connect_target(id, "http-01")?;
    // RFC 8555 §8.3: the token is base64url; anything else could escape the path.
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ValidationError::new(
            ProblemType::Malformed,
            format!(
                "http-01 for {}: token {:?} is not base64url",
                id.value,
                snippet(token)
            ),
        ));
    }
    // RFC 8738 §7: an IP identifier is the URL host (IPv6 in brackets), hence the Host header.
    let host = match &target {
        Target::Domain(d) => d.clone(),
        Target::Ip(IpAddr::V4(v4)) => v4.to_string(),
        Target::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
    };
    let url = format!(
        "http://{host}:{}/.well-known/acme-challenge/{token}",
        cfg.http01_port
    );
    let what = format!("http-01 for {}", id.value);

    let mut resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| request_error(&what, &url, &e))?;
    let final_url = resp.url().to_string();
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(ValidationError::new(
            ProblemType::Unauthorized,
            format!(
                "{what}: GET {final_url} answered HTTP {status}, expected 200 with the key authorization"
            ),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| request_error(&what, &final_url, &e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ValidationError::new(
                ProblemType::IncorrectResponse,
                format!("{what}: GET {final_url} returned more than {MAX_BODY} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    // RFC 8555 §8.3: "ignore whitespace characters at the end of the body".
    if text.trim_end() == key_authorization {
        return Ok(());
    }
    Err(ValidationError::new(
        ProblemType::IncorrectResponse,
        format!(
            "{what}: GET {final_url} returned {:?}, not the key authorization",
            snippet(text.trim_end())
        ),
    ))
}

/// Resolves names for reqwest through the validation DNS.
struct ValidationResolve(Dns);

impl Resolve for ValidationResolve {
    fn resolve(&self, name: Name) -> Resolving {
        let dns = self.0.clone();
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            match dns.ips(&host).await {
                // Port 0 is replaced by the URL's port.
                Ok(ips) => Ok(Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0))) as Addrs),
                Err(e) => Err(Box::new(DnsFailure(e)) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DnsFailure(ValidationError);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RedirectRefused(String);

fn request_error(what: &str, url: &str, e: &reqwest::Error) -> ValidationError {
    let mut root: &dyn StdError = e;
    let mut src: Option<&dyn StdError> = Some(e);
    while let Some(s) = src {
        if let Some(DnsFailure(v)) = s.downcast_ref::<DnsFailure>() {
            return ValidationError::new(v.kind, format!("{what}: {}", v.detail));
        }
        if let Some(RedirectRefused(msg)) = s.downcast_ref::<RedirectRefused>() {
            return ValidationError::new(
                ProblemType::Connection,
                format!("{what}: GET {url}: {msg}"),
            );
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            return ValidationError::new(ProblemType::Tls, format!("{what}: fetching {url}: {s}"));
        }
        root = s;
        src = s.source();
    }
    let why = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        root.to_string()
    };
    let at = e.url().map_or(url.to_owned(), |u| u.to_string());
    ValidationError::new(
        ProblemType::Connection,
        format!("{what}: fetching {at}: {why}"),
    )
}
