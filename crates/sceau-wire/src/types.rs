//! ACME resources and request payloads (RFC 8555 §7.1, §7.3, §7.4, §7.5, §7.6; RFC 9773 §4;
//! draft-ietf-acme-profiles §3). Field names follow the RFC's camelCase on the wire.
//!
//! Timestamps are RFC 3339 (`time::serde::rfc3339`). Unknown fields are ignored on input so
//! that a client keeps working with servers that add extensions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::jwk::Jwk;
use crate::jws::Flattened;
use crate::problem::Problem;

/// The directory object (RFC 8555 §7.1.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_authz: Option<String>,
    pub revoke_cert: String,
    pub key_change: String,
    /// RFC 9773 §4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_info: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caa_identities: Vec<String>,
    #[serde(default)]
    pub external_account_required: bool,
    /// draft-ietf-acme-profiles §3: profile name to human description.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, String>,
    /// RFC 8739 §3.2: present when the server issues STAR certificates.
    #[serde(
        rename = "auto-renewal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_renewal: Option<AutoRenewalMeta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Valid,
    Deactivated,
    Revoked,
}

/// The account object (RFC 8555 §7.1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub status: AccountStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<String>,
}

/// newAccount payload (RFC 8555 §7.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_return_existing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<Flattened>,
}

/// Account update and deactivation payload (RFC 8555 §7.3.2, §7.3.6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
}

/// Inner payload of a keyChange request (RFC 8555 §7.3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyChange {
    pub account: String,
    pub old_key: Jwk,
}

/// An identifier (RFC 8555 §9.7.7): `dns` (RFC 8555) or `ip` (RFC 8738).
///
/// The type stays a string so that an unknown type reaches the server's policy, which answers
/// `unsupportedIdentifier`, rather than failing as malformed JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub const DNS: &'static str = "dns";
    pub const IP: &'static str = "ip";

    pub fn dns(value: impl Into<String>) -> Self {
        Identifier {
            kind: Self::DNS.to_owned(),
            value: value.into(),
        }
    }

    pub fn ip(value: impl Into<String>) -> Self {
        Identifier {
            kind: Self::IP.to_owned(),
            value: value.into(),
        }
    }

    /// `dns` for names, `ip` for anything that parses as an IP address.
    pub fn guess(value: &str) -> Self {
        if value.parse::<std::net::IpAddr>().is_ok() {
            Self::ip(value)
        } else {
            Self::dns(value)
        }
    }

    pub fn is_dns(&self) -> bool {
        self.kind == Self::DNS
    }

    pub fn is_ip(&self) -> bool {
        self.kind == Self::IP
    }

    /// What an authorization for this ordered identifier covers, and whether it is a
    /// wildcard's: RFC 8555 §7.1.3 authorizes `*.example.com` through `example.com` marked
    /// `wildcard`. Anything else (other names, IP addresses) stands for itself.
    pub fn authorization_target(&self) -> (Identifier, bool) {
        match self.value.strip_prefix("*.") {
            Some(base) if self.is_dns() => (Identifier::dns(base), true),
            _ => (self.clone(), false),
        }
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Ready,
    Processing,
    Valid,
    Invalid,
    /// RFC 8739 §3.1.2: an auto-renewal order its client canceled.
    Canceled,
}

/// RFC 8739 §3.1.1: the `auto-renewal` object of a STAR order, in newOrder and in the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoRenewal {
    #[serde(
        rename = "start-date",
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_date: Option<OffsetDateTime>,
    #[serde(rename = "end-date", with = "time::serde::rfc3339")]
    pub end_date: OffsetDateTime,
    /// Seconds each certificate lives, not counting `lifetime-adjust`.
    pub lifetime: u64,
    /// Seconds each certificate's notBefore is pre-dated by (§3.5).
    #[serde(
        rename = "lifetime-adjust",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lifetime_adjust: Option<u64>,
    #[serde(
        rename = "allow-certificate-get",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_certificate_get: Option<bool>,
}

