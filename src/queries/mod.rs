//! The built-in queries. Each file validates its parameters (synchronously, so bad input fails
//! before any work starts) and returns a [`QueryPlan`] that runs inside the query's transaction.

pub mod outliers;
pub mod p90;
pub mod range;
pub mod sql;

use std::collections::HashMap;

use duckdb::Connection;

use crate::{
    catalog::{Catalog, Snapshot},
    engine::{manifest, quote_ident, QueryPlan},
    error::{Error, Result},
    proto::{ticket::Query, Ticket},
};

/// Results known to be at most this many rows are materialized by DuckDB (faster than fetching
/// lazily in filter-sized chunks); larger ones stream with bounded memory.
pub const MATERIALIZE_MAX_ROWS: u64 = 500_000;

/// Validates `ticket` and returns its plan.
pub fn plan(ticket: Ticket, catalog: &Catalog) -> Result<QueryPlan> {
    match ticket.query {
        Some(Query::P90(p)) => p90::plan(p, catalog),
        Some(Query::Outliers(o)) => outliers::plan(o, catalog),
        Some(Query::Sql(s)) => sql::plan(s, catalog),
        None => Err(Error::invalid("the ticket names no query; set one of p90, outliers, sql")),
    }
}

/// The columns the taxi queries need.
const TLC_COLUMNS: [&str; 3] = ["tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance"];

/// Fails with a clear message when a dataset lacks the TLC columns a built-in query needs.
pub fn require_tlc(dataset: &str, snap: &Snapshot, query: &str) -> Result<()> {
    if snap.columns.is_empty() {
        return Err(Error::Unavailable(format!("dataset {dataset} has no readable files yet")));
    }
    for c in TLC_COLUMNS {
        if snap.column(c).is_none() {
            return Err(Error::invalid(format!(
                "dataset {dataset} has no column {c}; the {query} query needs yellow-taxi columns"
            )));
        }
    }
    Ok(())
}

/// Freshness metadata of `dataset` as this query's snapshot sees it. `suffix` distinguishes
/// datasets in SQL results (`bridge.manifest_version.yellow`).
pub fn manifest_metadata(
    conn: &Connection,
    dataset: &str,
    suffix: bool,
    md: &mut HashMap<String, String>,
) -> Result<()> {
    let (version, files) = manifest(conn, dataset)?;
    let key = |k: &str| if suffix { format!("bridge.{k}.{dataset}") } else { format!("bridge.{k}") };
    if !suffix {
        md.insert("bridge.dataset".into(), dataset.into());
    }
    md.insert(key("manifest_version"), version.to_string());
    md.insert(key("file_count"), files.len().to_string());
    md.insert(key("row_count"), files.iter().map(|f| f.rows).sum::<u64>().to_string());
    let newest = files.iter().map(|f| f.last_modified).max();
    md.insert(key("newest_file_modified"), newest.map(|t| t.to_rfc3339()).unwrap_or_default());
    Ok(())
}

/// `"col1", "col2"` in the dataset's spelling, or INVALID_ARGUMENT naming the unknown column.
pub fn projection(dataset: &str, snap: &Snapshot, columns: &[String]) -> Result<String> {
    if columns.is_empty() {
        return Ok("*".into());
    }
    let mut out = Vec::with_capacity(columns.len());
    for c in columns {
        let col = snap.column(c).ok_or_else(|| {
            let known: Vec<&str> = snap.columns.iter().map(|c| c.name.as_str()).collect();
            Error::invalid(format!("unknown column {c:?} in dataset {dataset}; columns are: {}", known.join(", ")))
        })?;
        out.push(quote_ident(&col.name));
    }
    Ok(out.join(", "))
}

/// ` LIMIT n` or nothing.
pub fn limit_clause(limit: Option<u64>) -> String {
    limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default()
}

/// A finite double as a SQL literal.
pub fn double(v: f64) -> String {
    format!("CAST('{v:?}' AS DOUBLE)")
}
