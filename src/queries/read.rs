//! Reading segments for the built-in tickets: ranges in microseconds, aligning a segment's batches
//! to the dataset's current schema, and the exact percentile over sorted runs.

use std::sync::Arc;

use arrow::{
    array::{new_null_array, ArrayRef, BooleanArray},
    compute::{cast, filter_record_batch},
    datatypes::{Field, Schema, SchemaRef},
    record_batch::RecordBatch,
};

use super::range::Range;
use crate::{
    catalog::Snapshot,
    error::{Error, Result},
    segment::{Group, Mapped},
};

/// `[from, to)` as microseconds since the epoch (naive time read as UTC, like the stored values).
pub fn micros(range: &Range) -> (Option<i64>, Option<i64>) {
    let us = |t: chrono::NaiveDateTime| t.and_utc().timestamp_micros();
    (range.from.map(us), range.to.map(us))
}

pub fn in_range(t: i64, from: Option<i64>, to: Option<i64>) -> bool {
    t != i64::MIN && from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e)
}

/// The first `rows` rows of group `g`, keeping those where `mask` (one entry per row) is true;
/// `keep` keeps the decoded rows for the next query (see [`Mapped::read`]).
pub fn read_masked<'a>(
    seg: &'a Mapped<'_>,
    g: &'a Group,
    rows: usize,
    mask: Option<&'a BooleanArray>,
    keep: bool,
) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
    let mut offset = 0;
    seg.read(g, 0, rows, keep).map(move |batch| {
        let batch = batch?;
        let n = batch.num_rows();
        offset += n;
        Ok(match mask {
            Some(mask) => filter_record_batch(&batch, &mask.slice(offset - n, n))?,
            None => batch,
        })
    })
}

/// The dataset schema restricted to `columns` (all when empty), matched case-insensitively.
pub fn project(dataset: &str, snap: &Snapshot, columns: &[String]) -> Result<SchemaRef> {
    if columns.is_empty() {
        return Ok(snap.schema.clone());
    }
    let mut fields = Vec::with_capacity(columns.len());
    for c in columns {
        let field = snap.schema.fields().iter().find(|f| f.name().eq_ignore_ascii_case(c)).ok_or_else(|| {
            let known: Vec<&str> = snap.schema.fields().iter().map(|f| f.name().as_str()).collect();
            Error::invalid(format!("unknown column {c:?} in dataset {dataset}; columns are: {}", known.join(", ")))
        })?;
        fields.push(field.clone());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Reads batches written with an older schema into `target`: by name (case-insensitively),
/// widened with `cast`, NULL where the file lacked the column.
#[derive(Debug)]
pub struct Aligner {
    target: SchemaRef,
    sources: Vec<Option<usize>>,
}

impl Aligner {
    pub fn new(source: &Schema, target: SchemaRef) -> Self {
        let sources = target
            .fields()
            .iter()
            .map(|t| source.fields().iter().position(|s| s.name().eq_ignore_ascii_case(t.name())))
            .collect();
        Aligner { target, sources }
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .target
            .fields()
            .iter()
            .zip(&self.sources)
            .map(|(field, src)| column(batch, field, *src))
            .collect::<Result<Vec<_>>>()?;
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(self.target.clone(), columns, &options)?)
    }
}

fn column(batch: &RecordBatch, field: &Field, src: Option<usize>) -> Result<ArrayRef> {
    Ok(match src {
        Some(i) if batch.column(i).data_type() == field.data_type() => batch.column(i).clone(),
        Some(i) => cast(batch.column(i), field.data_type())?,
        None => new_null_array(field.data_type(), batch.num_rows()),
    })
}

/// DuckDB's `quantile_cont` (linear interpolation between closest ranks) of the union of `runs`,
/// each sorted in descending order without NaN. Runs are searched, never copied or sorted.
pub fn quantile_cont(runs: &[&[f64]], q: f64) -> Option<f64> {
    let n: usize = runs.iter().map(|r| r.len()).sum();
    if n == 0 {
        return None;
    }
    let pos = q * (n - 1) as f64;
    let lo_rank = pos.floor() as usize;
    let lo = nth_smallest(runs, lo_rank);
    if pos == lo_rank as f64 {
        return Some(lo);
    }
    let hi = nth_smallest(runs, lo_rank + 1);
    Some(lo + (hi - lo) * (pos - lo_rank as f64))
}

/// Maps doubles to integers in the same order (for bisection over values).
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn from_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// The value of 0-based rank `rank` in ascending order: the least value `v` with more than
/// `rank` elements `<= v`, found by bisection over the order keys.
fn nth_smallest(runs: &[&[f64]], rank: usize) -> f64 {
    let count_le = |v: f64| -> usize { runs.iter().map(|r| r.len() - r.partition_point(|x| *x > v)).sum() };
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for r in runs.iter().filter(|r| !r.is_empty()) {
        hi = hi.max(order_key(r[0]));
        lo = lo.min(order_key(r[r.len() - 1]));
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_le(from_key(mid)) > rank {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    from_key(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    }

    #[test]
    fn quantile_over_runs_matches_sorting() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) % 10_000) as f64 / 100.0 - 20.0
        };
        let mut runs: Vec<Vec<f64>> = (0..7).map(|i| (0..(i * 37 + 1)).map(|_| next()).collect()).collect();
        runs.push(vec![0.0, -0.0, 0.0]);
        runs.push(Vec::new());
        for r in &mut runs {
            r.sort_by(|a, b| b.total_cmp(a));
        }
        let all: Vec<f64> = runs.iter().flatten().copied().collect();
        let refs: Vec<&[f64]> = runs.iter().map(Vec::as_slice).collect();
        for q in [0.0001, 0.1, 0.5, 0.9, 0.9999] {
            assert_eq!(quantile_cont(&refs, q), Some(sorted_quantile(all.clone(), q)), "q={q}");
        }
        assert_eq!(quantile_cont(&[], 0.9), None);
        assert_eq!(quantile_cont(&[&[3.5]], 0.9), Some(3.5));
    }
}
