//! Segments: the one local copy of each ingested file, read by both SQL and the built-in tickets.
//!
//! A segment is written once at ingest, under a temporary name, and renamed into place:
//!
//! * `<name>.parquet` — the file's rows as the dataset names them, LZ4-compressed. DuckDB reads
//!   these files for SQL (the dataset's view lists them). For taxi-shaped files the rows of each
//!   pickup day are in two *tiers*: the top one holds the day's outliers (by the default physics
//!   rule) and the trips longer than the file's 75th percentile of `trip_distance`, the other the
//!   rest. The top tier starts with the day's outliers, one group; the other rows of each tier
//!   are grouped by pickup hour. Each group is sorted by `trip_distance` descending (NULLs last).
//!   So a range that starts and ends on the hour covers whole hour groups and filters no row
//!   (only the outliers of the days it cuts are masked), and the trips above a
//!   percentile of a day or more (almost always above the file's 75th) are prefixes of top-tier
//!   groups, which sit together in a quarter of the day's row groups: those are what the tickets
//!   decode and keep. Row groups hold at most [`CHUNK_ROWS`] rows; a (day, tier) run of at least
//!   [`SHARED_ROWS`] rows ends its row group, smaller ones (stray days) share a row group with
//!   the runs after them, since every column chunk read sets up its own decompressor. The group
//!   index rides in the footer's key-value metadata.
//! * `<name>.keys` (taxi files only) — every row's `trip_distance` as a little-endian f64 (NULL =
//!   NaN), in the same order: mapped, never decoded.
//!
//! So the trips above a threshold in an hour are a *prefix* of that hour's groups, the default
//! outliers are whole groups, and a threshold needs only the mapped distances of the range. The
//! tickets decode only the row groups they return (recently decoded ones are kept, up to
//! [`DECODED_CACHE_BYTES`]); pickup and dropoff times are decoded on their own, for the groups a
//! range cuts through and for custom physics rules.
//! Segments are immutable; a retired segment is removed when the last query holding it ends.
//! Which segments stay on local disk is the [`Tier`]'s business.

mod build;
mod histogram;
mod smalls;
mod tier;

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, LazyLock, OnceLock,
    },
};

use arrow::{
    array::{Array, RecordBatch},
    buffer::{Buffer, ScalarBuffer},
    datatypes::SchemaRef,
};
use parquet::arrow::{
    arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder},
    ProjectionMask,
};
use serde::{Deserialize, Serialize};

pub use build::{Background, Builder, OUTLIER_COLUMN, TOP_COLUMN};
pub use histogram::Histogram;
pub use smalls::Smalls;
pub use tier::{Pinned, Rebuild, Slot, Tier, Usage};

use crate::error::{Error, Result};

/// Rows per row group inside a group (the last row group of a group may be shorter).
pub const CHUNK_ROWS: usize = 12288;

/// Most row groups a scan decodes as one batch (see [`Mapped::scan_rows`]).
const MAX_UNIT_GROUPS: usize = 64;

/// Groups of fewer rows share their row group with the groups after them.
pub const SHARED_ROWS: u64 = 1024;
/// Microseconds per day.
pub const DAY_US: i64 = 86_400_000_000;
/// Microseconds per hour.
pub const HOUR_US: i64 = 3_600_000_000;
const HOURS_A_DAY: i64 = DAY_US / HOUR_US;
/// Decoded row groups kept for the next query, by their Arrow memory size, unless
/// [`set_decoded_cache_bytes`] says otherwise.
pub const DECODED_CACHE_BYTES: u64 = 256 << 20;
static DECODED_CAPACITY: OnceLock<u64> = OnceLock::new();

/// Sizes the cache of decoded row groups; only before the first segment is read.
pub fn set_decoded_cache_bytes(bytes: u64) {
    let _ = DECODED_CAPACITY.set(bytes);
}

/// The size of the cache of decoded row groups.
pub fn decoded_cache_bytes() -> u64 {
    *DECODED_CAPACITY.get_or_init(|| DECODED_CACHE_BYTES)
}
/// Footer metadata key of the group index.
const INDEX_KEY: &str = "bridge.segment.groups";
const PICKUP: &str = "tpep_pickup_datetime";
const DROPOFF: &str = "tpep_dropoff_datetime";
const DISTANCE: &str = "trip_distance";

/// Footers of recently read segments, parsed, by segment id. Only these are kept in memory: a
/// footer with per-row-group statistics of a 3 M-row file takes about a megabyte parsed, and the
/// whole bucket has hundreds of files.
static FOOTERS: LazyLock<moka::sync::Cache<u64, ArrowReaderMetadata>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(FOOTER_CACHE_BYTES)
        .weigher(|_, m: &ArrowReaderMetadata| m.metadata().memory_size().try_into().unwrap_or(u32::MAX))
        .build()
});
/// Parsed footers kept, by their memory size.
const FOOTER_CACHE_BYTES: u64 = 64 << 20;

