//! One dataset: its location, its published [`Snapshot`], and the state of its ingest.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Location;
use crate::{
    engine::{Column, FileRow},
    error::{Error, Result},
    metrics,
    segment::Slot,
};

/// A file that could not be ingested, kept out until its object changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub etag: String,
    pub reason: String,
}

/// A file whose ingest failed for a reason that can pass; tried again at `next`.
#[derive(Debug, Clone)]
pub struct Retrying {
    pub etag: String,
    pub attempts: u32,
    pub next: Instant,
    pub reason: String,
}

impl Retrying {
    /// Backoff after `attempts` failures: 1 s, 2 s, 4 s … up to 5 minutes.
    pub fn delay(attempts: u32) -> Duration {
        Duration::from_secs(1u64 << attempts.saturating_sub(1).min(9)).min(Duration::from_secs(300))
    }
}

/// Where the current ingest pass stands.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// True until the first pass after start (list, then ingest everything listed) has ended.
    pub loading: bool,
    /// Files this pass has to ingest, and how many it has finished (ingested or refused).
    pub files_total: usize,
    pub files_done: usize,
    pub rows_done: u64,
    pub rows_per_s: f64,
    /// Seconds left at the pass's pace so far (None before the first file).
    pub eta_s: Option<f64>,
}

impl Progress {
    /// "3 of 204 files ingested" while a pass runs.
    pub fn describe(&self) -> String {
        if self.files_total == 0 {
            "no file is being ingested".to_string()
        } else {
            format!("{} of {} files ingested", self.files_done, self.files_total)
        }
    }
}

/// What one dataset looks like now. Immutable; replaced whole after each step of a refresh. A
/// query that holds a snapshot reads exactly its files' segments, even after newer versions are
/// published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub files: Vec<FileRow>,
    /// The segments of `files`, in the same order (pin one to read it).
    pub segments: Vec<Arc<Slot>>,
    pub columns: Vec<Column>,
    /// The Arrow schema of the dataset's view; segments are read into it.
    pub schema: SchemaRef,
    pub quarantined: BTreeMap<String, Quarantined>,
    /// Files waiting to be tried again, with the reason they failed.
    pub retrying: BTreeMap<String, Retrying>,
    pub progress: Progress,
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
            retrying: BTreeMap::new(),
            progress: Progress { loading: true, ..Progress::default() },
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
    /// UNAVAILABLE saying what the dataset waits for, when it has no readable file yet.
    pub fn require_rows(&self, dataset: &str) -> Result<()> {
        if !self.columns.is_empty() {
            return Ok(());
        }
        let waiting = if self.progress.files_total > 0 {
            self.progress.describe()
        } else if let Some(e) = &self.last_error {
            format!("the last listing failed: {e}")
        } else if self.progress.loading {
            "the first listing has not finished".to_string()
        } else {
            "its location has no readable Parquet file".to_string()
        };
        Err(Error::NotReady(format!("dataset {dataset} has no readable file yet ({waiting}); retry later")))
    }
}

#[derive(Debug)]
pub struct Dataset {
    pub name: String,
    pub location: Location,
    pub refresh_interval: Duration,
    pub(super) state: ArcSwap<Snapshot>,
    /// The published manifest version, for tickets that wait for one (`min_version`).
    version: tokio::sync::watch::Sender<u64>,
    pub(super) refreshing: tokio::sync::Mutex<()>,
    /// The live segment of each ingested file, by key.
    pub(super) segments: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Listings in a row that matched nothing while the dataset had files (see `refresh`).
    pub(super) empty_listings: std::sync::atomic::AtomicU32,
}

impl Dataset {
    pub(super) fn new(name: String, location: Location, refresh_interval: Duration) -> Self {
        Dataset {
            name,
            location,
            refresh_interval,
            state: ArcSwap::from_pointee(Snapshot::default()),
            version: tokio::sync::watch::Sender::new(0),
            refreshing: tokio::sync::Mutex::new(()),
            segments: Mutex::new(BTreeMap::new()),
            empty_listings: std::sync::atomic::AtomicU32::new(0),
        }
    }

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

    pub(super) fn publish(&self, snapshot: Snapshot) {
        let version = snapshot.version;
        let name = [self.name.as_str()];
        metrics::MANIFEST_VERSION.with_label_values(&name).set(version as i64);
        metrics::FILES.with_label_values(&name).set(snapshot.files.len() as i64);
        metrics::QUARANTINED.with_label_values(&name).set(snapshot.quarantined.len() as i64);
        metrics::INGEST_PENDING
            .with_label_values(&name)
            .set(snapshot.progress.files_total.saturating_sub(snapshot.progress.files_done) as i64);
        if snapshot.last_error.is_none() {
            if let Some(t) = snapshot.last_listing {
                metrics::LAST_LISTING.with_label_values(&name).set(t.timestamp());
            }
        }
        self.state.store(Arc::new(snapshot));
        self.version.send_replace(version);
        metrics::changed();
    }

    /// Publishes the current snapshot with `change` applied (same version and files).
    pub(super) fn amend(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut next = (*self.snapshot()).clone();
        change(&mut next);
        self.publish(next);
    }

    /// Makes `segment` the live segment of `key` (None: the file is gone) and retires the old one.
    pub(super) fn replace_segment(&self, key: &str, segment: Option<Arc<Slot>>) {
        let Ok(mut live) = self.segments.lock() else { return };
        let old = match segment {
            Some(s) => live.insert(key.to_string(), s.clone()).filter(|old| old.name() != s.name()),
            None => live.remove(key),
        };
        if let Some(old) = old {
            old.retire();
        }
    }

    /// What the `status` action and the status page show of the dataset.
    pub fn describe(&self) -> serde_json::Value {
        let ds = self;
        let snap = ds.snapshot();
        serde_json::json!({
            "name": ds.name,
            "location": ds.location.url,
            "refresh_interval_ms": ds.refresh_interval.as_millis() as u64,
            "manifest_version": snap.version,
            "rows": snap.rows(),
            "files": snap.files.iter().map(|f| serde_json::json!({
                "key": f.key, "etag": f.etag, "size": f.size, "rows": f.rows,
                "last_modified": f.last_modified.to_rfc3339(),
            })).collect::<Vec<_>>(),
            "quarantined": snap.quarantined.iter().map(|(key, q)| serde_json::json!({
                "key": key, "etag": q.etag, "reason": q.reason,
            })).collect::<Vec<_>>(),
            "retrying": snap.retrying.iter().map(|(key, r)| serde_json::json!({
                "key": key, "etag": r.etag, "attempts": r.attempts, "reason": r.reason,
                "next_in_ms": r.next.saturating_duration_since(std::time::Instant::now()).as_millis() as u64,
            })).collect::<Vec<_>>(),
            "progress": snap.progress,
            "columns": snap.columns.iter().map(|c| serde_json::json!({"name": c.name, "type": c.ty})).collect::<Vec<_>>(),
            "last_listing": snap.last_listing.map(|t| t.to_rfc3339()),
            "last_error": snap.last_error,
        })
    }
}
