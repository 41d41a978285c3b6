//! The status page's JSON (`/api/status`) and its query form (`/api/query`), shared by the page
//! and the tests.
//!
//! With auth on, both need a bearer token: a user's token (the same ones Flight and the HTTP API
//! take) or an admin token (`--admin-tokens-file`). The list of recent queries shows everyone's
//! queries, but a query's SQL only to the user who ran it, and to admins.

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::metadata::MetadataMap;

use crate::{metrics, recent, state::AppState};

/// Who is looking at the page.
pub struct Viewer {
    pub principal: Option<String>,
    pub admin: bool,
}

/// The viewer of a request, or the 401 to answer. Anonymous Bridge: everyone sees everything.
pub fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, Box<Response>> {
    let Some(auth) = state.auth() else { return Ok(Viewer { principal: None, admin: true }) };
    let md = MetadataMap::from_headers(headers.clone());
    if auth.is_admin(&md) {
        return Ok(Viewer { principal: Some("admin".into()), admin: true });
    }
    match auth.check(&md, None) {
        Ok(p) => Ok(Viewer { principal: Some(p), admin: false }),
        Err(s) => Err(Box::new(crate::http::problem_response(&s))),
    }
}

/// Bytes under the cache directory (downloads, store, segments).
fn local_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => local_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let now = chrono::Utc::now();
    let datasets: Vec<Value> = state
        .catalog()
        .datasets()
        .map(|d| {
            let mut v = d.describe();
            let newest = d.snapshot().files.iter().map(|f| f.last_modified).max();
            v["newest_file_modified"] = json!(newest.map(|t| t.to_rfc3339()));
            v["lag_seconds"] = json!(newest.map(|t| (now - t).num_milliseconds() as f64 / 1e3));
            v
        })
        .collect();
    let queries: Vec<recent::Finished> = recent::queries()
        .into_iter()
        .map(|mut q| {
            if !viewer.admin && q.principal != viewer.principal {
                q.sql = None;
            }
            q
        })
        .collect();
    let limits = state.admission().limits();
    let cache_dir = state.catalog().cache_dir().to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || local_bytes(&cache_dir)).await.unwrap_or(0);
    Json(json!({
        "now": now.to_rfc3339(),
        "viewer": { "principal": viewer.principal, "admin": viewer.admin, "auth": state.auth().is_some() },
        "datasets": datasets,
        "local": { "bytes": bytes, "segments": state.catalog().tier().usage() },
        "cluster": state.cluster().describe(),
        "queries": {
            "running": metrics::RUNNING.get(),
            "queued": metrics::QUEUED.get(),
            "threads_active": metrics::ACTIVE.get(),
            "max_running": limits.max_running,
            "max_queued": limits.max_queued,
            "bucket_seconds": recent::BUCKET_SECONDS,
            "series": recent::series(),
            "recent": queries,
        },
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct Form {
    /// `p90` (the summary) or `outliers` (the top 10 by speed within the p90).
    kind: String,
    dataset: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// Runs the page's form through the HTTP API's path, as JSON.
pub async fn query(State(state): State<AppState>, headers: HeaderMap, Query(form): Query<Form>) -> Response {
    let viewer = match viewer(&state, &headers) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut fields = json!({ "query": form.kind, "dataset": form.dataset, "from": form.from, "to": form.to });
    match form.kind.as_str() {
        "p90" => fields["output"] = json!("summary"),
        "outliers" => {
            fields["within_p90"] = json!(true);
            fields["order_by"] = json!("avg_speed_mph desc");
            fields["limit"] = json!(10);
        }
        _ => {
            let detail = "kind must be p90 or outliers";
            return crate::http::problem_response(&tonic::Status::invalid_argument(detail));
        }
    }
    let caller = crate::observe::Caller {
        request_id: crate::observe::request_id(&MetadataMap::from_headers(headers.clone())),
        peer: None,
        principal: viewer.principal,
    };
    let started = std::time::Instant::now();
    let mut response = crate::http::answer_json(&state, fields, caller).await;
    if response.status() == StatusCode::OK {
        // The server's time for the page's colour badge (the page also shows its own round trip).
        let ms = format!("{:.3}", started.elapsed().as_secs_f64() * 1e3);
        if let Ok(v) = ms.parse() {
            response.headers_mut().insert("bridge-server-ms", v);
        }
    }
    response
}
