//! `bridge gen`: deterministic, TLC-shaped yellow-taxi months.
//!
//! There is no real TLC data offline, so Bridge makes its own. Each month is one Parquet file named
//! like the real ones (`yellow_tripdata_2024-03.parquet`) with the real column names, the three
//! layouts of the real bucket and the per-year type drift:
//!
//! | year      | layout |
//! |-----------|--------|
//! | 2009      | `vendor_name` (VTS/CMT/DDS), `Trip_Pickup_DateTime`/`Trip_Dropoff_DateTime` as text, `Start_Lon`…`End_Lat`, `Rate_Code`, `store_and_forward`, `Payment_Type` (Credit, CASH, Cash, No Charge, Dispute), `Fare_Amt`, `surcharge`, `mta_tax`, `Tip_Amt`, `Tolls_Amt`, `Total_Amt` |
//! | 2010      | `vendor_id`, `pickup_datetime`/`dropoff_datetime` as text, `pickup_longitude`…, `rate_code`, `store_and_fwd_flag`, `payment_type` (CRD, CSH, Cre, Cas, NOC, DIS, UNK), `fare_amount`, `surcharge`, … |
//! | 2011–2023 | `tpep_*`; ids int64; `passenger_count`, `RatecodeID` double; `airport_fee` |
//! | 2024      | ids int32; `passenger_count`, `RatecodeID` int64; `Airport_fee` |
//! | ≥ 2025    | as 2024, plus `cbd_congestion_fee` |
//!
//! Files are as compact as the real ones: times at whole seconds, rows in pickup order within each
//! row group, ZSTD with dictionaries (the real 2024-01 holds ~3 M rows in ~50 MB; 2009 months
//! ~14 M rows in ~450 MB, which `--rows 14000000` gives).
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
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal};

pub use crate::config::Month;

/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: usize = 65_536;

/// The 2009 layout.
fn schema_2009() -> SchemaRef {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    let (s, d, i) = (DataType::Utf8, DataType::Float64, DataType::Int64);
    Arc::new(Schema::new(vec![
        f("vendor_name", s.clone()),
        f("Trip_Pickup_DateTime", s.clone()),
        f("Trip_Dropoff_DateTime", s.clone()),
        f("Passenger_Count", i),
        f("Trip_Distance", d.clone()),
        f("Start_Lon", d.clone()),
        f("Start_Lat", d.clone()),
        f("Rate_Code", d.clone()),
        f("store_and_forward", d.clone()),
        f("End_Lon", d.clone()),
        f("End_Lat", d.clone()),
        f("Payment_Type", s),
        f("Fare_Amt", d.clone()),
        f("surcharge", d.clone()),
        f("mta_tax", d.clone()),
        f("Tip_Amt", d.clone()),
        f("Tolls_Amt", d.clone()),
        f("Total_Amt", d),
    ]))
}

/// The 2010 layout.
fn schema_2010() -> SchemaRef {
    let f = |n: &str, t: DataType| Field::new(n, t, true);
    let (s, d, i) = (DataType::Utf8, DataType::Float64, DataType::Int64);
    Arc::new(Schema::new(vec![
        f("vendor_id", s.clone()),
        f("pickup_datetime", s.clone()),
        f("dropoff_datetime", s.clone()),
        f("passenger_count", i.clone()),
        f("trip_distance", d.clone()),
        f("pickup_longitude", d.clone()),
        f("pickup_latitude", d.clone()),
        f("rate_code", i),
        f("store_and_fwd_flag", s.clone()),
        f("dropoff_longitude", d.clone()),
        f("dropoff_latitude", d.clone()),
        f("payment_type", s),
        f("fare_amount", d.clone()),
        f("surcharge", d.clone()),
        f("mta_tax", d.clone()),
        f("tip_amount", d.clone()),
        f("tolls_amount", d.clone()),
        f("total_amount", d),
    ]))
}

