//! GetFlightInfo and GetSchema: plan a command descriptor far enough to know the schema.
//! Stateless: the endpoint's ticket is the command itself, re-run by DoGet.

use arrow::{datatypes::SchemaRef, ipc::writer::IpcWriteOptions};
use arrow_flight::{
    flight_descriptor::DescriptorType, FlightDescriptor, FlightEndpoint, FlightInfo, SchemaAsIpc, SchemaResult,
    Ticket as FlightTicket,
};
use tonic::Status;

use super::{sql, ticket};
use crate::{error::Error, queries, state::AppState};

fn command(desc: &FlightDescriptor) -> Result<crate::proto::Ticket, Status> {
    if desc.r#type() != DescriptorType::Cmd {
        return Err(Error::invalid(
            "use a CMD descriptor holding a ticket (JSON or protobuf); PATH descriptors are listed by ListFlights only",
        )
        .into());
    }
    Ok(ticket::try_decode(&desc.cmd)?)
}

/// The schema a ticket's DoGet will produce (with its metadata).
pub async fn schema_of(state: &AppState, t: crate::proto::Ticket) -> Result<SchemaRef, Status> {
    queries::await_min_version(&t, state.catalog()).await?;
    let plan = queries::plan(t, state.catalog())?;
    Ok(queries::start(plan, state.catalog(), state.shape(None), true).await?.schema)
}

pub async fn get_flight_info(state: &AppState, desc: FlightDescriptor) -> Result<FlightInfo, Status> {
    if let Some(cmd) = sql::command(&desc.cmd).filter(|_| desc.r#type() == DescriptorType::Cmd) {
        return sql::flight_info(state, cmd, desc).await;
    }
    let mut t = command(&desc)?;
    let schema = schema_of(state, t.clone()).await?;
    let endpoints = match super::endpoints::split(state, &t).await? {
        Some(parts) => parts,
        None => {
            // A fresh id per call: CancelFlightInfo on this FlightInfo stops exactly this DoGet.
            t.call_id = rand::random::<[u8; 16]>().to_vec();
            vec![FlightEndpoint::new().with_ticket(FlightTicket::new(ticket::encode(&t)))]
        }
    };
    let info =
        FlightInfo::new().try_with_schema(&schema).map_err(|e| Status::from(crate::error::Error::internal(e)))?;
    // Parts come in pickup-time order: a client that keeps endpoint order gets the one-stream order.
    Ok(endpoints.into_iter().fold(info, |i, e| i.with_endpoint(e)).with_descriptor(desc).with_ordered(true))
}

pub async fn get_schema(state: &AppState, desc: FlightDescriptor) -> Result<SchemaResult, Status> {
    if let Some(cmd) = sql::command(&desc.cmd).filter(|_| desc.r#type() == DescriptorType::Cmd) {
        return sql::schema(state, cmd).await;
    }
    let t = command(&desc)?;
    let schema = schema_of(state, t).await?;
    SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::from(crate::error::Error::internal(e)))
}
