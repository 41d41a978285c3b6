//! The first wall around user SQL, before DuckDB binds it: DuckDB's own parser must see exactly
//! one SELECT, and that SELECT may only read the dataset views (and its own CTEs), call table
//! functions from a short list, and call no function that shows a setting, a path or the
//! environment. Bridge's own tables, DuckDB's catalog functions and views (`duckdb_*`,
//! `information_schema`, `pg_catalog`) and files are out of reach. The second wall is
//! database-wide (see `engine`): file access only under Bridge's directories, no network, no
//! extensions, settings locked.

use duckdb::Connection;
use serde_json::Value;

use crate::error::{Error, Result};

/// Table functions user SQL may call: generators, JSON helpers and Bridge's own macros. Anything
/// else (readers, `glob`, `query`, catalog functions, pointer-taking scans…) is refused.
const TABLE_FUNCTIONS: &[&str] = &["range", "generate_series", "unnest", "json_each", "json_tree", "p90", "outliers"];

/// Scalar functions that show the server's settings (paths among them) or environment.
const HIDDEN_FUNCTIONS: &[&str] =
    &["current_setting", "getenv", "getvariable", "which_secret", "duckdb_secret_value", "current_schemas"];

/// Checks that `sql` is one SELECT over the dataset views, with DuckDB's parser; returns the
/// datasets it reads. `datasets` are the views, and the names Bridge's macros (`p90`,
/// `outliers`) accept as their first argument.
pub fn check(conn: &Connection, sql: &str, datasets: &[String]) -> Result<Vec<String>> {
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
    let mut ctes = Vec::new();
    cte_names(&parsed["statements"], &mut ctes);
    let mut walk = Walk { datasets, ctes, read: Vec::new() };
    walk.visit(&parsed["statements"])?;
    Ok(walk.read)
}

/// `sql` without what trails its last token: comments (`-- …`, `/* … */`), semicolons and
/// whitespace. Bridge wraps user SQL (`SELECT * FROM (…) LIMIT 0` for schemas, casts for
/// portable types), and a trailing comment or `;` must not swallow or break the wrapper.
pub fn trim_tail(sql: &str) -> &str {
    let b = sql.as_bytes();
    let (mut i, mut end) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
                continue;
            }
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                end = i + 1;
            }
            c if c.is_ascii_whitespace() || c == b';' => {}
            _ => end = i + 1,
        }
        i += 1;
    }
    &sql[..end.min(sql.len())]
}

/// Every CTE name defined anywhere in the tree (they may be read as tables).
fn cte_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|v| cte_names(v, out)),
        Value::Object(map) => {
            if let Some(Value::Array(ctes)) = map.get("cte_map").and_then(|m| m.get("map")) {
                out.extend(ctes.iter().filter_map(|c| c["key"].as_str()).map(str::to_ascii_lowercase));
            }
            map.values().for_each(|v| cte_names(v, out));
        }
        _ => {}
    }
}

struct Walk<'a> {
    datasets: &'a [String],
    ctes: Vec<String>,
    /// The datasets the statement reads.
    read: Vec<String>,
}

impl Walk<'_> {
    /// Visits every node of the parse tree: subqueries, CTEs, joins and expressions included.
    fn visit(&mut self, v: &Value) -> Result<()> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|v| self.visit(v)),
            Value::Object(map) => {
                match map.get("type").and_then(Value::as_str) {
                    Some("TABLE_FUNCTION") => {
                        if let Some(d) = table_function(&map["function"], self.datasets)? {
                            self.read.push(d);
                        }
                    }
                    Some("BASE_TABLE") => self.table(map)?,
                    Some("FUNCTION") => function(map.get("function_name").and_then(Value::as_str).unwrap_or(""))?,
                    _ => {}
                }
                map.values().try_for_each(|v| self.visit(v))
            }
            _ => Ok(()),
        }
    }

    /// A table must be a dataset view (optionally `main.` or `store.main.`) or a CTE.
    fn table(&mut self, node: &serde_json::Map<String, Value>) -> Result<()> {
        let field = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or("");
        let (name, schema, catalog) = (field("table_name"), field("schema_name"), field("catalog_name"));
        looks_like_a_file(name)?;
        let plain = schema.is_empty() && catalog.is_empty();
        if plain && self.ctes.contains(&name.to_ascii_lowercase()) {
            return Ok(());
        }
        let in_main = (schema.is_empty() || schema.eq_ignore_ascii_case("main"))
            && (catalog.is_empty() || catalog.eq_ignore_ascii_case("store"));
        match self.datasets.iter().find(|d| d.eq_ignore_ascii_case(name)) {
            Some(d) if in_main => {
                self.read.push(d.clone());
                Ok(())
            }
            _ => Err(Error::invalid(format!(
                "table {:?} is not a dataset; the SQL sandbox reads only the datasets ({}) and the \
                 macros p90() and outliers()",
                [catalog, schema, name].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("."),
                self.datasets.join(", ")
            ))),
        }
    }
}

