//! The ingest pipeline, the only owner of a file's lifecycle: list → diff → fetch → convert →
//! publish. It decides when a file is fetched, ingested, retried, quarantined or removed.
//!
//! * **Newest first.** Files are ingested newest first, and every ingested file is published at
//!   once, so a dataset answers from its first file while the rest load.
//! * **One version at a time.** Each file's rows and its segment are staged in one DuckDB
//!   transaction; the snapshot the built-in queries read is computed inside it, and the commit
//!   and the snapshot swap happen together (see [`Engine::commit_then`]).
//! * **Failures.** A file that cannot be read into the dataset (format, schema) is quarantined
//!   until its object changes; anything that can pass (download, I/O, memory, disk) is retried
//!   with backoff (1 s doubling to 5 min) and never quarantined.
//! * **Suspect empty listings.** A listing that matches nothing while the dataset has files is
//!   not believed until [`EMPTY_LISTINGS_TO_BELIEVE`] listings in a row agree; until then the
//!   files keep serving and `status` shows why.

use std::{
    collections::BTreeMap,
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use chrono::Utc;
use duckdb::Connection;
use futures::StreamExt;
use tracing::Instrument;

use super::{fetch, segments, Catalog, Dataset, ObjectEntry, Progress, Quarantined, Retrying, Snapshot};
use crate::{
    engine::{self, IngestOutcome, NewFile, Reading, Staged},
    error::{Error, Result},
    metrics,
    segment::{Segment, Slot},
    tlc,
};

/// Empty listings in a row after which a dataset that had files is believed empty.
pub const EMPTY_LISTINGS_TO_BELIEVE: u32 = 3;

/// Files whose segments are built at once: on 2 cores, one file's DuckDB sort runs beside the
/// other's segment writing (six 3 M-row months: 1.17 M rows/s one at a time, 1.43 M two at a time).
const CONVERTING: usize = 2;

/// A built file: its segment and columns as mapped, or why it was not built.
type Built = std::result::Result<(Arc<Segment>, Vec<engine::Mapped>), IngestOutcome>;

/// A staged file: the store's outcome and, when staged, the file's segment.
type Converted = (IngestOutcome, Option<Arc<Segment>>);

/// What a pass carries from file to file.
struct Pass {
    quarantined: BTreeMap<String, Quarantined>,
    retrying: BTreeMap<String, Retrying>,
    last_error: Option<String>,
    progress: Progress,
    started: Instant,
}

impl Catalog {
    /// Lists `ds`, ingests new and changed files (newest first, each published as it lands),
    /// removes deleted ones and returns the manifest version. Listing errors keep the last good
    /// manifest. The work runs on its own task: a caller that goes away (a cancelled `refresh`
    /// action) does not stop it halfway.
    pub async fn refresh(self: &Arc<Self>, ds: &Arc<Dataset>) -> Result<u64> {
        let (catalog, ds) = (self.clone(), ds.clone());
        tokio::spawn(async move { catalog.refresh_now(&ds).await }).await.map_err(Error::internal)?
    }

    // Listing runs every refresh interval: its spans are debug, not exported (see `trace`).
    #[tracing::instrument(name = "refresh", level = "debug", skip_all, fields(dataset = %ds.name))]
    async fn refresh_now(&self, ds: &Arc<Dataset>) -> Result<u64> {
        let _one_at_a_time = ds.refreshing.lock().await;
        let before = ds.snapshot();
        metrics::STORE_REQUESTS.with_label_values(&["list"]).inc();
        let list = ds.location.list().instrument(tracing::debug_span!("object_store.list"));
        let listed = match list.await {
            Ok(l) => l,
            Err(e) => {
                metrics::store_error("list");
                ds.amend(|s| {
                    s.last_error = Some(e.to_string());
                    s.last_listing = Some(Utc::now());
                    s.progress.loading = false;
                });
                return Err(e);
            }
        };
        // The committed truth (a restart starts with an empty snapshot but a full store).
        let (engine, name) = (self.engine.clone(), ds.name.clone());
        let (_, known) =
            tokio::task::spawn_blocking(move || engine.manifest(&name)).await.map_err(Error::internal)??;
        if listed.is_empty() && !known.is_empty() {
            let seen = ds.empty_listings.fetch_add(1, Ordering::SeqCst) + 1;
            if seen < EMPTY_LISTINGS_TO_BELIEVE {
                let msg = format!(
                    "the listing matched no objects although the dataset has {} files; keeping them until \
                     {EMPTY_LISTINGS_TO_BELIEVE} listings in a row agree ({seen} so far)",
                    known.len()
                );
                tracing::warn!(dataset = %ds.name, "{msg}");
                ds.amend(|s| {
                    s.last_error = Some(msg);
                    s.last_listing = Some(Utc::now());
                });
                return Ok(before.version);
            }
        } else {
            ds.empty_listings.store(0, Ordering::SeqCst);
        }
        let mut pass = Pass {
            quarantined: before.quarantined.clone(),
            retrying: before.retrying.clone(),
            last_error: None,
            progress: Progress { loading: before.progress.loading, ..Progress::default() },
            started: Instant::now(),
        };
        pass.quarantined.retain(|key, _| listed.iter().any(|e| &e.key == key));
        pass.retrying.retain(|key, r| listed.iter().any(|e| &e.key == key && e.etag == r.etag));
        let mut todo: Vec<&ObjectEntry> = listed
            .iter()
            .filter(|e| !known.iter().any(|f| f.key == e.key && f.etag == e.etag && f.size == e.size))
            .filter(|e| pass.quarantined.get(&e.key).is_none_or(|q| q.etag != e.etag))
            .filter(|e| pass.retrying.get(&e.key).is_none_or(|r| r.next <= Instant::now()))
            .collect();
        // Newest first: the data people ask about most is served soonest.
        todo.sort_by(|a, b| b.last_modified.cmp(&a.last_modified).then_with(|| b.key.cmp(&a.key)));
        pass.progress.files_total = todo.len();
        ds.amend(|s| s.progress = pass.progress.clone());
        // Files convert CONVERTING at a time (one's DuckDB sort beside another's segment
        // writing); each is staged and published in the listing's order as soon as it is built.
        let mut built = futures::stream::iter(todo.into_iter().cloned())
            .map(|entry| self.build_one(ds, entry))
            .buffered(CONVERTING);
        while let Some((entry, outcome)) = built.next().await {
            self.publish_one(ds, &entry, outcome, &mut pass).await;
        }
        for gone in known.iter().filter(|f| !listed.iter().any(|e| e.key == f.key)) {
            let (engine, name, key) = (self.engine.clone(), ds.name.clone(), gone.key.clone());
            let staged = tokio::task::spawn_blocking(move || engine.remove(&name, &key, tlc::view_rank));
            let staged = staged.await.map_err(Error::internal)??;
            self.commit(ds, staged, &gone.key, None, &pass).await?;
            tracing::info!(dataset = %ds.name, key = %gone.key, "removed");
            metrics::FILE_EVENTS.with_label_values(&[ds.name.as_str(), "removed"]).inc();
        }
        pass.progress.loading = false;
        let version = self.republish(ds, &pass).await?;
        Ok(version)
    }

    /// Fetches one file and builds its segment (nothing is staged yet).
    #[tracing::instrument(name = "ingest_file", skip_all, fields(dataset = %ds.name, key = %entry.key))]
    async fn build_one(&self, ds: &Arc<Dataset>, entry: ObjectEntry) -> (ObjectEntry, Result<Built>) {
        let outcome = match fetch::local_copy(&ds.location, &entry, &self.cache_dir).await {
            Ok(local) => {
                let outcome = self.convert(ds, &entry, &local).await;
                fetch::release(&ds.location, &local).await;
                outcome
            }
            Err(e) => Ok(Err(IngestOutcome::Retry(format!("download failed: {e}")))),
        };
        (entry, outcome)
    }

    /// Stages and publishes one built file; records a refusal or a retry on failure.
    #[tracing::instrument(name = "publish_file", skip_all, fields(dataset = %ds.name, key = %entry.key))]
    async fn publish_one(&self, ds: &Arc<Dataset>, entry: &ObjectEntry, built: Result<Built>, pass: &mut Pass) {
        let outcome = match built {
            Ok(Ok((segment, columns))) => self.stage(ds, entry, segment, columns).await,
            Ok(Err(outcome)) => Ok((outcome, None)),
            Err(e) => Err(e),
        };
        pass.progress.files_done += 1;
        let name = ds.name.as_str();
        match outcome {
            Ok((IngestOutcome::Ingested(staged), segment)) => {
                let rows = staged.rows;
                pass.quarantined.remove(&entry.key);
                pass.retrying.remove(&entry.key);
                pass.progress.rows_done += rows;
                let secs = pass.started.elapsed().as_secs_f64().max(1e-3);
                pass.progress.rows_per_s = pass.progress.rows_done as f64 / secs;
                let left = pass.progress.files_total - pass.progress.files_done;
                pass.progress.eta_s = Some(secs / pass.progress.files_done as f64 * left as f64);
                let slot = segment.map(|s| {
                    let name = s.name().to_string();
                    let rebuild = self.converter(ds).rebuilder(&ds.location, &self.cache_dir, entry.clone(), name);
                    self.tier.admit(s, rebuild)
                });
                match self.commit(ds, *staged, &entry.key, slot.clone(), pass).await {
                    Ok(version) => {
                        metrics::FILE_EVENTS.with_label_values(&[name, "ingested"]).inc();
                        metrics::INGESTED_ROWS.with_label_values(&[name]).inc_by(rows);
                        let p = &pass.progress;
                        tracing::info!(dataset = name, key = %entry.key, rows, version, done = p.files_done,
                            total = p.files_total, rows_per_s = p.rows_per_s as u64,
                            eta_s = p.eta_s.unwrap_or(0.0) as u64, "ingested");
                    }
                    Err(e) => {
                        slot.inspect(|s| s.retire());
                        self.retry(ds, entry, pass, format!("could not publish: {e}"))
                    }
                }
            }
            Ok((IngestOutcome::Quarantined(reason), _)) => {
                tracing::warn!(dataset = name, key = %entry.key, %reason, "quarantined");
                metrics::FILE_EVENTS.with_label_values(&[name, "quarantined"]).inc();
                pass.retrying.remove(&entry.key);
                pass.quarantined.insert(entry.key.clone(), Quarantined { etag: entry.etag.clone(), reason });
                ds.amend(|s| (s.quarantined, s.progress) = (pass.quarantined.clone(), pass.progress.clone()));
            }
            Ok((IngestOutcome::Retry(reason), _)) => self.retry(ds, entry, pass, reason),
            Err(e) => self.retry(ds, entry, pass, e.to_string()),
        }
    }

    fn retry(&self, ds: &Dataset, entry: &ObjectEntry, pass: &mut Pass, reason: String) {
        let attempts = pass.retrying.get(&entry.key).filter(|r| r.etag == entry.etag).map_or(0, |r| r.attempts) + 1;
        let delay = Retrying::delay(attempts);
        tracing::warn!(dataset = %ds.name, key = %entry.key, %reason, attempts, retry_in = ?delay, "ingest failed; will retry");
        metrics::FILE_EVENTS.with_label_values(&[ds.name.as_str(), "fetch_failed"]).inc();
        pass.last_error = Some(format!("{}: {reason}", entry.key));
        let next = Instant::now() + delay;
        pass.retrying.insert(entry.key.clone(), Retrying { etag: entry.etag.clone(), attempts, next, reason });
        ds.amend(|s| {
            (s.retrying, s.progress, s.last_error) =
                (pass.retrying.clone(), pass.progress.clone(), pass.last_error.clone())
        });
    }

    /// Builds the file's segment from the local copy.
    #[tracing::instrument(name = "convert", skip_all)]
    async fn convert(&self, ds: &Dataset, entry: &ObjectEntry, local: &std::path::Path) -> Result<Built> {
        let convert = self.converter(ds);
        let name = segments::segment_name(&ds.location.url, &ds.name, &entry.key, &entry.etag);
        let path = local.to_path_buf();
        tokio::task::spawn_blocking(move || convert.run(&name, &path)).await.map_err(Error::internal)
    }

    /// Stages the built file (not yet committed); a file the store refuses retires its segment.
    async fn stage(
        &self,
        ds: &Dataset,
        entry: &ObjectEntry,
        segment: Arc<Segment>,
        columns: Vec<engine::Mapped>,
    ) -> Result<Converted> {
        let (engine, dataset, e) = (self.engine.clone(), ds.name.clone(), entry.clone());
        tokio::task::spawn_blocking(move || {
            let new = NewFile { key: &e.key, etag: &e.etag, size: e.size, last_modified: e.last_modified };
            let reading = Reading { columns: &columns, view_rank: tlc::view_rank };
            match engine.stage(&dataset, &new, segment.rows(), segment.data_path(), reading)? {
                staged @ IngestOutcome::Ingested(_) => Ok((staged, Some(segment))),
                other => {
                    segment.retire();
                    Ok((other, None))
                }
            }
        })
        .await
        .map_err(Error::internal)?
    }

    /// Commits `staged` and publishes the snapshot it makes, together; `key`'s live segment
    /// becomes `segment` (None: removed).
    #[tracing::instrument(name = "publish", skip_all, fields(key))]
    async fn commit(
        &self,
        ds: &Arc<Dataset>,
        staged: Staged,
        key: &str,
        segment: Option<Arc<Slot>>,
        pass: &Pass,
    ) -> Result<u64> {
        let (engine, ds2, key, tier) = (self.engine.clone(), ds.clone(), key.to_string(), self.tier.clone());
        let (quarantined, retrying, last_error, progress) =
            (pass.quarantined.clone(), pass.retrying.clone(), pass.last_error.clone(), pass.progress.clone());
        tokio::task::spawn_blocking(move || {
            let mut live = ds2.segments.lock().map_err(|_| Error::internal("segments lock poisoned"))?.clone();
            match &segment {
                Some(s) => live.insert(key.clone(), s.clone()),
                None => live.remove(&key),
            };
            let mut snap = snapshot_in(&staged.conn, &ds2.name, &live)?;
            (snap.quarantined, snap.retrying, snap.last_error, snap.progress) =
                (quarantined, retrying, last_error, progress);
            let version = snap.version;
            anchor(&snap);
            engine.commit_then(&staged.conn, || {
                ds2.replace_segment(&key, segment);
                ds2.publish(snap);
            })?;
            tier.enforce();
            Ok(version)
        })
        .await
        .map_err(Error::internal)?
    }

    /// Publishes the committed state again with the pass's bookkeeping (end of a pass).
    async fn republish(&self, ds: &Arc<Dataset>, pass: &Pass) -> Result<u64> {
        let (engine, ds2, tier) = (self.engine.clone(), ds.clone(), self.tier.clone());
        let (quarantined, retrying, last_error, progress) =
            (pass.quarantined.clone(), pass.retrying.clone(), pass.last_error.clone(), pass.progress.clone());
        tokio::task::spawn_blocking(move || {
            let live = ds2.segments.lock().map_err(|_| Error::internal("segments lock poisoned"))?.clone();
            let conn = engine.connect()?;
            engine.begin_read(&conn)?;
            let mut snap = snapshot_in(&conn, &ds2.name, &live)?;
            (snap.quarantined, snap.retrying, snap.last_error, snap.progress) =
                (quarantined, retrying, last_error, progress);
            snap.last_listing = Some(Utc::now());
            let version = snap.version;
            anchor(&snap);
            ds2.publish(snap);
            tier.enforce();
            Ok(version)
        })
        .await
        .map_err(Error::internal)?
    }
}

/// Anchors the first file (by key) of each schema among `snap`'s files: the file DuckDB binds
/// that part of the view with (the store lists each schema's files in key order).
fn anchor(snap: &Snapshot) {
    let mut seen: Vec<&arrow::datatypes::SchemaRef> = Vec::new();
    for slot in &snap.segments {
        let first = !seen.iter().any(|s| s.fields() == slot.schema().fields());
        if first {
            seen.push(slot.schema());
        }
        slot.anchor(first);
    }
}

/// The snapshot of `dataset` as `conn`'s transaction sees it; `live` are the segments open, by
/// key (each file has one: the pipeline builds it before staging the file, and a restart drops
/// files whose segment is gone).
fn snapshot_in(conn: &Connection, dataset: &str, live: &BTreeMap<String, Arc<Slot>>) -> Result<Snapshot> {
    let (version, files) = engine::manifest(conn, dataset)?;
    let columns = engine::view_columns(conn, dataset)?;
    let schema = engine::arrow_schema(conn, dataset)?;
    let segments = files
        .iter()
        .map(|f| live.get(&f.key).cloned().ok_or_else(|| Error::internal(format!("{} has no segment", f.key))))
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot { version, files, segments, columns, schema, last_listing: Some(Utc::now()), ..Snapshot::default() })
}
