//! DuckDB's `quantile_cont` over the union of sorted runs, found by bisection over values:
//! nothing is copied or sorted. A run is a group's distances (each row once), a segment's
//! [`Histogram`] (each distinct value with its count), or a group's distances to take away from a
//! histogram that counted them (groups outside the range). A year's percentile then searches 12
//! histograms and a few edge groups instead of thousands of hour groups' keys.

use arrow::buffer::BooleanBuffer;

use crate::segment::Histogram;

/// A bit mask with the count of set bits before every 64-bit word, so that "how many of the
/// first `i` bits are set" is one table look-up and one popcount. A partly covered group's run is
/// its sorted distances masked by whether each row is in range: nothing is filtered or copied.
#[derive(Debug)]
pub struct Ranks {
    words: Vec<u64>,
    before: Vec<u64>,
}

impl Ranks {
    pub fn new(bits: &BooleanBuffer) -> Self {
        let chunks = bits.bit_chunks();
        let words: Vec<u64> = chunks.iter().chain(std::iter::once(chunks.remainder_bits())).collect();
        let before = words
            .iter()
            .scan(0u64, |n, w| {
                let b = *n;
                *n += w.count_ones() as u64;
                Some(b)
            })
            .collect();
        Ranks { words, before }
    }

    /// Set bits among the first `i`.
    pub fn count(&self, i: usize) -> u64 {
        let (w, b) = (i / 64, i % 64);
        match self.words.get(w) {
            Some(word) => self.before[w] + (word & ((1u64 << b) - 1)).count_ones() as u64,
            None => self.before.last().map_or(0, |n| n + self.words[self.words.len() - 1].count_ones() as u64),
        }
    }
}

/// Values in descending order without NaN, each counted once or by a histogram's counts, added
/// to or taken from the union.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    values: &'a [f64],
    /// Running counts (see [`Histogram::cumulative`]); None: each value counts once.
    cumulative: Option<&'a [u64]>,
    /// Only the values whose bit is set count (see [`Ranks`]).
    mask: Option<&'a Ranks>,
    minus: bool,
}

impl<'a> Run<'a> {
    pub fn plain(values: &'a [f64]) -> Self {
        Run { values, cumulative: None, mask: None, minus: false }
    }

    /// The values whose bit in `mask` is set (the values' order is kept, so they stay sorted).
    pub fn masked(values: &'a [f64], mask: &'a Ranks) -> Self {
        Run { values, cumulative: None, mask: Some(mask), minus: false }
    }

    pub fn counted(h: &'a Histogram) -> Self {
        Run { values: h.values(), cumulative: Some(h.cumulative()), mask: None, minus: false }
    }

    /// Values already counted by another run (a histogram) that are not in the union.
    pub fn minus(values: &'a [f64]) -> Self {
        Run { values, cumulative: None, mask: None, minus: true }
    }

    /// This run taken from the union (as [`Run::minus`]) when `minus`.
    pub fn taken(self, minus: bool) -> Self {
        Run { minus, ..self }
    }

    /// Elements greater than `v`.
    fn above(&self, v: f64) -> u64 {
        self.counted_before(self.values.partition_point(|x| *x > v))
    }

    /// How many of `values[window]` are greater than `v`, plus the window's start: the index of
    /// the first value not above `v`, when it is known to lie in `window`.
    fn index_above(&self, v: f64, (a, b): (usize, usize)) -> usize {
        a + self.values[a..b].partition_point(|x| *x > v)
    }

    /// Elements among the first `i` values.
    fn counted_before(&self, i: usize) -> u64 {
        if let Some(m) = self.mask {
            return m.count(i);
        }
        match self.cumulative {
            None => i as u64,
            Some(_) if i == 0 => 0,
            Some(c) => c[i - 1],
        }
    }

    fn len(&self) -> u64 {
        if let Some(m) = self.mask {
            return m.count(self.values.len());
        }
        match self.cumulative {
            None => self.values.len() as u64,
            Some(c) => c.last().copied().unwrap_or(0),
        }
    }

    fn signed(&self, n: u64) -> i64 {
        if self.minus {
            -(n as i64)
        } else {
            n as i64
        }
    }
}

