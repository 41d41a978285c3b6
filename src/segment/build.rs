//! Writing a segment from one file's rows (see the module docs for the layout).

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    thread,
};

use arrow::{
    array::{Array, AsArray},
    compute::{cast, BatchCoalescer},
    datatypes::{DataType, Float64Type, SchemaRef, TimeUnit, TimestampMicrosecondType},
    record_batch::RecordBatch,
};
use parquet::{
    arrow::ArrowWriter,
    basic::Compression,
    file::{
        metadata::KeyValue,
        properties::{EnabledStatistics, WriterProperties},
    },
};

use super::{
    histogram::Counter, paths, Group, Segment, CHUNK_ROWS, DISTANCE, HOURS_A_DAY, HOUR_US, INDEX_KEY, PICKUP,
    SHARED_ROWS,
};
use crate::error::{Error, Result};

/// The flag column the build query adds to taxi rows: the row breaks the default physics rule.
/// It becomes the groups' `outlier` class and is not stored as a column.
pub const OUTLIER_COLUMN: &str = "_bridge_outlier";
/// The flag column the build query adds to taxi rows: the row belongs to its day's top tier
/// (see the module docs). It becomes the groups' `top` and is not stored as a column.
pub const TOP_COLUMN: &str = "_bridge_top";

/// What a taxi row's group is: its pickup span (first hour since the epoch, and hours: a day for
/// outliers, else one), top tier, outlier.
type Key = (Option<(i64, u32)>, bool, bool);

/// Writes segment `name` in `dir`. Taxi rows (those carrying [`OUTLIER_COLUMN`] and
/// [`TOP_COLUMN`]) must be pushed in segment order: by pickup date; within it the day's
/// outliers, then the top tier's rows by pickup hour, then the other tier's by pickup hour; each
/// group by distance descending NULLs last (the pipeline's build query produces them so).
/// Other rows are stored as they come, with no groups and no keys.
pub struct Builder {
    writer: Writer,
    /// Taxi rows: the columns to store and the two flags' indexes.
    taxi: Option<(Vec<usize>, usize, usize)>,
    dir: PathBuf,
    name: String,
    tmp: (PathBuf, PathBuf),
}

