//! Renewal information (RFC 9773 §4).

use sceau_store::now;
use sceau_wire::{RenewalInfo, SuggestedWindow};

use crate::render::ts;
use crate::{Acme, AcmeError, AcmeResult, Reply};

impl Acme {
    pub async fn renewal_info(&self, cert_id: &str) -> AcmeResult<Reply> {
        if sceau_wire::types::parse_ari_cert_id(cert_id).is_none() {
            return Err(AcmeError::malformed(
                "not a certificate identifier (RFC 9773 §4.1)",
            ));
        }
        let cert = super::found(self.store.cert_by_ari_id(cert_id).await, "certificate")?;
        let (start, end) = if cert.revoked_at.is_some() {
            // Revoked: renew now (§4.2, a window in the past).
            let n = now();
            (n - 3600, n - 60)
        } else {
            // R84: renew at two thirds of the lifetime; the window spans a twelfth of it.
            let life = cert.not_after - cert.not_before;
            let start = cert.not_before + life * 2 / 3;
            (start, start + life / 12)
        };
        let info = RenewalInfo {
            suggested_window: SuggestedWindow {
                start: ts(start),
                end: ts(end),
            },
            explanation_url: None,
        };
        Ok(Reply::json(200, info).retry_after(6 * 3600))
    }
}
