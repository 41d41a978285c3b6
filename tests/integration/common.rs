//! The fixture: generated months in a temp dir, an in-process server, a Flight client.

use std::{path::PathBuf, time::Duration};

use arrow::{datatypes::SchemaRef, record_batch::RecordBatch};
use arrow_flight::{FlightClient, Ticket};
use bridge::{catalog::DatasetSpec, config::Config, gen, AppState};
use futures::TryStreamExt;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub client: FlightClient,
    /// The connection, for other gRPC services on the same port.
    pub channel: tonic::transport::Channel,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

pub const ROWS: usize = 40_000;

impl Fixture {
    /// Generates `months` (YYYY-MM) of `ROWS` trips each and serves them as dataset `yellow`.
    pub async fn start(months: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("yellow");
        for m in months {
            gen::write_month(&data, m.parse().expect("month"), ROWS, 7).expect("generate");
        }
        let glob = format!("yellow={}/*.parquet", data.display());
        let config = Config {
            datasets: vec![glob.parse::<DatasetSpec>().expect("spec")],
            cache_dir: dir.path().join("cache"),
            duckdb_memory_limit: "1GB".into(),
            batch_rows: 8192,
            ..Config::default()
        };
        let state = AppState::open(&config).expect("open");
        state.catalog().refresh_all().await.expect("first listing");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = state.clone();
        let server = tokio::spawn(async move {
            bridge::server::serve(listener, serving, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .expect("connect");
        Fixture {
            _dir: dir,
            data,
            client: FlightClient::new(channel.clone()),
            channel,
            addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// DoGet with a JSON ticket: the schema (with metadata) and every batch.
    pub async fn get(&mut self, json: &str) -> Result<(SchemaRef, Vec<RecordBatch>), tonic::Status> {
        let mut stream = self.client.do_get(Ticket::new(json.to_string())).await.map_err(status)?;
        let mut batches = Vec::new();
        while let Some(b) = stream.try_next().await.map_err(status)? {
            batches.push(b);
        }
        let schema = stream.schema().cloned().expect("a schema arrives even for empty results");
        Ok((schema, batches))
    }

    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.data)
            .expect("data dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        files.sort();
        files
    }
}

/// The gRPC status inside a FlightError.
pub fn status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