/// Recently decoded row groups, by (segment id, first row group, row groups, [`column_tag`]).
static DECODED: LazyLock<moka::sync::Cache<(u64, u32, u8, u8), RecordBatch>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(decoded_cache_bytes())
        .weigher(|_, b: &RecordBatch| b.get_array_memory_size().try_into().unwrap_or(u32::MAX))
        .build()
});
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Histograms of single days' distances, by (segment id, day index in [`Days`]): a range over
/// whole days of a segment it does not mostly cover counts each day with one run instead of its
/// ~50 hour groups. Built on first use (a few milliseconds a day).
/// Each segment's small groups as one run (see [`Smalls`]), by memory size: a bounded cache, not
/// a field of the segment, because months of few trips are mostly small groups.
static SMALLS: LazyLock<moka::sync::Cache<u64, Arc<Smalls>>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(SMALLS_BYTES)
        .weigher(|_, s: &Arc<Smalls>| s.bytes().try_into().unwrap_or(u32::MAX))
        .build()
});
/// Small-group runs kept, by their memory size (a 3 M-row month's is tens of kilobytes).
const SMALLS_BYTES: u64 = 4 << 20;

static DAY_HISTOGRAMS: LazyLock<moka::sync::Cache<(u64, u32), Arc<Histogram>>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(DAY_HISTOGRAM_BYTES)
        .weigher(|_, h: &Arc<Histogram>| h.bytes().try_into().unwrap_or(u32::MAX))
        .build()
});
/// Day histograms kept, by their memory size (a day's is tens of kilobytes).
const DAY_HISTOGRAM_BYTES: u64 = 32 << 20;

/// A run of rows with one pickup hour, tier and default-rule class, sorted by distance
/// descending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Hours since 1970-01-01T00:00 of the pickup (the first, for a day's outliers); None for
    /// rows without a pickup time.
    pub hour: Option<i64>,
    /// Hours the pickups span: 24 for a day's outliers, else 1.
    pub hours: u32,
    /// Whether these rows are in their day's top tier.
    pub top: bool,
    /// Whether these rows break the default physics rule.
    pub outlier: bool,
    /// First row (in the segment's row order).
    pub start: u64,
    pub rows: u64,
    /// Rows with a non-NULL distance: they come first.
    pub with_distance: u64,
}

impl Group {
    /// The pickup day (days since 1970-01-01).
    pub fn day(&self) -> Option<i64> {
        self.hour.map(|h| h.div_euclid(HOURS_A_DAY))
    }

    /// How much of this group a pickup range `[from, to)` (µs) covers.
    pub fn cover(&self, from: Option<i64>, to: Option<i64>) -> Cover {
        let Some(hour) = self.hour else {
            // NULL pickups satisfy no bound, and are in only an unbounded range.
            return if from.is_none() && to.is_none() { Cover::Full } else { Cover::None };
        };
        hours_cover((hour, hour + self.hours as i64), from, to)
    }

    /// Its rows `[lo, hi)` (clamped to the group) as rows of the segment.
    fn segment_rows(&self, lo: usize, hi: usize) -> (u64, u64) {
        (self.start + lo as u64, self.start + hi.min(self.rows as usize) as u64)
    }
}

/// How much of the hours `[first, end)` a pickup range `[from, to)` (µs) covers.
fn hours_cover((first, end): (i64, i64), from: Option<i64>, to: Option<i64>) -> Cover {
    let (lo, hi) = (first * HOUR_US, end * HOUR_US);
    let (f, t) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    if hi <= f || lo >= t {
        Cover::None
    } else if f <= lo && hi <= t {
        Cover::Full
    } else {
        Cover::Partial
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    None,
    Partial,
    Full,
}

/// Where each pickup day's groups start in a segment's group list (days ascending; the groups
/// without a pickup time last), so a range visits only the groups of the days it meets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Days {
    /// (day, index of its first group), in order.
    starts: Vec<(i64, usize)>,
    /// Index of the first group without a pickup time (the group count when none).
    timed: usize,
    groups: usize,
    /// Rows, and groups of at least [`LARGE_ROWS`] rows, before each group (and in all).
    rows_before: Vec<u64>,
    large_before: Vec<u32>,
}

/// Groups of fewer rows are counted apart by the percentile (see [`Days::large`]).
pub const LARGE_ROWS: u64 = 64;

