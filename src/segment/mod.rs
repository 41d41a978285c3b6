//! Segments: the read-optimized copy of each ingested file that the built-in tickets read.
//!
//! A segment is two local files written once at ingest, inside the ingest transaction:
//!
//! * `<name>.arrow` — an Arrow IPC file of the file's rows, grouped by pickup day and by the
//!   default physics rule (outliers first), each group sorted by `trip_distance` descending (NULLs
//!   last) and cut into record batches of [`CHUNK_ROWS`]. The group index rides in the footer's
//!   custom metadata.
//! * `<name>.keys` — three little-endian columns in the same row order: pickup µs, dropoff µs
//!   (NULL = `i64::MIN`) and `trip_distance` (NULL = NaN).
//!
//! So the trips above a threshold on a day are a *prefix* of that day's two groups, the default
//! outliers are whole groups, and a threshold needs only the `keys` of the range. Queries read
//! what they return, zero-copy through a per-query read-only mapping, so memory follows the rows
//! being sent.
//! Segments are immutable; a retired segment is unlinked, and queries that still hold it keep
//! reading through their open file handles.

mod build;

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow::{
    buffer::{Buffer, ScalarBuffer},
    datatypes::SchemaRef,
    ipc::{convert::fb_to_schema, reader::FileDecoder, root_as_footer, Block},
    record_batch::RecordBatch,
};
use serde::{Deserialize, Serialize};

pub use build::{Builder, OUTLIER_COLUMN};

use crate::{
    answer::Encoded,
    error::{Error, Result},
};

/// Rows per record batch inside a group (the last batch of a group may be shorter).
pub const CHUNK_ROWS: usize = 12288;
/// Microseconds per day.
pub const DAY_US: i64 = 86_400_000_000;
/// Footer metadata key of the group index.
const INDEX_KEY: &str = "bridge.segment.groups";

/// A run of rows with one pickup day and one default-rule class, sorted by distance descending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Days since 1970-01-01 of the pickup; None for rows without a pickup time.
    pub day: Option<i64>,
    /// Whether these rows break the default physics rule.
    pub outlier: bool,
    /// First row (in the segment's row order).
    pub start: u64,
    pub rows: u64,
    /// Rows with a non-NULL distance: they come first.
    pub with_distance: u64,
    /// The record batch holding the group's first row.
    pub first_batch: u32,
}

impl Group {
    /// How much of this group a pickup range `[from, to)` (µs) covers.
    pub fn cover(&self, from: Option<i64>, to: Option<i64>) -> Cover {
        let Some(day) = self.day else {
            // NULL pickups satisfy no bound, and are in only an unbounded range.
            return if from.is_none() && to.is_none() { Cover::Full } else { Cover::None };
        };
        let (lo, hi) = (day * DAY_US, (day + 1) * DAY_US);
        let (f, t) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        if hi <= f || lo >= t {
            Cover::None
        } else if f <= lo && hi <= t {
            Cover::Full
        } else {
            Cover::Partial
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    None,
    Partial,
    Full,
}

/// Bytes `[offset, offset + len)` of a file as an Arrow buffer over a read-only shared mapping,
/// unmapped when the last array using it is dropped. `populate` faults every page in at once (for
/// a batch about to be sent whole); without it only the pages read are (for binary searches).
fn map(file: &File, offset: u64, len: usize, populate: bool) -> Result<Buffer> {
    map_bytes(file, offset, len, populate).map(Buffer::from)
}

/// The same mapping as [`map`], as `Bytes` (for sending the stored IPC messages as they are).
#[allow(unsafe_code)]
fn map_bytes(file: &File, offset: u64, len: usize, populate: bool) -> Result<bytes::Bytes> {
    if len == 0 {
        return Ok(bytes::Bytes::new());
    }
    let start = offset - offset % page_size();
    // SAFETY: segment files are written once under a temporary name, renamed into place and
    // never modified or truncated afterwards (retiring only unlinks them), so the mapped bytes
    // cannot change or disappear while mapped.
    let mut options = memmap2::MmapOptions::new();
    options.offset(start).len(len + (offset - start) as usize);
    if populate {
        options.populate();
    }
    let mmap = unsafe { options.map(file) }.map_err(Error::internal)?;
    Ok(bytes::Bytes::from_owner(mmap).slice((offset - start) as usize..))
}

fn page_size() -> u64 {
    // Mapping offsets must be multiples of the page size; 64 KiB covers every Linux page size
    // in use (4 KiB, 16 KiB, 64 KiB) and keeps the arithmetic free of libc.
    64 * 1024
}

/// Which column of the keys file.
#[derive(Debug, Clone, Copy)]
enum Key {
    Pickup = 0,
    Dropoff = 1,
    Distance = 2,
}

/// One ingested file's segment. Cheap to share (`Arc`); queries read it through [`Segment::map`].
pub struct Segment {
    name: String,
    data_path: PathBuf,
    keys_path: PathBuf,
    data: File,
    keys: File,
    rows: u64,
    groups: Vec<Group>,
    blocks: Vec<Block>,
    decoder: FileDecoder,
    schema: SchemaRef,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("path", &self.data_path).field("rows", &self.rows).finish()
    }
}

/// The two paths of the segment called `name` in `dir`.
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.arrow")), dir.join(format!("{name}.keys")))
}

