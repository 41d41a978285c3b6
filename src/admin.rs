//! The admin HTTP port: `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz`: 200 once every dataset can answer — it has published at least one file, or its
//! first pass ended with a successful listing (an empty location is ready, with nothing in it).
//! While a dataset loads the body says how far it is.

use std::future::Future;

use axum::{extract::State, http::StatusCode, routing::get, Router};
use tokio::net::TcpListener;

use crate::{metrics, state::AppState};

async fn metrics_text() -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], metrics::render())
}

async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    let waiting: Vec<String> = state
        .catalog()
        .datasets()
        .filter_map(|d| {
            let s = d.snapshot();
            let ready = !s.files.is_empty() || (!s.progress.loading && s.last_error.is_none());
            (!ready).then(|| format!("{} ({})", d.name, s.progress.describe()))
        })
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("waiting for a first file: {}\n", waiting.join(", ")))
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    metrics::init();
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
