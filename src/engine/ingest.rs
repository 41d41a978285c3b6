//! Folding Parquet files into a dataset's native table, one transaction per file.

use std::path::Path;

use duckdb::{params, Connection, OptionalExt};

use super::{path_literal, quote_ident, schema, table_name, Column, Engine, Mapped};
use crate::error::Result;

/// A file of a published manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub rows: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// A file's rows, written but not yet committed: the caller reads what it will publish through
/// [`Staged::conn`] (which sees the new rows: the pipeline builds the file's segment from them),
/// then commits with [`Engine::commit_then`]. Dropping it rolls everything back.
pub struct Staged {
    pub conn: Connection,
    pub rows: u64,
    /// The dataset's version once committed.
    pub version: u64,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("rows", &self.rows).field("version", &self.version).finish()
    }
}

#[derive(Debug)]
pub enum IngestOutcome {
    /// The file's rows are staged in an open transaction.
    Ingested(Box<Staged>),
    /// The file cannot be read into the dataset (its format or its schema); nothing was changed.
    /// Trying again cannot help until the object changes.
    Quarantined(String),
    /// Failed for a reason that can pass (I/O, memory, disk space, a conflict); nothing was
    /// changed. Worth retrying as it is.
    Retry(String),
}

impl IngestOutcome {
    /// Sorts a DuckDB error: what can pass is retried, the rest is the file's fault.
    pub fn failed(message: &str) -> Self {
        const TRANSIENT: [&str; 6] = [
            "io error",
            "out of memory",
            "interrupt",
            "transactioncontext error",
            "no space left",
            "resource temporarily unavailable",
        ];
        let lower = message.to_ascii_lowercase();
        // A file shorter than its own footer says is broken, not unlucky.
        let truncated = lower.contains("could not read enough bytes");
        let first = first_line(message);
        if !truncated && TRANSIENT.iter().any(|t| lower.contains(t)) {
            IngestOutcome::Retry(first)
        } else {
            IngestOutcome::Quarantined(first)
        }
    }
}

/// The column the store adds to remember which file a row came from.
pub(crate) const FILE_COLUMN: &str = "_bridge_file";

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

fn file_columns(conn: &Connection, local: &Path) -> std::result::Result<Vec<Column>, duckdb::Error> {
    let sql = format!("DESCRIBE SELECT * FROM read_parquet({})", path_literal(local));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| Ok(Column { name: r.get(0)?, ty: r.get(1)? }))?;
    rows.collect::<Result<Vec<_>, _>>()
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

/// The dataset's columns in the order its view shows them.
pub fn view_columns(conn: &Connection, dataset: &str) -> Result<Vec<Column>> {
    let mut stmt = conn.prepare(
        "SELECT column_name, data_type FROM information_schema.columns
         WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
    )?;
    let rows = stmt.query_map(params![dataset], |r| Ok(Column { name: r.get(0)?, ty: r.get(1)? }))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// (Re)creates the dataset's view: the table's columns ordered by `rank`, then table order.
fn refresh_view(conn: &Connection, dataset: &str, rank: fn(&str) -> usize) -> Result<()> {
    let mut cols = columns(conn, dataset)?;
    cols.sort_by_key(|c| rank(&c.name));
    let cols: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE VIEW main.{} AS SELECT {} FROM {}",
        quote_ident(dataset),
        cols.join(", "),
        table_name(dataset)
    ))?;
    Ok(())
}

