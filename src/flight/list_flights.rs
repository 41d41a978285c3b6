//! ListFlights: one FlightInfo per dataset and one per built-in query.
//!
//! A dataset's info has a PATH descriptor `[name]`, its schema, its row count, and a ticket that
//! reads it whole. A built-in query's info has a CMD descriptor holding an example JSON ticket
//! (a client can send it to GetFlightInfo as is) and the ticket's fields in `app_metadata`.

use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket as FlightTicket};
use serde_json::json;
use tonic::Status;

use super::{get_flight_info::schema_of, ticket};
use crate::state::AppState;

fn info(
    schema: &arrow::datatypes::Schema,
    desc: FlightDescriptor,
    ticket: Vec<u8>,
    meta: serde_json::Value,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::from(crate::error::Error::internal(e)))?
        .with_descriptor(desc)
        .with_endpoint(FlightEndpoint::new().with_ticket(FlightTicket::new(ticket)))
        .with_app_metadata(meta.to_string()))
}

pub async fn list_flights(state: &AppState) -> Result<Vec<FlightInfo>, Status> {
    let mut out = Vec::new();
    let mut first = None;
    for ds in state.catalog().datasets() {
        let snap = ds.snapshot();
        let sql = json!({"query": "sql", "sql": format!("SELECT * FROM {}", crate::engine::quote_ident(&ds.name))})
            .to_string();
        let Ok(schema) = schema_of(state, ticket::try_decode(sql.as_bytes())?).await else {
            continue; // no readable file yet
        };
        let meta = json!({
            "kind": "dataset", "location": ds.location.url, "manifest_version": snap.version,
            "files": snap.files.len(), "rows": snap.rows(), "quarantined": snap.quarantined.len(),
        });
        let rows = i64::try_from(snap.rows()).unwrap_or(i64::MAX);
        out.push(
            info(&schema, FlightDescriptor::new_path(vec![ds.name.clone()]), sql.into_bytes(), meta)?
                .with_total_records(rows),
        );
        first.get_or_insert(ds.name.clone());
    }
    let Some(dataset) = first else { return Ok(out) };
    let examples = [
        (
            json!({"query": "p90", "dataset": dataset, "from": "2024-01-01", "to": "2024-02-01"}),
            json!({"kind": "query", "query": "p90", "fields": {
                "dataset": "string", "from": "ISO-8601, inclusive", "to": "ISO-8601, exclusive",
                "percentile": "(0,1), default 0.9", "columns": "[string]", "limit": "uint", "output": "trips|summary"}}),
        ),
        (
            json!({"query": "outliers", "dataset": dataset, "within_p90": true, "order_by": "avg_speed_mph desc", "limit": 10}),
            json!({"kind": "query", "query": "outliers", "fields": {
                "dataset": "string", "from": "ISO-8601", "to": "ISO-8601", "within_p90": "bool", "limit": "uint",
                "order_by": "<column> [asc|desc]", "min_duration_hours": 0.0, "max_duration_hours": 10.0,
                "min_speed_mph": 2.5, "max_speed_mph": 80.0, "min_distance": 0.1, "max_distance": 800.0}}),
        ),
        (
            json!({"query": "scan", "dataset": dataset, "from": "2024-01-01", "to": "2024-01-02"}),
            json!({"kind": "query", "query": "scan", "fields": {
                "dataset": "string", "from": "ISO-8601", "to": "ISO-8601", "columns": "[string]", "limit": "uint"}}),
        ),
        (
            json!({"query": "sql", "sql": format!("SELECT count(*) AS trips FROM {dataset}")}),
            json!({"kind": "query", "query": "sql", "fields": {"sql": "one read-only SELECT; datasets are views"}}),
        ),
    ];
    for (example, meta) in examples {
        let bytes = example.to_string().into_bytes();
        // The schema is planned over an empty range so listing stays cheap.
        let mut cheap = example.clone();
        if cheap["query"] != "sql" {
            cheap["from"] = json!("1900-01-01");
            cheap["to"] = json!("1900-01-02");
        }
        let Ok(schema) = schema_of(state, ticket::try_decode(cheap.to_string().as_bytes())?).await else { continue };
        out.push(info(&schema, FlightDescriptor::new_cmd(bytes.clone()), bytes, meta)?);
    }
    Ok(out)
}
