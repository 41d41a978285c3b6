//! DoPut: only Flight SQL's parameter binding for prepared statements; Bridge stores nothing.

use arrow_flight::{sql::Command, FlightData, PutResult};
use futures::StreamExt;
use tonic::{Status, Streaming};

use super::sql;

pub async fn do_put(mut stream: Streaming<FlightData>) -> Result<PutResult, Status> {
    let first = stream.next().await.ok_or_else(|| Status::invalid_argument("DoPut with no messages"))??;
    let cmd = first.flight_descriptor.as_ref().and_then(|d| sql::command(&d.cmd));
    match cmd {
        Some(Command::CommandPreparedStatementQuery(cmd)) => sql::prepared::bind(cmd, first, stream).await,
        Some(Command::CommandStatementUpdate(_) | Command::CommandPreparedStatementUpdate(_))
        | Some(Command::CommandStatementIngest(_)) => {
            Err(Status::invalid_argument("writes are refused: Bridge is read-only (send a SELECT)"))
        }
        _ => Err(Status::unimplemented(
            "DoPut only binds parameters to a Flight SQL prepared statement (CommandPreparedStatementQuery); \
             Bridge is read-only",
        )),
    }
}
