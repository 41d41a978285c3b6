//! `outliers`: trips that break physical plausibility ([`crate::rule`]).
//!
//! With the default bounds only the segments' outlier groups are read (each segment classified
//! its rows with the same rule at ingest); custom bounds classify every trip in the range from
//! the keys. Rows come back with `duration_hours`, `avg_speed_mph` and `reason`. Unordered
//! results stream; `order_by` buffers the outlier rows of the range to sort them.

mod top;

use std::{collections::HashMap, sync::Arc};

use arrow::{
    array::{BooleanArray, Float64Array, RecordBatch, StringArray},
    compute::{concat_batches, filter_record_batch, sort_to_indices, take_record_batch, SortOptions},
    datatypes::{DataType, Field, Schema, SchemaRef},
};

use super::{
    manifest_metadata,
    native::{Emitter, Job},
    p90,
    range::Range,
    read::{in_range, micros, Aligner},
    require_tlc,
};
use crate::{
    catalog::{Catalog, Snapshot},
    error::{Error, Result},
    proto::Outliers,
    rule::{self, Bounds},
    segment::{Cover, Group, Mapped},
};

/// Columns `order_by` may name.
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

fn bounds(o: &Outliers) -> Result<Bounds> {
    let d = rule::DEFAULT;
    let b = Bounds {
        min_duration_hours: o.min_duration_hours.unwrap_or(d.min_duration_hours),
        max_duration_hours: o.max_duration_hours.unwrap_or(d.max_duration_hours),
        min_speed_mph: o.min_speed_mph.unwrap_or(d.min_speed_mph),
        max_speed_mph: o.max_speed_mph.unwrap_or(d.max_speed_mph),
        min_distance: o.min_distance.unwrap_or(d.min_distance),
        max_distance: o.max_distance.unwrap_or(d.max_distance),
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

/// `order_by` as (column, descending), checked against the whitelist.
fn order(order_by: &str) -> Result<Option<(&'static str, bool)>> {
    let spec = order_by.trim();
    if spec.is_empty() {
        return Ok(None);
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
    Ok(Some((col, dir == "desc")))
}

/// The result schema: the dataset's columns, then the three computed ones.
fn output_schema(snap: &Snapshot) -> SchemaRef {
    output_schema_of(&snap.schema)
}

fn output_schema_of(columns: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = columns.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("duration_hours", DataType::Float64, true));
    fields.push(Field::new("avg_speed_mph", DataType::Float64, true));
    fields.push(Field::new("reason", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// What the query needs besides the bounds.
struct Scope {
    from: Option<i64>,
    to: Option<i64>,
    /// Only trips strictly above this distance (`within_p90`).
    above: Option<f64>,
    bounds: Bounds,
}

/// The outliers among the first `n` rows of a group: per-row mask and the computed columns.
/// Only a `partial`ly covered group needs its pickups checked against the range.
fn classify(seg: &Mapped<'_>, g: &Group, partial: bool, n: usize, s: &Scope) -> Result<Option<(Vec<bool>, Computed)>> {
    let (pickups, dropoffs, distances) = (seg.pickups(g, n)?, seg.dropoffs(g, n)?, seg.distances(g, n));
    let mut mask = vec![false; n];
    let mut c = Computed::default();
    let opt_ts = |t: i64| (t != i64::MIN).then_some(t);
    for i in 0..n {
        if partial && !in_range(pickups[i], s.from, s.to) {
            continue;
        }
        let d = (!distances[i].is_nan()).then_some(distances[i]);
        if s.above.is_some_and(|thr| !d.is_some_and(|d| d > thr)) {
            continue;
        }
        let hours = rule::duration_hours(opt_ts(pickups[i]), opt_ts(dropoffs[i]));
        let speed = rule::speed_mph(d, hours);
        if let Some(reason) = s.bounds.reason(hours, speed, d) {
            mask[i] = true;
            c.hours.push(hours);
            c.speed.push(speed);
            c.reason.push(reason.as_str());
        }
    }
    Ok((!c.reason.is_empty()).then_some((mask, c)))
}

#[derive(Default)]
struct Computed {
    hours: Vec<Option<f64>>,
    speed: Vec<Option<f64>>,
    reason: Vec<&'static str>,
}

/// Calls `each` with every segment of `snap` holding rows in scope, mapped, and its aligner to the
/// dataset's schema, until it returns false. One segment is pinned at a time: a long range never
/// needs every file local at once.
fn each_segment(snap: &Snapshot, s: &Scope, mut each: impl FnMut(&Mapped<'_>, &Aligner) -> Result<bool>) -> Result<()> {
    for slot in &snap.segments {
        if !slot.touches(s.from, s.to) {
            continue;
        }
        let pin = slot.pin()?;
        let seg = &pin.map()?;
        if !each(seg, &Aligner::new(seg.schema(), snap.schema.clone()))? {
            break;
        }
    }
    Ok(())
}

/// Reads the outliers of `snap` in scope, calling `out` with each batch until it returns false.
fn scan(snap: &Snapshot, s: &Scope, out: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
    let default_rule = s.bounds == rule::DEFAULT;
    each_segment(snap, s, |seg, aligner| {
        for (_, g) in seg.meeting(s.from, s.to) {
            let cover = g.cover(s.from, s.to);
            if cover == Cover::None || (default_rule && !g.outlier) {
                continue;
            }
            let n = prefix(seg, g, s);
            let Some((mask, computed)) = classify(seg, g, cover == Cover::Partial, n, s)? else { continue };
            let (mut offset, mut taken) = (0, 0);
            for batch in seg.read(g, (0, n), None, true) {
                let batch = batch?;
                let rows = batch.num_rows();
                let m = BooleanArray::from(mask[offset..offset + rows].to_vec());
                offset += rows;
                let k = m.true_count();
                if k == 0 {
                    continue;
                }
                let rows_out = aligner.apply(&filter_record_batch(&batch, &m)?)?;
                let mut columns = rows_out.columns().to_vec();
                columns.push(Arc::new(Float64Array::from(computed.hours[taken..taken + k].to_vec())));
                columns.push(Arc::new(Float64Array::from(computed.speed[taken..taken + k].to_vec())));
                columns.push(Arc::new(StringArray::from(computed.reason[taken..taken + k].to_vec())));
                taken += k;
                if !out(RecordBatch::try_new(output_schema(snap), columns)?)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })
}

/// The rows of `g` that can qualify: above a distance threshold, only the group's sorted prefix.
fn prefix(seg: &Mapped<'_>, g: &Group, s: &Scope) -> usize {
    match s.above {
        Some(thr) => seg.distances(g, g.with_distance as usize).partition_point(|d| *d > thr),
        None => g.rows as usize,
    }
}

/// The most outlier rows an `order_by` without `limit` may sort (they are all held at once).
pub const UNLIMITED_ORDER_ROWS: usize = 1_000_000;
/// Rows a top-k buffer may reach before it is cut back, for small limits.
const SORT_CHUNK_ROWS: usize = 65_536;

/// Each segment's best `k` outliers in scope by `col` (see [`top`]), one segment pinned at a time.
fn top_each(
    snap: &Snapshot,
    s: &Scope,
    order: (&str, bool, usize),
    out: &mut dyn FnMut(RecordBatch) -> Result<bool>,
) -> Result<()> {
    let default_rule = s.bounds == rule::DEFAULT;
    each_segment(snap, s, |seg, aligner| match top::segment_top(seg, s, default_rule, aligner, order)? {
        Some(best) => out(best),
        None => Ok(true),
    })
}

/// Sorts all outlier rows by `col` and keeps the first `limit`.
fn sorted(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    col: &str,
    desc: bool,
    limit: Option<u64>,
) -> Result<RecordBatch> {
    let all = concat_batches(schema, &batches)?;
    let idx = all.schema().fields().iter().position(|f| f.name().eq_ignore_ascii_case(col));
    let idx = idx.ok_or_else(|| Error::invalid(format!("order_by column {col} is not in this dataset")))?;
    let opts = SortOptions { descending: desc, nulls_first: false };
    let indices = sort_to_indices(all.column(idx), Some(opts), limit.map(|l| l as usize))?;
    Ok(take_record_batch(&all, &indices)?)
}

pub fn plan(o: Outliers, catalog: &Catalog) -> Result<Job> {
    let ds = catalog.dataset(&o.dataset)?;
    let snap = ds.snapshot();
    require_tlc(&ds.name, &snap, "outliers")?;
    let range = o.range.as_ref().map(|r| Range::parse(&r.from, &r.to)).transpose()?.unwrap_or_default();
    let bounds = bounds(&o)?;
    let order = order(&o.order_by)?;
    super::split::check(o.slice.as_ref(), &ds.name, &snap, &range)?;
    let dataset = ds.name.clone();
    Ok(Box::new(move |emit: &mut Emitter| {
        let mut md: HashMap<String, String> = manifest_metadata(&dataset, &snap);
        let (from, to) = micros(&range);
        let mut scope = Scope { from, to, above: None, bounds };
        if o.within_p90 {
            let stats = match &o.slice {
                // One part of a split answer: the threshold and counts of the whole range.
                Some(s) => {
                    p90::Stats { threshold: s.threshold, trips_in_range: s.trips_in_range, trips_above: s.trips_above }
                }
                None => p90::compute(&p90::map_all(&p90::pin_range(&snap, &range)?)?, &range, 0.9, false, None)?.0,
            };
            scope.above = Some(stats.threshold.unwrap_or(f64::INFINITY));
            p90::stats_metadata(&stats, 0.9, &mut md);
        }
        let plain = output_schema(&snap);
        let schema = Arc::new(plain.as_ref().clone().with_metadata(md));
        if !emit.start(schema, o.limit) {
            return Ok(());
        }
        match order {
            None => scan(&snap, &scope, &mut |b| emit.push(b)),
            Some((col, desc)) => {
                // Top-k: with a limit, at most `limit` rows plus one scan batch are held at once
                // (the buffer is cut back to the best `limit` whenever it doubles). Without one,
                // the whole ordered answer must be held, up to UNLIMITED_ORDER_ROWS.
                let keep = o.limit.map(|l| l as usize);
                let mut held: Vec<RecordBatch> = Vec::new();
                let mut rows = 0usize;
                let mut hold = |b: RecordBatch| {
                    rows += b.num_rows();
                    held.push(b);
                    match keep {
                        Some(k) if rows > (2 * k).max(SORT_CHUNK_ROWS) => {
                            let best = sorted(std::mem::take(&mut held), &plain, col, desc, Some(k as u64))?;
                            rows = best.num_rows();
                            held.push(best);
                        }
                        None if rows > UNLIMITED_ORDER_ROWS => {
                            return Err(Error::ResourceExhausted(format!(
                                "order_by without a limit over more than {UNLIMITED_ORDER_ROWS} outliers; \
                                 add a limit (top-k is cheap) or narrow the range"
                            )))
                        }
                        _ => {}
                    }
                    Ok(true)
                };
                match keep.filter(|k| top::ranks(col) && *k <= top::MAX_K) {
                    Some(k) => top_each(&snap, &scope, (col, desc, k), &mut hold)?,
                    None => scan(&snap, &scope, &mut hold)?,
                }
                emit.push(sorted(held, &plain, col, desc, o.limit)?).map(|_| ())
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_is_whitelisted() {
        assert_eq!(order("avg_speed_mph desc").expect("ok"), Some(("avg_speed_mph", true)));
        assert_eq!(order("TRIP_DISTANCE").expect("ok"), Some(("trip_distance", false)));
        assert!(order("1; DROP TABLE x").is_err());
        assert!(order("trip_distance sideways").is_err());
    }

    #[test]
    fn bounds_must_be_ordered() {
        let o = Outliers { min_speed_mph: Some(90.0), ..Default::default() };
        assert!(bounds(&o).is_err());
        assert_eq!(bounds(&Outliers::default()).expect("defaults"), rule::DEFAULT);
    }
}
