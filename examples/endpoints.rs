//! Run with: `make run` in one shell (or several replicas, see the README's "Replicas"), then
//! `cargo run --release --example endpoints` (optionally with a server address:
//! `-- http://127.0.0.1:50051`).
//!
//! A FlightInfo from a set of Bridge replicas may split a big answer into several endpoints, each
//! naming the replica that owns it first and another one second. The arrow-rs client does not
//! follow locations by itself: this example asks for a year's scan, fetches every endpoint at
//! once, each from its first location that answers, and keeps the endpoints' order (the rows come
//! in pickup-time order of the parts). One replica alone returns one endpoint with no locations:
//! it is redeemed on the server that was asked.

use std::time::Instant;

use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, FlightDescriptor, FlightEndpoint};
use futures::{future::try_join_all, TryStreamExt};
use tonic::transport::Channel;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// `grpc+tcp://host:port` (a Flight location) as the `http://` URI tonic dials.
fn dialable(location: &str) -> String {
    let rest = location.split_once("://").map_or(location, |(_, rest)| rest);
    match location.starts_with("grpc+tls") {
        true => format!("https://{rest}"),
        false => format!("http://{rest}"),
    }
}

/// One endpoint's rows: from its locations in order (the asked server when it names none).
async fn fetch(asked: &str, endpoint: FlightEndpoint) -> Result<Vec<RecordBatch>, Error> {
    let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
    let mut targets: Vec<String> = endpoint.location.iter().map(|l| dialable(&l.uri)).collect();
    if targets.is_empty() {
        targets.push(asked.to_string());
    }
    let mut last = None;
    for target in targets {
        let attempt = async {
            let channel = Channel::from_shared(target.clone())?.connect().await?;
            let mut client = FlightClient::new(channel);
            let batches: Vec<RecordBatch> = client.do_get(ticket.clone()).await?.try_collect().await?;
            Ok::<_, Error>(batches)
        };
        match attempt.await {
            Ok(batches) => return Ok(batches),
            // A replica that died after the FlightInfo was made: try the next location.
            Err(e) => {
                eprintln!("  {target} did not answer ({e}); trying the next location");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| "no location answered".into()))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let mut client = FlightClient::new(Channel::from_shared(addr.clone())?.connect().await?);
    let ticket = r#"{"query":"scan","dataset":"yellow","columns":["tpep_pickup_datetime","trip_distance"]}"#;
    let started = Instant::now();
    let info = client.get_flight_info(FlightDescriptor::new_cmd(ticket)).await?;
    println!("{ticket}\n  -> {} endpoint(s)", info.endpoint.len());
    for (i, e) in info.endpoint.iter().enumerate() {
        let locations: Vec<&str> = e.location.iter().map(|l| l.uri.as_str()).collect();
        println!("  endpoint {i}: {}", if locations.is_empty() { "this server".into() } else { locations.join(", ") });
    }
    // Every endpoint at once; `try_join_all` keeps their order.
    let parts = try_join_all(info.endpoint.into_iter().map(|e| fetch(&addr, e))).await?;
    let rows: usize = parts.iter().flatten().map(RecordBatch::num_rows).sum();
    println!("  -> {rows} rows from {} part(s) in {:.1?}", parts.len(), started.elapsed());
    Ok(())
}
