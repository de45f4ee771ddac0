//! STAR, short-term automatically renewed certificates (RFC 8739): the terms agreed at
//! newOrder (§3.1.1, §3.2), the validity of each certificate of a series (§3.5), the renewal
//! job, the rolling star-certificate resource (§3.3, §3.4) and cancellation (§3.1.2).
//!
//! Invariants:
//! - Every certificate of a series goes through the issuance queue like any other: the renewal
//!   job only hands a due series to it (`Store::enqueue_star_renewal`, a compare-and-swap), on
//!   one instance at a time (a `Scope::OneInstance` job), so a certificate is never issued twice
//!   for one nominal renewal date.
//! - A series reuses the key of its CSR for every certificate (§2.2); the key was fresh when
//!   the order was finalized (R37 is checked there, once for the series).
//! - No certificate of a series has a notAfter after `end-date`; each next one is valid when it
//!   is published, and published by half of the current one's nominal lifetime (§3.3): it is
//!   due at `nrd − adjust`, with `adjust ≥ ⌈2T/3⌉`.
//! - After cancellation nothing more is issued for the order (`Store::cancel_star`), and the
//!   star-certificate resource answers `autoRenewalCanceled`.
//! - A suspended account holds its series (renewals wait, checked again every minute); a
//!   deactivated or revoked account ends it.

use std::sync::Arc;
use std::time::Duration;

use sceau_store::{AccountRecord, AuditEntry, OrderRecord, StarTerms, Store, StoreError, now};
use sceau_wire::{AutoRenewal, AutoRenewalMeta, NewOrder, ProblemType};
use serde_json::json;

use super::found;
use crate::render::ts;
use crate::request::Verified;
use crate::{Acme, AcmeError, AcmeResult, Reply};

/// The terms a server agrees to (RFC 8739 §3.2's `meta.auto-renewal`).
#[derive(Debug, Clone)]
pub struct StarSettings {
    /// The shortest `lifetime` accepted.
    pub min_lifetime: Duration,
    /// The longest span from the start to `end-date`.
    pub max_duration: Duration,
    /// Whether unauthenticated GET of star-certificate URLs may be agreed (§3.4).
    pub allow_certificate_get: bool,
}

impl Default for StarSettings {
    fn default() -> Self {
        StarSettings {
            min_lifetime: Duration::from_secs(3600),
            max_duration: Duration::from_secs(365 * 86400),
            allow_certificate_get: true,
        }
    }
}

impl StarSettings {
    pub fn meta(&self) -> AutoRenewalMeta {
        AutoRenewalMeta {
            min_lifetime: self.min_lifetime.as_secs(),
            max_duration: self.max_duration.as_secs(),
            allow_certificate_get: Some(self.allow_certificate_get),
        }
    }
}

/// The server's padding `f·T` of §3.5 with f = 2/3: each next certificate is valid from
/// `nrd − ⌈2T/3⌉` and published then, which leaves T/6 before half of the current one's nominal
/// lifetime, the latest §3.3 allows.
pub fn server_adjust(lifetime: i64) -> i64 {
    (lifetime * 2 + 2) / 3
}

/// §3.5: `max(min(T, la), f·T)`, the pre-dating of every certificate after the first (and
/// the `lifetime-adjust` the order reflects).
pub fn effective_adjust(lifetime: i64, client_adjust: i64) -> i64 {
    client_adjust.min(lifetime).max(server_adjust(lifetime))
}

/// The nominal renewal date of the certificate an attempt signs: the series' start (or now,
/// when the client gave none) for the first one, else the date the previous one set.
pub fn nominal(terms: &StarTerms, first: bool, now: i64) -> i64 {
    if first {
        terms.start.unwrap_or(now)
    } else {
        terms.next.unwrap_or(now)
    }
}

/// §3.5: notBefore and notAfter of the certificate of nominal date `nrd`. The first one starts
/// at its nominal date (never before `start-date`); every later one is pre-dated by `adjust`.
pub fn validity(terms: &StarTerms, nrd: i64, first: bool) -> (i64, i64) {
    let not_after = (nrd + terms.lifetime).min(terms.end);
    let not_before = if first { nrd } else { nrd - terms.adjust };
    (not_before, not_after)
}

/// After the certificate of nominal date `nrd`: the next one's nominal date and when it is due
/// (valid from then), or `(None, None)` when this one reaches `end-date`.
pub fn after(terms: &StarTerms, nrd: i64) -> (Option<i64>, Option<i64>) {
    let next = nrd + terms.lifetime;
    if next >= terms.end {
        (None, None)
    } else {
        (Some(next), Some(next - terms.adjust))
    }
}

