//! `outliers`: trips that break physical plausibility.
//!
//! A trip is valid iff `min_duration < duration_hours <= max_duration`,
//! `min_speed <= avg_speed_mph <= max_speed` and `min_distance <= trip_distance <= max_distance`;
//! NULLs are outliers. `reason` is the first rule that failed, in that order. `avg_speed_mph` is NULL
//! where the duration is not positive (the speed is undefined; such trips fail the duration rule).

use duckdb::Connection;

use super::{double, limit_clause, manifest_metadata, p90, range::Range, require_tlc, MATERIALIZE_MAX_ROWS};
use crate::{
    catalog::Catalog,
    engine::{quote_ident, Planned, QueryPlan},
    error::{Error, Result},
    proto::Outliers,
};

/// Columns `order_by` may name (besides every dataset column of a numeric or time type).
const ORDERABLE: [&str; 9] = [
    "avg_speed_mph",
    "duration_hours",
    "trip_distance",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "fare_amount",
    "total_amount",
    "tip_amount",
    "passenger_count",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub min_duration_hours: f64,
    pub max_duration_hours: f64,
    pub min_speed_mph: f64,
    pub max_speed_mph: f64,
    pub min_distance: f64,
    pub max_distance: f64,
}

impl Bounds {
    fn from_ticket(o: &Outliers) -> Result<Self> {
        let b = Bounds {
            min_duration_hours: o.min_duration_hours.unwrap_or(0.0),
            max_duration_hours: o.max_duration_hours.unwrap_or(10.0),
            min_speed_mph: o.min_speed_mph.unwrap_or(2.5),
            max_speed_mph: o.max_speed_mph.unwrap_or(80.0),
            min_distance: o.min_distance.unwrap_or(0.1),
            max_distance: o.max_distance.unwrap_or(800.0),
        };
        for (name, lo, hi) in [
            ("duration_hours", b.min_duration_hours, b.max_duration_hours),
            ("speed_mph", b.min_speed_mph, b.max_speed_mph),
            ("distance", b.min_distance, b.max_distance),
        ] {
            if !lo.is_finite() || !hi.is_finite() || lo > hi {
                return Err(Error::invalid(format!(
                    "min_{name} ({lo}) must be a number no greater than max_{name} ({hi})"
                )));
            }
        }
        Ok(b)
    }
}

fn order_clause(order_by: &str) -> Result<String> {
    let spec = order_by.trim();
    if spec.is_empty() {
        return Ok(String::new());
    }
    let mut parts = spec.split_whitespace();
    let col = parts.next().unwrap_or_default();
    let dir = parts.next().unwrap_or("asc").to_ascii_lowercase();
    let col = ORDERABLE.iter().find(|c| c.eq_ignore_ascii_case(col)).ok_or_else(|| {
        Error::invalid(format!("order_by column {col:?} is not allowed; use one of: {}", ORDERABLE.join(", ")))
    })?;
    if parts.next().is_some() || !(dir == "asc" || dir == "desc") {
        return Err(Error::invalid(format!("order_by must be \"<column> [asc|desc]\", not {spec:?}")));
    }
    Ok(format!(" ORDER BY {col} {dir} NULLS LAST"))
}

pub fn plan(o: Outliers, catalog: &Catalog) -> Result<QueryPlan> {
    let ds = catalog.dataset(&o.dataset)?;
    require_tlc(&ds.name, &ds.snapshot(), "outliers")?;
    let range = o.range.as_ref().map(|r| Range::parse(&r.from, &r.to)).transpose()?.unwrap_or_default();
    let b = Bounds::from_ticket(&o)?;
    let order = order_clause(&o.order_by)?;
    let dataset = ds.name.clone();
    Ok(Box::new(move |conn: &Connection| {
        let mut metadata = Default::default();
        manifest_metadata(conn, &dataset, false, &mut metadata)?;
        let mut pred = range.predicate();
        if o.within_p90 {
            let s = p90::stats(conn, &dataset, &range, 0.9)?;
            let thr = s.threshold.map(double).unwrap_or_else(|| "NULL".into());
            pred = format!("{pred} AND trip_distance > {thr}");
            metadata
                .insert("bridge.p90.threshold".into(), s.threshold.map(|t| format!("{t:?}")).unwrap_or("null".into()));
            metadata.insert("bridge.p90.trips_above".into(), s.trips_above.to_string());
        }
        let sql = format!(
            "WITH base AS (
               SELECT *, date_diff('microsecond', tpep_pickup_datetime, tpep_dropoff_datetime) / 3600000000.0 AS duration_hours
               FROM {ds} WHERE {pred}),
             calc AS (SELECT *, CASE WHEN duration_hours > 0 THEN trip_distance / duration_hours END AS avg_speed_mph FROM base),
             flagged AS (
               SELECT *, CASE
                 WHEN duration_hours IS NULL OR NOT (duration_hours > {d0} AND duration_hours <= {d1}) THEN 'duration'
                 WHEN avg_speed_mph IS NULL OR isnan(avg_speed_mph)
                      OR NOT (avg_speed_mph >= {s0} AND avg_speed_mph <= {s1}) THEN 'speed'
                 WHEN trip_distance IS NULL OR NOT (trip_distance >= {m0} AND trip_distance <= {m1}) THEN 'distance'
               END AS reason FROM calc)
             SELECT * FROM flagged WHERE reason IS NOT NULL{order}{limit}",
            ds = quote_ident(&dataset),
            d0 = double(b.min_duration_hours),
            d1 = double(b.max_duration_hours),
            s0 = double(b.min_speed_mph),
            s1 = double(b.max_speed_mph),
            m0 = double(b.min_distance),
            m1 = double(b.max_distance),
            limit = limit_clause(o.limit),
        );
        let small = o.limit.is_some_and(|l| l <= MATERIALIZE_MAX_ROWS);
        Ok(Planned { sql, metadata, materialize: small })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_is_whitelisted() {
        assert_eq!(order_clause("avg_speed_mph desc").expect("ok"), " ORDER BY avg_speed_mph desc NULLS LAST");
        assert_eq!(order_clause("TRIP_DISTANCE").expect("ok"), " ORDER BY trip_distance asc NULLS LAST");
        assert!(order_clause("1; DROP TABLE x").is_err());
        assert!(order_clause("trip_distance sideways").is_err());
    }

    #[test]
    fn bounds_must_be_ordered() {
        let o = Outliers { min_speed_mph: Some(90.0), ..Default::default() };
        assert!(Bounds::from_ticket(&o).is_err());
        assert_eq!(Bounds::from_ticket(&Outliers::default()).expect("defaults").max_distance, 800.0);
    }
}
