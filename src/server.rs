//! `serve(listener, state, shutdown)`: the gRPC server on an already-bound listener.

use std::future::Future;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::{flight::BridgeFlight, state::AppState};

/// Largest message a client may send (tickets and SQL are small) and Bridge may send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Serves Flight on `listener` until `shutdown` resolves, then lets running streams finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(BridgeFlight::new(state))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
