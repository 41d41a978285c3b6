//! Answers equal the independent computation over the same files.

use arrow::{
    array::{Array, AsArray, RecordBatch},
    datatypes::{Float64Type, Int64Type, TimestampMicrosecondType},
};

use crate::{
    common::{Fixture, ROWS},
    reference::{self, day, in_range, quantile_cont, Trip},
};

/// (pickup, dropoff, distance bits, reason) of every returned row, sorted.
fn rows(batches: &[RecordBatch]) -> Vec<(i64, i64, u64, String)> {
    let mut out = Vec::new();
    for b in batches {
        let pu = b.column_by_name("tpep_pickup_datetime").expect("pickup").as_primitive::<TimestampMicrosecondType>();
        let dof =
            b.column_by_name("tpep_dropoff_datetime").expect("dropoff").as_primitive::<TimestampMicrosecondType>();
        let d = b.column_by_name("trip_distance").expect("distance").as_primitive::<Float64Type>();
        let reason = b.column_by_name("reason").map(|r| r.as_string::<i32>().clone());
        for i in 0..b.num_rows() {
            let r = reason.as_ref().map(|r| r.value(i).to_string()).unwrap_or_default();
            out.push((pu.value(i), dof.value(i), d.value(i).to_bits(), r));
        }
    }
    out.sort();
    out
}

fn expected_p90(trips: &[Trip], from: Option<i64>, to: Option<i64>, q: f64) -> (f64, Vec<(i64, i64, u64, String)>) {
    let ranged: Vec<&Trip> = trips.iter().filter(|t| in_range(t, from, to)).collect();
    let mut ds: Vec<f64> = ranged.iter().filter_map(|t| t.distance).collect();
    let thr = quantile_cont(&mut ds, q).expect("trips in range");
    let mut rows: Vec<_> = ranged
        .iter()
        .filter(|t| t.distance.is_some_and(|d| d > thr))
        .map(|t| (t.pickup, t.dropoff, t.distance.unwrap_or_default().to_bits(), String::new()))
        .collect();
    rows.sort();
    (thr, rows)
}

