//! The built-in queries as SQL table macros, for clients that can only send SQL (BI tools):
//!
//! * `p90(dataset, from, to, percentile := 0.9)`: the trips picked up in [from, to) whose
//!   `trip_distance` is above the exact `quantile_cont` of the range; NULL bounds are open.
//! * `outliers(dataset, from, to, within_p90 := false)`: the trips that break the default physics
//!   rule, with `duration_hours`, `avg_speed_mph` and `reason`, computed as the segment build and
//!   the `outliers` ticket compute them ([`crate::rule`]).
//!
//! They read `main.<dataset>` through `query_table`; the SQL guard only lets a dataset name in.
//! The engine runs this SQL when it opens ([`crate::engine::EngineOptions::prelude`]).

use crate::rule;

/// Rows of `dataset` picked up in [from, to).
const IN_RANGE: &str = "SELECT * FROM query_table(dataset)
    WHERE (\"from\" IS NULL OR tpep_pickup_datetime >= \"from\")
      AND (\"to\" IS NULL OR tpep_pickup_datetime < \"to\")";

/// The SQL that creates the macros.
pub fn sql() -> String {
    let reason = rule::DEFAULT.reason_sql("duration_hours", "avg_speed_mph", "CAST(trip_distance AS DOUBLE)");
    format!(
        "CREATE OR REPLACE MACRO main.p90(dataset, \"from\", \"to\", percentile := 0.9) AS TABLE
           WITH r AS ({IN_RANGE})
           SELECT * FROM r WHERE trip_distance > (SELECT quantile_cont(trip_distance, percentile) FROM r);
         CREATE OR REPLACE MACRO main.outliers(dataset, \"from\", \"to\", within_p90 := false) AS TABLE
           WITH r AS ({IN_RANGE}),
           a AS (SELECT *, CAST(date_diff('microsecond', tpep_pickup_datetime, tpep_dropoff_datetime) AS DOUBLE)
                             / CAST({us} AS DOUBLE) AS duration_hours
                 FROM r
                 WHERE NOT within_p90
                    OR trip_distance > (SELECT quantile_cont(trip_distance, 0.9) FROM r)),
           b AS (SELECT *, CASE WHEN duration_hours > 0 THEN CAST(trip_distance AS DOUBLE) / duration_hours END
                             AS avg_speed_mph
                 FROM a),
           c AS (SELECT *, ({reason}) AS reason FROM b)
           SELECT * FROM c WHERE reason IS NOT NULL;",
        us = rule::US_PER_HOUR as i64,
    )
}
