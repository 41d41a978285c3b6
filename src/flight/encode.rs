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

use super::BoxStream;
use crate::{
    engine::QueryStream,
    error::Error,
    limits::{self, Stop},
};

/// Encodes a running query as a Flight data stream, adding the rows sent to `rows`. The query
/// holds `held` (its slot, its CancelFlightInfo registration) until it ends, `deadline` passes or
/// `cancel` resolves (see [`limits::guard`]).
pub fn encode<H: Send + 'static>(
    query: QueryStream,
    rows: Arc<AtomicU64>,
    held: H,
    deadline: Instant,
    cancel: impl std::future::Future<Output = ()> + Send + 'static,
) -> BoxStream<FlightData> {
    let batches = guarded(query.batches, rows, held, deadline, cancel);
    match query.max_message_bytes {
        Some(max) => split(query.schema, batches, max),
        None => whole(query.schema, batches),
    }
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
) -> BoxStream<FlightData> {
    let batches = batches.map_err(|s| FlightError::Tonic(Box::new(s)));
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(max)
        .build(batches)
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::from(crate::error::Error::internal(other)),
        })
        .boxed()
}

/// Each batch as one message: segment batches, bounded in size where they are built. No dictionaries reach this path (segments have none).
fn whole(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
) -> BoxStream<FlightData> {
    let options = IpcWriteOptions::default();
    let head = FlightData::from(SchemaAsIpc::new(&schema, &options));
    let generator = IpcDataGenerator::default();
    let mut tracker = DictionaryTracker::new(false);
    let body = batches.map(move |b| {
        let (_, data) = generator
            .encode(&b?, &mut tracker, &options, &mut Default::default())
            .map_err(|e| Status::from(crate::error::Error::internal(e)))?;
        Ok(FlightData::from(data))
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