fn num_rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p90_month_and_day_match_reference() {
    let mut fx = Fixture::start(&["2024-01", "2024-02"]).await;
    let trips = reference::trips(&fx.files());
    for (from, to) in [("2024-01-01", "2024-02-01"), ("2024-02-10", "2024-02-11")] {
        let ticket = format!(r#"{{"query":"p90","dataset":"yellow","from":"{from}","to":"{to}"}}"#);
        let (schema, batches) = fx.get(&ticket).await.expect("p90");
        let (thr, expected) = expected_p90(&trips, Some(day(from)), Some(day(to)), 0.9);
        assert!(!expected.is_empty());
        assert_eq!(rows(&batches), expected, "p90 trips for {from}..{to}");
        let md = schema.metadata();
        assert_eq!(md["bridge.p90.threshold"].parse::<f64>().expect("threshold"), thr);
        assert_eq!(md["bridge.p90.trips_above"], expected.len().to_string());
        let in_range = trips.iter().filter(|t| in_range(t, Some(day(from)), Some(day(to)))).count();
        assert_eq!(md["bridge.p90.trips_in_range"], in_range.to_string());
        assert_eq!(md["bridge.manifest_version"], "2");
        assert_eq!(md["bridge.file_count"], "2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p90_options_percentile_columns_limit_summary() {
    let mut fx = Fixture::start(&["2024-03"]).await;
    let trips = reference::trips(&fx.files());
    let (thr, expected) = expected_p90(&trips, None, None, 0.75);
    let (_, batches) = fx.get(r#"{"query":"p90","dataset":"yellow","percentile":0.75}"#).await.expect("p75");
    assert_eq!(rows(&batches), expected);

    let (schema, batches) = fx
        .get(r#"{"query":"p90","dataset":"yellow","percentile":0.75,"columns":["trip_distance","PULocationID"],"limit":10}"#)
        .await
        .expect("projection");
    assert_eq!(num_rows(&batches), 10);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["trip_distance", "PULocationID"]);
    for b in &batches {
        let d = b.column(0).as_primitive::<Float64Type>();
        assert!(d.iter().all(|v| v.is_some_and(|v| v > thr)));
    }

    let (_, batches) =
        fx.get(r#"{"query":"p90","dataset":"yellow","percentile":0.75,"output":"summary"}"#).await.expect("summary");
    assert_eq!(num_rows(&batches), 1);
    let b = &batches[0];
    assert_eq!(b.column_by_name("threshold").expect("col").as_primitive::<Float64Type>().value(0), thr);
    assert_eq!(
        b.column_by_name("trips_above").expect("col").as_primitive::<Int64Type>().value(0),
        expected.len() as i64
    );
    assert_eq!(b.column_by_name("trips_in_range").expect("col").as_primitive::<Int64Type>().value(0), ROWS as i64);
    assert!(b.column_by_name("range_from").expect("col").is_null(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p90_empty_range_still_has_schema() {
    let mut fx = Fixture::start(&["2024-01"]).await;
    let (schema, batches) =
        fx.get(r#"{"query":"p90","dataset":"yellow","from":"1999-01-01","to":"1999-01-02"}"#).await.expect("empty");
    assert_eq!(num_rows(&batches), 0);
    assert!(schema.field_with_name("trip_distance").is_ok());
    assert_eq!(schema.metadata()["bridge.p90.threshold"], "null");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outliers_match_reference_with_reasons() {
    let mut fx = Fixture::start(&["2024-01"]).await;
    let trips = reference::trips(&fx.files());
    let (from, to) = ("2024-01-01", "2024-02-01");
    let mut expected: Vec<_> = trips
        .iter()
        .filter(|t| in_range(t, Some(day(from)), Some(day(to))))
        .filter_map(|t| {
            reference::reason(t).map(|r| (t.pickup, t.dropoff, t.distance.unwrap_or_default().to_bits(), r.to_string()))
        })
        .collect();
    expected.sort();
    let reasons: std::collections::BTreeSet<&str> = expected.iter().map(|e| e.3.as_str()).collect();
    assert_eq!(reasons.len(), 3, "the generator produces every kind of outlier: {reasons:?}");
    let (schema, batches) = fx
        .get(&format!(r#"{{"query":"outliers","dataset":"yellow","from":"{from}","to":"{to}"}}"#))
        .await
        .expect("outliers");
    assert_eq!(rows(&batches), expected);
    assert!(schema.field_with_name("avg_speed_mph").is_ok() && schema.field_with_name("duration_hours").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outliers_top_fastest_within_p90_and_custom_bounds() {
    let mut fx = Fixture::start(&["2024-01"]).await;
    let trips = reference::trips(&fx.files());
    let mut ds: Vec<f64> = trips.iter().filter_map(|t| t.distance).collect();
    let thr = quantile_cont(&mut ds, 0.9).expect("thr");
    let mut expected: Vec<(f64, &Trip)> = trips
        .iter()
        .filter(|t| t.distance.is_some_and(|d| d > thr) && reference::reason(t).is_some())
        .filter(|t| t.dropoff > t.pickup)
        .map(|t| (t.distance.unwrap_or_default() / ((t.dropoff - t.pickup) as f64 / 3.6e9), t))
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (_, batches) = fx
        .get(r#"{"query":"outliers","dataset":"yellow","within_p90":true,"order_by":"avg_speed_mph desc","limit":10}"#)
        .await
        .expect("top 10");
    assert_eq!(num_rows(&batches), 10);
    let speeds: Vec<f64> = batches
        .iter()
        .flat_map(|b| b.column_by_name("avg_speed_mph").expect("speed").as_primitive::<Float64Type>().values().to_vec())
        .collect();
    let want: Vec<f64> = expected.iter().take(10).map(|e| e.0).collect();
    assert_eq!(speeds, want);

    // Loosening every bound to "anything goes" except distance leaves only distance outliers.
    let (_, batches) = fx
        .get(r#"{"query":"outliers","dataset":"yellow","min_duration_hours":-1e9,"max_duration_hours":1e9,"min_speed_mph":-1e12,"max_speed_mph":1e12}"#)
        .await
        .expect("custom bounds");
    let got = rows(&batches);
    let mut by_reason = std::collections::BTreeMap::<String, usize>::new();
    got.iter().for_each(|r| *by_reason.entry(r.3.to_string()).or_default() += 1);
    let mut want = std::collections::BTreeMap::<String, usize>::new();
    for t in &trips {
        if let Some(r) = reference::reason_within(t, [-1e9, 1e9], [-1e12, 1e12], [0.1, 800.0]) {
            *want.entry(r.to_string()).or_default() += 1;
        }
    }
    assert!(want.contains_key("distance") && want.contains_key("speed"), "{want:?}");
    assert_eq!(by_reason, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_answers_match_reference() {
    let mut fx = Fixture::start(&["2024-01", "2024-02"]).await;
    let trips = reference::trips(&fx.files());
    let (schema, batches) = fx
        .get(r#"{"query":"sql","sql":"SELECT count(*) AS n, count(trip_distance) AS nd, max(tpep_pickup_datetime) AS last FROM yellow WHERE trip_distance > 5"}"#)
        .await
        .expect("sql");
    let b = &batches[0];
    let n = trips.iter().filter(|t| t.distance.is_some_and(|d| d > 5.0)).count();
    assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), n as i64);
    assert_eq!(b.column(1).as_primitive::<Int64Type>().value(0), n as i64);
    let last = trips.iter().filter(|t| t.distance.is_some_and(|d| d > 5.0)).map(|t| t.pickup).max().expect("some");
    assert_eq!(b.column(2).as_primitive::<TimestampMicrosecondType>().value(0), last);
    assert_eq!(schema.metadata()["bridge.manifest_version.yellow"], "2");

    let (_, batches) = fx.get(r#"{"query":"sql","sql":"SELECT * FROM yellow"}"#).await.expect("scan");
    assert_eq!(num_rows(&batches), trips.len());
    assert!(batches.iter().all(|b| b.num_rows() <= 8192), "batches are bounded by batch_rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifting_years_serve_together() {
    let mut fx = Fixture::start(&["2023-12", "2024-01", "2025-01"]).await;
    let (schema, batches) = fx
        .get(r#"{"query":"sql","sql":"SELECT count(*) AS n, count(airport_fee) AS fees, count(cbd_congestion_fee) AS cbd, sum(passenger_count)::DOUBLE AS pax FROM yellow"}"#)
        .await
        .expect("drift");
    assert_eq!(schema.field(1).name(), "fees");
    let b = &batches[0];
    let col = |i: usize| b.column(i).as_primitive::<Int64Type>().value(0);
    let files = fx.files();
    assert_eq!(col(0), 3 * ROWS as i64);
    // Both spellings (airport_fee in 2023, Airport_fee from 2024) land in one column.
    assert_eq!(col(1), reference::non_null(&files, "airport_fee") as i64);
    // The 2025 column is NULL for the older months.
    assert_eq!(col(2), reference::non_null(&files, "cbd_congestion_fee") as i64);
    assert_eq!(col(2), ROWS as i64);
    let pax = b.column(3).as_primitive::<Float64Type>().value(0);
    assert_eq!(
        pax,
        reference::sum_as_f64(&files, "passenger_count"),
        "double (2023) and int64 (2024+) passenger counts read as one BIGINT column and sum together"
    );
    let (schema, _) = fx.get(r#"{"query":"sql","sql":"SELECT * FROM yellow LIMIT 1"}"#).await.expect("schema");
    assert_eq!(schema.field_with_name("VendorID").expect("id").data_type(), &arrow::datatypes::DataType::Int64);
    assert!(schema.field_with_name("airport_fee").is_ok());
}

/// Every message fits a default gRPC client (tonic's `FlightClient` refuses messages over 4 MiB),
/// including one big sorted result, and the rows are all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_fit_default_client_message_limits() {
    let mut fx = Fixture::start(&["2024-01", "2024-02", "2024-03"]).await;
    let trips = reference::trips(&fx.files());
    let (_, batches) = fx.get(r#"{"query":"scan","dataset":"yellow"}"#).await.expect("scan");
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), trips.len());
    // Nearly every trip is "too slow" under these bounds: one sorted batch of ~all rows.
    let ticket = r#"{"query":"outliers","dataset":"yellow","min_speed_mph":70,"order_by":"trip_distance desc"}"#;
    let (_, batches) = fx.get(ticket).await.expect("ordered outliers");
    let distances = distances_of(&batches);
    let mut want: Vec<f64> = trips
        .iter()
        .filter(|t| reference::reason_within(t, [0.0, 10.0], [70.0, 80.0], [0.1, 800.0]).is_some())
        .map(|t| t.distance.unwrap_or(f64::NEG_INFINITY))
        .collect();
    want.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(distances, want, "every outlier, ordered by trip_distance desc, NULLs last");
    // With a limit the server keeps a bounded top-k; the answer is the same prefix.
    let ticket =
        r#"{"query":"outliers","dataset":"yellow","min_speed_mph":70,"order_by":"trip_distance desc","limit":1000}"#;
    let (_, batches) = fx.get(ticket).await.expect("top-k outliers");
    assert_eq!(distances_of(&batches), want[..1000]);
}

/// The `trip_distance` column of every batch, in order, NULL as −∞ (sorts last descending).
fn distances_of(batches: &[RecordBatch]) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| b.column_by_name("trip_distance").expect("distance").as_primitive::<Float64Type>().iter())
        .map(|d| d.unwrap_or(f64::NEG_INFINITY))
        .collect()
}
