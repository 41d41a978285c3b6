//! The segments of a dataset's files (see [`crate::segment`]): built by the pipeline from a
//! file's local copy, found again after a restart, pruned when their file goes.
//!
//! A segment's name hashes (location, dataset, key, ETag): a restart finds the segments of the
//! files already ingested, and another location's rows can never be taken for this one's.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use sha2::{Digest, Sha256};

use super::{fetch, Location, ObjectEntry};
use crate::{
    engine::{self, Engine, IngestOutcome, Mapped},
    error::{Error, Result},
    rule,
    segment::{self, Rebuild, Segment},
    tlc::{self, Alias},
};

/// The columns that make a file taxi-shaped (the built-in tickets' columns).
const TLC: [&str; 3] = ["tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance"];

/// The segment layout's version: a new layout gets new names, so old segments are rebuilt (and
/// then pruned) instead of misread.
const LAYOUT: &str = "segment-v4";

/// The segment name of one version of one file at one location.
pub fn segment_name(url: &str, dataset: &str, key: &str, etag: &str) -> String {
    let digest = Sha256::digest(format!("{LAYOUT}\n{url}\n{dataset}\n{key}\n{etag}"));
    hex::encode(&digest[..16])
}

/// Where segments live, under the cache directory.
pub fn dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("segments")
}

/// Whether the columns make the file taxi-shaped.
fn is_taxi(columns: &[Mapped]) -> bool {
    TLC.iter().all(|c| columns.iter().any(|col| col.name == *c))
}

/// The quantile of `trip_distance` that splits a taxi file's days into their top tier and the
/// rest (see [`crate::segment`]): about a quarter of the rows are above it.
const TOP_QUANTILE: f64 = 0.75;

/// Rows the split is estimated from: the file's first row groups (its distances are spread alike
/// over the month; reading the whole column cost 0.13 s a 3 M-row month, 10 % of its ingest).
const SPLIT_SAMPLE_ROWS: u64 = 262_144;

/// The distance above which a taxi file's rows go to their day's top tier: DuckDB's approximate
/// quantile over the distances of the file's first rows. None when they have no distance.
fn top_split(conn: &duckdb::Connection, local: &Path, columns: &[Mapped]) -> Result<Option<f64>> {
    let rows = engine::file_select(local, columns);
    let sql = format!(
        "SELECT approx_quantile(CAST(trip_distance AS DOUBLE), {TOP_QUANTILE})
         FROM (SELECT trip_distance FROM ({rows}) LIMIT {SPLIT_SAMPLE_ROWS})"
    );
    Ok(conn.query_row(&sql, [], |r| r.get::<_, Option<f64>>(0))?)
}

