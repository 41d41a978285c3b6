//! `sql`: read-only SQL over the datasets, each a view with its name.
//!
//! Two walls: DuckDB's own parser must see exactly one SELECT (`json_serialize_sql` only
//! serializes SELECT statements), and the database-wide sandbox (see `engine`) refuses file access
//! outside Bridge's directories, network access, extensions and setting changes.

use duckdb::Connection;

use super::committed_manifest_metadata;
use crate::{
    catalog::Catalog,
    engine::{Planned, QueryPlan},
    error::{Error, Result},
    proto::Sql,
};

/// Checks that `sql` is one SELECT statement, with DuckDB's parser.
pub fn check_read_only(conn: &Connection, sql: &str) -> Result<()> {
    let json: String = conn.query_row("SELECT json_serialize_sql(CAST(? AS VARCHAR))", [sql], |r| r.get(0))?;
    let parsed: serde_json::Value = serde_json::from_str(&json).map_err(Error::internal)?;
    if parsed["error"].as_bool() == Some(true) {
        let msg = parsed["error_message"].as_str().unwrap_or("not a query");
        let msg = if msg.contains("Only SELECT") {
            "Bridge is read-only: only SELECT queries are allowed".to_string()
        } else {
            msg.to_string()
        };
        return Err(Error::invalid(msg));
    }
    let n = parsed["statements"].as_array().map_or(0, Vec::len);
    if n != 1 {
        return Err(Error::invalid(format!("send exactly one SELECT statement (got {n})")));
    }
    Ok(())
}

pub fn plan(s: Sql, catalog: &Catalog) -> Result<QueryPlan> {
    if s.sql.trim().is_empty() {
        return Err(Error::invalid("the sql ticket needs a non-empty \"sql\""));
    }
    let datasets: Vec<String> = catalog.datasets().map(|d| d.name.clone()).collect();
    Ok(Box::new(move |conn: &Connection| {
        check_read_only(conn, &s.sql)?;
        let mut metadata = Default::default();
        for d in &datasets {
            committed_manifest_metadata(conn, d, &mut metadata)?;
        }
        Ok(Planned { sql: s.sql, metadata })
    }))
}
