//! Expiry monitoring ("Don't forget to monitor expiry!!", seed 004): one report, shown by
//! `sceau manager status` (text or `--json`) and exported as Prometheus metrics.
//!
//! Alerts, per certificate:
//! - `expiring`: less than a sixth of its lifetime left (past the renewal point and the grace
//!   an agent has to pick the new one up);
//! - `not-picked-up`: issued more than `pickup_grace_secs` ago and not installed by its agent;
//! - `no-new-csr`: renewal due for more than `pickup_grace_secs` and the agent has not sent a
//!   new CSR (the machine is off, or its timer is not running);
//! - `refused`: the CA refused the last CSR; `retrying`: the last attempt failed and will be
//!   retried;
//! - `agent-revoked`: its agent was revoked.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::net::TcpListener;

use super::Manager;
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct CertReport {
    pub agent: String,
    pub cert_name: String,
    pub names: Vec<String>,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<i64>,
    /// Where `renew_at` comes from: `ari` (the CA's window, RFC 9773) or `lifetime` (R84).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<i64>,
    pub picked_up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub alerts: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: i64,
    pub agents_active: usize,
    pub agents_revoked: usize,
    pub agents_invited: usize,
    pub certificates: Vec<CertReport>,
}

impl Report {
    pub fn alerts(&self) -> usize {
        self.certificates.iter().map(|c| c.alerts.len()).sum()
    }
}

pub async fn report(m: &Manager) -> Result<Report> {
    let now = sceau_store::now();
    let grace = m.config.renewal.pickup_grace_secs;
    let agents = m.store.agents().await?;
    let current: std::collections::HashMap<(String, String), _> = m
        .store
        .current()
        .await?
        .into_iter()
        .map(|(c, a)| ((c.agent.clone(), c.cert_name.clone()), a))
        .collect();
    let mut certificates = Vec::new();
    for c in m.store.certs(None).await? {
        let a = current.get(&(c.agent.clone(), c.cert_name.clone()));
        let mut alerts = Vec::new();
        if let Some(a) = a {
            if a.not_after - now < (a.not_after - a.not_before) / 6 {
                alerts.push("expiring");
            }
            if a.picked_up_at.is_none() && now - a.issued_at > grace {
                alerts.push("not-picked-up");
            }
        }
        if c.state == "due" && now - c.updated_at > grace {
            alerts.push("no-new-csr");
        }
        if c.state == "failed" {
            alerts.push("refused");
        }
        if c.state == "pending" && c.attempts > 0 {
            alerts.push("retrying");
        }
        if agents
            .iter()
            .any(|ag| ag.name == c.agent && ag.status == "revoked")
        {
            alerts.push("agent-revoked");
        }
        certificates.push(CertReport {
            agent: c.agent.clone(),
            cert_name: c.cert_name.clone(),
            names: c.names.clone(),
            state: c.state.clone(),
            serial: c.serial.clone(),
            not_after: a.map(|a| a.not_after),
            renew_at: a.map(|a| a.renew_at),
            renew_by: a.map(|a| {
                if a.ari_checked_at.is_some() {
                    "ari"
                } else {
                    "lifetime"
                }
            }),
            issued_at: a.map(|a| a.issued_at),
            picked_up: a.is_some_and(|a| a.picked_up_at.is_some()),
            last_error: c.last_error.clone(),
            alerts,
        });
    }
    let count = |s: &str| agents.iter().filter(|a| a.status == s).count();
    Ok(Report {
        generated_at: now,
        agents_active: count("active"),
        agents_revoked: count("revoked"),
        agents_invited: count("invited"),
        certificates,
    })
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of the report and the running manager's counters.
pub fn prometheus(m: &Manager, r: &Report) -> String {
    let mut out = String::new();
    let c = &m.counters;
    for (name, help, v) in [
        (
            "sceau_fleet_dns_updates_total",
            "RFC 2136 UPDATE messages sent (adds and removals)",
            c.dns_updates.load(Ordering::Relaxed),
        ),
        (
            "sceau_fleet_dns_records_total",
            "dns-01 TXT records put in place",
            c.dns_records.load(Ordering::Relaxed),
        ),
        (
            "sceau_fleet_issued_total",
            "certificates issued and archived",
            c.issued.load(Ordering::Relaxed),
        ),
        (
            "sceau_fleet_issuance_failures_total",
            "failed issuance attempts",
            c.failures.load(Ordering::Relaxed),
        ),
        (
            "sceau_fleet_refused_requests_total",
            "agent requests refused",
            c.refused_requests.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sceau_fleet_agents Agents by status\n# TYPE sceau_fleet_agents gauge"
    );
    for (s, n) in [
        ("active", r.agents_active),
        ("revoked", r.agents_revoked),
        ("invited", r.agents_invited),
    ] {
        let _ = writeln!(out, "sceau_fleet_agents{{status=\"{s}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP sceau_fleet_certificate_expiry_timestamp_seconds notAfter of the current certificate\n# TYPE sceau_fleet_certificate_expiry_timestamp_seconds gauge"
    );
    for c in &r.certificates {
        if let Some(t) = c.not_after {
            let _ = writeln!(
                out,
                "sceau_fleet_certificate_expiry_timestamp_seconds{{agent=\"{}\",cert=\"{}\"}} {t}",
                label(&c.agent),
                label(&c.cert_name)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP sceau_fleet_certificate_alert 1 while the alert holds\n# TYPE sceau_fleet_certificate_alert gauge"
    );
    for c in &r.certificates {
        for a in &c.alerts {
            let _ = writeln!(
                out,
                "sceau_fleet_certificate_alert{{agent=\"{}\",cert=\"{}\",alert=\"{a}\"}} 1",
                label(&c.agent),
                label(&c.cert_name)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP sceau_fleet_alerts Alerts in force\n# TYPE sceau_fleet_alerts gauge\nsceau_fleet_alerts {}",
        r.alerts()
    );
    out
}

/// Plain HTTP `GET /metrics` for Prometheus (bind it to a management address).
pub async fn serve_metrics(m: Arc<Manager>, listener: TcpListener) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(m): axum::extract::State<Arc<Manager>>| async move {
                    match report(&m).await {
                        Ok(r) => (
                            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            prometheus(&m, &r),
                        )
                            .into_response(),
                        Err(e) => {
                            tracing::warn!("metrics: {e}");
                            http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                        }
                    }
                },
            ),
        )
        .layer(axum::extract::DefaultBodyLimit::max(1024))
        .with_state(m);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            use tower::ServiceExt as _;
            let service = hyper_util::service::TowerToHyperService::new(app.map_request(
                |r: http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            ));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(super::http::HEADERS)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(super::http::REQUEST, conn).await;
        });
    }
}

use axum::response::IntoResponse as _;

/// The report as text, one line per certificate.
pub fn text(r: &Report) -> String {
    let fmt = |t: Option<i64>| {
        t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "{} agents active, {} invited, {} revoked; {} certificates, {} alerts\n",
        r.agents_active,
        r.agents_invited,
        r.agents_revoked,
        r.certificates.len(),
        r.alerts()
    );
    for c in &r.certificates {
        let _ = writeln!(
            out,
            "{}/{}: {} [{}] expires {} renews {}{}{}",
            c.agent,
            c.cert_name,
            c.state,
            c.names.join(" "),
            fmt(c.not_after),
            fmt(c.renew_at),
            if c.alerts.is_empty() {
                String::new()
            } else {
                format!(" ALERT {}", c.alerts.join(","))
            },
            c.last_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    out
}