/// The TLC schema of a month: its era's layout, with that year's type drift.
pub fn schema_for(month: Month) -> SchemaRef {
    let y = month.year;
    if y <= 2009 {
        return schema_2009();
    }
    if y == 2010 {
        return schema_2010();
    }
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
    /// Pickup and dropoff longitude/latitude (2009–2010 only).
    coords: [Option<f64>; 4],
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
/// The MTA tax started on 2009-03-01; earlier trips have none.
const MTA_TAX_START_US: i64 = 1_235_865_600_000_000;

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
        // Meters record whole seconds.
        let pickup = self.month_start_us + r.random_range(0..self.month_len_us / 1_000_000) * 1_000_000;
        let mut distance = (self.distance.sample(r) * 100.0).round() / 100.0;
        distance = distance.min(60.0);
        let speed = self.speed.sample(r).clamp(3.0, 45.0);
        let dropoff = pickup + ((distance / speed) * 3600.0) as i64 * 1_000_000 + r.random_range(30..120) * 1_000_000;
        let airport = r.random_bool(0.08);
        let fare = ((3.0 + 2.5 * distance + (dropoff - pickup) as f64 / 60e6 * 0.5) * 10.0).round() / 10.0;
        let mut trip = Trip {
            // 3 is DDS, a vendor of the 2009–2010 files only.
            vendor: if self.year <= 2010 && r.random_bool(0.05) {
                3
            } else if r.random_bool(0.7) {
                2
            } else {
                1
            },
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
            coords: [None; 4],
        };
        if self.year <= 2010 {
            // Around Midtown, about 0.01° a mile; 2 % of old trips report (0, 0), as real ones do.
            let lon = -73.98 + r.random_range(-0.04..0.04);
            let lat = 40.75 + r.random_range(-0.05..0.05);
            let dir = r.random_range(0.0..std::f64::consts::TAU);
            let round = |v: f64| (v * 1e6).round() / 1e6;
            trip.coords = if r.random_bool(0.02) {
                [Some(0.0); 4]
            } else {
                let (dlon, dlat) = (dir.cos() * distance * 0.014, dir.sin() * distance * 0.011);
                [Some(round(lon)), Some(round(lat)), Some(round(lon + dlon)), Some(round(lat + dlat))]
            };
        }
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

#[derive(Debug, PartialEq, Eq)]
enum Era {
    Y2009,
    Y2010,
    Modern,
}

fn month_era(schema: &SchemaRef) -> Era {
    if schema.field_with_name("vendor_name").is_ok() {
        Era::Y2009
    } else if schema.field_with_name("vendor_id").is_ok() {
        Era::Y2010
    } else {
        Era::Modern
    }
}

/// Builds one Arrow batch of `n` trips in `schema`'s types, in pickup order (as the real files
/// are, roughly: they are written by meter upload time).
fn batch(gen: &mut TripGen, schema: &SchemaRef, n: usize) -> RecordBatch {
    let mut trips: Vec<Trip> = (0..n).map(|_| gen.trip()).collect();
    trips.sort_by_key(|t| t.pickup);
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
    let text = |v: &dyn Fn(&Trip) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        trips.iter().for_each(|t| b.append_option(v(t)));
        Arc::new(b.finish())
    };
    // 2009–2010 times are text, `YYYY-MM-DD HH:MM:SS`.
    let time_text = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us).map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
    };
    let vendor_text = |t: &Trip| Some(["CMT", "VTS", "DDS"][(t.vendor as usize).clamp(1, 3) - 1].to_string());
    let fare_total =
        |t: &Trip| t.fare + 1.5 + 1.0 + t.tip + t.tolls + t.congestion.unwrap_or(0.0) + t.airport.unwrap_or(0.0);
    let old_total = |t: &Trip| ((t.fare + 0.5 + 0.5 + t.tip + t.tolls) * 100.0).round() / 100.0;
    let era = month_era(schema);
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
                "store_and_fwd_flag" if era == Era::Modern => {
                    let mut b = StringBuilder::with_capacity(n, n);
                    trips.iter().for_each(|t| b.append_option(t.flag));
                    Arc::new(b.finish())
                }
                "PULocationID" => int(dt, &|t| Some(t.pu)),
                "DOLocationID" => int(dt, &|t| Some(t.do_)),
                "payment_type" if era == Era::Modern => int(dt, &|t| Some(t.payment)),
                "fare_amount" => float(&|t| Some(t.fare)),
                "extra" => float(&|_| Some(1.0)),
                "mta_tax" => float(&|t| (t.pickup >= MTA_TAX_START_US).then_some(0.5)),
                "tip_amount" => float(&|t| Some(t.tip)),
                "tolls_amount" => float(&|t| Some(t.tolls)),
                "improvement_surcharge" => float(&|_| Some(1.0)),
                "total_amount" if era == Era::Y2010 => float(&|t| Some(old_total(t))),
                "total_amount" => float(&|t| Some(fare_total(t))),
                // 2009 and 2010
                "vendor_name" | "vendor_id" => text(&vendor_text),
                "Trip_Pickup_DateTime" | "pickup_datetime" => text(&|t| time_text(t.pickup)),
                "Trip_Dropoff_DateTime" | "dropoff_datetime" => text(&|t| time_text(t.dropoff)),
                "Passenger_Count" => int(dt, &|t| t.passengers),
                "Trip_Distance" => float(&|t| Some(t.distance)),
                "Start_Lon" | "pickup_longitude" => float(&|t| t.coords[0]),
                "Start_Lat" | "pickup_latitude" => float(&|t| t.coords[1]),
                "End_Lon" | "dropoff_longitude" => float(&|t| t.coords[2]),
                "End_Lat" | "dropoff_latitude" => float(&|t| t.coords[3]),
                // Mostly empty in the old files.
                "Rate_Code" => float(&|t| t.ratecode.filter(|c| *c != 1).map(|c| c as f64)),
                "rate_code" => int(dt, &|t| t.ratecode),
                "store_and_forward" => float(&|t| t.flag.filter(|f| *f == "Y").map(|_| 1.0)),
                "store_and_fwd_flag" if era == Era::Y2010 => {
                    text(&|t| t.flag.filter(|f| *f == "Y").map(|_| "1".to_string()))
                }
                "Payment_Type" => text(&|t| {
                    Some(["Credit", "CASH", "No Charge", "Dispute"][(t.payment as usize).clamp(1, 4) - 1].to_string())
                        .map(|p| if p == "CASH" && t.pickup % 3_000_000 == 0 { "Cash".to_string() } else { p })
                }),
                "payment_type" if era == Era::Y2010 => text(&|t| {
                    Some(["CRD", "CSH", "NOC", "DIS"][(t.payment as usize).clamp(1, 4) - 1].to_string()).map(|p| {
                        if t.pickup % 5_000_000 == 0 {
                            "UNK".to_string()
                        } else {
                            p
                        }
                    })
                }),
                "Fare_Amt" => float(&|t| Some(t.fare)),
                "surcharge" => float(&|t| Some(if t.pickup % 2_000_000 == 0 { 1.0 } else { 0.5 })),
                "Tip_Amt" => float(&|t| Some(t.tip)),
                "Tolls_Amt" => float(&|t| Some(t.tolls)),
                "Total_Amt" => float(&|t| Some(old_total(t))),
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
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(std::io::Error::other)?))
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
