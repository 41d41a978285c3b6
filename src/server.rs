//! `serve(listener, state, shutdown)`: the gRPC server on an already-bound listener.

use std::{future::Future, time::Duration};

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::{
    flight::{BridgeFlight, Direct},
    state::AppState,
};

/// Concurrent streams one HTTP/2 connection may open.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// Largest message a client may send (tickets and SQL are small) and Bridge may send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Serves Flight on `listener` until `shutdown` resolves, then lets running streams finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let state_tls = state.tls().cloned();
    let max_age = state.max_connection_age();
    let service = Direct::new(BridgeFlight::new(state), MAX_MESSAGE_BYTES);
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
        // Long streams survive idle-killing load balancers; dead peers are noticed.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        // Load balancers see long-lived HTTP/2 connections end (GOAWAY) and spread them again;
        // streams still running finish first.
        .max_connection_age(max_age)
        // One connection may not monopolize the server; a client that resets streams in a flood
        // (CVE-2023-44487 "rapid reset") is cut off.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_max_pending_accept_reset_streams(Some(32))
        .http2_max_local_error_reset_streams(Some(256))
        // JDBC and other drivers send many headers.
        .http2_max_header_list_size(Some(256 * 1024))
        .add_service(health_service)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            health.set_not_serving::<FlightServiceServer<BridgeFlight>>().await;
        })
        .await
}
