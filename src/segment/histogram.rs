//! A taxi segment's distances counted by value: the distinct values in descending order with
//! running counts. Trip distances are recorded to the hundredth of a mile, so a 3 M-row month has
//! about ten thousand distinct values: a percentile over months searches a few kilobytes per
//! month instead of every row's key (see `queries::quantile`).

use std::collections::HashMap;

/// Distinct distances (no NaN, `-0.0` counted as `0.0`) and how many rows have each.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Distinct values, descending.
    values: Vec<f64>,
    /// `cumulative[i]`: rows whose distance is one of `values[..=i]` (that is, `>= values[i]`).
    cumulative: Vec<u64>,
}

/// Counts distances as they are written (the segment builder) or read back (a reopened segment).
#[derive(Debug, Default)]
pub struct Counter(HashMap<u64, u64>);

impl Counter {
    pub fn add(&mut self, distance: f64) {
        if !distance.is_nan() {
            *self.0.entry((distance + 0.0).to_bits()).or_default() += 1;
        }
    }

    pub fn finish(self) -> Histogram {
        let mut counted: Vec<(f64, u64)> = self.0.into_iter().map(|(bits, n)| (f64::from_bits(bits), n)).collect();
        counted.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut total = 0;
        let cumulative = counted
            .iter()
            .map(|(_, n)| {
                total += n;
                total
            })
            .collect();
        Histogram { values: counted.into_iter().map(|(v, _)| v).collect(), cumulative }
    }
}

impl Histogram {
    pub fn of(distances: &[f64]) -> Self {
        let mut counter = Counter::default();
        distances.iter().for_each(|d| counter.add(*d));
        counter.finish()
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn cumulative(&self) -> &[u64] {
        &self.cumulative
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.values.len() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_values_descending_without_nan() {
        let h = Histogram::of(&[1.5, f64::NAN, 0.0, 2.25, 1.5, -0.0, 1.5]);
        assert_eq!(h.values(), &[2.25, 1.5, 0.0]);
        assert_eq!(h.cumulative(), &[1, 4, 6]);
        assert!(Histogram::of(&[f64::NAN]).values().is_empty());
    }
}
