//! http-01 (RFC 8555 §8.3; RFC 8738 §7 for IP identifiers).
//!
//! Invariants:
//! - Host names are resolved only through [`Dns`] (never the system's getaddrinfo), A before AAAA.
//! - Every connection goes to an address the [`AddressPolicy`] allows: a literal IP host (an IP
//!   identifier, or a redirect's URL as the `url` crate normalised it, so `0x7f000001` is
//!   127.0.0.1) is checked before the request or in the redirect policy; a name is checked in
//!   the resolver, which hands reqwest only allowed addresses. Those two paths are the only ways
//!   hyper picks an address, so nothing else reaches a socket (RFC 8555 §10.4).
//! - Redirects (RFC 8555 §8.3 says to follow them; §10.2 and §10.4 say where they lead): at
//!   most 10, only to http/https on port 80 (§8.3), 443 (https) or the configured http-01 port.
//! - At most `MAX_BODY` bytes are read; the body, without trailing whitespace, must equal the key
//!   authorization exactly.
//! - Error details quote nothing the target sent: no body, and of a redirect's URL only scheme,
//!   host and port (the path and query are the target's text).
//! - No proxy from the environment, no connection reuse between validations.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use sceau_wire::{Identifier, ProblemType};

use crate::dns::Dns;
use crate::ident::{self, Target};
use crate::{
    AddressPolicy, AddressRefused, BuildError, ValidationError, ValidatorConfig, error::snippet,
    tlsalpn01,
};

/// Largest body we read; a key authorization is about 87 bytes.
pub(crate) const MAX_BODY: usize = 8 * 1024;
const MAX_REDIRECTS: usize = 10;

pub(crate) fn client(cfg: &ValidatorConfig, dns: Dns) -> Result<reqwest::Client, BuildError> {
    let http01_port = cfg.http01_port;
    let addresses = Arc::new(cfg.address_policy.clone());
    let redirect_addresses = addresses.clone();
    let policy = Policy::custom(move |attempt| {
        // `previous` holds the original URL plus every redirect already followed.
        if attempt.previous().len() > MAX_REDIRECTS {
            let msg = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(RedirectRefused(msg));
        }
        let url = attempt.url();
        let to = shown(url);
        if !matches!(url.scheme(), "http" | "https") {
            let msg = format!("redirect to {to} refused: only http and https are followed");
            return attempt.error(RedirectRefused(msg));
        }
        // RFC 8555 §8.3 names port 80; 443 is https's, and tests use a high http-01 port.
        match url.port_or_known_default() {
            Some(p) if p == 80 || p == 443 || p == http01_port => {}
            p => {
                let p = p.map_or_else(|| "none".to_owned(), |p| p.to_string());
                let msg =
                    format!("redirect to {to} refused: port {p} is not 80, 443 or {http01_port}");
                return attempt.error(RedirectRefused(msg));
            }
        }
        // hyper connects to a literal IP host without asking the resolver: check it here.
        if let Some(ip) = literal_ip(url)
            && let Err(refused) = redirect_addresses.check(ip)
        {
            let msg = format!("redirect to {to} refused: {refused}");
            return attempt.error(RedirectRefused(msg));
        }
        attempt.follow()
    });
    let mut tls = tlsalpn01::accept_any_cert_config()?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(policy)
        .dns_resolver(Arc::new(ValidationResolve { dns, addresses }))
        .tls_backend_preconfigured(tls)
        .http1_only()
        .pool_max_idle_per_host(0)
        .connect_timeout(cfg.timeout)
        .timeout(cfg.timeout)
        .user_agent(concat!("sceau-validate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// A URL the target chose, for a detail line: scheme, host and port, without userinfo, path or
/// query (they are the target's text, and an internal server's redirect may carry secrets).
fn shown(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        (None, _) => format!("a {}: URL", url.scheme()),
    }
}

/// `at` as a detail shows it: in full when it is the URL we built, else as [`shown`].
fn described(first: &str, at: &Url) -> String {
    if at.as_str() == first {
        first.to_owned()
    } else {
        format!("{first} (redirected to {})", shown(at))
    }
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
    if let Target::Ip(ip) = &target {
        cfg.address_policy
            .check(*ip)
            .map_err(|r| refused(&what, &url, &r))?;
    }

    let mut resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| request_error(&what, &url, &e))?;
    let final_url = described(&url, resp.url());
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
        .map_err(|e| request_error(&what, &url, &e))?
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
            "{what}: GET {final_url} returned a body of {} bytes that is not the key authorization",
            body.len()
        ),
    ))
}

fn refused(what: &str, url: &str, r: &AddressRefused) -> ValidationError {
    ValidationError::new(ProblemType::Connection, format!("{what}: GET {url}: {r}"))
}

/// Resolves names for reqwest through the validation DNS, keeping only the addresses the
/// policy allows.
struct ValidationResolve {
    dns: Dns,
    addresses: Arc<AddressPolicy>,
}

impl Resolve for ValidationResolve {
    fn resolve(&self, name: Name) -> Resolving {
        let dns = self.dns.clone();
        let addresses = self.addresses.clone();
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let ips = dns.ips(&host).await;
            match ips.and_then(|ips| addresses.connectable(&host, ips)) {
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
            let at = e
                .url()
                .map_or_else(|| url.to_owned(), |u| described(url, u));
            return ValidationError::new(v.kind, format!("{what}: GET {at}: {}", v.detail));
        }
        if let Some(RedirectRefused(msg)) = s.downcast_ref::<RedirectRefused>() {
            return ValidationError::new(
                ProblemType::Connection,
                format!("{what}: GET {url}: {msg}"),
            );
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            let at = e
                .url()
                .map_or_else(|| url.to_owned(), |u| described(url, u));
            return ValidationError::new(ProblemType::Tls, format!("{what}: fetching {at}: {s}"));
        }
        root = s;
        src = s.source();
    }
    let why = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        root.to_string()
    };
    let at = e
        .url()
        .map_or_else(|| url.to_owned(), |u| described(url, u));
    ValidationError::new(
        ProblemType::Connection,
        format!("{what}: fetching {at}: {why}"),
    )
}
