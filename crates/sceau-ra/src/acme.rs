//! The upstream ACME CA (RFC 8555): Sceau is an ACME client of another CA, through
//! `sceau-client`, with external account binding (RFC 8555 §7.3.4) when the upstream asks.
//!
//! The upstream's challenges are either `trusted` (the upstream pre-authorizes the RA's
//! account: its authorizations are valid already, or it accepts a challenge without checking)
//! or answered with dns-01 through RFC 2136 dynamic update to a zone the RA controls.
//!
//! Invariants:
//! - The account key is the RA's own (P-256, created 0600 at first use when its file is
//!   absent); the EAB MAC key is read once, used for the registration and never logged.
//! - The upstream is reached lazily: an upstream down at start-up delays issuance (retried by
//!   the queue), it does not stop the server.
//! - Transport faults, timeouts, 5xx answers and `rateLimited` / `serverInternal` problems are
//!   transient; any other problem is the upstream's refusal and ends the request.
//! - Once the upstream order exists, a transient end of the attempt hands its URL back to the
//!   queue as a ticket ([`CaError::Pending`]); the next attempt continues that order (finalize
//!   if ready, wait while processing, download once valid) and orders afresh only when it
//!   cannot (gone, other names, authorizations not valid), so one request never makes the
//!   upstream issue twice.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sceau_ca::CaError;
use sceau_client::account::{Account, Eab, NewAccountOptions};
use sceau_client::order::{OrderHandle, RevokeWith};
use sceau_client::{AcmeClient, Error, Event, KeySource, Method, Plan};
use sceau_wire::{AccountKey, Identifier, KeyKind, OrderStatus, ProblemType};
use serde::Deserialize;

use crate::config::{ConfigError, read_secret_file};

/// How the upstream's challenges are met.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Challenges {
    /// The upstream trusts the RA's account (pre-authorized): nothing is presented.
    #[default]
    Trusted,
    /// dns-01 through RFC 2136 updates to `dns_server`.
    #[serde(rename = "dns-01")]
    Dns01,
}

/// `[ra.acme]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AcmeUpstream {
    /// The upstream's directory URL.
    pub directory: String,
    /// PEM roots for the upstream's HTTPS [default: the platform's].
    pub tls_roots: Option<PathBuf>,
    /// The RA's account key (PKCS#8 PEM, 0600), created when absent.
    pub account_key_file: PathBuf,
    /// External account binding: the key identifier...
    pub eab_kid: Option<String>,
    /// ...and the file holding its MAC key (base64url, 0600).
    pub eab_hmac_file: Option<PathBuf>,
    #[serde(default)]
    pub contact: Vec<String>,
    #[serde(default)]
    pub challenges: Challenges,
    /// dns-01: the primary server that takes RFC 2136 updates for the RA's zone.
    pub dns_server: Option<SocketAddr>,
    /// dns-01: the TSIG key file of those updates.
    pub tsig_key_file: Option<PathBuf>,
    /// dns-01: how long to wait for a record to be visible [default: 60].
    pub propagation_timeout_secs: Option<u64>,
    /// The upstream's certificate profile to ask for (draft-ietf-acme-profiles).
    pub profile: Option<String>,
    /// Conversations with the upstream at once [default: 8]; Pebble 2.4 needs 1 (it deadlocks
    /// when a newOrder and an authorization fetch overlap).
    pub concurrency: Option<usize>,
}

impl AcmeUpstream {
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.directory.starts_with("https://") && !self.directory.starts_with("http://") {
            return Err(ConfigError("acme.directory must be an https:// URL".into()));
        }
        if self.eab_kid.is_some() != self.eab_hmac_file.is_some() {
            return Err(ConfigError(
                "acme needs both eab_kid and eab_hmac_file, or neither".into(),
            ));
        }
        if self.concurrency.is_some_and(|n| !(1..=256).contains(&n)) {
            return Err(ConfigError("acme.concurrency is between 1 and 256".into()));
        }
        if self.challenges == Challenges::Dns01 && self.dns_server.is_none() {
            return Err(ConfigError(
                "acme.challenges = \"dns-01\" needs dns_server (the RFC 2136 primary)".into(),
            ));
        }
        Ok(())
    }
}

