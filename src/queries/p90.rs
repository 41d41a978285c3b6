//! `p90`: the trips whose `trip_distance` is strictly above the exact percentile of
//! `trip_distance` among the trips picked up in the range.
//!
//! The percentile is DuckDB's `quantile_cont` (linear interpolation, NULLs excluded). It is found
//! over the segments' distance keys, which are sorted within each (day, class) group, so the
//! trips above it are a prefix of each group: the query reads only the rows it returns. The
//! threshold and counts ride in the schema metadata, which reaches the client before any row.

use std::{collections::HashMap, ops::Range as Rows, sync::Arc};

use arrow::{
    array::{BooleanArray, Float64Array, Int64Array, TimestampMicrosecondArray},
    buffer::ScalarBuffer,
    datatypes::{DataType, Field, Schema, TimeUnit},
    record_batch::RecordBatch,
};

use super::{
    gather::Gather,
    manifest_metadata,
    native::{Emitter, Job, Place, INLINE_ANSWER_ROWS, INLINE_ROWS},
    quantile::{count_above, quantile_cont, Ranks, Run},
    range::Range,
    read::{micros, pickup_mask, project, read_masked, Aligner},
    require_tlc,
};
use crate::{
    catalog::{Catalog, Snapshot},
    error::{Error, Result},
    proto::P90,
    segment::{Cover, Days, Group, Mapped, Pinned, Slot, Smalls},
};

/// Threshold and counts for one range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// None when the range holds no trip with a distance.
    pub threshold: Option<f64>,
    pub trips_in_range: u64,
    pub trips_above: u64,
}

/// The rows of one group above the threshold: its first `rows` rows, filtered by `mask` when the
/// group is only partly in the range.
#[derive(Debug)]
pub struct Take {
    pub segment: usize,
    pub group: usize,
    pub rows: usize,
    pub mask: Option<BooleanArray>,
}

/// One group's distances in range, kept until the threshold is known.
struct Part {
    segment: usize,
    group: usize,
    /// The group's distances, descending (a run for the percentile); of a partly covered group,
    /// only those whose pickup is in range count.
    run: ScalarBuffer<f64>,
    /// For a partly covered group: every row's distance and whether its pickup is in range.
    partial: Option<(ScalarBuffer<f64>, BooleanArray, Ranks)>,
    /// Counted by its segment's histogram or with the strays, not by its own run.
    counted: bool,
}

/// Pins the segments of `snap` that hold rows picked up in `range` (see [`Slot::pin`]).
pub fn pin_range(snap: &Snapshot, range: &Range) -> Result<Vec<Pinned>> {
    touching(snap, range).map(|s| s.pin()).collect()
}

/// The segments with rows picked up in `range`.
fn touching<'a>(snap: &'a Snapshot, range: &Range) -> impl Iterator<Item = &'a Arc<Slot>> {
    let (from, to) = micros(range);
    snap.segments.iter().filter(move |s| s.touches(from, to))
}

/// Maps pinned segments for one query.
pub fn map_all(pins: &[Pinned]) -> Result<Vec<Mapped<'_>>> {
    pins.iter().map(|s| s.map()).collect()
}

/// Groups of fewer rows than this (stray days: a few trips dated far from their file's month)
/// are taken from a histogram together, as one sorted run.
const STRAY_ROWS: u64 = crate::segment::LARGE_ROWS;

/// Whole days of this many groups or more (about two days of hour groups) count with their days'
/// histograms when their segment's does not.
const DAY_RUN_GROUPS: usize = 96;

/// A whole day a counted segment's range misses is taken away with its day histogram when it has
/// this many groups (a day of the file's month, not a stray day of a few trips).
const DAY_MIN_GROUPS: usize = 24;

/// A segment's small groups count through its smalls run (built once, then kept) when a range
/// takes or leaves this many of them; fewer (a neighbour file's few stray hours) count one group
/// at a time, so a range that only grazes a file never builds that file's run.
const SMALLS_MIN_GROUPS: usize = 64;

/// The groups wholly in `[from, to)` by their days: those of the days strictly between the first
/// and the last day the range meets (`met`), and of those two days too when the range covers
/// every group of theirs. The other groups of the two days are the edges.
fn whole_groups(days: &Days, groups: &[Group], met: Rows<usize>, from: Option<i64>, to: Option<i64>) -> Rows<usize> {
    if met.is_empty() {
        return met;
    }
    let [before, after] = days.uncovered(from, to);
    let mut inner = before.end..after.start;
    let whole = |r: Rows<usize>| r.into_iter().all(|gi| groups[gi].cover(from, to) == Cover::Full);
    if whole(met.start..inner.start) {
        inner.start = met.start;
    }
    if whole(inner.end..met.end) {
        inner.end = met.end;
    }
    inner
}

