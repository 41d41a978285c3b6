//! One integration-test binary (links once). Every test starts an in-process server on
//! 127.0.0.1:0 over freshly generated data and checks answers against an independent
//! computation over the same Parquet files (plain Rust over arrow arrays, no DuckDB).

mod common;
mod connections;
mod errors;
mod flights;
mod prepared;
mod queries;
mod reference;
mod wire;
