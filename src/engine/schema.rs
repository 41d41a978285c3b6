//! One canonical schema per dataset, unified by name (case-insensitively) across files.
//!
//! Types widen when files disagree (int32→int64, int→double, timestamp units→microseconds); a
//! column missing from a file reads as NULL; an irreconcilable conflict is an error for that file.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// DuckDB type name, e.g. `BIGINT`, `DOUBLE`, `TIMESTAMP`.
    pub ty: String,
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

/// The type both `a` and `b` convert to without loss of meaning, or None for a real conflict.
pub fn widen(a: &str, b: &str) -> Option<String> {
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

/// Folds `file` into `table` (both by case-insensitive name). Errors name the conflicting column.
pub fn unify(table: &[Column], file: &[Column]) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for f in file {
        match table.iter().find(|t| t.name.eq_ignore_ascii_case(&f.name)) {
            None => {
                if !plan.add.iter().any(|c| c.name.eq_ignore_ascii_case(&f.name)) {
                    plan.add.push(f.clone());
                }
            }
            Some(t) => {
                let ty = widen(&t.ty, &f.ty)
                    .ok_or_else(|| format!("column {:?} is {} here but {} in earlier files", f.name, f.ty, t.ty))?;
                if ty != t.ty {
                    plan.retype.push(Column { name: t.name.clone(), ty });
                }
                let name = canonical_name(&t.name, &f.name);
                if name != t.name {
                    plan.rename.push((t.name.clone(), name));
                }
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str, t: &str) -> Column {
        Column { name: n.into(), ty: t.into() }
    }

    #[test]
    fn widens_ints_and_mixed_numbers() {
        assert_eq!(widen("INTEGER", "BIGINT").as_deref(), Some("BIGINT"));
        assert_eq!(widen("BIGINT", "DOUBLE").as_deref(), Some("DOUBLE"));
        assert_eq!(widen("TIMESTAMP_NS", "TIMESTAMP").as_deref(), Some("TIMESTAMP"));
        assert_eq!(widen("VARCHAR", "BIGINT"), None);
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
        let plan = unify(&t2023, &f2025).expect("compatible");
        assert_eq!(plan.add, vec![col("cbd_congestion_fee", "DOUBLE")]);
        assert!(plan.retype.is_empty());
        assert!(plan.rename.is_empty());
        let f2024_first = vec![col("VendorID", "INTEGER"), col("Airport_fee", "DOUBLE")];
        let plan = unify(&f2024_first, &[col("VendorID", "BIGINT"), col("airport_fee", "DOUBLE")]).expect("ok");
        assert_eq!(plan.retype, vec![col("VendorID", "BIGINT")]);
        assert_eq!(plan.rename, vec![("Airport_fee".to_string(), "airport_fee".to_string())]);
    }

    #[test]
    fn reports_conflicts() {
        let err = unify(&[col("a", "VARCHAR")], &[col("A", "BIGINT")]).expect_err("conflict");
        assert!(err.contains("\"A\""), "{err}");
    }
}
