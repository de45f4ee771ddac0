//! Rows as the services see them. Statuses are the RFC 8555 status strings; JSON columns are
//! decoded here so that nothing above this crate sees SQL types.

use sceau_wire::{Identifier, Problem};

use crate::db::Row;
use crate::{Result, StoreError, get, hex_decode};

fn json<T: serde::de::DeserializeOwned>(col: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn opt_problem(row: &Row, col: &str) -> Result<Option<Problem>> {
    get::<Option<String>>(row, col)?
        .map(|t| json(col, &t))
        .transpose()
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub id: String,
    pub thumbprint: String,
    /// The account key as JWK JSON.
    pub jwk: String,
    pub status: String,
    pub contact: Vec<String>,
    pub tos_agreed: bool,
    pub eab_kid: Option<String>,
    pub created_at: i64,
    pub created_ip: Option<String>,
}

impl AccountRecord {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        Ok(AccountRecord {
            id: get(row, "id")?,
            thumbprint: get(row, "thumbprint")?,
            jwk: get(row, "jwk")?,
            status: get(row, "status")?,
            contact: json("contact", &get::<String>(row, "contact")?)?,
            tos_agreed: get::<i64>(row, "tos_agreed")? != 0,
            eab_kid: get(row, "eab_kid")?,
            created_at: get(row, "created_at")?,
            created_ip: get(row, "created_ip")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub id: String,
    pub account_id: String,
    pub status: String,
    pub expires: i64,
    pub identifiers: Vec<Identifier>,
    pub authz_ids: Vec<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub profile: Option<String>,
    pub replaces: Option<String>,
    pub error: Option<Problem>,
    /// base64url DER CSR, kept from finalize until the certificate is stored.
    pub csr: Option<String>,
    pub cert_id: Option<String>,
    pub created_at: i64,
    /// RFC 8739: the terms of a STAR series; `None` for every other order.
    pub star: Option<StarTerms>,
}

/// The terms of a STAR order (RFC 8739 §3.1.1) as agreed, and where its series is. Times are
/// Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarTerms {
    /// The earliest notBefore of the first certificate, if the client gave one.
    pub start: Option<i64>,
    /// No certificate of the series has a notAfter after it.
    pub end: i64,
    /// Seconds each certificate lives, before `adjust`.
    pub lifetime: i64,
    /// The client's `lifetime-adjust`, at most `lifetime`.
    pub adjust: i64,
    /// Unauthenticated GET of the star-certificate URL was agreed (§3.4).
    pub allow_get: bool,
    /// The nominal renewal date (§3.5) of the next certificate; `None` before the first one
    /// and once the series is complete, stopped or canceled.
    pub next: Option<i64>,
    /// When the next certificate is handed to the issuance queue.
    pub due: Option<i64>,
}

impl OrderRecord {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        Ok(OrderRecord {
            id: get(row, "id")?,
            account_id: get(row, "account_id")?,
            status: get(row, "status")?,
            expires: get(row, "expires")?,
            identifiers: json("identifiers", &get::<String>(row, "identifiers")?)?,
            authz_ids: json("authz_ids", &get::<String>(row, "authz_ids")?)?,
            not_before: get(row, "not_before")?,
            not_after: get(row, "not_after")?,
            profile: get(row, "profile")?,
            replaces: get(row, "replaces")?,
            error: opt_problem(row, "error")?,
            csr: get(row, "csr")?,
            cert_id: get(row, "cert_id")?,
            created_at: get(row, "created_at")?,
            star: match get::<Option<i64>>(row, "star_end")? {
                None => None,
                Some(end) => Some(StarTerms {
                    start: get(row, "star_start")?,
                    end,
                    lifetime: get::<Option<i64>>(row, "star_lifetime")?.unwrap_or_default(),
                    adjust: get::<Option<i64>>(row, "star_adjust")?.unwrap_or_default(),
                    allow_get: get::<Option<i64>>(row, "star_get")?.unwrap_or_default() != 0,
                    next: get(row, "star_next")?,
                    due: get(row, "star_due")?,
                }),
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthzRecord {
    pub id: String,
    pub account_id: String,
    pub identifier: Identifier,
    pub status: String,
    pub expires: i64,
    /// One token for all of the authorization's challenges (RFC 8555 §8.1 allows sharing;
    /// key authorizations differ per challenge type only by their use).
    pub token: String,
    pub wildcard: bool,
    pub created_at: i64,
    pub challenges: Vec<ChallengeRecord>,
}

impl AuthzRecord {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        Ok(AuthzRecord {
            id: get(row, "id")?,
            account_id: get(row, "account_id")?,
            identifier: Identifier {
                kind: get(row, "identifier_type")?,
                value: get(row, "identifier_value")?,
            },
            status: get(row, "status")?,
            expires: get(row, "expires")?,
            token: get(row, "token")?,
            wildcard: get::<i64>(row, "wildcard")? != 0,
            created_at: get(row, "created_at")?,
            challenges: Vec::new(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeRecord {
    pub id: String,
    pub authz_id: String,
    pub kind: String,
    pub status: String,
    pub validated: Option<i64>,
    pub error: Option<Problem>,
}

impl ChallengeRecord {
    pub(crate) fn from_joined_row(row: &Row, id: String, authz_id: &str) -> Result<Self> {
        Ok(ChallengeRecord {
            id,
            authz_id: authz_id.to_owned(),
            kind: get(row, "c_kind")?,
            status: get(row, "c_status")?,
            validated: get(row, "c_validated")?,
            error: opt_problem(row, "c_error")?,
        })
    }

    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        Ok(ChallengeRecord {
            id: get(row, "id")?,
            authz_id: get(row, "authz_id")?,
            kind: get(row, "kind")?,
            status: get(row, "status")?,
            validated: get(row, "validated")?,
            error: opt_problem(row, "error")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertRecord {
    pub id: String,
    pub serial: String,
    pub account_id: String,
    pub order_id: String,
    pub der: Vec<u8>,
    pub chain_pem: String,
    pub not_before: i64,
    pub not_after: i64,
    pub ari_id: String,
    pub spki_sha256: String,
    /// The issuing CA that signed it (hex of its key identifier); `None` in rows written
    /// before it was recorded (they are all of the first issuer).
    pub issuer_id: Option<String>,
    /// The CRL shard of its issuer it is on (the one its CRL distribution point names);
    /// `None` in rows written before certificates carried one.
    pub crl_shard: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
    /// The order that replaced this certificate (RFC 9773 §5).
    pub replaced_by: Option<String>,
    pub created_at: i64,
    /// Write-only: the ARI id of the certificate this one replaces.
    pub replaces: Option<String>,
}

impl CertRecord {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        let der_hex: String = get(row, "der")?;
        Ok(CertRecord {
            id: get(row, "id")?,
            serial: get(row, "serial")?,
            account_id: get(row, "account_id")?,
            order_id: get(row, "order_id")?,
            der: hex_decode(&der_hex).ok_or_else(|| StoreError::Corrupt("der".into()))?,
            chain_pem: get(row, "chain_pem")?,
            not_before: get(row, "not_before")?,
            not_after: get(row, "not_after")?,
            ari_id: get(row, "ari_id")?,
            spki_sha256: get(row, "spki_sha256")?,
            issuer_id: get(row, "issuer_id")?,
            crl_shard: get(row, "crl_shard")?,
            revoked_at: get(row, "revoked_at")?,
            revocation_reason: get(row, "revocation_reason")?,
            replaced_by: get(row, "replaced_by")?,
            created_at: get(row, "created_at")?,
            replaces: None,
        })
    }
}

/// An audit event committed in the same transaction as the change it records, so that the
/// trail never misses a change nor shows one that did not happen.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub event: &'a str,
    pub account_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub detail: serde_json::Value,
}

impl AuditEntry<'_> {
    /// The event as a structured log line under the `sceau::audit` target, beside its row.
    pub fn log(&self) {
        tracing::info!(target: "sceau::audit", event = self.event, account = self.account_id,
            client_ip = self.client_ip, detail = %self.detail);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub at: i64,
    pub event: String,
    pub account_id: Option<String>,
    pub client_ip: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditRecord {
    pub(crate) fn from_row(row: &Row) -> Result<Self> {
        Ok(AuditRecord {
            at: get(row, "at")?,
            event: get(row, "event")?,
            account_id: get(row, "account_id")?,
            client_ip: get(row, "client_ip")?,
            detail: json("detail", &get::<String>(row, "detail")?)?,
        })
    }
}
