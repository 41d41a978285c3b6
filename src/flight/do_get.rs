//! DoGet: decode the ticket, plan, run, stream; every query is accounted for (`observe`).

use std::net::SocketAddr;

use arrow_flight::{FlightData, Ticket};
use tonic::Status;

use super::{
    encode::encode,
    observe::{observe, Observed},
    ticket, BoxStream,
};
use crate::{metrics, queries, state::AppState};

pub async fn do_get(state: &AppState, t: Ticket, peer: Option<SocketAddr>) -> Result<BoxStream<FlightData>, Status> {
    let ticket = ticket::try_decode(&t.ticket).map_err(Status::from).inspect_err(|s| count_refusal("invalid", s))?;
    let kind = queries::kind(&ticket);
    let started = async {
        queries::await_min_version(&ticket, state.catalog()).await?;
        let plan = queries::plan(ticket, state.catalog())?;
        queries::start(plan, state.catalog(), state.batch_rows(), false).await
    };
    let query = started.await.map_err(Status::from).inspect_err(|s| count_refusal(kind, s))?;
    let obs = Observed::start(kind, peer, query.schema.metadata().clone());
    let rows = obs.rows();
    Ok(observe(encode(query, rows), obs))
}

/// A request that failed before streaming.
fn count_refusal(kind: &str, s: &Status) {
    metrics::REQUESTS.with_label_values(&["DoGet", kind, &format!("{:?}", s.code())]).inc();
}
