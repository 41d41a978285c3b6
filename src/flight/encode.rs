//! The one place record batches become Flight data: even an empty result carries its schema.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use arrow_flight::{encode::FlightDataEncoderBuilder, error::FlightError, FlightData};
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use arrow::record_batch::RecordBatch;
use tokio::time::Instant;

use super::BoxStream;
use crate::{
    engine::QueryStream,
    error::Error,
    limits::{self, Slot, Stop},
};

use super::cancel::Registration;

/// Encodes a running query as a Flight data stream, adding the rows sent to `rows`. The query
/// holds `slot` and its CancelFlightInfo registration until it ends, `deadline` passes or it is
/// cancelled (see [`limits::guard`]).
pub fn encode(
    query: QueryStream,
    rows: Arc<AtomicU64>,
    slot: Slot,
    deadline: Instant,
    registration: Registration,
) -> BoxStream<FlightData> {
    let stopped = |why| match why {
        Stop::Deadline => Err(Error::DeadlineExceeded),
        Stop::Cancelled => Err(Error::Cancelled),
    };
    let cancel = registration.cancelled_owned();
    let batches = limits::guard(query.batches, (slot, registration), deadline, cancel, stopped).map(move |r| match r {
        Ok(b) => {
            rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            Ok(b)
        }
        Err(e) => Err(FlightError::Tonic(Box::new(Status::from(e)))),
    });
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(query.schema)
        .with_max_flight_data_size(query.max_message_bytes.unwrap_or(usize::MAX))
        .build(batches)
        .map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::internal(other.to_string()),
        });
    stream.boxed()
}

/// Encodes one ready batch (a Flight SQL metadata answer).
pub fn encode_batch(batch: RecordBatch) -> BoxStream<FlightData> {
    FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(|e| Status::internal(e.to_string()))
        .boxed()
}