/// The `auto-renewal` object of an order, as agreed.
pub fn render_terms(t: &StarTerms) -> AutoRenewal {
    AutoRenewal {
        start_date: t.start.map(ts),
        end_date: ts(t.end),
        lifetime: t.lifetime as u64,
        lifetime_adjust: Some(t.adjust as u64),
        allow_certificate_get: Some(t.allow_get),
    }
}

/// Whether a STAR order has its first certificate and still publishes (it may be renewing:
/// `processing` inside, `valid` on the wire, §3.1.1).
pub fn publishing(o: &OrderRecord) -> bool {
    o.star.is_some() && o.cert_id.is_some() && matches!(o.status.as_str(), "valid" | "processing")
}

/// An HTTP-date (RFC 9110 §5.6.7, IMF-fixdate) for Cert-Not-Before and Cert-Not-After.
pub fn http_date(secs: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    ts(secs).format(FORMAT).unwrap_or_default()
}

/// Cancels the series of `order` (RFC 8739 §3.1.2) for `by` (`account:<id>`, `admin:<name>`,
/// `server: …`), audited as `star.canceled`. `autoRenewalCancellationInvalid` when it is not a
/// STAR order that publishes.
pub async fn cancel_star_series(
    store: &Store,
    order: &OrderRecord,
    by: &str,
    client_ip: Option<&str>,
) -> AcmeResult<()> {
    if order.star.is_none() {
        return Err(AcmeError::new(
            ProblemType::AutoRenewalCancellationInvalid,
            "this order is not a STAR order: only an auto-renewal order can be canceled",
        ));
    }
    if !publishing(order) {
        let status = if order.status == "processing" {
            "processing"
        } else {
            order.status.as_str()
        };
        return Err(AcmeError::new(
            ProblemType::AutoRenewalCancellationInvalid,
            format!("the order is {status}, not valid: only a valid STAR order can be canceled"),
        ));
    }
    let audit = AuditEntry {
        event: "star.canceled",
        account_id: Some(&order.account_id),
        client_ip,
        detail: json!({"order": order.id, "by": by, "identifiers": order.identifiers}),
    };
    match store.cancel_star(&order.id, now(), &audit).await {
        Ok(()) => {
            audit.log();
            Ok(())
        }
        Err(StoreError::Conflict(_)) => Err(AcmeError::new(
            ProblemType::AutoRenewalCancellationInvalid,
            "the order is no longer valid: it was canceled or its series ended meanwhile",
        )),
        Err(e) => Err(e.into()),
    }
}

