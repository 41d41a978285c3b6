//! Datasets: where their files live, what is ingested, and the watcher that keeps them fresh.
//!
//! The committed truth (files, versions, rows) lives in DuckDB, so every query pins one version
//! through its transaction. Each dataset also keeps an immutable [`Snapshot`] (swapped atomically
//! with `arc-swap`) for cheap reads: columns for validation, files for ListFlights and `status`,
//! quarantined files and the last listing's outcome.

mod fetch;
mod location;

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};

pub use location::{Location, ObjectEntry};

use crate::{
    config::Config,
    engine::{Column, Engine, FileRow, IngestOutcome},
    error::{Error, Result},
    metrics,
    segment::Segment,
};

/// `name=glob` from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub name: String,
    pub url: String,
}

impl std::str::FromStr for DatasetSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, url) = s.split_once('=').ok_or_else(|| format!("dataset {s:?} is not NAME=GLOB"))?;
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("dataset name {name:?} must be letters, digits and _ (starting with a letter)"));
        }
        if url.is_empty() {
            return Err(format!("dataset {name} has an empty location"));
        }
        Ok(DatasetSpec { name: name.to_string(), url: url.to_string() })
    }
}

/// A file that could not be ingested, kept out until its object changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub etag: String,
    pub reason: String,
}

/// What one dataset looks like now. Immutable; replaced whole after each refresh. A query that
/// holds a snapshot reads exactly its files' segments, even after newer versions are published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub files: Vec<FileRow>,
    /// The segments of `files` (taxi-shaped datasets only), in the same order.
    pub segments: Vec<Arc<Segment>>,
    pub columns: Vec<Column>,
    /// The Arrow schema of the dataset's view; segments are read into it.
    pub schema: SchemaRef,
    pub quarantined: BTreeMap<String, Quarantined>,
    pub last_listing: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            version: 0,
            files: Vec::new(),
            segments: Vec::new(),
            columns: Vec::new(),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            quarantined: BTreeMap::new(),
            last_listing: None,
            last_error: None,
        }
    }
}

impl Snapshot {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
    /// The dataset's spelling of `name`, matched case-insensitively.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug)]
pub struct Dataset {
    pub name: String,
    pub location: Location,
    pub refresh_interval: Duration,
    state: ArcSwap<Snapshot>,
    /// The published manifest version, for tickets that wait for one (`min_version`).
    version: tokio::sync::watch::Sender<u64>,
    refreshing: tokio::sync::Mutex<()>,
    /// The live segment of each ingested file, by key.
    segments: Mutex<BTreeMap<String, Arc<Segment>>>,
}

impl Dataset {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    /// Waits up to `wait` until the dataset has published manifest version `min`.
    pub async fn wait_for_version(&self, min: u64, wait: Duration) -> Result<()> {
        let mut rx = self.version.subscribe();
        let reached = matches!(tokio::time::timeout(wait, rx.wait_for(|v| *v >= min)).await, Ok(Ok(_)));
        if reached {
            return Ok(());
        }
        Err(Error::NotReady(format!(
            "dataset {} is at manifest version {}, not yet {min} (waited {wait:?}); retry later",
            self.name,
            *self.version.borrow()
        )))
    }

    fn publish(&self, snapshot: Snapshot) {
        let version = snapshot.version;
        let name = [self.name.as_str()];
        metrics::MANIFEST_VERSION.with_label_values(&name).set(version as i64);
        metrics::FILES.with_label_values(&name).set(snapshot.files.len() as i64);
        metrics::QUARANTINED.with_label_values(&name).set(snapshot.quarantined.len() as i64);
        if snapshot.last_error.is_none() {
            if let Some(t) = snapshot.last_listing {
                metrics::LAST_LISTING.with_label_values(&name).set(t.timestamp());
            }
        }
        self.state.store(Arc::new(snapshot));
        self.version.send_replace(version);
    }

    /// Makes `segment` the live segment of `key` (None: the file is gone) and retires the old one.
    fn replace_segment(&self, key: &str, segment: Option<Arc<Segment>>) {
        let Ok(mut live) = self.segments.lock() else { return };
        let old = match segment {
            Some(s) => live.insert(key.to_string(), s.clone()).filter(|old| old.name() != s.name()),
            None => live.remove(key),
        };
        if let Some(old) = old {
            old.retire();
        }
    }

