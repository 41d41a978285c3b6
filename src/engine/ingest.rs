//! A dataset's files, schema and view, one transaction per file.

use std::path::Path;

use duckdb::{params, Connection, OptionalExt};

use super::{path_literal, quote_ident, quote_literal, schema, table_name, Column, Engine, Mapped};
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

/// A change to a dataset's files, made but not yet committed: the caller reads what it will
/// publish through [`Staged::conn`] (which sees the change), then commits with
/// [`Engine::commit_then`]. Dropping it rolls everything back.
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

/// The dataset's columns, in table order (the table holds no rows: it keeps the schema).
pub fn columns(conn: &Connection, dataset: &str) -> Result<Vec<Column>> {
    let mut stmt = conn.prepare(
        "SELECT column_name, data_type FROM information_schema.columns
         WHERE table_schema = 'bridge' AND table_name = ? ORDER BY ordinal_position",
    )?;
    let rows = stmt.query_map(params![format!("t_{dataset}")], |r| Ok(Column { name: r.get(0)?, ty: r.get(1)? }))?;
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

/// (Re)creates the dataset's view over its files' Parquet copies: the table's columns ordered by
/// `rank`, then table order, each cast to the table's type. Files with the same columns (an era)
/// are read by one `read_parquet`, and the eras are stacked with `UNION ALL`, each reading a
/// column it lacks as NULL. (`union_by_name` would do the same, but it opens every file's footer
/// whenever a query is bound: tens of megabytes for a year of files.)
fn refresh_view(conn: &Connection, dataset: &str, rank: fn(&str) -> usize) -> Result<()> {
    let mut cols = columns(conn, dataset)?;
    cols.sort_by_key(|c| rank(&c.name));
    let mut stmt = conn.prepare("SELECT path, columns FROM bridge.files WHERE dataset = ? ORDER BY key")?;
    let files = stmt
        .query_map(params![dataset], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut eras: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (path, columns) in &files {
        eras.entry(columns).or_default().push(quote_literal(path));
    }
    let mut branches: Vec<String> = eras
        .iter()
        .map(|(era, paths)| {
            let select: Vec<String> = cols
                .iter()
                .map(|c| {
                    let has = era
                        .split('\n')
                        .any(|f| f.rsplit_once('\t').is_some_and(|(n, _)| n.eq_ignore_ascii_case(&c.name)));
                    let value = if has { quote_ident(&c.name) } else { "NULL".to_string() };
                    format!("CAST({value} AS {}) AS {}", c.ty, quote_ident(&c.name))
                })
                .collect();
            format!("SELECT {} FROM read_parquet([{}])", select.join(", "), paths.join(", "))
        })
        .collect();
    if branches.is_empty() {
        let select: Vec<String> =
            cols.iter().map(|c| format!("CAST(NULL AS {}) AS {}", c.ty, quote_ident(&c.name))).collect();
        branches.push(format!("SELECT {} WHERE false", select.join(", ")));
    }
    conn.execute_batch(&format!(
        "CREATE OR REPLACE VIEW main.{} AS {}",
        quote_ident(dataset),
        branches.join(" UNION ALL ")
    ))?;
    Ok(())
}

fn apply(conn: &Connection, dataset: &str, file: &[Mapped]) -> std::result::Result<Vec<Column>, duckdb::Error> {
    let table = table_name(dataset);
    let current = columns(conn, dataset).map_err(as_duckdb)?;
    let exec = |sql: String| conn.execute_batch(&sql);
    if current.is_empty() {
        let defs: Vec<String> = file.iter().map(|c| format!("{} {}", quote_ident(&c.name), c.ty)).collect();
        exec(format!("CREATE TABLE IF NOT EXISTS {table} ({})", defs.join(", ")))?;
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

/// The rows of the local Parquet file `local` under the dataset's names for them (`columns`).
pub fn file_select(local: &Path, columns: &[Mapped]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| format!("{} AS {}", c.expr, quote_ident(&c.name))).collect();
    format!("SELECT {} FROM read_parquet({})", cols.join(", "), path_literal(local))
}

/// One object to ingest: its key, version and listing facts.
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub key: &'a str,
    pub etag: &'a str,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// How the dataset reads a file: its mapped columns, and where each column goes in the view.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    pub columns: &'a [Mapped],
    pub view_rank: fn(&str) -> usize,
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

    /// Stages `entry` as `dataset`'s file whose `rows` rows are the local Parquet file `rows_at`
    /// (written by the caller with the columns `reading` maps): the schema widens to hold them
    /// and the view lists them. Nothing is visible until committed.
    pub fn stage(
        &self,
        dataset: &str,
        entry: &NewFile,
        rows: u64,
        rows_at: &Path,
        reading: Reading,
    ) -> Result<IngestOutcome> {
        let conn = self.connect()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        // The file's columns as stored: files that agree form one era of the view.
        let names: Vec<String> = reading.columns.iter().map(|c| format!("{}\t{}", c.name, c.ty)).collect();
        let result = (|| -> std::result::Result<u64, duckdb::Error> {
            apply(&conn, dataset, reading.columns)?;
            conn.execute(
                "INSERT OR REPLACE INTO bridge.files VALUES (?, ?, ?, ?, ?, make_timestamptz(?), ?, ?)",
                params![
                    dataset,
                    entry.key,
                    entry.etag,
                    entry.size as i64,
                    rows as i64,
                    entry.last_modified.timestamp_micros(),
                    rows_at.display().to_string(),
                    names.join("\n"),
                ],
            )?;
            refresh_view(&conn, dataset, reading.view_rank).map_err(as_duckdb)?;
            bump_version(&conn, dataset).map_err(as_duckdb)
        })();
        match result {
            Ok(version) => Ok(IngestOutcome::Ingested(Box::new(Staged { conn, rows, version }))),
            Err(reason) => {
                conn.execute_batch("ROLLBACK")?;
                Ok(IngestOutcome::failed(&reason.to_string()))
            }
        }
    }

    /// Stages the removal of a file from `dataset`, one version step (commit it with
    /// [`Engine::commit_then`]).
    pub fn remove(&self, dataset: &str, key: &str, view_rank: fn(&str) -> usize) -> Result<Staged> {
        let conn = self.connect()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        conn.execute("DELETE FROM bridge.files WHERE dataset = ? AND key = ?", params![dataset, key])?;
        if !columns(&conn, dataset)?.is_empty() {
            refresh_view(&conn, dataset, view_rank)?;
        }
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
