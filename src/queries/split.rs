//! Splitting a big answer into parts that replicas serve side by side.
//!
//! A `scan`, a `p90` of trips or a streamed `outliers` (no order, no limit) over a long range is
//! cut at day boundaries into parts of about equal rows, each the same ticket over the part's
//! own range, so the parts' rows together are exactly the whole answer's. A part is owned by the
//! file most of its rows come from (TLC files are months).
//!
//! How many parts: at least one per replica, and enough that each part's answer is about
//! [`PART_BYTES`], up to the cap. ADBC reads every endpoint at once but hands the rows over in
//! endpoint order, queueing 5 messages per endpoint meanwhile (`adbc.rpc.result_queue_size`):
//! a part that fits in that queue streams at its replica's full speed however late it comes in
//! the list, while a bigger one stalls until the client reaches it.
//!
//! The p90 threshold must be exact over the whole range, not per part: the planning replica
//! computes it once (from the segments' histograms: milliseconds) and writes it into every part
//! ([`Slice::threshold`]); the replicas serving the parts filter by it and never compute their
//! own. Each part also carries a digest of the files holding its rows: a replica whose files
//! differ (a file landed or changed in between) refuses the part with UNAVAILABLE, so a client
//! gets the planned answer or an error, never a mix of two versions of the data.

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use super::{
    fast,
    native::{row_bytes, MESSAGE_BYTES},
    p90::{compute, map_all, pin_range},
    range::Range,
    read::micros,
};
use crate::{
    catalog::{Catalog, Snapshot},
    error::{Error, Result},
    proto::{self, ticket::Query, Slice, Ticket},
    segment::Cover,
};

/// Answers over fewer rows than this are not worth splitting.
pub const MIN_ROWS: u64 = 256 * 1024;

/// About the answer bytes of one part: 4 of Bridge's messages, inside ADBC's default queue of 5
/// per endpoint.
pub const PART_BYTES: u64 = 4 * MESSAGE_BYTES as u64;

/// One part: its ticket, the file it mostly reads (its owner's key) and its rows.
#[derive(Debug, Clone)]
pub struct Part {
    pub ticket: Ticket,
    pub key: String,
    pub rows: u64,
}

/// The ticket a splittable request runs (SQL the segments answer becomes its ticket).
fn splittable(ticket: &Ticket) -> Option<Ticket> {
    let native = match &ticket.query {
        Some(Query::Sql(s)) if s.parameters.is_empty() => fast::rewrite(&s.sql)?,
        _ => ticket.clone(),
    };
    let ok = match &native.query {
        Some(Query::Scan(s)) => s.limit.is_none() && s.slice.is_none(),
        Some(Query::P90(p)) => p.limit.is_none() && matches!(p.output.as_str(), "" | "trips") && p.slice.is_none(),
        Some(Query::Outliers(o)) => o.limit.is_none() && o.order_by.is_empty() && o.slice.is_none(),
        _ => false,
    };
    ok.then_some(native)
}

fn dataset_and_range(t: &Ticket) -> Option<(&str, Option<&proto::Range>)> {
    match &t.query {
        Some(Query::Scan(s)) => Some((&s.dataset, s.range.as_ref())),
        Some(Query::P90(p)) => Some((&p.dataset, p.range.as_ref())),
        Some(Query::Outliers(o)) => Some((&o.dataset, o.range.as_ref())),
        _ => None,
    }
}

fn day_start(day: i64) -> String {
    let date = NaiveDate::from_num_days_from_ce_opt(day as i32 + UNIX_DAY).unwrap_or_default();
    date.format("%Y-%m-%d").to_string()
}

/// Days from 0001-01-01 (chrono's count) to 1970-01-01.
const UNIX_DAY: i32 = 719_163;

