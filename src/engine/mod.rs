//! DuckDB: the accelerated local store, its sandbox, and the blocking→async stream bridge.
//!
//! The database holds the catalog, not the rows: which files each dataset has (`bridge.files`,
//! with the local Parquet copy of each file's rows, written by the caller), its version, and its
//! schema (the empty table `bridge."t_<name>"`, widened as files arrive). Queries read the view
//! `main."<name>"` over the files' copies. One file = one transaction, so a file appears whole or
//! not at all and running queries keep their snapshot. DuckDB never touches the network: remote
//! objects are fetched by `object_store` first.

mod ingest;
mod portable;
mod raw;
mod schema;
mod stream;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use duckdb::{Connection, OptionalExt};

pub use crate::answer::{Batches, QueryStream};
pub use ingest::{file_select, FileRow, IngestOutcome, NewFile, Reading, Staged};
pub use raw::Parameter;
pub use schema::{Column, Mapped};
pub use stream::{Planned, QueryPlan, MESSAGE_BYTES};

use crate::error::{Error, Result};

/// DuckDB resource settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Directory for the database file and spill files.
    pub dir: PathBuf,
    /// Directories user SQL may read (the local datasets); the engine's own dir is always allowed.
    pub allowed_dirs: Vec<PathBuf>,
    /// DuckDB `memory_limit`, e.g. "4GB".
    pub memory_limit: String,
    /// DuckDB worker threads.
    pub threads: usize,
    /// Most disk DuckDB may spill to (`max_temp_directory_size`), e.g. "10GB".
    pub spill_limit: String,
    /// SQL run once the database is open (the built-in queries' macros).
    pub prelude: String,
}

/// A handle to the embedded database. Each query gets its own connection (`try_clone`).
pub struct Engine {
    base: Mutex<Connection>,
    /// The database file, spill files and segments live here.
    dir: PathBuf,
    /// Publication: a commit and what its caller publishes with it (the snapshot the built-in
    /// queries read) happen under the write side; a query's transaction starts under the read
    /// side. So SQL and the built-in queries move to a new version at the same moment.
    gate: std::sync::RwLock<()>,
    /// The database itself; declared last so it closes after the base connection.
    raw: raw::RawDb,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Engine {
    pub fn open(opts: &EngineOptions) -> Result<Self> {
        std::fs::create_dir_all(&opts.dir).map_err(Error::internal)?;
        let dir = std::fs::canonicalize(&opts.dir).map_err(Error::internal)?;
        let raw = raw::RawDb::open(
            &dir.join("store.duckdb"),
            &[
                ("autoload_known_extensions", "false".into()),
                ("max_memory", opts.memory_limit.clone()),
                ("threads", opts.threads.max(1).to_string()),
            ],
        )?;
        let conn = raw.connect()?;
        let tmp = dir.join("tmp");
        // Only what DuckDB must read: its spill directory and the callers' (downloads, segments,
        // local datasets). Not the catalog, not the cache's other files.
        let mut allowed: Vec<String> = vec![quote_literal(&format!("{}/", tmp.display()))];
        for d in &opts.allowed_dirs {
            allowed.push(quote_literal(&format!("{}/", d.display())));
        }
        // The sandbox, in order: files only under our directories, no network, no extensions,
        // and then nothing can change these settings again.
        conn.execute_batch(&format!(
            "SET temp_directory = {tmp};
             SET max_temp_directory_size = {spill};
             SET allowed_directories = [{allowed}];
             SET enable_external_access = false;
             SET autoinstall_known_extensions = false;
             SET allow_community_extensions = false;
             SET enable_external_file_cache = false;
             SET GLOBAL parquet_metadata_cache = true;
             SET lock_configuration = true;
             CREATE SCHEMA IF NOT EXISTS bridge;
             CREATE TABLE IF NOT EXISTS bridge.files (
               dataset VARCHAR, key VARCHAR, etag VARCHAR, size BIGINT, rows BIGINT,
               last_modified TIMESTAMPTZ, path VARCHAR, columns VARCHAR, PRIMARY KEY (dataset, key));
             CREATE TABLE IF NOT EXISTS bridge.versions (dataset VARCHAR PRIMARY KEY, version BIGINT);
             CREATE TABLE IF NOT EXISTS bridge.locations (dataset VARCHAR PRIMARY KEY, url VARCHAR);",
            tmp = quote_literal(&tmp.display().to_string()),
            spill = quote_literal(&opts.spill_limit),
            allowed = allowed.join(", "),
        ))?;
        conn.execute_batch(&opts.prelude)?;
        Ok(Engine { base: Mutex::new(conn), dir, gate: std::sync::RwLock::new(()), raw })
    }

    /// The parameters of `sql` as DuckDB types them (see [`raw::RawDb::parameters`]).
    pub fn parameters(&self, sql: &str) -> Result<Vec<Parameter>> {
        self.raw.parameters(sql)
    }

    /// Starts a read transaction on `conn` that sees one published version of everything.
    pub fn begin_read(&self, conn: &Connection) -> Result<()> {
        let _published = self.gate.read().map_err(|_| Error::internal("publish gate poisoned"))?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        // DuckDB takes the transaction's snapshot at its first read: take it now, inside the gate.
        conn.query_row("SELECT count(*) FROM bridge.versions", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    /// Commits `conn`'s transaction and runs `publish` before any query can start after it.
    pub fn commit_then<T>(&self, conn: &Connection, publish: impl FnOnce() -> T) -> Result<T> {
        let _publishing = self.gate.write().map_err(|_| Error::internal("publish gate poisoned"))?;
        conn.execute_batch("COMMIT")?;
        Ok(publish())
    }

    /// Binds `dataset` to the location `url`. If the store holds the dataset's rows from another
    /// location, they are dropped first (one version step), so a changed glob never serves the
    /// old location's rows. Returns whether anything was dropped.
    pub fn claim(&self, dataset: &str, url: &str) -> Result<bool> {
        let conn = self.connect()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        let before: Option<String> =
            conn.query_row("SELECT url FROM bridge.locations WHERE dataset = ?", [dataset], |r| r.get(0)).optional()?;
        let stale = before.as_deref().is_some_and(|u| u != url)
            || (before.is_none() && !ingest::columns(&conn, dataset)?.is_empty());
        if stale {
            ingest::drop_dataset(&conn, dataset)?;
        }
        conn.execute("INSERT OR REPLACE INTO bridge.locations VALUES (?, ?)", duckdb::params![dataset, url])?;
        conn.execute_batch("COMMIT")?;
        Ok(stale)
    }

    /// Drops every dataset the store holds that is not in `keep` (no longer configured).
    pub fn forget_others(&self, keep: &[&str]) -> Result<Vec<String>> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare("SELECT DISTINCT dataset FROM bridge.versions")?;
        let known = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        let gone: Vec<String> = known.into_iter().filter(|d| !keep.contains(&d.as_str())).collect();
        for d in &gone {
            conn.execute_batch("BEGIN TRANSACTION")?;
            ingest::drop_dataset(&conn, d)?;
            conn.execute("DELETE FROM bridge.versions WHERE dataset = ?", [d])?;
            conn.execute("DELETE FROM bridge.locations WHERE dataset = ?", [d])?;
            conn.execute_batch("COMMIT")?;
        }
        Ok(gone)
    }

    /// A fresh connection to the same database, for one query or one ingest.
    /// Where the database lives (the pipeline keeps the segments beside it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn connect(&self) -> Result<Connection> {
        let base = self.base.lock().map_err(|_| Error::internal("engine lock poisoned"))?;
        Ok(base.try_clone()?)
    }

    /// Runs a blocking closure on a fresh connection on tokio's blocking pool.
    pub async fn with_conn<T, F>(self: &std::sync::Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || f(&engine.connect()?))
            .await
            .map_err(|e| Error::internal(format!("engine task failed: {e}")))?
    }
}

