//! Shared state: a cheap-`Clone` handle over `Arc`.

use std::sync::Arc;

use crate::{
    catalog::Catalog,
    config::Config,
    engine::{Engine, EngineOptions},
    error::Result,
};

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<Catalog>,
    batch_rows: usize,
}

impl AppState {
    /// Opens the engine and the catalog described by `config` (nothing is listed yet).
    pub fn open(config: &Config) -> Result<Self> {
        let threads =
            config.duckdb_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let mut catalog_dirs = Vec::new();
        let specs = &config.datasets;
        let cache_dir = config.cache_dir.clone();
        std::fs::create_dir_all(&cache_dir).map_err(crate::error::Error::internal)?;
        // Locations first: they validate the dataset URLs and find the local roots.
        for spec in specs {
            let loc = crate::catalog::Location::parse(&spec.url, &config.s3)?;
            if let Some(root) = loc.local_root {
                catalog_dirs.push(root);
            }
        }
        let engine = Arc::new(Engine::open(&EngineOptions {
            dir: cache_dir.join("store"),
            allowed_dirs: [
                vec![std::fs::canonicalize(&cache_dir).map_err(crate::error::Error::internal)?],
                catalog_dirs,
            ]
            .concat(),
            memory_limit: config.duckdb_memory_limit.clone(),
            threads,
        })?);
        let catalog = Catalog::new(specs, &config.s3, config.refresh_interval, engine, cache_dir)?;
        Ok(AppState { inner: Arc::new(Inner { catalog: Arc::new(catalog), batch_rows: config.batch_rows }) })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    pub fn batch_rows(&self) -> usize {
        self.inner.batch_rows
    }
}
