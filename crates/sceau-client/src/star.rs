//! STAR series from the client's side (RFC 8739): fetching the rolling certificate (§3.3, with
//! an unauthenticated GET where it was agreed, §3.4) and canceling a series (§3.1.2).
//!
//! Invariants:
//! - A fetched chain is checked before it is handed back: it parses, and its leaf is the one
//!   Cert-Not-Before / Cert-Not-After describe when the server sends them.
//! - The end of a series (canceled, expired) is an outcome, not an error: callers record it
//!   and stop asking.

use sceau_wire::{Order, ProblemType};

use crate::account::Account;
use crate::certinfo::CertInfo;
use crate::client::AcmeClient;
use crate::error::Result;

/// What the star-certificate URL answered.
#[derive(Debug)]
pub enum StarFetch {
    /// The series' current certificate with its chain.
    Current { chain_pem: String, info: CertInfo },
    /// The series was canceled (`autoRenewalCanceled`): nothing more will be published.
    Canceled(String),
    /// The series reached its end-date (`autoRenewalExpired`).
    Expired(String),
}

impl AcmeClient {
    /// The current certificate of the series at `url`: POST-as-GET with `account`, or an
    /// unauthenticated GET when `account` is `None` (only where the order agreed to it).
    pub async fn fetch_star(&self, account: Option<&Account>, url: &str) -> Result<StarFetch> {
        let resp = match account {
            Some(a) => self.post(&a.key, a.signer(), url, None).await,
            None => self.get(url).await,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return match e.problem() {
                    Some(p) if p.is(ProblemType::AutoRenewalCanceled) => {
                        Ok(StarFetch::Canceled(p.to_string()))
                    }
                    Some(p) if p.is(ProblemType::AutoRenewalExpired) => {
                        Ok(StarFetch::Expired(p.to_string()))
                    }
                    _ => Err(e),
                };
            }
        };
        let chain_pem = crate::order::pem_chain(url, &resp)?;
        let info = CertInfo::from_pem_chain(&chain_pem)?;
        Ok(StarFetch::Current { chain_pem, info })
    }

    /// Cancels the series of the order at `order_url` (§3.1.2); the order as the server now
    /// shows it (`canceled`).
    pub async fn cancel_series(&self, account: &Account, order_url: &str) -> Result<Order> {
        let resp = self
            .post_json(
                &account.key,
                account.signer(),
                order_url,
                &serde_json::json!({"status": "canceled"}),
            )
            .await?;
        resp.json()
    }
}
