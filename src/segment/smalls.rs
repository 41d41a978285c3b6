//! A segment's small groups (fewer than [`LARGE_ROWS`] rows: stray days from other months,
//! quiet hours, a day's few outliers) as one run: their distances merged in descending order,
//! each with its group. A percentile whose range takes some of them and leaves others masks
//! this run by group instead of copying and sorting their distances on every query (a year's
//! range over files with thousands of stray hours spent a third of its time doing that).

use arrow::buffer::BooleanBuffer;

use super::{Group, LARGE_ROWS};

#[derive(Debug, Default)]
pub struct Smalls {
    /// The distances (no NULL) of every small group, descending.
    distances: Vec<f64>,
    /// The group of each distance.
    groups: Vec<u32>,
}

impl Smalls {
    /// From the groups and the segment's distance keys, `keys(first, end)` reading the keys of
    /// rows `[first, end)` (each group's are sorted descending, those with a distance first).
    pub fn of(groups: &[Group], mut keys: impl FnMut(u64, u64) -> Vec<f64>) -> Self {
        let mut pairs: Vec<(f64, u32)> = Vec::new();
        for (gi, g) in groups.iter().enumerate().filter(|(_, g)| g.rows < LARGE_ROWS) {
            let (a, b) = g.segment_rows(0, g.with_distance as usize);
            pairs.extend(keys(a, b).into_iter().map(|d| (d, gi as u32)));
        }
        pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let (distances, groups) = pairs.into_iter().unzip();
        Smalls { distances, groups }
    }

    /// Memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.distances.len() * 12 + 64
    }

    /// The distances, descending.
    pub fn distances(&self) -> &[f64] {
        &self.distances
    }

    /// A bit per distance: set when `wanted` says its group is.
    pub fn mask(&self, wanted: impl Fn(usize) -> bool) -> BooleanBuffer {
        BooleanBuffer::collect_bool(self.groups.len(), |i| wanted(self.groups[i] as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(start: u64, rows: u64, with_distance: u64) -> Group {
        Group { hour: Some(0), hours: 1, top: false, outlier: false, start, rows, with_distance }
    }

    #[test]
    fn small_groups_merge_descending_and_mask_by_group() {
        // Three groups: small, large (skipped), small with a NULL distance last.
        let mut keys = vec![9.0, 4.0, 1.0];
        keys.extend((0..LARGE_ROWS).map(|i| i as f64));
        keys.extend([7.0, 3.0, f64::NAN]);
        let large = LARGE_ROWS;
        let groups = [group(0, 3, 3), group(3, large, large), group(3 + large, 3, 2)];
        let s = Smalls::of(&groups, |a, b| keys[a as usize..b as usize].to_vec());
        assert_eq!(s.distances(), &[9.0, 7.0, 4.0, 3.0, 1.0]);
        let mask = s.mask(|g| g == 2);
        let kept: Vec<f64> = mask.set_indices().map(|i| s.distances()[i]).collect();
        assert_eq!(kept, vec![7.0, 3.0]);
    }
}
