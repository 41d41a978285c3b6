//! Result types every Arrow client reads right. DuckDB's Arrow export is faithful, but a few
//! DuckDB types come out as something clients mis-read or cannot read at all; those columns are
//! cast to VARCHAR (their exact DuckDB text form). The README's type table lists the mapping.
//!
//! The check reads the executed result's logical types, so it costs nothing for ordinary
//! results; a result with such a column is re-run once with the casts.

use arrow::datatypes::Schema;
use duckdb::{core::LogicalTypeId, Statement};

use super::quote_ident;

/// Types sent as text: BIGNUM (Arrow: an opaque DuckDB extension of raw bytes), BIT (raw bytes
/// with a padding header), TIME WITH TIME ZONE (Arrow's time64 would drop the offset), UHUGEINT
/// (can exceed DECIMAL(38)), UNION, VARIANT and GEOMETRY (no common client reads them).
fn as_text(id: LogicalTypeId) -> bool {
    matches!(
        id,
        LogicalTypeId::Bignum
            | LogicalTypeId::Bit
            | LogicalTypeId::TimeTZ
            | LogicalTypeId::UHugeint
            | LogicalTypeId::Union
            | LogicalTypeId::Variant
            | LogicalTypeId::Geometry
    )
}

/// `sql` with the offending columns cast to VARCHAR, or None when every column is fine.
/// `stmt` must have been executed (its result's types are read).
pub fn rewrite(stmt: &Statement<'_>, schema: &Schema, sql: &str) -> Option<String> {
    let casts: Vec<String> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| as_text(stmt.column_logical_type(*i).id()))
        .map(|(_, f)| format!("CAST({q} AS VARCHAR) AS {q}", q = quote_ident(f.name())))
        .collect();
    (!casts.is_empty())
        .then(|| format!("SELECT * REPLACE ({}) FROM ({}\n)", casts.join(", "), sql.trim().trim_end_matches(';')))
}