/// Computes the threshold and counts over the mapped segments, and, when `rows` is set, which
/// rows are above it. A `given` threshold (a split answer's, computed over its whole range) is
/// used instead of the range's own.
///
/// A segment that holds more large groups in the range than outside it counts its
/// distances with its histogram, less the groups outside (and the edge groups, whose rows in range
/// are added back one by one): a year searches 12 histograms instead of thousands of groups.
pub fn compute(
    maps: &[Mapped<'_>],
    range: &Range,
    percentile: f64,
    rows: bool,
    given: Option<f64>,
) -> Result<(Stats, Vec<Take>)> {
    compute_with(maps, range, percentile, rows, given, Build::Any).map(|(stats, takes, _)| (stats, takes))
}

/// What [`compute_with`] may build that is not built yet: a segment's histogram (after a
/// restart) or a day's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Whatever it needs (milliseconds each: on the blocking pool).
    Any,
    /// Nothing: the groups a missing histogram would have counted are counted one by one, and
    /// the result says so (an inline job, which must not stall the caller's task).
    Nothing,
}

/// [`compute`], building only what `build` allows; true when something was not built.
pub fn compute_with(
    maps: &[Mapped<'_>],
    range: &Range,
    percentile: f64,
    rows: bool,
    given: Option<f64>,
    build: Build,
) -> Result<(Stats, Vec<Take>, bool)> {
    let skipped = std::cell::Cell::new(false);
    let histogram = |seg: &Mapped<'_>| {
        let ready = build == Build::Any || seg.histogram_counted().is_some();
        skipped.set(skipped.get() || !ready);
        ready
    };
    let day_histogram = |seg: &Mapped<'_>, d: usize| {
        let h = match build {
            Build::Any => Some(seg.day_histogram(d)),
            Build::Nothing => seg.day_histogram_kept(d),
        };
        skipped.set(skipped.get() || h.is_none());
        h
    };
    let (from, to) = micros(range);
    let mut parts = Vec::new();
    let mut histograms = Vec::new();
    // Whole days' histograms (see below), held while the runs borrow them.
    let mut day_histograms = Vec::new();
    // Days a counted segment's histogram counts and the range misses, taken away.
    let mut missed_days = Vec::new();
    let mut outside = Vec::new();
    // Small groups (see STRAY_ROWS), per segment: their run masked to those taken from its
    // histogram (`minus`) or counted outside any histogram.
    let mut smalls: Vec<(Arc<Smalls>, Ranks, bool)> = Vec::new();
    let mut trips_in_range = 0u64;
    for (si, seg) in maps.iter().enumerate() {
        // A segment wholly in range whose rows are not wanted is its histogram alone.
        match seg.extent().cover(from, to) {
            Cover::None => continue,
            Cover::Full if !rows && histogram(seg) => {
                histograms.push(seg.histogram());
                trips_in_range += seg.days().rows(0..seg.groups().len());
                continue;
            }
            _ => {}
        }
        // Only the groups of the days the range meets can be in it, and of those, the groups of
        // the days strictly between its first and last are whole: only the edges are looked at.
        let (groups, days) = (seg.groups(), seg.days());
        let (met, nulls) = days.meeting(from, to);
        let inner = whole_groups(days, groups, met.clone(), from, to);
        let edges: Vec<(usize, Cover)> = (met.start..inner.start)
            .chain(inner.end..met.end)
            .chain(nulls.clone())
            .map(|gi| (gi, groups[gi].cover(from, to)))
            .filter(|(_, c)| *c != Cover::None)
            .collect();
        // Large groups only: small ones count together as strays either way.
        let large = |gi: usize| groups[gi].rows >= STRAY_ROWS;
        let full = days.large(inner.clone()) + edges.iter().filter(|(gi, c)| *c == Cover::Full && large(*gi)).count();
        let counted = 2 * full > 2 + days.large(0..groups.len()) && histogram(seg);
        // A counted segment's histogram counts every group: what is not wholly in range is
        // taken away (the groups the range misses, and its edges).
        let mut visits: Vec<(usize, Cover)> = Vec::new();
        // The small groups this segment's smalls run keeps (see below).
        let mut small = vec![false; groups.len()];
        if counted {
            histograms.push(seg.histogram());
            // Whole days the range misses are taken away with their day histograms (stray days
            // of a few groups one group at a time); then the edge days' missed groups, and the
            // groups without a pickup time.
            for d in days.whole_days(0..met.start).chain(days.whole_days(met.end..groups.len())) {
                let day = days.day_groups(d);
                match (day.len() >= DAY_MIN_GROUPS).then(|| day_histogram(seg, d)).flatten() {
                    Some(h) => missed_days.push(h),
                    None => visits.extend(day.map(|gi| (gi, Cover::None))),
                }
            }
            let edge = (met.start..inner.start).chain(inner.end..met.end);
            let missed = edge.filter(|gi| edges.binary_search_by_key(gi, |e| e.0).is_err());
            let untimed = (days.timed()..groups.len()).filter(|gi| !nulls.contains(gi));
            visits.extend(missed.chain(untimed).map(|gi| (gi, Cover::None)));
        }
        visits.extend(edges);
        // Whole days of a segment the range does not mostly cover: one run a day, its histogram,
        // instead of one a group.
        let whole_days = (!counted && inner.len() >= DAY_RUN_GROUPS)
            .then(|| days.whole_days(inner.clone()).map(|d| day_histogram(seg, d)).collect::<Option<Vec<_>>>())
            .flatten();
        let by_day = whole_days.is_some();
        day_histograms.extend(whole_days.into_iter().flatten());
        match (counted || by_day) && !rows {
            // Counted by a histogram, and no rows wanted: only their rows are counted.
            true => trips_in_range += days.rows(inner.clone()),
            false => visits.extend(inner.clone().map(|gi| (gi, Cover::Full))),
        }
        let by_histogram = |gi: usize| counted || (by_day && inner.contains(&gi));
        let small_wanted = |gi: usize, cover: Cover| match counted {
            true => cover != Cover::Full,
            false => cover == Cover::Full && !by_histogram(gi),
        };
        let by_run = visits.iter().filter(|&&(gi, c)| groups[gi].rows < STRAY_ROWS && small_wanted(gi, c)).count()
            >= SMALLS_MIN_GROUPS;
        for (gi, cover) in visits {
            let g = &groups[gi];
            let by_histogram = by_histogram(gi);
            let whole = || seg.distances(g, g.with_distance as usize);
            // A small group counts in its segment's smalls run (when SMALLS_MIN_GROUPS of them
            // do): taken from a counted segment's histogram unless wholly in range, or counted
            // when wholly in range and by no histogram. A partly covered one's rows in range
            // count as its own masked run.
            let by_run = by_run && g.rows < STRAY_ROWS;
            if by_run {
                small[gi] = small_wanted(gi, cover);
            } else if counted && cover != Cover::Full {
                outside.push(whole());
            }
            match cover {
                Cover::None => {}
                // Counted by a histogram, and no rows wanted.
                Cover::Full if by_histogram && !rows => trips_in_range += g.rows,
                Cover::Full => {
                    trips_in_range += g.rows;
                    let counted = by_histogram || by_run;
                    parts.push(Part { segment: si, group: gi, run: whole(), partial: None, counted });
                }
                Cover::Partial => {
                    let inside = pickup_mask(seg, g, g.rows as usize, from, to)?;
                    trips_in_range += inside.true_count() as u64;
                    let distances = seg.distances(g, g.rows as usize);
                    // Rows with a distance come first: the run is theirs that are in range.
                    let run = distances.slice(0, g.with_distance as usize);
                    let ranks = Ranks::new(inside.values());
                    let partial = Some((distances, inside, ranks));
                    parts.push(Part { segment: si, group: gi, run, partial, counted: false });
                }
            }
        }
        if small.contains(&true) {
            let run = seg.smalls();
            let ranks = Ranks::new(&run.mask(|gi| small[gi]));
            smalls.push((run, ranks, counted));
        }
    }
    let runs: Vec<Run> = histograms
        .into_iter()
        .chain(day_histograms.iter().map(|h| h.as_ref()))
        .map(Run::counted)
        .chain(missed_days.iter().map(|h| Run::counted(h).taken(true)))
        .chain(outside.iter().map(|r| Run::minus(r)))
        .chain(smalls.iter().map(|(run, ranks, minus)| Run::masked(run.distances(), ranks).taken(*minus)))
        .chain(parts.iter().filter(|p| !p.counted).map(|p| match &p.partial {
            None => Run::plain(&p.run),
            Some((_, _, ranks)) => Run::masked(&p.run, ranks),
        }))
        .collect();
    let threshold = given.or_else(|| quantile_cont(&runs, percentile));
    let trips_above = threshold.map_or(0, |thr| count_above(&runs, thr));
    let mut takes = Vec::new();
    if let Some(thr) = threshold.filter(|_| rows) {
        for p in parts {
            let above = p.run.partition_point(|d| *d > thr);
            let (rows, mask) = match p.partial {
                None => (above, None),
                Some((_, _, ranks)) if ranks.count(above) == 0 => (0, None),
                Some((distances, inside, _)) => {
                    let rows = distances.partition_point(|d| *d > thr);
                    (rows, Some(inside.slice(0, rows)))
                }
            };
            if rows == 0 {
                continue;
            }
            takes.push(Take { segment: p.segment, group: p.group, rows, mask });
        }
    }
    Ok((Stats { threshold, trips_in_range, trips_above }, takes, skipped.get()))
}

