//! Folding Parquet files into a dataset's native table, one transaction per file.

use std::{path::Path, sync::Arc};

use duckdb::{params, Connection, OptionalExt};

use super::{path_literal, quote_ident, schema, table_name, Column, Engine};
use crate::{catalog::ObjectEntry, error::Result, segment::Segment};

/// A file of a published manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub rows: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone)]
pub enum IngestOutcome {
    /// The file's rows are committed; the dataset is now at `version`. `segment` is the file's
    /// read-optimized copy for the built-in tickets (None when the dataset is not taxi-shaped).
    Ingested { rows: u64, version: u64, segment: Option<Arc<Segment>> },
    /// The file could not be read or mapped; nothing was changed.
    Quarantined(String),
}

/// The column the store adds to remember which file a row came from.
pub(crate) const FILE_COLUMN: &str = "_bridge_file";
/// Rows are stored in pickup order when the dataset has this column.
const ORDER_COLUMN: &str = "tpep_pickup_datetime";

/// The dataset's columns (without the internal file column), in table order.
pub fn columns(conn: &Connection, dataset: &str) -> Result<Vec<Column>> {
    let mut stmt = conn.prepare(
        "SELECT column_name, data_type FROM information_schema.columns
         WHERE table_schema = 'bridge' AND table_name = ? AND column_name <> ? ORDER BY ordinal_position",
    )?;
    let rows = stmt
        .query_map(params![format!("t_{dataset}"), FILE_COLUMN], |r| Ok(Column { name: r.get(0)?, ty: r.get(1)? }))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn file_columns(conn: &Connection, local: &Path) -> std::result::Result<Vec<Column>, String> {
    let sql = format!("DESCRIBE SELECT * FROM read_parquet({})", path_literal(local));
    let mut stmt = conn.prepare(&sql).map_err(|e| e.to_string())?;
    let rows = stmt.query_map([], |r| Ok(Column { name: r.get(0)?, ty: r.get(1)? })).map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

fn bump_version(conn: &Connection, dataset: &str) -> Result<u64> {
    let v: i64 = conn.query_row(
        "INSERT INTO bridge.versions VALUES (?, 1)
         ON CONFLICT (dataset) DO UPDATE SET version = version + 1 RETURNING version",
        params![dataset],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}

fn refresh_view(conn: &Connection, dataset: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE OR REPLACE VIEW main.{} AS SELECT * EXCLUDE ({FILE_COLUMN}) FROM {}",
        quote_ident(dataset),
        table_name(dataset)
    ))?;
    Ok(())
}

fn apply(conn: &Connection, dataset: &str, file: &[Column]) -> std::result::Result<Vec<Column>, String> {
    let table = table_name(dataset);
    let current = columns(conn, dataset).map_err(|e| e.to_string())?;
    let exec = |sql: String| conn.execute_batch(&sql).map_err(|e| e.to_string());
    if current.is_empty() {
        let defs: Vec<String> = file.iter().map(|c| format!("{} {}", quote_ident(&c.name), c.ty)).collect();
        exec(format!("CREATE TABLE IF NOT EXISTS {table} ({}, {FILE_COLUMN} VARCHAR)", defs.join(", ")))?;
    } else {
        let plan = schema::unify(&current, file)?;
        for c in &plan.retype {
            exec(format!("ALTER TABLE {table} ALTER COLUMN {} TYPE {}", quote_ident(&c.name), c.ty))?;
        }
        for (from, to) in &plan.rename {
            exec(format!("ALTER TABLE {table} RENAME COLUMN {} TO {}", quote_ident(from), quote_ident(to)))?;
        }
        for c in &plan.add {
            exec(format!("ALTER TABLE {table} ADD COLUMN {} {}", quote_ident(&c.name), c.ty))?;
        }
    }
    columns(conn, dataset).map_err(|e| e.to_string())
}

/// `SELECT` list that reads `file`'s columns into the table's, by name, NULL where missing.
fn projection(table: &[Column], file: &[Column]) -> String {
    table
        .iter()
        .map(|t| match file.iter().find(|f| f.name.eq_ignore_ascii_case(&t.name)) {
            Some(f) if f.ty == t.ty => quote_ident(&f.name),
            Some(f) => format!("CAST({} AS {})", quote_ident(&f.name), t.ty),
            None => format!("CAST(NULL AS {})", t.ty),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Engine {
    /// Replaces `entry`'s rows in `dataset` with the rows of the local file `local`, atomically.
    pub fn ingest(&self, dataset: &str, entry: &ObjectEntry, local: &Path) -> Result<IngestOutcome> {
        let conn = self.connect()?;
        let file = match file_columns(&conn, local) {
            Ok(cols) if cols.is_empty() => return Ok(IngestOutcome::Quarantined("no columns".into())),
            Ok(cols) => cols,
            Err(e) => return Ok(IngestOutcome::Quarantined(first_line(&e))),
        };
        conn.execute_batch("BEGIN TRANSACTION")?;
        let result = (|| -> std::result::Result<(u64, u64, Option<Arc<Segment>>), String> {
            let table_cols = apply(&conn, dataset, &file)?;
            let table = table_name(dataset);
            let cols: Vec<String> = table_cols.iter().map(|c| quote_ident(&c.name)).collect();
            let order = if table_cols.iter().any(|c| c.name == ORDER_COLUMN) {
                format!(" ORDER BY {}", quote_ident(ORDER_COLUMN))
            } else {
                String::new()
            };
            let e = |e: duckdb::Error| e.to_string();
            conn.execute(&format!("DELETE FROM {table} WHERE {FILE_COLUMN} = ?"), params![entry.key]).map_err(e)?;
            let rows = conn
                .execute(
                    &format!(
                        "INSERT INTO {table} ({}, {FILE_COLUMN}) SELECT {}, ? FROM read_parquet({}){order}",
                        cols.join(", "),
                        projection(&table_cols, &file),
                        path_literal(local)
                    ),
                    params![entry.key],
                )
                .map_err(e)?;
            conn.execute(
                "INSERT OR REPLACE INTO bridge.files VALUES (?, ?, ?, ?, ?, make_timestamptz(?))",
                params![
                    dataset,
                    entry.key,
                    entry.etag,
                    entry.size as i64,
                    rows as i64,
                    entry.last_modified.timestamp_micros()
                ],
            )
            .map_err(e)?;
            let segment = self
                .build_segment(&conn, dataset, &table_cols, &entry.key, &entry.etag, rows as u64)
                .map_err(|x| format!("could not build the file's segment: {x}"))?;
            let version = bump_version(&conn, dataset).map_err(|x| x.to_string())?;
            refresh_view(&conn, dataset).map_err(|x| x.to_string())?;
            Ok((rows as u64, version, segment))
        })();
        match result {
            Ok((rows, version, segment)) => {
                conn.execute_batch("COMMIT")?;
                Ok(IngestOutcome::Ingested { rows, version, segment })
            }
            Err(reason) => {
                conn.execute_batch("ROLLBACK")?;
                Ok(IngestOutcome::Quarantined(first_line(&reason)))
            }
        }
    }

    /// Removes a file's rows from `dataset` in one version step; returns the new version.
    pub fn remove(&self, dataset: &str, key: &str) -> Result<u64> {
        let conn = self.connect()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        let table = table_name(dataset);
        if !columns(&conn, dataset)?.is_empty() {
            conn.execute(&format!("DELETE FROM {table} WHERE {FILE_COLUMN} = ?"), params![key])?;
        }
        conn.execute("DELETE FROM bridge.files WHERE dataset = ? AND key = ?", params![dataset, key])?;
        let version = bump_version(&conn, dataset)?;
        conn.execute_batch("COMMIT")?;
        Ok(version)
    }

    /// The committed manifest of `dataset`: version and files.
    pub fn manifest(&self, dataset: &str) -> Result<(u64, Vec<FileRow>)> {
        let conn = self.connect()?;
        manifest(&conn, dataset)
    }
}

/// Reads the manifest inside whatever transaction `conn` is in (queries use their snapshot).
pub fn manifest(conn: &Connection, dataset: &str) -> Result<(u64, Vec<FileRow>)> {
    let version: Option<i64> = conn
        .query_row("SELECT version FROM bridge.versions WHERE dataset = ?", params![dataset], |r| r.get(0))
        .optional()?;
    let mut stmt = conn.prepare(
        "SELECT key, etag, size, rows, epoch_us(last_modified) FROM bridge.files WHERE dataset = ? ORDER BY key",
    )?;
    let files = stmt
        .query_map(params![dataset], |r| {
            let us: i64 = r.get(4)?;
            Ok(FileRow {
                key: r.get(0)?,
                etag: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                rows: r.get::<_, i64>(3)? as u64,
                last_modified: chrono::DateTime::from_timestamp_micros(us).unwrap_or_default(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((version.unwrap_or(0) as u64, files))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).chars().take(500).collect()
}
