//! Reading segments for the built-in tickets: ranges in microseconds, aligning a segment's batches
//! to the dataset's current schema.

use std::sync::Arc;

use arrow::{
    array::{new_null_array, Array, ArrayRef, BooleanArray, BooleanBufferBuilder},
    buffer::BooleanBuffer,
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

/// Whether each of the first `n` rows of `g` was picked up in `[from, to)` (NULL pickups are
/// not), over the decoded pickups (see [`in_range_bits`]).
pub fn pickup_mask(seg: &Mapped<'_>, g: &Group, n: usize, from: Option<i64>, to: Option<i64>) -> Result<BooleanArray> {
    let mut bits = BooleanBufferBuilder::new(n);
    for us in seg.pickup_arrays(g, n)? {
        let inside = in_range_bits(us.values(), from, to);
        let inside = match us.nulls() {
            Some(valid) => &inside & valid.inner(),
            None => inside,
        };
        bits.append_buffer(&inside);
    }
    Ok(BooleanArray::new(bits.finish(), None))
}

/// `from <= t < to` for each value (either bound may be open), with one unsigned comparison a
/// value: `t - from < to - from`. Arrow's `gt_eq`, `lt` and `and` took three passes, and
/// baseline x86-64 has no 64-bit vector comparison, so the loop is also compiled for AVX2 and
/// chosen at run time (measured: 1 ns a value scalar, see the test below).
fn in_range_bits(values: &[i64], from: Option<i64>, to: Option<i64>) -> BooleanBuffer {
    let lo = from.unwrap_or(i64::MIN);
    let span = match to {
        Some(t) if t <= lo => return BooleanBuffer::new_unset(values.len()),
        Some(t) => t.wrapping_sub(lo) as u64,
        None if from.is_none() => return BooleanBuffer::new_set(values.len()),
        // `t - lo <= MAX - lo` for every t: shift the bounds by one so `<` holds for `MAX` too.
        None => return !&in_range_bits(values, None, Some(lo)),
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { below_avx2(values, lo, span) };
    }
    below(values, lo, span)
}

/// Whether `t - lo < span` (unsigned), 64 values a word.
#[inline(always)]
fn below(values: &[i64], lo: i64, span: u64) -> BooleanBuffer {
    let test = |v: i64| ((v.wrapping_sub(lo) as u64) < span) as u64;
    let chunks = values.chunks_exact(64);
    let tail = chunks.remainder();
    let mut words: Vec<u64> = Vec::with_capacity(values.len().div_ceil(64));
    for c in chunks {
        // A fixed-length chunk: the compiler unrolls it into vector comparisons and bit masks.
        let c: &[i64; 64] = c.try_into().expect("64 values");
        let mut w = 0u64;
        for (j, v) in c.iter().enumerate() {
            w |= test(*v) << j;
        }
        words.push(w);
    }
    if !tail.is_empty() {
        words.push(tail.iter().enumerate().fold(0u64, |w, (j, v)| w | (test(*v) << j)));
    }
    BooleanBuffer::new(words.into(), 0, values.len())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn below_avx2(values: &[i64], lo: i64, span: u64) -> BooleanBuffer {
    below(values, lo, span)
}

/// The first `rows` rows of group `g` (every column, or only `columns`), keeping those where
/// `mask` (one entry per row) is true; `keep` keeps the decoded rows for the next query (see
/// [`Mapped::read`]).
pub fn read_masked<'a>(
    seg: &'a Mapped<'_>,
    g: &'a Group,
    rows: usize,
    mask: Option<&'a BooleanArray>,
    (columns, keep): (Option<&'a [&'a str]>, bool),
) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
    let mut offset = 0;
    seg.read(g, (0, rows), columns, keep).map(move |batch| {
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

    /// The schema batches are aligned to.
    pub fn target(&self) -> &SchemaRef {
        &self.target
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bits_match_two_comparisons() {
        let mut seed = 17u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed as i64
        };
        let mut values: Vec<i64> = (0..1000).map(|_| next() % 5_000).collect();
        values.extend([i64::MIN, i64::MAX, 0, -1, 4_999, -5_000]);
        let bounds = [None, Some(i64::MIN), Some(-2_500), Some(0), Some(1_234), Some(i64::MAX)];
        for from in bounds {
            for to in bounds {
                let bits = in_range_bits(&values, from, to);
                assert_eq!(bits.len(), values.len());
                for (i, v) in values.iter().enumerate() {
                    let expected = from.is_none_or(|f| *v >= f) && to.is_none_or(|t| *v < t);
                    assert_eq!(bits.value(i), expected, "{v} in [{from:?}, {to:?})");
                }
            }
        }
    }

    /// `cargo test --release --lib range_bits_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn range_bits_speed() {
        let values: Vec<i64> = (0..200_000i64).map(|i| (i * 7_919_000) % 86_400_000_000).collect();
        let t = std::time::Instant::now();
        let n: usize =
            (0..100).map(|_| in_range_bits(&values, Some(3_600_000_000), Some(50_000_000_000)).count_set_bits()).sum();
        eprintln!("{:?} for 200 k values ({} in range)", t.elapsed() / 100, n / 100);
    }
}