impl Builder {
    /// Starts a segment whose rows have schema `full`.
    pub fn new(full: SchemaRef, dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::internal)?;
        let (data_path, keys_path) = paths(dir, name);
        let tmp = (data_path.with_extension("parquet.part"), keys_path.with_extension("keys.part"));
        let taxi = match (full.index_of(OUTLIER_COLUMN), full.index_of(TOP_COLUMN)) {
            (Ok(flag), Ok(top)) => {
                let keep = (0..full.fields().len()).filter(|&i| i != flag && i != top).collect::<Vec<usize>>();
                Some((keep, flag, top))
            }
            _ => None,
        };
        let schema = match &taxi {
            Some((keep, _, _)) => Arc::new(full.project(keep)?),
            None => full,
        };
        let props = WriterProperties::builder()
            // LZ4 rather than ZSTD: 1.86× the source Parquet instead of 1.80×, but decoding
            // sets up no ZSTD contexts per column chunk (their `cpuid` is a VM exit here) and is
            // faster besides (README, "Local storage").
            .set_compression(Compression::LZ4_RAW)
            .set_max_row_group_row_count(Some(CHUNK_ROWS))
            // Row-group statistics (DuckDB skips row groups with them), no page indexes: the
            // tickets read whole row groups, and the footer stays small.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .build();
        let data = File::create(&tmp.0).map_err(Error::internal)?;
        let keys = match taxi {
            Some(_) => Some(BufWriter::new(File::create(&tmp.1).map_err(Error::internal)?)),
            None => None,
        };
        let writer = Writer {
            parquet: ArrowWriter::try_new(data, schema.clone(), Some(props))?,
            keys,
            row: 0,
            groups: Vec::new(),
            run: None,
            counter: Counter::default(),
            coalescer: BatchCoalescer::new(schema, CHUNK_ROWS),
        };
        Ok(Builder { writer, taxi, dir: dir.to_path_buf(), name: name.to_string(), tmp })
    }

    /// Appends the next rows.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let Some((keep, flag, top)) = &self.taxi else {
            self.writer.coalescer.push_batch(batch)?;
            return self.writer.drain();
        };
        let (flags, tops) = (batch.column(*flag).as_boolean().clone(), batch.column(*top).as_boolean().clone());
        let batch = batch.project(keep)?;
        let pickups = micros(&batch, PICKUP)?;
        let mut start = 0;
        let set = |b: &arrow::array::BooleanArray, i: usize| b.is_valid(i) && b.value(i);
        let key_of = |i: usize| -> Key {
            let outlier = set(&flags, i);
            let hour = pickups.is_valid(i).then(|| pickups.value(i).div_euclid(HOUR_US));
            // A day's outliers are one group: they are few, and the outliers query reads them all.
            let span = hour.map(|h| match outlier {
                true => (h - h.rem_euclid(HOURS_A_DAY), HOURS_A_DAY as u32),
                false => (h, 1),
            });
            (span, set(&tops, i), outlier)
        };
        for i in 1..=batch.num_rows() {
            if i == batch.num_rows() || key_of(i) != key_of(start) {
                self.writer.push(key_of(start), batch.slice(start, i - start))?;
                start = i;
            }
        }
        Ok(())
    }

    /// Completes the files, renames them into place (the data file last: a segment whose data
    /// file exists is whole) and opens the segment.
    pub fn finish(self) -> Result<Arc<Segment>> {
        let Builder { writer, taxi, dir, name, tmp } = self;
        let counted = writer.finish()?;
        let (data_path, keys_path) = paths(&dir, &name);
        if taxi.is_some() {
            std::fs::rename(&tmp.1, &keys_path).map_err(Error::internal)?;
        }
        std::fs::rename(&tmp.0, &data_path).map_err(Error::internal)?;
        let segment = Segment::open(&dir, &name)?;
        segment.set_histogram(counted.finish());
        Ok(segment)
    }
}

/// Batches in flight between the producer and a [`Background`] builder (DuckDB's chunks are 2,048
/// rows: a few hundred KB).
const IN_FLIGHT: usize = 8;

/// A [`Builder`] on its own thread, so that producing rows (DuckDB's sort) and encoding them
/// (Parquet pages, compression) use both cores: the writer measured 36 % of ingest CPU, all of it on
/// the thread that also ran DuckDB.
///
/// Dropped before [`Background::finish`] (the producer failed), the writer abandons the segment:
/// nothing is renamed into place.
pub struct Background {
    tx: Option<mpsc::SyncSender<Option<RecordBatch>>>,
    writer: Option<thread::JoinHandle<Result<Arc<Segment>>>>,
}

impl Builder {
    /// Moves the builder to a thread of its own; [`Background::push`] hands it batches.
    pub fn spawn(self) -> Result<Background> {
        let (tx, rx) = mpsc::sync_channel::<Option<RecordBatch>>(IN_FLIGHT);
        let writer = thread::Builder::new()
            .name("segment-writer".into())
            .spawn(move || {
                let mut builder = self;
                for message in rx {
                    match message {
                        Some(batch) => builder.push(batch)?,
                        None => return builder.finish(),
                    }
                }
                Err(Error::internal("the segment's rows stopped before their end"))
            })
            .map_err(Error::internal)?;
        Ok(Background { tx: Some(tx), writer: Some(writer) })
    }
}

impl Background {
    /// Appends the next rows (in the order [`Builder::push`] needs). A failed writer's error
    /// comes back here.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        match self.tx.as_ref().map(|tx| tx.send(Some(batch))) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.join().err().unwrap_or_else(|| Error::internal("the segment writer stopped early"))),
        }
    }

    /// Waits for the writer to complete the segment.
    pub fn finish(mut self) -> Result<Arc<Segment>> {
        if let Some(tx) = &self.tx {
            let _ = tx.send(None);
        }
        self.join()
    }

    fn join(&mut self) -> Result<Arc<Segment>> {
        self.tx = None;
        let writer = self.writer.take().ok_or_else(|| Error::internal("the segment writer was joined twice"))?;
        writer.join().map_err(|_| Error::internal("the segment writer panicked"))?
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.join();
        }
    }
}