impl Days {
    pub fn of(groups: &[Group]) -> Self {
        let mut starts: Vec<(i64, usize)> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            if let Some(day) = g.day().filter(|d| starts.last().is_none_or(|(last, _)| last != d)) {
                starts.push((day, i));
            }
        }
        let timed = groups.iter().position(|g| g.hour.is_none()).unwrap_or(groups.len());
        let (mut rows_before, mut large_before) = (vec![0u64], vec![0u32]);
        for g in groups {
            rows_before.push(rows_before[rows_before.len() - 1] + g.rows);
            large_before.push(large_before[large_before.len() - 1] + (g.rows >= LARGE_ROWS) as u32);
        }
        Days { starts, timed, groups: groups.len(), rows_before, large_before }
    }

    /// Index of the first group without a pickup time (the groups before it are the days').
    pub fn timed(&self) -> usize {
        self.timed
    }

    /// Rows of the groups `range`.
    pub fn rows(&self, range: std::ops::Range<usize>) -> u64 {
        self.rows_before[range.end] - self.rows_before[range.start]
    }

    /// Groups of at least [`LARGE_ROWS`] rows among `range`.
    pub fn large(&self, range: std::ops::Range<usize>) -> usize {
        (self.large_before[range.end] - self.large_before[range.start]) as usize
    }

    /// The groups that may hold pickups in `[from, to)` (µs): those of the days it meets, then
    /// (only for an unbounded range) those without a pickup time. Each may still be missed at
    /// the hour (see [`Group::cover`]).
    pub fn meeting(&self, from: Option<i64>, to: Option<i64>) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let first = from.map_or(0, |f| self.starts.partition_point(|(d, _)| *d < f.div_euclid(DAY_US)));
        let end =
            to.map_or(self.starts.len(), |t| self.starts.partition_point(|(d, _)| *d <= (t - 1).div_euclid(DAY_US)));
        let index = |i: usize| self.starts.get(i).map_or(self.timed, |(_, g)| *g);
        let nulls = match from.is_none() && to.is_none() {
            true => self.timed..self.groups,
            false => self.groups..self.groups,
        };
        (index(first)..index(end.max(first)), nulls)
    }

    /// The days (indexes) whose groups are exactly `groups`, a run of whole days.
    pub fn whole_days(&self, groups: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let at = |g: usize| self.starts.partition_point(|(_, first)| *first < g);
        at(groups.start)..at(groups.end)
    }

    /// The groups of day `d` (an index into the days).
    pub fn day_groups(&self, d: usize) -> std::ops::Range<usize> {
        self.starts[d].1..self.starts.get(d + 1).map_or(self.timed, |(_, first)| *first)
    }

    /// The groups that may not be wholly in `[from, to)`: all but those of the days strictly
    /// between the first and the last day it meets (those are whole, whatever their hours).
    pub fn uncovered(&self, from: Option<i64>, to: Option<i64>) -> [std::ops::Range<usize>; 2] {
        let (timed, _) = self.meeting(from, to);
        // The group after the first day met, and the first group of the last day met.
        let day_of = |g: usize| self.starts.partition_point(|(_, first)| *first <= g).saturating_sub(1);
        let next_day = |g: usize| self.starts.get(day_of(g) + 1).map_or(self.timed, |(_, first)| *first);
        if timed.is_empty() {
            return [0..self.groups, self.groups..self.groups];
        }
        let inner_from = next_day(timed.start);
        let inner_to = self.starts[day_of(timed.end - 1)].1.max(inner_from);
        [0..inner_from, inner_to..self.groups]
    }
}

/// The pickups a segment's groups span, to tell at once whether a range misses the segment,
/// covers it or cuts it (a month is a few thousand groups).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extent {
    /// The first and the end hour of the groups with a pickup time.
    hours: Option<(i64, i64)>,
    /// Some rows have no pickup time.
    nulls: bool,
}

impl Extent {
    pub fn of(groups: &[Group]) -> Self {
        let mut e = Extent::default();
        for g in groups {
            match g.hour {
                None => e.nulls = true,
                Some(h) => {
                    let (lo, hi) = e.hours.unwrap_or((h, h));
                    e.hours = Some((lo.min(h), hi.max(h + g.hours as i64)));
                }
            }
        }
        e
    }

    /// [`Cover::Full`] when every group is covered by `[from, to)`, [`Cover::None`] when none
    /// is, else [`Cover::Partial`] (some groups may still be whole or missed).
    pub fn cover(&self, from: Option<i64>, to: Option<i64>) -> Cover {
        let timed = self.hours.map(|span| hours_cover(span, from, to));
        let nulls = self.nulls.then(|| if from.is_none() && to.is_none() { Cover::Full } else { Cover::None });
        match (timed, nulls) {
            (None, None) => Cover::None,
            (Some(c), None) | (None, Some(c)) => c,
            (Some(a), Some(b)) if a == b => a,
            _ => Cover::Partial,
        }
    }
}

