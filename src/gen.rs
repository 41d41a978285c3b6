//! `bridge gen`: deterministic, TLC-shaped yellow-taxi months.
//!
//! There is no real TLC data offline, so Bridge makes its own. Each month is one Parquet file named
//! like the real ones (`yellow_tripdata_2024-03.parquet`) with the real column names and the
//! per-year type drift:
//!
//! | year   | ids (VendorID, PU/DOLocationID) | passenger_count, RatecodeID | airport fee column | extra |
//! |--------|---------------------------------|-----------------------------|--------------------|-------|
//! | ≤ 2023 | int64                           | double                      | `airport_fee`      |       |
//! | 2024   | int32                           | int64                       | `Airport_fee`      |       |
//! | ≥ 2025 | int32                           | int64                       | `Airport_fee`      | `cbd_congestion_fee` |
//!
//! About 1.5 % of rows are dirty the way TLC rows are: zero or negative distances, dropoff before
//! pickup, trips lasting days, absurd speeds and distances, NULLs, and pickups outside the month.
//! The same (month, rows, seed) always produces the same file.

use std::{fs::File, path::Path, sync::Arc};

use arrow::{
    array::{ArrayRef, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder},
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    record_batch::RecordBatch,
};
use chrono::{NaiveDate, NaiveDateTime};
use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal};

/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: usize = 65_536;

/// A calendar month, parsed from `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("month {s:?} is not YYYY-MM");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        let month = Month { year: y.parse().map_err(|_| bad())?, month: m.parse().map_err(|_| bad())? };
        NaiveDate::from_ymd_opt(month.year, month.month, 1).ok_or_else(bad)?;
        Ok(month)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Month {
    fn start(self) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default()
    }
    fn next(self) -> Month {
        if self.month == 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }
    /// The TLC file name for this month.
    pub fn file_name(self) -> String {
        format!("yellow_tripdata_{self}.parquet")
    }
}

/// The TLC schema of a month, with that year's type drift.
pub fn schema_for(month: Month) -> SchemaRef {
    let y = month.year;
    let id = if y >= 2024 { DataType::Int32 } else { DataType::Int64 };
    let count = if y >= 2024 { DataType::Int64 } else { DataType::Float64 };
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    let mut fields = vec![
        f("VendorID", id.clone()),
        f("tpep_pickup_datetime", ts.clone()),
        f("tpep_dropoff_datetime", ts),
        f("passenger_count", count.clone()),
        f("trip_distance", DataType::Float64),
        f("RatecodeID", count),
        f("store_and_fwd_flag", DataType::Utf8),
        f("PULocationID", id.clone()),
        f("DOLocationID", id),
        f("payment_type", DataType::Int64),
    ];
    for money in [
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "improvement_surcharge",
        "total_amount",
        "congestion_surcharge",
    ] {
        fields.push(f(money, DataType::Float64));
    }
    fields.push(f(if y >= 2024 { "Airport_fee" } else { "airport_fee" }, DataType::Float64));
    if y >= 2025 {
        fields.push(f("cbd_congestion_fee", DataType::Float64));
    }
    Arc::new(Schema::new(fields))
}

/// One generated trip, before it is split into columns.
struct Trip {
    vendor: i64,
    pickup: i64,
    dropoff: i64,
    passengers: Option<i64>,
    distance: f64,
    ratecode: Option<i64>,
    flag: Option<&'static str>,
    pu: i64,
    do_: i64,
    payment: i64,
    fare: f64,
    tip: f64,
    tolls: f64,
    congestion: Option<f64>,
    airport: Option<f64>,
    cbd: Option<f64>,
}

struct TripGen {
    rng: StdRng,
    month_start_us: i64,
    month_len_us: i64,
    distance: LogNormal<f64>,
    speed: Normal<f64>,
    year: i32,
}

const US_PER_HOUR: f64 = 3_600_000_000.0;

