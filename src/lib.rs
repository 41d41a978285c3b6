//! Bridge: an Arrow Flight server that answers questions about Parquet datasets with an embedded
//! DuckDB, and streams the answers as Arrow record batches.
//!
//! # Layout
//!
//! * [`config`]: command line and environment (clap).
//! * [`catalog`]: datasets and the ingest pipeline (list → diff → fetch → convert → publish).
//! * [`store`]: object-store access (locations, globs, listing, downloads).
//! * [`engine`]: DuckDB — the accelerated store (ingest), the sandbox, the stream bridge.
//! * [`segment`]: the read-optimized copy of each file that the built-in tickets read.
//! * [`tlc`]: the yellow-taxi schema across its eras (2009, 2010, 2011 on); [`rule`]: the physics
//!   rule of `outliers`.
//! * [`answer`]: what a running query hands the wire (schema and record batches).
//! * [`queries`]: the built-in tickets (`p90`, `outliers`) and `sql`, one file each.
//! * [`flight`]: the Flight service, one file per RPC; tickets (protobuf or JSON).
//! * [`cluster`]: replicas — membership (`--peers`, `--peers-dns`), placement by rendezvous hashing.
//! * [`http`]: the same tickets over HTTP (`--http-listen`): Arrow IPC, JSON, CSV; OpenAPI.
//! * [`observe`]: per-query metrics and log line, shared by both wires; [`trace`]: OpenTelemetry.
//! * [`server`]: `serve(listener, state, shutdown)`.
//! * [`admin`], [`metrics`], [`recent`]: the admin HTTP port (status page, health, metrics),
//!   its Prometheus metrics, and the recent queries the status page shows.
//! * [`gen`]: the deterministic TLC-shaped data generator (`bridge gen`).

pub mod admin;
pub mod answer;
pub mod auth;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod flight;
pub mod gen;
pub mod http;
pub mod limits;
pub mod malloc;
pub mod metrics;
pub mod observe;
pub mod queries;
pub mod recent;
pub mod rule;
pub mod segment;
pub mod server;
pub mod state;
pub mod store;
pub mod tlc;
pub mod trace;

/// Generated protobuf messages (`proto/bridge/v1/ticket.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/bridge.v1.rs"));
}

pub use error::{Error, Result};
pub use state::AppState;