/// The build query for one file's rows: as the dataset names them, and for taxi-shaped files in
/// segment order with the default rule's outlier flag and the top-tier flag (rows above `split`,
/// and every outlier).
fn build_sql(local: &Path, columns: &[Mapped], split: Option<f64>) -> String {
    let rows = engine::file_select(local, columns);
    if !is_taxi(columns) {
        return rows;
    }
    // `{:?}` prints a float DuckDB parses back exactly (`1.0`, `1e300`).
    let split = split.filter(|s| s.is_finite()).map_or("NULL".to_string(), |s| format!("{s:?}"));
    let reason = rule::DEFAULT.reason_sql("_bridge_hours", "_bridge_mph", "CAST(trip_distance AS DOUBLE)");
    format!(
        "WITH f AS ({rows}),
         a AS (
           SELECT *,
                  CAST(date_diff('microsecond', tpep_pickup_datetime, tpep_dropoff_datetime) AS DOUBLE)
                    / CAST({us} AS DOUBLE) AS _bridge_hours
           FROM f),
         b AS (SELECT *, CASE WHEN _bridge_hours > 0 THEN CAST(trip_distance AS DOUBLE) / _bridge_hours END AS _bridge_mph
               FROM a),
         c AS (SELECT * EXCLUDE (_bridge_hours, _bridge_mph), ({reason}) IS NOT NULL AS {flag} FROM b),
         d AS (SELECT *, {flag} OR coalesce(CAST(trip_distance AS DOUBLE) > {split}, false) AS {top} FROM c)
         SELECT * FROM d
         -- Within a day: the outliers, the top tier's hours, the other tier's hours (one key:
         -- three sort keys cost what the old layout's did, five cost 30 % more).
         ORDER BY CAST(tpep_pickup_datetime AS DATE) NULLS LAST,
                  CASE WHEN {flag} THEN 0 WHEN {top} THEN 1 + hour(tpep_pickup_datetime)
                       ELSE 32 + hour(tpep_pickup_datetime) END,
                  trip_distance DESC NULLS LAST",
        us = rule::US_PER_HOUR as i64,
        flag = engine::quote_ident(segment::OUTLIER_COLUMN),
        top = engine::quote_ident(segment::TOP_COLUMN),
    )
}

/// Builds segment `name` in `dir` from the local Parquet file `local`, read as `columns` say.
/// A file DuckDB cannot read as mapped is the file's fault ([`IngestOutcome::Quarantined`]);
/// anything else can pass ([`IngestOutcome::Retry`]).
pub fn build(
    engine: &Engine,
    dir: &Path,
    name: &str,
    local: &Path,
    columns: &[Mapped],
) -> std::result::Result<Arc<Segment>, IngestOutcome> {
    let conn = engine.connect().map_err(|e| IngestOutcome::Retry(e.to_string()))?;
    let split = match is_taxi(columns) {
        true => top_split(&conn, local, columns).map_err(|e| IngestOutcome::failed(&e.to_string()))?,
        false => None,
    };
    let built = engine::fold_batches(
        &conn,
        &build_sql(local, columns, split),
        &[],
        |schema| segment::Builder::new(schema, dir, name)?.spawn(),
        |b, batch| b.push(batch),
    )
    .and_then(segment::Background::finish);
    built.map_err(|e| {
        remove_parts(dir, name);
        match e {
            Error::Internal(m) => IngestOutcome::failed(&m),
            other => IngestOutcome::failed(&other.to_string()),
        }
    })
}

/// What converting one file needs.
#[derive(Clone)]
pub struct Convert {
    pub engine: Arc<Engine>,
    pub aliases: Arc<Vec<Alias>>,
    pub dir: PathBuf,
    pub dataset: String,
}

impl Convert {
    /// Reads the local copy `local` of a file as the dataset names its columns and builds its
    /// segment `name`; returns the segment and the columns as mapped.
    pub fn run(&self, name: &str, local: &Path) -> std::result::Result<(Arc<Segment>, Vec<Mapped>), IngestOutcome> {
        let file = self.engine.describe(local)?;
        let columns = tlc::map_columns(&self.dataset, &file, &self.aliases).map_err(IngestOutcome::Quarantined)?;
        let segment = build(&self.engine, &self.dir, name, local, &columns)?;
        Ok((segment, columns))
    }

    /// How to build `entry`'s segment `name` again once evicted: fetch the object, convert it.
    /// The returned function blocks; it runs on the query's blocking thread.
    pub fn rebuilder(&self, location: &Location, cache_dir: &Path, entry: ObjectEntry, name: String) -> Rebuild {
        let (this, location, cache_dir) = (self.clone(), location.clone(), cache_dir.to_path_buf());
        let runtime = tokio::runtime::Handle::try_current();
        Box::new(move || {
            let runtime = runtime.as_ref().map_err(|e| Error::internal(format!("no runtime to fetch with: {e}")))?;
            let local = runtime.block_on(fetch::local_copy(&location, &entry, &cache_dir))?;
            let built = this.run(&name, &local);
            runtime.block_on(fetch::release(&location, &local));
            tracing::info!(dataset = %this.dataset, key = %entry.key, ok = built.is_ok(), "rebuilt an evicted segment");
            built.map(|(s, _)| s).map_err(|outcome| {
                Error::Unavailable(format!("could not bring back {} from its source: {outcome:?}", entry.key))
            })
        })
    }
}

/// Removes what an unfinished build of `name` left.
fn remove_parts(dir: &Path, name: &str) {
    for ext in ["parquet.part", "keys.part"] {
        let _ = std::fs::remove_file(dir.join(format!("{name}.{ext}")));
    }
}

/// Deletes segment files whose names are not in `live` (left by replaced files, crashes or
/// interrupted builds).
pub fn prune(dir: &Path, live: &HashSet<String>) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(Error::internal)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stem = name.split('.').next().unwrap_or("");
        if !live.contains(stem) || name.ends_with(".part") {
            std::fs::remove_file(&path).map_err(Error::internal)?;
            removed += 1;
        }
    }
    Ok(removed)
}
