//! `serve(listener, state, shutdown)`: the gRPC server on an already-bound listener.

use std::future::Future;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::{flight::BridgeFlight, state::AppState};

/// Largest message a client may send (tickets and SQL are small) and Bridge may send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Serves Flight on `listener` until `shutdown` resolves, then lets running streams finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let state_tls = state.tls().cloned();
    let service = FlightServiceServer::new(BridgeFlight::new(state))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // grpc.health.v1 on the same port: SERVING for "" and for the Flight service.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FlightServiceServer<BridgeFlight>>().await;
    // Small answers (a summary, a day) must not wait for Nagle: set TCP_NODELAY on every
    // accepted connection (the builder's own setting only covers listeners tonic binds itself).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = state_tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            health.set_not_serving::<FlightServiceServer<BridgeFlight>>().await;
        })
        .await
}