/// A timestamp column as microseconds.
pub(super) fn micros(batch: &RecordBatch, name: &str) -> Result<arrow::array::TimestampMicrosecondArray> {
    let col = batch.column_by_name(name).ok_or_else(|| Error::internal(format!("segment rows lack {name}")))?;
    Ok(cast(col, &DataType::Timestamp(TimeUnit::Microsecond, None))?.as_primitive::<TimestampMicrosecondType>().clone())
}

struct Writer {
    parquet: ArrowWriter<File>,
    /// Taxi segments: the distance of every row, in row order (NULL = NaN).
    keys: Option<BufWriter<File>>,
    row: u64,
    groups: Vec<Group>,
    /// The open run (pickup day, top tier) and its rows so far.
    run: Option<((Option<i64>, bool), u64)>,
    coalescer: BatchCoalescer,
    /// Taxi segments: the distances counted by value.
    counter: Counter,
}

impl Writer {
    /// Appends taxi rows that all belong to group `key`.
    fn push(&mut self, (span, top, outlier): Key, rows: RecordBatch) -> Result<()> {
        let hour = span.map(|(h, _)| h);
        if self.groups.last().is_none_or(|g| (g.hour, g.top, g.outlier) != (hour, top, outlier)) {
            let run = (hour.map(|h| h.div_euclid(HOURS_A_DAY)), top);
            if self.run.is_none_or(|(r, _)| r != run) {
                // A small run shares its row group with the next (see the module docs).
                if self.run.is_some_and(|(_, n)| n >= SHARED_ROWS) {
                    self.flush()?;
                }
                self.run = Some((run, 0));
            }
            let hours = span.map_or(1, |(_, n)| n);
            self.groups.push(Group { hour, hours, top, outlier, start: self.row, rows: 0, with_distance: 0 });
        }
        if let Some((_, n)) = &mut self.run {
            *n += rows.num_rows() as u64;
        }
        let distance =
            rows.column_by_name(DISTANCE).ok_or_else(|| Error::internal("segment rows lack trip_distance"))?;
        let distance = cast(distance, &DataType::Float64)?;
        let distance = distance.as_primitive::<Float64Type>();
        let keys = self.keys.as_mut().ok_or_else(|| Error::internal("taxi rows without a keys file"))?;
        for i in 0..distance.len() {
            let d = if distance.is_valid(i) { distance.value(i) } else { f64::NAN };
            self.counter.add(d);
            keys.write_all(&d.to_le_bytes()).map_err(Error::internal)?;
        }
        let n = rows.num_rows();
        let group = self.groups.last_mut().ok_or_else(|| Error::internal("no open group"))?;
        group.rows += n as u64;
        group.with_distance += (n - distance.null_count()) as u64;
        self.row += n as u64;
        self.coalescer.push_batch(rows)?;
        self.drain()
    }

    /// Writes each completed batch as its own row group, so batch `i` of the segment is row
    /// group `i` of the Parquet file.
    fn drain(&mut self) -> Result<()> {
        while let Some(b) = self.coalescer.next_completed_batch() {
            self.parquet.write(&b)?;
            self.parquet.flush()?;
        }
        Ok(())
    }

    /// Closes the open group: its last batch may be short.
    fn flush(&mut self) -> Result<()> {
        self.coalescer.finish_buffered_batch()?;
        self.drain()
    }

    /// Completes the files; returns the distances counted.
    fn finish(mut self) -> Result<Counter> {
        self.flush()?;
        if self.keys.is_some() {
            let index = serde_json::to_string(&self.groups).map_err(Error::internal)?;
            self.parquet.append_key_value_metadata(KeyValue::new(INDEX_KEY.to_string(), index));
        }
        let data = self.parquet.into_inner()?;
        data.sync_data().map_err(Error::internal)?;
        if let Some(keys) = self.keys {
            keys.into_inner()
                .map_err(|e| Error::internal(e.error().to_string()))?
                .sync_data()
                .map_err(Error::internal)?;
        }
        Ok(self.counter)
    }
}
