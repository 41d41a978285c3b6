//! SQL the segments answer: Flight SQL clients (BI tools, ADBC) that send the built-in queries as
//! SQL get the tickets' speed. A statement is rewritten into a ticket only when it is exactly one
//! of these shapes, with literal arguments the ticket accepts as they are:
//!
//! * `SELECT * FROM p90('<dataset>', <from>, <to> [, percentile := <0..1>])`
//! * `SELECT * FROM outliers('<dataset>', <from>, <to> [, within_p90 := true|false])`
//! * `SELECT * | <column>, ... FROM <dataset> [WHERE tpep_pickup_datetime >= <from> AND
//!   tpep_pickup_datetime < <to>]` (either bound alone, too): the `scan` ticket
//!
//! each with an optional `LIMIT <n>` (without ORDER BY, SQL leaves which rows to the server),
//! * `SELECT count(*) [AS <name>] FROM <dataset>`: the row count of the dataset's manifest (any
//!   dataset)
//!
//! where a bound is `'<ISO date or datetime>'`, `TIMESTAMP '<…>'` or `NULL` (open; only in the
//! macros). Anything else (another shape, another literal, a bound the ticket refuses) goes to
//! DuckDB unchanged, as does any statement whose ticket cannot be planned: the rewrite never
//! changes an answer, only where it is computed.

use std::sync::Arc;

use arrow::{
    array::Int64Array,
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};

use super::{manifest_metadata, native::Job};
use crate::{
    catalog::Catalog,
    error::Result,
    proto::{ticket::Query, Outliers, Range, Scan, Ticket, P90},
};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Punct(&'static str),
}

fn lex(sql: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next()? {
                    (_, '\'') if chars.peek().is_some_and(|(_, c)| *c == '\'') => {
                        chars.next();
                        text.push('\'');
                    }
                    (_, '\'') => break,
                    (_, c) => text.push(c),
                }
            }
            out.push(Token::Text(text));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i;
            while let Some(&(j, c)) = chars.peek().filter(|(_, c)| c.is_ascii_alphanumeric() || *c == '_') {
                end = j + c.len_utf8();
                chars.next();
            }
            out.push(Token::Word(sql[i..end].to_ascii_lowercase()));
        } else if c.is_ascii_digit() || c == '.' {
            let mut end = i;
            while let Some(&(j, c)) = chars.peek().filter(|(_, c)| c.is_ascii_digit() || *c == '.') {
                end = j + c.len_utf8();
                chars.next();
            }
            out.push(Token::Number(sql[i..end].parse().ok()?));
        } else {
            chars.next();
            let punct = match c {
                ':' if chars.peek().is_some_and(|(_, c)| *c == '=') => {
                    chars.next();
                    ":="
                }
                '>' if chars.peek().is_some_and(|(_, c)| *c == '=') => {
                    chars.next();
                    ">="
                }
                '(' => "(",
                ')' => ")",
                ',' => ",",
                '*' => "*",
                '<' => "<",
                ';' => ";",
                _ => return None,
            };
            out.push(Token::Punct(punct));
        }
    }
    while out.last() == Some(&Token::Punct(";")) {
        out.pop();
    }
    Some(out)
}

/// Reads tokens in order; every step fails the match with None.
struct Cursor<'a>(&'a [Token]);