pub struct AcmeSigner {
    config: AcmeUpstream,
    http: reqwest::Client,
    key: AccountKey,
    eab: Option<(String, Vec<u8>)>,
    /// The upstream's directory and our account there, once reached.
    state: tokio::sync::OnceCell<(AcmeClient, Account)>,
    slots: tokio::sync::Semaphore,
}

fn key_of(path: &std::path::Path) -> Result<AccountKey, ConfigError> {
    if path.exists() {
        let pem = read_secret_file(path)?;
        return AccountKey::from_pem(&String::from_utf8_lossy(&pem))
            .map_err(|e| ConfigError(format!("acme.account_key_file {}: {e}", path.display())));
    }
    let key = AccountKey::generate(KeyKind::P256)
        .map_err(|e| ConfigError(format!("account key: {e}")))?;
    sceau_client::files::write_atomic(path, key.to_pem().as_bytes(), 0o600)
        .map_err(|e| ConfigError(format!("acme.account_key_file: {e}")))?;
    Ok(key)
}

/// Tickets of this upstream: `acme:` and the upstream order's URL.
const TICKET_PREFIX: &str = "acme:";

/// How soon the queue asks again about an upstream order still in progress.
const ORDER_RECHECK: Duration = Duration::from_secs(5);

/// A transient failure once the upstream order exists (it is still processing, the upstream
/// stopped answering): the queue keeps the order's URL and continues it, so the upstream
/// issues one certificate for the request, not one per attempt.
fn pending_or(e: CaError, order_url: Option<&str>) -> CaError {
    match (e, order_url) {
        (CaError::Unavailable(detail), Some(url)) => CaError::Pending {
            ticket: format!("{TICKET_PREFIX}{url}"),
            after: ORDER_RECHECK,
            detail: format!("upstream order {url}: {detail}"),
        },
        (e, _) => e,
    }
}

/// Scheme, host and port of `a` and `b` agree (RFC 6454 §4), both being URLs.
fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

enum Resumed {
    /// The chain, or the final word on the request (a refusal, still pending).
    Done(Result<Vec<Vec<u8>>, CaError>),
    /// The order cannot be continued (gone, not for these names, still awaiting its
    /// authorizations): a new order is the way, and it doubles nothing.
    Afresh(String),
}

/// Continues the upstream order at `url` (RFC 8555 §7.4): downloads its certificate once
/// valid, finalizes it if it is ready, waits while it is processing.
async fn resume_order(
    client: &AcmeClient,
    account: &Account,
    url: &str,
    csr_der: &[u8],
    identifiers: &[Identifier],
    deadline: Instant,
) -> Resumed {
    let pending = |e: Error| Resumed::Done(Err(pending_or(upstream_error(e), Some(url))));
    let mut order = match client.get_order(account, url).await {
        Ok((order, _)) => order,
        Err(e) => match upstream_error(e) {
            e @ CaError::Unavailable(_) => return Resumed::Done(Err(pending_or(e, Some(url)))),
            other => return Resumed::Afresh(other.to_string()),
        },
    };
    let theirs: BTreeSet<&Identifier> = order.identifiers.iter().collect();
    if theirs != identifiers.iter().collect() {
        return Resumed::Afresh("the upstream order is for other names".into());
    }
    match order.status {
        OrderStatus::Pending => {
            return Resumed::Afresh("its authorizations are not valid yet".into());
        }
        OrderStatus::Ready => {
            let handle = OrderHandle {
                url: url.to_owned(),
                order,
            };
            if let Err(e) = client.finalize(account, &handle, csr_der).await {
                return pending(e);
            }
            order = handle.order;
        }
        _ => {}
    }
    if matches!(order.status, OrderStatus::Ready | OrderStatus::Processing) {
        order = match client.poll_order(account, url, false, deadline).await {
            Ok(o) => o,
            Err(e) => return pending(e),
        };
    }
    let cert_url = match (order.status, &order.certificate) {
        (OrderStatus::Valid, Some(c)) => c.clone(),
        (OrderStatus::Invalid, _) => {
            return Resumed::Done(Err(CaError::Upstream(format!(
                "ACME upstream: the order {url} is invalid: {}",
                order
                    .error
                    .as_ref()
                    .map_or_else(|| "no reason given".to_owned(), |p| p.to_string())
            ))));
        }
        (status, _) => {
            return Resumed::Done(Err(CaError::Upstream(format!(
                "ACME upstream: the order {url} ended {status:?} without a certificate"
            ))));
        }
    };
    match client.download_certificate(account, &cert_url).await {
        Ok(chain) => Resumed::Done(Ok(sceau_wire::key::pem_decode_all(
            &chain.pem,
            "CERTIFICATE",
        ))),
        Err(e) => pending(e),
    }
}

