//! `p90`: the trips whose `trip_distance` is strictly above the exact percentile of
//! `trip_distance` among the trips picked up in the range.
//!
//! The percentile is DuckDB's `quantile_cont` (linear interpolation, NULLs excluded). The threshold
//! is computed first, in the query's snapshot, so it and the counts ride in the schema metadata
//! that reaches the client before the first row.

use duckdb::Connection;

use super::{
    double, limit_clause, manifest_metadata, projection,
    range::{literal, Range},
    require_tlc, MATERIALIZE_MAX_ROWS,
};
use crate::{
    catalog::Catalog,
    engine::{quote_ident, Planned, QueryPlan},
    error::{Error, Result},
    proto::P90,
};

/// Threshold and counts for one range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// None when the range holds no trip with a distance.
    pub threshold: Option<f64>,
    pub trips_in_range: u64,
    pub trips_above: u64,
}

/// Computes the percentile threshold and counts on `conn` (inside the caller's transaction).
pub fn stats(conn: &Connection, dataset: &str, range: &Range, percentile: f64) -> Result<Stats> {
    let sql = format!(
        "WITH r AS (SELECT trip_distance AS d FROM {ds} WHERE {pred}),
              t AS (SELECT quantile_cont(d, {p}) AS thr, count(*) AS n FROM r)
         SELECT thr, n, (SELECT count(*) FROM r WHERE d > t.thr) FROM t",
        ds = quote_ident(dataset),
        pred = range.predicate(),
        p = double(percentile),
    );
    let (threshold, n, above): (Option<f64>, i64, i64) =
        conn.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(Stats { threshold, trips_in_range: n as u64, trips_above: above as u64 })
}

pub fn validate_percentile(p: Option<f64>) -> Result<f64> {
    let p = p.unwrap_or(0.9);
    if !(p > 0.0 && p < 1.0) {
        return Err(Error::invalid(format!("percentile must be in (0, 1), e.g. 0.9; got {p}")));
    }
    Ok(p)
}

enum Output {
    Trips,
    Summary,
}

pub fn plan(p: P90, catalog: &Catalog) -> Result<QueryPlan> {
    let ds = catalog.dataset(&p.dataset)?;
    let snap = ds.snapshot();
    require_tlc(&ds.name, &snap, "p90")?;
    let range = p.range.as_ref().map(|r| Range::parse(&r.from, &r.to)).transpose()?.unwrap_or_default();
    let percentile = validate_percentile(p.percentile)?;
    let output = match p.output.as_str() {
        "" | "trips" => Output::Trips,
        "summary" => Output::Summary,
        other => return Err(Error::invalid(format!("output must be \"trips\" or \"summary\", not {other:?}"))),
    };
    let cols = projection(&ds.name, &snap, &p.columns)?;
    let dataset = ds.name.clone();
    Ok(Box::new(move |conn: &Connection| {
        let mut metadata = Default::default();
        manifest_metadata(conn, &dataset, false, &mut metadata)?;
        let s = stats(conn, &dataset, &range, percentile)?;
        let threshold = s.threshold.map(|t| format!("{t:?}")).unwrap_or_else(|| "null".into());
        metadata.insert("bridge.p90.percentile".into(), format!("{percentile:?}"));
        metadata.insert("bridge.p90.threshold".into(), threshold);
        metadata.insert("bridge.p90.trips_in_range".into(), s.trips_in_range.to_string());
        metadata.insert("bridge.p90.trips_above".into(), s.trips_above.to_string());
        let sql = match output {
            Output::Summary => format!(
                "SELECT {} AS range_from, {} AS range_to, {} AS percentile, CAST({} AS BIGINT) AS trips_in_range,
                        {} AS threshold, CAST({} AS BIGINT) AS trips_above",
                literal(range.from),
                literal(range.to),
                double(percentile),
                s.trips_in_range,
                s.threshold.map(double).unwrap_or_else(|| "CAST(NULL AS DOUBLE)".into()),
                s.trips_above
            ),
            Output::Trips => format!(
                "SELECT {cols} FROM {ds} WHERE {pred} AND trip_distance > {thr}{limit}",
                ds = quote_ident(&dataset),
                pred = range.predicate(),
                thr = s.threshold.map(double).unwrap_or_else(|| "NULL".into()),
                limit = limit_clause(p.limit),
            ),
        };
        let rows = p.limit.map_or(s.trips_above, |l| l.min(s.trips_above));
        Ok(Planned { sql, metadata, materialize: rows <= MATERIALIZE_MAX_ROWS })
    }))
}
