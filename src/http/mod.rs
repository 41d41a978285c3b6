//! The HTTP API (`--http-listen`): the Flight tickets over plain HTTP, for `curl`, browsers, the
//! Arrow JS library, R and HTTP load balancers.
//!
//! * `GET /v1/datasets`, `GET /v1/datasets/{name}/p90|outliers|scan?…`, `POST /v1/sql`;
//!   `GET /v1/openapi.json` (generated from these routes by `utoipa`).
//! * Each request becomes the ticket a Flight client would send and runs through the same
//!   admission queue, deadline, caps, metrics (`rpc="http"`) and query log.
//! * Answers are Arrow IPC streams by default, or JSON or CSV by `Accept` (or `format=`);
//!   `Accept-Encoding: zstd|gzip` compresses the body.
//! * Errors are RFC 9457 problem documents with the HTTP code of the gRPC status Flight gives.

mod answer;
mod body;
mod problem;
mod routes;

use std::{future::Future, net::SocketAddr};

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use tokio::net::TcpListener;
use tower_http::{compression::CompressionLayer, CompressionLevel};
use utoipa::OpenApi;

use crate::state::AppState;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    app: AppState,
    json_max_rows: u64,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Bridge HTTP API", description = "The Bridge tickets over HTTP: Arrow IPC streams (default), JSON or CSV. \
        Send `Authorization: Bearer <token>` when the server has auth on."),
    paths(routes::datasets, routes::p90, routes::outliers, routes::scan, routes::sql),
    components(schemas(problem::Problem, routes::DatasetInfo, routes::ColumnInfo, routes::SqlRequest, body::Format, routes::Output)),
    tags((name = "tickets", description = "the Flight tickets"), (name = "datasets", description = "what is served"))
)]
struct ApiDoc;

/// The OpenAPI document of the routes; with `datasets`, the `{name}` parameter lists them.
pub fn openapi(datasets: &[String]) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{path::ParameterIn, schema::ObjectBuilder, schema::Type};
    let mut doc = ApiDoc::openapi();
    if datasets.is_empty() {
        return doc;
    }
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "name" && p.parameter_in == ParameterIn::Path {
                    let names = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(datasets.to_vec()));
                    p.schema = Some(names.into());
                }
            }
        }
    }
    doc
}

/// Who is asking (None: Bridge runs anonymously), set by [`authorize`].
#[derive(Debug, Clone)]
pub struct Principal(pub Option<String>);

/// The same bearer tokens as Flight, when auth is on.
async fn authorize(State(http): State<HttpState>, mut request: Request, next: Next) -> Response {
    let mut principal = None;
    if let Some(auth) = http.app.auth() {
        let md = tonic::metadata::MetadataMap::from_headers(request.headers().clone());
        let peer = request.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
        match auth.check(&md, peer) {
            Ok(p) => principal = Some(p),
            Err(s) => {
                answer::count("auth", s.code());
                return problem::from_status(&s);
            }
        }
    }
    request.extensions_mut().insert(Principal(principal));
    next.run(request).await
}

async fn openapi_json(State(http): State<HttpState>) -> Response {
    let names: Vec<String> = http.app.catalog().datasets().map(|d| d.name.clone()).collect();
    Json(openapi(&names)).into_response()
}

/// An error as the HTTP API answers it (for the admin port's status API).
pub fn problem_response(s: &tonic::Status) -> Response {
    problem::from_status(s)
}

/// Answers a JSON ticket as JSON through the API's path (for the status page's form).
pub async fn answer_json(app: &AppState, fields: serde_json::Value, caller: crate::observe::Caller) -> Response {
    let http = HttpState { app: app.clone(), json_max_rows: 1000 };
    let kind = fields["query"].as_str().unwrap_or("").to_string();
    match crate::flight::ticket::try_decode(fields.to_string().as_bytes()) {
        Ok(ticket) => answer::answer(&http, ticket, body::Format::Json, caller).await,
        Err(e) => answer::refused(&kind, &tonic::Status::from(e)),
    }
}

/// The router (for tests that serve it themselves).
pub fn router(app: AppState, json_max_rows: u64) -> Router {
    let http = HttpState { app, json_max_rows };
    let api = Router::new()
        .route("/v1/datasets", get(routes::datasets))
        .route("/v1/datasets/{name}/p90", get(routes::p90))
        .route("/v1/datasets/{name}/outliers", get(routes::outliers))
        .route("/v1/datasets/{name}/scan", get(routes::scan))
        .route("/v1/sql", post(routes::sql))
        .route_layer(middleware::from_fn_with_state(http.clone(), authorize));
    Router::new()
        .merge(api)
        .route("/v1/openapi.json", get(openapi_json))
        .fallback(routes::not_found)
        // The fastest levels: Arrow compresses well even so, and a busy server's CPU goes to answers.
        .layer(CompressionLayer::new().gzip(true).zstd(true).quality(CompressionLevel::Fastest))
        .with_state(http)
}

/// Serves the HTTP API on `listener` (HTTP/1.1 with keep-alive, and HTTP/2 for clients that
/// ask) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    json_max_rows: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let service = router(app, json_max_rows).into_make_service_with_connect_info::<SocketAddr>();
    // Small answers must not wait for Nagle (as on the Flight port).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}