fn function(name: &str) -> Result<()> {
    let lower = name.to_ascii_lowercase();
    if HIDDEN_FUNCTIONS.contains(&lower.as_str()) || lower.starts_with("duckdb_") || lower.starts_with("pragma_") {
        return Err(Error::invalid(format!(
            "function {name}() is not allowed by the SQL sandbox: it shows the server's settings or environment"
        )));
    }
    Ok(())
}

/// A string constant's text, in the parse tree's JSON (both layouts DuckDB has used).
fn string_constant(e: &Value) -> Option<&str> {
    e["literal"]["text"].as_str().or_else(|| e["value"]["value"].as_str())
}

/// Checks a table function; returns the dataset a macro reads.
fn table_function(f: &Value, datasets: &[String]) -> Result<Option<String>> {
    let name = f["function_name"].as_str().unwrap_or("").to_ascii_lowercase();
    let schema = f["schema"].as_str().unwrap_or("");
    let catalog = f["catalog"].as_str().unwrap_or("");
    let plain = (schema.is_empty() || schema.eq_ignore_ascii_case("main")) && catalog.is_empty();
    if plain && matches!(name.as_str(), "p90" | "outliers") {
        // The macros read the table their first argument names: it must be a dataset.
        let first = f["children"].get(0).or_else(|| f["arguments"].get(0)).unwrap_or(&Value::Null);
        let arg = first.get("expression").unwrap_or(first);
        return match string_constant(arg) {
            Some(d) if datasets.iter().any(|n| n == d) => Ok(Some(d.to_string())),
            _ => Err(Error::invalid(format!(
                "{name}() takes a dataset name as its first argument, a string literal, one of: {}",
                datasets.join(", ")
            ))),
        };
    }
    if plain && TABLE_FUNCTIONS.contains(&name.as_str()) {
        return Ok(None);
    }
    Err(Error::invalid(format!(
        "table function {name}() is not allowed by the SQL sandbox: it reads the dataset views only \
         (allowed table functions: {})",
        TABLE_FUNCTIONS.join(", ")
    )))
}

/// A table name that DuckDB would treat as a file (a replacement scan) is refused.
fn looks_like_a_file(name: &str) -> Result<()> {
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
            "SELECT count(*) FROM YELLOW -- a trailing comment",
        ] {
            let read = check(&conn, sql, &datasets()).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(read.is_empty() || read.iter().all(|d| d == "yellow"), "{sql}: {read:?}");
        }
        let read = check(&conn, "WITH t AS (SELECT 1) SELECT * FROM t", &datasets()).expect("cte");
        assert!(read.is_empty());
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

    #[test]
    fn trims_trailing_comments_and_semicolons_only() {
        assert_eq!(trim_tail("SELECT 1 -- c"), "SELECT 1");
        assert_eq!(trim_tail("SELECT 1; -- done\n"), "SELECT 1");
        assert_eq!(trim_tail("SELECT 1 /* x */ ;"), "SELECT 1");
        assert_eq!(trim_tail("SELECT '--', \"a;b\" -- c"), "SELECT '--', \"a;b\"");
        assert_eq!(trim_tail("SELECT 1 -- c\nFROM t"), "SELECT 1 -- c\nFROM t");
        assert_eq!(trim_tail("SELECT 'it''s' ;"), "SELECT 'it''s'");
    }

    #[test]
    fn refuses_bridge_tables_catalogs_settings_and_environment() {
        for sql in [
            "SELECT * FROM bridge.files",
            "SELECT * FROM bridge.versions",
            "SELECT * FROM information_schema.tables",
            "SELECT * FROM pg_settings",
            "SELECT * FROM pg_catalog.pg_settings",
            "SELECT * FROM duckdb_settings()",
            "SELECT * FROM duckdb_databases()",
            "SELECT * FROM duckdb_views",
            "SELECT * FROM pragma_database_list",
            "SELECT current_setting('allowed_directories')",
            "SELECT getenv('HOME')",
            "SELECT * FROM yellow WHERE current_setting('temp_directory') IS NOT NULL",
            "SELECT * FROM other.main.yellow",
            "SELECT * FROM sqlite_master",
        ] {
            let msg = refused(sql);
            assert!(msg.contains("sandbox") || msg.contains("not a dataset"), "{sql}: {msg}");
        }
    }
}
