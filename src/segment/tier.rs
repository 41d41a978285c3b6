//! The local tier: which segments have their files on local disk, bounded by `--cache-max-bytes`.
//!
//! A [`Slot`] is what a dataset's snapshot holds for each file: the segment's name, row count and
//! group index always, its open files only while they are local. A query *pins* the segments it
//! reads ([`Slot::pin`]): a cold one is built again first (the slot's `rebuild`, which fetches and
//! converts the file once more), and a pinned one is never evicted. When the local bytes pass the
//! bound, the least recently used unpinned segments are evicted: their files are closed and
//! removed; among replicas, those another replica owns go first ([`Slot::own`]). A retired segment (its file replaced or gone) is removed once the last query holding
//! it ends.

use std::{
    ops::Deref,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
};

use super::{Cover, Days, Extent, Group, Segment};
use crate::error::{Error, Result};

/// Builds a slot's segment again from its source.
pub type Rebuild = Box<dyn Fn() -> Result<Arc<Segment>> + Send + Sync>;

/// The bound and the slots it applies to.
#[derive(Default)]
pub struct Tier {
    max_bytes: Option<u64>,
    slots: Mutex<Vec<Weak<Slot>>>,
    clock: AtomicU64,
    evictions: AtomicU64,
    rebuilds: AtomicU64,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier").field("max_bytes", &self.max_bytes).finish()
    }
}

/// What `status` and the metrics show of the tier.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// Bytes of segment files on local disk.
    pub bytes: u64,
    pub max_bytes: Option<u64>,
    pub segments: usize,
    pub local_segments: usize,
    pub evictions: u64,
    pub rebuilds: u64,
}

impl Tier {
    pub fn new(max_bytes: Option<u64>) -> Arc<Self> {
        Arc::new(Tier { max_bytes, ..Tier::default() })
    }

    /// Makes a slot for `segment`, just built and local, that `rebuild` can build again. Nothing
    /// is evicted until the caller calls [`Tier::enforce`] (once the segment is published).
    pub fn admit(self: &Arc<Self>, segment: Arc<Segment>, rebuild: Rebuild) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            name: segment.name().to_string(),
            rows: segment.rows(),
            taxi: segment.is_taxi(),
            groups: segment.groups().to_vec(),
            extent: segment.extent(),
            days: segment.days().clone(),
            schema: segment.schema().clone(),
            anchor: AtomicBool::new(false),
            owned: AtomicBool::new(true),
            local: Mutex::new(Some(segment)),
            used: AtomicU64::new(self.tick()),
            retired: AtomicBool::new(false),
            rebuild,
            tier: Arc::downgrade(self),
        });
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|w| w.strong_count() > 0);
            slots.push(Arc::downgrade(&slot));
        }
        slot
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn live(&self) -> Vec<Arc<Slot>> {
        self.slots.lock().map(|s| s.iter().filter_map(Weak::upgrade).collect()).unwrap_or_default()
    }

    pub fn usage(&self) -> Usage {
        let live = self.live();
        let local: Vec<u64> = live.iter().filter_map(|s| s.local_bytes()).collect();
        Usage {
            bytes: local.iter().sum(),
            max_bytes: self.max_bytes,
            segments: live.len(),
            local_segments: local.len(),
            evictions: self.evictions.load(Ordering::Relaxed),
            rebuilds: self.rebuilds.load(Ordering::Relaxed),
        }
    }

    /// Evicts the least recently used unpinned segments until the local bytes fit the bound.
    pub fn enforce(&self) {
        let Some(max) = self.max_bytes else { return };
        let mut live = self.live();
        let mut bytes: u64 = live.iter().filter_map(|s| s.local_bytes()).sum();
        if bytes <= max {
            return;
        }
        // Files another replica owns go first, then the least recently used.
        live.sort_by_key(|s| (s.owned.load(Ordering::Relaxed), s.used.load(Ordering::Relaxed)));
        for slot in live {
            if bytes <= max {
                break;
            }
            if let Some(freed) = slot.evict() {
                bytes -= freed;
                self.evictions.fetch_add(1, Ordering::Relaxed);
                crate::metrics::changed();
            }
        }
    }
}

