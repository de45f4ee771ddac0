//! The operators' plain-HTTP listener (`--metrics-listen`): `/metrics` in the Prometheus text
//! format, beside `/livez` and `/readyz`, apart from the ACME listener so that scraping needs
//! no client certificate trust and ACME clients never see operational figures.
//!
//! Invariant: a scrape only reads (two small queries); it changes nothing.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sceau_acme::Acme;
use sceau_acme::metrics::Sampled;

pub fn router(acme: Arc<Acme>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(crate::http::livez))
        .route("/readyz", get(crate::http::readyz))
        .with_state(acme)
}

async fn metrics(State(acme): State<Arc<Acme>>) -> Response {
    let started = Instant::now();
    let database_latency = acme.store.ping().await.ok().map(|()| started.elapsed());
    let queue_depth = acme.store.queue_depth().await.ok();
    let text = acme.metrics.render(&Sampled {
        queue_depth,
        database_latency,
        signer_up: acme.signer.available(),
    });
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
