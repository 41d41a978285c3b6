//! Running a built-in ticket over segments: a blocking job feeding the same bounded channel as
//! DuckDB queries, so Flight encoding, back-pressure and cancellation are shared. A job known to
//! be small runs on the caller's task instead, its answer held until it ends ([`Place::Inline`]).

use std::sync::Arc;

use arrow::{
    compute::BatchCoalescer,
    datatypes::{Schema, SchemaRef},
    record_batch::RecordBatch,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    engine::QueryStream,
    error::{Error, Result},
};

/// A built-in query: computes what it needs, calls [`Emitter::start`] with the result schema,
/// then [`Emitter::push`]es batches until done or told to stop.
pub type Job = Box<dyn FnOnce(&mut Emitter) -> Result<()> + Send>;

/// Where a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// On the blocking pool, its batches streamed through a bounded channel as they come.
    Pool,
    /// On the caller's task, its answer held until the job ends. For jobs over segments already
    /// on local disk whose answer is small and whose work is bounded, building nothing slow (the
    /// planner checks): measured with 64 clients asking `p90` for a day, handing the job to a
    /// pool thread and its batches back cost more CPU (wake-ups and context switches) than much
    /// of the work itself.
    Inline,
}

/// Rows of the days a range meets (an upper bound of the rows in it) that a job may read inline:
/// about two modern days.
pub const INLINE_ROWS: u64 = 1 << 18;

/// Rows an inline job may answer with (about 4 MB of TLC trips).
pub const INLINE_ANSWER_ROWS: u64 = 1 << 15;

/// How a job's rows are cut into messages: at most `batch_rows` rows (the server's setting) of
/// about `message_bytes` (2 MiB, or what the client said it accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub batch_rows: usize,
    pub message_bytes: usize,
}

/// Where the batches of a job go.
enum Sink {
    /// To the encoder, through a bounded channel, from a pool thread.
    Channel { schema: Option<oneshot::Sender<Result<SchemaRef>>>, tx: mpsc::Sender<Result<RecordBatch>> },
    /// Held until the job ends (an inline job).
    Held { schema: Option<SchemaRef>, batches: Vec<Result<RecordBatch>> },
}

impl Sink {
    /// Publishes the schema; false when nobody listens any more.
    fn publish(&mut self, schema: SchemaRef) -> bool {
        match self {
            Sink::Channel { schema: tx, .. } => tx.take().is_some_and(|tx| tx.send(Ok(schema)).is_ok()),
            Sink::Held { schema: held, .. } => held.replace(schema).is_none(),
        }
    }

    /// The consumer is gone.
    fn closed(&self) -> bool {
        match self {
            Sink::Channel { tx, .. } => tx.is_closed(),
            Sink::Held { .. } => false,
        }
    }

    /// False when the consumer is gone.
    fn send(&mut self, batch: Result<RecordBatch>) -> bool {
        match self {
            Sink::Channel { tx, .. } => tx.blocking_send(batch).is_ok(),
            Sink::Held { batches, .. } => {
                batches.push(batch);
                true
            }
        }
    }
}

/// Batches in flight between a job and the encoder.
const CHANNEL_DEPTH: usize = 4;

/// Merged batches stay under this size: gRPC clients refuse messages over 4 MiB by default
/// (tonic, grpc-java, grpc-go). Segment batches (12,288 rows, ~1.7 MB of TLC trips) fit under it.
pub const MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// Batches of at least this many rows (half a segment row group) are sent without merging.
const BYPASS_ROWS: usize = crate::segment::CHUNK_ROWS / 2;

/// About the Arrow bytes of one row of `schema` (variable-width values counted as 32 bytes, and a
/// byte of validity per column).
pub fn row_bytes(schema: &Schema) -> usize {
    schema.fields().iter().map(|f| f.data_type().primitive_width().unwrap_or(32) + 1).sum::<usize>().max(1)
}

/// About how many rows of `schema` fit in `bytes`.
fn rows_within(schema: &Schema, bytes: usize) -> usize {
    bytes / row_bytes(schema)
}

/// The job's side of the stream.
pub struct Emitter {
    sink: Sink,
    coalescer: Option<BatchCoalescer>,
    schema: Option<SchemaRef>,
    shape: Shape,
    /// Rows per message for this schema (at most `batch_rows`).
    message_rows: usize,
    schema_only: bool,
    /// Rows still allowed by the ticket's `limit`.
    remaining: u64,
}

impl Emitter {
    fn new(sink: Sink, shape: Shape, schema_only: bool) -> Self {
        Emitter {
            sink,
            coalescer: None,
            schema: None,
            shape,
            message_rows: shape.batch_rows.max(1),
            schema_only,
            remaining: u64::MAX,
        }
    }

    /// Publishes the schema. Returns false when the caller wants no rows (GetSchema) or is gone.
    pub fn start(&mut self, schema: SchemaRef, limit: Option<u64>) -> bool {
        self.remaining = limit.unwrap_or(u64::MAX);
        // Small pieces (a short group prefix) are merged; segment-sized batches pass through
        // uncopied.
        self.message_rows = self.shape.batch_rows.min(rows_within(&schema, self.shape.message_bytes)).max(1);
        let coalescer =
            BatchCoalescer::new(schema.clone(), self.message_rows).with_biggest_coalesce_batch_size(Some(BYPASS_ROWS));
        self.coalescer = Some(coalescer);
        self.schema = Some(schema.clone());
        self.sink.publish(schema) && !self.schema_only
    }

