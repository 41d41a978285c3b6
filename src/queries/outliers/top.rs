//! Top-k outliers by a column the keys and times give (`avg_speed_mph`, `duration_hours`,
//! `trip_distance`): each segment's candidates are classified and ranked without decoding their
//! rows, and only the row groups holding its best `k` are read. A year's top 10 by speed reads a
//! few dozen row groups instead of every outlier row.

use std::{cmp::Ordering, sync::Arc};

use arrow::{
    array::{Float64Array, RecordBatch, StringArray},
    compute::concat_batches,
};

use super::{classify, Scope};
use crate::{
    error::Result,
    queries::read::Aligner,
    segment::{Cover, Mapped},
};

/// The largest `limit` ranked this way (each segment's best `limit` rows are read whole).
pub const MAX_K: usize = 10_000;

/// The order columns ranked from keys and times.
pub fn ranks(col: &str) -> bool {
    matches!(col, "avg_speed_mph" | "duration_hours" | "trip_distance")
}

/// One outlier row, located and ranked.
struct Candidate {
    group: usize,
    row: usize,
    key: Option<f64>,
    hours: Option<f64>,
    speed: Option<f64>,
    reason: &'static str,
}

/// Ascending or descending by `key`, NULLs last either way (as `order_by` sorts).
fn compare(a: Option<f64>, b: Option<f64>, desc: bool) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) if desc => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The best `k` outliers in scope of one segment by `col`, as output rows (the dataset's
/// columns aligned by `aligner`, then the computed ones), best first; None when there are none.
pub fn segment_top(
    seg: &Mapped<'_>,
    s: &Scope,
    default_rule: bool,
    aligner: &Aligner,
    (col, desc, k): (&str, bool, usize),
) -> Result<Option<RecordBatch>> {
    let mut found = Vec::new();
    for (gi, g) in seg.meeting(s.from, s.to) {
        let cover = g.cover(s.from, s.to);
        if cover == Cover::None || (default_rule && !g.outlier) {
            continue;
        }
        let n = super::prefix(seg, g, s);
        let Some((mask, computed)) = classify(seg, g, cover == Cover::Partial, n, s)? else { continue };
        let distances = seg.distances(g, n);
        for (j, row) in mask.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i).enumerate() {
            let (hours, speed) = (computed.hours[j], computed.speed[j]);
            let key = match col {
                "avg_speed_mph" => speed,
                "duration_hours" => hours,
                _ => Some(distances[row]).filter(|d| !d.is_nan()),
            };
            found.push(Candidate { group: gi, row, key, hours, speed, reason: computed.reason[j] });
        }
        if found.len() > 2 * k.max(1024) {
            cut(&mut found, desc, k);
        }
    }
    cut(&mut found, desc, k);
    if found.is_empty() {
        return Ok(None);
    }
    let mut rows = Vec::with_capacity(found.len());
    for c in &found {
        for batch in seg.read(&seg.groups()[c.group], (c.row, c.row + 1), None, true) {
            rows.push(aligner.apply(&batch?)?);
        }
    }
    let rows = concat_batches(aligner.target(), &rows)?;
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(Float64Array::from(found.iter().map(|c| c.hours).collect::<Vec<_>>())));
    columns.push(Arc::new(Float64Array::from(found.iter().map(|c| c.speed).collect::<Vec<_>>())));
    columns.push(Arc::new(StringArray::from(found.iter().map(|c| c.reason).collect::<Vec<_>>())));
    Ok(Some(RecordBatch::try_new(super::output_schema_of(aligner.target()), columns)?))
}

/// Keeps the best `k` of `found`, in order.
fn cut(found: &mut Vec<Candidate>, desc: bool, k: usize) {
    if found.len() > k && k > 0 {
        found.select_nth_unstable_by(k - 1, |a, b| compare(a.key, b.key, desc));
    }
    found.truncate(k);
    found.sort_by(|a, b| compare(a.key, b.key, desc));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_sort_last_both_ways() {
        let mut v = vec![Some(1.0), None, Some(3.0), Some(2.0)];
        v.sort_by(|a, b| compare(*a, *b, true));
        assert_eq!(v, vec![Some(3.0), Some(2.0), Some(1.0), None]);
        v.sort_by(|a, b| compare(*a, *b, false));
        assert_eq!(v, vec![Some(1.0), Some(2.0), Some(3.0), None]);
    }
}
