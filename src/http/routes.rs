//! The routes: each turns its request into the same ticket a Flight client would send (JSON
//! fields, decoded and validated by [`crate::flight::ticket`]) and answers it.

use std::net::SocketAddr;

use axum::{
    extract::{rejection::QueryRejection, ConnectInfo, Extension, Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tonic::Code;
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};

use super::{
    answer::{answer, count, refused},
    body::Format,
    problem::{self, Problem},
    HttpState, Principal,
};
use crate::{flight::ticket, observe::Caller};

/// `p90`: the trips above a percentile of `trip_distance`, or its summary.
#[derive(Debug, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct P90Params {
    /// Pickup time, inclusive: `2024-01-01` or `2024-01-01T06:00:00`.
    #[param(pattern = r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?$")]
    from: Option<String>,
    /// Pickup time, exclusive.
    #[param(pattern = r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?$")]
    to: Option<String>,
    /// The percentile, in (0, 1); default 0.9.
    #[param(exclusive_minimum = 0.0, exclusive_maximum = 1.0)]
    percentile: Option<f64>,
    /// `trips` (the rows above the threshold, default) or `summary` (one row).
    output: Option<Output>,
    /// Columns to return, comma-separated (default: all).
    columns: Option<String>,
    /// Most rows to return.
    limit: Option<u64>,
    /// Wait (briefly) until the dataset has published this manifest version.
    min_version: Option<u64>,
    /// `arrow`, `json` or `csv`: overrides `Accept`.
    format: Option<Format>,
}

/// What `p90` returns.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// The trips above the threshold.
    Trips,
    /// One row: range, percentile, trips in range, threshold, trips above.
    Summary,
}

/// `outliers`: trips that break the physics rule.
#[derive(Debug, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutliersParams {
    /// Pickup time, inclusive: `2024-01-01` or `2024-01-01T06:00:00`.
    #[param(pattern = r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?$")]
    from: Option<String>,
    /// Pickup time, exclusive.
    #[param(pattern = r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?$")]
    to: Option<String>,
    /// Only trips above the range's p90 distance.
    within_p90: Option<bool>,
    /// Most rows to return.
    limit: Option<u64>,
    /// `<column> [asc|desc]`, e.g. `avg_speed_mph desc`.
    order_by: Option<String>,
    min_duration_hours: Option<f64>,
    max_duration_hours: Option<f64>,
    min_speed_mph: Option<f64>,
    max_speed_mph: Option<f64>,
    min_distance: Option<f64>,
    max_distance: Option<f64>,
    /// Wait (briefly) until the dataset has published this manifest version.
    min_version: Option<u64>,
    /// `arrow`, `json` or `csv`: overrides `Accept`.
    format: Option<Format>,
}

/// `scan`: the rows of a pickup range.
#[derive(Debug, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScanParams {
    /// Pickup time, inclusive: `2024-01-01` or `2024-01-01T06:00:00`.
    #[param(pattern = r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?$")]
    from: Option<String>,
    /// Pickup time, exclusive.
    #[param(pattern = r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?)?$")]
    to: Option<String>,
    /// Columns to return, comma-separated (default: all).
    columns: Option<String>,
    /// Most rows to return.
    limit: Option<u64>,
    /// Wait (briefly) until the dataset has published this manifest version.
    min_version: Option<u64>,
    /// `arrow`, `json` or `csv`: overrides `Accept`.
    format: Option<Format>,
}

/// The body of `POST /v1/sql`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only `SELECT`; the datasets are views, e.g. `SELECT count(*) FROM yellow`.
    #[schema(example = "SELECT count(*) AS trips FROM yellow")]
    sql: String,
    /// `arrow`, `json` or `csv`: overrides `Accept`.
    format: Option<Format>,
}

/// One dataset, as `GET /v1/datasets` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetInfo {
    name: String,
    location: String,
    manifest_version: u64,
    files: usize,
    rows: u64,
    quarantined: usize,
    /// RFC 3339 modification time of the newest file, if any.
    newest_file_modified: Option<String>,
    /// Whether the first pass over the location is still running.
    loading: bool,
    columns: Vec<ColumnInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnInfo {
    name: String,
    /// DuckDB type, e.g. `TIMESTAMP`, `DOUBLE`.
    r#type: String,
}