/// Which columns a decoded row group holds: all, or only the pickup or the dropoff times (the
/// groups a range cuts, and custom physics rules, read these alone).
fn column_tag(column: Option<&str>) -> u8 {
    match column {
        None => 0,
        Some(PICKUP) => 1,
        Some(DROPOFF) => 2,
        Some(_) => OTHER_COLUMN,
    }
}

/// The tag of a column decoded alone that is not kept (the tag would not tell columns apart).
const OTHER_COLUMN: u8 = 3;

/// Keys `[first, end)` of a keys file (little-endian doubles), read without mapping it.
fn read_keys(file: &File, first: u64, end: u64) -> std::io::Result<Vec<f64>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; (end - first) as usize * 8];
    file.read_exact_at(&mut bytes, first * 8)?;
    Ok(bytes.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
}

/// Bytes `[0, len)` of a file as an Arrow buffer over a read-only shared mapping, unmapped when
/// the last array using it is dropped. Only the pages read are faulted in.
#[allow(unsafe_code)]
fn map(file: &File, len: usize) -> Result<Buffer> {
    if len == 0 {
        return Ok(Buffer::from(Vec::<u8>::new()));
    }
    // SAFETY: keys files are written once under a temporary name, renamed into place and never
    // modified or truncated afterwards (retiring only unlinks them), so the mapped bytes cannot
    // change or disappear while mapped.
    let mmap = unsafe { memmap2::MmapOptions::new().len(len).map(file) }.map_err(Error::internal)?;
    Ok(Buffer::from(bytes::Bytes::from_owner(mmap)))
}

/// One ingested file's segment. Cheap to share (`Arc`); queries read it through [`Segment::map`].
pub struct Segment {
    id: u64,
    name: String,
    data_path: PathBuf,
    keys_path: PathBuf,
    keys: Option<File>,
    rows: u64,
    bytes: u64,
    groups: Vec<Group>,
    extent: Extent,
    days: Days,
    /// The first row of each row group, and then the row count.
    row_starts: Vec<u64>,
    schema: SchemaRef,
    /// The keys file mapped, once: every query shares the mapping (and its page tables).
    mapped: std::sync::OnceLock<Buffer>,
    /// The distances counted by value: from the builder, or from the keys when first asked for.
    histogram: std::sync::OnceLock<Histogram>,
    /// Remove the files when the last handle goes.
    retired: std::sync::atomic::AtomicBool,
}

impl Drop for Segment {
    fn drop(&mut self) {
        FOOTERS.invalidate(&self.id);
        SMALLS.invalidate(&self.id);
        if !self.retired.load(Ordering::SeqCst) {
            return;
        }
        for p in [&self.data_path, &self.keys_path] {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove a retired segment")
                }
                _ => {}
            }
        }
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("path", &self.data_path).field("rows", &self.rows).finish()
    }
}

/// The two paths of the segment called `name` in `dir`.
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.parquet")), dir.join(format!("{name}.keys")))
}

/// A segment mapped for one query.
pub struct Mapped<'a> {
    segment: &'a Segment,
    /// The whole keys file: queries binary-search it, so they touch few of its pages.
    keys: Buffer,
    /// The last row groups decoded for a bulk read (not kept in the shared cache): small groups
    /// share row groups, and each is decoded once for all of them.
    recent: std::sync::Mutex<Vec<Recent>>,
}

/// A row group decoded for one query: (row group, columns asked for, rows).
type Recent = (usize, Option<Vec<String>>, RecordBatch);

/// How many decoded row groups a bulk read keeps: one with its pickups, one with every column.
const RECENT: usize = 2;