/// RFC 8739 §3.2: the directory's `meta.auto-renewal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoRenewalMeta {
    #[serde(rename = "min-lifetime")]
    pub min_lifetime: u64,
    #[serde(rename = "max-duration")]
    pub max_duration: u64,
    #[serde(
        rename = "allow-certificate-get",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_certificate_get: Option<bool>,
}

/// The order object (RFC 8555 §7.1.3), with `replaces` (RFC 9773 §5) and `profile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub status: OrderStatus,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    pub identifiers: Vec<Identifier>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    pub authorizations: Vec<String>,
    pub finalize: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// RFC 8739 §3.1.1: the terms of a STAR order, as the server agreed them.
    #[serde(
        rename = "auto-renewal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_renewal: Option<AutoRenewal>,
    /// RFC 8739 §3.1.1: the rolling certificate of a STAR order, instead of `certificate`.
    #[serde(
        rename = "star-certificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub star_certificate: Option<String>,
}

/// newOrder payload (RFC 8555 §7.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    pub identifiers: Vec<Identifier>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// RFC 8739 §3.1.1: asks for a STAR order.
    #[serde(
        rename = "auto-renewal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_renewal: Option<AutoRenewal>,
}

/// The orders list (RFC 8555 §7.1.2.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrdersList {
    pub orders: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorizationStatus {
    Pending,
    Valid,
    Invalid,
    Deactivated,
    Expired,
    Revoked,
}

/// The authorization object (RFC 8555 §7.1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub identifier: Identifier,
    pub status: AuthorizationStatus,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    pub challenges: Vec<Challenge>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<bool>,
}

/// Deactivation payload for an authorization (RFC 8555 §7.5.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationUpdate {
    pub status: AuthorizationStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeStatus {
    Pending,
    Processing,
    Valid,
    Invalid,
}

/// Challenge types Sceau knows (RFC 8555 §8.3, §8.4; RFC 8737).
pub mod challenge_type {
    pub const HTTP_01: &str = "http-01";
    pub const DNS_01: &str = "dns-01";
    pub const TLS_ALPN_01: &str = "tls-alpn-01";
}

/// The challenge object (RFC 8555 §7.1.5, §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub status: ChallengeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub validated: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// finalize payload (RFC 8555 §7.4): base64url DER CSR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finalize {
    pub csr: String,
}

/// revokeCert payload (RFC 8555 §7.6): base64url DER certificate and an RFC 5280 reason code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    pub certificate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<u8>,
}

/// RFC 9773 §4.2 renewal information.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInfo {
    pub suggested_window: SuggestedWindow,
    #[serde(
        rename = "explanationURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub explanation_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestedWindow {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// Whether `label` is one LDH label of a DNS name (RFC 1035 §2.3.1, RFC 5890 A-labels): 1 to 63
/// letters, digits and hyphens, neither first nor last a hyphen.
pub fn is_ldh_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// The ARI certificate identifier (RFC 9773 §4.1): base64url of the Authority Key Identifier's
/// keyIdentifier, a dot, base64url of the DER serial number's content octets.
pub fn ari_cert_id(authority_key_id: &[u8], serial_der_content: &[u8]) -> String {
    format!(
        "{}.{}",
        crate::b64::encode(authority_key_id),
        crate::b64::encode(serial_der_content)
    )
}

/// Splits an ARI certificate identifier back into (keyIdentifier, serial content octets).
pub fn parse_ari_cert_id(id: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let (aki, serial) = id.split_once('.')?;
    let aki = crate::b64::decode(aki).ok()?;
    let serial = crate::b64::decode(serial).ok()?;
    if aki.is_empty() || serial.is_empty() {
        return None;
    }
    Some((aki, serial))
}

