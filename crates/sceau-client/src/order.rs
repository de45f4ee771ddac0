//! Orders, authorizations, challenges, finalization, download and revocation (RFC 8555 §7.4–7.6)
//! and renewal information (RFC 9773).
//!
//! Invariant: polling never spins: waits start at 50 ms and double, never exceed the server's
//! `Retry-After` (which is obeyed outright when it is long), and polling stops at the caller's
//! deadline with [`Error::Timeout`] (see [`poll_delay`]).

use std::time::{Duration, Instant};

use sceau_wire::jws::Signer;
use sceau_wire::{
    AccountKey, Authorization, AuthorizationStatus, Challenge, Finalize, NewOrder, Order,
    OrderStatus, RenewalInfo, Revocation, b64, media,
};

use crate::account::Account;
use crate::client::{AcmeClient, Response};
use crate::error::{Error, Result};

/// An order and the URL it lives at.
#[derive(Debug, Clone)]
pub struct OrderHandle {
    pub url: String,
    pub order: Order,
}

/// A downloaded certificate chain (RFC 8555 §7.4.2): leaf first.
#[derive(Debug, Clone)]
pub struct CertificateChain {
    pub pem: String,
    /// URLs of alternate chains the server offered (`Link: rel="alternate"`).
    pub alternates: Vec<String>,
}

/// The PEM chain a certificate URL answered (RFC 8555 §7.4.2: application/pem-certificate-chain,
/// at least one certificate), for plain and STAR (RFC 8739 §3.3) downloads alike.
pub(crate) fn pem_chain(url: &str, resp: &crate::client::Response) -> Result<String> {
    if let Some(ct) = &resp.content_type
        && !ct.starts_with(media::PEM_CHAIN)
    {
        return Err(Error::Protocol {
            url: url.to_owned(),
            status: resp.status,
            reason: format!(
                "certificate has content type {ct}, expected {}",
                media::PEM_CHAIN
            ),
        });
    }
    let pem = resp.text();
    if sceau_wire::key::pem_decode_all(&pem, "CERTIFICATE").is_empty() {
        return Err(Error::Protocol {
            url: url.to_owned(),
            status: resp.status,
            reason: "certificate download contains no PEM certificate".into(),
        });
    }
    Ok(pem)
}

