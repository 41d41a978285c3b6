//! The NYC TLC yellow-taxi schema across its three eras, in one place.
//!
//! The real bucket holds three layouts:
//!
//! | era        | pickup / dropoff                                   | vendor, payment                | where        |
//! |------------|----------------------------------------------------|--------------------------------|--------------|
//! | 2009       | `Trip_Pickup_DateTime` … as text `YYYY-MM-DD HH:MM:SS` | `vendor_name` (CMT, VTS, DDS), `Payment_Type` (Credit, CASH, …) | `Start_Lon`, `Start_Lat`, `End_Lon`, `End_Lat` |
//! | 2010       | `pickup_datetime` / `dropoff_datetime`             | `vendor_id`, `payment_type` (CRD, CSH, …) | `pickup_longitude` … |
//! | 2011 on    | `tpep_pickup_datetime` / `tpep_dropoff_datetime`   | `VendorID`, `payment_type` as codes | `PULocationID`, `DOLocationID` (zones) |
//!
//! Every file of a TLC dataset is read into one **canonical schema**: today's names with fixed
//! types (below), whatever the file's era and whatever order the files arrive in. The rules for
//! values that differ by era:
//!
//! * times given as text are parsed; text that is not a timestamp reads as NULL;
//! * vendor names become today's codes: `CMT` → 1, `VTS` → 2; `DDS` (gone by 2011) has no code and
//!   reads as NULL;
//! * payment words become today's codes: credit → 1, cash → 2, no charge → 3, dispute → 4,
//!   unknown → 5, voided → 6; any other word is unknown (5);
//! * store-and-forward `1`/`Y` → `Y`, `0`/`N` → `N`;
//! * `surcharge` is today's `extra`; `airport_fee`/`Airport_fee` are one column;
//! * coordinates (2009–2010) and zone ids (2011 on) are different facts and stay separate columns:
//!   old trips have NULL zones and new trips NULL coordinates (mapping points to zones needs the
//!   zone shapefile, which Bridge does not carry).
//!
//! A file is a TLC file when, after `--column-alias` renames, it has a pickup time and a distance
//! under any era's names. Anything else is generic: only `--column-alias` renames apply.

use crate::engine::{Column, Mapped};

/// Canonical pickup time: the built-in queries' range column.
pub const PICKUP: &str = "tpep_pickup_datetime";
/// Canonical dropoff time.
pub const DROPOFF: &str = "tpep_dropoff_datetime";
/// Canonical trip distance (miles).
pub const DISTANCE: &str = "trip_distance";
/// The columns the built-in queries need.
pub const REQUIRED: [&str; 3] = [PICKUP, DROPOFF, DISTANCE];

/// The canonical columns, in the order the dataset's view shows them, with their fixed types.
pub const CANONICAL: [(&str, &str); 24] = [
    ("VendorID", "BIGINT"),
    (PICKUP, "TIMESTAMP"),
    (DROPOFF, "TIMESTAMP"),
    ("passenger_count", "BIGINT"),
    (DISTANCE, "DOUBLE"),
    ("RatecodeID", "BIGINT"),
    ("store_and_fwd_flag", "VARCHAR"),
    ("PULocationID", "BIGINT"),
    ("DOLocationID", "BIGINT"),
    ("payment_type", "BIGINT"),
    ("fare_amount", "DOUBLE"),
    ("extra", "DOUBLE"),
    ("mta_tax", "DOUBLE"),
    ("tip_amount", "DOUBLE"),
    ("tolls_amount", "DOUBLE"),
    ("improvement_surcharge", "DOUBLE"),
    ("total_amount", "DOUBLE"),
    ("congestion_surcharge", "DOUBLE"),
    ("airport_fee", "DOUBLE"),
    ("cbd_congestion_fee", "DOUBLE"),
    ("pickup_longitude", "DOUBLE"),
    ("pickup_latitude", "DOUBLE"),
    ("dropoff_longitude", "DOUBLE"),
    ("dropoff_latitude", "DOUBLE"),
];

/// Older eras' names (lower case) → canonical names.
const ERA_NAMES: [(&str, &str); 17] = [
    // 2009
    ("vendor_name", "VendorID"),
    ("trip_pickup_datetime", PICKUP),
    ("trip_dropoff_datetime", DROPOFF),
    ("start_lon", "pickup_longitude"),
    ("start_lat", "pickup_latitude"),
    ("end_lon", "dropoff_longitude"),
    ("end_lat", "dropoff_latitude"),
    ("store_and_forward", "store_and_fwd_flag"),
    ("fare_amt", "fare_amount"),
    ("tip_amt", "tip_amount"),
    ("tolls_amt", "tolls_amount"),
    ("total_amt", "total_amount"),
    // 2009 and 2010
    ("rate_code", "RatecodeID"),
    ("surcharge", "extra"),
    // 2010
    ("vendor_id", "VendorID"),
    ("pickup_datetime", PICKUP),
    ("dropoff_datetime", DROPOFF),
];

