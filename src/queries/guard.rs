//! The first wall around user SQL, before DuckDB binds it: DuckDB's own parser must see exactly
//! one SELECT, and that SELECT may only call table functions from a short list and may only name
//! tables, never files. The second wall is database-wide (see `engine`): file access only under
//! Bridge's directories, no network, no extensions, settings locked.

use duckdb::Connection;
use serde_json::Value;

use crate::error::{Error, Result};

/// Table functions user SQL may call: generators, JSON helpers, the catalog, and Bridge's own
/// macros. Anything else (readers, `glob`, `query`, pointer-taking scans…) is refused.
const TABLE_FUNCTIONS: &[&str] = &[
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    "p90",
    "outliers",
    "duckdb_columns",
    "duckdb_constraints",
    "duckdb_databases",
    "duckdb_functions",
    "duckdb_keywords",
    "duckdb_schemas",
    "duckdb_tables",
    "duckdb_types",
    "duckdb_views",
];

/// Checks that `sql` is one SELECT that reads tables only, with DuckDB's parser. `datasets` are
/// the names Bridge's macros (`p90`, `outliers`) accept as their first argument.
pub fn check(conn: &Connection, sql: &str, datasets: &[String]) -> Result<()> {
    let json: String = conn.query_row("SELECT json_serialize_sql(CAST(? AS VARCHAR))", [sql], |r| r.get(0))?;
    let parsed: Value = serde_json::from_str(&json).map_err(Error::internal)?;
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
    walk(&parsed["statements"], datasets)
}

/// Visits every node of the parse tree: subqueries, CTEs, joins and expressions included.
fn walk(v: &Value, datasets: &[String]) -> Result<()> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|v| walk(v, datasets)),
        Value::Object(map) => {
            match map.get("type").and_then(Value::as_str) {
                Some("TABLE_FUNCTION") => table_function(&map["function"], datasets)?,
                Some("BASE_TABLE") => table(map.get("table_name").and_then(Value::as_str).unwrap_or(""))?,
                _ => {}
            }
            map.values().try_for_each(|v| walk(v, datasets))
        }
        _ => Ok(()),
    }
}

/// A string constant's text, in the parse tree's JSON (both layouts DuckDB has used).
fn string_constant(e: &Value) -> Option<&str> {
    e["literal"]["text"].as_str().or_else(|| e["value"]["value"].as_str())
}

fn table_function(f: &Value, datasets: &[String]) -> Result<()> {
    let name = f["function_name"].as_str().unwrap_or("").to_ascii_lowercase();
    let schema = f["schema"].as_str().unwrap_or("");
    let catalog = f["catalog"].as_str().unwrap_or("");
    let plain = (schema.is_empty() || schema.eq_ignore_ascii_case("main")) && catalog.is_empty();
    if plain && matches!(name.as_str(), "p90" | "outliers") {
        // The macros read the table their first argument names: it must be a dataset.
        let first = f["children"].get(0).or_else(|| f["arguments"].get(0)).unwrap_or(&Value::Null);
        let arg = first.get("expression").unwrap_or(first);
        return match string_constant(arg) {
            Some(d) if datasets.iter().any(|n| n == d) => Ok(()),
            _ => Err(Error::invalid(format!(
                "{name}() takes a dataset name as its first argument, a string literal, one of: {}",
                datasets.join(", ")
            ))),
        };
    }
    if plain && TABLE_FUNCTIONS.contains(&name.as_str()) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "table function {name}() is not allowed by the SQL sandbox: it reads the dataset views only \
         (allowed table functions: {})",
        TABLE_FUNCTIONS.join(", ")
    )))
}

/// A table name that DuckDB would treat as a file (a replacement scan) is refused.
fn table(name: &str) -> Result<()> {
    if name.contains(['/', '\\', '.', '~', ':', '*', '?']) {
        return Err(Error::invalid(format!(
            "{name:?} looks like a file path; the SQL sandbox reads the dataset views only, by name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datasets() -> Vec<String> {
        vec!["yellow".to_string()]
    }

    fn refused(sql: &str) -> String {
        let conn = Connection::open_in_memory().expect("in-memory DuckDB");
        match check(&conn, sql, &datasets()) {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn allows_plain_selects_over_tables_and_generators() {
        let conn = Connection::open_in_memory().expect("in-memory DuckDB");
        for sql in [
            "SELECT count(*) FROM yellow WHERE trip_distance > ?",
            "WITH t AS (SELECT * FROM range(3)) SELECT * FROM t JOIN store.main.yellow USING (x)",
            "SELECT * FROM p90('yellow', NULL, NULL)",
            "SELECT count(*) FROM outliers('yellow', TIMESTAMP '2023-01-01', NULL, within_p90 := true)",
            "SELECT table_name FROM information_schema.tables",
        ] {
            check(&conn, sql, &datasets()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn refuses_files_functions_and_writes_anywhere_in_the_tree() {
        assert!(refused("SELECT * FROM read_text('/etc/passwd')").contains("read_text"));
        assert!(refused("SELECT (SELECT 1 FROM glob('/*'))").contains("glob"));
        assert!(refused("WITH x AS (FROM main.read_csv('/x')) SELECT * FROM x").contains("read_csv"));
        assert!(refused("SELECT * FROM yellow, LATERAL query('SELECT 1')").contains("query"));
        assert!(refused("FROM '/etc/passwd'").contains("file path"));
        assert!(refused("SELECT * FROM 'data.parquet'").contains("file path"));
        assert!(refused("COPY (SELECT 1) TO 'x.csv'").contains("read-only"));
        assert!(refused("SELECT 1; SELECT 2").contains("exactly one"));
        assert!(refused("SELECT * FROM p90('bridge.files', NULL, NULL)").contains("dataset name"));
        assert!(refused("SELECT * FROM outliers(? , NULL, NULL)").contains("dataset name"));
    }
}
