//! When to renew: inside the server's ARI window when it has one (RFC 9773 §4.2), otherwise
//! once `fraction` of the lifetime has elapsed (R84: 2/3, day 60 of 90).
//!
//! Invariant: an ARI answer only ever decides inside its window; a malformed or failed ARI
//! answer falls back to the lifetime rule (RFC 9773 §4.3.3), it never blocks renewal.

use sceau_wire::RenewalInfo;
use time::OffsetDateTime;

use crate::certinfo::CertInfo;
use crate::client::AcmeClient;

pub const DEFAULT_FRACTION: f64 = 2.0 / 3.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Due { reason: String },
    NotYet { at: OffsetDateTime, reason: String },
}

impl Decision {
    pub fn is_due(&self) -> bool {
        matches!(self, Decision::Due { .. })
    }
}

pub fn by_lifetime(info: &CertInfo, fraction: f64, now: OffsetDateTime) -> Decision {
    let at = info.lifetime_point(fraction);
    let pct = (fraction * 100.0).round();
    if now >= at {
        Decision::Due {
            reason: format!("{pct}% of the lifetime has elapsed"),
        }
    } else {
        Decision::NotYet {
            at,
            reason: format!("renews at {pct}% of the lifetime"),
        }
    }
}

/// RFC 9773 §4.2: a uniformly random instant in the window; due once it has passed.
pub fn by_window(info: &RenewalInfo, now: OffsetDateTime) -> Decision {
    let w = &info.suggested_window;
    if w.end <= w.start {
        return Decision::Due {
            reason: "the server's renewal window is empty or inverted".into(),
        };
    }
    let span = (w.end - w.start).whole_seconds().max(1) as u64;
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("CSPRNG");
    let at = w.start + time::Duration::seconds((u64::from_le_bytes(b) % span) as i64);
    if now >= at {
        Decision::Due {
            reason: "inside the server's renewal window (ARI)".into(),
        }
    } else {
        Decision::NotYet {
            at,
            reason: "the server's renewal window (ARI) has not opened".into(),
        }
    }
}

/// Asks the server's renewalInfo when it has one, falling back to the lifetime rule. Returns
/// the decision and the ARI identifier to send as `replaces` when the server speaks ARI.
pub async fn decide(
    client: &AcmeClient,
    info: &CertInfo,
    fraction: f64,
    now: OffsetDateTime,
) -> (Decision, Option<String>) {
    if let Some(id) = &info.ari_id
        && client.directory().renewal_info.is_some()
    {
        match client.renewal_info(id).await {
            Ok(Some((ri, _))) => return (by_window(&ri, now), Some(id.clone())),
            Ok(None) => {}
            Err(e) => tracing::warn!("renewalInfo failed, using the lifetime rule: {e}"),
        }
        return (by_lifetime(info, fraction, now), Some(id.clone()));
    }
    (by_lifetime(info, fraction, now), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sceau_wire::SuggestedWindow;
    use time::macros::datetime;

    fn cert(nb: OffsetDateTime, na: OffsetDateTime) -> CertInfo {
        CertInfo {
            der: vec![],
            serial_hex: "01".into(),
            not_before: nb,
            not_after: na,
            names: vec![],
            ari_id: None,
            public_key_der: vec![],
        }
    }

    #[test]
    fn two_thirds_of_ninety_days_is_day_sixty() {
        let c = cert(
            datetime!(2026-01-01 0:00 UTC),
            datetime!(2026-04-01 0:00 UTC),
        );
        assert!(!by_lifetime(&c, DEFAULT_FRACTION, datetime!(2026-03-01 0:00 UTC)).is_due());
        assert!(by_lifetime(&c, DEFAULT_FRACTION, datetime!(2026-03-02 0:01 UTC)).is_due());
        assert!(by_lifetime(&c, 0.0, datetime!(2026-01-01 0:00 UTC)).is_due());
    }

    #[test]
    fn ari_window() {
        let ri = |s, e| RenewalInfo {
            suggested_window: SuggestedWindow { start: s, end: e },
            explanation_url: None,
        };
        let w = ri(
            datetime!(2026-02-01 0:00 UTC),
            datetime!(2026-02-02 0:00 UTC),
        );
        assert!(!by_window(&w, datetime!(2026-01-31 0:00 UTC)).is_due());
        assert!(by_window(&w, datetime!(2026-02-02 0:00 UTC)).is_due());
        let inverted = ri(
            datetime!(2026-02-02 0:00 UTC),
            datetime!(2026-02-01 0:00 UTC),
        );
        assert!(by_window(&inverted, datetime!(2020-01-01 0:00 UTC)).is_due());
    }
}
