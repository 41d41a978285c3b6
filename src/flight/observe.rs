//! Per-request accounting for streamed answers: metrics, and one log line per query.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use arrow_flight::FlightData;
use futures::StreamExt;
use tonic::Code;

use super::BoxStream;
use crate::metrics;

/// What a query's log line and metrics need; recorded when the stream ends or is dropped.
pub struct Observed {
    pub kind: &'static str,
    pub peer: Option<SocketAddr>,
    pub metadata: HashMap<String, String>,
    started: Instant,
    rows: Arc<AtomicU64>,
    bytes: u64,
    code: Option<Code>,
}

impl Observed {
    pub fn start(kind: &'static str, peer: Option<SocketAddr>, metadata: HashMap<String, String>) -> Self {
        metrics::RUNNING.inc();
        Observed { kind, peer, metadata, started: Instant::now(), rows: Arc::default(), bytes: 0, code: None }
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
        metrics::REQUESTS.with_label_values(&["DoGet", self.kind, &format!("{code:?}")]).inc();
        metrics::LATENCY.with_label_values(&["DoGet", self.kind]).observe(elapsed.as_secs_f64());
        metrics::ROWS_SENT.with_label_values(&[self.kind]).inc_by(rows);
        metrics::BYTES_SENT.with_label_values(&[self.kind]).inc_by(self.bytes);
        let md = |k: &str| self.metadata.get(k).map(String::as_str).unwrap_or("");
        tracing::info!(
            kind = self.kind,
            dataset = md("bridge.dataset"),
            manifest_version = md("bridge.manifest_version"),
            rows,
            bytes = self.bytes,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            peer = %self.peer.map(|p| p.to_string()).unwrap_or_default(),
            code = ?code,
            "query"
        );
    }
}

/// Wraps an encoded answer so that its end (or abandonment) is recorded once.
pub fn observe(stream: BoxStream<FlightData>, obs: Observed) -> BoxStream<FlightData> {
    Box::pin(futures::stream::unfold((stream, obs), |(mut stream, mut obs)| async move {
        let item = stream.next().await;
        match &item {
            Some(Ok(d)) => obs.bytes += d.data_body.len() as u64,
            Some(Err(s)) => obs.code = Some(s.code()),
            None => {
                obs.code.get_or_insert(Code::Ok);
            }
        }
        // At the end `obs` is dropped here, which records the request.
        item.map(|i| (i, (stream, obs)))
    }))
}
