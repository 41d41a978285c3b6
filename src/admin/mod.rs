//! The admin HTTP port: `/` (the status page, [`status`]), `/api/status` and `/api/query` (its
//! JSON), `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz`: 200 once every dataset can answer — it has published at least one file, or its
//! first pass ended with a successful listing (an empty location is ready, with nothing in it).
//! While a dataset loads the body says how far it is.
//! `/changes?after=N&wait_ms=T` is a long-poll on the change sequence ([`metrics::changed`]):
//! it answers `{"seq": M}` as soon as M > N, or after T ms (at most 30 s) with the current M.

use std::future::Future;

use std::time::Duration;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    routing::get,
    Json, Router,
};
use tokio::net::TcpListener;

use crate::{metrics, state::AppState};

mod status;

/// The status page: one self-contained HTML file (no CDN, nothing fetched at run time), embedded.
const PAGE: &str = include_str!("page.html");

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

#[derive(Debug, serde::Deserialize)]
struct ChangesQuery {
    after: Option<u64>,
    wait_ms: Option<u64>,
}

/// The longest a `/changes` long-poll is held open.
const MAX_WAIT: Duration = Duration::from_secs(30);

async fn changes(Query(q): Query<ChangesQuery>) -> Json<serde_json::Value> {
    let mut rx = metrics::changes();
    if let Some(after) = q.after {
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, rx.wait_for(|seq| *seq > after)).await;
    }
    let seq = *rx.borrow();
    Json(serde_json::json!({ "seq": seq }))
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
        .route("/changes", get(changes))
        .route("/", get(|| async { axum::response::Html(PAGE) }))
        .route("/api/status", get(status::status))
        .route("/api/query", get(status::query))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
