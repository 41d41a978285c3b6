//! The tickets. Each file validates its parameters (synchronously, so bad input fails before any
//! work starts) and returns a [`Plan`]: the built-in tickets read segments natively; `sql` runs
//! in DuckDB inside one transaction.

pub mod fast;
pub mod gather;
pub mod guard;
pub mod macros;
pub mod native;
pub mod outliers;
pub mod p90;
pub mod params;
pub mod quantile;
pub mod range;
pub mod read;
pub mod scan;
pub mod split;
pub mod sql;

use std::collections::HashMap;

use duckdb::Connection;
use native::{Place, Shape};

use crate::{
    catalog::{Catalog, Snapshot},
    engine::{manifest, QueryPlan, QueryStream},
    error::{Error, Result},
    proto::{ticket::Query, Ticket},
};

/// How a ticket runs.
pub enum Plan {
    /// Over segments, on a blocking thread or (small jobs) here.
    Native(native::Job, native::Place),
    /// In DuckDB.
    Sql(QueryPlan),
}

/// Validates `ticket` and returns its plan.
pub fn plan(ticket: Ticket, catalog: &Catalog) -> Result<Plan> {
    match ticket.query {
        Some(Query::P90(p)) => p90::plan(p, catalog).map(|(job, place)| Plan::Native(job, place)),
        Some(Query::Outliers(o)) => outliers::plan(o, catalog).map(|job| Plan::Native(job, Place::Pool)),
        Some(Query::Scan(s)) => scan::plan(s, catalog).map(|job| Plan::Native(job, Place::Pool)),
        Some(Query::Sql(s)) => {
            // SQL the segments answer runs as its ticket (see `fast`); if that ticket cannot be
            // planned, DuckDB answers (and words any error) as for any other statement.
            if let Some(count) = fast::count_star(&s.sql, catalog).filter(|_| s.parameters.is_empty()) {
                // The count is the snapshot's: no rows are read.
                return count.map(|job| Plan::Native(job, Place::Inline));
            }
            let native = fast::rewrite(&s.sql).filter(|_| s.parameters.is_empty()).map(|t| plan(t, catalog));
            match native {
                Some(Ok(p)) => Ok(p),
                _ => sql::plan(s, catalog).map(Plan::Sql),
            }
        }
        None => Err(Error::invalid("the ticket names no query; set one of p90, outliers, scan, sql")),
    }
}

/// The ticket's query kind, as metrics and logs name it.
pub fn kind(ticket: &Ticket) -> &'static str {
    match ticket.query {
        Some(Query::P90(_)) => "p90",
        Some(Query::Outliers(_)) => "outliers",
        Some(Query::Scan(_)) => "scan",
        Some(Query::Sql(_)) => "sql",
        None => "none",
    }
}

/// The SQL text of a `sql` ticket (for the status page's query list).
pub fn sql_text(ticket: &Ticket) -> Option<String> {
    match &ticket.query {
        Some(Query::Sql(s)) => Some(s.sql.clone()),
        _ => None,
    }
}

/// Waits, if the ticket asks for a `min_version`, until its dataset has published that version.
pub async fn await_min_version(ticket: &Ticket, catalog: &Catalog) -> Result<()> {
    let (dataset, min) = match &ticket.query {
        Some(Query::P90(p)) => (&p.dataset, p.min_version),
        Some(Query::Outliers(o)) => (&o.dataset, o.min_version),
        Some(Query::Scan(s)) => (&s.dataset, s.min_version),
        _ => return Ok(()),
    };
    match min {
        Some(v) => catalog.dataset(dataset)?.wait_for_version(v, catalog.min_version_wait()).await,
        None => Ok(()),
    }
}

/// Starts `plan`; returns once the schema is known. With `schema_only` no rows are produced.
pub async fn start(plan: Plan, catalog: &Catalog, shape: Shape, schema_only: bool) -> Result<QueryStream> {
    match plan {
        Plan::Native(job, place) => native::run(job, place, shape, schema_only).await,
        Plan::Sql(p) => catalog.engine().stream(p, shape.batch_rows, schema_only).await,
    }
}

/// Fails with a clear message when a dataset lacks the TLC columns a built-in query needs, or
/// has no readable file yet (UNAVAILABLE, saying what it waits for).
pub fn require_tlc(dataset: &str, snap: &Snapshot, query: &str) -> Result<()> {
    snap.require_rows(dataset)?;
    for c in crate::tlc::REQUIRED {
        if snap.column(c).is_none() {
            return Err(Error::invalid(format!(
                "dataset {dataset} has no column {c}; the {query} query needs yellow-taxi columns"
            )));
        }
    }
    if let Some(i) = snap.segments.iter().position(|s| !s.is_taxi()) {
        return Err(Error::invalid(format!(
            "file {} of dataset {dataset} lacks the yellow-taxi columns the {query} query needs",
            snap.files[i].key
        )));
    }
    Ok(())
}

/// Freshness metadata of the snapshot a built-in query reads: `bridge.<key>`, and also
/// `bridge.<key>.<dataset>` as `sql` answers key it (SQL the segments answer reads the same).
pub fn manifest_metadata(dataset: &str, snap: &Snapshot) -> HashMap<String, String> {
    let newest = snap.files.iter().map(|f| f.last_modified).max();
    let facts = [
        ("manifest_version", snap.version.to_string()),
        ("file_count", snap.files.len().to_string()),
        ("row_count", snap.rows().to_string()),
        ("newest_file_modified", newest.map(|t| t.to_rfc3339()).unwrap_or_default()),
    ];
    let mut md = HashMap::from([("bridge.dataset".to_string(), dataset.to_string())]);
    for (key, value) in facts {
        md.insert(format!("bridge.{key}.{dataset}"), value.clone());
        md.insert(format!("bridge.{key}"), value);
    }
    md
}

/// Freshness metadata of `dataset` as a SQL query's transaction sees it, keyed
/// `bridge.<key>.<dataset>` so that several datasets fit.
pub fn committed_manifest_metadata(conn: &Connection, dataset: &str, md: &mut HashMap<String, String>) -> Result<()> {
    let (version, files) = manifest(conn, dataset)?;
    let key = |k: &str| format!("bridge.{k}.{dataset}");
    md.insert(key("manifest_version"), version.to_string());
    md.insert(key("file_count"), files.len().to_string());
    md.insert(key("row_count"), files.iter().map(|f| f.rows).sum::<u64>().to_string());
    let newest = files.iter().map(|f| f.last_modified).max();
    md.insert(key("newest_file_modified"), newest.map(|t| t.to_rfc3339()).unwrap_or_default());
    Ok(())
}