/// Rows per pickup day in `range`, as (file index, rows) pairs. None when rows without a pickup
/// time are in the range (only an unbounded range holds them, and no part could).
type Days = Vec<(i64, Vec<(usize, u64)>)>;
fn days(snap: &Snapshot, range: &Range) -> Option<Days> {
    let (from, to) = micros(range);
    let mut out: std::collections::BTreeMap<i64, Vec<(usize, u64)>> = Default::default();
    for (i, slot) in snap.segments.iter().enumerate() {
        for g in slot.groups() {
            if g.cover(from, to) == Cover::None {
                continue;
            }
            let files = out.entry(g.day()?).or_default();
            match files.last_mut() {
                Some((f, rows)) if *f == i => *rows += g.rows,
                _ => files.push((i, g.rows)),
            }
        }
    }
    Some(out.into_iter().collect())
}

/// Cuts `rows` (per month, in order) into at most `k` runs of about equal sums: the index of
/// each run's first month. A run ends at the month boundary nearest its share of the total.
fn cuts(rows: &[u64], k: usize) -> Vec<usize> {
    let total: u64 = rows.iter().sum();
    let mut starts = vec![0];
    let mut before = 0u64;
    for (i, &r) in rows.iter().enumerate() {
        if starts.len() == k {
            break;
        }
        let goal = total as f64 * starts.len() as f64 / k as f64;
        let (short, over) = (goal - before as f64, (before + r) as f64 - goal);
        if i > 0 && (short <= 0.0 || (over > 0.0 && short < over)) {
            starts.push(i);
        }
        before += r;
    }
    starts
}

/// The digest of the files holding rows of `range` (key and ETag, in order).
pub fn digest(snap: &Snapshot, range: &Range) -> u64 {
    let (from, to) = micros(range);
    let mut files: Vec<(&str, &str)> = snap
        .segments
        .iter()
        .zip(&snap.files)
        .filter(|(s, _)| s.touches(from, to))
        .map(|(_, f)| (f.key.as_str(), f.etag.as_str()))
        .collect();
    files.sort_unstable();
    let mut h = Sha256::new();
    for (key, etag) in files {
        h.update(key.as_bytes());
        h.update([0]);
        h.update(etag.as_bytes());
        h.update([0]);
    }
    let bytes: [u8; 8] = h.finalize()[..8].try_into().unwrap_or_default();
    u64::from_le_bytes(bytes)
}

/// Refuses a part whose files differ from those it was planned on.
pub fn check(slice: Option<&Slice>, dataset: &str, snap: &Snapshot, range: &Range) -> Result<()> {
    match slice {
        Some(s) if s.files != digest(snap, range) => Err(Error::NotReady(format!(
            "this replica's files of dataset {dataset} in this part's range differ from those the FlightInfo \
             was planned on (a file landed or changed in between): try the endpoint's next location, or call \
             GetFlightInfo again"
        ))),
        _ => Ok(()),
    }
}

