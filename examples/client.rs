//! Run with: `make run` in one shell, then `cargo run --release --example client` (optionally
//! with the server address: `-- http://127.0.0.1:50051`).
//!
//! A walk through every ticket: list the flights, run p90 (trips and summary), the top 10 fastest
//! outliers among the p90 trips, a SQL query and a bulk scan, printing row counts, the threshold
//! and timings; then the scan again asking for 16 MiB messages and ZSTD-compressed buffers (the
//! `bridge-max-message-bytes` and `bridge-ipc-compression` request headers).

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

/// Bytes of data in a batch (like pyarrow's `nbytes`): buffer lengths, not allocations, which
/// decoded batches share.
fn data_bytes(batch: &RecordBatch) -> usize {
    fn array(d: &arrow::array::ArrayData) -> usize {
        let own: usize = d.buffers().iter().map(|b| b.len()).sum();
        own + d.nulls().map_or(0, |n| n.buffer().len()) + d.child_data().iter().map(array).sum::<usize>()
    }
    batch.columns().iter().map(|c| array(&c.to_data())).sum()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let channel = tonic::transport::Endpoint::from_shared(addr)?.connect().await?;
    let mut client = FlightClient::new(channel.clone());

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

    println!("== scan: bulk export of every trip, counted as it streams");
    scan(&mut client).await?;

    println!("== scan again, in messages of up to 16 MiB with ZSTD-compressed buffers (for slow links)");
    let inner = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
        .max_decoding_message_size(32 * 1024 * 1024); // room for the larger messages asked for
    let mut large = FlightClient::new_from_inner(inner);
    large.add_header("bridge-max-message-bytes", "16MiB")?;
    large.add_header("bridge-ipc-compression", "zstd")?;
    scan(&mut large).await?;
    Ok(())
}

/// Streams every trip three times, printing rows, Arrow bytes and MB/s.
async fn scan(client: &mut FlightClient) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..3 {
        let started = Instant::now();
        let mut stream = client.do_get(Ticket::new(r#"{"query":"scan","dataset":"yellow"}"#)).await?;
        let (mut rows, mut bytes) = (0, 0);
        while let Some(b) = stream.try_next().await? {
            rows += b.num_rows();
            bytes += data_bytes(&b);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "  -> {rows} rows, {:.0} MB of Arrow in {secs:.3} s: {:.0} MB/s",
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs
        );
    }
    Ok(())
}
