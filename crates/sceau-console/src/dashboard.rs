//! The live dashboard (agency guide R50): issuance and failures per day over the last 30
//! days, for every external account or one, and the certificates expiring within 30 days. The
//! page reloads itself every 30 seconds (a meta refresh: no script).
//!
//! Invariant: it only reads; operators see every account, a holder's page shows theirs only
//! (`holder.rs` calls [`figures`] with the holder's own key id).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use sceau_store::{day_of, now};
use serde::{Deserialize, Serialize};

use crate::Console;
use crate::auth::internal;
use crate::charts::{self, Day};
use crate::operator::{cert_names, operator};

/// Days the charts cover.
pub const DAYS: i64 = 30;
/// "Expiring soon": within this many seconds.
pub const SOON: i64 = 30 * 86400;

#[derive(Serialize)]
pub struct Expiring {
    pub serial: String,
    pub names: String,
    pub not_after: i64,
    pub kid: String,
}

/// The dashboard's figures for `kid` (or every account).
pub struct Figures {
    pub days: Vec<Day>,
    pub chart: String,
    pub issued: i64,
    pub failed: i64,
    pub expiring: Vec<Expiring>,
}

pub async fn figures(c: &Console, kid: Option<&str>) -> sceau_store::Result<Figures> {
    let t = now();
    let today = day_of(t);
    let since = (today - DAYS + 1) * 86400;
    let issued = c.store.issued_per_day(kid, since).await?;
    let failed = c.store.failures_per_day(kid, since).await?;
    let days = charts::days(today, DAYS, &issued, &failed);
    let expiring = c
        .store
        .expiring_certificates(kid, t, t + SOON)
        .await?
        .into_iter()
        .map(|(cert, kid)| Expiring {
            names: cert_names(&cert.der),
            serial: cert.serial,
            not_after: cert.not_after,
            kid: kid.unwrap_or_default(),
        })
        .collect();
    Ok(Figures {
        chart: charts::data_uri(&days),
        issued: days.iter().map(|d| d.issued).sum(),
        failed: days.iter().map(|d| d.failed).sum(),
        days,
        expiring,
    })
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    kid: String,
}

pub async fn dashboard(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<DashboardQuery>,
) -> Response {
    let (s, user) = match operator(&c, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let accounts = match c.registry.list().await {
        Ok(a) => a,
        Err(e) => return internal(&c, e),
    };
    let kid = Some(q.kid.as_str()).filter(|k| !k.is_empty());
    if let Some(k) = kid
        && !accounts.iter().any(|a| a.kid == k)
    {
        return c.message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such external account.",
        );
    }
    let f = match figures(&c, kid).await {
        Ok(f) => f,
        Err(e) => return internal(&c, e),
    };
    // Server health, as /readyz and /metrics see it.
    let started = std::time::Instant::now();
    let database = c
        .store
        .ping()
        .await
        .ok()
        .map(|()| format!("{:.1} ms", started.elapsed().as_secs_f64() * 1000.0));
    let health = context! {
        signer => c.acme.signer.available(),
        database => database,
        queue => c.store.queue_depth().await.ok(),
        version => env!("CARGO_PKG_VERSION"),
    };
    let owners: HashMap<&str, &str> = accounts
        .iter()
        .map(|a| (a.kid.as_str(), a.owner.as_str()))
        .collect();
    let expiring: Vec<_> = f
        .expiring
        .iter()
        .map(|e| {
            context! {
                serial => e.serial, names => e.names, not_after => e.not_after,
                kid => e.kid, owner => owners.get(e.kid.as_str()).copied().unwrap_or(""),
            }
        })
        .collect();
    let choices: Vec<_> = accounts
        .iter()
        .map(|a| context! { kid => a.kid, owner => a.owner })
        .collect();
    c.page(
        StatusCode::OK,
        "dashboard.html",
        context! {
            csrf => s.csrf, user => user.name, kid => q.kid, accounts => choices,
            chart => f.chart, days => f.days, issued => f.issued, failed => f.failed,
            expiring => expiring, span => DAYS, health => health,
        },
    )
}