impl TripGen {
    fn new(month: Month, seed: u64) -> Self {
        let start = month.start().and_utc().timestamp_micros();
        let end = month.next().start().and_utc().timestamp_micros();
        let seed = seed ^ ((month.year as u64) << 8 | month.month as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        TripGen {
            rng: StdRng::seed_from_u64(seed),
            month_start_us: start,
            month_len_us: end - start,
            // Median ~1.8 mi with a long right tail, like Manhattan-heavy yellow cabs.
            distance: LogNormal::new(1.8f64.ln(), 0.85).expect("valid lognormal"),
            speed: Normal::new(11.5, 4.0).expect("valid normal"),
            year: month.year,
        }
    }

    fn trip(&mut self) -> Trip {
        let r = &mut self.rng;
        let pickup = self.month_start_us + r.random_range(0..self.month_len_us);
        let mut distance = (self.distance.sample(r) * 100.0).round() / 100.0;
        distance = distance.min(60.0);
        let speed = self.speed.sample(r).clamp(3.0, 45.0);
        let dropoff = pickup + ((distance / speed) * US_PER_HOUR) as i64 + r.random_range(30_000_000..120_000_000);
        let airport = r.random_bool(0.08);
        let fare = ((3.0 + 2.5 * distance + (dropoff - pickup) as f64 / 60e6 * 0.5) * 10.0).round() / 10.0;
        let mut trip = Trip {
            vendor: if r.random_bool(0.7) { 2 } else { 1 },
            pickup,
            dropoff,
            passengers: Some(*[1, 1, 1, 1, 1, 2, 2, 3, 4, 5, 6, 0].get(r.random_range(0..12)).unwrap_or(&1)),
            distance,
            ratecode: Some(if airport { 2 } else { 1 }),
            flag: Some(if r.random_bool(0.005) { "Y" } else { "N" }),
            pu: r.random_range(1..=263),
            do_: r.random_range(1..=265),
            payment: *[1, 1, 1, 2, 2, 3, 4].get(r.random_range(0..7)).unwrap_or(&1),
            fare,
            tip: if r.random_bool(0.7) { (fare * r.random_range(0.1..0.3) * 100.0).round() / 100.0 } else { 0.0 },
            tolls: if airport { 6.94 } else { 0.0 },
            congestion: Some(2.5),
            airport: Some(if airport { 1.75 } else { 0.0 }),
            cbd: (self.year >= 2025).then_some(0.75),
        };
        // About 1.5 % dirty rows, each kind seen in real TLC files.
        if r.random_bool(0.015) {
            match r.random_range(0..9) {
                0 => trip.distance = 0.0,
                1 => trip.distance = -trip.distance,
                2 => std::mem::swap(&mut trip.pickup, &mut trip.dropoff),
                3 => trip.dropoff = trip.pickup + r.random_range(1..4) * 24 * US_PER_HOUR as i64,
                4 => trip.dropoff = trip.pickup + 120_000_000, // two minutes
                5 => trip.distance = r.random_range(900.0..200_000.0),
                6 => {
                    trip.passengers = None;
                    trip.ratecode = None;
                    trip.flag = None;
                    trip.congestion = None;
                    trip.airport = None;
                }
                7 => {
                    // Pickups outside the file's month: a stale meter clock, or the next month.
                    let shift = if r.random_bool(0.5) { -r.random_range(1..400) } else { 40 };
                    trip.pickup += shift * 24 * US_PER_HOUR as i64;
                    trip.dropoff += shift * 24 * US_PER_HOUR as i64;
                }
                _ => trip.dropoff = trip.pickup, // zero duration
            }
        }
        trip
    }
}

/// Builds one Arrow batch of `n` trips in `schema`'s types.
fn batch(gen: &mut TripGen, schema: &SchemaRef, n: usize) -> RecordBatch {
    let trips: Vec<Trip> = (0..n).map(|_| gen.trip()).collect();
    let int = |dt: &DataType, v: &dyn Fn(&Trip) -> Option<i64>| -> ArrayRef {
        if *dt == DataType::Int32 {
            let mut b = Int32Builder::with_capacity(n);
            trips.iter().for_each(|t| b.append_option(v(t).map(|x| x as i32)));
            Arc::new(b.finish())
        } else {
            let mut b = Int64Builder::with_capacity(n);
            trips.iter().for_each(|t| b.append_option(v(t)));
            Arc::new(b.finish())
        }
    };
    let num = |dt: &DataType, v: &dyn Fn(&Trip) -> Option<i64>| -> ArrayRef {
        if *dt == DataType::Float64 {
            let mut b = Float64Builder::with_capacity(n);
            trips.iter().for_each(|t| b.append_option(v(t).map(|x| x as f64)));
            Arc::new(b.finish())
        } else {
            int(dt, v)
        }
    };
    let float = |v: &dyn Fn(&Trip) -> Option<f64>| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        trips.iter().for_each(|t| b.append_option(v(t)));
        Arc::new(b.finish())
    };
    let ts = |v: &dyn Fn(&Trip) -> i64| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(n);
        trips.iter().for_each(|t| b.append_value(v(t)));
        Arc::new(b.finish())
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| {
            let dt = field.data_type();
            match field.name().as_str() {
                "VendorID" => int(dt, &|t| Some(t.vendor)),
                "tpep_pickup_datetime" => ts(&|t| t.pickup),
                "tpep_dropoff_datetime" => ts(&|t| t.dropoff),
                "passenger_count" => num(dt, &|t| t.passengers),
                "trip_distance" => float(&|t| Some(t.distance)),
                "RatecodeID" => num(dt, &|t| t.ratecode),
                "store_and_fwd_flag" => {
                    let mut b = StringBuilder::with_capacity(n, n);
                    trips.iter().for_each(|t| b.append_option(t.flag));
                    Arc::new(b.finish())
                }
                "PULocationID" => int(dt, &|t| Some(t.pu)),
                "DOLocationID" => int(dt, &|t| Some(t.do_)),
                "payment_type" => int(dt, &|t| Some(t.payment)),
                "fare_amount" => float(&|t| Some(t.fare)),
                "extra" => float(&|_| Some(1.0)),
                "mta_tax" => float(&|_| Some(0.5)),
                "tip_amount" => float(&|t| Some(t.tip)),
                "tolls_amount" => float(&|t| Some(t.tolls)),
                "improvement_surcharge" => float(&|_| Some(1.0)),
                "total_amount" => float(&|t| {
                    Some(t.fare + 1.5 + 1.0 + t.tip + t.tolls + t.congestion.unwrap_or(0.0) + t.airport.unwrap_or(0.0))
                }),
                "congestion_surcharge" => float(&|t| t.congestion),
                "cbd_congestion_fee" => float(&|t| t.cbd),
                _ => float(&|t| t.airport), // airport_fee / Airport_fee
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("generated columns match the schema")
}

/// Writes `rows` trips for `month` into `dir/yellow_tripdata_YYYY-MM.parquet` and returns the path.
/// The file is written to a temporary name and renamed, so a watcher never sees half of it.
pub fn write_month(dir: &Path, month: Month, rows: usize, seed: u64) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(month.file_name());
    let tmp = dir.join(format!(".{}.tmp", month.file_name()));
    let schema = schema_for(month);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut writer =
        ArrowWriter::try_new(File::create(&tmp)?, schema.clone(), Some(props)).map_err(std::io::Error::other)?;
    let mut gen = TripGen::new(month, seed);
    let mut left = rows;
    while left > 0 {
        let n = left.min(BATCH_ROWS);
        writer.write(&batch(&mut gen, &schema, n)).map_err(std::io::Error::other)?;
        left -= n;
    }
    writer.close().map_err(std::io::Error::other)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The months from `first` on, `count` of them.
pub fn months_from(first: Month, count: usize) -> Vec<Month> {
    std::iter::successors(Some(first), |m| Some(m.next())).take(count).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_parses_and_rejects() {
        assert_eq!("2024-03".parse::<Month>(), Ok(Month { year: 2024, month: 3 }));
        assert!("2024-13".parse::<Month>().is_err());
        assert!("2024".parse::<Month>().is_err());
        assert_eq!(Month { year: 2024, month: 12 }.next(), Month { year: 2025, month: 1 });
    }

    #[test]
    fn schema_drifts_by_year() {
        let s23 = schema_for(Month { year: 2023, month: 1 });
        let s25 = schema_for(Month { year: 2025, month: 1 });
        assert_eq!(s23.fields().len(), 19);
        assert_eq!(s25.fields().len(), 20);
        assert!(s23.field_with_name("airport_fee").is_ok());
        assert_eq!(s25.field_with_name("VendorID").map(|f| f.data_type().clone()).ok(), Some(DataType::Int32));
    }

    #[test]
    fn generation_is_deterministic() {
        let m = Month { year: 2024, month: 2 };
        let s = schema_for(m);
        let a = batch(&mut TripGen::new(m, 7), &s, 500);
        let b = batch(&mut TripGen::new(m, 7), &s, 500);
        assert_eq!(a, b);
    }
}
