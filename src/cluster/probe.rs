//! Is a replica answering? The standard gRPC health check (`grpc.health.v1`), which every Bridge
//! serves on its Flight port.

use std::time::Duration;

use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

/// Ok when the replica at `address` says SERVING within `timeout`; else why not.
///
/// Over TLS the check is a TCP connect: the probe has no client certificate of its own.
pub async fn check(address: &str, tls: bool, timeout: Duration) -> Result<(), String> {
    if tls {
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot connect: {e}")),
            Err(_) => Err(format!("no connection within {timeout:?}")),
        };
    }
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| format!("bad address: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.map_err(|e| format!("cannot connect: {e}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|e| format!("health check failed: {}", e.message()))?;
    match reply.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("health check says {}", other.as_str_name())),
    }
}
