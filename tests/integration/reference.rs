//! The independent computation: read the Parquet files with the `parquet` crate and apply the
//! rules in plain Rust. Shares no code with Bridge's SQL.

use std::{fs::File, path::PathBuf};

use arrow::{
    array::{Array, AsArray},
    datatypes::{Float64Type, TimestampMicrosecondType},
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trip {
    pub pickup: i64,
    pub dropoff: i64,
    pub distance: Option<f64>,
}

/// Every record batch of every file, in order.
fn batches(files: &[PathBuf]) -> impl Iterator<Item = arrow::record_batch::RecordBatch> + '_ {
    files.iter().flat_map(|f| {
        ParquetRecordBatchReaderBuilder::try_new(File::open(f).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader")
            .map(|b| b.expect("batch"))
    })
}

pub fn trips(files: &[PathBuf]) -> Vec<Trip> {
    let mut out = Vec::new();
    {
        for b in batches(files) {
            let pu = b
                .column_by_name("tpep_pickup_datetime")
                .expect("pickup")
                .as_primitive::<TimestampMicrosecondType>()
                .clone();
            let dof = b
                .column_by_name("tpep_dropoff_datetime")
                .expect("dropoff")
                .as_primitive::<TimestampMicrosecondType>()
                .clone();
            let d = b.column_by_name("trip_distance").expect("distance").as_primitive::<Float64Type>().clone();
            for i in 0..b.num_rows() {
                out.push(Trip {
                    pickup: pu.value(i),
                    dropoff: dof.value(i),
                    distance: (!d.is_null(i)).then(|| d.value(i)),
                });
            }
        }
    }
    out
}

/// Microseconds since the epoch for a naive `YYYY-MM-DD`.
pub fn day(s: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .expect("date")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_micros()
}

pub fn in_range(t: &Trip, from: Option<i64>, to: Option<i64>) -> bool {
    from.is_none_or(|f| t.pickup >= f) && to.is_none_or(|e| t.pickup < e)
}

/// Linear interpolation between closest ranks, NULLs excluded (DuckDB's quantile_cont).
pub fn quantile_cont(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(values[lo] + (values[hi] - values[lo]) * (pos - lo as f64))
}

/// The physics rule with the default bounds; None = valid.
pub fn reason(t: &Trip) -> Option<&'static str> {
    reason_within(t, [0.0, 10.0], [2.5, 80.0], [0.1, 800.0])
}

/// The physics rule with bounds `(lo, hi]` hours, `[lo, hi]` mph and `[lo, hi]` miles; NULL
/// speed (no positive duration) and NULL distance fail; None = valid.
pub fn reason_within(t: &Trip, hours_b: [f64; 2], mph: [f64; 2], miles: [f64; 2]) -> Option<&'static str> {
    let hours = (t.dropoff - t.pickup) as f64 / 3_600_000_000.0;
    if !(hours > hours_b[0] && hours <= hours_b[1]) {
        return Some("duration");
    }
    let speed = t.distance.filter(|_| hours > 0.0).map(|d| d / hours);
    if !speed.is_some_and(|s| s >= mph[0] && s <= mph[1]) {
        return Some("speed");
    }
    if !t.distance.is_some_and(|d| d >= miles[0] && d <= miles[1]) {
        return Some("distance");
    }
    None
}

fn columns_named(files: &[PathBuf], name: &str) -> Vec<arrow::array::ArrayRef> {
    let mut out = Vec::new();
    {
        for b in batches(files) {
            let schema = b.schema();
            if let Some((i, _)) = schema.fields().iter().enumerate().find(|(_, f)| f.name().eq_ignore_ascii_case(name))
            {
                out.push(b.column(i).clone());
            }
        }
    }
    out
}

/// Non-null values of a column matched case-insensitively, across files.
pub fn non_null(files: &[PathBuf], name: &str) -> usize {
    columns_named(files, name).iter().map(|a| a.len() - a.null_count()).sum()
}

/// Sum of a numeric column (any int or float type), as f64, in file order.
pub fn sum_as_f64(files: &[PathBuf], name: &str) -> f64 {
    let mut total = 0.0;
    for a in columns_named(files, name) {
        let a = arrow::compute::cast(&a, &arrow::datatypes::DataType::Float64).expect("cast");
        total += a.as_primitive::<Float64Type>().iter().flatten().sum::<f64>();
    }
    total
}

/// Rows where a column (matched case-insensitively, any type) reads as `value` once cast to text.
pub fn count_equal(files: &[PathBuf], name: &str, value: &str) -> usize {
    columns_named(files, name)
        .iter()
        .map(|a| {
            let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).expect("cast");
            a.as_string::<i32>().iter().filter(|v| *v == Some(value)).count()
        })
        .sum()
}
