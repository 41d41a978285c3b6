//! Prepared statements: CreatePreparedStatement, ClosePreparedStatement, and DoPut to bind
//! parameters. Stateless: binding returns a new handle that carries the parameters.

use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{
    decode::FlightRecordBatchStream,
    error::FlightError,
    sql::{
        ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any, CommandPreparedStatementQuery,
        DoPutPreparedStatementResult, ProstMessageExt,
    },
    FlightData, IpcMessage, PutResult, SchemaAsIpc,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::Status;

use super::handle;
use crate::{error::Error, proto::Sql, queries, state::AppState};

use crate::queries::params::MAX_PARAMETER_BYTES;

fn unpack<T: prost::Message + Default + ProstMessageExt>(body: &[u8], what: &str) -> Result<T, Status> {
    Any::decode(body)
        .ok()
        .and_then(|any| any.unpack::<T>().ok().flatten())
        .ok_or_else(|| Error::invalid(format!("the {what} action's body must be an Any-wrapped {what}Request")).into())
}

fn ipc_schema(schema: &Schema) -> Result<Vec<u8>, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::from(crate::error::Error::internal(e)))?;
    Ok(bytes.to_vec())
}

/// CreatePreparedStatement: checks the SQL, learns its result schema (unbound parameters as
/// NULL) and its parameter count, and returns a handle that is the statement itself.
pub async fn create(state: &AppState, body: &[u8]) -> Result<Vec<u8>, Status> {
    let req: ActionCreatePreparedStatementRequest = unpack(body, "CreatePreparedStatement")?;
    if req.transaction_id.is_some() {
        return Err(Error::invalid("Bridge has no transactions; prepare without a transaction id").into());
    }
    let statement = Sql { sql: req.query, parameters: Vec::new() };
    let (schema, parameters) = describe(state, statement.clone()).await?;
    let result = ActionCreatePreparedStatementResult {
        prepared_statement_handle: handle::prepared(statement).into(),
        dataset_schema: ipc_schema(&schema)?.into(),
        parameter_schema: ipc_schema(&parameters)?.into(),
    };
    Ok(result.as_any().encode_to_vec())
}

/// The statement's result schema and its parameter schema: one field per parameter, named
/// `$1`, `$2`… (or `$name`), typed as DuckDB infers it; a parameter DuckDB cannot type
/// (`SELECT ?`) is Utf8, and its string is taken as sent.
async fn describe(state: &AppState, statement: Sql) -> Result<(Schema, Schema), Status> {
    let ticket =
        crate::proto::Ticket { query: Some(crate::proto::ticket::Query::Sql(statement.clone())), call_id: Vec::new() };
    // schema_of runs the SQL guard first: only a checked statement is prepared below.
    let schema = super::super::get_flight_info::schema_of(state, ticket).await?;
    // SQL the segments answer has literals only (see `queries::fast`): no parameters to type, and
    // no DuckDB bind of the datasets' files.
    let fast = queries::fast::rewrite(&statement.sql).is_some()
        || queries::fast::count_star(&statement.sql, state.catalog()).is_some();
    let parameters = match fast {
        true => Vec::new(),
        false => {
            let (engine, sql) = (state.catalog().engine().clone(), statement.sql);
            tokio::task::spawn_blocking(move || engine.parameters(&sql)).await.map_err(Error::internal)??
        }
    };
    let fields: Vec<Field> =
        parameters.into_iter().map(|p| Field::new(p.name, p.ty.unwrap_or(DataType::Utf8), true)).collect();
    Ok((schema.as_ref().clone(), Schema::new(fields)))
}

/// ClosePreparedStatement: nothing is held, but the handle must be one of ours.
pub fn close(body: &[u8]) -> Result<(), Status> {
    let req: arrow_flight::sql::ActionClosePreparedStatementRequest = unpack(body, "ClosePreparedStatement")?;
    handle::statement(&req.prepared_statement_handle)?;
    Ok(())
}

fn too_large(bytes: usize) -> Error {
    Error::invalid(format!(
        "bound parameters take at least {bytes} bytes; the limit is {MAX_PARAMETER_BYTES} (they travel in every ticket)"
    ))
}

/// DoPut on a prepared statement: the parameter batches become part of a new handle.
pub async fn bind(
    cmd: CommandPreparedStatementQuery,
    first: FlightData,
    rest: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<PutResult, Status> {
    let mut statement = handle::statement(&cmd.prepared_statement_handle)?;
    // Counted as the messages arrive: a client cannot make Bridge hold more than the cap.
    let mut received = 0usize;
    let data = futures::stream::once(async { Ok(first) }).chain(rest).map(move |m| {
        let m = m?;
        received += m.data_body.len() + m.data_header.len();
        if received > MAX_PARAMETER_BYTES {
            return Err(Status::from(too_large(received)));
        }
        Ok(m)
    });
    let data = data.map_err(FlightError::from);
    let batches: Vec<_> = FlightRecordBatchStream::new_from_flight_data(data)
        .try_collect()
        .await
        .map_err(|e| Error::invalid(format!("the parameters are not a valid Arrow stream: {e}")))?;
    let bytes = queries::params::encode(&batches)?;
    if bytes.len() > MAX_PARAMETER_BYTES {
        return Err(too_large(bytes.len()).into());
    }
    statement.parameters = bytes;
    let result = DoPutPreparedStatementResult { prepared_statement_handle: Some(handle::prepared(statement).into()) };
    Ok(PutResult { app_metadata: result.encode_to_vec().into() })
}
