//! Run with: `make run` in one shell, then `cargo run --release --example client` (optionally
//! with the server address: `-- http://127.0.0.1:50051`).
//!
//! A walk through every ticket: list the flights, run p90 (trips and summary), the top 10 fastest
//! outliers among the p90 trips, and a SQL query, printing row counts, the threshold and timings.

use std::time::Instant;

use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightClient, Ticket};
use futures::TryStreamExt;

async fn get(
    client: &mut FlightClient,
    json: &str,
) -> Result<(Vec<RecordBatch>, std::collections::HashMap<String, String>), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut stream = client.do_get(Ticket::new(json.to_string())).await?;
    let mut batches = Vec::new();
    while let Some(b) = stream.try_next().await? {
        batches.push(b);
    }
    let metadata = stream.schema().map(|s| s.metadata().clone()).unwrap_or_default();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    println!("{json}\n  -> {rows} rows in {:.1?}", started.elapsed());
    Ok((batches, metadata))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let channel = tonic::transport::Endpoint::from_shared(addr)?.connect().await?;
    let mut client = FlightClient::new(channel);

    println!("== ListFlights");
    let infos: Vec<_> = client.list_flights("").await?.try_collect().await?;
    for info in &infos {
        println!(
            "  {:?} {}",
            info.flight_descriptor.as_ref().map(|d| (&d.path, String::from_utf8_lossy(&d.cmd))),
            String::from_utf8_lossy(&info.app_metadata)
        );
    }

    println!("== p90");
    let (_, md) =
        get(&mut client, r#"{"query":"p90","dataset":"yellow","from":"2024-01-01","to":"2024-02-01"}"#).await?;
    println!(
        "  threshold {} ({} of {} trips above)",
        md["bridge.p90.threshold"], md["bridge.p90.trips_above"], md["bridge.p90.trips_in_range"]
    );
    let (summary, _) = get(
        &mut client,
        r#"{"query":"p90","dataset":"yellow","from":"2024-01-15","to":"2024-01-16","output":"summary"}"#,
    )
    .await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&summary)?);

    println!("== outliers: top 10 fastest among the p90 trips");
    let (top, _) = get(
        &mut client,
        r#"{"query":"outliers","dataset":"yellow","within_p90":true,"order_by":"avg_speed_mph desc","limit":10}"#,
    )
    .await?;
    let cols: Vec<RecordBatch> = top
        .iter()
        .map(|b| {
            b.project(&[
                b.schema().index_of("tpep_pickup_datetime")?,
                b.schema().index_of("trip_distance")?,
                b.schema().index_of("avg_speed_mph")?,
                b.schema().index_of("reason")?,
            ])
        })
        .collect::<Result<_, _>>()?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&cols)?);

    println!("== sql");
    let (rows, _) = get(&mut client, r#"{"query":"sql","sql":"SELECT payment_type, count(*) AS trips, round(avg(tip_amount), 2) AS avg_tip FROM yellow GROUP BY 1 ORDER BY 1"}"#).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&rows)?);
    Ok(())
}
