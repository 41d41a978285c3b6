//! One schema per dataset, unified by name (case-insensitively) across files.
//!
//! A file's columns arrive already mapped ([`Mapped`]): their dataset name, their type and the
//! SQL that reads them from the file. Columns with a *fixed* type (a known schema such as the TLC
//! one) keep it. Other columns widen when files disagree (int32→int64, int→double, timestamp
//! units→microseconds) and fall back to VARCHAR when nothing narrower holds both (as DuckDB's
//! `union_by_name` does), so the dataset's types follow from the set of files, never from the
//! order they arrived in. A column missing from a file reads as NULL.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// DuckDB type name, e.g. `BIGINT`, `DOUBLE`, `TIMESTAMP`.
    pub ty: String,
}

/// One column of a file as the dataset reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The dataset's name for it.
    pub name: String,
    /// The DuckDB type `expr` yields.
    pub ty: String,
    /// SQL over the file's columns.
    pub expr: String,
    /// The type is the schema's own and never widens.
    pub fixed: bool,
}

fn int_rank(t: &str) -> Option<u8> {
    match t {
        "TINYINT" => Some(1),
        "SMALLINT" | "UTINYINT" => Some(2),
        "INTEGER" | "USMALLINT" => Some(3),
        "BIGINT" | "UINTEGER" => Some(4),
        _ => None,
    }
}

fn is_float(t: &str) -> bool {
    matches!(t, "FLOAT" | "DOUBLE") || t.starts_with("DECIMAL")
}

/// The type both `a` and `b` convert to: the narrowest that holds both, VARCHAR when none does.
pub fn widen(a: &str, b: &str) -> String {
    widen_exact(a, b).unwrap_or_else(|| "VARCHAR".to_string())
}

fn widen_exact(a: &str, b: &str) -> Option<String> {
    if a == b {
        return Some(a.to_string());
    }
    if let (Some(x), Some(y)) = (int_rank(a), int_rank(b)) {
        return Some(if x >= y { a } else { b }.to_string());
    }
    let numeric = |t: &str| int_rank(t).is_some() || is_float(t) || t == "UBIGINT";
    if numeric(a) && numeric(b) {
        return Some("DOUBLE".to_string());
    }
    if a.starts_with("TIMESTAMP") && b.starts_with("TIMESTAMP") && !a.contains("TIME ZONE") && !b.contains("TIME ZONE")
    {
        return Some("TIMESTAMP".to_string());
    }
    None
}

/// The canonical name when files spell a column differently (`airport_fee` vs `Airport_fee`).
pub fn canonical_name(existing: &str, incoming: &str) -> String {
    if existing == incoming {
        existing.to_string()
    } else {
        existing.to_lowercase()
    }
}

/// Changes needed to fold a file's columns into the table's.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub add: Vec<Column>,
    pub retype: Vec<Column>,
    pub rename: Vec<(String, String)>,
}

/// Folds a file's mapped columns into `table` (both by case-insensitive name).
pub fn unify(table: &[Column], file: &[Mapped]) -> Plan {
    let mut plan = Plan::default();
    for f in file {
        match table.iter().find(|t| t.name.eq_ignore_ascii_case(&f.name)) {
            None => {
                if !plan.add.iter().any(|c| c.name.eq_ignore_ascii_case(&f.name)) {
                    plan.add.push(Column { name: f.name.clone(), ty: f.ty.clone() });
                }
            }
            Some(t) => {
                let ty = if f.fixed { f.ty.clone() } else { widen(&t.ty, &f.ty) };
                if ty != t.ty {
                    plan.retype.push(Column { name: t.name.clone(), ty });
                }
                let name = if f.fixed { f.name.clone() } else { canonical_name(&t.name, &f.name) };
                if name != t.name {
                    plan.rename.push((t.name.clone(), name));
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str, t: &str) -> Column {
        Column { name: n.into(), ty: t.into() }
    }

    fn file(cols: &[Column]) -> Vec<Mapped> {
        cols.iter()
            .map(|c| Mapped { name: c.name.clone(), ty: c.ty.clone(), expr: c.name.clone(), fixed: false })
            .collect()
    }

    #[test]
    fn widens_ints_and_mixed_numbers() {
        assert_eq!(widen("INTEGER", "BIGINT"), "BIGINT");
        assert_eq!(widen("BIGINT", "DOUBLE"), "DOUBLE");
        assert_eq!(widen("TIMESTAMP_NS", "TIMESTAMP"), "TIMESTAMP");
        assert_eq!(widen("VARCHAR", "BIGINT"), "VARCHAR");
        // The same set of types gives the same type, in any order.
        let types = ["INTEGER", "DOUBLE", "VARCHAR", "BIGINT"];
        let fold = |ts: &[&str]| ts.iter().skip(1).fold(ts[0].to_string(), |a, t| widen(&a, t));
        assert_eq!(fold(&types), fold(&["VARCHAR", "BIGINT", "INTEGER", "DOUBLE"]));
    }

    #[test]
    fn unifies_tlc_drift() {
        let t2023 = vec![col("VendorID", "BIGINT"), col("passenger_count", "DOUBLE"), col("airport_fee", "DOUBLE")];
        let f2025 = vec![
            col("VendorID", "INTEGER"),
            col("passenger_count", "BIGINT"),
            col("Airport_fee", "DOUBLE"),
            col("cbd_congestion_fee", "DOUBLE"),
        ];
        let plan = unify(&t2023, &file(&f2025));
        assert_eq!(plan.add, vec![col("cbd_congestion_fee", "DOUBLE")]);
        assert!(plan.retype.is_empty());
        assert!(plan.rename.is_empty());
        let f2024_first = vec![col("VendorID", "INTEGER"), col("Airport_fee", "DOUBLE")];
        let plan = unify(&f2024_first, &file(&[col("VendorID", "BIGINT"), col("airport_fee", "DOUBLE")]));
        assert_eq!(plan.retype, vec![col("VendorID", "BIGINT")]);
        assert_eq!(plan.rename, vec![("Airport_fee".to_string(), "airport_fee".to_string())]);
    }

    #[test]
    fn conflicts_become_text_and_fixed_types_stay() {
        let plan = unify(&[col("a", "BIGINT")], &file(&[col("A", "VARCHAR")]));
        assert_eq!(plan.retype, vec![col("a", "VARCHAR")]);
        let fixed = Mapped { name: "a".into(), ty: "BIGINT".into(), expr: "x".into(), fixed: true };
        assert_eq!(unify(&[col("a", "BIGINT")], &[fixed]), Plan::default());
    }
}
