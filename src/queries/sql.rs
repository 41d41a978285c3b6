//! `sql`: read-only SQL over the datasets, each a view with its name, with optional positional
//! parameters.
//!
//! Two walls: [`guard`](super::guard) checks the parse tree (one SELECT, tables by name, a short
//! list of table functions), and the database-wide sandbox (see `engine`) refuses file access
//! outside Bridge's directories, network access, extensions and setting changes.

use duckdb::Connection;

use super::{committed_manifest_metadata, guard, params};
use crate::{
    catalog::Catalog,
    engine::{view_columns, Planned, QueryPlan},
    error::{Error, Result},
    proto::Sql,
};

pub fn plan(s: Sql, catalog: &Catalog) -> Result<QueryPlan> {
    if s.sql.trim().is_empty() {
        return Err(Error::invalid("the sql ticket needs a non-empty \"sql\""));
    }
    let batches = params::decode(&s.parameters)?;
    let engine = catalog.engine().clone();
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
        let mut metadata = Default::default();
        for d in &datasets {
            committed_manifest_metadata(conn, d, &mut metadata)?;
        }
        Ok(Planned { sql: guard::trim_tail(&s.sql).to_string(), metadata, params })
    }))
}
