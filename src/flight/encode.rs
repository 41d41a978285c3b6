//! The one place record batches become Flight data: even an empty result carries its schema.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use arrow::{
    datatypes::SchemaRef,
    ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions},
};
use arrow_flight::{encode::FlightDataEncoderBuilder, error::FlightError, FlightData, SchemaAsIpc};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use arrow::record_batch::RecordBatch;
use tokio::time::Instant;

use super::{frame::Frame, wire::Wire, BoxStream};
use crate::{
    engine::QueryStream,
    error::Error,
    limits::{self, Stop},
};

/// Encodes a running query as a Flight data stream as the client asked (`wire`), adding the
/// rows sent to `rows`. The query holds `held` (its slot, its CancelFlightInfo registration)
/// until it ends, `deadline` passes or `cancel` resolves (see [`limits::guard`]).
pub fn encode<H: Send + 'static>(
    query: QueryStream,
    wire: Wire,
    rows: Arc<AtomicU64>,
    held: H,
    deadline: Instant,
    cancel: impl std::future::Future<Output = ()> + Send + 'static,
) -> BoxStream<Frame> {
    let batches = guarded(query.batches, rows, held, deadline, cancel);
    let options = wire.ipc_options();
    let direct = wire.compression.is_none();
    match (query.max_message_bytes, wire.max_message_bytes) {
        (Some(default), asked) => {
            split(query.schema, batches, asked.unwrap_or(default), options).map(|d| d.map(Frame::Data)).boxed()
        }
        (None, Some(asked)) => whole(query.schema, coalesced(batches, asked), options, direct),
        (None, None) => whole(query.schema, batches.map_ok(|b| vec![b]), options, direct),
    }
}

/// Consecutive batches gathered into messages of at most about `max` bytes (by the bytes their
/// rows use, not the buffers they view), for clients that accept larger messages. A batch larger
/// than `max` by itself passes as it is.
fn coalesced(
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
    max: usize,
) -> impl Stream<Item = Result<Vec<RecordBatch>, Status>> + Send + 'static {
    let internal = |e| Status::from(Error::internal(e));
    let size = move |b: &RecordBatch| -> Result<usize, Status> {
        b.columns().iter().map(|c| c.to_data().get_slice_memory_size().map_err(internal)).sum()
    };
    let state = (Box::pin(batches), Vec::new(), 0usize, false);
    futures::stream::unfold(state, move |(mut batches, mut held, mut bytes, done)| async move {
        if done {
            return None;
        }
        loop {
            let b = match batches.next().await {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Some((Err(e), (batches, held, bytes, true))),
                None if held.is_empty() => return None,
                None => return Some((Ok(std::mem::take(&mut held)), (batches, held, 0, true))),
            };
            let n = match size(&b) {
                Ok(n) => n,
                Err(e) => return Some((Err(e), (batches, held, bytes, true))),
            };
            if bytes + n > max && !held.is_empty() {
                let out = Ok(std::mem::take(&mut held));
                held.push(b);
                return Some((out, (batches, held, n, false)));
            }
            bytes += n;
            held.push(b);
        }
    })
}

/// A query's batches, holding `held` until the end, the deadline or `cancel` (see
/// [`limits::guard`]), and adding the rows that pass to `rows`. Every wire's answers go through it.
pub fn guarded<H: Send + 'static>(
    batches: crate::engine::Batches,
    rows: Arc<AtomicU64>,
    held: H,
    deadline: Instant,
    cancel: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static {
    let stopped = |why| match why {
        Stop::Deadline => Err(Error::DeadlineExceeded),
        Stop::Cancelled => Err(Error::Cancelled),
    };
    limits::guard(batches, held, deadline, cancel, stopped).map(move |r| {
        if let Ok(p) = &r {
            rows.fetch_add(p.num_rows() as u64, Ordering::Relaxed);
        }
        r.map_err(Status::from)
    })
}

/// Batches cut into messages of about `max` bytes by arrow-flight's encoder.
fn split(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
    max: usize,
    options: IpcWriteOptions,
) -> BoxStream<FlightData> {
    let batches = batches.map_err(|s| FlightError::Tonic(Box::new(s)));
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_options(options)
        .with_max_flight_data_size(max)
        .build(batches)
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::from(crate::error::Error::internal(other)),
        })
        .boxed()
}

/// Each group of batches as one message: segment batches, bounded in size where they are
/// built, or gathered by [`coalesced`]. No dictionaries reach this path (segments have none).
/// Uncompressed, the batches go to the wire as they are (`direct`, see [`Frame`]); compressed,
/// arrow-ipc encodes them here.
fn whole(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<Vec<RecordBatch>, Status>> + Send + 'static,
    options: IpcWriteOptions,
    direct: bool,
) -> BoxStream<Frame> {
    let head = Frame::Data(FlightData::from(SchemaAsIpc::new(&schema, &options)));
    let generator = IpcDataGenerator::default();
    let mut tracker = DictionaryTracker::new(false);
    let internal = |e| Status::from(Error::internal(e));
    let body = batches.map(move |held| {
        let held = held?;
        if direct {
            return Frame::batches(held);
        }
        let b = match held.as_slice() {
            [one] => one.clone(),
            _ => arrow::compute::concat_batches(&schema, held.iter()).map_err(internal)?,
        };
        let (_, data) = generator.encode(&b, &mut tracker, &options, &mut Default::default()).map_err(internal)?;
        Ok(Frame::Data(FlightData::from(data)))
    });
    futures::stream::once(async { Ok(head) }).chain(body).boxed()
}

/// Encodes one ready batch (a Flight SQL metadata answer).
pub fn encode_batch(batch: RecordBatch) -> BoxStream<FlightData> {
    FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(|e| Status::from(crate::error::Error::internal(e)))
        .boxed()
}