    /// Sends rows (cut to the limit). Returns false when no more rows are wanted.
    pub fn push(&mut self, batch: RecordBatch) -> Result<bool> {
        if self.coalescer.is_none() {
            return Err(Error::internal("rows pushed before the schema"));
        }
        if self.sink.closed() {
            return Ok(false);
        }
        let take = (batch.num_rows() as u64).min(self.remaining) as usize;
        self.remaining -= take as u64;
        // Large batches (a sorted result) go out in message-sized slices.
        let step = self.message_rows;
        for start in (0..take).step_by(step) {
            let piece = batch.slice(start, step.min(take - start));
            if let Some(c) = self.coalescer.as_mut() {
                // A large piece goes out as it is: rows held before it are sent first, on their
                // own, rather than copied together with it (17 % of a cached scan's CPU).
                if piece.num_rows() >= BYPASS_ROWS && c.get_buffered_rows() > 0 {
                    c.finish_buffered_batch()?;
                }
                c.push_batch(piece)?;
            }
            if !self.drain() {
                return Ok(false);
            }
        }
        Ok(self.remaining > 0)
    }

    /// Rows per message: what [`Emitter::push_merged`] takes at most.
    pub fn message_rows(&self) -> usize {
        self.message_rows
    }

    /// Sends a batch the job merged itself (at most [`Emitter::message_rows`]) as one message,
    /// without copying it again: rows held before it go first, on their own. Returns false when
    /// no more rows are wanted.
    pub fn push_merged(&mut self, batch: RecordBatch) -> Result<bool> {
        let rows = batch.num_rows();
        if rows > self.message_rows || rows as u64 > self.remaining {
            return self.push(batch);
        }
        if self.sink.closed() {
            return Ok(false);
        }
        let Some(c) = self.coalescer.as_mut() else { return Err(Error::internal("rows pushed before the schema")) };
        if c.get_buffered_rows() > 0 {
            c.finish_buffered_batch()?;
            if !self.drain() {
                return Ok(false);
            }
        }
        self.remaining -= rows as u64;
        Ok(self.send(batch) && self.remaining > 0)
    }

    /// Sends the completed batches; false when the client is gone.
    fn drain(&mut self) -> bool {
        while let Some(b) = self.coalescer.as_mut().and_then(BatchCoalescer::next_completed_batch) {
            if !self.send(b) {
                return false;
            }
        }
        true
    }

    fn send(&mut self, batch: RecordBatch) -> bool {
        let Some(schema) = &self.schema else { return false };
        // Coalesced batches carry the plain schema; the stream's schema has the metadata.
        let batch = batch.with_schema(schema.clone()).map_err(Error::from);
        self.sink.send(batch)
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(c) = self.coalescer.as_mut() {
            c.finish_buffered_batch()?;
            self.drain();
        }
        Ok(())
    }
}

/// Starts `job` where `place` says and returns once its schema is known.
pub async fn run(job: Job, place: Place, shape: Shape, schema_only: bool) -> Result<QueryStream> {
    match place {
        Place::Inline => inline(job, shape, schema_only),
        Place::Pool => pooled(job, shape, schema_only).await,
    }
}

/// Runs `job` here; its answer is held until it ends.
fn inline(job: Job, shape: Shape, schema_only: bool) -> Result<QueryStream> {
    let _active = crate::metrics::ActiveGuard::new();
    let mut e = Emitter::new(Sink::Held { schema: None, batches: Vec::new() }, shape, schema_only);
    job(&mut e).and_then(|()| e.finish())?;
    let Sink::Held { schema: Some(schema), batches } = e.sink else {
        return Err(Error::internal("query ended before its schema"));
    };
    let batches = futures::stream::iter(batches);
    Ok(QueryStream { schema, batches: Box::pin(batches), max_message_bytes: None })
}

/// Starts `job` on the blocking pool and returns once its schema is known.
async fn pooled(job: Job, shape: Shape, schema_only: bool) -> Result<QueryStream> {
    let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(CHANNEL_DEPTH);
    let (schema_tx, schema_rx) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let _active = crate::metrics::ActiveGuard::new();
        let mut e = Emitter::new(Sink::Channel { schema: Some(schema_tx), tx }, shape, schema_only);
        let result = job(&mut e).and_then(|()| e.finish());
        if let (Err(err), Sink::Channel { schema, tx }) = (result, &mut e.sink) {
            match schema.take() {
                Some(schema_tx) => drop(schema_tx.send(Err(err))),
                None => drop(tx.blocking_send(Err(err))),
            }
        }
    });
    let schema = schema_rx.await.map_err(|_| Error::internal("query ended before its schema"))??;
    // Batches are bounded above (segment batches or merged ones under MESSAGE_BYTES) and are views
    // into mapped segments, whose memory size would over-count: send them whole.
    Ok(QueryStream { schema: Arc::clone(&schema), batches: Box::pin(ReceiverStream::new(rx)), max_message_bytes: None })
}