fn apply(conn: &Connection, dataset: &str, file: &[Mapped]) -> std::result::Result<Vec<Column>, duckdb::Error> {
    let table = table_name(dataset);
    let current = columns(conn, dataset).map_err(as_duckdb)?;
    let exec = |sql: String| conn.execute_batch(&sql);
    if current.is_empty() {
        let defs: Vec<String> = file.iter().map(|c| format!("{} {}", quote_ident(&c.name), c.ty)).collect();
        exec(format!("CREATE TABLE IF NOT EXISTS {table} ({}, {FILE_COLUMN} VARCHAR)", defs.join(", ")))?;
    } else {
        let plan = schema::unify(&current, file);
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
    columns(conn, dataset).map_err(as_duckdb)
}

/// Carries one of our errors through a closure that speaks DuckDB's, message intact.
fn as_duckdb(e: impl std::fmt::Display) -> duckdb::Error {
    duckdb::Error::ToSqlConversionFailure(e.to_string().into())
}

/// `SELECT` list that reads `file`'s columns into the table's, by name, NULL where missing.
fn projection(table: &[Column], file: &[Mapped]) -> String {
    table
        .iter()
        .map(|t| {
            let expr = match file.iter().find(|f| f.name.eq_ignore_ascii_case(&t.name)) {
                Some(f) if f.ty == t.ty => f.expr.clone(),
                Some(f) => format!("CAST({} AS {})", f.expr, t.ty),
                None => format!("CAST(NULL AS {})", t.ty),
            };
            format!("{expr} AS {}", quote_ident(&t.name))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One object to ingest: its key, version and listing facts.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub key: &'a str,
    pub etag: &'a str,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// How the dataset reads a file: its mapped columns, where each column goes in the view, and
/// the column the rows are stored in order of, when the table has it (so DuckDB's zone maps skip
/// row groups outside a range).
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub columns: &'a [Mapped],
    pub view_rank: fn(&str) -> usize,
    pub order_by: Option<&'a str>,
}

impl Engine {
    /// The columns of the local Parquet file `local`, or why it cannot be read.
    pub fn describe(&self, local: &Path) -> std::result::Result<Vec<Column>, IngestOutcome> {
        let conn = self.connect().map_err(|e| IngestOutcome::Retry(e.to_string()))?;
        match file_columns(&conn, local) {
            Ok(cols) if cols.is_empty() => Err(IngestOutcome::Quarantined("no columns".into())),
            Ok(cols) => Ok(cols),
            Err(e) => Err(IngestOutcome::failed(&e.to_string())),
        }
    }

    /// Replaces `entry`'s rows in `dataset` with the rows of the local file `local`, read as
    /// `reading` says, atomically.
    pub fn ingest(&self, dataset: &str, entry: &NewFile, local: &Path, reading: Reading) -> Result<IngestOutcome> {
        let conn = self.connect()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        let result = (|| -> std::result::Result<(u64, u64), duckdb::Error> {
            let table_cols = apply(&conn, dataset, reading.columns)?;
            let table = table_name(dataset);
            let cols: Vec<String> = table_cols.iter().map(|c| quote_ident(&c.name)).collect();
            let order = match reading.order_by.filter(|o| table_cols.iter().any(|c| c.name == *o)) {
                Some(column) => format!(" ORDER BY {}", quote_ident(column)),
                None => String::new(),
            };
            conn.execute(&format!("DELETE FROM {table} WHERE {FILE_COLUMN} = ?"), params![entry.key])?;
            let rows = conn.execute(
                &format!(
                    "INSERT INTO {table} ({}, {FILE_COLUMN}) SELECT {}, ? FROM read_parquet({}){order}",
                    cols.join(", "),
                    projection(&table_cols, reading.columns),
                    path_literal(local)
                ),
                params![entry.key],
            )?;
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
            )?;
            refresh_view(&conn, dataset, reading.view_rank).map_err(as_duckdb)?;
            let version = bump_version(&conn, dataset).map_err(as_duckdb)?;
            Ok((rows as u64, version))
        })();
        match result {
            Ok((rows, version)) => Ok(IngestOutcome::Ingested(Box::new(Staged { conn, rows, version }))),
            Err(reason) => {
                conn.execute_batch("ROLLBACK")?;
                Ok(IngestOutcome::failed(&reason.to_string()))
            }
        }
    }

    /// Stages the removal of a file's rows from `dataset`, one version step (commit it with
    /// [`Engine::commit_then`]).
    pub fn remove(&self, dataset: &str, key: &str) -> Result<Staged> {
        let conn = self.connect()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        let table = table_name(dataset);
        if !columns(&conn, dataset)?.is_empty() {
            conn.execute(&format!("DELETE FROM {table} WHERE {FILE_COLUMN} = ?"), params![key])?;
        }
        conn.execute("DELETE FROM bridge.files WHERE dataset = ? AND key = ?", params![dataset, key])?;
        let version = bump_version(&conn, dataset)?;
        Ok(Staged { conn, rows: 0, version })
    }

    /// The committed manifest of `dataset`: version and files.
    pub fn manifest(&self, dataset: &str) -> Result<(u64, Vec<FileRow>)> {
        let conn = self.connect()?;
        manifest(&conn, dataset)
    }
}

/// Drops a dataset's rows, view and files (one version step), inside `conn`'s transaction.
pub(super) fn drop_dataset(conn: &Connection, dataset: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "DROP VIEW IF EXISTS main.{}; DROP TABLE IF EXISTS {};",
        quote_ident(dataset),
        table_name(dataset)
    ))?;
    conn.execute("DELETE FROM bridge.files WHERE dataset = ?", params![dataset])?;
    bump_version(conn, dataset)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_pass_is_retried() {
        for transient in [
            "IO Error: Could not write file \"x\": No space left on device",
            "could not build the file's segment: No space left on device (os error 28)",
            "Out of Memory Error: failed to allocate data of size 16.0 MiB (64.0 MiB/64.0 MiB used)",
            "INTERRUPT Error: Interrupted!",
            "TransactionContext Error: Catalog write-write conflict on alter with \"t_yellow\"",
        ] {
            assert!(matches!(IngestOutcome::failed(transient), IngestOutcome::Retry(_)), "{transient}");
        }
        for broken in [
            "Invalid Input Error: No magic bytes found at end of file 'm1.pq'",
            "IO Error: Could not read enough bytes from file \"m198.pq\": attempted to read 124141 bytes",
            "Out of buffer",
            "Conversion Error: Could not convert string 'far' to DOUBLE",
            "Parquet file is likely corrupted, dictionary offset out of range",
        ] {
            assert!(matches!(IngestOutcome::failed(broken), IngestOutcome::Quarantined(_)), "{broken}");
        }
    }
}