impl Mapped<'_> {
    pub fn groups(&self) -> &[Group] {
        &self.segment.groups
    }

    pub fn extent(&self) -> Extent {
        self.segment.extent
    }

    pub fn days(&self) -> &Days {
        &self.segment.days
    }

    /// The distances of day `d` (an index into [`Mapped::days`]) counted by value.
    pub fn day_histogram(&self, d: usize) -> Arc<Histogram> {
        let groups = &self.segment.groups[self.segment.days.day_groups(d)];
        let rows = match (groups.first(), groups.last()) {
            (Some(a), Some(z)) => a.start as usize..(z.start + z.rows) as usize,
            _ => 0..0,
        };
        let keys: &[f64] = self.keys.typed_data();
        DAY_HISTOGRAMS.get_with((self.segment.id, d as u32), || Arc::new(Histogram::of(&keys[rows])))
    }

    /// Day `d`'s histogram if it is kept already (see [`Mapped::day_histogram`]).
    pub fn day_histogram_kept(&self, d: usize) -> Option<Arc<Histogram>> {
        DAY_HISTOGRAMS.get(&(self.segment.id, d as u32))
    }

    /// The segment's histogram if counted already (see [`Mapped::histogram`]).
    pub fn histogram_counted(&self) -> Option<&Histogram> {
        self.segment.histogram.get()
    }

    /// Groups of the days a range meets (see [`Days::meeting`]), with their indexes.
    pub fn meeting(&self, from: Option<i64>, to: Option<i64>) -> impl Iterator<Item = (usize, &Group)> {
        let (timed, nulls) = self.segment.days.meeting(from, to);
        timed.chain(nulls).map(|i| (i, &self.segment.groups[i]))
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.segment.schema
    }

    /// The distances of all rows counted by value; counted from the keys on first use after a
    /// restart (a few milliseconds per million rows).
    pub fn histogram(&self) -> &Histogram {
        let keys = || ScalarBuffer::<f64>::new(self.keys.clone(), 0, self.segment.rows as usize);
        self.segment.histogram.get_or_init(|| Histogram::of(&keys()))
    }

    /// The small groups' distances as one run (see [`Smalls`]); merged from the keys on first use.
    pub fn smalls(&self) -> Arc<Smalls> {
        // Small groups lie all over the keys file: read theirs with `pread`, not through the
        // mapping, which would keep every page of the file resident for a few keys each.
        let mapped: &[f64] = self.keys.typed_data();
        let read = |a: u64, b: u64| match self.segment.keys.as_ref().map(|f| read_keys(f, a, b)) {
            Some(Ok(keys)) => keys,
            _ => mapped[a as usize..b as usize].to_vec(),
        };
        SMALLS.get_with(self.segment.id, || Arc::new(Smalls::of(&self.segment.groups, read)))
    }

    /// Distances (NULL = NaN) of the first `n` rows of `g`, in descending order.
    pub fn distances(&self, g: &Group, n: usize) -> ScalarBuffer<f64> {
        ScalarBuffer::new(self.keys.clone(), g.start as usize, n.min(g.rows as usize))
    }

    /// Pickup times (µs, NULL = `i64::MIN`) of the first `n` rows of `g`.
    pub fn pickups(&self, g: &Group, n: usize) -> Result<Vec<i64>> {
        self.times(PICKUP, g, n)
    }

    /// Dropoff times (µs, NULL = `i64::MIN`) of the first `n` rows of `g`.
    pub fn dropoffs(&self, g: &Group, n: usize) -> Result<Vec<i64>> {
        self.times(DROPOFF, g, n)
    }

    /// Pickup times of the first `n` rows of `g` as microsecond arrays, one per row group, as
    /// decoded (no copy).
    pub fn pickup_arrays(&self, g: &Group, n: usize) -> Result<Vec<arrow::array::TimestampMicrosecondArray>> {
        self.segment
            .spans(g.segment_rows(0, n))
            .map(|(rg, from, to)| {
                let batch = self.decode(rg, Some(&[PICKUP]), true)?;
                let us = build::micros(&batch, PICKUP)?;
                let to = to.min(us.len());
                Ok(us.slice(from, to.saturating_sub(from)))
            })
            .collect()
    }

    /// Row group `rg` (see [`Segment::decode`]); a bulk read (`keep` false) reuses the row
    /// groups it decoded last.
    fn decode(&self, rg: usize, columns: Option<&[&str]>, keep: bool) -> Result<RecordBatch> {
        if keep {
            return self.segment.decode(rg, columns, keep);
        }
        let asked = columns.map(|c| c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut recent = self.recent.lock().map_err(|_| Error::internal("decoded row groups poisoned"))?;
        if let Some((_, _, b)) = recent.iter().find(|(i, c, _)| *i == rg && *c == asked) {
            return Ok(b.clone());
        }
        let batch = self.segment.decode(rg, columns, keep)?;
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push((rg, asked, batch.clone()));
        Ok(batch)
    }

    fn times(&self, column: &str, g: &Group, n: usize) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(n.min(g.rows as usize));
        for (rg, from, to) in self.segment.spans(g.segment_rows(0, n)) {
            let batch = self.decode(rg, Some(&[column]), true)?;
            let us = build::micros(&batch, column)?;
            let to = to.min(us.len());
            out.extend((from..to).map(|i| if us.is_valid(i) { us.value(i) } else { i64::MIN }));
        }
        Ok(out)
    }

    /// Rows `[lo, hi)` of group `g` as record batches of at most [`CHUNK_ROWS`], decoded lazily,
    /// with every column or only `columns`; `keep` keeps what was decoded for the next query (not
    /// for bulk reads).
    pub fn read<'a>(
        &'a self,
        g: &Group,
        (lo, hi): (usize, usize),
        columns: Option<&'a [&'a str]>,
        keep: bool,
    ) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        self.read_rows(g.segment_rows(lo, hi), columns, keep)
    }

    /// Rows `[lo, hi)` of the segment (in its row order; several groups), as [`Mapped::read`]
    /// reads them: one batch per row group.
    pub fn read_rows<'a>(
        &'a self,
        (lo, hi): (u64, u64),
        columns: Option<&'a [&'a str]>,
        keep: bool,
    ) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        self.row_spans((lo, hi), columns, keep)
            .map(|span| span.map(|(_, batch, from, to)| batch.slice(from, to - from)))
    }

    /// Rows `[lo, hi)` for a scan: as [`Mapped::read_rows`] reads them, except that each aligned
    /// run of `unit` row groups the rows wholly cover is decoded as one batch. A client that asks
    /// for large messages then gets one buffer a column, lent to the wire whole, instead of a
    /// piece per row group copied together (a third of a cached 16 MiB scan's CPU).
    pub fn scan_rows<'a>(
        &'a self,
        (lo, hi): (u64, u64),
        columns: Option<&'a [&'a str]>,
        keep: bool,
        unit: usize,
    ) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        let seg = self.segment;
        let unit = unit.clamp(1, MAX_UNIT_GROUPS);
        let groups = seg.row_starts.len() - 1;
        let spans: Vec<(usize, usize, usize)> = seg.spans((lo, hi)).collect();
        let whole = |&(rg, from, to): &(usize, usize, usize)| {
            from == 0 && to as u64 == seg.row_starts[rg + 1] - seg.row_starts[rg]
        };
        let mut reads = Vec::new();
        let mut i = 0;
        while let Some(&(rg, from, to)) = spans.get(i) {
            let count = (rg - rg % unit + unit).min(groups) - rg;
            let run = spans.get(i..i + count).filter(|run| unit > 1 && rg % unit == 0 && run.iter().all(whole));
            match run {
                Some(_) => reads.push((rg, count, 0, usize::MAX)),
                None => reads.push((rg, 1, from, to)),
            }
            i += run.map_or(1, |_| count);
        }
        reads.into_iter().map(move |(rg, count, from, to)| {
            let batch = seg.decode_unit(rg, count, columns, keep)?;
            let to = to.min(batch.num_rows());
            Ok(batch.slice(from.min(to), to - from.min(to)))
        })
    }

    /// Rows `[lo, hi)` of group `g` as [`Mapped::read`] finds them, each row group whole:
    /// (row group, its rows decoded, the span `[from, to)` of them asked for).
    pub fn read_spans<'a>(
        &'a self,
        g: &Group,
        (lo, hi): (usize, usize),
        columns: Option<&'a [&'a str]>,
        keep: bool,
    ) -> impl Iterator<Item = Result<(usize, RecordBatch, usize, usize)>> + 'a {
        self.row_spans(g.segment_rows(lo, hi), columns, keep)
    }

    fn row_spans<'a>(
        &'a self,
        (lo, hi): (u64, u64),
        columns: Option<&'a [&'a str]>,
        keep: bool,
    ) -> impl Iterator<Item = Result<(usize, RecordBatch, usize, usize)>> + 'a {
        self.segment.spans((lo, hi)).map(move |(rg, from, to)| {
            let batch = self.decode(rg, columns, keep)?;
            let to = to.min(batch.num_rows());
            Ok((rg, batch, from.min(to), to))
        })
    }
}