/// Who signs a revocation request (RFC 8555 §7.6).
pub enum RevokeWith<'a> {
    Account(&'a Account),
    CertificateKey(&'a AccountKey),
}

/// The first wait between polls; it doubles after every poll.
const FIRST_WAIT: Duration = Duration::from_millis(50);
/// The longest wait when the server gives no Retry-After.
const MAX_WAIT: Duration = Duration::from_secs(3);
/// A Retry-After at least this long is obeyed from the first poll: the server is asking for
/// real patience (load, rate limits), not giving a generic hint.
const RETRY_AFTER_ALWAYS_OBEYED: Duration = Duration::from_secs(30);

/// How long to wait before poll number `attempt + 1` (RFC 8555 §7.5.1, §7.4: clients should
/// honour Retry-After).
///
/// Servers send one fixed Retry-After whatever the work left (sceau-server: 1 s while
/// processing, 2 s for a pending order), while validation and signing on a private network
/// take milliseconds. So the wait starts at 50 ms and doubles, and a short Retry-After only
/// caps it: 50, 100, 200, 400, 800 ms, then the server's 1 s. That is at most
/// log2(Retry-After / 50 ms) early polls (5 for 1 s, 6 for 2 s) per object, and never a wait
/// longer than the server asked for.
fn poll_delay(retry_after: Option<Duration>, attempt: u32) -> Duration {
    let ramp = FIRST_WAIT.saturating_mul(1 << attempt.min(16));
    match retry_after {
        Some(r) if r >= RETRY_AFTER_ALWAYS_OBEYED => r,
        Some(r) => r.min(ramp),
        None => ramp.min(MAX_WAIT),
    }
}

async fn wait(resp: &Response, attempt: u32, deadline: Instant, what: &str) -> Result<()> {
    let now = Instant::now();
    if now >= deadline {
        return Err(Error::Timeout(format!(
            "{what} did not finish in time; try again later or raise --timeout"
        )));
    }
    let delay = poll_delay(resp.retry_after, attempt).min(deadline - now);
    tokio::time::sleep(delay).await;
    Ok(())
}

impl AcmeClient {
    pub async fn new_order(&self, account: &Account, request: &NewOrder) -> Result<OrderHandle> {
        let url = self.directory().new_order.clone();
        let resp = self
            .post_json(&account.key, account.signer(), &url, request)
            .await?;
        let location = resp.location.clone().ok_or_else(|| Error::Protocol {
            url,
            status: resp.status,
            reason: "newOrder answer has no Location header".into(),
        })?;
        Ok(OrderHandle {
            url: location,
            order: resp.json()?,
        })
    }

    pub async fn get_order(&self, account: &Account, url: &str) -> Result<(Order, Response)> {
        let resp = self.post(&account.key, account.signer(), url, None).await?;
        Ok((resp.json()?, resp))
    }

    pub async fn get_authorization(
        &self,
        account: &Account,
        url: &str,
    ) -> Result<(Authorization, Response)> {
        let resp = self.post(&account.key, account.signer(), url, None).await?;
        Ok((resp.json()?, resp))
    }

    /// Tells the server the challenge is ready (RFC 8555 §7.5.1: payload `{}`).
    pub async fn respond_challenge(&self, account: &Account, url: &str) -> Result<Challenge> {
        self.post(&account.key, account.signer(), url, Some(b"{}"))
            .await?
            .json()
    }

    /// Deactivates an authorization (RFC 8555 §7.5.2), e.g. to give up on a name.
    pub async fn deactivate_authorization(
        &self,
        account: &Account,
        url: &str,
    ) -> Result<Authorization> {
        let body = serde_json::json!({"status": "deactivated"});
        self.post_json(&account.key, account.signer(), url, &body)
            .await?
            .json()
    }

    /// Polls an authorization until it leaves `pending`.
    pub async fn poll_authorization(
        &self,
        account: &Account,
        url: &str,
        deadline: Instant,
    ) -> Result<Authorization> {
        let mut attempt = 0;
        loop {
            let (authz, resp) = self.get_authorization(account, url).await?;
            if authz.status != AuthorizationStatus::Pending {
                return Ok(authz);
            }
            wait(
                &resp,
                attempt,
                deadline,
                &format!("validation of {}", authz.identifier.value),
            )
            .await?;
            attempt += 1;
        }
    }

    /// Sends the CSR (DER) to the finalize URL (RFC 8555 §7.4).
    pub async fn finalize(
        &self,
        account: &Account,
        order: &OrderHandle,
        csr_der: &[u8],
    ) -> Result<Order> {
        let payload = Finalize {
            csr: b64::encode(csr_der),
        };
        self.post_json(
            &account.key,
            account.signer(),
            &order.order.finalize,
            &payload,
        )
        .await?
        .json()
    }

    /// Polls an order until it is `valid` or `invalid` (or `ready`, when `stop_at_ready`).
    pub async fn poll_order(
        &self,
        account: &Account,
        url: &str,
        stop_at_ready: bool,
        deadline: Instant,
    ) -> Result<Order> {
        let mut attempt = 0;
        loop {
            let (order, resp) = self.get_order(account, url).await?;
            match order.status {
                OrderStatus::Valid | OrderStatus::Invalid => return Ok(order),
                OrderStatus::Ready if stop_at_ready => return Ok(order),
                _ => wait(&resp, attempt, deadline, "the order").await?,
            }
            attempt += 1;
        }
    }

    /// Downloads the certificate chain (RFC 8555 §7.4.2, application/pem-certificate-chain).
    pub async fn download_certificate(
        &self,
        account: &Account,
        url: &str,
    ) -> Result<CertificateChain> {
        let resp = self.post(&account.key, account.signer(), url, None).await?;
        let pem = pem_chain(url, &resp)?;
        let alternates = resp
            .links("alternate")
            .into_iter()
            .map(str::to_owned)
            .collect();
        Ok(CertificateChain { pem, alternates })
    }

    /// Revokes a certificate (DER) with an RFC 5280 reason (RFC 8555 §7.6).
    pub async fn revoke(
        &self,
        with: RevokeWith<'_>,
        certificate_der: &[u8],
        reason: Option<u8>,
    ) -> Result<()> {
        let url = self.directory().revoke_cert.clone();
        let payload = Revocation {
            certificate: b64::encode(certificate_der),
            reason,
        };
        match with {
            RevokeWith::Account(a) => self.post_json(&a.key, a.signer(), &url, &payload).await?,
            RevokeWith::CertificateKey(k) => self.post_json(k, Signer::Jwk, &url, &payload).await?,
        };
        Ok(())
    }

    /// Fetches the suggested renewal window (RFC 9773 §4.2); `None` when the server has no
    /// renewalInfo resource. The `Duration` is the server's Retry-After, if any.
    pub async fn renewal_info(
        &self,
        cert_id: &str,
    ) -> Result<Option<(RenewalInfo, Option<Duration>)>> {
        let Some(base) = self.directory().renewal_info.clone() else {
            return Ok(None);
        };
        let url = format!("{}/{cert_id}", base.trim_end_matches('/'));
        let resp = self.get(&url).await?;
        Ok(Some((resp.json()?, resp.retry_after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn polling_starts_fast_and_never_outwaits_retry_after() {
        let waits: Vec<Duration> = (0..8).map(|a| poll_delay(Some(ms(1000)), a)).collect();
        assert_eq!(
            waits,
            [50, 100, 200, 400, 800, 1000, 1000, 1000].map(ms).to_vec()
        );
        assert_eq!(poll_delay(Some(ms(2000)), 5), ms(1600));
        assert_eq!(poll_delay(Some(ms(2000)), 6), ms(2000));
        // A server that wants 0 s gets polled at once.
        assert_eq!(poll_delay(Some(Duration::ZERO), 0), Duration::ZERO);
    }

    #[test]
    fn long_retry_after_is_obeyed_from_the_start() {
        assert_eq!(poll_delay(Some(ms(60_000)), 0), ms(60_000));
    }

    #[test]
    fn without_retry_after_the_backoff_is_bounded() {
        assert_eq!(poll_delay(None, 0), ms(50));
        assert_eq!(poll_delay(None, 3), ms(400));
        assert_eq!(poll_delay(None, 10), MAX_WAIT);
        assert_eq!(poll_delay(None, u32::MAX), MAX_WAIT);
    }
}