/// Revocation reason codes (RFC 5280 §5.3.1): their names, and the one check of which reasons
/// an end-entity certificate may be revoked for. ACME revocation (RFC 8555 §7.6
/// `badRevocationReason`) and `sceau-server admin cert revoke` both call [`reason::end_entity`].
///
/// Invariant: an accepted reason is one of [`reason::END_ENTITY`]. certificateHold is refused
/// because Sceau does not implement taking a certificate off hold (removeFromCRL in a delta CRL,
/// RFC 5280 §5.2.4, §5.3.1): a hold would be a permanent revocation under a misleading reason.
/// cACompromise, aACompromise and removeFromCRL do not describe a leaf.
pub mod reason {
    pub const UNSPECIFIED: u8 = 0;
    pub const KEY_COMPROMISE: u8 = 1;
    pub const CA_COMPROMISE: u8 = 2;
    pub const AFFILIATION_CHANGED: u8 = 3;
    pub const SUPERSEDED: u8 = 4;
    pub const CESSATION_OF_OPERATION: u8 = 5;
    pub const CERTIFICATE_HOLD: u8 = 6;
    pub const REMOVE_FROM_CRL: u8 = 8;
    pub const PRIVILEGE_WITHDRAWN: u8 = 9;
    pub const AA_COMPROMISE: u8 = 10;

    /// Every CRLReason of RFC 5280 §5.3.1 (7 is unused) with its ASN.1 name.
    pub const NAMES: [(u8, &str); 10] = [
        (UNSPECIFIED, "unspecified"),
        (KEY_COMPROMISE, "keyCompromise"),
        (CA_COMPROMISE, "cACompromise"),
        (AFFILIATION_CHANGED, "affiliationChanged"),
        (SUPERSEDED, "superseded"),
        (CESSATION_OF_OPERATION, "cessationOfOperation"),
        (CERTIFICATE_HOLD, "certificateHold"),
        (REMOVE_FROM_CRL, "removeFromCRL"),
        (PRIVILEGE_WITHDRAWN, "privilegeWithdrawn"),
        (AA_COMPROMISE, "aACompromise"),
    ];

    /// The reasons an end-entity certificate may be revoked for here.
    pub const END_ENTITY: [u8; 6] = [
        UNSPECIFIED,
        KEY_COMPROMISE,
        AFFILIATION_CHANGED,
        SUPERSEDED,
        CESSATION_OF_OPERATION,
        PRIVILEGE_WITHDRAWN,
    ];