impl Segment {
    /// Opens a finished segment: reads the Parquet footer (schema, row groups, group index).
    pub fn open(dir: &Path, name: &str) -> Result<Arc<Self>> {
        let (data_path, keys_path) = paths(dir, name);
        let corrupt = |what: &str| Error::internal(format!("segment {}: {what}", data_path.display()));
        let data = File::open(&data_path).map_err(Error::internal)?;
        let meta = ArrowReaderMetadata::load(&data, ArrowReaderOptions::new())?;
        let index = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == INDEX_KEY).and_then(|kv| kv.value.clone()));
        let rows = meta.metadata().file_metadata().num_rows() as u64;
        let mut bytes = data.metadata().map_err(Error::internal)?.len();
        // Only taxi segments carry a group index, and they always have their keys.
        let (groups, keys) = match index {
            None => (Vec::new(), None),
            Some(index) => {
                let groups: Vec<Group> = serde_json::from_str(&index).map_err(|e| corrupt(&e.to_string()))?;
                let keys = File::open(&keys_path).map_err(|e| corrupt(&format!("keys: {e}")))?;
                let len = keys.metadata().map_err(Error::internal)?.len();
                if len != rows * 8 || groups.iter().map(|g| g.rows).sum::<u64>() != rows {
                    return Err(corrupt("keys file does not match the row count"));
                }
                bytes += len;
                (groups, Some(keys))
            }
        };
        let row_starts = std::iter::once(0)
            .chain(meta.metadata().row_groups().iter().scan(0u64, |n, rg| {
                *n += rg.num_rows() as u64;
                Some(*n)
            }))
            .collect();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (retired, schema) = (Default::default(), meta.schema().clone());
        Ok(Arc::new(Segment {
            id,
            name: name.to_string(),
            data_path,
            keys_path,
            keys,
            rows,
            bytes,
            extent: Extent::of(&groups),
            days: Days::of(&groups),
            groups,
            row_starts,
            schema,
            mapped: Default::default(),
            histogram: Default::default(),
            retired,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether its distances are counted by value already (see [`Mapped::histogram`]).
    pub fn is_counted(&self) -> bool {
        self.histogram.get().is_some()
    }

    /// Bytes on local disk (data and keys).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The Parquet file SQL reads.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Whether the rows are taxi-shaped (grouped, with keys): the built-in tickets read only these.
    pub fn is_taxi(&self) -> bool {
        self.keys.is_some()
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn extent(&self) -> Extent {
        self.extent
    }

    pub fn days(&self) -> &Days {
        &self.days
    }

    /// The schema the segment was written with (the file's columns as the dataset names them).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The row groups holding the segment's rows `[a, z)`: (row group, its rows `[from, to)`).
    fn spans(&self, (a, z): (u64, u64)) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let first = self.row_starts.partition_point(|s| *s <= a).saturating_sub(1);
        (first..self.row_starts.len() - 1).take_while(move |&rg| a < z && self.row_starts[rg] < z).map(move |rg| {
            let base = self.row_starts[rg];
            (rg, (a.max(base) - base) as usize, (z.min(self.row_starts[rg + 1]) - base) as usize)
        })
    }

    /// The parsed footer, from the cache or read again.
    fn footer(&self) -> Result<ArrowReaderMetadata> {
        FOOTERS
            .try_get_with(self.id, || {
                let file = File::open(&self.data_path).map_err(parquet::errors::ParquetError::from)?;
                ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            })
            .map_err(|e| Error::internal(format!("segment {}: {e}", self.name)))
    }

    /// Maps the segment for one query: its distance keys whole (mapped once, on first use); row
    /// groups are decoded when read.
    pub fn map(&self) -> Result<Mapped<'_>> {
        let keys = match (&self.keys, self.mapped.get()) {
            (_, Some(keys)) => keys.clone(),
            (Some(file), None) => {
                let mapped = map(file, self.rows as usize * 8)?;
                self.mapped.get_or_init(|| mapped).clone()
            }
            (None, None) => return Err(Error::internal(format!("segment {} has no keys", self.name))),
        };
        Ok(Mapped { segment: self, keys, recent: Default::default() })
    }

    /// Row group `i`, whole or only `columns` (matched case-insensitively; all when none is in
    /// this segment); from the cache of decoded row groups when there.
    fn decode(&self, i: usize, columns: Option<&[&str]>, keep: bool) -> Result<RecordBatch> {
        self.decode_unit(i, 1, columns, keep)
    }

    /// Row groups `[first, first + count)` as one batch (one buffer a column), like
    /// [`Segment::decode`].
    fn decode_unit(&self, first: usize, count: usize, columns: Option<&[&str]>, keep: bool) -> Result<RecordBatch> {
        let tag = match columns {
            None => column_tag(None),
            Some([one]) => column_tag(Some(one)),
            Some(_) => OTHER_COLUMN,
        };
        let count = count.clamp(1, MAX_UNIT_GROUPS);
        let key = (self.id, first as u32, count as u8, tag);
        if let Some(b) = DECODED.get(&key) {
            crate::metrics::ROW_GROUPS.with_label_values(&["cache"]).inc();
            return Ok(b);
        }
        crate::metrics::ROW_GROUPS.with_label_values(&["file"]).inc();
        // Its own file description: clones of `data` would share one file offset between threads.
        // The path stays until the segment is dropped (see `retire`).
        let file = File::open(&self.data_path).map_err(Error::internal)?;
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.footer()?)
            .with_row_groups((first..first + count).collect())
            .with_batch_size((self.row_starts[first + count] - self.row_starts[first]) as usize);
        if let Some(columns) = columns {
            let leaves: Vec<usize> = builder
                .parquet_schema()
                .columns()
                .iter()
                .enumerate()
                .filter(|(_, d)| columns.iter().any(|c| d.name().eq_ignore_ascii_case(c)))
                .map(|(leaf, _)| leaf)
                .collect();
            if !leaves.is_empty() {
                let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
                builder = builder.with_projection(mask);
            }
        }
        let batch = builder
            .build()?
            .next()
            .ok_or_else(|| Error::internal(format!("segment {}: row group {first} is empty", self.name)))??;
        if keep && tag != OTHER_COLUMN {
            DECODED.insert(key, batch.clone());
        }
        Ok(batch)
    }

    /// Records the histogram the builder counted.
    fn set_histogram(&self, histogram: Histogram) {
        let _ = self.histogram.set(histogram);
    }

    /// Removes the files once the last handle goes: queries holding this segment (DuckDB's
    /// included, which reads it by path) keep reading it until they end.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(hour: Option<i64>) -> Group {
        Group { hour, hours: 1, top: false, outlier: false, start: 0, rows: 1, with_distance: 1 }
    }

    #[test]
    fn days_and_extent_find_the_groups_a_range_meets() {
        let timed = |hour: i64, hours: u32| Group { hours, ..group(Some(hour)) };
        // Day 10: its outliers (one group for the day), hours 1 and 5; day 12: hour 2; no pickup.
        let groups = vec![timed(240, 24), timed(241, 1), timed(245, 1), timed(290, 1), group(None)];
        let days = Days::of(&groups);
        let h = |hour: i64| Some(hour * HOUR_US);
        assert_eq!(days.meeting(None, None), (0..4, 4..5));
        assert_eq!(days.meeting(h(264), h(312)), (3..4, 5..5));
        assert_eq!(days.meeting(h(241).map(|t| t + 1_800_000_000), h(264)), (0..3, 5..5));
        assert_eq!(days.meeting(h(264), h(288)), (3..3, 5..5));
        assert_eq!(days.meeting(None, h(240)), (0..0, 5..5));
        assert_eq!(days.meeting(h(313), None), (4..4, 5..5));
        // From day 9 to day 13: only the edges (and the rows without a pickup) may be cut.
        let wide = [timed(200, 1), timed(240, 24), timed(241, 1), timed(270, 1), timed(290, 1), timed(330, 1)];
        let wide_days = Days::of(&wide);
        assert_eq!(wide_days.whole_days(1..4), 1..3, "days 10 and 11");
        assert_eq!(wide_days.whole_days(4..6), 3..5);
        assert_eq!(wide_days.day_groups(1), 1..3);
        assert_eq!(wide_days.day_groups(4), 5..6);
        assert_eq!(wide_days.uncovered(h(216), h(312)), [0..3, 4..6]);
        assert_eq!(wide_days.uncovered(h(240), h(264)), [0..3, 3..6]);
        assert_eq!(wide_days.uncovered(h(400), None), [0..6, 6..6]);
        for (from, to) in [(h(216), h(312)), (h(240), h(264)), (h(0), h(250)), (None, h(291))] {
            let [a, b] = wide_days.uncovered(from, to);
            for (i, g) in wide.iter().enumerate().filter(|(i, _)| !a.contains(i) && !b.contains(i)) {
                assert_eq!(g.cover(from, to), Cover::Full, "group {i} in [{from:?}, {to:?})");
            }
        }
        let extent = Extent::of(&groups);
        assert_eq!(extent.cover(None, None), Cover::Full);
        assert_eq!(extent.cover(h(240), h(291)), Cover::Partial, "rows without a pickup are out");
        assert_eq!(extent.cover(h(264), h(288)), Cover::Partial, "between the days: the groups say None");
        assert_eq!(extent.cover(h(291), None), Cover::None);
        assert_eq!(Extent::of(&groups[..4]).cover(h(240), h(291)), Cover::Full);
        assert_eq!(Extent::of(&groups[..4]).cover(h(240), h(290)), Cover::Partial);
    }

    #[test]
    fn cover_follows_half_open_ranges() {
        let h = 19_358 * 24 + 7; // 2023-01-01T07
        let g = group(Some(h));
        assert_eq!(g.day(), Some(19_358));
        assert_eq!(g.cover(None, None), Cover::Full);
        assert_eq!(g.cover(Some(h * HOUR_US), Some((h + 1) * HOUR_US)), Cover::Full);
        assert_eq!(g.cover(Some((h - 30) * HOUR_US), Some((h + 30) * HOUR_US)), Cover::Full);
        assert_eq!(g.cover(Some(h * HOUR_US + 1), None), Cover::Partial);
        assert_eq!(g.cover(None, Some((h + 1) * HOUR_US - 1)), Cover::Partial);
        assert_eq!(g.cover(Some((h + 1) * HOUR_US), None), Cover::None);
        assert_eq!(g.cover(None, Some(h * HOUR_US)), Cover::None);
        assert_eq!(group(None).cover(None, None), Cover::Full);
        assert_eq!(group(None).cover(Some(0), None), Cover::None);
    }
}
