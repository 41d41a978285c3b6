//! The `bridge` binary: parse configuration, set up logging, bind, load, serve.

use std::process::ExitCode;

use bridge::{
    config::{Cli, Command},
    gen, server, AppState,
};
use clap::Parser;
use tracing::Level;
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

/// jemalloc: glibc's malloc was ~10 % of the CPU under many clients (README, "Allocator").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    bridge::malloc::tune();
    let cli = Cli::parse();
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match bridge::trace::init(cli.serve.otlp_endpoint.as_deref()) {
        Ok((provider, otel)) => {
            // Spans go to OpenTelemetry at info whatever RUST_LOG says of the log lines.
            let spans = Targets::new().with_target("bridge", Level::INFO);
            tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_filter(env))
                .with(otel.with_filter(spans))
                .init();
            provider
        }
        Err(e) => {
            eprintln!("bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Gen(args)) => generate(args),
        Some(Command::Serve) | None => run(cli.serve).await,
    };
    // Sends the spans still buffered.
    let _ = provider.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(args: bridge::config::GenArgs) -> Result<(), Box<dyn std::error::Error>> {
    for month in gen::months_from(args.month, args.months) {
        let started = std::time::Instant::now();
        let path = gen::write_month(&args.out, month, args.rows, args.seed)?;
        println!("wrote {} ({} rows) in {:.1?}", path.display(), args.rows, started.elapsed());
    }
    Ok(())
}

async fn run(config: bridge::config::Config) -> Result<(), Box<dyn std::error::Error>> {
    if config.datasets.is_empty() {
        return Err("no datasets: pass --dataset NAME=GLOB (e.g. --dataset yellow=./data/yellow/*.parquet)".into());
    }
    let state = AppState::open(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot bind {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let started = std::time::Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(admin_addr) = config.admin_listen {
        // Up before the datasets load, so /readyz can say what it is waiting for.
        let admin = tokio::net::TcpListener::bind(admin_addr)
            .await
            .map_err(|e| format!("cannot bind the admin port {admin_addr}: {e}"))?;
        println!("Bridge admin (metrics, health) on http://{}", admin.local_addr()?);
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        tokio::spawn(bridge::admin::serve(admin, state.clone(), shutdown));
    }
    if let Some(http_addr) = config.http_listen {
        let http = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(|e| format!("cannot bind the HTTP API port {http_addr}: {e}"))?;
        println!("Bridge HTTP API on http://{} (see /v1/openapi.json)", http.local_addr()?);
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        tokio::spawn(bridge::http::serve(http, state.clone(), config.http_json_max_rows, shutdown));
    }
    if let Some(path) = &config.addr_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    tracing::info!(%addr, elapsed = ?started.elapsed(), "serving Arrow Flight");
    let scheme = if state.tls().is_some() { "grpc+tls" } else { "grpc" };
    println!("Bridge is serving on {scheme}://{addr}. Try:");
    println!("  .venv/bin/python -c \"import pyarrow.flight as f; print(f.connect('grpc://{addr}').do_get(f.Ticket(b'{{\\\"query\\\":\\\"p90\\\",\\\"dataset\\\":\\\"yellow\\\",\\\"output\\\":\\\"summary\\\"}}')).read_all())\"");
    println!("  (after `make venv`; or `pip install pyarrow` and use python3)");
    // Datasets load in the background, newest files first: each answers from its first file on
    // (the `status` action, /readyz and the logs show the progress).
    state.cluster().spawn(state.catalog().clone(), stop_rx.clone());
    let first_passes = state.catalog().spawn_watchers(stop_rx);
    let catalog = state.catalog().clone();
    tokio::spawn(async move {
        let _ = first_passes.await;
        let (files, rows) =
            catalog.datasets().map(|d| d.snapshot()).fold((0, 0), |(f, r), s| (f + s.files.len(), r + s.rows()));
        let plural = if files == 1 { "" } else { "s" };
        println!("Bridge has loaded every dataset: {files} file{plural}, {rows} rows (new files keep landing)");
    });
    let (signalled_tx, mut signalled) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
            Err(_) => drop(ctrl_c.await),
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: no new connections; running streams may finish");
        let _ = signalled_tx.send(true);
    });
    let mut first = signalled.clone();
    let shutdown = async move {
        let _ = first.wait_for(|s| *s).await;
    };
    let drain = config.drain_timeout;
    // Running streams get `drain` to finish; then they are cancelled and Bridge exits anyway.
    tokio::select! {
        served = server::serve(listener, state, shutdown) => served?,
        _ = async { let _ = signalled.wait_for(|s| *s).await; tokio::time::sleep(drain).await } => {
            tracing::warn!(?drain, "drain timeout: cancelling the streams still running");
        }
    }
    let _ = stop_tx.send(true);
    Ok(())
}
