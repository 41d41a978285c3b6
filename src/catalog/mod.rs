//! Datasets: where their files live, what is ingested, and the watcher that keeps them fresh.
//!
//! The committed truth (files, versions, rows) lives in DuckDB, so every query pins one version
//! through its transaction. Each dataset also keeps an immutable [`Snapshot`] (swapped atomically
//! with `arc-swap`, at the same moment as the DuckDB commit) for cheap reads: the segments the
//! built-in queries read, columns for validation, files for ListFlights and `status`, quarantined
//! and retrying files, ingest progress and the last listing's outcome. [`refresh`] is the ingest
//! pipeline.

mod dataset;
mod fetch;
mod refresh;
mod segments;

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

pub use crate::store::{Location, ObjectEntry};
pub use dataset::{Dataset, Progress, Quarantined, Retrying, Snapshot};
pub use refresh::EMPTY_LISTINGS_TO_BELIEVE;
pub use segments::dir as segment_dir;

use crate::{
    config::Config,
    engine::Engine,
    error::{Error, Result},
    segment::{Segment, Tier},
    tlc::Alias,
};

pub use crate::config::DatasetSpec;

#[derive(Debug)]
pub struct Catalog {
    datasets: BTreeMap<String, Arc<Dataset>>,
    engine: Arc<Engine>,
    cache_dir: PathBuf,
    min_version_wait: Duration,
    aliases: Arc<Vec<Alias>>,
    /// The segments on local disk, bounded by `--cache-max-bytes`.
    tier: Arc<Tier>,
}