pub use crate::config::ColumnAlias as Alias;

fn canonical_type(name: &str) -> Option<&'static str> {
    CANONICAL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn is_numeric(ty: &str) -> bool {
    matches!(
        ty,
        "TINYINT" | "SMALLINT" | "INTEGER" | "BIGINT" | "HUGEINT" | "UTINYINT" | "USMALLINT" | "UINTEGER" | "UBIGINT"
    ) || matches!(ty, "FLOAT" | "DOUBLE")
        || ty.starts_with("DECIMAL")
}

fn text(expr: &str) -> String {
    format!("upper(trim(CAST({expr} AS VARCHAR)))")
}

/// SQL turning a source column of type `ty` into canonical column `name`, or an error saying why
/// the file cannot be read into the canonical schema.
fn convert(name: &str, src: &str, ty: &str) -> Result<String, String> {
    let target = canonical_type(name).unwrap_or("VARCHAR");
    let words = |cases: &[(&[&str], i64)], otherwise: &str| {
        let arms: Vec<String> = cases
            .iter()
            .map(|(ws, code)| {
                let list: Vec<String> = ws.iter().map(|w| format!("'{w}'")).collect();
                format!("WHEN {} IN ({}) THEN {code}", text(src), list.join(", "))
            })
            .collect();
        format!("CASE WHEN {src} IS NULL THEN NULL {} ELSE {otherwise} END", arms.join(" "))
    };
    let textual = ty == "VARCHAR";
    Ok(match (name, target) {
        ("store_and_fwd_flag", _) => format!(
            "CASE WHEN {t} IN ('Y', '1', '1.0', 'TRUE') THEN 'Y' WHEN {t} IN ('N', '0', '0.0', 'FALSE') THEN 'N' END",
            t = text(src)
        ),
        ("VendorID", _) if textual => {
            words(&[(&["CMT", "1"], 1), (&["VTS", "2"], 2)], &format!("TRY_CAST({src} AS BIGINT)"))
        }
        ("payment_type", _) if textual => words(
            &[
                (&["CREDIT", "CRE", "CRD", "CREDIT CARD", "1"], 1),
                (&["CASH", "CAS", "CSH", "2"], 2),
                (&["NO CHARGE", "NOC", "NO", "3"], 3),
                (&["DISPUTE", "DIS", "4"], 4),
                (&["UNKNOWN", "UNK", "5"], 5),
                (&["VOIDED", "VOIDED TRIP", "VOI", "6"], 6),
            ],
            "5",
        ),
        (_, "TIMESTAMP") if textual || ty.starts_with("TIMESTAMP") || ty == "DATE" => {
            format!("TRY_CAST({src} AS TIMESTAMP)")
        }
        (_, "BIGINT" | "DOUBLE") if is_numeric(ty) => format!("TRY_CAST({src} AS {target})"),
        (_, "VARCHAR") => format!("CAST({src} AS VARCHAR)"),
        _ => return Err(format!("column {src} is {ty} here, which does not convert to {name} {target}")),
    })
}

/// How one file's columns read into the dataset: renamed by `aliases` (for `dataset`), then, if
/// the file is a TLC file, into the canonical schema. Other columns pass through as they are.
pub fn map_columns(dataset: &str, file: &[Column], aliases: &[Alias]) -> Result<Vec<Mapped>, String> {
    let quoted = |n: &str| crate::engine::quote_ident(n);
    let user = |n: &str| {
        aliases
            .iter()
            .rev()
            .find(|a| a.dataset.as_deref().is_none_or(|d| d == dataset) && a.from.eq_ignore_ascii_case(n))
            .map(|a| a.to.clone())
    };
    let era = |n: &str| {
        let lower = n.to_lowercase();
        ERA_NAMES
            .iter()
            .find(|(from, _)| *from == lower)
            .map(|(_, to)| to.to_string())
            .or_else(|| CANONICAL.iter().find(|(c, _)| c.eq_ignore_ascii_case(n)).map(|(c, _)| c.to_string()))
    };
    let renamed: Vec<(String, &Column)> = file.iter().map(|c| (user(&c.name).unwrap_or(c.name.clone()), c)).collect();
    let tlc = [PICKUP, DISTANCE].iter().all(|r| renamed.iter().any(|(n, _)| n == r || era(n).as_deref() == Some(r)));
    let mut out: Vec<Mapped> = Vec::with_capacity(file.len());
    for (name, col) in renamed {
        let canonical = if tlc { era(&name) } else { None };
        let mapped = match canonical {
            Some(name) => Mapped {
                expr: convert(&name, &quoted(&col.name), &col.ty)?,
                ty: canonical_type(&name).unwrap_or("VARCHAR").to_string(),
                fixed: true,
                name,
            },
            None => Mapped { expr: quoted(&col.name), ty: col.ty.clone(), fixed: false, name },
        };
        if out.iter().any(|m| m.name.eq_ignore_ascii_case(&mapped.name)) {
            return Err(format!("two columns of this file read as {:?}", mapped.name));
        }
        out.push(mapped);
    }
    Ok(out)
}