/// Who asked: the request's id (the client's `x-request-id` when sane), its peer, its principal.
fn caller(headers: &HeaderMap, peer: SocketAddr, principal: Option<Extension<Principal>>) -> Caller {
    Caller {
        request_id: crate::observe::request_id(&tonic::metadata::MetadataMap::from_headers(headers.clone())),
        peer: Some(peer),
        principal: principal.and_then(|Extension(Principal(p))| p),
    }
}

/// The answer's format: `format=` if given, else from `Accept`.
fn format(param: Option<Format>, headers: &HeaderMap) -> Result<Format, Box<Response>> {
    if let Some(f) = param {
        return Ok(f);
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    Format::negotiate(accept).ok_or_else(|| {
        Box::new(problem::problem(
            StatusCode::NOT_ACCEPTABLE,
            Code::InvalidArgument,
            "this answer comes as application/vnd.apache.arrow.stream (default), application/json or text/csv",
        ))
    })
}

/// Query parameters as a JSON ticket's fields: `columns` split on commas, `format` left out.
fn ticket_fields(kind: &str, dataset: &str, params: impl Serialize) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("query".into(), json!(kind));
    fields.insert("dataset".into(), json!(dataset));
    if let Ok(Value::Object(map)) = serde_json::to_value(params) {
        for (k, v) in map {
            match (k.as_str(), v) {
                (_, Value::Null) | ("format", _) => {}
                ("columns", Value::String(s)) => {
                    let list: Vec<&str> = s.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
                    fields.insert(k, json!(list));
                }
                (_, v) => {
                    fields.insert(k, v);
                }
            }
        }
    }
    fields
}

/// Decodes the fields as a ticket and answers it.
async fn run(
    http: &HttpState,
    kind: &str,
    fields: Map<String, Value>,
    format: Option<Format>,
    headers: &HeaderMap,
    caller: Caller,
) -> Response {
    let format = match self::format(format, headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let ticket = match ticket::try_decode(Value::Object(fields).to_string().as_bytes()) {
        Ok(t) => t,
        Err(e) => return refused(kind, &tonic::Status::from(e)),
    };
    let span = crate::trace::rpc_span("http", headers);
    answer(http, ticket, format, caller).instrument(span).await
}

/// A dataset ticket's route: its query string (`format` aside) is the ticket's fields.
async fn dataset_ticket<P: Serialize>(
    http: &HttpState,
    kind: &str,
    dataset: &str,
    params: Result<Query<P>, QueryRejection>,
    headers: &HeaderMap,
    caller: Caller,
) -> Response {
    let Query(params) = match params {
        Ok(p) => p,
        // A malformed query string: a number that is not one, an unknown parameter.
        Err(e) => return refused(kind, &tonic::Status::invalid_argument(e.body_text())),
    };
    let format = serde_json::to_value(&params).ok().and_then(|v| serde_json::from_value(v["format"].clone()).ok());
    run(http, kind, ticket_fields(kind, dataset, params), format, headers, caller).await
}

/// The errors a dataset ticket's route answers, for the OpenAPI document (never constructed).
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum TicketErrors {
    #[response(status = 400, description = "bad parameters", content_type = "application/problem+json")]
    BadRequest(Problem),
    #[response(status = 401, description = "no or bad bearer token", content_type = "application/problem+json")]
    Unauthorized(Problem),
    #[response(status = 404, description = "no such dataset", content_type = "application/problem+json")]
    NotFound(Problem),
    #[response(status = 406, description = "no acceptable format", content_type = "application/problem+json")]
    NotAcceptable(Problem),
    #[response(
        status = 503,
        description = "busy or not loaded yet; see Retry-After",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
    #[response(status = 504, description = "past the deadline", content_type = "application/problem+json")]
    Timeout(Problem),
}

/// The trips above a percentile of `trip_distance` (or its summary).
#[utoipa::path(get, path = "/v1/datasets/{name}/p90", tag = "tickets",
    params(("name" = String, Path, description = "dataset name"), P90Params),
    responses(
        (status = 200, description = "the answer", content(
            (Vec<u8> = "application/vnd.apache.arrow.stream"), (Vec<Value> = "application/json"), (String = "text/csv"))),
        TicketErrors,
    ))]
