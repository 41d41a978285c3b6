//! HTTP/2 connection limits, exercised with a raw `h2` client: the bound on concurrent streams
//! per connection, and the cut-off for rapid-reset floods.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::common::Fixture;

fn list_actions(addr: std::net::SocketAddr) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/arrow.flight.protocol.FlightService/ListActions"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request")
}

/// Stream 129 on one connection waits (HTTP/2 flow of SETTINGS_MAX_CONCURRENT_STREAMS) until one
/// of the 128 open ones ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gets_at_most_128_concurrent_streams() {
    let fx = Fixture::start(&["2024-01"]).await;
    let tcp = TcpStream::connect(fx.addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut client = client.ready().await.expect("ready");
    // One complete call first: once it is answered, the server's SETTINGS (sent before anything
    // else) have been applied, so the client knows the stream limit.
    let (warmup, mut body) = client.send_request(list_actions(fx.addr), false).expect("warm-up");
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true).expect("message");
    warmup.await.expect("warm-up answered");
    let mut client = client.ready().await.expect("ready");
    let mut open = Vec::new();
    for _ in 0..128 {
        // Requests whose bodies never end: each holds a stream.
        let (_, body) = client.send_request(list_actions(fx.addr), false).expect("stream");
        open.push(body);
        client = client.ready().await.expect("a stream is free");
    }
    // Stream 129: a complete ListActions call (one empty gRPC message). It is queued by the
    // client, not sent, so no answer comes...
    let (answer, mut body) = client.send_request(list_actions(fx.addr), false).expect("queued");
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true).expect("message");
    let mut answer = Box::pin(answer);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut answer).await.is_err(),
        "stream 129 must wait for a free stream"
    );
    // ...until one of the 128 ends.
    open.remove(0).send_reset(h2::Reason::CANCEL);
    let response = tokio::time::timeout(Duration::from_secs(5), answer).await.expect("answered").expect("response");
    assert_eq!(response.status(), 200);
}

/// A client that opens and immediately resets streams in a loop ("rapid reset") loses its
/// connection instead of keeping the server busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_floods_lose_their_connection() {
    let fx = Fixture::start(&["2024-01"]).await;
    let tcp = TcpStream::connect(fx.addr).await.expect("connect");
    let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(conn);
    let mut sent = 0;
    for _ in 0..100_000 {
        client = match client.ready().await {
            Ok(c) => c,
            Err(_) => break,
        };
        match client.send_request(list_actions(fx.addr), false) {
            Ok((_, mut body)) => body.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await.expect("connection ends");
    let err = ended.expect("task").expect_err("the server must end the connection with an error");
    assert!(err.is_go_away() || err.is_io(), "{err:?} after {sent} resets");
    assert!(sent < 100_000, "the flood was cut off (after {sent} resets)");
}