/// Reads the rows of `takes` into `target`, pushing them to `emit` until it wants no more.
///
/// Whole prefixes are gathered straight from the decoded row groups into message-sized batches
/// (one copy); a partly covered group's rows are filtered and merged by the emitter.
pub fn emit_takes(maps: &[Mapped<'_>], takes: &[Take], target: &Arc<Schema>, emit: &mut Emitter) -> Result<()> {
    let mut aligners: HashMap<usize, Aligner> = HashMap::new();
    let (mut gather, limit) = (Gather::default(), emit.message_rows());
    // The segment the gathered rows come from, and the row group of the last span.
    let (mut gathering, mut last): (Option<usize>, Option<usize>) = (None, None);
    let flush = |gather: &mut Gather, aligner: &Aligner, emit: &mut Emitter| match gather.take()? {
        Some(rows) => emit.push_merged(aligner.apply(&rows)?),
        None => Ok(true),
    };
    for t in takes {
        let seg = &maps[t.segment];
        let group = &seg.groups()[t.group];
        aligners.entry(t.segment).or_insert_with(|| Aligner::new(seg.schema(), target.clone()));
        if let Some(s) = gathering.filter(|s| *s != t.segment) {
            if !flush(&mut gather, &aligners[&s], emit)? {
                return Ok(());
            }
            last = None;
        }
        let aligner = &aligners[&t.segment];
        if let Some(mask) = &t.mask {
            for batch in read_masked(seg, group, t.rows, Some(mask), (None, true)) {
                if !emit.push(aligner.apply(&batch?)?)? {
                    return Ok(());
                }
            }
            continue;
        }
        gathering = Some(t.segment);
        for span in seg.read_spans(group, (0, t.rows), None, true) {
            let (rg, batch, mut from, to) = span?;
            while from < to {
                let n = (to - from).min(limit - gather.rows());
                gather.add(&batch, from, n, last == Some(rg));
                (last, from) = (Some(rg), from + n);
                if gather.rows() >= limit {
                    if !flush(&mut gather, aligner, emit)? {
                        return Ok(());
                    }
                    last = None;
                }
            }
        }
    }
    match gathering {
        Some(s) => flush(&mut gather, &aligners[&s], emit).map(|_| ()),
        None => Ok(()),
    }
}

/// Adds the threshold and counts to the schema metadata.
pub fn stats_metadata(s: &Stats, percentile: f64, md: &mut HashMap<String, String>) {
    let threshold = s.threshold.map(|t| format!("{t:?}")).unwrap_or_else(|| "null".into());
    md.insert("bridge.p90.percentile".into(), format!("{percentile:?}"));
    md.insert("bridge.p90.threshold".into(), threshold);
    md.insert("bridge.p90.trips_in_range".into(), s.trips_in_range.to_string());
    md.insert("bridge.p90.trips_above".into(), s.trips_above.to_string());
}

pub fn validate_percentile(p: Option<f64>) -> Result<f64> {
    let p = p.unwrap_or(0.9);
    if !(p > 0.0 && p < 1.0) {
        return Err(Error::invalid(format!("percentile must be in (0, 1), e.g. 0.9; got {p}")));
    }
    Ok(p)
}

/// The one-row `summary` output.
fn summary(range: &Range, percentile: f64, s: &Stats, md: HashMap<String, String>) -> Result<RecordBatch> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let schema = Schema::new(vec![
        Field::new("range_from", ts.clone(), true),
        Field::new("range_to", ts, true),
        Field::new("percentile", DataType::Float64, false),
        Field::new("trips_in_range", DataType::Int64, false),
        Field::new("threshold", DataType::Float64, true),
        Field::new("trips_above", DataType::Int64, false),
    ])
    .with_metadata(md);
    let (from, to) = micros(range);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![from])),
            Arc::new(TimestampMicrosecondArray::from(vec![to])),
            Arc::new(Float64Array::from(vec![percentile])),
            Arc::new(Int64Array::from(vec![s.trips_in_range as i64])),
            Arc::new(Float64Array::from(vec![s.threshold])),
            Arc::new(Int64Array::from(vec![s.trips_above as i64])),
        ],
    )?)
}

