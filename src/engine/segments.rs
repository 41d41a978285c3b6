//! Building and finding the [segments](crate::segment) of a dataset's files.
//!
//! A segment is built from the file's rows in the native table, inside the ingest transaction, so
//! it holds exactly what was committed. Its name hashes (dataset, key, ETag): a restart finds the
//! segments of the files already ingested and only rebuilds missing ones.

use std::{collections::HashSet, path::PathBuf, sync::Arc};

use duckdb::{params, Connection};
use sha2::{Digest, Sha256};

use super::{ingest::FILE_COLUMN, quote_ident, table_name, Column, Engine, FileRow};
use crate::{
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

/// The build query for one file's rows, or None when the dataset lacks the TLC columns.
fn build_sql(dataset: &str, columns: &[Column]) -> Option<String> {
    if !TLC.iter().all(|c| columns.iter().any(|col| col.name == *c)) {
        return None;
    }
    let reason = rule::DEFAULT.reason_sql("_bridge_hours", "_bridge_mph", "CAST(trip_distance AS DOUBLE)");
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    Some(format!(
        "WITH a AS (
           SELECT {cols},
                  CAST(date_diff('microsecond', tpep_pickup_datetime, tpep_dropoff_datetime) AS DOUBLE)
                    / CAST({us} AS DOUBLE) AS _bridge_hours
           FROM {table} WHERE {FILE_COLUMN} = ?),
         b AS (SELECT *, CASE WHEN _bridge_hours > 0 THEN CAST(trip_distance AS DOUBLE) / _bridge_hours END AS _bridge_mph
               FROM a)
         SELECT * EXCLUDE (_bridge_hours, _bridge_mph), ({reason}) IS NOT NULL AS {flag}
         FROM b
         ORDER BY CAST(tpep_pickup_datetime AS DATE) NULLS LAST, {flag} DESC, trip_distance DESC NULLS LAST",
        cols = cols.join(", "),
        us = rule::US_PER_HOUR as i64,
        table = table_name(dataset),
        flag = quote_ident(segment::OUTLIER_COLUMN),
    ))
}

impl Engine {
    pub(crate) fn segments_dir(&self) -> PathBuf {
        self.dir.join("segments")
    }

    /// Builds the segment of `key` (at `etag`) on `conn`, whose transaction sees its rows, with
    /// `columns` in that order (the view's).
    pub(crate) fn build_segment(
        &self,
        conn: &Connection,
        dataset: &str,
        columns: &[Column],
        key: &str,
        etag: &str,
        rows: u64,
    ) -> Result<Option<Arc<Segment>>> {
        let Some(sql) = build_sql(dataset, columns) else { return Ok(None) };
        let name = segment_name(dataset, key, etag);
        segment::build(conn, &sql, params![key], rows, &self.segments_dir(), &name).map(Some)
    }

    /// The segment of an ingested file: opened if it exists, rebuilt from the table if not.
    pub fn segment(&self, dataset: &str, file: &FileRow) -> Result<Option<Arc<Segment>>> {
        let name = segment_name(dataset, &file.key, &file.etag);
        if let Ok(s) = Segment::open(&self.segments_dir(), &name) {
            return Ok(Some(s));
        }
        let conn = self.connect()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        let columns = super::ingest::view_columns(&conn, dataset)?;
        let built = self.build_segment(&conn, dataset, &columns, &file.key, &file.etag, file.rows);
        conn.execute_batch("COMMIT")?;
        built
    }

    /// Deletes segment files whose names are not in `live` (left by replaced files or crashes).
    pub fn prune_segments(&self, live: &HashSet<String>) -> Result<usize> {
        let Ok(entries) = std::fs::read_dir(self.segments_dir()) else { return Ok(0) };
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
}
