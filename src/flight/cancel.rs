//! CancelFlightInfo: the DoGets in flight, by ticket, so a client can stop a query it started.
//!
//! Every ticket GetFlightInfo hands out carries a fresh id (the statement handle's for Flight SQL,
//! `call_id` for Bridge tickets), so cancelling a FlightInfo stops exactly the query its endpoint
//! started.

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

impl Running {
    pub fn register(&self, ticket: Bytes) -> Registration {
        let id = self.inner.1.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut map = self.inner.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(ticket.clone()).or_default().push((id, token.clone()));
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
