//! Stored records to wire objects. Expiry is applied here: a pending or valid object whose
//! time has passed is shown as `expired` (authorizations) or `invalid` (orders), whatever the
//! row still says, so clients never act on stale state.

use sceau_store::{AccountRecord, AuthzRecord, ChallengeRecord, OrderRecord};
use sceau_wire::{
    Account, AccountStatus, Authorization, AuthorizationStatus, Challenge, ChallengeStatus, Order,
    OrderStatus,
};
use time::OffsetDateTime;

use crate::urls::Urls;

pub fn ts(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn account(urls: &Urls, a: &AccountRecord) -> Account {
    Account {
        status: match a.status.as_str() {
            "deactivated" => AccountStatus::Deactivated,
            "revoked" => AccountStatus::Revoked,
            // A suspended account (agency guide R15) is still "valid" in RFC 8555 terms; its
            // requests are refused with a detail that says why.
            _ => AccountStatus::Valid,
        },
        contact: a.contact.clone(),
        terms_of_service_agreed: Some(a.tos_agreed),
        external_account_binding: None,
        orders: Some(urls.orders(&a.id)),
    }
}

pub fn authz_status(a: &AuthzRecord, now: i64) -> AuthorizationStatus {
    let expired = a.expires <= now;
    match a.status.as_str() {
        "pending" | "valid" if expired => AuthorizationStatus::Expired,
        "pending" => AuthorizationStatus::Pending,
        "valid" => AuthorizationStatus::Valid,
        "invalid" => AuthorizationStatus::Invalid,
        "deactivated" => AuthorizationStatus::Deactivated,
        "revoked" => AuthorizationStatus::Revoked,
        _ => AuthorizationStatus::Expired,
    }
}

pub fn challenge(urls: &Urls, token: &str, c: &ChallengeRecord) -> Challenge {
    Challenge {
        kind: c.kind.clone(),
        url: urls.challenge(&c.id),
        status: match c.status.as_str() {
            "processing" => ChallengeStatus::Processing,
            "valid" => ChallengeStatus::Valid,
            "invalid" => ChallengeStatus::Invalid,
            _ => ChallengeStatus::Pending,
        },
        token: Some(token.to_owned()),
        validated: c.validated.map(ts),
        error: c.error.clone(),
    }
}

pub fn authorization(urls: &Urls, a: &AuthzRecord, now: i64) -> Authorization {
    let status = authz_status(a, now);
    // RFC 8555 §7.1.4: once valid, only the challenge that succeeded need be listed.
    let challenges = a
        .challenges
        .iter()
        .filter(|c| status != AuthorizationStatus::Valid || c.status == "valid")
        .map(|c| challenge(urls, &a.token, c))
        .collect();
    Authorization {
        identifier: a.identifier.clone(),
        status,
        expires: Some(ts(a.expires)),
        challenges,
        wildcard: a.wildcard.then_some(true),
    }
}

pub fn order_status(status: &str) -> OrderStatus {
    match status {
        "pending" => OrderStatus::Pending,
        "ready" => OrderStatus::Ready,
        "processing" => OrderStatus::Processing,
        "valid" => OrderStatus::Valid,
        _ => OrderStatus::Invalid,
    }
}

pub fn order(urls: &Urls, o: &OrderRecord) -> Order {
    // RFC 8739 §3.1.1: a STAR order is `valid` while it issues, renewals included (which the
    // queue runs as `processing`), and lasts until its end-date.
    let publishing = crate::services::star::publishing(o);
    let status = match o.status.as_str() {
        "canceled" => OrderStatus::Canceled,
        _ if publishing => OrderStatus::Valid,
        s => order_status(s),
    };
    let expires = match &o.star {
        Some(t) if publishing => t.end,
        _ => o.expires,
    };
    Order {
        status,
        expires: Some(ts(expires)),
        identifiers: o.identifiers.clone(),
        not_before: o.not_before.map(ts),
        not_after: o.not_after.map(ts),
        error: o.error.clone(),
        authorizations: o.authz_ids.iter().map(|id| urls.authz(id)).collect(),
        finalize: urls.finalize(&o.id),
        certificate: match &o.star {
            None => o.cert_id.as_ref().map(|id| urls.certificate(id)),
            Some(_) => None,
        },
        auto_renewal: o.star.as_ref().map(crate::services::star::render_terms),
        star_certificate: o
            .star
            .as_ref()
            .and(o.cert_id.as_ref())
            .map(|_| urls.star_certificate(&o.id)),
        replaces: o.replaces.clone(),
        profile: o.profile.clone(),
    }
}