/// Runs `sql` with `params` on `conn` (in whatever transaction it is in) and folds its result:
/// `start` gets the schema, `each` every batch in order. Rows stream; none are held here.
pub fn fold_batches<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn duckdb::ToSql],
    start: impl FnOnce(arrow::datatypes::SchemaRef) -> Result<T>,
    mut each: impl FnMut(&mut T, arrow::record_batch::RecordBatch) -> Result<()>,
) -> Result<T> {
    let mut stmt = conn.prepare(sql)?;
    let stream = stmt.stream_arrow(params)?;
    let mut acc = start(stream.get_schema())?;
    while let Some(chunk) = stmt.step()? {
        each(&mut acc, arrow::record_batch::RecordBatch::from(&chunk))?;
    }
    Ok(acc)
}

pub fn table_name(dataset: &str) -> String {
    format!("bridge.{}", quote_ident(&format!("t_{dataset}")))
}

/// Path helper: DuckDB string literal for a local file.
pub fn path_literal(p: &Path) -> String {
    quote_literal(&p.display().to_string())
}

/// The Arrow schema of the dataset's view (what `SELECT *` returns) as `conn` sees it; empty
/// before the first file.
pub fn arrow_schema(conn: &Connection, dataset: &str) -> Result<arrow::datatypes::SchemaRef> {
    if ingest::columns(conn, dataset)?.is_empty() {
        return Ok(std::sync::Arc::new(arrow::datatypes::Schema::empty()));
    }
    let mut stmt = conn.prepare(&format!("SELECT * FROM main.{} LIMIT 0", quote_ident(dataset)))?;
    Ok(stmt.query_arrow([])?.get_schema())
}

pub use ingest::{manifest, view_columns};

#[cfg(test)]
mod tests {
    use super::*;

    /// The database-wide wall on its own, with no parse-tree guard in front: what user SQL could
    /// do if the guard missed something.
    #[test]
    fn the_database_refuses_files_network_extensions_and_settings_by_itself() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret.csv"), "a\n1\n").expect("write");
        let engine = Engine::open(&EngineOptions {
            dir: root.path().join("store"),
            allowed_dirs: vec![],
            memory_limit: "256MB".into(),
            threads: 1,
            spill_limit: "1GB".into(),
            prelude: String::new(),
        })
        .expect("open");
        let conn = engine.connect().expect("connect");
        let out = outside.path().join("out.csv");
        let secret = outside.path().join("secret.csv");
        for sql in [
            format!("SELECT * FROM read_csv('{}')", secret.display()),
            format!("SELECT * FROM read_text('{}')", secret.display()),
            "SELECT * FROM read_text('/etc/passwd')".to_string(),
            "SELECT * FROM glob('/*')".to_string(),
            format!("COPY (SELECT 1) TO '{}'", out.display()),
            format!("ATTACH '{}' AS x", outside.path().join("x.duckdb").display()),
            "INSTALL httpfs".to_string(),
            "LOAD httpfs".to_string(),
            "SET enable_external_access = true".to_string(),
            "SET allowed_directories = ['/']".to_string(),
            "RESET lock_configuration".to_string(),
            "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')".to_string(),
        ] {
            assert!(conn.execute_batch(&sql).is_err(), "the database allowed: {sql}");
        }
        assert!(!out.exists(), "COPY wrote a file");
        assert!(!outside.path().join("x.duckdb").exists(), "ATTACH created a file");
    }
}
