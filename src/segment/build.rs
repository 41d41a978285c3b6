//! Writing a segment from one file's sorted rows (see the module docs for the layout).

use std::{fs::File, io::BufWriter, os::unix::fs::FileExt, path::Path, sync::Arc};

use arrow::{
    array::{Array, AsArray},
    compute::{cast, BatchCoalescer},
    datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType},
    ipc::writer::FileWriter,
    record_batch::RecordBatch,
};

use super::{paths, Group, Segment, CHUNK_ROWS, DAY_US, INDEX_KEY};
use crate::error::{Error, Result};

/// The flag column the build query adds: the row breaks the default physics rule.
pub const OUTLIER_COLUMN: &str = "_bridge_outlier";
const PICKUP: &str = "tpep_pickup_datetime";
const DROPOFF: &str = "tpep_dropoff_datetime";
const DISTANCE: &str = "trip_distance";

/// Writes segment `name` in `dir` from a file's rows, pushed in order: by pickup date, outlier
/// first, distance descending NULLs last, each row carrying [`OUTLIER_COLUMN`] (the store's
/// build query produces them so; see `catalog::segments`). `rows` is the row count.
pub struct Builder {
    writer: Writer,
    keep: Vec<usize>,
    flag: usize,
    rows: u64,
    dir: std::path::PathBuf,
    name: String,
    tmp: (std::path::PathBuf, std::path::PathBuf),
}

impl Builder {
    /// Starts a segment whose rows have schema `full` (the file's columns plus the flag).
    pub fn new(full: SchemaRef, rows: u64, dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::internal)?;
        let (data_path, keys_path) = paths(dir, name);
        let tmp = (data_path.with_extension("arrow.tmp"), keys_path.with_extension("keys.tmp"));
        let keep: Vec<usize> = (0..full.fields().len()).filter(|&i| full.field(i).name() != OUTLIER_COLUMN).collect();
        let schema = Arc::new(full.project(&keep)?);
        let flag = full.index_of(OUTLIER_COLUMN)?;
        let writer = Writer {
            ipc: FileWriter::try_new(BufWriter::new(File::create(&tmp.0).map_err(Error::internal)?), &schema)?,
            keys: File::create(&tmp.1).map_err(Error::internal)?,
            total: rows,
            row: 0,
            batches: 0,
            groups: Vec::new(),
            coalescer: BatchCoalescer::new(schema, CHUNK_ROWS),
        };
        Ok(Builder { writer, keep, flag, rows, dir: dir.to_path_buf(), name: name.to_string(), tmp })
    }

    /// Appends the next rows.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let flags = batch.column(self.flag).as_boolean().clone();
        let batch = batch.project(&self.keep)?;
        let pickups = micros(&batch, PICKUP)?;
        let mut start = 0;
        let key_of = |i: usize| {
            let day = pickups.is_valid(i).then(|| pickups.value(i).div_euclid(DAY_US));
            (day, flags.is_valid(i) && flags.value(i))
        };
        for i in 1..=batch.num_rows() {
            if i == batch.num_rows() || key_of(i) != key_of(start) {
                self.writer.push(key_of(start), batch.slice(start, i - start))?;
                start = i;
            }
        }
        Ok(())
    }

    /// Completes the files, renames them into place and opens the segment.
    pub fn finish(self) -> Result<Arc<Segment>> {
        let Builder { writer, rows, dir, name, tmp, .. } = self;
        if writer.row != rows {
            return Err(Error::internal(format!("segment {name}: wrote {} of {rows} rows", writer.row)));
        }
        writer.finish()?;
        let (data_path, keys_path) = paths(&dir, &name);
        std::fs::rename(&tmp.0, &data_path).map_err(Error::internal)?;
        std::fs::rename(&tmp.1, &keys_path).map_err(Error::internal)?;
        Segment::open(&dir, &name)
    }
}

/// A timestamp column as microseconds.
fn micros(batch: &RecordBatch, name: &str) -> Result<arrow::array::TimestampMicrosecondArray> {
    let col = batch.column_by_name(name).ok_or_else(|| Error::internal(format!("segment rows lack {name}")))?;
    Ok(cast(col, &DataType::Timestamp(TimeUnit::Microsecond, None))?.as_primitive::<TimestampMicrosecondType>().clone())
}

struct Writer {
    ipc: FileWriter<BufWriter<File>>,
    keys: File,
    total: u64,
    row: u64,
    batches: u32,
    groups: Vec<Group>,
    coalescer: BatchCoalescer,
}

impl Writer {
    /// Appends rows that all belong to group `key`.
    fn push(&mut self, key: (Option<i64>, bool), rows: RecordBatch) -> Result<()> {
        if self.groups.last().is_none_or(|g| (g.day, g.outlier) != key) {
            self.flush()?;
            self.groups.push(Group {
                day: key.0,
                outlier: key.1,
                start: self.row,
                rows: 0,
                with_distance: 0,
                first_batch: self.batches,
            });
        }
        let distance =
            rows.column_by_name(DISTANCE).ok_or_else(|| Error::internal("segment rows lack trip_distance"))?;
        let distance = cast(distance, &DataType::Float64)?;
        let distance = distance.as_primitive::<arrow::datatypes::Float64Type>();
        let pickup = micros(&rows, PICKUP)?;
        let dropoff = micros(&rows, DROPOFF)?;
        let n = rows.num_rows();
        let ts = |a: &arrow::array::TimestampMicrosecondArray, i| if a.is_valid(i) { a.value(i) } else { i64::MIN };
        let mut buf = Vec::with_capacity(n * 8);
        for (section, value) in [
            (0u64, &(|i| ts(&pickup, i).to_le_bytes()) as &dyn Fn(usize) -> [u8; 8]),
            (1, &|i| ts(&dropoff, i).to_le_bytes()),
            (2, &|i| if distance.is_valid(i) { distance.value(i) } else { f64::NAN }.to_le_bytes()),
        ] {
            buf.clear();
            (0..n).for_each(|i| buf.extend_from_slice(&value(i)));
            self.keys.write_all_at(&buf, (section * self.total + self.row) * 8).map_err(Error::internal)?;
        }
        let group = self.groups.last_mut().ok_or_else(|| Error::internal("no open group"))?;
        group.rows += n as u64;
        group.with_distance += (n - distance.null_count()) as u64;
        self.row += n as u64;
        self.coalescer.push_batch(rows)?;
        self.drain()
    }

    fn drain(&mut self) -> Result<()> {
        while let Some(b) = self.coalescer.next_completed_batch() {
            self.ipc.write(&b)?;
            self.batches += 1;
        }
        Ok(())
    }

    /// Closes the open group: its last batch may be short.
    fn flush(&mut self) -> Result<()> {
        self.coalescer.finish_buffered_batch()?;
        self.drain()
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.ipc.write_metadata(INDEX_KEY, serde_json::to_string(&self.groups).map_err(Error::internal)?);
        self.ipc.finish()?;
        self.keys.sync_data().map_err(Error::internal)?;
        Ok(())
    }
}
