//! Running a ticket for an HTTP request: the same admission, deadline, plan, caps, metrics and
//! query log as Flight's DoGet, then the body in the negotiated format.

use std::collections::HashMap;

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::StreamExt;
use tonic::{metadata::MetadataMap, Code, Status};
use tracing::{info_span, Instrument};

use super::{
    body::{arrow_stream, collect_for_json, csv_stream, json_array, Format},
    problem, HttpState,
};
use crate::{
    flight::{
        encode::{encode, guarded},
        frame::Frame,
        wire::Wire,
    },
    observe::{observe, Bounds, BoxStream, Caller, Observed},
    proto::Ticket,
    queries,
};

/// Answers `ticket` in `format`.
pub async fn answer(http: &HttpState, ticket: Ticket, format: Format, caller: Caller) -> Response {
    let arrived = std::time::Instant::now();
    let kind = queries::kind(&ticket);
    let sql = queries::sql_text(&ticket);
    let (state, admission) = (&http.app, http.app.admission());
    let slot = match admission.admit().instrument(info_span!("admission")).await {
        Ok(slot) => slot,
        Err(s) => return refused(kind, &s),
    };
    let limits = admission.limits();
    let bounds = Bounds {
        deadline: admission.deadline(&MetadataMap::new()),
        max_rows: limits.max_rows,
        max_bytes: limits.max_bytes,
    };
    let catalog = state.catalog();
    let started = async {
        queries::await_min_version(&ticket, catalog).await?;
        let plan = queries::plan(ticket, catalog)?;
        queries::start(plan, catalog, state.shape(None), false).await
    };
    let query = match tokio::time::timeout_at(bounds.deadline, started.instrument(info_span!("plan"))).await {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => return refused(kind, &Status::from(e)),
        Err(_) => return refused(kind, &Status::deadline_exceeded("the query did not start before its deadline")),
    };
    let metadata = query.schema.metadata().clone();
    let request_id = caller.request_id.clone();
    let mut obs =
        Observed::start("http", kind, caller, metadata.clone()).since(arrived).with_sql(sql).with_stream_span();
    let rows = obs.rows();
    // Only the deadline and the client (dropping the body) stop an HTTP answer.
    let never = futures::future::pending::<()>();
    let body: BoxStream<Bytes> = match format {
        Format::Arrow => {
            let frames = encode(query, Wire::default(), rows, slot, bounds.deadline, never);
            arrow_stream(frames.map(|f| f.map(Frame::into_data))).boxed()
        }
        Format::Csv => csv_stream(guarded(query.batches, rows, slot, bounds.deadline, never)).boxed(),
        Format::Json => {
            let batches = guarded(query.batches, rows, slot, bounds.deadline, never);
            let built = collect_for_json(batches, http.json_max_rows)
                .await
                .and_then(|batches| json_array(&batches).map_err(Status::from));
            match built {
                Ok(json) => futures::stream::once(async { Ok(Bytes::from(json)) }).boxed(),
                Err(s) => {
                    obs.fail(s.code());
                    return problem::from_status(&s);
                }
            }
        }
    };
    let trace_id = obs.trace_id().map(String::from);
    let body = observe(body, obs, bounds, Bytes::len);
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    freshness_headers(&metadata, headers);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    if let Some(v) = trace_id.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("x-trace-id", v);
    }
    response
}

/// A request refused before streaming: counted, and answered as a problem.
pub fn refused(kind: &str, s: &Status) -> Response {
    crate::observe::count("http", kind, s.code());
    problem::from_status(s)
}

/// The answer's freshness metadata as headers: `bridge.manifest_version` becomes
/// `Bridge-Manifest-Version: 7`; a SQL answer's per-dataset `bridge.manifest_version.yellow`
/// becomes `Bridge-Manifest-Version: yellow=7` (one `name=value` per dataset, comma-separated).
fn freshness_headers(metadata: &HashMap<String, String>, headers: &mut HeaderMap) {
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    let mut keys: Vec<&String> = metadata.keys().collect();
    keys.sort();
    for key in keys {
        let Some(rest) = key.strip_prefix("bridge.") else { continue };
        let value = &metadata[key];
        let (name, shown) = match rest.split_once('.') {
            // A built-in answer carries both forms: its own value is the header.
            Some((name, _)) if metadata.contains_key(&format!("bridge.{name}")) => continue,
            Some((name, dataset)) => (name, format!("{dataset}={value}")),
            None => (rest, value.clone()),
        };
        values.entry(name.to_string()).or_default().push(shown);
    }
    for (name, list) in values {
        let title: Vec<String> = name
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect();
        let header = format!("Bridge-{}", title.join("-"));
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(header), HeaderValue::from_str(&list.join(", "))) {
            headers.insert(n, v);
        }
    }
}

/// The code of a finished non-query request, for `bridge_requests_total{rpc="http"}`.
pub fn count(kind: &str, code: Code) {
    crate::observe::count("http", kind, code);
}