/// A segment a query reads: its files stay local until this is dropped; then the tier is brought
/// back within its bound (what running queries hold may pass it meanwhile).
pub struct Pinned {
    /// Always set; taken only on drop, so the tier sees the pin released.
    segment: Option<Arc<Segment>>,
    tier: Weak<Tier>,
}

impl Deref for Pinned {
    type Target = Segment;
    fn deref(&self) -> &Segment {
        #[allow(clippy::expect_used)]
        self.segment.as_deref().expect("a pin holds its segment until dropped")
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.segment.take();
        if let Some(t) = self.tier.upgrade() {
            t.enforce();
        }
    }
}

/// One file's segment, local or not (see the module docs).
pub struct Slot {
    name: String,
    rows: u64,
    taxi: bool,
    groups: Vec<Group>,
    extent: Extent,
    days: Days,
    schema: arrow::datatypes::SchemaRef,
    /// Never evicted: DuckDB reads this file to bind its dataset's view (see [`Slot::anchor`]).
    anchor: AtomicBool,
    /// This replica owns the file (always, alone): kept before the files other replicas own.
    owned: AtomicBool,
    local: Mutex<Option<Arc<Segment>>>,
    used: AtomicU64,
    retired: AtomicBool,
    rebuild: Rebuild,
    tier: Weak<Tier>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("name", &self.name).field("rows", &self.rows).finish()
    }
}

impl Slot {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn is_taxi(&self) -> bool {
        self.taxi
    }

    /// The schema the segment was written with.
    pub fn schema(&self) -> &arrow::datatypes::SchemaRef {
        &self.schema
    }

    /// Keeps (or stops keeping) the files local whatever the bound: the first file of each set
    /// of files with one schema is what DuckDB reads to bind the dataset's view, so it must be
    /// there whenever a view is made or a query bound.
    pub fn anchor(&self, anchored: bool) {
        self.anchor.store(anchored, Ordering::SeqCst);
    }

    /// Whether this replica owns the file (rendezvous hashing among the live replicas): the
    /// local tier evicts the files other replicas own first.
    pub fn own(&self, owned: bool) {
        self.owned.store(owned, Ordering::Relaxed);
    }

    /// Whether the files are on local disk now.
    pub fn is_local(&self) -> bool {
        self.local_bytes().is_some()
    }

    /// The group index (kept while the files are evicted, so queries pin only what they read).
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// What its groups' pickups span (see [`Extent::cover`]).
    pub fn extent(&self) -> Extent {
        self.extent
    }

    /// Whether any of its rows was picked up in `[from, to)` (µs).
    pub fn touches(&self, from: Option<i64>, to: Option<i64>) -> bool {
        match self.extent.cover(from, to) {
            Cover::None => false,
            Cover::Full => true,
            Cover::Partial => {
                let (timed, nulls) = self.days.meeting(from, to);
                timed.chain(nulls).any(|i| self.groups[i].cover(from, to) != Cover::None)
            }
        }
    }

    /// The segment with its files local, built again first if they were evicted. Blocks (a
    /// rebuild fetches the file): call it from a blocking thread. The files stay until the
    /// returned handle and every clone of it are dropped.
    pub fn pin(&self) -> Result<Pinned> {
        let segment = self.local()?;
        Ok(Pinned { segment: Some(segment), tier: self.tier.clone() })
    }

    /// The segment pinned if its files are on local disk now; None if they were evicted. Never
    /// rebuilds, so never blocks.
    pub fn pin_local(&self) -> Option<Pinned> {
        self.mark_used();
        let segment = self.local.lock().ok()?.clone()?;
        Some(Pinned { segment: Some(segment), tier: self.tier.clone() })
    }

