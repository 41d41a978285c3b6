//! ListFlights, GetFlightInfo, GetSchema and the unimplemented RPCs.

use arrow_flight::{FlightDescriptor, Ticket};
use futures::TryStreamExt;
use tonic::Code;

use crate::common::{status, Fixture, ROWS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_info_schema_and_get_agree() {
    let mut fx = Fixture::start(&["2024-01"]).await;
    let infos: Vec<_> = fx.client.list_flights("").await.expect("list").try_collect().await.expect("infos");
    let dataset = infos
        .iter()
        .find(|i| i.flight_descriptor.as_ref().is_some_and(|d| d.path == ["yellow"]))
        .expect("dataset info");
    assert_eq!(dataset.total_records, ROWS as i64);
    let kinds: Vec<String> = infos
        .iter()
        .filter_map(|i| serde_json::from_slice::<serde_json::Value>(&i.app_metadata).ok())
        .filter_map(|m| m["query"].as_str().map(String::from))
        .collect();
    assert_eq!(kinds, ["p90", "outliers", "scan", "sql"]);

    let cmd = r#"{"query":"p90","dataset":"yellow","from":"2024-01-05","to":"2024-01-06"}"#;
    let info = fx.client.get_flight_info(FlightDescriptor::new_cmd(cmd)).await.expect("info");
    let schema = info.clone().try_decode_schema().expect("schema");
    assert!(schema.metadata().contains_key("bridge.p90.threshold"));
    let via_get_schema = fx.client.get_schema(FlightDescriptor::new_cmd(cmd)).await.expect("get_schema");
    assert_eq!(via_get_schema.fields(), schema.fields());
    // The endpoint's ticket (protobuf) runs the same query.
    let ticket: Ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<_> = fx.client.do_get(ticket).await.expect("do_get").try_collect().await.expect("batches");
    let (_, direct) = fx.get(cmd).await.expect("direct");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), direct.iter().map(|b| b.num_rows()).sum::<usize>());
    assert_eq!(batches[0].schema().fields(), schema.fields());

    let err = fx.client.get_flight_info(FlightDescriptor::new_path(vec!["yellow".into()])).await.err().map(status);
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));
    let err = fx.client.poll_flight_info(FlightDescriptor::new_cmd(cmd)).await.err().map(status);
    assert_eq!(err.map(|e| e.code()), Some(Code::Unimplemented));
}

/// grpc.health.v1 answers SERVING on the Flight port, for the server and for the Flight service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checking_on_the_flight_port() {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let fx = Fixture::start(&["2024-01"]).await;
    let mut health = HealthClient::new(fx.channel.clone());
    for service in ["", "arrow.flight.protocol.FlightService"] {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.expect("check");
        assert_eq!(reply.into_inner().status(), ServingStatus::Serving, "service {service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "nope".into() }).await;
    assert_eq!(unknown.expect_err("unknown service").code(), tonic::Code::NotFound);
}
