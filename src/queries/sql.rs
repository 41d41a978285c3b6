//! `sql`: read-only SQL over the datasets, each a view with its name, with optional positional
//! parameters.
//!
//! Two walls: [`guard`](super::guard) checks the parse tree (one SELECT, tables by name, a short
//! list of table functions), and the database-wide sandbox (see `engine`) refuses file access
//! outside Bridge's directories, network access, extensions and setting changes.

use std::sync::Arc;

use duckdb::Connection;

use super::{committed_manifest_metadata, guard, params};
use crate::{
    catalog::{Catalog, Dataset},
    engine::{self, view_columns, Engine, Planned, QueryPlan},
    error::{Error, Result},
    proto::Sql,
};

pub fn plan(s: Sql, catalog: &Catalog) -> Result<QueryPlan> {
    if s.sql.trim().is_empty() {
        return Err(Error::invalid("the sql ticket needs a non-empty \"sql\""));
    }
    let batches = params::decode(&s.parameters)?;
    let engine = catalog.engine().clone();
    let all: Vec<Arc<Dataset>> = catalog.datasets().cloned().collect();
    let datasets: Vec<String> = catalog.datasets().map(|d| d.name.clone()).collect();
    // What each dataset without a readable file is waiting for, for a clear UNAVAILABLE.
    let empty: Vec<(String, Error)> = catalog
        .datasets()
        .filter_map(|d| d.snapshot().require_rows(&d.name).err().map(|e| (d.name.clone(), e)))
        .collect();
    Ok(Box::new(move |conn: &Connection| {
        let read = guard::check(conn, &s.sql, &datasets)?;
        for d in &read {
            // The query's own transaction decides: the view exists once a file is committed.
            if let Some((_, waiting)) = empty.iter().find(|(n, _)| n == d) {
                if view_columns(conn, d)?.is_empty() {
                    return Err(Error::NotReady(waiting.to_string()));
                }
            }
        }
        // Bound values are cast to the types DuckDB infers for the parameters, so a client may
        // send any castable type (strings included) and a bad value is named clearly.
        let params = if batches.is_empty() { Vec::new() } else { params::rows(&batches, &engine.parameters(&s.sql)?)? };
        let keep = pin_read(&engine, conn, &all, &read)?;
        let mut metadata = Default::default();
        for d in &datasets {
            committed_manifest_metadata(conn, d, &mut metadata)?;
        }
        Ok(Planned { sql: guard::trim_tail(&s.sql).to_string(), metadata, params, keep })
    }))
}

/// Pins the segments of the datasets `read`, at the version `conn`'s transaction sees, so their
/// files stay local until the query ends (and evicted ones are built again first). The published
/// snapshot can be a step ahead of a transaction that began just before a publish: then the
/// transaction starts again.
fn pin_read(
    engine: &Engine,
    conn: &Connection,
    all: &[Arc<Dataset>],
    read: &[String],
) -> Result<Vec<Box<dyn std::any::Any + Send>>> {
    for _ in 0..5 {
        let snaps: Vec<_> = all.iter().filter(|d| read.contains(&d.name)).map(|d| (&d.name, d.snapshot())).collect();
        let mut same = true;
        for (name, snap) in &snaps {
            same &= engine::manifest(conn, name)?.0 == snap.version;
        }
        if !same {
            conn.execute_batch("ROLLBACK")?;
            engine.begin_read(conn)?;
            continue;
        }
        let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
        for (_, snap) in snaps {
            for slot in &snap.segments {
                keep.push(Box::new(slot.pin()?));
            }
        }
        return Ok(keep);
    }
    Err(Error::NotReady("the datasets changed while the query started; retry".into()))
}
