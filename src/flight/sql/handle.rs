//! Statement handles. Bridge keeps nothing between Flight SQL calls: a handle *is* the statement
//! (SQL plus bound parameters), so any server instance can run it, and closing it frees nothing.

use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use prost::Message;
use rand::RngCore;

use crate::{
    error::{Error, Result},
    proto::{Sql, StatementHandle},
};

/// A prepared statement's handle: the statement, no id.
pub fn prepared(statement: Sql) -> Vec<u8> {
    StatementHandle { statement: Some(statement), id: Vec::new() }.encode_to_vec()
}

/// The statement a handle carries.
pub fn statement(handle: &[u8]) -> Result<Sql> {
    StatementHandle::decode(handle).ok().and_then(|h| h.statement).ok_or_else(|| {
        Error::invalid("not a Bridge statement handle; get one from GetFlightInfo or CreatePreparedStatement")
    })
}

/// A DoGet ticket for `statement`, unique to this call (so CancelFlightInfo can tell it apart).
pub fn ticket(statement: Sql) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let handle = StatementHandle { statement: Some(statement), id }.encode_to_vec();
    TicketStatementQuery { statement_handle: handle.into() }.as_any().encode_to_vec()
}

/// Decodes a `TicketStatementQuery` Any back to what it runs (used by tests).
#[cfg(test)]
pub fn from_ticket(bytes: &[u8]) -> Result<Sql> {
    let any = arrow_flight::sql::Any::decode(bytes).map_err(Error::internal)?;
    let t: TicketStatementQuery =
        any.unpack().map_err(Error::internal)?.ok_or_else(|| Error::internal("not a ticket"))?;
    statement(&t.statement_handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_are_unique() {
        let s = Sql { sql: "SELECT ?".into(), parameters: vec![1, 2, 3] };
        let (a, b) = (ticket(s.clone()), ticket(s.clone()));
        assert_ne!(a, b);
        assert_eq!(from_ticket(&a).expect("decodes"), s);
        assert_eq!(statement(&prepared(s.clone())).expect("decodes"), s);
        assert!(statement(b"SELECT 1").is_err());
    }
}