impl Acme {
    /// newOrder's `auto-renewal` (§3.1.1) against this server's terms (§3.2): the terms to
    /// store, `None` for an ordinary order.
    pub(super) fn check_auto_renewal(
        &self,
        p: &NewOrder,
        now: i64,
    ) -> AcmeResult<Option<StarTerms>> {
        let Some(ar) = &p.auto_renewal else {
            return Ok(None);
        };
        let Some(settings) = &self.config.star else {
            return Err(AcmeError::malformed(
                "this server does not issue STAR certificates (its directory has no meta.auto-renewal)",
            ));
        };
        if p.not_before.is_some() || p.not_after.is_some() {
            return Err(AcmeError::malformed(
                "notBefore and notAfter are not allowed in a STAR order: auto-renewal sets each certificate's validity (RFC 8739 §3.1.1)",
            ));
        }
        if p.replaces.is_some() {
            return Err(AcmeError::malformed(
                "\"replaces\" is not used with auto-renewal: a STAR series renews itself",
            ));
        }
        let max_validity = self.config.cert_validity.as_secs() as i64;
        let min = settings.min_lifetime.as_secs() as i64;
        let lifetime = i64::try_from(ar.lifetime)
            .ok()
            .filter(|l| *l <= max_validity)
            .ok_or_else(|| {
                AcmeError::malformed(format!(
                    "auto-renewal lifetime {} s is over this server's maximum certificate validity of {max_validity} s (agency guide R39)",
                    ar.lifetime
                ))
            })?;
        if lifetime < min.max(1) {
            return Err(AcmeError::malformed(format!(
                "auto-renewal lifetime {lifetime} s is under this server's min-lifetime of {min} s (see the directory's meta.auto-renewal)"
            )));
        }
        let start = ar.start_date.map(|t| t.unix_timestamp());
        if let Some(s) = start {
            let latest = now + self.config.order_lifetime.as_secs() as i64;
            if s < now - 3600 || s > latest {
                return Err(AcmeError::malformed(
                    "auto-renewal start-date must be between an hour ago and the order's expiry",
                ));
            }
        }
        let end = ar.end_date.unix_timestamp();
        let from = start.unwrap_or(now);
        if end <= from {
            return Err(AcmeError::malformed(if start.is_some() {
                "auto-renewal end-date must be after start-date"
            } else {
                "auto-renewal end-date must be in the future"
            }));
        }
        let max_duration = settings.max_duration.as_secs() as i64;
        if end - from > max_duration {
            return Err(AcmeError::malformed(format!(
                "auto-renewal covers {} s from its start to end-date, over this server's max-duration of {max_duration} s (see the directory's meta.auto-renewal)",
                end - from
            )));
        }
        if end - from < min {
            return Err(AcmeError::malformed(format!(
                "auto-renewal end-date leaves {} s after the start, under this server's min-lifetime of {min} s",
                end - from
            )));
        }
        let client_adjust = i64::try_from(ar.lifetime_adjust.unwrap_or(0)).unwrap_or(i64::MAX);
        let adjust = effective_adjust(lifetime, client_adjust);
        if lifetime + adjust > max_validity {
            return Err(AcmeError::malformed(format!(
                "auto-renewal lifetime {lifetime} s with the pre-dating of {adjust} s every renewed certificate gets (RFC 8739 §3.5) exceeds this server's maximum certificate validity of {max_validity} s (agency guide R39)"
            )));
        }
        Ok(Some(StarTerms {
            start,
            end,
            lifetime,
            adjust,
            // §3.4: agreed only when both sides want it; the order reflects the outcome.
            allow_get: ar.allow_certificate_get == Some(true) && settings.allow_certificate_get,
            next: None,
            due: None,
        }))
    }

