//! Reading segments for the built-in tickets: ranges in microseconds, aligning a segment's batches
//! to the dataset's current schema.

use std::sync::Arc;

use arrow::{
    array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray, TimestampMicrosecondArray},
    buffer::BooleanBuffer,
    compute::{
        and, cast, concat, filter_record_batch,
        kernels::cmp::{gt_eq, lt},
        prep_null_mask_filter,
    },
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
/// not), computed with Arrow's comparison kernels over the decoded pickups.
pub fn pickup_mask(seg: &Mapped<'_>, g: &Group, n: usize, from: Option<i64>, to: Option<i64>) -> Result<BooleanArray> {
    let mut parts = Vec::new();
    for us in seg.pickup_arrays(g, n)? {
        let inside = match (from, to) {
            (Some(f), Some(t)) => and(
                &gt_eq(&us, &TimestampMicrosecondArray::new_scalar(f))?,
                &lt(&us, &TimestampMicrosecondArray::new_scalar(t))?,
            )?,
            (Some(f), None) => gt_eq(&us, &TimestampMicrosecondArray::new_scalar(f))?,
            (None, Some(t)) => lt(&us, &TimestampMicrosecondArray::new_scalar(t))?,
            (None, None) => BooleanArray::new(BooleanBuffer::new_set(us.len()), us.nulls().cloned()),
        };
        // NULL pickups compare as NULL: not in range.
        parts.push(if inside.nulls().is_some() { prep_null_mask_filter(&inside) } else { inside });
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|p| p as &dyn Array).collect();
    match refs.len() {
        0 => Ok(BooleanArray::from(Vec::<bool>::new())),
        _ => Ok(concat(&refs)?.as_boolean().clone()),
    }
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
