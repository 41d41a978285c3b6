//! Per-request accounting for streamed answers, on either wire (Flight, HTTP): metrics, and one
//! log line per query.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use futures::StreamExt;
use tonic::{Code, Status};

use crate::metrics;

/// A boxed stream of answer messages (Flight data, HTTP body chunks).
pub type BoxStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Runs an RPC other than DoGet and records its code and latency.
pub async fn counted<T>(rpc: &str, call: impl std::future::Future<Output = Result<T, Status>>) -> Result<T, Status> {
    let started = Instant::now();
    let result = call.await;
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    };
    metrics::REQUESTS.with_label_values(&[rpc, "", &format!("{code:?}")]).inc();
    metrics::LATENCY.with_label_values(&[rpc, ""]).observe(started.elapsed().as_secs_f64());
    result
}

/// Counts a request that ended before streaming (refused, or a non-query route) on `rpc`.
pub fn count(rpc: &str, kind: &str, code: Code) {
    metrics::REQUESTS.with_label_values(&[rpc, kind, &format!("{code:?}")]).inc();
}

/// The request's id: the client's `x-request-id` when it sent a sane one, else a new one. It
/// comes back in the response headers and is in the query's log line.
pub fn request_id(md: &tonic::metadata::MetadataMap) -> String {
    md.get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| format!("{:016x}", rand::random::<u64>()), String::from)
}

/// Who asked: the request's id, the peer's address and the authenticated principal.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub request_id: String,
    pub peer: Option<SocketAddr>,
    /// None when Bridge runs anonymously.
    pub principal: Option<String>,
}

/// What a query's log line and metrics need; recorded when the stream ends or is dropped.
pub struct Observed {
    /// The wire: "DoGet" or "http".
    pub rpc: &'static str,
    pub kind: &'static str,
    pub caller: Caller,
    pub metadata: HashMap<String, String>,
    /// The SQL of a `sql` query (kept for the status page, shown by its rules).
    sql: Option<String>,
    /// The `stream` span, open while the answer streams, and its trace id.
    span: Option<tracing::Span>,
    trace_id: Option<String>,
    started: Instant,
    rows: Arc<AtomicU64>,
    bytes: u64,
    code: Option<Code>,
}

impl Observed {
    pub fn start(rpc: &'static str, kind: &'static str, caller: Caller, metadata: HashMap<String, String>) -> Self {
        metrics::RUNNING.inc();
        metrics::changed();
        Observed {
            rpc,
            kind,
            caller,
            metadata,
            sql: None,
            span: None,
            trace_id: None,
            started: Instant::now(),
            rows: Arc::default(),
            bytes: 0,
            code: None,
        }
    }

    /// Counts the duration from `at` (when the request arrived: planning and admission count too).
    pub fn since(mut self, at: Instant) -> Self {
        self.started = at;
        self
    }

    /// Keeps the query's SQL text for the status page.
    pub fn with_sql(mut self, sql: Option<String>) -> Self {
        self.sql = sql;
        self
    }

    /// Opens the `stream` span (a child of the current RPC span) for the answer's lifetime.
    pub fn with_stream_span(mut self) -> Self {
        let span = tracing::info_span!("stream", kind = self.kind);
        self.trace_id = crate::trace::trace_id(&span);
        self.span = Some(span);
        self
    }

    /// The query's trace id (for the `x-trace-id` response header).
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// Records the query as failed with `code` (when it ends before any body is sent).
    pub fn fail(&mut self, code: Code) {
        self.code = Some(code);
    }