pub async fn p90(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    principal: Option<Extension<Principal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Result<Query<P90Params>, QueryRejection>,
) -> Response {
    dataset_ticket(&http, "p90", &name, params, &headers, caller(&headers, peer, principal)).await
}

/// Trips that break the physics rule (optionally only those above the p90 distance).
#[utoipa::path(get, path = "/v1/datasets/{name}/outliers", tag = "tickets",
    params(("name" = String, Path, description = "dataset name"), OutliersParams),
    responses(
        (status = 200, description = "the answer", content(
            (Vec<u8> = "application/vnd.apache.arrow.stream"), (Vec<Value> = "application/json"), (String = "text/csv"))),
        TicketErrors,
    ))]
pub async fn outliers(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    principal: Option<Extension<Principal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Result<Query<OutliersParams>, QueryRejection>,
) -> Response {
    dataset_ticket(&http, "outliers", &name, params, &headers, caller(&headers, peer, principal)).await
}

/// The rows of a pickup range, streamed.
#[utoipa::path(get, path = "/v1/datasets/{name}/scan", tag = "tickets",
    params(("name" = String, Path, description = "dataset name"), ScanParams),
    responses(
        (status = 200, description = "the answer", content(
            (Vec<u8> = "application/vnd.apache.arrow.stream"), (Vec<Value> = "application/json"), (String = "text/csv"))),
        TicketErrors,
    ))]
pub async fn scan(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    principal: Option<Extension<Principal>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Result<Query<ScanParams>, QueryRejection>,
) -> Response {
    dataset_ticket(&http, "scan", &name, params, &headers, caller(&headers, peer, principal)).await
}

/// One read-only SELECT over the datasets, in the same sandbox as Flight's `sql` ticket.
#[utoipa::path(post, path = "/v1/sql", tag = "tickets", request_body = SqlRequest,
    responses(
        (status = 200, description = "the answer", content(
            (Vec<u8> = "application/vnd.apache.arrow.stream"), (Vec<Value> = "application/json"), (String = "text/csv"))),
        (status = 400, description = "bad SQL or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no or bad bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "no acceptable format", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "busy or not loaded yet; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "past the deadline", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sql(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => {
            let status = match e.status() {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            count("sql", Code::InvalidArgument);
            return problem::problem(status, Code::InvalidArgument, e.body_text());
        }
    };
    let fields = ticket_fields("sql", "", json!({ "sql": request.sql }));
    let mut fields = fields;
    fields.remove("dataset");
    let caller = caller(&headers, peer, principal);
    run(&http, "sql", fields, request.format, &headers, caller).await
}

/// The datasets: manifest, size, freshness and columns.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets",
    responses(
        (status = 200, description = "every dataset", body = Vec<DatasetInfo>),
        (status = 401, description = "no or bad bearer token", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn datasets(State(http): State<HttpState>) -> Response {
    let list: Vec<DatasetInfo> = http
        .app
        .catalog()
        .datasets()
        .map(|d| {
            let s = d.snapshot();
            DatasetInfo {
                name: d.name.clone(),
                location: d.location.url.to_string(),
                manifest_version: s.version,
                files: s.files.len(),
                rows: s.rows(),
                quarantined: s.quarantined.len(),
                newest_file_modified: s.files.iter().map(|f| f.last_modified).max().map(|t| t.to_rfc3339()),
                loading: s.progress.loading,
                columns: s.columns.iter().map(|c| ColumnInfo { name: c.name.clone(), r#type: c.ty.clone() }).collect(),
            }
        })
        .collect();
    count("datasets", Code::Ok);
    Json(list).into_response()
}

/// Anything else.
pub async fn not_found() -> Response {
    problem::problem(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        "no such route; see /v1/openapi.json (GET /v1/datasets, /v1/datasets/{name}/p90|outliers|scan, POST /v1/sql)",
    )
}