/// Elements of the union.
pub fn count(runs: &[Run]) -> u64 {
    runs.iter().map(|r| r.signed(r.len())).sum::<i64>().max(0) as u64
}

/// Elements of the union greater than `v`.
pub fn count_above(runs: &[Run], v: f64) -> u64 {
    runs.iter().map(|r| r.signed(r.above(v))).sum::<i64>().max(0) as u64
}

/// DuckDB's `quantile_cont` (linear interpolation between closest ranks) of the union of `runs`.
pub fn quantile_cont(runs: &[Run], q: f64) -> Option<f64> {
    let n = count(runs);
    if n == 0 {
        return None;
    }
    let pos = q * (n - 1) as f64;
    let lo_rank = pos.floor() as u64;
    let lo = nth_smallest(runs, lo_rank);
    if pos == lo_rank as f64 {
        return Some(lo);
    }
    let hi = next_smallest(runs, lo_rank + 1, lo);
    Some(lo + (hi - lo) * (pos - lo_rank as f64))
}

/// Sorts values in descending order (as a run), by their order keys: integer sorting is several
/// times faster than comparing doubles.
#[cfg(test)]
pub fn sort_descending(values: &mut [f64]) {
    let mut keys: Vec<u64> = values.iter().map(|v| !order_key(*v)).collect();
    keys.sort_unstable();
    for (v, k) in values.iter_mut().zip(keys) {
        *v = from_key(!k);
    }
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
/// `rank` elements `<= v`, found by bisection over the order keys (the union's values lie within
/// those of the runs added).
///
/// Each run keeps the window of its values where the bisection's bounds fall, so every step
/// searches a narrower slice, and a run whose window is empty is settled: its count no longer
/// changes. A day of hour groups is a hundred runs, most of them settled after a few steps.
fn nth_smallest(runs: &[Run], rank: u64) -> f64 {
    let n = count(runs);
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for r in runs.iter().filter(|r| !r.minus && !r.values.is_empty()) {
        hi = hi.max(order_key(r.values[0]));
        lo = lo.min(order_key(r.values[r.values.len() - 1]));
    }
    // Per run: the first value not above `hi` and the first not above `lo` bound every search,
    // so the values between the bounds are `values[window]`.
    let mut windows: Vec<(usize, usize)> = runs.iter().map(|r| (0, r.values.len())).collect();
    let (mut active, mut settled): (Vec<(usize, usize)>, i64) = (Vec::with_capacity(runs.len()), 0);
    for (i, r) in runs.iter().enumerate() {
        match r.values.is_empty() {
            true => settled += r.signed(r.counted_before(0)),
            false => active.push((i, 0)),
        }
    }
    // Whether more than `rank` elements are <= the value of key `k` (each active run's index
    // of it goes to `active`).
    let reaches = |k: u64, windows: &[(usize, usize)], active: &mut [(usize, usize)], settled: i64| {
        let v = from_key(k);
        let mut above = settled;
        for (i, at) in active.iter_mut() {
            let r = &runs[*i];
            *at = r.index_above(v, windows[*i]);
            above += r.signed(r.counted_before(*at));
        }
        n - (above.max(0) as u64) > rank
    };
    let mut steps = 0;
    while lo < hi {
        // Few values left between the bounds: the answer is one of them (the count changes only
        // at values of the runs added), so bisect over those instead of over the key space.
        let left: usize =
            active.iter().filter(|(i, _)| !runs[*i].minus).map(|(i, _)| windows[*i].1 - windows[*i].0).sum();
        if left <= FEW_LEFT {
            let mut keys: Vec<u64> = active
                .iter()
                .filter(|(i, _)| !runs[*i].minus)
                .flat_map(|(i, _)| runs[*i].values[windows[*i].0..windows[*i].1].iter().map(|v| order_key(*v)))
                .filter(|k| (lo..=hi).contains(k))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let first = keys.partition_point(|k| !reaches(*k, &windows, &mut active, settled));
            return from_key(keys.get(first).copied().unwrap_or(hi));
        }
        let mid = match steps < PIVOT_STEPS {
            true => pivot(runs, &active, &windows).filter(|k| (lo..hi).contains(k)),
            false => None,
        }
        .unwrap_or(lo + (hi - lo) / 2);
        steps += 1;
        let down = reaches(mid, &windows, &mut active, settled);
        match down {
            true => hi = mid,
            false => lo = mid + 1,
        }
        active.retain(|(i, at)| {
            let w = &mut windows[*i];
            match down {
                true => w.0 = *at,
                false => w.1 = *at,
            }
            let open = w.0 < w.1;
            if !open {
                settled += runs[*i].signed(runs[*i].counted_before(w.0));
            }
            open
        });
    }
    from_key(lo)
}

/// The key of the middle value of the widest window among the runs added: a bisection step there
/// halves that window at least, and runs alike (months of one city's trips) nearly as much. The
/// middle of the key range instead halves the doubles' bit space: ~50 steps over distances,
/// against ~15 by values.
fn pivot(runs: &[Run], active: &[(usize, usize)], windows: &[(usize, usize)]) -> Option<u64> {
    let (i, _) = active.iter().filter(|(i, _)| !runs[*i].minus).max_by_key(|(i, _)| windows[*i].1 - windows[*i].0)?;
    let (a, b) = windows[*i];
    Some(order_key(runs[*i].values[a + (b - a) / 2]))
}

/// Bisection steps taken at values (see [`pivot`]) before the rest halve the key range, which
/// bounds the steps whatever the runs.
const PIVOT_STEPS: usize = 64;

/// The value of 0-based rank `rank`, knowing that of rank `rank - 1` is `below`: `below` again
/// when more than `rank` elements are `<=` it, else the next value of the union above it.
fn next_smallest(runs: &[Run], rank: u64, below: f64) -> f64 {
    let n = count(runs);
    let mut v = below;
    while n - count_above(runs, v) <= rank {
        // The least value of the runs added above `v` (it may be masked or taken away: then the
        // count stays, and the next one is tried).
        let next = runs
            .iter()
            .filter(|r| !r.minus)
            .filter_map(|r| r.values[..r.values.partition_point(|x| *x > v)].last().copied())
            .min_by(f64::total_cmp);
        match next {
            Some(x) => v = x,
            None => break,
        }
    }
    v
}

/// How few values between the bisection's bounds end it (see [`nth_smallest`]).
const FEW_LEFT: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    }

    fn runs(seed: u64) -> Vec<Vec<f64>> {
        sized_runs(seed, 7, 37)
    }

    /// `count` sorted runs, run `i` of `i * step + 1` values, and two special ones.
    fn sized_runs(seed: u64, count: usize, step: usize) -> Vec<Vec<f64>> {
        let mut seed = seed;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) % 10_000) as f64 / 100.0 - 20.0
        };
        let mut runs: Vec<Vec<f64>> = (0..count).map(|i| (0..(i * step + 1)).map(|_| next()).collect()).collect();
        runs.push(vec![0.0, -0.0, 0.0]);
        runs.push(Vec::new());
        for r in &mut runs {
            r.sort_by(|a, b| b.total_cmp(a));
        }
        runs
    }

    #[test]
    fn quantile_over_runs_matches_sorting() {
        let runs = runs(7);
        let all: Vec<f64> = runs.iter().flatten().copied().collect();
        let plain: Vec<Run> = runs.iter().map(|r| Run::plain(r)).collect();
        for q in [0.0001, 0.1, 0.5, 0.9, 0.9999] {
            assert_eq!(quantile_cont(&plain, q), Some(sorted_quantile(all.clone(), q)), "q={q}");
        }
        assert_eq!(quantile_cont(&[], 0.9), None);
        assert_eq!(quantile_cont(&[Run::plain(&[3.5])], 0.9), Some(3.5));
    }

    /// A day of hour groups is a hundred runs of thousands of values: the bisection narrows each
    /// run's window over many steps before few values are left.
    #[test]
    fn quantile_over_many_long_runs_matches_sorting() {
        let runs = sized_runs(31, 100, 53);
        let all: Vec<f64> = runs.iter().flatten().copied().collect();
        let histogram = Histogram::of(&all);
        let mask: Vec<bool> = (0..runs[99].len()).map(|i| i % 5 != 1).collect();
        let ranks = Ranks::new(&BooleanBuffer::from(mask.clone()));
        // Everything but run 40, and run 99 masked instead of whole.
        let mut mixed = vec![Run::counted(&histogram), Run::minus(&runs[40]), Run::minus(&runs[99])];
        mixed.push(Run::masked(&runs[99], &ranks));
        let kept: Vec<f64> = runs
            .iter()
            .enumerate()
            .filter(|(i, _)| ![40, 99].contains(i))
            .flat_map(|(_, r)| r.clone())
            .chain(runs[99].iter().zip(&mask).filter(|(_, m)| **m).map(|(v, _)| *v))
            .collect();
        let plain: Vec<Run> = runs.iter().map(|r| Run::plain(r)).collect();
        for q in [0.0001, 0.1, 0.5, 0.75, 0.9, 0.999, 0.9999] {
            assert_eq!(quantile_cont(&plain, q), Some(sorted_quantile(all.clone(), q)), "q={q}");
            assert_eq!(quantile_cont(&mixed, q), Some(sorted_quantile(kept.clone(), q)), "q={q}");
        }
    }

    #[test]
    fn sorting_by_order_keys_sorts_descending() {
        let mut v = vec![1.5, -3.0, 0.0, 80.25, -0.5, 2.0];
        sort_descending(&mut v);
        assert_eq!(v, vec![80.25, 2.0, 1.5, 0.0, -0.5, -3.0]);
    }

    #[test]
    fn a_histogram_less_some_runs_is_the_union_of_the_others() {
        let runs = runs(11);
        let all: Vec<f64> = runs.iter().flatten().copied().collect();
        let histogram = Histogram::of(&all);
        // Runs 2 and 5 are outside the range: taken away from the histogram of everything.
        let kept: Vec<f64> =
            runs.iter().enumerate().filter(|(i, _)| ![2, 5].contains(i)).flat_map(|(_, r)| r.clone()).collect();
        let mut with_histogram = vec![Run::counted(&histogram), Run::minus(&runs[2]), Run::minus(&runs[5])];
        for q in [0.0001, 0.25, 0.5, 0.9, 0.9999] {
            assert_eq!(quantile_cont(&with_histogram, q), Some(sorted_quantile(kept.clone(), q)), "q={q}");
        }
        for v in [-20.0, 0.0, 13.37, 80.0] {
            assert_eq!(count_above(&with_histogram, v), kept.iter().filter(|x| **x > v).count() as u64);
        }
        assert_eq!(count(&with_histogram), kept.len() as u64);
        with_histogram.push(Run::plain(&runs[2]));
        let kept_and_2: Vec<f64> = kept.iter().chain(&runs[2]).copied().collect();
        assert_eq!(quantile_cont(&with_histogram, 0.9), Some(sorted_quantile(kept_and_2, 0.9)));
    }

    #[test]
    fn a_masked_run_counts_only_its_set_values() {
        let runs = runs(23);
        let values = &runs[6]; // 223 values: more than three words of bits
        let mask: Vec<bool> = (0..values.len()).map(|i| i % 3 != 0 && i % 7 != 2).collect();
        let kept: Vec<f64> = values.iter().zip(&mask).filter(|(_, m)| **m).map(|(v, _)| *v).collect();
        let ranks = Ranks::new(&BooleanBuffer::from(mask.clone()));
        for i in 0..=values.len() {
            assert_eq!(ranks.count(i), mask[..i].iter().filter(|m| **m).count() as u64);
        }
        let masked = [Run::masked(values, &ranks), Run::plain(&runs[3])];
        let union: Vec<f64> = kept.iter().chain(&runs[3]).copied().collect();
        for q in [0.0001, 0.5, 0.9, 0.9999] {
            assert_eq!(quantile_cont(&masked, q), Some(sorted_quantile(union.clone(), q)), "q={q}");
        }
        assert_eq!(count(&masked), union.len() as u64);
        let none = Ranks::new(&BooleanBuffer::new_unset(values.len()));
        assert_eq!(quantile_cont(&[Run::masked(values, &none)], 0.9), None);
    }
}