/// A segment mapped for one query.
pub struct Mapped<'a> {
    segment: &'a Segment,
    /// The whole keys file: queries binary-search it, so they touch few of its pages.
    keys: Buffer,
}

impl Mapped<'_> {
    pub fn groups(&self) -> &[Group] {
        &self.segment.groups
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.segment.schema
    }

    fn key<T: arrow::datatypes::ArrowNativeType>(&self, key: Key, g: &Group, n: usize) -> ScalarBuffer<T> {
        let n = n.min(g.rows as usize);
        let offset = ((key as u64 * self.segment.rows + g.start) * 8) as usize;
        ScalarBuffer::new(self.keys.clone(), offset / 8, n)
    }

    /// Pickup times (µs, NULL = `i64::MIN`) of the first `n` rows of `g`.
    pub fn pickups(&self, g: &Group, n: usize) -> ScalarBuffer<i64> {
        self.key(Key::Pickup, g, n)
    }

    /// Dropoff times (µs, NULL = `i64::MIN`) of the first `n` rows of `g`.
    pub fn dropoffs(&self, g: &Group, n: usize) -> ScalarBuffer<i64> {
        self.key(Key::Dropoff, g, n)
    }

    /// Distances (NULL = NaN) of the first `n` rows of `g`, in descending order.
    pub fn distances(&self, g: &Group, n: usize) -> ScalarBuffer<f64> {
        self.key(Key::Distance, g, n)
    }

    /// Record batch `i`, decoded in place over its own mapping: the pages leave the process's
    /// memory when the batch has been sent and dropped.
    fn batch(&self, i: usize) -> Result<RecordBatch> {
        let block =
            self.segment.blocks.get(i).ok_or_else(|| Error::internal(format!("segment batch {i} out of range")))?;
        let len = block.metaDataLength() as usize + block.bodyLength() as usize;
        let buf = map(&self.segment.data, block.offset() as u64, len, true)?;
        self.segment.decoder.read_record_batch(block, &buf)?.ok_or_else(|| Error::internal("empty segment block"))
    }

    /// Group `g`'s batches whole, each decoded and also as its IPC message (flatbuffer header and
    /// body, straight from the mapping), for sending without re-encoding.
    pub fn read_encoded(&self, g: &Group) -> impl Iterator<Item = Result<(RecordBatch, Encoded)>> + '_ {
        let first = g.first_batch as usize;
        (0..(g.rows as usize).div_ceil(CHUNK_ROWS)).map(move |b| self.encoded(first + b))
    }

    fn encoded(&self, i: usize) -> Result<(RecordBatch, Encoded)> {
        let block =
            self.segment.blocks.get(i).ok_or_else(|| Error::internal(format!("segment batch {i} out of range")))?;
        let (meta, body) = (block.metaDataLength() as usize, block.bodyLength() as usize);
        let bytes = map_bytes(&self.segment.data, block.offset() as u64, meta + body, true)?;
        let batch = self
            .segment
            .decoder
            .read_record_batch(block, &Buffer::from(bytes.clone()))?
            .ok_or_else(|| Error::internal("empty segment block"))?;
        // The block's metadata: [0xFFFFFFFF continuation] [i32 length] [flatbuffer Message, padded].
        let prefix = if bytes.get(..4) == Some(&[0xff; 4][..]) { 8 } else { 4 };
        let header = bytes.slice(prefix.min(meta)..meta);
        let body = bytes.slice(meta..meta + body);
        let encoded = Encoded { rows: batch.num_rows(), header, body, batch: batch.clone() };
        Ok((batch, encoded))
    }

    /// Rows `[lo, hi)` of group `g` as record batches of at most [`CHUNK_ROWS`], read lazily.
    pub fn read(&self, g: &Group, lo: usize, hi: usize) -> impl Iterator<Item = Result<RecordBatch>> + '_ {
        let hi = hi.min(g.rows as usize);
        let first = g.first_batch as usize;
        (lo / CHUNK_ROWS..hi.div_ceil(CHUNK_ROWS)).filter(move |_| lo < hi).map(move |b| {
            let batch = self.batch(first + b)?;
            let base = b * CHUNK_ROWS;
            let (from, to) = (lo.max(base) - base, (hi - base).min(batch.num_rows()));
            Ok(batch.slice(from, to.saturating_sub(from)))
        })
    }
}

