//! Command line and environment. Every flag has a `BRIDGE_*` variable; secrets are never echoed.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

mod values;

pub use values::{ColumnAlias, DatasetSpec, Month};

#[derive(Debug, Parser)]
#[command(name = "bridge", version, about = "Arrow Flight server for Parquet datasets, powered by DuckDB")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the datasets over Arrow Flight (the default).
    Serve,
    /// Write deterministic TLC-shaped yellow-taxi months as Parquet.
    Gen(GenArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Output directory.
    #[arg(long, default_value = "./data/yellow")]
    pub out: PathBuf,
    /// First month, YYYY-MM.
    #[arg(long, default_value = "2024-01")]
    pub month: Month,
    /// How many consecutive months.
    #[arg(long, default_value_t = 1)]
    pub months: usize,
    /// Rows per month.
    #[arg(long, default_value_t = 3_000_000)]
    pub rows: usize,
    /// Random seed; the same seed gives the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to serve Flight on.
    #[arg(long, env = "BRIDGE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// A dataset: NAME=GLOB, e.g. yellow=./data/yellow/*.parquet or yellow=s3://bucket/trips/*.parquet.
    /// Repeat for more datasets (comma-separated in the env var).
    #[arg(long = "dataset", env = "BRIDGE_DATASETS", value_delimiter = ',')]
    pub datasets: Vec<DatasetSpec>,
    /// Address of the admin HTTP port (/metrics, /healthz, /readyz), e.g. 127.0.0.1:9464. Off when unset.
    #[arg(long, env = "BRIDGE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Address of the HTTP API (the tickets over HTTP: Arrow IPC, JSON, CSV), e.g.
    /// 127.0.0.1:8080. Off when unset.
    #[arg(long, env = "BRIDGE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// OTLP/gRPC endpoint for traces, e.g. http://127.0.0.1:4317. Off when unset.
    #[arg(long, env = "BRIDGE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Most rows a JSON answer of the HTTP API may hold (JSON is built whole; Arrow and CSV stream).
    #[arg(long, env = "BRIDGE_HTTP_JSON_MAX_ROWS", default_value_t = 100_000)]
    pub http_json_max_rows: u64,
    /// Where Bridge keeps its segments (the local copy of every file), its catalog and downloads.
    #[arg(long, env = "BRIDGE_CACHE_DIR", default_value = "./.cache/bridge")]
    pub cache_dir: PathBuf,
    /// Most bytes of segments kept on local disk, e.g. 20GB, 512MiB, 1000000 (unset: no bound).
    /// Past it the least recently used ones not being read are removed, and built again from
    /// their source when a query needs them.
    #[arg(long, env = "BRIDGE_CACHE_MAX_BYTES", value_parser = parse_bytes)]
    pub cache_max_bytes: Option<u64>,
    /// Memory for decoded row groups kept for the next query, e.g. 256MiB, 4GiB. A bulk `scan`
    /// keeps a file's rows decoded only when they take at most half of it: make it larger than
    /// twice a hot file's Arrow size to serve that file's scans from memory.
    #[arg(long, env = "BRIDGE_DECODED_CACHE_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub decoded_cache_bytes: u64,
    /// How often each dataset's location is re-listed, e.g. 1s, 500ms, 1m.
    #[arg(long, env = "BRIDGE_REFRESH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// A dataset's own refresh interval, overriding --refresh-interval: NAME=DURATION, e.g.
    /// yellow=10s. Repeat for more datasets (comma-separated in the env var).
    #[arg(long = "dataset-refresh", env = "BRIDGE_DATASET_REFRESH", value_delimiter = ',', value_parser = parse_refresh)]
    pub dataset_refresh: Vec<(String, Duration)>,
    /// Read a file's column under another name: [DATASET.]FROM=TO, e.g.
    /// green.lpep_pickup_datetime=tpep_pickup_datetime (matched case-insensitively; without
    /// DATASET it applies to every dataset). Applied before the built-in TLC era names. Repeat
    /// for more (comma-separated in the env var).
    #[arg(long = "column-alias", env = "BRIDGE_COLUMN_ALIASES", value_delimiter = ',')]
    pub column_aliases: Vec<ColumnAlias>,
    /// Longest a ticket's `min_version` waits for the dataset to reach that manifest version.
    #[arg(long, env = "BRIDGE_MIN_VERSION_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub min_version_wait: Duration,
    /// DuckDB memory limit.
    #[arg(long, env = "BRIDGE_DUCKDB_MEMORY_LIMIT", default_value = "4GB")]
    pub duckdb_memory_limit: String,
    /// DuckDB worker threads (default: the number of cores).
    #[arg(long, env = "BRIDGE_DUCKDB_THREADS")]
    pub duckdb_threads: Option<usize>,
    /// Most disk DuckDB may spill to under --cache-dir (large sorts and joins); past it a query
    /// fails with RESOURCE_EXHAUSTED instead of filling the disk.
    #[arg(long, env = "BRIDGE_DUCKDB_SPILL_LIMIT", default_value = "10GB")]
    pub duckdb_spill_limit: String,
    /// Target rows per Arrow batch sent to clients.
    #[arg(long, env = "BRIDGE_BATCH_ROWS", default_value_t = 65_536)]
    pub batch_rows: usize,
    /// Queries that may stream at once; more wait in a queue.
    #[arg(long, env = "BRIDGE_MAX_RUNNING_QUERIES", default_value_t = 16)]
    pub max_running_queries: usize,
    /// Queries that may wait for a slot; beyond that, UNAVAILABLE at once.
    #[arg(long, env = "BRIDGE_MAX_QUEUED_QUERIES", default_value_t = 512)]
    pub max_queued_queries: usize,
    /// Longest a query waits for a slot before UNAVAILABLE (retriable).
    #[arg(long, env = "BRIDGE_QUEUE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
    /// Longest a query may run, including streaming its result; the client's own deadline wins if sooner.
    #[arg(long, env = "BRIDGE_QUERY_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub query_timeout: Duration,
    /// On SIGTERM/SIGINT, how long running streams may take to finish before they are cancelled.
    #[arg(long, env = "BRIDGE_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Largest result in rows (unset: no limit).
    #[arg(long, env = "BRIDGE_MAX_RESULT_ROWS")]
    pub max_result_rows: Option<u64>,
    /// Largest result in Arrow bytes (unset: no limit).
    #[arg(long, env = "BRIDGE_MAX_RESULT_BYTES")]
    pub max_result_bytes: Option<u64>,
    /// Users allowed to Handshake with Basic credentials: a file of `user:password` lines.
    #[arg(long, env = "BRIDGE_BASIC_USERS_FILE")]
    pub basic_users_file: Option<PathBuf>,
    /// Static bearer tokens accepted on every call: a file with one token per line.
    #[arg(long, env = "BRIDGE_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Bearer tokens of operators on the admin port's status API (one per line): they see the
    /// SQL of every user's queries. Other valid tokens see their own.
    #[arg(long, env = "BRIDGE_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<PathBuf>,
    /// HS256 key for the bearer tokens Handshake issues (≥ 16 bytes); random per process if unset.
    #[arg(long, env = "BRIDGE_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// How long an issued bearer token is valid.
    #[arg(long, env = "BRIDGE_TOKEN_TTL", default_value = "60m", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// Serve without authentication on a non-loopback address (refused otherwise).
    #[arg(long, env = "BRIDGE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// TLS certificate chain (PEM); with --tls-key, the Flight port speaks TLS only.
    #[arg(long, env = "BRIDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "BRIDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to: mutual TLS.
    #[arg(long, env = "BRIDGE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The other replicas serving the same datasets, as HOST:PORT of their Flight ports
    /// (comma-separated; this replica's own --advertise address may be among them). Big answers
    /// are split across the replicas that answer their health checks.
    #[arg(long, env = "BRIDGE_PEERS", value_delimiter = ',', conflicts_with = "peers_dns")]
    pub peers: Vec<String>,
    /// A DNS name whose addresses are the replicas, NAME:PORT (a Kubernetes headless Service,
    /// e.g. bridge-peers.default.svc.cluster.local:50051); resolved again every --peers-refresh.
    #[arg(long, env = "BRIDGE_PEERS_DNS")]
    pub peers_dns: Option<String>,
    /// The HOST:PORT clients reach this replica at: the location FlightInfos name for it. Needed
    /// with --peers or --peers-dns.
    #[arg(long, env = "BRIDGE_ADVERTISE")]
    pub advertise: Option<String>,
    /// How often the replicas are resolved and health-checked: one that stops answering leaves
    /// new FlightInfos within this interval.
    #[arg(long, env = "BRIDGE_PEERS_REFRESH", default_value = "2s", value_parser = parse_duration)]
    pub peers_refresh: Duration,
    /// Most endpoints one FlightInfo splits an answer into (ADBC opens them all at once).
    #[arg(long, env = "BRIDGE_MAX_ENDPOINTS", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_endpoints: u16,
    /// Longest a client connection lives: then the server asks the client to reconnect (running
    /// streams finish first), so load balancers spread long-lived HTTP/2 connections again.
    #[arg(long, env = "BRIDGE_MAX_CONNECTION_AGE", default_value = "10m", value_parser = parse_duration)]
    pub max_connection_age: Duration,
    #[command(flatten)]
    pub s3: S3Options,
    /// Write the bound address to this file once the datasets are loaded (for test harnesses).
    #[arg(long, env = "BRIDGE_ADDR_FILE", hide = true)]
    pub addr_file: Option<PathBuf>,
}