    /// Why a reason was refused; the text is what the administrator or the ACME client reads.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum ReasonError {
        #[error(
            "unknown revocation reason {0:?}: use unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn (or their RFC 5280 codes 0, 1, 3, 4, 5, 9)"
        )]
        Unknown(String),
        #[error(
            "reason certificateHold (6) is refused: this server does not take certificates off hold (no removeFromCRL), so a hold would be a permanent revocation; use another reason"
        )]
        Hold,
        #[error(
            "reason {name} ({code}) does not apply to an end-entity certificate (RFC 5280 §5.3.1): use unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn",
            code = .0,
            name = name(*.0).unwrap_or("?")
        )]
        NotEndEntity(u8),
    }

    /// The RFC 5280 name of a code, `None` for a code RFC 5280 does not define.
    pub fn name(code: u8) -> Option<&'static str> {
        NAMES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
    }

    /// Any CRLReason by name (any case, `-` and `_` ignored, as certbot and lego spell them)
    /// or code, without judging whether it may be used.
    fn lookup(text: &str) -> Option<u8> {
        let t = text.trim();
        if let Ok(code) = t.parse::<u8>() {
            return name(code).map(|_| code);
        }
        let key = t.to_ascii_lowercase().replace(['-', '_'], "");
        NAMES
            .iter()
            .find(|(_, n)| n.to_ascii_lowercase() == key)
            .map(|(c, _)| *c)
    }

    /// Parses a reason a client may send (by name or number): a defined code other than
    /// removeFromCRL. The client does not judge further; the server does ([`end_entity`]).
    pub fn parse(text: &str) -> Option<u8> {
        lookup(text).filter(|c| is_valid(*c))
    }

    /// 7 is unused in RFC 5280; 8 (removeFromCRL) only appears in delta CRLs.
    pub fn is_valid(code: u8) -> bool {
        matches!(code, 0..=6 | 9 | 10)
    }

    /// The one check of a reason for revoking an end-entity certificate (see the module docs).
    pub fn end_entity(code: u8) -> Result<u8, ReasonError> {
        match code {
            c if END_ENTITY.contains(&c) => Ok(c),
            CERTIFICATE_HOLD => Err(ReasonError::Hold),
            c if name(c).is_some() => Err(ReasonError::NotEndEntity(c)),
            c => Err(ReasonError::Unknown(c.to_string())),
        }
    }

    /// A reason an administrator typed (name or code), checked by [`end_entity`].
    pub fn parse_end_entity(text: &str) -> Result<u8, ReasonError> {
        let code = lookup(text).ok_or_else(|| ReasonError::Unknown(text.to_owned()))?;
        end_entity(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_round_trip_uses_rfc_field_names() {
        let json = r#"{"status":"pending","expires":"2026-01-01T00:00:00Z",
            "identifiers":[{"type":"dns","value":"a.example"}],
            "notBefore":"2026-01-01T00:00:00.123456789Z",
            "authorizations":["https://x/a/1"],"finalize":"https://x/f/1","unknownExt":1}"#;
        let order: Order = serde_json::from_str(json).unwrap();
        assert_eq!(order.status, OrderStatus::Pending);
        assert!(order.not_before.is_some());
        let v = serde_json::to_value(&order).unwrap();
        assert_eq!(v["identifiers"][0]["type"], "dns");
        assert!(v.get("notAfter").is_none());
        assert_eq!(v["notBefore"], "2026-01-01T00:00:00.123456789Z");
    }

    #[test]
    fn a_wildcard_is_authorized_through_its_base_name_and_nothing_else_is_changed() {
        assert_eq!(
            Identifier::dns("*.example.test").authorization_target(),
            (Identifier::dns("example.test"), true)
        );
        assert_eq!(
            Identifier::dns("www.example.test").authorization_target(),
            (Identifier::dns("www.example.test"), false)
        );
        // An IP address keeps its type (revocation by an authorization holder looks it up).
        assert_eq!(
            Identifier::ip("192.0.2.7").authorization_target(),
            (Identifier::ip("192.0.2.7"), false)
        );
    }

    #[test]
    fn ari_id_round_trip() {
        let id = ari_cert_id(&[1, 2, 3], &[0, 0x87, 0x65]);
        assert_eq!(id, "AQID.AIdl");
        assert_eq!(
            parse_ari_cert_id(&id),
            Some((vec![1, 2, 3], vec![0, 0x87, 0x65]))
        );
        assert_eq!(parse_ari_cert_id("AQID"), None);
        assert_eq!(parse_ari_cert_id("AQ==.AA"), None);
    }

    #[test]
    fn reasons() {
        assert_eq!(reason::parse("keyCompromise"), Some(1));
        assert_eq!(reason::parse("key-compromise"), Some(1));
        assert_eq!(reason::parse("4"), Some(4));
        assert_eq!(reason::parse("7"), None);
        assert_eq!(reason::parse("bogus"), None);
    }

    #[test]
    fn end_entity_reasons_are_checked_in_one_place() {
        for (text, code) in [
            ("unspecified", 0),
            ("keyCompromise", 1),
            ("AFFILIATION_CHANGED", 3),
            ("superseded", 4),
            ("cessation-of-operation", 5),
            ("9", 9),
        ] {
            assert_eq!(reason::parse_end_entity(text), Ok(code), "{text}");
            assert_eq!(reason::end_entity(code), Ok(code));
        }
        assert_eq!(
            reason::parse_end_entity("certificateHold"),
            Err(reason::ReasonError::Hold)
        );
        assert_eq!(reason::end_entity(6), Err(reason::ReasonError::Hold));
        for (text, code) in [("cACompromise", 2), ("removeFromCRL", 8), ("10", 10)] {
            assert_eq!(
                reason::parse_end_entity(text),
                Err(reason::ReasonError::NotEndEntity(code))
            );
        }
        for bad in ["7", "11", "256", "", "bogus", "key compromise"] {
            assert!(
                matches!(
                    reason::parse_end_entity(bad),
                    Err(reason::ReasonError::Unknown(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            reason::end_entity(7),
            Err(reason::ReasonError::Unknown(_))
        ));
        let text = reason::ReasonError::NotEndEntity(2).to_string();
        assert!(text.contains("cACompromise (2)"), "{text}");
        assert_eq!(reason::name(1), Some("keyCompromise"));
        assert_eq!(reason::name(7), None);
    }
}