impl Segment {
    /// Opens a finished segment: reads the IPC footer (blocks, schema, group index).
    pub fn open(dir: &Path, name: &str) -> Result<Arc<Self>> {
        let (data_path, keys_path) = paths(dir, name);
        let data = File::open(&data_path).map_err(Error::internal)?;
        let keys = File::open(&keys_path).map_err(Error::internal)?;
        let len = data.metadata().map_err(Error::internal)?.len();
        let corrupt = |what: &str| Error::internal(format!("segment {}: {what}", data_path.display()));
        let mut tail = [0u8; 10];
        if len < 10 {
            return Err(corrupt("too short"));
        }
        data.read_exact_at(&mut tail, len - 10).map_err(Error::internal)?;
        let footer_len = arrow::ipc::reader::read_footer_length(tail)? as u64;
        let mut footer = vec![0u8; footer_len as usize];
        data.read_exact_at(&mut footer, len.checked_sub(10 + footer_len).ok_or_else(|| corrupt("bad footer"))?)
            .map_err(Error::internal)?;
        let footer = root_as_footer(&footer).map_err(|e| corrupt(&e.to_string()))?;
        let schema = Arc::new(fb_to_schema(footer.schema().ok_or_else(|| corrupt("no schema"))?));
        let blocks: Vec<Block> = footer.recordBatches().ok_or_else(|| corrupt("no batches"))?.iter().copied().collect();
        let index = footer
            .custom_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key() == Some(INDEX_KEY)).and_then(|kv| kv.value()))
            .ok_or_else(|| corrupt("no group index"))?;
        let groups: Vec<Group> = serde_json::from_str(index).map_err(|e| corrupt(&e.to_string()))?;
        let rows = groups.iter().map(|g| g.rows).sum::<u64>();
        if keys.metadata().map_err(Error::internal)?.len() != rows * 24 {
            return Err(corrupt("keys file does not match the row count"));
        }
        let decoder = FileDecoder::new(schema.clone(), footer.version());
        Ok(Arc::new(Segment {
            name: name.to_string(),
            data_path,
            keys_path,
            data,
            keys,
            rows,
            groups,
            blocks,
            decoder,
            schema,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The schema the segment was written with (the dataset's schema at ingest time).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Maps the segment for one query: the keys file whole, each record batch on its own when
    /// read. Batches reference their mapping (zero-copy) until they are dropped, so memory
    /// follows the rows in flight, not what the dataset or the query's result holds.
    pub fn map(&self) -> Result<Mapped<'_>> {
        Ok(Mapped { segment: self, keys: map(&self.keys, 0, self.rows as usize * 24, false)? })
    }

    /// Removes the files. Queries holding this segment keep reading through their open handles.
    pub fn retire(&self) {
        for p in [&self.data_path, &self.keys_path] {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::warn!(path = %p.display(), error = %e, "could not remove a retired segment");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(day: Option<i64>) -> Group {
        Group { day, outlier: false, start: 0, rows: 1, with_distance: 1, first_batch: 0 }
    }

    #[test]
    fn cover_follows_half_open_ranges() {
        let d = 19_358; // 2023-01-01
        let g = group(Some(d));
        assert_eq!(g.cover(None, None), Cover::Full);
        assert_eq!(g.cover(Some(d * DAY_US), Some((d + 1) * DAY_US)), Cover::Full);
        assert_eq!(g.cover(Some(d * DAY_US + 1), None), Cover::Partial);
        assert_eq!(g.cover(Some((d + 1) * DAY_US), None), Cover::None);
        assert_eq!(g.cover(None, Some(d * DAY_US)), Cover::None);
        assert_eq!(group(None).cover(None, None), Cover::Full);
        assert_eq!(group(None).cover(Some(0), None), Cover::None);
    }
}
