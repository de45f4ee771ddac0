//! Per-AA reports (agency guide R49): certificates issued, revoked and currently valid, failed
//! validations, and every change of the AA's parameters with who and when.
//!
//! Invariant: a report only reads; it is built from the same rows the services write, so it
//! cannot disagree with what clients were told.

use sceau_store::{ExternalChange, now};
use serde::Serialize;

use crate::{AdminError, Registry};

#[derive(Debug, Clone, Serialize)]
pub struct CertLine {
    pub serial: String,
    pub account: String,
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedValidation {
    pub at: i64,
    pub account: String,
    pub identifier: Option<String>,
    pub challenge_type: Option<String>,
    pub error: Option<String>,
}

/// A STAR series (RFC 8739) of the AA's accounts: its terms, where it is, how many
/// certificates it has had.
#[derive(Debug, Clone, Serialize)]
pub struct StarLine {
    pub order: String,
    pub account: String,
    pub names: Vec<String>,
    /// `active`, `canceled`, `ended` (past its end-date or its last certificate) or `failed`.
    pub state: String,
    pub lifetime: i64,
    pub end: i64,
    /// When its next certificate is due, while active.
    pub next_due: Option<i64>,
    pub certificates: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeLine {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kid: String,
    pub owner: String,
    pub status: String,
    pub not_after: i64,
    pub since: i64,
    pub until: i64,
    /// Issued since `since`.
    pub issued: Vec<CertLine>,
    /// Revoked since `since`.
    pub revoked: Vec<CertLine>,
    /// Not revoked and not expired now, whenever issued.
    pub valid: Vec<CertLine>,
    pub failed_validations: Vec<FailedValidation>,
    /// Every STAR series of the AA's accounts, whenever ordered.
    pub star_series: Vec<StarLine>,
    pub changes: Vec<ChangeLine>,
}

impl Registry {
    pub async fn report(&self, kid: &str, since: i64) -> Result<Report, AdminError> {
        let aa = self.get(kid).await?;
        let until = now();
        let store = self.store();
        let mut issued = Vec::new();
        let mut revoked = Vec::new();
        let mut valid = Vec::new();
        for cert in store.certificates_of_external(kid).await? {
            let names = match store.order_by_id(&cert.order_id).await {
                Ok(o) => o.identifiers.into_iter().map(|i| i.value).collect(),
                Err(_) => Vec::new(),
            };
            let line = CertLine {
                serial: cert.serial.clone(),
                account: cert.account_id.clone(),
                names,
                not_before: cert.not_before,
                not_after: cert.not_after,
                revoked_at: cert.revoked_at,
                revocation_reason: cert.revocation_reason,
            };
            if cert.created_at >= since {
                issued.push(line.clone());
            }
            if cert.revoked_at.is_some_and(|t| t >= since) {
                revoked.push(line.clone());
            }
            if cert.revoked_at.is_none() && cert.not_after > until {
                valid.push(line);
            }
        }
        let failed_validations = store
            .external_account_events(kid, "validation.failed", since)
            .await?
            .into_iter()
            .map(|e| {
                let text = |k: &str| e.detail.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                FailedValidation {
                    at: e.at,
                    account: e.account_id.clone().unwrap_or_default(),
                    identifier: text("identifier"),
                    challenge_type: text("type"),
                    error: text("error"),
                }
            })
            .collect();
        let mut star_series = Vec::new();
        for o in store.star_series_of_external(kid).await? {
            let Some(t) = &o.star else { continue };
            let state = match o.status.as_str() {
                "canceled" => "canceled",
                "invalid" => "failed",
                _ if t.next.is_none() && o.cert_id.is_some() || until >= t.end => "ended",
                _ => "active",
            };
            star_series.push(StarLine {
                certificates: store.certs_of_order(&o.id).await?.len(),
                order: o.id,
                account: o.account_id,
                names: o.identifiers.into_iter().map(|i| i.value).collect(),
                state: state.to_owned(),
                lifetime: t.lifetime,
                end: t.end,
                next_due: t.due.filter(|_| state == "active"),
            });
        }
        let changes = store
            .external_changes(kid, since)
            .await?
            .into_iter()
            .map(
                |ExternalChange {
                     at,
                     actor,
                     action,
                     detail,
                 }| ChangeLine {
                    at,
                    actor,
                    action,
                    detail,
                },
            )
            .collect();
        Ok(Report {
            kid: aa.kid,
            owner: aa.owner,
            status: aa.status,
            not_after: aa.not_after,
            since,
            until,
            issued,
            revoked,
            valid,
            failed_validations,
            star_series,
            changes,
        })
    }
}

/// Unix seconds as RFC 3339 UTC text (the number itself if out of range), for reports and the
/// admin CLI.
pub fn when(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

impl Report {
    /// The report as text for a terminal or a mail.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("External account {} — {}", self.kid, self.owner));
        line(format!(
            "Status {}, valid until {}",
            self.status,
            when(self.not_after)
        ));
        line(format!(
            "Period {} to {}",
            when(self.since),
            when(self.until)
        ));
        let certs = |title: &str, list: &[CertLine], line: &mut dyn FnMut(String)| {
            line(String::new());
            line(format!("{title}: {}", list.len()));
            for c in list {
                let revoked = c
                    .revoked_at
                    .map(|t| {
                        format!(
                            ", revoked {} (reason {})",
                            when(t),
                            c.revocation_reason.unwrap_or(0)
                        )
                    })
                    .unwrap_or_default();
                line(format!(
                    "  {}  {}  until {}  account {}{revoked}",
                    c.serial,
                    c.names.join(","),
                    when(c.not_after),
                    c.account
                ));
            }
        };
        certs("Certificates issued", &self.issued, &mut line);
        certs("Certificates revoked", &self.revoked, &mut line);
        certs("Certificates currently valid", &self.valid, &mut line);
        line(String::new());
        line(format!(
            "Failed validations: {}",
            self.failed_validations.len()
        ));
        for f in &self.failed_validations {
            line(format!(
                "  {}  {}  {}  account {}: {}",
                when(f.at),
                f.identifier.as_deref().unwrap_or("?"),
                f.challenge_type.as_deref().unwrap_or("?"),
                f.account,
                f.error.as_deref().unwrap_or("")
            ));
        }
        line(String::new());
        line(format!(
            "STAR series (RFC 8739): {}",
            self.star_series.len()
        ));
        for t in &self.star_series {
            let next = t
                .next_due
                .map(|d| format!(", next due {}", when(d)))
                .unwrap_or_default();
            line(format!(
                "  {}  {}  {}  lifetime {} s  until {}  {} certificates{next}  account {}",
                t.order,
                t.names.join(","),
                t.state,
                t.lifetime,
                when(t.end),
                t.certificates,
                t.account
            ));
        }
        line(String::new());
        line(format!(
            "Changes of the account's parameters: {}",
            self.changes.len()
        ));
        for c in &self.changes {
            line(format!(
                "  {}  {}  by {}  {}",
                when(c.at),
                c.action,
                c.actor,
                c.detail
            ));
        }
        out
    }
}