    /// The row counter the encoder adds to as batches leave the query.
    pub fn rows(&self) -> Arc<AtomicU64> {
        self.rows.clone()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        metrics::RUNNING.dec();
        // No code: the client went away before the end.
        let code = self.code.unwrap_or(Code::Cancelled);
        let elapsed = self.started.elapsed();
        let rows = self.rows.load(Ordering::Relaxed);
        metrics::REQUESTS.with_label_values(&[self.rpc, self.kind, &format!("{code:?}")]).inc();
        metrics::LATENCY.with_label_values(&[self.rpc, self.kind]).observe(elapsed.as_secs_f64());
        metrics::ROWS_SENT.with_label_values(&[self.kind]).inc_by(rows);
        metrics::BYTES_SENT.with_label_values(&[self.kind]).inc_by(self.bytes);
        let md = |k: &str| {
            // SQL answers key their freshness by dataset: `bridge.manifest_version.<dataset>`.
            let keyed = self.metadata.iter().find(|(key, _)| key.starts_with(&format!("{k}.")));
            self.metadata.get(k).or(keyed.map(|(_, v)| v)).map(String::as_str).unwrap_or("")
        };
        let dataset = match md("bridge.dataset") {
            "" => {
                self.metadata.keys().find_map(|k| k.strip_prefix("bridge.manifest_version.")).unwrap_or("").to_string()
            }
            d => d.to_string(),
        };
        crate::recent::record(crate::recent::Finished {
            at: chrono::Utc::now(),
            rpc: self.rpc,
            kind: self.kind,
            dataset: dataset.clone(),
            manifest_version: md("bridge.manifest_version").parse().ok(),
            rows,
            bytes: self.bytes,
            duration_ms: elapsed.as_secs_f64() * 1e3,
            code: format!("{code:?}"),
            peer: self.caller.peer.map(|p| p.to_string()).unwrap_or_default(),
            principal: self.caller.principal.clone(),
            sql: self.sql.take(),
        });
        tracing::info!(
            request_id = %self.caller.request_id,
            rpc = self.rpc,
            kind = self.kind,
            dataset,
            manifest_version = md("bridge.manifest_version"),
            rows,
            bytes = self.bytes,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            peer = %self.caller.peer.map(|p| p.to_string()).unwrap_or_default(),
            principal = self.caller.principal.as_deref().unwrap_or(""),
            trace_id = self.trace_id.as_deref().unwrap_or(""),
            code = ?code,
            "query"
        );
        metrics::changed();
    }
}

/// Bounds on one answer: its deadline and result-size caps.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub deadline: tokio::time::Instant,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
}

/// Wraps an encoded answer: enforces `bounds` (ending the stream with DEADLINE_EXCEEDED or
/// RESOURCE_EXHAUSTED, which drops — and so stops — the query), and records its end or
/// abandonment once.
/// `size` is the body bytes of one message (what the byte cap and `bridge_bytes_sent_total` count).
pub fn observe<T: Send + 'static>(
    stream: BoxStream<T>,
    obs: Observed,
    bounds: Bounds,
    size: fn(&T) -> usize,
) -> BoxStream<T> {
    // Fused: some consumers (HTTP compression) poll once more after the end.
    Box::pin(
        futures::stream::unfold(Some((stream, obs)), move |state| async move {
            let (mut stream, mut obs) = state?;
            let item = match tokio::time::timeout_at(bounds.deadline, stream.next()).await {
                Ok(item) => item,
                Err(_) => Some(Err(Status::deadline_exceeded(
                    "the query ran past its deadline (--query-timeout or the client's timeout) and was stopped",
                ))),
            };
            let over = |rows: u64, bytes: u64| {
                let rows_over = bounds.max_rows.filter(|m| rows > *m).map(|m| format!("{m} rows"));
                let bytes_over = bounds.max_bytes.filter(|m| bytes > *m).map(|m| format!("{m} bytes"));
                rows_over.or(bytes_over)
            };
            let item = match item {
                Some(Ok(d)) => {
                    obs.bytes += size(&d) as u64;
                    match over(obs.rows.load(Ordering::Relaxed), obs.bytes) {
                        Some(limit) => Some(Err(Status::resource_exhausted(format!(
                            "the result is larger than this server's limit of {limit}; add a limit, project fewer \
                         columns or narrow the range"
                        )))),
                        None => Some(Ok(d)),
                    }
                }
                other => other,
            };
            match item {
                Some(Ok(d)) => Some((Ok(d), Some((stream, obs)))),
                Some(Err(s)) => {
                    obs.code = Some(s.code());
                    // Yield the error, then end: the query (`stream`) is dropped with the next state.
                    drop(stream);
                    Some((Err(s), None))
                }
                None => {
                    obs.code.get_or_insert(Code::Ok);
                    None // `obs` is dropped here, which records the request.
                }
            }
        })
        .fuse(),
    )
}
