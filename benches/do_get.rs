//! DoGet for each ticket over a generated month (small, for 2-core machines), in-process server.
//! Run with: `make bench` (or `cargo bench --bench do_get`).

use std::time::Duration;

use arrow_flight::{FlightClient, Ticket};
use bridge::{catalog::DatasetSpec, config::Config, gen, AppState};
use criterion::{criterion_group, criterion_main, Criterion};
use futures::TryStreamExt;

const ROWS: usize = 500_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("yellow");
    gen::write_month(&data, "2024-01".parse().expect("month"), ROWS, 42).expect("generate");
    let config = Config {
        datasets: vec![format!("yellow={}/*.parquet", data.display()).parse::<DatasetSpec>().expect("spec")],
        cache_dir: dir.path().join("cache"),
        ..Config::default()
    };
    let mut client = rt.block_on(async {
        let state = AppState::open(&config).expect("open");
        state.catalog().refresh_all().await.expect("load");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(bridge::server::serve(listener, state, std::future::pending()));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        FlightClient::new(channel)
    });
    let tickets = [
        ("p90_month", r#"{"query":"p90","dataset":"yellow","from":"2024-01-01","to":"2024-02-01"}"#),
        ("p90_day", r#"{"query":"p90","dataset":"yellow","from":"2024-01-17","to":"2024-01-18"}"#),
        ("outliers_month", r#"{"query":"outliers","dataset":"yellow","from":"2024-01-01","to":"2024-02-01"}"#),
        ("scan_month", r#"{"query":"scan","dataset":"yellow","from":"2024-01-01","to":"2024-02-01"}"#),
        ("sql_scan", r#"{"query":"sql","sql":"SELECT * FROM yellow"}"#),
    ];
    let mut group = c.benchmark_group("do_get");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for (name, ticket) in tickets {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let batches: Vec<_> =
                        client.do_get(Ticket::new(ticket)).await.expect("do_get").try_collect().await.expect("stream");
                    batches.len()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