    /// Rows of the days `[from, to)` (µs) meets: at least the rows picked up in it.
    pub fn rows_meeting(&self, from: Option<i64>, to: Option<i64>) -> u64 {
        let (timed, nulls) = self.days.meeting(from, to);
        self.days.rows(timed) + self.days.rows(nulls)
    }

    /// Marks the slot used now (the tier evicts the least recently used first).
    fn mark_used(&self) -> Option<Arc<Tier>> {
        let tier = self.tier.upgrade();
        if let Some(t) = &tier {
            self.used.store(t.tick(), Ordering::Relaxed);
        }
        tier
    }

    fn local(&self) -> Result<Arc<Segment>> {
        let tier = self.mark_used();
        let mut local = self.local.lock().map_err(|_| Error::internal("segment slot poisoned"))?;
        if let Some(s) = local.as_ref() {
            return Ok(s.clone());
        }
        let segment = (self.rebuild)()?;
        if segment.rows() != self.rows {
            segment.retire();
            return Err(Error::internal(format!(
                "segment {} came back with {} rows instead of {}",
                self.name,
                segment.rows(),
                self.rows
            )));
        }
        if self.retired.load(Ordering::SeqCst) {
            // For a query still reading an old version: removed when it ends.
            segment.retire();
            return Ok(segment);
        }
        *local = Some(segment.clone());
        drop(local);
        if let Some(t) = tier {
            t.rebuilds.fetch_add(1, Ordering::Relaxed);
            t.enforce();
        }
        Ok(segment)
    }

    /// Bytes on local disk, or None when evicted.
    fn local_bytes(&self) -> Option<u64> {
        self.local.lock().ok()?.as_ref().map(|s| s.bytes())
    }

    /// Closes and removes the files if no query holds them; returns the bytes freed.
    fn evict(&self) -> Option<u64> {
        if self.anchor.load(Ordering::SeqCst) {
            return None;
        }
        let mut local = self.local.try_lock().ok()?;
        let held = local.as_ref().is_some_and(|s| Arc::strong_count(s) > 1);
        if held {
            return None;
        }
        let segment = local.take()?;
        segment.retire();
        Some(segment.bytes())
    }

    /// The file was replaced or removed: its segment goes once no query holds it.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        if let Ok(mut local) = self.local.lock() {
            if let Some(s) = local.take() {
                s.retire();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::Int64Array,
        datatypes::{DataType, Field, Schema},
        record_batch::RecordBatch,
    };

    use super::*;
    use crate::segment::Builder;

    fn segment(dir: &std::path::Path, name: &str) -> Arc<Segment> {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let mut b = Builder::new(schema.clone(), dir, name).expect("builder");
        let values = Int64Array::from_iter_values(0..10_000);
        b.push(RecordBatch::try_new(schema, vec![Arc::new(values)]).expect("batch")).expect("push");
        b.finish().expect("finish")
    }

    #[test]
    fn files_other_replicas_own_are_evicted_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = segment(dir.path(), "probe").bytes();
        let tier = Tier::new(Some(2 * bytes));
        let slots: Vec<Arc<Slot>> = ["a", "b", "c"]
            .iter()
            .map(|n| tier.admit(segment(dir.path(), n), Box::new(|| Err(Error::internal("no rebuild")))))
            .collect();
        // "a" is the least recently used, but this replica owns it; "b" is another's.
        slots[1].own(false);
        tier.enforce();
        let local: Vec<bool> = slots.iter().map(|s| s.is_local()).collect();
        assert_eq!(local, [true, false, true]);
        // Alone (everything owned), the least recently used goes.
        slots[1].own(true);
        let tier = Tier::new(Some(2 * bytes));
        let slots: Vec<Arc<Slot>> = ["d", "e", "f"]
            .iter()
            .map(|n| tier.admit(segment(dir.path(), n), Box::new(|| Err(Error::internal("no rebuild")))))
            .collect();
        tier.enforce();
        assert_eq!(slots.iter().map(|s| s.is_local()).collect::<Vec<_>>(), [false, true, true]);
    }
}
