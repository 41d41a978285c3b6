//! Traces: OpenTelemetry spans from `tracing` spans (`tracing-opentelemetry`), exported over
//! OTLP/gRPC when `--otlp-endpoint` is set.
//!
//! * One span per query RPC (`DoGet`, `http`), continuing the client's W3C `traceparent` (gRPC
//!   metadata or HTTP header), with children `admission`, `plan` and `stream`; ingest spans
//!   (`refresh`, `ingest_file`, `fetch`, `convert`, `publish`) and object-store calls
//!   (`object_store.list`, `object_store.get`).
//! * Trace ids are made whether or not spans are exported, so the query log line and the
//!   `x-trace-id` response header always carry one.

use opentelemetry::{
    propagation::Extractor,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::{Error, Result};

/// The tracer provider (exporting to `endpoint`, if any) and the `tracing` layer that feeds it.
/// Call inside the Tokio runtime (the OTLP/gRPC exporter runs on it).
pub fn init<S>(endpoint: Option<&str>) -> Result<(SdkTracerProvider, impl tracing_subscriber::Layer<S>)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder().with_service_name("bridge").build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| Error::invalid(format!("--otlp-endpoint {endpoint}: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bridge"));
    Ok((provider, layer))
}

/// Reads `traceparent`/`tracestate` from HTTP headers (gRPC metadata is HTTP/2 headers).
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The span of one query RPC (`DoGet` or `http`), a child of the client's trace when the request
/// carries a `traceparent`.
pub fn rpc_span(name: &'static str, headers: &http::HeaderMap) -> Span {
    let span = tracing::info_span!("rpc", otel.name = name, otel.kind = "server", rpc.system = name);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// The trace id of `span` (32 hex digits), or None when no tracer is installed.
pub fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let id = context.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}
