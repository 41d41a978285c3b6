//! `scan`: bulk export of the trips picked up in a range, read straight from the segments.
//! Rows come grouped by file and pickup day. What a scan decodes stays in the decoded cache only
//! for files that take at most half of it (`--decoded-cache-bytes`): a scan of a file that would
//! not fit would only push out what other queries reuse, while one that fits is served from
//! memory the next time, with nothing to decode.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use super::{
    manifest_metadata,
    native::{row_bytes, Emitter, Job},
    range::Range,
    read::{micros, pickup_mask, project, read_masked, Aligner},
    require_tlc,
};
use crate::{
    catalog::Catalog,
    error::Result,
    proto::Scan,
    segment::{decoded_cache_bytes, Cover, CHUNK_ROWS},
};

pub fn plan(s: Scan, catalog: &Catalog) -> Result<Job> {
    let ds = catalog.dataset(&s.dataset)?;
    let snap = ds.snapshot();
    require_tlc(&ds.name, &snap, "scan")?;
    let range = s.range.as_ref().map(|r| Range::parse(&r.from, &r.to)).transpose()?.unwrap_or_default();
    let target = project(&ds.name, &snap, &s.columns)?;
    super::split::check(s.slice.as_ref(), &ds.name, &snap, &range)?;
    let dataset = ds.name.clone();
    Ok(Box::new(move |emit: &mut Emitter| {
        let schema = Arc::new(target.as_ref().clone().with_metadata(manifest_metadata(&dataset, &snap)));
        if !emit.start(schema, s.limit) {
            return Ok(());
        }
        let (from, to) = micros(&range);
        // A projection decodes only its columns.
        let names: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
        let columns = (!s.columns.is_empty()).then_some(names.as_slice());
        // Whole row groups are decoded as many at once as a message holds (see `scan_rows`).
        let unit = emit.message_rows() / CHUNK_ROWS;
        // One segment pinned at a time: a long range never needs every file local at once.
        for slot in &snap.segments {
            if !slot.touches(from, to) {
                continue;
            }
            let pin = slot.pin()?;
            let seg = &pin.map()?;
            // Aligned by the batches' own schema: a projection decodes a subset of the columns.
            let aligner = Aligner::new(seg.schema(), target.clone());
            let rows: u64 = seg.groups().iter().map(|g| g.rows).sum();
            let keep = rows * row_bytes(seg.schema()) as u64 * 2 <= decoded_cache_bytes();
            let align = |batch: RecordBatch| match columns {
                None => aligner.apply(&batch),
                Some(_) => Aligner::new(&batch.schema(), target.clone()).apply(&batch),
            };
            // Runs of whole groups are read as one span of rows (whole row groups, as decoded);
            // a partly covered group through its in-range mask.
            let mut whole: Option<(u64, u64)> = None;
            let groups = seg.meeting(from, to).map(|(_, g)| Some(g)).chain([None]);
            for g in groups {
                let cover = g.map_or(Cover::None, |g| g.cover(from, to));
                if let (Cover::Full, Some(g), Some((_, end))) = (cover, g, whole.as_mut()) {
                    *end = g.start + g.rows;
                    continue;
                }
                if let Some(rows) = whole.take() {
                    for batch in seg.scan_rows(rows, columns, keep, unit) {
                        if !emit.push(align(batch?)?)? {
                            return Ok(());
                        }
                    }
                }
                let Some(g) = g else { break };
                match cover {
                    Cover::None => {}
                    Cover::Full => whole = Some((g.start, g.start + g.rows)),
                    Cover::Partial => {
                        let inside = pickup_mask(seg, g, g.rows as usize, from, to)?;
                        for batch in read_masked(seg, g, g.rows as usize, Some(&inside), (columns, keep)) {
                            if !emit.push(align(batch?)?)? {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }))
}
