//! The endpoints of a FlightInfo. One, redeemed where it was asked, unless other replicas answer
//! their health checks and the answer is big and splittable (`queries::split`): then one endpoint
//! per part, each naming the part's owner first and another replica second
//! (`cluster::assign`). Clients read every endpoint; ADBC and JDBC do it in parallel.

use arrow_flight::{FlightEndpoint, Ticket as FlightTicket};
use tonic::Status;

use super::ticket;
use crate::{cluster::assign::assign, error::Error, metrics, proto::Ticket, queries::split, state::AppState};

/// The endpoints of a split answer, or None when `t` stays one stream.
pub async fn split(state: &AppState, t: &Ticket) -> Result<Option<Vec<FlightEndpoint>>, Status> {
    let cluster = state.cluster();
    let members = cluster.alive();
    if members.len() < 2 {
        return Ok(None);
    }
    let (owned, catalog, max) = (t.clone(), state.catalog().clone(), cluster.max_endpoints());
    let count = members.len();
    let parts = tokio::task::spawn_blocking(move || split::split(&owned, &catalog, count, max))
        .await
        .map_err(|e| Status::from(Error::internal(e)))??;
    let Some(parts) = parts else { return Ok(None) };
    let keys: Vec<(String, u64)> = parts.iter().map(|p| (p.key.clone(), p.rows)).collect();
    // One id for the whole FlightInfo: CancelFlightInfo stops every part this replica runs.
    let call_id = rand::random::<[u8; 16]>().to_vec();
    let endpoints = parts.into_iter().zip(assign(&keys, &members)).map(|(part, locations)| {
        let mut t = part.ticket;
        t.call_id = call_id.clone();
        let endpoint = FlightEndpoint::new().with_ticket(FlightTicket::new(ticket::encode(&t)));
        if let Some(owner) = locations.first() {
            metrics::ENDPOINTS.with_label_values(&[owner.as_str()]).inc();
        }
        locations.iter().fold(endpoint, |e, m| e.with_location(cluster.location(m)))
    });
    Ok(Some(endpoints.collect()))
}
