//! The segments of a dataset's files (see [`crate::segment`]): built by the pipeline from the
//! rows the store staged for a file, found again after a restart, pruned when their file goes.
//!
//! A segment's name hashes (dataset, key, ETag): a restart finds the segments of the files already
//! ingested and only rebuilds missing ones, from the store's committed rows.

use std::{collections::HashSet, path::PathBuf, sync::Arc};

use duckdb::Connection;
use sha2::{Digest, Sha256};

use crate::{
    engine::{self, Column, Engine, FileRow},
    error::{Error, Result},
    rule,
    segment::{self, Segment},
};

/// The columns a segment needs (the built-in tickets' columns).
const TLC: [&str; 3] = ["tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance"];

/// The segment layout's version: a new layout gets new names, so old segments are rebuilt (and
/// then pruned) instead of misread.
const LAYOUT: &str = "segment-v2";

/// The segment name of one version of one file.
pub fn segment_name(dataset: &str, key: &str, etag: &str) -> String {
    let digest = Sha256::digest(format!("{LAYOUT}\n{dataset}\n{key}\n{etag}"));
    hex::encode(&digest[..16])
}

fn dir(engine: &Engine) -> PathBuf {
    engine.dir().join("segments")
}

/// The build query for one file's rows (its key is the parameter), or None when the dataset
/// lacks the TLC columns: the rows in segment order with the default rule's outlier flag.
fn build_sql(dataset: &str, columns: &[Column]) -> Option<String> {
    if !TLC.iter().all(|c| columns.iter().any(|col| col.name == *c)) {
        return None;
    }
    let reason = rule::DEFAULT.reason_sql("_bridge_hours", "_bridge_mph", "CAST(trip_distance AS DOUBLE)");
    Some(format!(
        "WITH f AS ({rows}),
         a AS (
           SELECT *,
                  CAST(date_diff('microsecond', tpep_pickup_datetime, tpep_dropoff_datetime) AS DOUBLE)
                    / CAST({us} AS DOUBLE) AS _bridge_hours
           FROM f),
         b AS (SELECT *, CASE WHEN _bridge_hours > 0 THEN CAST(trip_distance AS DOUBLE) / _bridge_hours END AS _bridge_mph
               FROM a)
         SELECT * EXCLUDE (_bridge_hours, _bridge_mph), ({reason}) IS NOT NULL AS {flag}
         FROM b
         ORDER BY CAST(tpep_pickup_datetime AS DATE) NULLS LAST, {flag} DESC, trip_distance DESC NULLS LAST",
        rows = engine::file_rows(dataset, columns),
        us = rule::US_PER_HOUR as i64,
        flag = engine::quote_ident(segment::OUTLIER_COLUMN),
    ))
}

/// Builds the segment of `key` (at `etag`, `rows` rows) from what `conn`'s transaction sees;
/// None when the dataset is not taxi-shaped.
pub fn build(
    engine: &Engine,
    conn: &Connection,
    dataset: &str,
    key: &str,
    etag: &str,
    rows: u64,
) -> Result<Option<Arc<Segment>>> {
    let columns = engine::view_columns(conn, dataset)?;
    let Some(sql) = build_sql(dataset, &columns) else { return Ok(None) };
    let (dir, name) = (dir(engine), segment_name(dataset, key, etag));
    let builder = engine::fold_batches(
        conn,
        &sql,
        &[&key],
        |schema| segment::Builder::new(schema, rows, &dir, &name),
        |b, batch| b.push(batch),
    )?;
    builder.finish().map(Some)
}

/// The segment of an ingested file: opened if it exists, rebuilt from the store if not.
pub fn open_or_rebuild(engine: &Engine, dataset: &str, file: &FileRow) -> Result<Option<Arc<Segment>>> {
    let name = segment_name(dataset, &file.key, &file.etag);
    if let Ok(s) = Segment::open(&dir(engine), &name) {
        return Ok(Some(s));
    }
    let conn = engine.connect()?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let built = build(engine, &conn, dataset, &file.key, &file.etag, file.rows);
    conn.execute_batch("COMMIT")?;
    built
}

/// Deletes segment files whose names are not in `live` (left by replaced files or crashes).
pub fn prune(engine: &Engine, live: &HashSet<String>) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir(engine)) else { return Ok(0) };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(Error::internal)?.path();
        let stem = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('.').next()).unwrap_or("");
        if !live.contains(stem) {
            std::fs::remove_file(&path).map_err(Error::internal)?;
            removed += 1;
        }
    }
    Ok(removed)
}