impl Catalog {
    /// The datasets of `config`, at the already-parsed `locations` (one per dataset, in order).
    /// The store forgets datasets no longer configured and rows from a dataset's old location;
    /// leftover partial downloads are removed.
    pub fn new(config: &Config, locations: Vec<Location>, engine: Arc<Engine>) -> Result<Self> {
        let mut datasets = BTreeMap::new();
        for (spec, location) in config.datasets.iter().zip(locations) {
            let refresh_interval = config
                .dataset_refresh
                .iter()
                .rev()
                .find(|(name, _)| name == &spec.name)
                .map_or(config.refresh_interval, |(_, d)| *d);
            let dataset = Dataset::new(spec.name.clone(), location, refresh_interval);
            if datasets.insert(spec.name.clone(), Arc::new(dataset)).is_some() {
                return Err(Error::invalid(format!("dataset {} is named twice", spec.name)));
            }
        }
        if let Some((name, _)) = config.dataset_refresh.iter().find(|(n, _)| !datasets.contains_key(n)) {
            return Err(Error::invalid(format!("--dataset-refresh names {name:?}, which is not a dataset")));
        }
        if let Some(a) =
            config.column_aliases.iter().find(|a| a.dataset.as_ref().is_some_and(|d| !datasets.contains_key(d)))
        {
            return Err(Error::invalid(format!(
                "--column-alias names dataset {:?}, which is not a dataset",
                a.dataset
            )));
        }
        let keep: Vec<&str> = datasets.keys().map(String::as_str).collect();
        for gone in engine.forget_others(&keep)? {
            tracing::info!(dataset = %gone, "dropped a dataset that is no longer configured");
        }
        for ds in datasets.values() {
            if engine.claim(&ds.name, &ds.location.url)? {
                tracing::warn!(dataset = %ds.name, location = %ds.location.url,
                    "the dataset's location changed: dropped the rows of the old one");
            }
        }
        fetch::remove_partial_downloads(&config.cache_dir);
        // Absolute: the datasets' views name the segments by path.
        let cache_dir = std::fs::canonicalize(&config.cache_dir).map_err(Error::internal)?;
        let tier = Tier::new(config.cache_max_bytes);
        crate::segment::set_decoded_cache_bytes(config.decoded_cache_bytes);
        let aliases = Arc::new(config.column_aliases.clone());
        let mut live = HashSet::new();
        for ds in datasets.values() {
            let convert = segments::Convert {
                engine: engine.clone(),
                aliases: aliases.clone(),
                dir: segments::dir(&cache_dir),
                dataset: ds.name.clone(),
            };
            live.extend(reopen(&convert, &tier, &cache_dir, ds)?);
        }
        match segments::prune(&segments::dir(&cache_dir), &live) {
            Ok(n) if n > 0 => tracing::info!(removed = n, "removed unused segment files"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune segment files"),
        }
        Ok(Catalog { datasets, engine, cache_dir, min_version_wait: config.min_version_wait, aliases, tier })
    }

    /// How long a ticket's `min_version` may wait.
    pub fn min_version_wait(&self) -> Duration {
        self.min_version_wait
    }

    /// Where the downloads, the store and the segments live.
    pub fn cache_dir(&self) -> &std::path::Path {
        &self.cache_dir
    }

    /// The segments on local disk.
    pub fn tier(&self) -> &Arc<Tier> {
        &self.tier
    }

    /// How to convert `ds`'s files.
    fn converter(&self, ds: &Dataset) -> segments::Convert {
        segments::Convert {
            engine: self.engine.clone(),
            aliases: self.aliases.clone(),
            dir: segments::dir(&self.cache_dir),
            dataset: ds.name.clone(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn datasets(&self) -> impl Iterator<Item = &Arc<Dataset>> {
        self.datasets.values()
    }

    /// The dataset called `name`, or NOT_FOUND naming the ones that exist.
    pub fn dataset(&self, name: &str) -> Result<&Arc<Dataset>> {
        self.datasets.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.datasets.keys().map(String::as_str).collect();
            Error::NotFound(format!("unknown dataset {name:?}; known datasets: {}", known.join(", ")))
        })
    }

    /// Re-lists every dataset once (the `refresh` action, tests).
    pub async fn refresh_all(self: &Arc<Self>) -> Result<()> {
        for ds in self.datasets.values() {
            self.refresh(ds).await?;
        }
        Ok(())
    }

    /// Loads every dataset in the background (each answers as soon as its first file is in),
    /// prunes unused segments once all have had a first pass, then re-lists each dataset on its
    /// interval until `shutdown` resolves. Failures back off exponentially (up to 30 s) and never
    /// hot-loop; the last good manifest keeps serving. The returned task ends when every dataset
    /// has had its first pass.
    pub fn spawn_watchers(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut first_passes = Vec::new();
        for ds in self.datasets.values() {
            let (catalog, ds, mut shutdown) = (self.clone(), ds.clone(), shutdown.clone());
            let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
            first_passes.push(first_rx);
            tokio::spawn(async move {
                let mut first = Some(first_tx);
                let mut delay = Duration::ZERO;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                    let outcome = catalog.refresh(&ds).await;
                    if let Some(tx) = first.take() {
                        let snap = ds.snapshot();
                        tracing::info!(dataset = %ds.name, files = snap.files.len(), rows = snap.rows(),
                            quarantined = snap.quarantined.len(), "dataset loaded");
                        let _ = tx.send(());
                    }
                    delay = match outcome {
                        Ok(_) => ds.refresh_interval,
                        Err(e) => {
                            tracing::warn!(dataset = %ds.name, error = %e, "listing failed; backing off");
                            (delay.max(ds.refresh_interval) * 2).min(Duration::from_secs(30))
                        }
                    };
                }
            });
        }
        tokio::spawn(async move {
            for rx in first_passes {
                let _ = rx.await;
            }
        })
    }
}

/// Opens the segments of `ds`'s committed files (a restart); a file whose segment is missing or
/// unreadable leaves the manifest, so the next listing ingests it again. Returns the names open.
fn reopen(
    convert: &segments::Convert,
    tier: &Arc<Tier>,
    cache_dir: &std::path::Path,
    ds: &Dataset,
) -> Result<Vec<String>> {
    let engine = &convert.engine;
    let (_, files) = engine.manifest(&ds.name)?;
    let mut names = Vec::new();
    for f in files {
        let name = segments::segment_name(&ds.location.url, &ds.name, &f.key, &f.etag);
        match Segment::open(&convert.dir, &name) {
            Ok(seg) => {
                let entry = ObjectEntry {
                    key: f.key.clone(),
                    size: f.size,
                    etag: f.etag.clone(),
                    last_modified: f.last_modified,
                };
                let rebuild = convert.rebuilder(&ds.location, cache_dir, entry, name.clone());
                ds.replace_segment(&f.key, Some(tier.admit(seg, rebuild)));
                names.push(name);
            }
            Err(e) => {
                tracing::warn!(dataset = %ds.name, key = %f.key, error = %e, "segment missing: the file will be ingested again");
                let staged = engine.remove(&ds.name, &f.key, crate::tlc::view_rank)?;
                engine.commit_then(&staged.conn, || ())?;
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dataset_specs() {
        let s: DatasetSpec = "yellow=s3://b/t/*.parquet".parse().expect("valid");
        assert_eq!(s.name, "yellow");
        assert_eq!(s.url, "s3://b/t/*.parquet");
        assert!("yellow".parse::<DatasetSpec>().is_err());
        assert!("1x=./d".parse::<DatasetSpec>().is_err());
        assert!("a-b=./d".parse::<DatasetSpec>().is_err());
    }
}
