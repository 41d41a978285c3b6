//! `scan`: bulk export of the trips picked up in a range, read straight from the segments. Days
//! wholly inside the range go out as the segment stores them: its Arrow IPC messages, mapped and
//! sent with no decode, no encode and no copy before gRPC's. Rows come grouped by file and
//! pickup day.

use std::sync::Arc;

use arrow::{array::BooleanArray, datatypes::Schema};

use super::{
    manifest_metadata,
    native::{Emitter, Job},
    p90::map_all,
    range::Range,
    read::{in_range, micros, project, read_masked, Aligner},
    require_tlc,
};
use crate::{catalog::Catalog, error::Result, proto::Scan, segment::Cover};

/// Whether batches of `stored` can go out as batches of `target` byte for byte: the same
/// columns, in the same order, of the same types.
fn same_columns(stored: &Schema, target: &Schema) -> bool {
    stored.fields().len() == target.fields().len()
        && stored
            .fields()
            .iter()
            .zip(target.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

pub fn plan(s: Scan, catalog: &Catalog) -> Result<Job> {
    let ds = catalog.dataset(&s.dataset)?;
    let snap = ds.snapshot();
    require_tlc(&ds.name, &snap, "scan")?;
    let range = s.range.as_ref().map(|r| Range::parse(&r.from, &r.to)).transpose()?.unwrap_or_default();
    let target = project(&ds.name, &snap, &s.columns)?;
    let dataset = ds.name.clone();
    Ok(Box::new(move |emit: &mut Emitter| {
        let schema = Arc::new(target.as_ref().clone().with_metadata(manifest_metadata(&dataset, &snap)));
        if !emit.start(schema, s.limit) {
            return Ok(());
        }
        let (from, to) = micros(&range);
        for seg in &map_all(&snap)? {
            let aligner = Aligner::new(seg.schema(), target.clone());
            // A segment laid out exactly as the answer can send whole groups as they are stored.
            let as_stored = same_columns(seg.schema(), &target);
            for g in seg.groups() {
                let cover = g.cover(from, to);
                if cover == Cover::None {
                    continue;
                }
                if as_stored && cover == Cover::Full {
                    for piece in seg.read_encoded(g) {
                        let (batch, encoded) = piece?;
                        if !emit.push_encoded(batch, encoded)? {
                            return Ok(());
                        }
                    }
                    continue;
                }
                let inside = (cover == Cover::Partial).then(|| {
                    BooleanArray::from_iter(
                        seg.pickups(g, g.rows as usize).iter().map(|&t| Some(in_range(t, from, to))),
                    )
                });
                for batch in read_masked(seg, g, g.rows as usize, inside.as_ref()) {
                    if !emit.push(aligner.apply(&batch?)?)? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }))
}
