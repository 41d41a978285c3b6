//! DoGet: decode the ticket, plan, run, stream.

use arrow_flight::{FlightData, Ticket};
use tonic::Status;

use super::{encode::encode, ticket, BoxStream};
use crate::{queries, state::AppState};

pub async fn do_get(state: &AppState, t: Ticket) -> Result<BoxStream<FlightData>, Status> {
    let ticket = ticket::try_decode(&t.ticket)?;
    queries::await_min_version(&ticket, state.catalog()).await?;
    let plan = queries::plan(ticket, state.catalog())?;
    let query = queries::start(plan, state.catalog(), state.batch_rows(), false).await?;
    Ok(encode(query))
}
