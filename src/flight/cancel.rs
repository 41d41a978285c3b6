//! CancelFlightInfo: the DoGets in flight, by ticket, so a client can stop a query it started.
//!
//! Every ticket GetFlightInfo hands out carries a fresh random id (the statement handle's for
//! Flight SQL, `call_id` for Bridge tickets), so cancelling a FlightInfo stops exactly the query
//! its endpoint started. Only such tickets can be cancelled: a ticket without an id (a JSON ticket
//! sent straight to DoGet) is never registered, so nobody can cancel another client's query by
//! sending the same hand-written bytes; that query stops when its own client drops the stream.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus};
use bytes::Bytes;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::{error::Error, metrics};

type Tokens = HashMap<Bytes, Vec<(u64, CancellationToken)>>;

#[derive(Debug, Default, Clone)]
pub struct Running {
    inner: Arc<(Mutex<Tokens>, AtomicU64)>,
}

/// A DoGet's place in [`Running`]; leaves it on drop.
pub struct Registration {
    running: Running,
    ticket: Bytes,
    id: u64,
    token: CancellationToken,
}

/// Whether `ticket` carries a per-call id that GetFlightInfo issued.
pub fn carries_call_id(ticket: &[u8]) -> bool {
    use arrow_flight::sql::{Any, TicketStatementQuery};
    let statement = Any::decode(ticket).ok().and_then(|a| a.unpack::<TicketStatementQuery>().ok().flatten());
    match statement {
        Some(t) => crate::proto::StatementHandle::decode(&*t.statement_handle).is_ok_and(|h| !h.id.is_empty()),
        None => super::ticket::try_decode(ticket).is_ok_and(|t| !t.call_id.is_empty()),
    }
}

impl Running {
    /// A DoGet of `ticket`: cancellable by CancelFlightInfo only if the ticket carries a call id.
    pub fn register(&self, ticket: Bytes) -> Registration {
        let id = self.inner.1.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        if carries_call_id(&ticket) {
            let mut map = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(ticket.clone()).or_default().push((id, token.clone()));
        }
        Registration { running: self.clone(), ticket, id, token }
    }

    /// Cancels the DoGets running `ticket`; how many there were.
    fn cancel(&self, ticket: &[u8]) -> usize {
        let map = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = map.get(ticket).map(Vec::as_slice).unwrap_or_default();
        tokens.iter().for_each(|(_, t)| t.cancel());
        tokens.len()
    }

    /// The CancelFlightInfo action: cancels every endpoint's running query. CANCELLED when one
    /// was running; NOT_CANCELLABLE when none was (never started, or already finished).
    pub fn cancel_flight_info(&self, body: &[u8]) -> Result<Vec<u8>, Status> {
        let req = CancelFlightInfoRequest::decode(body)
            .map_err(|e| Error::invalid(format!("CancelFlightInfo body is not a CancelFlightInfoRequest: {e}")))?;
        let info = req.info.ok_or_else(|| Error::invalid("CancelFlightInfoRequest has no FlightInfo"))?;
        let cancelled: usize =
            info.endpoint.iter().filter_map(|e| e.ticket.as_ref()).map(|t| self.cancel(&t.ticket)).sum();
        metrics::CANCELLED.inc_by(cancelled as u64);
        let status = if cancelled > 0 { CancelStatus::Cancelled } else { CancelStatus::NotCancellable };
        Ok(CancelFlightInfoResult::new(status).encode_to_vec())
    }
}

impl Registration {
    /// Resolves when CancelFlightInfo cancels this DoGet (for the work before streaming starts).
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// The same, owning a handle to the token (for the stream's guard task).
    pub fn cancelled_owned(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.running.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tokens) = map.get_mut(&self.ticket) {
            tokens.retain(|(id, _)| *id != self.id);
            if tokens.is_empty() {
                map.remove(&self.ticket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::{FlightEndpoint, FlightInfo};

    fn cancel(running: &Running, ticket: &[u8]) -> CancelStatus {
        let info = FlightInfo::new()
            .with_endpoint(FlightEndpoint::new().with_ticket(arrow_flight::Ticket::new(ticket.to_vec())));
        let body = CancelFlightInfoRequest::new(info).encode_to_vec();
        let out = running.cancel_flight_info(&body).expect("answer");
        CancelStatus::try_from(CancelFlightInfoResult::decode(&*out).expect("result").status).expect("status")
    }

    #[test]
    fn only_tickets_with_a_call_id_can_be_cancelled() {
        let running = Running::default();
        let json = Bytes::from_static(br#"{"query":"p90","dataset":"yellow"}"#);
        let mine = running.register(json.clone());
        assert_eq!(cancel(&running, &json), CancelStatus::NotCancellable, "same bytes, someone else's query");
        assert!(!mine.token.is_cancelled());
        let with_id = crate::proto::Ticket {
            query: crate::flight::ticket::try_decode(&json).expect("ticket").query,
            call_id: vec![7; 16],
        };
        let bytes = Bytes::from(with_id.encode_to_vec());
        let issued = running.register(bytes.clone());
        assert_eq!(cancel(&running, &bytes), CancelStatus::Cancelled);
        assert!(issued.token.is_cancelled());
    }
}
