//! The blocking→async bridge: DuckDB runs on a blocking thread and feeds a bounded channel.
//!
//! * One connection per query, inside one transaction, so every statement of the query (stats,
//!   manifest, rows) sees the same snapshot.
//! * Batches are coalesced to `batch_rows` before they cross the channel: DuckDB's streaming
//!   result yields filter-sized chunks (~200 rows for a 10 % filter), far too small to encode.
//! * The channel holds a few batches; when the client goes away the receiver drops, the watcher
//!   interrupts DuckDB, and the thread stops stepping.

use std::{collections::HashMap, sync::Arc};

use arrow::{compute::BatchCoalescer, datatypes::SchemaRef, record_batch::RecordBatch};
use duckdb::{params_from_iter, types::Value, Connection, Statement};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::Engine;
use crate::{
    answer::QueryStream,
    error::{Error, Result},
};

/// What a query module hands the engine: run `prelude` work on the query's connection, return
/// the statement to stream and the schema metadata to attach.
pub type QueryPlan = Box<dyn FnOnce(&Connection) -> Result<PlannedSql> + Send>;

#[derive(Default)]
pub struct PlannedSql {
    pub sql: String,
    pub metadata: HashMap<String, String>,
    /// Parameter sets for the statement's `?`s: it runs once per set, results concatenated.
    /// Empty: it runs once, and must have no parameters.
    pub params: Vec<Vec<Value>>,
    /// Held until the query ends (the files its views read).
    pub keep: Vec<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for PlannedSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedSql").field("sql", &self.sql).field("params", &self.params.len()).finish()
    }
}

pub use PlannedSql as Planned;

/// Flight messages of about this size for DuckDB results (arrow-flight's default).
pub const MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// Batches in flight between DuckDB and the encoder, per query.
const CHANNEL_DEPTH: usize = 4;

impl Engine {
    /// Starts `plan` and returns once its schema is known. With `schema_only`, the statement
    /// runs with `LIMIT 0`: enough to know the schema, no rows.
    pub async fn stream(
        self: &Arc<Self>,
        plan: QueryPlan,
        batch_rows: usize,
        schema_only: bool,
    ) -> Result<QueryStream> {
        let conn = self.connect()?;
        let interrupt = conn.interrupt_handle();
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let (schema_tx, schema_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        // Whether the connection is still open. duckdb-rs disconnects before it clears its
        // interrupt handle, so an interrupt racing the connection's drop would reach freed
        // memory: the query thread clears this (under the lock) before it drops the connection,
        // and interrupts are only sent while it is set (under the same lock).
        let open = Arc::new(std::sync::Mutex::new(true));
        let still_open = open.clone();
        // Interrupts DuckDB as soon as the consumer is gone, even mid-step.
        let watch = tx.clone();
        tokio::spawn(async move {
            let mut done_rx = done_rx;
            tokio::select! {
                _ = watch.closed() => {
                    // DuckDB can drop an interrupt that lands while it prepares: repeat until the
                    // query thread has returned.
                    loop {
                        if let Ok(open) = still_open.lock() {
                            if *open {
                                interrupt.interrupt();
                            }
                        }
                        tokio::select! {
                            _ = &mut done_rx => break,
                            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                        }
                    }
                }
                _ = &mut done_rx => {}
            }
        });
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let _active = crate::metrics::ActiveGuard::new();
            run(&engine, &conn, plan, batch_rows, schema_only, schema_tx, tx);
            if let Ok(mut open) = open.lock() {
                *open = false;
            }
            drop(conn);
            drop(done_tx);
        });
        let schema = schema_rx.await.map_err(|_| Error::internal("query thread ended before its schema"))??;
        let batches = Box::pin(ReceiverStream::new(rx));
        Ok(QueryStream { schema, batches, max_message_bytes: Some(MESSAGE_BYTES) })
    }
}

fn start(engine: &Engine, conn: &Connection, plan: QueryPlan, schema_only: bool) -> Result<(PlannedSql, String)> {
    engine.begin_read(conn)?;
    let planned = plan(conn)?;
    let sql = if schema_only {
        // The newline ends any comment the SQL ends with.
        format!("SELECT * FROM ({}\n) LIMIT 0", planned.sql.trim().trim_end_matches(';'))
    } else {
        planned.sql.clone()
    };
    Ok((planned, sql))
}

