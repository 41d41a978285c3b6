"""OpenTelemetry: a DoGet (and an HTTP request) carrying a W3C `traceparent` produces spans with
that trace id, exported over OTLP/gRPC to a real receiver started here (grpcio serving the
opentelemetry-proto TraceService); the trace id is in the response header and the query log."""
import json
import secrets
import threading
import urllib.request
from concurrent import futures

import grpc
import pyarrow.flight as flight
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from conftest import Bridge, Signal, wait_until


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every span it is sent."""

    def __init__(self):
        self.spans = []  # (trace id hex, span id hex, parent span id hex, name)
        self.lock = threading.Lock()
        self.signal = Signal()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request, context):  # noqa: N802 - the gRPC method's name
        with self.lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append((s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name))
        self.signal.changed()
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id):
        with self.lock:
            return [s for s in self.spans if s[0] == trace_id]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.stop(None)


def test_a_client_trace_continues_into_bridge_and_is_exported(data_dir, tmp_path, receiver):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--otlp-endpoint", f"http://127.0.0.1:{receiver.port}"], http=True,
               env={"RUST_LOG": "bridge=info", "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        options = flight.FlightCallOptions(headers=[(b"traceparent", f"00-{trace_id}-{parent}-01".encode())])
        ticket = flight.Ticket(json.dumps({"query": "p90", "dataset": "yellow", "output": "summary"}).encode())
        reader = b.client.do_get(ticket, options)
        reader.read_all()
        spans = wait_until(lambda: (t := receiver.trace(trace_id)) and {"DoGet", "stream"} <= {s[3] for s in t} and t,
                           receiver.signal, timeout=20, what="the DoGet's spans at the receiver")
        by_name = {s[3]: s for s in spans}
        assert {"DoGet", "admission", "plan", "stream"} <= set(by_name), spans
        rpc = by_name["DoGet"]
        assert rpc[2] == parent, "the RPC span's parent is the client's span"
        for child in ("admission", "plan", "stream"):
            assert by_name[child][2] == rpc[1], f"{child} is a child of the RPC span"
        # The query's log line carries the trace id.
        b.wait_for(rf"query.*trace_id\S*{trace_id}", timeout=10)

        # HTTP: the same, and the response names the trace.
        http_trace = secrets.token_hex(16)
        req = urllib.request.Request(f"{b.http}/v1/datasets/yellow/p90?output=summary",
                                     headers={"traceparent": f"00-{http_trace}-{secrets.token_hex(8)}-01"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.headers["x-trace-id"] == http_trace
            r.read()
        wait_until(lambda: {"stream"} <= {s[3] for s in receiver.trace(http_trace)}, receiver.signal, timeout=20,
                   what="the HTTP request's spans")
        # Ingest steps are traced too (their own traces, one per file).
        assert wait_until(lambda: [s for s in receiver.spans if s[3] == "ingest_file"], receiver.signal, timeout=20,
                          what="ingest spans")
        names = {s[3] for s in receiver.spans}
        assert {"convert", "publish"} <= names, names
    finally:
        b.stop()
