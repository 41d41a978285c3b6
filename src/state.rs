//! Shared state: a cheap-`Clone` handle over `Arc`.

use std::sync::Arc;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::{
    auth::Auth,
    catalog::{Catalog, Location},
    cluster::Cluster,
    config::Config,
    engine::{Engine, EngineOptions},
    error::{Error, Result},
    flight::Running,
    limits::Admission,
};

/// The object store's S3 settings from the `--s3-*` flags.
fn s3_settings(config: &Config) -> crate::store::S3Settings {
    let s3 = &config.s3;
    crate::store::S3Settings {
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
        allow_http: s3.allow_http,
        anonymous: s3.anonymous,
        request_timeout: s3.request_timeout,
        retry_timeout: s3.retry_timeout,
    }
}

/// TLS from `--tls-cert`/`--tls-key`, with client certificates required by `--tls-client-ca`.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|e| Error::invalid(format!("cannot read {}: {e}", p.display())))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<Catalog>,
    admission: Admission,
    auth: Option<Auth>,
    tls: Option<ServerTlsConfig>,
    batch_rows: usize,
    running: Running,
    cluster: Arc<Cluster>,
    max_connection_age: std::time::Duration,
}

impl AppState {
    /// Opens the engine and the catalog described by `config` (nothing is listed yet).
    pub fn open(config: &Config) -> Result<Self> {
        let threads =
            config.duckdb_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let cache_dir = config.cache_dir.clone();
        std::fs::create_dir_all(&cache_dir).map_err(Error::internal)?;
        // Locations first: they validate the dataset URLs, and user SQL may read the local ones.
        let locations = config
            .datasets
            .iter()
            .map(|d| Location::parse(&d.url, &s3_settings(config)))
            .collect::<Result<Vec<_>>>()?;
        // Before segments were the one local copy, the rows also lived in a DuckDB store here.
        let old_store = cache_dir.join("store");
        if old_store.is_dir() {
            std::fs::remove_dir_all(&old_store).map_err(Error::internal)?;
            tracing::info!(path = %old_store.display(), "removed the previous layout's store");
        }
        let objects = cache_dir.join("objects");
        std::fs::create_dir_all(&objects).map_err(Error::internal)?;
        let segments = crate::catalog::segment_dir(&cache_dir);
        std::fs::create_dir_all(&segments).map_err(Error::internal)?;
        // DuckDB reads the downloads it converts and the segments the datasets' views list.
        let mut allowed_dirs = vec![
            std::fs::canonicalize(&objects).map_err(Error::internal)?,
            std::fs::canonicalize(&segments).map_err(Error::internal)?,
        ];
        allowed_dirs.extend(locations.iter().filter_map(|l| l.local_root.clone()));
        let engine = Arc::new(Engine::open(&EngineOptions {
            dir: cache_dir.join("catalog"),
            allowed_dirs,
            memory_limit: config.duckdb_memory_limit.clone(),
            threads,
            spill_limit: config.duckdb_spill_limit.clone(),
            prelude: crate::queries::macros::sql(),
        })?);
        let catalog = Catalog::new(config, locations, engine)?;
        let admission = Admission::new(crate::limits::Limits::from_config(config));
        let tls = tls_config(config)?;
        let inner = Inner {
            cluster: Cluster::from_config(config, tls.is_some())?,
            max_connection_age: config.max_connection_age,
            catalog: Arc::new(catalog),
            admission,
            auth: Auth::from_config(config)?,
            tls,
            batch_rows: config.batch_rows,
            running: Running::default(),
        };
        Ok(AppState { inner: Arc::new(inner) })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// None: anonymous.
    pub fn auth(&self) -> Option<&Auth> {
        self.inner.auth.as_ref()
    }

    pub fn tls(&self) -> Option<&ServerTlsConfig> {
        self.inner.tls.as_ref()
    }

    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// How answers are cut into messages for a client that accepts `message_bytes` (None: the
    /// 2 MiB default).
    pub fn shape(&self, message_bytes: Option<usize>) -> crate::queries::native::Shape {
        let message_bytes = message_bytes.unwrap_or(crate::queries::native::MESSAGE_BYTES);
        crate::queries::native::Shape { batch_rows: self.inner.batch_rows, message_bytes }
    }

    /// The replicas (this process alone unless `--peers` or `--peers-dns`).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// Longest a client connection lives (`--max-connection-age`).
    pub fn max_connection_age(&self) -> std::time::Duration {
        self.inner.max_connection_age
    }

    /// The DoGets in flight, for CancelFlightInfo.
    pub fn running(&self) -> &Running {
        &self.inner.running
    }
}
