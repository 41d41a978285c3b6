//! The one place record batches become Flight data: even an empty result carries its schema.

use arrow_flight::{encode::FlightDataEncoderBuilder, error::FlightError, FlightData};
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use super::BoxStream;
use crate::engine::QueryStream;

/// Encodes a running query as a Flight data stream.
pub fn encode(query: QueryStream) -> BoxStream<FlightData> {
    let batches = query.batches.map(|r| r.map_err(|e| FlightError::Tonic(Box::new(Status::from(e)))));
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