fn run(
    engine: &Engine,
    conn: &Connection,
    plan: QueryPlan,
    batch_rows: usize,
    schema_only: bool,
    schema_tx: oneshot::Sender<Result<SchemaRef>>,
    tx: mpsc::Sender<Result<RecordBatch>>,
) {
    let (planned, sql) = match start(engine, conn, plan, schema_only) {
        Ok(x) => x,
        Err(e) => return drop(schema_tx.send(Err(e))),
    };
    let mut stmt = match conn.prepare(&sql) {
        Ok(s) => s,
        Err(e) => return drop(schema_tx.send(Err(e.into()))),
    };
    let sets = match parameter_sets(&stmt, planned.params, schema_only) {
        Ok(s) => s,
        Err(e) => return drop(schema_tx.send(Err(e))),
    };
    let mut schema_tx = Some(schema_tx);
    let mut portable = false; // whether the result types have been checked (see `portable`)
    for set in sets {
        let mut schema = execute(&mut stmt, &set, schema_only);
        if let (Ok(s), false) = (&schema, portable) {
            portable = true;
            if let Some(rewritten) = super::portable::rewrite(&stmt, s, &sql) {
                stmt = match conn.prepare(&rewritten) {
                    Ok(s) => s,
                    Err(e) => return drop(schema_tx.map(|t| t.send(Err(e.into())))),
                };
                schema = execute(&mut stmt, &set, schema_only);
            }
        }
        let schema = match schema {
            Ok(s) => Arc::new(s.as_ref().clone().with_metadata(planned.metadata.clone())),
            Err(e) => match schema_tx.take() {
                Some(first) => return drop(first.send(Err(e))),
                None => return drop(tx.blocking_send(Err(e))),
            },
        };
        if let Some(first) = schema_tx.take() {
            if first.send(Ok(schema.clone())).is_err() {
                return;
            }
        }
        if !forward(&stmt, schema, batch_rows, &tx) {
            return;
        }
    }
}

/// Runs `stmt` with one parameter set (lazily unless `schema_only`); returns the result schema.
fn execute(stmt: &mut Statement<'_>, set: &[Value], schema_only: bool) -> Result<SchemaRef> {
    let params = params_from_iter(set.iter());
    let schema = if schema_only {
        stmt.query_arrow(params).map(|a| a.get_schema())
    } else {
        stmt.stream_arrow(params).map(|a| a.get_schema())
    };
    Ok(schema?)
}

/// The parameter sets to run: the bound ones (their arity checked), or — for a schema-only
/// run of a statement whose parameters are not bound yet — one set of NULLs.
fn parameter_sets(stmt: &Statement<'_>, bound: Vec<Vec<Value>>, schema_only: bool) -> Result<Vec<Vec<Value>>> {
    let n = stmt.parameter_count();
    if bound.is_empty() {
        return match n {
            0 => Ok(vec![vec![]]),
            _ if schema_only => Ok(vec![vec![Value::Null; n]]),
            _ => Err(Error::invalid(format!(
                "the statement has {n} parameter(s) (?) and none are bound; bind them (Flight SQL prepared \
                 statement + DoPut) and execute again"
            ))),
        };
    }
    if let Some(bad) = bound.iter().find(|set| set.len() != n) {
        return Err(Error::invalid(format!("the statement takes {n} parameter(s) but {} were bound", bad.len())));
    }
    Ok(if schema_only { bound.into_iter().take(1).collect() } else { bound })
}

/// Steps the executing statement and sends its rows in `batch_rows` batches; false when the
/// client went away or an error was sent.
fn forward(stmt: &Statement<'_>, schema: SchemaRef, batch_rows: usize, tx: &mpsc::Sender<Result<RecordBatch>>) -> bool {
    let mut coalescer = BatchCoalescer::new(schema.clone(), batch_rows.max(1));
    let send = |batch: RecordBatch| -> bool {
        let batch = batch.with_schema(schema.clone()).map_err(Error::from);
        tx.blocking_send(batch).is_ok()
    };
    loop {
        match stmt.step() {
            Ok(Some(chunk)) => {
                if let Err(e) = coalescer.push_batch(RecordBatch::from(&chunk)) {
                    let _ = tx.blocking_send(Err(e.into()));
                    return false;
                }
                while let Some(batch) = coalescer.next_completed_batch() {
                    if !send(batch) {
                        return false; // the client went away
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return false;
            }
        }
    }
    if coalescer.finish_buffered_batch().is_ok() {
        while let Some(batch) = coalescer.next_completed_batch() {
            if !send(batch) {
                return false;
            }
        }
    }
    true
}