fn upstream_error(e: Error) -> CaError {
    let transient = match &e {
        Error::Transport { .. } | Error::Timeout(_) => true,
        Error::Protocol { status, .. } => *status >= 500,
        Error::Server { problem, .. } => {
            problem.is(ProblemType::RateLimited) || problem.is(ProblemType::ServerInternal)
        }
        _ => false,
    };
    if transient {
        CaError::Unavailable(format!("ACME upstream: {e}"))
    } else {
        CaError::Upstream(format!("ACME upstream: {e}"))
    }
}

impl AcmeSigner {
    pub fn new(config: &AcmeUpstream) -> Result<AcmeSigner, ConfigError> {
        config.check()?;
        let ca_bundle_pem = match &config.tls_roots {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigError(format!("acme.tls_roots: cannot read {}: {e}", p.display()))
            })?),
            None => None,
        };
        let http = sceau_client::http::build_client(&sceau_client::http::HttpOptions {
            ca_bundle_pem,
            timeout: Some(Duration::from_secs(30)),
        })
        .map_err(|e| ConfigError(format!("acme: {e}")))?;
        let eab = match (&config.eab_kid, &config.eab_hmac_file) {
            (Some(kid), Some(file)) => {
                let text = read_secret_file(file)?;
                let mac = Eab::decode_hmac_key(&String::from_utf8_lossy(&text))
                    .map_err(|e| ConfigError(format!("acme.eab_hmac_file: {e}")))?;
                Some((kid.clone(), mac))
            }
            _ => None,
        };
        Ok(AcmeSigner {
            key: key_of(&config.account_key_file)?,
            config: config.clone(),
            http,
            eab,
            state: tokio::sync::OnceCell::new(),
            slots: tokio::sync::Semaphore::new(config.concurrency.unwrap_or(8)),
        })
    }

    async fn state(&self) -> Result<&(AcmeClient, Account), CaError> {
        self.state
            .get_or_try_init(|| async {
                let client = AcmeClient::connect(&self.config.directory, self.http.clone())
                    .await
                    .map_err(upstream_error)?;
                let options = NewAccountOptions {
                    contact: self.config.contact.clone(),
                    terms_of_service_agreed: true,
                    eab: self.eab.as_ref().map(|(kid, mac)| Eab {
                        key_id: kid.clone(),
                        hmac_key: mac.clone(),
                    }),
                };
                let key = AccountKey::from_pkcs8_der(&self.key.to_pkcs8_der())
                    .map_err(|e| CaError::Signing(e.to_string()))?;
                let (account, _) = client
                    .new_account(key, &options)
                    .await
                    .map_err(upstream_error)?;
                tracing::info!(directory = %self.config.directory, account = %account.url, "registered with the upstream ACME CA");
                Ok((client, account))
            })
            .await
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, CaError> {
        self.slots
            .acquire()
            .await
            .map_err(|_| CaError::Unavailable("the ACME upstream is shutting down".into()))
    }

    fn plan(&self) -> Plan {
        Plan::single(match self.config.challenges {
            Challenges::Trusted => Method::Trusted,
            Challenges::Dns01 => Method::Dns01Update {
                server: self.config.dns_server.expect("checked"),
                tsig_key_file: self.config.tsig_key_file.clone(),
                check_servers: Vec::new(),
                propagation_timeout_secs: self.config.propagation_timeout_secs.unwrap_or(60),
            },
        })
    }

    /// Orders, answers the upstream's challenges, finalizes with the client's own CSR; the
    /// chain the upstream returned, leaf first. `resume`: the ticket of an earlier attempt
    /// whose upstream order was still in progress, continued instead of a new order.
    pub async fn issue(
        &self,
        csr_der: &[u8],
        identifiers: &[Identifier],
        timeout: Duration,
        resume: Option<&str>,
    ) -> Result<Vec<Vec<u8>>, CaError> {
        let _slot = self.slot().await?;
        let (client, account) = self.state().await?;
        let deadline = Instant::now() + timeout;
        // The ticket comes back through the front end and its database: only an order on the
        // upstream's own origin is continued, so a ticket cannot send our signed requests
        // elsewhere.
        let resume = resume
            .and_then(|t| t.strip_prefix(TICKET_PREFIX))
            .filter(|url| same_origin(url, &self.config.directory));
        if let Some(url) = resume {
            match resume_order(client, account, url, csr_der, identifiers, deadline).await {
                Resumed::Done(chain) => return chain,
                Resumed::Afresh(why) => {
                    tracing::info!(order = %url, %why, "the upstream order cannot be continued; ordering afresh");
                }
            }
        }
        let request = sceau_client::IssueRequest {
            identifiers: identifiers.to_vec(),
            key: KeySource::Csr(csr_der.to_vec()),
            plan: self.plan(),
            replaces: None,
            profile: self.config.profile.clone(),
            auto_renewal: None,
            timeout,
        };
        // The upstream order's URL, once it exists, for the ticket if the attempt ends early.
        let created = Arc::new(Mutex::new(None::<String>));
        let sink: sceau_client::EventSink = {
            let created = Arc::clone(&created);
            Arc::new(move |e: &Event| {
                if let Event::OrderCreated { order, .. } = e {
                    *created.lock().expect("order url lock") = Some(order.clone());
                }
            })
        };
        match sceau_client::issue(client, account, request, &sink).await {
            Ok(issued) => Ok(sceau_wire::key::pem_decode_all(
                &issued.chain_pem,
                "CERTIFICATE",
            )),
            Err(e) => {
                let url = created.lock().expect("order url lock").take();
                Err(pending_or(upstream_error(e), url.as_deref()))
            }
        }
    }

    pub async fn revoke(&self, cert_der: &[u8], reason: u8) -> Result<(), CaError> {
        let _slot = self.slot().await?;
        let (client, account) = self.state().await?;
        match client
            .revoke(RevokeWith::Account(account), cert_der, Some(reason))
            .await
        {
            Ok(()) => Ok(()),
            // Revoked at the upstream already (by its own operators): recording it is right.
            Err(e)
                if e.problem()
                    .is_some_and(|p| p.is(ProblemType::AlreadyRevoked)) =>
            {
                Ok(())
            }
            Err(e) => Err(upstream_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn only_orders_on_the_upstreams_origin_are_continued() {
        let dir = "https://ca.example:8443/directory";
        assert!(same_origin("https://ca.example:8443/acme/order/1", dir));
        assert!(!same_origin("https://ca.example/acme/order/1", dir));
        assert!(!same_origin("http://ca.example:8443/acme/order/1", dir));
        assert!(!same_origin("https://169.254.169.254:8443/latest", dir));
        assert!(!same_origin("not a url", dir));
        assert!(same_origin(
            "https://ca.example/o",
            "https://ca.example:443/directory"
        ));
    }
}