/// The job, and where it runs: inline when its segments are local and its range small, or its
/// output a summary over counted segments.
pub fn plan(p: P90, catalog: &Catalog) -> Result<(Job, Place)> {
    let ds = catalog.dataset(&p.dataset)?;
    let snap = ds.snapshot();
    require_tlc(&ds.name, &snap, "p90")?;
    let range = p.range.as_ref().map(|r| Range::parse(&r.from, &r.to)).transpose()?.unwrap_or_default();
    let percentile = validate_percentile(p.percentile)?;
    let trips = match p.output.as_str() {
        "" | "trips" => true,
        "summary" => false,
        other => return Err(Error::invalid(format!("output must be \"trips\" or \"summary\", not {other:?}"))),
    };
    let target = project(&ds.name, &snap, &p.columns)?;
    super::split::check(p.slice.as_ref(), &ds.name, &snap, &range)?;
    let dataset = ds.name.clone();
    let answer_share = if trips { 1.0 - percentile } else { 0.0 };
    // A summary is one row: it runs inline over any range whose segments are local and counted,
    // building nothing there (what it lacks is built on the pool for the next one).
    let held = pin_inline(&snap, &range, answer_share, !trips);
    let place = if held.is_some() { Place::Inline } else { Place::Pool };
    let build = if held.is_some() && !trips { Build::Nothing } else { Build::Any };
    let job: Job = Box::new(move |emit: &mut Emitter| {
        let mut md = manifest_metadata(&dataset, &snap);
        let pins = match held {
            Some(pins) => pins,
            None => pin_range(&snap, &range)?,
        };
        let maps = map_all(&pins)?;
        let given = p.slice.as_ref().and_then(|s| s.threshold);
        let (mut stats, takes, skipped) = compute_with(&maps, &range, percentile, trips, given, build)?;
        if skipped {
            warm_up(snap.clone(), range, percentile);
        }
        if let Some(s) = &p.slice {
            // One part of a split answer: the whole range's counts, as every part reports them.
            (stats.trips_in_range, stats.trips_above) = (s.trips_in_range, s.trips_above);
        }
        stats_metadata(&stats, percentile, &mut md);
        if !trips {
            let row = summary(&range, percentile, &stats, md)?;
            return if emit.start(row.schema(), None) { emit.push(row).map(|_| ()) } else { Ok(()) };
        }
        let schema = Arc::new(target.as_ref().clone().with_metadata(md));
        if !emit.start(schema, p.limit) {
            return Ok(());
        }
        emit_takes(&maps, &takes, &target, emit)
    });
    Ok((job, place))
}

