//! Prepared statements through arrow-flight's own `FlightSqlServiceClient`, doing exactly what
//! its command-line client (`flight_sql_client prepared-statement-query … -p '$1=…'`) does:
//! prepare, read the parameter schema, cast the user's strings to it with arrow's `cast`, bind,
//! execute, read. Counts are checked against the parquet-crate reference.

use arrow::{
    array::{ArrayRef, AsArray, Datum, RecordBatch, StringArray},
    compute::{cast_with_options, CastOptions},
    datatypes::{DataType, Int64Type, TimeUnit},
};
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;

use crate::{
    common::{status, Fixture},
    reference,
};

/// Prepares `sql`, binds `params` (name, text) the CLI's way, and returns the parameter schema's
/// types and the single result column's batches.
async fn run(
    fx: &Fixture,
    sql: &str,
    params: &[(&str, &str)],
) -> Result<(Vec<DataType>, Vec<RecordBatch>), tonic::Status> {
    let mut client = FlightSqlServiceClient::new(fx.channel.clone());
    let mut stmt = client.prepare(sql.to_string(), None).await.map_err(status)?;
    let schema = stmt.parameter_schema().map_err(status)?.clone();
    let types = schema.fields().iter().map(|f| f.data_type().clone()).collect();
    if !params.is_empty() {
        let mut columns: Vec<(&str, ArrayRef)> = Vec::new();
        for (name, value) in params {
            let field = schema.field_with_name(name).expect("the parameter schema names every parameter");
            let text = StringArray::new_scalar(*value);
            let cast = cast_with_options(text.get().0, field.data_type(), &CastOptions::default()).expect("cast");
            columns.push((name, cast));
        }
        stmt.set_parameters(RecordBatch::try_from_iter(columns).expect("batch")).map_err(status)?;
    }
    let info = stmt.execute().await.map_err(status)?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("ticket");
        let stream = client.do_get(ticket).await.map_err(status)?;
        batches.extend(stream.try_collect::<Vec<_>>().await.map_err(status)?);
    }
    Ok((types, batches))
}

fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.column(0).as_primitive::<Int64Type>().value(0) as usize).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_way_of_binding_works_for_every_inferred_type() {
    let fx = Fixture::start(&["2024-01"]).await;
    let files = fx.files();
    let trips = reference::trips(&files);
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);

    let (types, got) =
        run(&fx, "SELECT count(*) AS n FROM yellow WHERE trip_distance > $1", &[("$1", "5.0")]).await.expect("double");
    assert_eq!(types, [DataType::Float64]);
    assert_eq!(count(&got), trips.iter().filter(|t| t.distance.is_some_and(|d| d > 5.0)).count());

    let (types, got) =
        run(&fx, "SELECT count(*) AS n FROM yellow WHERE VendorID = ?", &[("$1", "2")]).await.expect("int");
    assert_eq!(types, [DataType::Int64]);
    assert_eq!(count(&got), reference::count_equal(&files, "VendorID", "2"));

    let (types, got) =
        run(&fx, "SELECT count(*) AS n FROM yellow WHERE tpep_pickup_datetime >= $1", &[("$1", "2024-01-15T06:30:00")])
            .await
            .expect("timestamp");
    assert_eq!(types, [ts]);
    let from = reference::day("2024-01-15") + 6 * 3_600_000_000 + 30 * 60_000_000;
    assert_eq!(count(&got), trips.iter().filter(|t| t.pickup >= from).count());

    let (types, got) = run(
        &fx,
        "SELECT count(*) AS n FROM yellow WHERE CAST(tpep_pickup_datetime AS DATE) = $1",
        &[("$1", "2024-01-15")],
    )
    .await
    .expect("date");
    assert_eq!(types, [DataType::Date32]);
    let day = reference::day("2024-01-15");
    assert_eq!(
        count(&got),
        trips.iter().filter(|t| reference::in_range(t, Some(day), Some(day + 86_400_000_000))).count()
    );

    let (types, got) = run(&fx, "SELECT count(*) AS n FROM yellow WHERE store_and_fwd_flag = $1", &[("$1", "Y")])
        .await
        .expect("string");
    assert_eq!(types, [DataType::Utf8]);
    assert_eq!(count(&got), reference::count_equal(&files, "store_and_fwd_flag", "Y"));

    // DuckDB cannot type this one: it is advertised as Utf8 and the string comes back as sent.
    let (types, got) = run(&fx, "SELECT $1 AS v", &[("$1", "hello")]).await.expect("untyped");
    assert_eq!(types, [DataType::Utf8]);
    assert_eq!(got[0].column(0).as_string::<i32>().value(0), "hello");

    // Two parameters, by name.
    let (types, got) = run(
        &fx,
        "SELECT count(*) AS n FROM yellow WHERE trip_distance > $1 AND VendorID = $2",
        &[("$2", "1"), ("$1", "2.5")],
    )
    .await
    .expect("two");
    assert_eq!(types, [DataType::Float64, DataType::Int64]);
    assert!(count(&got) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_cannot_be_cast_is_refused_by_name() {
    let fx = Fixture::start(&["2024-01"]).await;
    let mut client = FlightSqlServiceClient::new(fx.channel.clone());
    let mut stmt = client
        .prepare("SELECT count(*) AS n FROM yellow WHERE trip_distance > $1".into(), None)
        .await
        .expect("prepare");
    // A client that sends text without casting it first.
    let text: ArrayRef = std::sync::Arc::new(StringArray::from(vec!["far"]));
    stmt.set_parameters(RecordBatch::try_from_iter([("$1", text)]).expect("batch")).expect("set");
    let err = match stmt.execute().await {
        Ok(info) => {
            let ticket = info.endpoint[0].ticket.clone().expect("ticket");
            match client.do_get(ticket).await {
                Ok(s) => s.try_collect::<Vec<_>>().await.map(|_| ()).map_err(status).expect_err("refused"),
                Err(e) => status(e),
            }
        }
        Err(e) => status(e),
    };
    let msg = err.message().to_string();
    assert!(msg.contains("$1") && msg.contains("Float64"), "{msg}");
    // Strings that do cast are taken.
    let ok: ArrayRef = std::sync::Arc::new(StringArray::from(vec!["5"]));
    stmt.set_parameters(RecordBatch::try_from_iter([("$1", ok)]).expect("batch")).expect("set");
    let info = stmt.execute().await.expect("execute");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let got: Vec<RecordBatch> = client.do_get(ticket).await.expect("get").try_collect().await.expect("rows");
    let trips = reference::trips(&fx.files());
    assert_eq!(count(&got), trips.iter().filter(|t| t.distance.is_some_and(|d| d > 5.0)).count());
}