    /// Names of the live segments.
    fn segment_names(&self) -> Vec<String> {
        self.segments.lock().map(|l| l.values().map(|s| s.name().to_string()).collect()).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Catalog {
    datasets: BTreeMap<String, Arc<Dataset>>,
    engine: Arc<Engine>,
    cache_dir: PathBuf,
    min_version_wait: Duration,
}

impl Catalog {
    /// The datasets of `config`, at the already-parsed `locations` (one per dataset, in order).
    pub fn new(config: &Config, locations: Vec<Location>, engine: Arc<Engine>) -> Result<Self> {
        let mut datasets = BTreeMap::new();
        for (spec, location) in config.datasets.iter().zip(locations) {
            let refresh_interval = config
                .dataset_refresh
                .iter()
                .rev()
                .find(|(name, _)| name == &spec.name)
                .map_or(config.refresh_interval, |(_, d)| *d);
            let dataset = Dataset {
                name: spec.name.clone(),
                location,
                refresh_interval,
                state: ArcSwap::from_pointee(Snapshot::default()),
                version: tokio::sync::watch::Sender::new(0),
                refreshing: tokio::sync::Mutex::new(()),
                segments: Mutex::new(BTreeMap::new()),
            };
            if datasets.insert(spec.name.clone(), Arc::new(dataset)).is_some() {
                return Err(Error::invalid(format!("dataset {} is named twice", spec.name)));
            }
        }
        if let Some((name, _)) = config.dataset_refresh.iter().find(|(n, _)| !datasets.contains_key(n)) {
            return Err(Error::invalid(format!("--dataset-refresh names {name:?}, which is not a dataset")));
        }
        Ok(Catalog { datasets, engine, cache_dir: config.cache_dir.clone(), min_version_wait: config.min_version_wait })
    }

    /// How long a ticket's `min_version` may wait.
    pub fn min_version_wait(&self) -> Duration {
        self.min_version_wait
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

    /// Deletes segment files that no dataset uses (call once at startup, after `refresh_all`).
    pub fn prune_segments(&self) -> Result<usize> {
        let live: HashSet<String> = self.datasets.values().flat_map(|d| d.segment_names()).collect();
        self.engine.prune_segments(&live)
    }

    /// Re-lists every dataset once (startup and the `refresh` action).
    pub async fn refresh_all(&self) -> Result<()> {
        for ds in self.datasets.values() {
            self.refresh(ds).await?;
        }
        Ok(())
    }

    /// Lists `ds`, ingests new and changed files, removes deleted ones, publishes a snapshot.
    /// Returns the manifest version. Listing errors keep the last good manifest.
    pub async fn refresh(&self, ds: &Dataset) -> Result<u64> {
        let _one_at_a_time = ds.refreshing.lock().await;
        let before = ds.snapshot();
        metrics::STORE_REQUESTS.with_label_values(&["list"]).inc();
        let listed = match ds.location.list().await {
            Ok(l) => l,
            Err(e) => {
                metrics::STORE_ERRORS.with_label_values(&["list"]).inc();
                let mut next = (*before).clone();
                next.last_error = Some(e.to_string());
                next.last_listing = Some(Utc::now());
                ds.publish(next);
                return Err(e);
            }
        };
        let engine = self.engine.clone();
        let name = ds.name.clone();
        let (_, known) =
            tokio::task::spawn_blocking(move || engine.manifest(&name)).await.map_err(Error::internal)??;
        let mut quarantined = before.quarantined.clone();
        quarantined.retain(|key, _| listed.iter().any(|e| &e.key == key));
        let mut last_error = None;
        for entry in &listed {
            let unchanged = known.iter().any(|f| f.key == entry.key && f.etag == entry.etag && f.size == entry.size);
            let still_bad = quarantined.get(&entry.key).is_some_and(|q| q.etag == entry.etag);
            if unchanged || still_bad {
                continue;
            }
            match self.ingest(ds, entry).await {
                Ok(IngestOutcome::Ingested { rows, version, segment }) => {
                    tracing::info!(dataset = %ds.name, key = %entry.key, rows, version, "ingested");
                    metrics::FILE_EVENTS.with_label_values(&[ds.name.as_str(), "ingested"]).inc();
                    ds.replace_segment(&entry.key, segment);
                    quarantined.remove(&entry.key);
                }
                Ok(IngestOutcome::Quarantined(reason)) => {
                    tracing::warn!(dataset = %ds.name, key = %entry.key, %reason, "quarantined");
                    metrics::FILE_EVENTS.with_label_values(&[ds.name.as_str(), "quarantined"]).inc();
                    quarantined.insert(entry.key.clone(), Quarantined { etag: entry.etag.clone(), reason });
                }
                Err(e) => {
                    tracing::warn!(dataset = %ds.name, key = %entry.key, error = %e, "fetch failed; will retry");
                    metrics::FILE_EVENTS.with_label_values(&[ds.name.as_str(), "fetch_failed"]).inc();
                    last_error = Some(format!("{}: {e}", entry.key));
                }
            }
        }
        for gone in known.iter().filter(|f| !listed.iter().any(|e| e.key == f.key)) {
            let (engine, name, key) = (self.engine.clone(), ds.name.clone(), gone.key.clone());
            let version =
                tokio::task::spawn_blocking(move || engine.remove(&name, &key)).await.map_err(Error::internal)??;
            tracing::info!(dataset = %ds.name, key = %gone.key, version, "removed");
            metrics::FILE_EVENTS.with_label_values(&[ds.name.as_str(), "removed"]).inc();
            ds.replace_segment(&gone.key, None);
        }
        self.publish(ds, quarantined, last_error).await
    }

    async fn ingest(&self, ds: &Dataset, entry: &ObjectEntry) -> Result<IngestOutcome> {
        let local = fetch::local_copy(&ds.location, entry, &self.cache_dir).await?;
        let (engine, name, e, path) = (self.engine.clone(), ds.name.clone(), entry.clone(), local.clone());
        let outcome =
            tokio::task::spawn_blocking(move || engine.ingest(&name, &e, &path)).await.map_err(Error::internal)?;
        fetch::release(&ds.location, &local).await;
        outcome
    }

    async fn publish(
        &self,
        ds: &Dataset,
        quarantined: BTreeMap<String, Quarantined>,
        last_error: Option<String>,
    ) -> Result<u64> {
        let (engine, name) = (self.engine.clone(), ds.name.clone());
        let known = ds.segments.lock().map_err(|_| Error::internal("segments lock poisoned"))?.clone();
        let (version, files, columns, schema, segments) = tokio::task::spawn_blocking(move || -> Result<_> {
            let (version, files) = engine.manifest(&name)?;
            let columns = crate::engine::columns_of(&engine, &name)?;
            let schema = crate::engine::arrow_schema(&engine, &name)?;
            let mut segments = Vec::with_capacity(files.len());
            for f in &files {
                match known.get(&f.key) {
                    Some(s) => segments.push(s.clone()),
                    // Ingested before a restart: open its segment (or rebuild it from the table).
                    None => segments.extend(engine.segment(&name, f)?),
                }
            }
            Ok((version, files, columns, schema, segments))
        })
        .await
        .map_err(Error::internal)??;
        {
            let mut live = ds.segments.lock().map_err(|_| Error::internal("segments lock poisoned"))?;
            for (f, s) in files.iter().zip(&segments) {
                live.entry(f.key.clone()).or_insert_with(|| s.clone());
            }
        }
        // A dataset without taxi columns has no segments; the built-in tickets refuse it.
        let segments = if segments.len() == files.len() { segments } else { Vec::new() };
        ds.publish(Snapshot {
            version,
            files,
            segments,
            columns,
            schema,
            quarantined,
            last_listing: Some(Utc::now()),
            last_error,
        });
        Ok(version)
    }

    /// Re-lists each dataset on its interval until `shutdown` resolves. Failures back off
    /// exponentially (up to 30 s) and never hot-loop; the last good manifest keeps serving.
    pub fn spawn_watchers(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        for ds in self.datasets.values() {
            let (catalog, ds, mut shutdown) = (self.clone(), ds.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut delay = ds.refresh_interval;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                    delay = match catalog.refresh(&ds).await {
                        Ok(_) => ds.refresh_interval,
                        Err(e) => {
                            tracing::warn!(dataset = %ds.name, error = %e, "listing failed; backing off");
                            (delay * 2).min(Duration::from_secs(30))
                        }
                    };
                }
            });
        }
    }
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