/// Builds on the blocking pool what an inline summary went without (see [`Build::Nothing`]), so
/// the next one over these days has it.
fn warm_up(snap: Arc<Snapshot>, range: Range, percentile: f64) {
    tokio::task::spawn_blocking(move || {
        let warmed =
            pin_range(&snap, &range).and_then(|pins| compute(&map_all(&pins)?, &range, percentile, false, None));
        if let Err(e) = warmed {
            tracing::debug!(error = %e, "building a percentile's histograms");
        }
    });
}

/// The segments of a job that runs inline (see [`Place::Inline`]) pinned, when all are on local
/// disk: a small range (its days hold at most [`INLINE_ROWS`] rows, and about `answer_share` of
/// them, the trips above the percentile, at most [`INLINE_ANSWER_ROWS`]), or a `summary` over
/// segments whose histograms are counted.
fn pin_inline(snap: &Snapshot, range: &Range, answer_share: f64, summary: bool) -> Option<Vec<Pinned>> {
    let (from, to) = micros(range);
    let inside: Vec<&Arc<Slot>> = touching(snap, range).collect();
    let rows = inside.iter().map(|s| s.rows_meeting(from, to)).sum::<u64>();
    let small = rows <= INLINE_ROWS && rows as f64 * answer_share <= INLINE_ANSWER_ROWS as f64;
    if !small && !summary {
        return None;
    }
    inside.into_iter().map(|s| s.pin_local().filter(|p| small || p.is_counted())).collect()
}