/// Where `name` goes in the dataset's view: canonical columns first, in canonical order.
pub fn view_rank(name: &str) -> usize {
    CANONICAL.iter().position(|(c, _)| *c == name).unwrap_or(CANONICAL.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(spec: &[(&str, &str)]) -> Vec<Column> {
        spec.iter().map(|(n, t)| Column { name: n.to_string(), ty: t.to_string() }).collect()
    }

    fn names(m: &[Mapped]) -> Vec<&str> {
        m.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn every_era_reads_into_the_canonical_names() {
        let y2009 = cols(&[
            ("vendor_name", "VARCHAR"),
            ("Trip_Pickup_DateTime", "VARCHAR"),
            ("Trip_Dropoff_DateTime", "VARCHAR"),
            ("Passenger_Count", "BIGINT"),
            ("Trip_Distance", "DOUBLE"),
            ("Start_Lon", "DOUBLE"),
            ("Payment_Type", "VARCHAR"),
            ("surcharge", "DOUBLE"),
            ("Total_Amt", "DOUBLE"),
        ]);
        let m = map_columns("yellow", &y2009, &[]).expect("2009 maps");
        assert_eq!(
            names(&m),
            [
                "VendorID",
                PICKUP,
                DROPOFF,
                "passenger_count",
                DISTANCE,
                "pickup_longitude",
                "payment_type",
                "extra",
                "total_amount"
            ]
        );
        assert!(m.iter().all(|c| c.fixed));
        assert_eq!(m[1].expr, "TRY_CAST(\"Trip_Pickup_DateTime\" AS TIMESTAMP)");
        let y2010 =
            cols(&[("pickup_datetime", "TIMESTAMP"), ("dropoff_datetime", "TIMESTAMP"), ("trip_distance", "DOUBLE")]);
        assert_eq!(names(&map_columns("yellow", &y2010, &[]).expect("2010")), [PICKUP, DROPOFF, DISTANCE]);
        let y2024 = cols(&[
            ("tpep_pickup_datetime", "TIMESTAMP_NS"),
            ("tpep_dropoff_datetime", "TIMESTAMP"),
            ("trip_distance", "DOUBLE"),
            ("Airport_fee", "DOUBLE"),
        ]);
        let m = map_columns("yellow", &y2024, &[]).expect("2024");
        assert_eq!(names(&m)[3], "airport_fee");
        assert_eq!(m[0].ty, "TIMESTAMP");
    }

    #[test]
    fn other_datasets_only_take_user_aliases() {
        let file = cols(&[("pickup_datetime", "TIMESTAMP"), ("Amount", "DOUBLE")]);
        let m = map_columns("sales", &file, &[]).expect("generic");
        assert_eq!(names(&m), ["pickup_datetime", "Amount"]);
        assert!(m.iter().all(|c| !c.fixed));
        let alias: Alias = "sales.Amount=amount_usd".parse().expect("alias");
        let other: Alias = "green.Amount=nope".parse().expect("alias");
        let m = map_columns("sales", &file, &[alias, other]).expect("aliased");
        assert_eq!(names(&m), ["pickup_datetime", "amount_usd"]);
        assert!("x".parse::<Alias>().is_err());
        assert!("a.=b".parse::<Alias>().is_err());
    }

    #[test]
    fn a_user_alias_can_make_a_file_tlc_shaped() {
        let green = cols(&[
            ("lpep_pickup_datetime", "TIMESTAMP"),
            ("lpep_dropoff_datetime", "TIMESTAMP"),
            ("trip_distance", "DOUBLE"),
        ]);
        let aliases: Vec<Alias> =
            ["lpep_pickup_datetime=tpep_pickup_datetime", "lpep_dropoff_datetime=tpep_dropoff_datetime"]
                .iter()
                .map(|s| s.parse().expect("alias"))
                .collect();
        let m = map_columns("green", &green, &aliases).expect("green");
        assert_eq!(names(&m), [PICKUP, DROPOFF, DISTANCE]);
        assert!(m.iter().all(|c| c.fixed));
    }

    #[test]
    fn text_where_a_number_belongs_is_refused() {
        let file = cols(&[("tpep_pickup_datetime", "TIMESTAMP"), ("trip_distance", "VARCHAR")]);
        let err = map_columns("yellow", &file, &[]).expect_err("text distance");
        assert!(err.contains("trip_distance"), "{err}");
    }
}