    /// POST `{"status": "canceled"}` to an order (§3.1.2).
    pub(super) async fn cancel_series(
        &self,
        req: &Verified,
        id: &str,
        ip: Option<&str>,
    ) -> AcmeResult<Reply> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Change {
            status: String,
        }
        let account = req.account()?;
        let order = self.owned_order(account, id).await?;
        let change: Change = req.payload()?;
        if change.status != "canceled" {
            return Err(AcmeError::malformed(
                "an order takes one change, {\"status\": \"canceled\"}, for a STAR order (RFC 8739 §3.1.2); fetch it with POST-as-GET",
            ));
        }
        cancel_star_series(&self.store, &order, &format!("account:{}", account.id), ip).await?;
        let order = self.store.order_by_id(id).await?;
        Ok(self.order_reply(&order))
    }

    /// The star-certificate resource (§3.3): the series' newest certificate with its chain and
    /// Cert-Not-Before / Cert-Not-After. `account`: the requester of a POST-as-GET, which must
    /// own the order; `None` for an unauthenticated GET, served only where agreed (§3.4).
    pub async fn star_certificate(
        &self,
        order_id: &str,
        account: Option<&AccountRecord>,
    ) -> AcmeResult<Reply> {
        const WHAT: &str = "STAR certificate";
        let order = match account {
            Some(a) => self
                .owned_order(a, order_id)
                .await
                .map_err(|_| AcmeError::not_found(WHAT))?,
            None => found(self.store.order_by_id(order_id).await, WHAT)?,
        };
        let Some(terms) = &order.star else {
            return Err(AcmeError::not_found(WHAT));
        };
        if account.is_none() && !terms.allow_get {
            return Err(AcmeError::unauthorized(
                "unauthenticated GET of this STAR certificate was not agreed at newOrder (allow-certificate-get, RFC 8739 §3.4): fetch it with POST-as-GET",
            ));
        }
        if order.status == "canceled" {
            return Err(AcmeError::new(
                ProblemType::AutoRenewalCanceled,
                "this STAR series was canceled: no certificate is published for it any more",
            ));
        }
        let Some(cert_id) = &order.cert_id else {
            return Err(AcmeError::new(
                ProblemType::OrderNotReady,
                "the series' first certificate is not issued yet: finalize the order",
            ));
        };
        let cert = self.store.cert_by_id(cert_id).await?;
        let now = now();
        if now >= terms.end || (terms.next.is_none() && cert.not_after <= now) {
            return Err(AcmeError::new(
                ProblemType::AutoRenewalExpired,
                format!(
                    "this STAR series ended: its last certificate expired at {}",
                    http_date(cert.not_after.min(terms.end))
                ),
            ));
        }
        let (nb, na) = (cert.not_before, cert.not_after);
        let mut reply = self.cert_reply(cert, 0)?;
        reply.headers.extend([
            ("cert-not-before", http_date(nb)),
            ("cert-not-after", http_date(na)),
        ]);
        Ok(reply)
    }

    /// One run of the renewal job: hands every series whose next certificate is due to the
    /// issuance queue; returns how many.
    pub async fn renew_due_series(self: &Arc<Self>) -> AcmeResult<usize> {
        let now = now();
        let due = self.store.due_star_renewals(now, 500).await?;
        let mut queued = 0;
        for order in due {
            let Some(at) = order.star.as_ref().and_then(|t| t.due) else {
                continue;
            };
            let end = order.star.as_ref().map_or(now, |t| t.end);
            let account = self.store.account_by_id(&order.account_id).await?;
            match account.status.as_str() {
                "valid" => {}
                "suspended" => {
                    // Held, not ended: asked again in a minute.
                    match self
                        .store
                        .postpone_star_renewal(&order.id, at, now + 60)
                        .await
                    {
                        Ok(()) | Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    continue;
                }
                other => {
                    let by = format!("server: the account is {other}");
                    if let Err(e) = cancel_star_series(&self.store, &order, &by, None).await {
                        tracing::warn!(order = %order.id, error = %e.detail, "could not end the series of a closed account");
                    }
                    continue;
                }
            }
            match self.store.enqueue_star_renewal(&order.id, at, end).await {
                Ok(()) => queued += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if queued > 0 {
            self.queue.wake.notify_one();
        }
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(start: Option<i64>, end: i64, lifetime: i64, la: i64) -> StarTerms {
        StarTerms {
            start,
            end,
            lifetime,
            adjust: effective_adjust(lifetime, la),
            allow_get: false,
            next: None,
            due: None,
        }
    }

    /// The series of RFC 8739 §3.5.1 (start 10 Jan, end 20 Jan, 4-day lifetime, 3-day
    /// lifetime-adjust): the same notAfter dates; our f = 2/3 pre-dates by 3 days too
    /// (max(3 d, ⌈8/3 d⌉)), so the notBefore dates are the RFC's.
    #[test]
    fn the_rfc_example_series() {
        let day = 86400;
        let t0 = 1_547_078_400; // 2019-01-10T00:00:00Z
        let mut t = terms(Some(t0), t0 + 10 * day, 4 * day, 3 * day);
        assert_eq!(t.adjust, 3 * day);
        let mut nrd = nominal(&t, true, t0 - 100);
        let mut got = vec![validity(&t, nrd, true)];
        loop {
            let (next, due) = after(&t, nrd);
            let Some(next) = next else { break };
            assert_eq!(due, Some(next - 3 * day));
            t.next = next.into();
            nrd = nominal(&t, false, 0);
            got.push(validity(&t, nrd, false));
        }
        assert_eq!(
            got,
            vec![
                (t0, t0 + 4 * day),
                (t0 + day, t0 + 8 * day),
                (t0 + 5 * day, t0 + 10 * day),
            ]
        );
    }

    #[test]
    fn each_next_certificate_is_published_before_half_of_the_current_ones_lifetime() {
        for lifetime in [10, 60, 3600, 86400, 7 * 86400] {
            let t = terms(None, i64::MAX / 2, lifetime, 0);
            let nrd = 1_000_000;
            let (next, due) = after(&t, nrd);
            let (next, due) = (next.unwrap(), due.unwrap());
            // Valid at publication (due is its notBefore) and no later than halfway.
            assert_eq!(validity(&t, next, false).0, due);
            assert!(due <= nrd + lifetime / 2, "{lifetime}: due {due}");
            assert!(due > nrd, "{lifetime}: due {due} not after the current nrd");
        }
    }

    #[test]
    fn the_client_adjust_is_capped_by_the_lifetime() {
        assert_eq!(effective_adjust(3600, 10 * 3600), 3600);
        assert_eq!(effective_adjust(3600, 0), 2400);
        assert_eq!(effective_adjust(10, 0), 7);
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(http_date(1_570_060_800), "Thu, 03 Oct 2019 00:00:00 GMT");
    }
}
