//! Message size and IPC compression, as each client asks by header: checked on the raw Flight
//! messages, and the rows decoded from them against the default answer.

use arrow::{
    ipc::{root_as_message, CompressionType},
    record_batch::RecordBatch,
};
use arrow_flight::{decode::FlightRecordBatchStream, flight_service_client::FlightServiceClient, FlightData, Ticket};
use futures::TryStreamExt;

use crate::common::{status, Fixture};

const SCAN: &str = r#"{"query":"scan","dataset":"yellow"}"#;
const SQL: &str = r#"{"query":"sql","sql":"SELECT * FROM yellow"}"#;
const MIB: usize = 1 << 20;

/// The raw messages of a DoGet sent with `headers`.
async fn messages(
    fx: &Fixture,
    ticket: &str,
    headers: &[(&'static str, &str)],
) -> Result<Vec<FlightData>, tonic::Status> {
    let mut client = FlightServiceClient::new(fx.channel.clone()).max_decoding_message_size(64 * MIB);
    let mut request = tonic::Request::new(Ticket::new(ticket.to_string()));
    for (k, v) in headers {
        request.metadata_mut().insert(*k, v.parse().expect("ascii"));
    }
    client.do_get(request).await?.into_inner().try_collect().await
}

/// The record batches in `messages` (compressed or not).
async fn decode(messages: Vec<FlightData>) -> Vec<RecordBatch> {
    let stream = futures::stream::iter(messages.into_iter().map(Ok));
    FlightRecordBatchStream::new_from_flight_data(stream).try_collect().await.map_err(status).expect("decode")
}

fn rows(batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(&batches[0].schema(), batches).expect("concat")
}

/// The IPC buffer compression of each record batch message.
fn compression(messages: &[FlightData]) -> Vec<Option<CompressionType>> {
    messages
        .iter()
        .filter_map(|m| root_as_message(&m.data_header).ok()?.header_as_record_batch())
        .map(|b| b.compression().map(|c| c.codec()))
        .collect()
}

fn largest(messages: &[FlightData]) -> usize {
    messages.iter().map(|m| m.data_header.len() + m.data_body.len()).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_the_message_size_and_compression_it_asked_for() {
    let fx = Fixture::start(&["2024-01", "2024-02", "2024-03"]).await;
    for ticket in [SCAN, SQL] {
        let default = messages(&fx, ticket, &[]).await.expect("default");
        assert!(largest(&default) <= 2 * MIB, "{ticket}: a default client never gets a message over 2 MiB");
        assert!(compression(&default).iter().all(Option::is_none));
        let want = rows(&decode(default.clone()).await);

        let large = messages(&fx, ticket, &[("bridge-max-message-bytes", "8MiB")]).await.expect("8 MiB");
        assert!(largest(&large) <= 8 * MIB + 64 * 1024, "{ticket}: {} bytes", largest(&large));
        if ticket == SCAN {
            assert!(largest(&large) > 2 * MIB, "scan batches are joined into larger messages");
            assert!(large.len() * 3 <= default.len(), "{} messages, {} by default", large.len(), default.len());
        }
        assert_eq!(rows(&decode(large).await), want, "{ticket}: the same rows in the same order");

        for (codec, name) in [(CompressionType::ZSTD, "zstd"), (CompressionType::LZ4_FRAME, "lz4")] {
            let packed = messages(&fx, ticket, &[("bridge-ipc-compression", name)]).await.expect(name);
            let codecs = compression(&packed);
            assert!(!codecs.is_empty() && codecs.iter().all(|c| *c == Some(codec)), "{ticket} {name}: {codecs:?}");
            let bytes = |m: &[FlightData]| m.iter().map(|m| m.data_body.len()).sum::<usize>();
            assert!(bytes(&packed) * 2 < bytes(&default), "{ticket} {name}: {} of {}", bytes(&packed), bytes(&default));
            assert_eq!(rows(&decode(packed).await), want, "{ticket} {name}");
        }
    }
    for (header, bad) in
        [("bridge-max-message-bytes", "1KiB"), ("bridge-max-message-bytes", "1GiB"), ("bridge-ipc-compression", "gzip")]
    {
        let e = messages(&fx, SCAN, &[(header, bad)]).await.expect_err(bad);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{header}: {bad}: {e}");
    }
}