/// The parts of `ticket` for `members` replicas (at most `max_parts`), or None when it should
/// stay one stream: not a splittable query, under [`MIN_ROWS`], one day, or no trip with a
/// distance (p90). Blocks (the p90 threshold pins segments): call it from a blocking thread.
pub fn split(ticket: &Ticket, catalog: &Catalog, members: usize, max_parts: usize) -> Result<Option<Vec<Part>>> {
    let Some(native) = splittable(ticket) else { return Ok(None) };
    let Some((dataset, r)) = dataset_and_range(&native) else { return Ok(None) };
    let snap = catalog.dataset(dataset)?.snapshot();
    let (from, to) = r.map(|r| (r.from.clone(), r.to.clone())).unwrap_or_default();
    let range = Range::parse(&from, &to)?;
    let Some(days) = days(&snap, &range) else { return Ok(None) };
    let rows: Vec<u64> = days.iter().map(|(_, files)| files.iter().map(|f| f.1).sum()).collect();
    let total: u64 = rows.iter().sum();
    if total < MIN_ROWS || days.len() < 2 || max_parts < 2 {
        return Ok(None);
    }
    // What share of the rows the answer holds, and how wide they are.
    let (share, columns) = match &native.query {
        Some(Query::Scan(s)) => (1.0, s.columns.as_slice()),
        Some(Query::P90(p)) => (1.0 - super::p90::validate_percentile(p.percentile)?, p.columns.as_slice()),
        _ => (0.0, &[][..]),
    };
    let bytes = total as f64 * share * row_bytes(&*super::read::project(dataset, &snap, columns)?) as f64;
    // A whole number of parts per replica, so that equal parts share out evenly.
    let per_member = ((bytes / PART_BYTES as f64) / members.max(1) as f64).ceil().max(1.0) as usize;
    let fit = (max_parts / members.max(1)).max(1);
    let starts = cuts(&rows, (per_member.min(fit) * members).min(max_parts).min(days.len()));
    if starts.len() < 2 {
        return Ok(None);
    }
    let mut slice = Slice::default();
    let whole_p90 = match &native.query {
        Some(Query::P90(p)) => Some(super::p90::validate_percentile(p.percentile)?),
        Some(Query::Outliers(o)) if o.within_p90 => Some(0.9),
        _ => None,
    };
    if let Some(percentile) = whole_p90 {
        let pins = pin_range(&snap, &range)?;
        let (stats, _) = compute(&map_all(&pins)?, &range, percentile, false, None)?;
        let Some(threshold) = stats.threshold else { return Ok(None) };
        slice = Slice {
            threshold: Some(threshold),
            trips_in_range: stats.trips_in_range,
            trips_above: stats.trips_above,
            ..slice
        };
    }
    let mut parts = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(days.len());
        let part_from = if n == 0 { from.clone() } else { day_start(days[start].0) };
        let part_to = if end == days.len() { to.clone() } else { day_start(days[end].0) };
        let part_range = Range::parse(&part_from, &part_to)?;
        let mut by_file: std::collections::HashMap<usize, u64> = Default::default();
        for (f, r) in days[start..end].iter().flat_map(|(_, files)| files) {
            *by_file.entry(*f).or_default() += r;
        }
        let main = by_file.iter().max_by_key(|(f, r)| (**r, std::cmp::Reverse(**f))).map_or(0, |(f, _)| *f);
        let part_slice = Slice { files: digest(&snap, &part_range), ..slice };
        let bounds = proto::Range { from: part_from, to: part_to };
        parts.push(Part {
            ticket: with_part(&native, bounds, part_slice),
            key: snap.files.get(main).map(|f| f.key.clone()).unwrap_or_default(),
            rows: rows[start..end].iter().sum(),
        });
    }
    Ok(Some(parts))
}

/// `t` over `range` as one part: the planner already waited for any `min_version`.
fn with_part(t: &Ticket, range: proto::Range, slice: Slice) -> Ticket {
    let mut t = t.clone();
    match &mut t.query {
        Some(Query::Scan(s)) => (s.range, s.min_version, s.slice) = (Some(range), None, Some(slice)),
        Some(Query::P90(p)) => (p.range, p.min_version, p.slice) = (Some(range), None, Some(slice)),
        Some(Query::Outliers(o)) => (o.range, o.min_version, o.slice) = (Some(range), None, Some(slice)),
        _ => {}
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_cut_into_equal_runs() {
        assert_eq!(cuts(&[10; 12], 16), (0..12).collect::<Vec<_>>());
        assert_eq!(cuts(&[10; 12], 3), [0, 4, 8]);
        assert_eq!(cuts(&[10; 12], 4), [0, 3, 6, 9]);
        // A heavy early era and a light recent one: runs of about equal rows.
        let rows = [14, 14, 14, 14, 3, 3, 3, 3, 3, 3, 3, 3];
        let starts = cuts(&rows, 4);
        assert_eq!(starts.len(), 4);
        let ends = starts.iter().skip(1).copied().chain([rows.len()]);
        let sums: Vec<u64> = starts.iter().zip(ends).map(|(&a, b)| rows[a..b].iter().sum()).collect();
        assert!(sums.iter().all(|&s| s <= 2 * 80 / 4), "{sums:?}");
        assert_eq!(cuts(&[5; 3], 1), [0]);
    }

    #[test]
    fn day_bounds() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
        let day = NaiveDate::from_ymd_opt(2024, 3, 17).expect("date").signed_duration_since(epoch).num_days();
        assert_eq!(day_start(day), "2024-03-17");
        assert_eq!(day_start(day + 15), "2024-04-01");
    }
}
