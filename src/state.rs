//! Shared state: a cheap-`Clone` handle over `Arc`.

use std::sync::Arc;

use crate::{
    catalog::{Catalog, Location},
    config::Config,
    engine::{Engine, EngineOptions},
    error::{Error, Result},
    limits::Admission,
};

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<Catalog>,
    admission: Admission,
    batch_rows: usize,
}

impl AppState {
    /// Opens the engine and the catalog described by `config` (nothing is listed yet).
    pub fn open(config: &Config) -> Result<Self> {
        let threads =
            config.duckdb_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let cache_dir = config.cache_dir.clone();
        std::fs::create_dir_all(&cache_dir).map_err(Error::internal)?;
        // Locations first: they validate the dataset URLs, and user SQL may read the local ones.
        let locations =
            config.datasets.iter().map(|d| Location::parse(&d.url, &config.s3)).collect::<Result<Vec<_>>>()?;
        let mut allowed_dirs = vec![std::fs::canonicalize(&cache_dir).map_err(Error::internal)?];
        allowed_dirs.extend(locations.iter().filter_map(|l| l.local_root.clone()));
        let engine = Arc::new(Engine::open(&EngineOptions {
            dir: cache_dir.join("store"),
            allowed_dirs,
            memory_limit: config.duckdb_memory_limit.clone(),
            threads,
        })?);
        let catalog = Catalog::new(config, locations, engine)?;
        let admission = Admission::new(config.limits());
        Ok(AppState { inner: Arc::new(Inner { catalog: Arc::new(catalog), admission, batch_rows: config.batch_rows }) })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    pub fn batch_rows(&self) -> usize {
        self.inner.batch_rows
    }
}