impl Cursor<'_> {
    fn next(&mut self) -> Option<&Token> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn word(&mut self, w: &str) -> Option<()> {
        (self.next()? == &Token::Word(w.into())).then_some(())
    }

    fn punct(&mut self, p: &str) -> Option<()> {
        matches!(self.next()?, Token::Punct(q) if *q == p).then_some(())
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.0.first(), Some(Token::Word(v)) if v == w)
    }

    fn peek_punct(&self, p: &str) -> bool {
        matches!(self.0.first(), Some(Token::Punct(q)) if *q == p)
    }

    fn ident(&mut self) -> Option<String> {
        match self.next()? {
            Token::Word(w) => Some(w.clone()),
            _ => None,
        }
    }

    /// A bound: `'…'`, `TIMESTAMP '…'`, or `NULL` (as the empty string: open) when allowed.
    fn bound(&mut self, null: bool) -> Option<String> {
        match self.next()?.clone() {
            Token::Text(t) if !t.trim().is_empty() => Some(t),
            Token::Word(w) if w == "timestamp" => match self.next()? {
                Token::Text(t) if !t.trim().is_empty() => Some(t.clone()),
                _ => None,
            },
            Token::Word(w) if w == "null" && null => Some(String::new()),
            _ => None,
        }
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The ticket that answers `sql` from the segments, when the statement is one of the shapes above.
pub fn rewrite(sql: &str) -> Option<Ticket> {
    let tokens = lex(sql)?;
    let mut c = Cursor(&tokens);
    c.word("select")?;
    let columns = projection(&mut c)?;
    c.word("from")?;
    let name = c.ident()?;
    let mut query = if c.peek_punct("(") && columns.is_empty() {
        macro_call(&mut c, &name)?
    } else {
        let range = match c.peek_word("where") {
            true => Some(where_range(&mut c)?),
            false => None,
        };
        Query::Scan(Scan { dataset: name, range, columns, ..Default::default() })
    };
    if c.peek_word("limit") {
        c.word("limit")?;
        let n = match c.next()? {
            Token::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n <= u32::MAX as f64 => Some(*n as u64),
            _ => return None,
        };
        match &mut query {
            Query::Scan(s) => s.limit = n,
            Query::P90(p) => p.limit = n,
            Query::Outliers(o) => o.limit = n,
            _ => return None,
        }
    }
    c.done().then_some(Ticket { query: Some(query), call_id: Vec::new() })
}

/// `SELECT count(*) [AS <name>] FROM <dataset>`, answered from the manifest: its files' row
/// counts are the rows the dataset's view holds. The column is named as DuckDB names it.
pub fn count_star(sql: &str, catalog: &Catalog) -> Option<Result<Job>> {
    let tokens = lex(sql)?;
    let mut c = Cursor(&tokens);
    for w in ["select", "count"] {
        c.word(w)?;
    }
    for p in ["(", "*", ")"] {
        c.punct(p)?;
    }
    let mut name = "count_star()".to_string();
    if c.0.first() == Some(&Token::Word("as".into())) {
        c.word("as")?;
        name = c.ident()?;
    }
    c.word("from")?;
    let dataset = c.ident()?;
    if !c.done() {
        return None;
    }
    let ds = catalog.dataset(&dataset).ok()?;
    let snap = ds.snapshot();
    if let Err(e) = snap.require_rows(&ds.name) {
        return Some(Err(e));
    }
    Some(Ok(Box::new(move |emit: &mut super::native::Emitter| {
        let schema = Schema::new(vec![Field::new(name.as_str(), DataType::Int64, true)]);
        let schema = Arc::new(schema.with_metadata(manifest_metadata(&dataset, &snap)));
        let rows = Int64Array::from(vec![snap.rows() as i64]);
        if emit.start(schema.clone(), None) {
            emit.push(RecordBatch::try_new(schema, vec![Arc::new(rows)])?)?;
        }
        Ok(())
    })))
}

/// `*` (empty) or a list of plain column names.
fn projection(c: &mut Cursor) -> Option<Vec<String>> {
    if c.peek_punct("*") {
        c.punct("*")?;
        return Some(Vec::new());
    }
    let mut columns = vec![c.ident()?];
    while c.peek_punct(",") {
        c.punct(",")?;
        columns.push(c.ident()?);
    }
    Some(columns)
}

fn macro_call(c: &mut Cursor, name: &str) -> Option<Query> {
    c.punct("(")?;
    let dataset = match c.next()? {
        Token::Text(d) => d.clone(),
        _ => return None,
    };
    c.punct(",")?;
    let from = c.bound(true)?;
    c.punct(",")?;
    let to = c.bound(true)?;
    let range = Some(Range { from, to });
    let named = if c.peek_punct(",") {
        c.punct(",")?;
        let key = c.ident()?;
        c.punct(":=")?;
        Some((key, c.next()?.clone()))
    } else {
        None
    };
    c.punct(")")?;
    match (name, named) {
        ("p90", None) => Some(Query::P90(P90 { dataset, range, ..Default::default() })),
        ("p90", Some((k, Token::Number(p)))) if k == "percentile" && p > 0.0 && p < 1.0 => {
            Some(Query::P90(P90 { dataset, range, percentile: Some(p), ..Default::default() }))
        }
        ("outliers", None) => Some(Query::Outliers(Outliers { dataset, range, ..Default::default() })),
        ("outliers", Some((k, Token::Word(v)))) if k == "within_p90" && (v == "true" || v == "false") => {
            Some(Query::Outliers(Outliers { dataset, range, within_p90: v == "true", ..Default::default() }))
        }
        _ => None,
    }
}

/// `WHERE tpep_pickup_datetime >= <from> [AND tpep_pickup_datetime < <to>]`, or the `<` alone,
/// up to the end or a `LIMIT`.
fn where_range(c: &mut Cursor) -> Option<Range> {
    c.word("where")?;
    let mut range = Range::default();
    loop {
        c.word("tpep_pickup_datetime")?;
        match c.next()? {
            Token::Punct(">=") if range.from.is_empty() && range.to.is_empty() => range.from = c.bound(false)?,
            Token::Punct("<") if range.to.is_empty() => range.to = c.bound(false)?,
            _ => return None,
        }
        if c.done() || c.peek_word("limit") {
            return Some(range);
        }
        c.word("and")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> Option<Query> {
        rewrite(sql).and_then(|t| t.query)
    }

    #[test]
    fn rewrites_only_the_exact_shapes() {
        let r = |f: &str, t: &str| Some(Range { from: f.into(), to: t.into() });
        assert_eq!(
            query("select * from P90('yellow', '2024-01-01', TIMESTAMP '2024-02-01 07:13') ;"),
            Some(Query::P90(P90 {
                dataset: "yellow".into(),
                range: r("2024-01-01", "2024-02-01 07:13"),
                ..Default::default()
            }))
        );
        assert_eq!(
            query("SELECT * FROM p90('yellow', NULL, NULL, percentile := 0.5)"),
            Some(Query::P90(P90 {
                dataset: "yellow".into(),
                range: r("", ""),
                percentile: Some(0.5),
                ..Default::default()
            }))
        );
        assert_eq!(
            query("SELECT * FROM outliers('yellow', '2024-01-01', '2024-01-02', within_p90 := true)"),
            Some(Query::Outliers(Outliers {
                dataset: "yellow".into(),
                range: r("2024-01-01", "2024-01-02"),
                within_p90: true,
                ..Default::default()
            }))
        );
        assert_eq!(
            query("SELECT trip_distance, fare_amount FROM yellow WHERE tpep_pickup_datetime >= '2024-01-03' AND tpep_pickup_datetime < '2024-01-04'"),
            Some(Query::Scan(Scan {
                dataset: "yellow".into(),
                range: r("2024-01-03", "2024-01-04"),
                columns: vec!["trip_distance".into(), "fare_amount".into()],
                ..Default::default()
            }))
        );
        assert_eq!(
            query("SELECT * FROM yellow LIMIT 9656"),
            Some(Query::Scan(Scan { dataset: "yellow".into(), limit: Some(9656), ..Default::default() }))
        );
        assert_eq!(
            query("SELECT * FROM p90('yellow', '2024-01-01', '2024-02-01') LIMIT 5"),
            Some(Query::P90(P90 {
                dataset: "yellow".into(),
                range: r("2024-01-01", "2024-02-01"),
                limit: Some(5),
                ..Default::default()
            }))
        );
        assert_eq!(
            query("SELECT trip_distance FROM yellow WHERE tpep_pickup_datetime < '2024-01-04' LIMIT 0"),
            Some(Query::Scan(Scan {
                dataset: "yellow".into(),
                range: r("", "2024-01-04"),
                columns: vec!["trip_distance".into()],
                limit: Some(0),
                ..Default::default()
            }))
        );
        for other in [
            "SELECT count(*) FROM yellow",
            "SELECT * FROM yellow LIMIT 1.5",
            "SELECT * FROM yellow LIMIT -1",
            "SELECT * FROM yellow LIMIT 5 OFFSET 5",
            "SELECT * FROM yellow LIMIT 5 WHERE tpep_pickup_datetime < '2024-01-04'",
            "SELECT trip_distance FROM p90('yellow', '2024-01-01', '2024-02-01')",
            "SELECT * FROM p90('yellow', '2024-01-01', '2024-02-01', percentile := 1)",
            "SELECT * FROM p90('yellow', ?, ?)",
            "SELECT * FROM yellow WHERE tpep_pickup_datetime >= '2024-01-01' OR tpep_pickup_datetime < '2024-01-02'",
            "SELECT * FROM yellow WHERE tpep_pickup_datetime > '2024-01-01'",
            "SELECT * FROM yellow WHERE tpep_pickup_datetime >= NULL",
            "SELECT * FROM yellow WHERE tpep_pickup_datetime >= '2024-01-01'; DROP TABLE x",
            "SELECT * FROM outliers('yellow', '2024-01-01', '2024-01-02', within_p90 := 1)",
        ] {
            assert_eq!(query(other), None, "{other}");
        }
    }
}
