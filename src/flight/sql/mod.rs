//! Flight SQL on the same port, dispatched from Bridge's own `FlightService` (arrow-flight's
//! `FlightSqlService` would route Bridge's plain JSON/protobuf tickets to a fallback and answer
//! GetSchema as unimplemented). Commands arrive as protobuf `Any` in CMD descriptors and tickets;
//! everything is stateless: a statement's handle carries the statement itself (see [`handle`]).
//!
//! Datasets appear as tables `store.main.<dataset>` (DuckDB's own names, so generated SQL runs).

mod handle;
mod info;
pub mod prepared;

use arrow::{datatypes::SchemaRef, ipc::writer::IpcWriteOptions, record_batch::RecordBatch};
use arrow_flight::{
    sql::{metadata::GetTablesBuilder, Any, Command},
    FlightDescriptor, FlightEndpoint, FlightInfo, SchemaAsIpc, SchemaResult, Ticket as FlightTicket,
};
use prost::Message;
use tonic::Status;

use crate::{
    proto::{ticket::Query, Sql, Ticket},
    state::AppState,
};

/// DuckDB's names for the database and schema that hold the dataset views.
pub const CATALOG: &str = "store";
pub const SCHEMA: &str = "main";
const TABLE_TYPE: &str = "VIEW";

/// A Flight SQL command in descriptor or ticket bytes; None for Bridge's own tickets.
pub fn command(bytes: &[u8]) -> Option<Command> {
    if bytes.first() == Some(&b'{') {
        return None;
    }
    let any = Any::decode(bytes).ok()?;
    if !any.type_url.starts_with("type.googleapis.com/arrow.flight.protocol.sql.") {
        return None;
    }
    Command::try_from(any).ok()
}

/// What a command's DoGet runs: a SQL statement (through the normal query path) or a metadata
/// batch built here.
pub enum Answer {
    Statement(Box<Ticket>),
    Batch(RecordBatch),
}

fn read_only(what: &str) -> Status {
    Status::invalid_argument(format!("{what} is refused: Bridge is read-only (send a SELECT)"))
}

fn run(statement: Sql) -> Answer {
    Answer::Statement(Box::new(Ticket { query: Some(Query::Sql(statement)), call_id: Vec::new() }))
}

/// The datasets as (name, schema), for GetTables.
fn tables(state: &AppState) -> Vec<(String, SchemaRef)> {
    state.catalog().datasets().map(|d| (d.name.clone(), d.snapshot().schema.clone())).collect()
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::from(crate::error::Error::internal(e))
}

/// Plans a command far enough to answer it.
pub fn answer(state: &AppState, cmd: Command) -> Result<Answer, Status> {
    Ok(match cmd {
        Command::CommandStatementQuery(q) => run(Sql { sql: q.query, parameters: Vec::new() }),
        Command::TicketStatementQuery(t) => run(handle::statement(&t.statement_handle)?),
        Command::CommandPreparedStatementQuery(p) => run(handle::statement(&p.prepared_statement_handle)?),
        Command::CommandGetCatalogs(c) => {
            let mut b = c.into_builder();
            b.append(CATALOG);
            Answer::Batch(b.build().map_err(internal)?)
        }
        Command::CommandGetDbSchemas(c) => {
            let mut b = c.into_builder();
            b.append(CATALOG, SCHEMA);
            Answer::Batch(b.build().map_err(internal)?)
        }
        Command::CommandGetTables(c) => {
            let mut b: GetTablesBuilder = c.into_builder();
            for (name, schema) in tables(state) {
                b.append(CATALOG, SCHEMA, name, TABLE_TYPE, &schema).map_err(internal)?;
            }
            Answer::Batch(b.build().map_err(internal)?)
        }
        Command::CommandGetTableTypes(c) => {
            let mut b = c.into_builder();
            b.append(TABLE_TYPE);
            Answer::Batch(b.build().map_err(internal)?)
        }
        Command::CommandGetSqlInfo(c) => Answer::Batch(c.into_builder(info::sql_info()).build().map_err(internal)?),
        Command::CommandGetXdbcTypeInfo(c) => {
            Answer::Batch(c.into_builder(info::xdbc_types()).build().map_err(internal)?)
        }
        Command::CommandGetPrimaryKeys(_)
        | Command::CommandGetImportedKeys(_)
        | Command::CommandGetExportedKeys(_)
        | Command::CommandGetCrossReference(_) => {
            // Views have no keys: the right schema, no rows.
            Answer::Batch(RecordBatch::new_empty(key_schema()))
        }
        Command::CommandStatementUpdate(_)
        | Command::CommandStatementIngest(_)
        | Command::CommandPreparedStatementUpdate(_)
        | Command::CommandStatementSubstraitPlan(_) => return Err(read_only("this command")),
        other => return Err(Status::unimplemented(format!("Flight SQL {} is not supported", other.type_url()))),
    })
}

/// The schema of CommandGetPrimaryKeys / Imported / Exported keys results.
fn key_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

async fn schema_of(state: &AppState, answer: Answer) -> Result<SchemaRef, Status> {
    match answer {
        Answer::Batch(b) => Ok(b.schema()),
        Answer::Statement(t) => super::get_flight_info::schema_of(state, *t).await,
    }
}

/// GetFlightInfo for a command: its schema and one endpoint. A statement's ticket is a fresh
/// handle carrying the statement; a metadata command's ticket is the command itself.
pub async fn flight_info(state: &AppState, cmd: Command, desc: FlightDescriptor) -> Result<FlightInfo, Status> {
    let command_ticket = cmd.clone().into_any().encode_to_vec();
    let answer = answer(state, cmd)?;
    let ticket = match &answer {
        Answer::Statement(t) => match &t.query {
            Some(Query::Sql(s)) => handle::ticket(s.clone()),
            _ => command_ticket,
        },
        Answer::Batch(_) => command_ticket,
    };
    // A projection and filter over one dataset (SQL the segments answer) may split across
    // replicas: its endpoints then hold Bridge tickets, which DoGet takes as well.
    let parts = match &answer {
        Answer::Statement(t) => super::endpoints::split(state, t).await?,
        Answer::Batch(_) => None,
    };
    let schema = schema_of(state, answer).await?;
    let endpoints = parts.unwrap_or_else(|| vec![FlightEndpoint::new().with_ticket(FlightTicket::new(ticket))]);
    let info =
        FlightInfo::new().try_with_schema(&schema).map_err(|e| Status::from(crate::error::Error::internal(e)))?;
    Ok(endpoints.into_iter().fold(info, |i, e| i.with_endpoint(e)).with_descriptor(desc))
}

pub async fn schema(state: &AppState, cmd: Command) -> Result<SchemaResult, Status> {
    let schema = schema_of(state, answer(state, cmd)?).await?;
    SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::from(crate::error::Error::internal(e)))
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};

    use super::*;

    #[test]
    fn tells_flight_sql_from_bridge_tickets() {
        let q = CommandStatementQuery { query: "SELECT 1".into(), transaction_id: None };
        assert!(matches!(command(&q.as_any().encode_to_vec()), Some(Command::CommandStatementQuery(_))));
        assert!(command(br#"{"query":"sql","sql":"SELECT 1"}"#).is_none());
        let own = Ticket {
            query: Some(Query::Sql(Sql { sql: "SELECT 1".into(), parameters: Vec::new() })),
            call_id: Vec::new(),
        }
        .encode_to_vec();
        assert!(command(&own).is_none());
    }
}
