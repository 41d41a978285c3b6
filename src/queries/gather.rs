//! Gathering an answer's rows from many short spans of decoded row groups into one batch, copied
//! once: a one-day `p90` is the prefixes of about fifty hour groups, a few hundred rows each.
//! Slicing each into a batch of its own and merging those cost more than the copy itself
//! (README Design, "Under load, profiled").

use arrow::{
    array::{make_array, ArrayRef, MutableArrayData},
    record_batch::{RecordBatch, RecordBatchOptions},
};

use crate::error::Result;

/// Spans of rows from batches of one schema, waiting to be copied together.
#[derive(Default)]
pub struct Gather {
    /// The batches spans come from, each once (a decoded row group holds many groups' prefixes).
    sources: Vec<RecordBatch>,
    /// (source, first row, rows).
    spans: Vec<(usize, usize, usize)>,
    rows: usize,
}

impl Gather {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds rows `[from, from + rows)` of `batch`; `same` says it is the batch of the last span
    /// (so it is not held twice).
    pub fn add(&mut self, batch: &RecordBatch, from: usize, rows: usize, same: bool) {
        if rows == 0 {
            return;
        }
        if !same || self.sources.is_empty() {
            self.sources.push(batch.clone());
        }
        self.spans.push((self.sources.len() - 1, from, rows));
        self.rows += rows;
    }

    /// The rows added so far, as one batch, and an empty gather; None when nothing was added.
    pub fn take(&mut self) -> Result<Option<RecordBatch>> {
        let Gather { sources, spans, rows } = std::mem::take(self);
        let Some(first) = sources.first() else { return Ok(None) };
        if let ([(0, from, n)], 1) = (spans.as_slice(), sources.len()) {
            return Ok(Some(first.slice(*from, *n)));
        }
        let columns: Vec<ArrayRef> = (0..first.num_columns())
            .map(|c| {
                let data: Vec<_> = sources.iter().map(|b| b.column(c).to_data()).collect();
                let mut out = MutableArrayData::new(data.iter().collect(), false, rows);
                for (s, from, n) in &spans {
                    out.extend(*s, *from, from + n);
                }
                make_array(out.freeze())
            })
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(Some(RecordBatch::try_new_with_options(first.schema(), columns, &options)?))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{Array, Float64Array, Int64Array, StringArray},
        compute::concat_batches,
        datatypes::{DataType, Field, Schema},
    };

    use super::*;

    fn batch(seed: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Float64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let a: Int64Array = (0..n).map(|i| (i % 3 != 0).then_some(seed * 1000 + i)).collect();
        let b: Float64Array = (0..n).map(|i| (seed * 1000 + i) as f64 / 4.0).collect();
        let s: StringArray = (0..n).map(|i| (i % 5 != 1).then(|| format!("{seed}-{i}"))).collect();
        RecordBatch::try_new(schema, vec![Arc::new(a), Arc::new(b), Arc::new(s)]).expect("batch")
    }

    #[test]
    fn gathered_spans_equal_their_slices_concatenated() {
        let (x, y) = (batch(1, 100), batch(2, 70));
        let spans = [(&x, 3, 10, false), (&x, 50, 1, true), (&y, 0, 33, false), (&y, 33, 0, true), (&x, 97, 3, false)];
        let mut g = Gather::default();
        for (b, from, n, same) in spans {
            g.add(b, from, n, same);
        }
        assert_eq!(g.rows(), 47);
        let got = g.take().expect("gather").expect("rows");
        let slices: Vec<RecordBatch> = spans.iter().map(|(b, from, n, _)| b.slice(*from, *n)).collect();
        let expected = concat_batches(&x.schema(), &slices).expect("concat");
        assert_eq!(got, expected);
        assert!(got.column(0).null_count() > 0 && got.column(2).null_count() > 0);
        assert_eq!(g.rows(), 0);
        assert!(g.take().expect("empty").is_none());
    }

    #[test]
    fn one_span_is_a_slice() {
        let x = batch(3, 40);
        let mut g = Gather::default();
        g.add(&x, 5, 20, false);
        assert_eq!(g.take().expect("gather"), Some(x.slice(5, 20)));
    }
}
