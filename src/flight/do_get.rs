//! DoGet: admit, decode the ticket, plan, run, stream; every query is bounded and accounted for.

use arrow_flight::Ticket;
use futures::StreamExt;
use tonic::{metadata::MetadataMap, Status};
use tracing::{info_span, Instrument};

use super::{
    encode::{encode, encode_batch},
    frame::Frame,
    sql, ticket,
    wire::Wire,
    BoxStream,
};
use crate::{
    observe::{observe, Bounds, Caller, Observed},
    queries,
    state::AppState,
};

pub async fn do_get(
    state: &AppState,
    t: Ticket,
    metadata: &MetadataMap,
    caller: Caller,
) -> Result<BoxStream<Frame>, Status> {
    let arrived = std::time::Instant::now();
    let wire = Wire::from_metadata(metadata)?;
    let registration = state.running().register(t.ticket.clone());
    let ticket = match sql::command(&t.ticket) {
        Some(cmd) => match sql::answer(state, cmd).inspect_err(|s| count_refusal("flight_sql", s))? {
            sql::Answer::Statement(statement) => *statement,
            sql::Answer::Batch(batch) => return Ok(encode_batch(batch).map(|d| d.map(Frame::Data)).boxed()),
        },
        None => ticket::try_decode(&t.ticket).map_err(Status::from).inspect_err(|s| count_refusal("invalid", s))?,
    };
    let kind = queries::kind(&ticket);
    let sql_text = queries::sql_text(&ticket);
    let admission = state.admission();
    let slot = admission.admit().instrument(info_span!("admission")).await.inspect_err(|s| count_refusal(kind, s))?;
    let limits = admission.limits();
    let bounds =
        Bounds { deadline: admission.deadline(metadata), max_rows: limits.max_rows, max_bytes: limits.max_bytes };
    let started = async {
        queries::await_min_version(&ticket, state.catalog()).await?;
        let plan = queries::plan(ticket, state.catalog())?;
        queries::start(plan, state.catalog(), state.shape(wire.max_message_bytes), false).await
    };
    // Dropping `started` (deadline or cancel) drops the query's channel, which interrupts DuckDB.
    let query = tokio::select! {
        q = tokio::time::timeout_at(bounds.deadline, started.instrument(info_span!("plan"))) => match q {
            Ok(q) => q.map_err(Status::from),
            Err(_) => Err(Status::deadline_exceeded("the query did not start before its deadline")),
        },
        () = registration.cancelled() => Err(Status::cancelled("the query was cancelled (CancelFlightInfo)")),
    }
    .inspect_err(|s| count_refusal(kind, s))?;
    let obs = Observed::start("DoGet", kind, caller, query.schema.metadata().clone())
        .since(arrived)
        .with_sql(sql_text)
        .with_stream_span();
    let rows = obs.rows();
    let size = |f: &Frame| f.body_len();
    let cancel = registration.cancelled_owned();
    let data = encode(query, wire, rows, (slot, registration), bounds.deadline, cancel);
    Ok(observe(data, obs, bounds, size))
}

/// A request that failed before streaming.
fn count_refusal(kind: &str, s: &Status) {
    crate::observe::count("DoGet", kind, s.code());
}
