//! Prometheus metrics (the `prometheus` crate's default registry), served on the admin port.

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

fn build<T>(r: prometheus::Result<T>) -> T {
    // Registration fails only for a duplicate or malformed name: a programming error caught by
    // the tests on first use.
    r.unwrap_or_else(|e| panic!("metric registration: {e}"))
}

/// Finished requests by RPC, ticket kind and gRPC status code.
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!(
        "bridge_requests_total",
        "Finished Flight requests by RPC, ticket kind and gRPC code",
        &["rpc", "kind", "code"]
    ))
});

/// Request latency, first byte to last, by RPC and ticket kind.
pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    build(register_histogram_vec!(
        "bridge_request_seconds",
        "Flight request latency until the last message was sent",
        &["rpc", "kind"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    ))
});

/// Rows and bytes streamed by ticket kind.
pub static ROWS_SENT: LazyLock<IntCounterVec> =
    LazyLock::new(|| build(register_int_counter_vec!("bridge_rows_sent_total", "Rows streamed to clients", &["kind"])));
pub static BYTES_SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!("bridge_bytes_sent_total", "Arrow IPC body bytes streamed to clients", &["kind"]))
});

/// Queries streaming right now.
pub static RUNNING: LazyLock<IntGauge> =
    LazyLock::new(|| build(register_int_gauge!("bridge_queries_running", "Queries currently streaming")));

/// Query threads at work right now (DuckDB or segment readers): falls back when a cancelled or
/// timed-out query has really stopped.
pub static ACTIVE: LazyLock<IntGauge> = LazyLock::new(|| {
    build(register_int_gauge!("bridge_query_threads_active", "Query threads working (DuckDB or segment reads)"))
});

/// A sequence number that moves whenever something a watcher may wait for changes: a query
/// starts, queues or ends, a query thread starts or stops, a dataset publishes, a store request
/// fails. The admin port's `/changes` long-poll (and the status page) wait on it instead of
/// polling.
static CHANGES: LazyLock<tokio::sync::watch::Sender<u64>> = LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Records that observable state changed (call it after the change).
pub fn changed() {
    CHANGES.send_modify(|n| *n += 1);
}

/// A receiver of the change sequence.
pub fn changes() -> tokio::sync::watch::Receiver<u64> {
    CHANGES.subscribe()
}

/// Counts a failed object-store request of `op` (list, get).
pub fn store_error(op: &str) {
    STORE_ERRORS.with_label_values(&[op]).inc();
    changed();
}

/// Counts a query thread as active while it lives.
pub struct ActiveGuard;

impl ActiveGuard {
    pub fn new() -> Self {
        ACTIVE.inc();
        changed();
        ActiveGuard
    }
}

impl Default for ActiveGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        ACTIVE.dec();
        changed();
    }
}

/// Registers the unlabelled metrics so they read 0 before first use.
pub fn init() {
    LazyLock::force(&RUNNING);
    LazyLock::force(&QUEUED);
    LazyLock::force(&ACTIVE);
    LazyLock::force(&CANCELLED);
    // Series that may stay at zero for a long time exist from the start (so `rate()` works).
    for op in ["list", "get"] {
        STORE_REQUESTS.with_label_values(&[op]);
        STORE_ERRORS.with_label_values(&[op]);
    }
}

/// Queries stopped by CancelFlightInfo.
pub static CANCELLED: LazyLock<IntCounter> = LazyLock::new(|| {
    build(register_int_counter!("bridge_queries_cancelled_total", "Queries stopped by CancelFlightInfo"))
});

/// Queries waiting for a slot.
pub static QUEUED: LazyLock<IntGauge> =
    LazyLock::new(|| build(register_int_gauge!("bridge_queries_queued", "Queries waiting for a slot")));

/// Per dataset: manifest version, files, rows, quarantined files, and when it was last listed.
pub static MANIFEST_VERSION: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    build(register_int_gauge_vec!("bridge_manifest_version", "Published manifest version", &["dataset"]))
});
pub static FILES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    build(register_int_gauge_vec!("bridge_dataset_files", "Files in the published manifest", &["dataset"]))
});
pub static QUARANTINED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    build(register_int_gauge_vec!("bridge_quarantined_files", "Objects currently quarantined", &["dataset"]))
});
pub static LAST_LISTING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    build(register_int_gauge_vec!(
        "bridge_last_listing_timestamp_seconds",
        "Unix time of the last successful listing (manifest lag = now - this)",
        &["dataset"]
    ))
});

/// Ingest progress per dataset: files the current pass still has to ingest, rows ingested.
pub static INGEST_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    build(register_int_gauge_vec!(
        "bridge_ingest_pending_files",
        "Files the current ingest pass has yet to finish",
        &["dataset"]
    ))
});
pub static INGESTED_ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!("bridge_ingested_rows_total", "Rows ingested (rate = ingest rows/s)", &["dataset"]))
});

/// Ingest outcomes per dataset: ingested, quarantined, removed, fetch_failed.
pub static FILE_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!(
        "bridge_file_events_total",
        "Files ingested, quarantined, removed, or whose fetch failed",
        &["dataset", "event"]
    ))
});

/// Object-store requests and errors by operation (list, get).
pub static STORE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!("bridge_object_store_requests_total", "Object-store requests", &["op"]))
});
pub static STORE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!("bridge_object_store_errors_total", "Object-store requests that failed", &["op"]))
});

/// Files served from the local cache instead of downloaded again.
pub static CACHE_HITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!("bridge_cache_hits_total", "Objects found already downloaded", &["location"]))
});

/// Row groups a query read, from the cache of decoded row groups or decoded from the segment.
pub static ROW_GROUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!(
        "bridge_row_groups_read_total",
        "Segment row groups queries read, from the decoded cache or decoded from the file",
        &["from"]
    ))
});

/// The replicas this one sees (`--peers`, `--peers-dns`): 1 while one answers its health checks.
pub static MEMBER_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    build(register_int_gauge_vec!(
        "bridge_cluster_member_up",
        "Replicas of this service and whether each answered its last health check (this one included)",
        &["member", "me"]
    ))
});

/// Split answers handed out: FlightInfo endpoints by the replica named first in their locations.
pub static ENDPOINTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    build(register_int_counter_vec!(
        "bridge_split_endpoints_total",
        "Endpoints of split answers this replica planned, by the replica named first",
        &["member"]
    ))
});

/// Publishes the members, forgetting those no longer listed.
pub fn cluster_members(members: &[crate::cluster::Member]) {
    MEMBER_UP.reset();
    for m in members {
        MEMBER_UP.with_label_values(&[m.address.as_str(), if m.me { "true" } else { "false" }]).set(m.alive as i64);
    }
    changed();
}

/// The text exposition of every registered metric.
pub fn render() -> String {
    let families = prometheus::gather();
    prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_else(|e| format!("# encode error: {e}\n"))
}