/// S3 / MinIO settings, named as object_store names them. Unset values fall back to the standard
/// `AWS_*` environment variables (AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, ...).
#[derive(Debug, Clone, Default, Args)]
pub struct S3Options {
    /// S3 endpoint URL, e.g. http://127.0.0.1:9000 for MinIO.
    #[arg(long = "s3-endpoint", env = "BRIDGE_S3_ENDPOINT")]
    pub endpoint: Option<String>,
    /// S3 region.
    #[arg(long = "s3-region", env = "BRIDGE_S3_REGION")]
    pub region: Option<String>,
    /// Access key id.
    #[arg(long = "s3-access-key-id", env = "BRIDGE_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret access key.
    #[arg(long = "s3-secret-access-key", env = "BRIDGE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
    /// Allow plain http:// endpoints.
    #[arg(long = "s3-allow-http", env = "BRIDGE_S3_ALLOW_HTTP")]
    pub allow_http: bool,
    /// Send unsigned requests (public buckets).
    #[arg(long = "s3-anonymous", env = "BRIDGE_S3_ANONYMOUS")]
    pub anonymous: bool,
    /// Timeout of one object-store request (default: object_store's, 30 s).
    #[arg(long = "s3-timeout", env = "BRIDGE_S3_TIMEOUT", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Total time object_store may spend retrying one request (default 20 s).
    #[arg(long = "s3-retry-timeout", env = "BRIDGE_S3_RETRY_TIMEOUT", value_parser = parse_duration)]
    pub retry_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            datasets: Vec::new(),
            admin_listen: None,
            http_listen: None,
            http_json_max_rows: 100_000,
            otlp_endpoint: None,
            cache_dir: PathBuf::from("./.cache/bridge"),
            cache_max_bytes: None,
            decoded_cache_bytes: crate::segment::DECODED_CACHE_BYTES,
            refresh_interval: Duration::from_secs(1),
            dataset_refresh: Vec::new(),
            column_aliases: Vec::new(),
            min_version_wait: Duration::from_secs(10),
            duckdb_memory_limit: "4GB".into(),
            duckdb_threads: None,
            duckdb_spill_limit: "10GB".into(),
            batch_rows: 65_536,
            max_running_queries: 16,
            max_queued_queries: 512,
            queue_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(300),
            max_result_rows: None,
            max_result_bytes: None,
            drain_timeout: Duration::from_secs(30),
            basic_users_file: None,
            api_tokens_file: None,
            admin_tokens_file: None,
            jwt_secret_file: None,
            token_ttl: Duration::from_secs(3600),
            allow_anonymous: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            peers: Vec::new(),
            peers_dns: None,
            advertise: None,
            peers_refresh: Duration::from_secs(2),
            max_endpoints: 32,
            max_connection_age: Duration::from_secs(600),
            s3: S3Options::default(),
            addr_file: None,
        }
    }
}

