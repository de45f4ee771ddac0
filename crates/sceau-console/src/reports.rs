//! Reports per external account (agency guide R49), as CSV and HTML: certificates issued,
//! revoked and valid, failed validations, parameter changes. Downloaded from the console and
//! mailed on a schedule ([`crate::mail`]).
//!
//! Invariants:
//! - The content is `sceau_admin::Report`, the one the CLI's `admin account report` prints:
//!   the same rows, whoever asks.
//! - CSV fields are quoted as RFC 4180 says, and a field that a spreadsheet would run as a
//!   formula (`=`, `+`, `-`, `@`, tab, carriage return first) is prefixed with `'`.
//! - HTML is rendered through the console's escaping templates.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sceau_admin::Report;
use sceau_admin::report::when;
use sceau_store::now;
use serde::Deserialize;

use crate::Console;
use crate::auth::internal;
use crate::operator::{admin_refused, operator};

fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn row(out: &mut String, cells: &[&str]) {
    let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// The report as CSV: one header row, then one row per item, its kind first.
pub fn csv(r: &Report) -> String {
    let mut out = String::new();
    row(
        &mut out,
        &[
            "section",
            "at",
            "serial",
            "names",
            "not_before",
            "not_after",
            "revoked_at",
            "reason",
            "account",
            "actor",
            "action",
            "detail",
        ],
    );
    for (section, lines) in [
        ("issued", &r.issued),
        ("revoked", &r.revoked),
        ("valid", &r.valid),
    ] {
        for c in lines {
            row(
                &mut out,
                &[
                    section,
                    "",
                    &c.serial,
                    &c.names.join(" "),
                    &when(c.not_before),
                    &when(c.not_after),
                    &c.revoked_at.map(when).unwrap_or_default(),
                    &c.revocation_reason
                        .map(|r| r.to_string())
                        .unwrap_or_default(),
                    &c.account,
                    "",
                    "",
                    "",
                ],
            );
        }
    }
    for f in &r.failed_validations {
        row(
            &mut out,
            &[
                "failed_validation",
                &when(f.at),
                "",
                f.identifier.as_deref().unwrap_or(""),
                "",
                "",
                "",
                "",
                &f.account,
                "",
                f.challenge_type.as_deref().unwrap_or(""),
                f.error.as_deref().unwrap_or(""),
            ],
        );
    }
    for t in &r.star_series {
        let detail = serde_json::json!({"order": t.order, "lifetime": t.lifetime,
            "next_due": t.next_due.map(when), "certificates": t.certificates});
        row(
            &mut out,
            &[
                "star_series",
                "",
                "",
                &t.names.join(" "),
                "",
                &when(t.end),
                "",
                "",
                &t.account,
                "",
                &t.state,
                &detail.to_string(),
            ],
        );
    }
    for ch in &r.changes {
        row(
            &mut out,
            &[
                "change",
                &when(ch.at),
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                &ch.actor,
                &ch.action,
                &ch.detail.to_string(),
            ],
        );
    }
    out
}

/// The report as a standalone HTML page (for a browser or an e-mail).
pub fn html(c: &Console, r: &Report) -> Result<String, minijinja::Error> {
    c.render("report.html", minijinja::context! { r => r })
}

/// The report's subject line.
pub fn subject(r: &Report) -> String {
    format!(
        "Sceau report for {}: {} issued, {} revoked, {} valid",
        r.owner,
        r.issued.len(),
        r.revoked.len(),
        r.valid.len()
    )
}

#[derive(Deserialize)]
pub struct ReportQuery {
    #[serde(default)]
    days: Option<i64>,
    #[serde(default)]
    format: String,
}

/// The report of `kid` over the last `days` (7 by default), as `format` (`csv` or `html`).
pub(crate) async fn answer(c: &Console, kid: &str, q: &ReportQuery, actor: &str) -> Response {
    let days = q.days.unwrap_or(7);
    if !(1..=366).contains(&days) {
        return c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            "A report covers 1 to 366 days.",
        );
    }
    let report = match c.registry.report(kid, now() - days * 86400).await {
        Ok(r) => r,
        Err(e) => return admin_refused(c, e),
    };
    if let Err(e) = c
        .registry
        .record_read("report_downloaded", Some(kid), actor)
        .await
    {
        return internal(c, e);
    }
    let date = when(report.until).get(..10).unwrap_or("").to_owned();
    match q.format.as_str() {
        "csv" => {
            let mut r = (StatusCode::OK, csv(&report)).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"sceau-report-{date}.csv\""))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        "html" | "" => match html(c, &report) {
            Ok(page) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page,
            )
                .into_response(),
            Err(e) => internal(c, e),
        },
        _ => c.message(
            StatusCode::BAD_REQUEST,
            "Refused",
            "The report's format is csv or html.",
        ),
    }
}

/// An operator's download of any account's report.
pub async fn operator_report(
    State(c): State<Arc<Console>>,
    peer: Option<axum::Extension<crate::Peer>>,
    headers: HeaderMap,
    Path(kid): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let (_, user) = match operator(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ip = crate::auth::ip(peer);
    answer(&c, &kid, &q, &crate::operator::actor(&user, &ip)).await
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
    }
}
