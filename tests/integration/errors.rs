//! Bad input gets a precise gRPC code and a message that says what to fix.

use tonic::Code;

use crate::common::Fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_get_precise_codes() {
    let mut fx = Fixture::start(&["2024-01"]).await;
    let cases: [(&str, Code, &str); 12] = [
        (r#"{"query":"p99","dataset":"yellow"}"#, Code::InvalidArgument, "unknown query kind"),
        (r#"{"query":"p90","dataset":"yellow""#, Code::InvalidArgument, "not valid JSON"),
        (r#"{"query":"p90","dataset":"yellow","from":"tomorrow"}"#, Code::InvalidArgument, "ISO-8601"),
        (
            r#"{"query":"p90","dataset":"yellow","from":"2024-02-01","to":"2024-01-01"}"#,
            Code::InvalidArgument,
            "before",
        ),
        (r#"{"query":"p90","dataset":"yellow","percentile":1.5}"#, Code::InvalidArgument, "percentile"),
        (r#"{"query":"p90","dataset":"yellow","percentile":0}"#, Code::InvalidArgument, "percentile"),
        (r#"{"query":"p90","dataset":"yellow","columns":["nope"]}"#, Code::InvalidArgument, "unknown column"),
        (r#"{"query":"outliers","dataset":"yellow","order_by":"fare; drop"}"#, Code::InvalidArgument, "order_by"),
        (r#"{"query":"p90","dataset":"green"}"#, Code::NotFound, "unknown dataset"),
        (r#"{"query":"sql","sql":"DELETE FROM yellow"}"#, Code::InvalidArgument, "read-only"),
        (r#"{"query":"sql","sql":"SELECT * FROM nope"}"#, Code::InvalidArgument, "nope"),
        (r#"{"query":"sql","sql":"SELECT * FROM read_csv('/etc/passwd')"}"#, Code::InvalidArgument, "sandbox"),
    ];
    for (ticket, code, needle) in cases {
        let err = fx.get(ticket).await.expect_err(ticket);
        assert_eq!(err.code(), code, "{ticket}: {}", err.message());
        assert!(err.message().contains(needle), "{ticket}: message {:?} lacks {needle:?}", err.message());
    }
    let err =
        fx.client.do_get(arrow_flight::Ticket::new(vec![0xff, 0x00, 0x13])).await.err().map(crate::common::status);
    assert_eq!(err.map(|e| e.code()), Some(Code::InvalidArgument));
}