/// `NAME=DURATION` for `--dataset-refresh`.
pub fn parse_refresh(s: &str) -> Result<(String, Duration), String> {
    let (name, d) = s.split_once('=').ok_or_else(|| format!("{s:?} is not NAME=DURATION (e.g. yellow=10s)"))?;
    Ok((name.trim().to_string(), parse_duration(d)?))
}

/// `1000000`, `500KB`, `20GB` (powers of 1000) or `512MiB`, `2GiB` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, ""), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}; use e.g. 1000000, 500MB, 2GiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("bad size unit in {s:?}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")),
    };
    Ok((n * scale) as u64)
}

/// `250ms`, `1s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}; use e.g. 500ms, 1s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?}; use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1000000"), Ok(1_000_000));
        assert_eq!(parse_bytes("20GB"), Ok(20_000_000_000));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5 kb"), Ok(1500));
        assert!(parse_bytes("3 furlongs").is_err());
        assert!(parse_bytes("-1GB").is_err());
    }

    #[test]
    fn cli_parses_datasets_and_s3() {
        let cli = Cli::try_parse_from([
            "bridge",
            "--dataset",
            "a=./x/*.parquet",
            "--dataset",
            "b=s3://bk/k/*.parquet",
            "--s3-allow-http",
            "--dataset-refresh",
            "b=10s",
        ])
        .expect("parses");
        assert_eq!(cli.serve.datasets.len(), 2);
        assert_eq!(cli.serve.dataset_refresh, [("b".to_string(), Duration::from_secs(10))]);
        assert!(cli.serve.s3.allow_http);
    }
}
