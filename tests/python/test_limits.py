"""Limits: request N+1 fails the documented way — admission, deadlines, result caps."""
import json
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import Bridge, wait_until
from test_admin import http, metric

SCAN = flight.Ticket(json.dumps({"query": "scan", "dataset": "yellow"}).encode())
SLOW_SQL = {"query": "sql", "sql": "SELECT sum(i) AS s FROM range(1000000000000) t(i)"}


def test_a_full_server_answers_unavailable_fast_and_frees_the_slot_when_the_stream_ends(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--max-running-queries", "1", "--max-queued-queries", "1", "--queue-timeout", "300ms"])
    try:
        first = b.client.do_get(SCAN)
        first.read_chunk()  # streaming, not finished: the slot is held by the stream, not the headers
        started = time.monotonic()
        with pytest.raises(flight.FlightUnavailableError, match="server busy"):
            b.get({"query": "p90", "dataset": "yellow", "output": "summary"})
        assert time.monotonic() - started < 3, "refused after the queue timeout, not hung"
        rest = first.read_all()
        assert rest.num_rows > 0
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).num_rows == 1
    finally:
        b.stop()


def test_deadlines_stop_the_query(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", ["--query-timeout", "700ms"], admin=True)
    try:
        errors = []

        def run(options=flight.FlightCallOptions()):
            try:
                b.client.do_get(flight.Ticket(json.dumps(SLOW_SQL).encode()), options).read_all()
            except flight.FlightTimedOutError as e:
                errors.append(str(e))

        t = threading.Thread(target=run)
        started = time.monotonic()
        t.start()
        wait_until(lambda: "bridge_query_threads_active 1" in http(b.admin + "/metrics")[1], b,
                   what="the query to be running")
        t.join(timeout=10)
        assert errors and "deadline" in errors[0], errors
        assert time.monotonic() - started < 5
        # The DuckDB query was interrupted: nothing keeps running.
        wait_until(lambda: "bridge_query_threads_active 0" in http(b.admin + "/metrics")[1], b, timeout=2,
                   what="the server to stop the query")
        # The client's own deadline is honoured too.
        t = threading.Thread(target=run, args=(flight.FlightCallOptions(timeout=0.5),))
        t.start()
        wait_until(lambda: "bridge_query_threads_active 1" in http(b.admin + "/metrics")[1], b,
                   what="the second query to be running")
        t.join(timeout=10)
        assert len(errors) == 2
        wait_until(lambda: "bridge_query_threads_active 0" in http(b.admin + "/metrics")[1], b, timeout=2,
                   what="the server to stop the client-cancelled query")
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).num_rows == 1
    finally:
        b.stop()


def test_result_size_caps(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", ["--max-result-rows", "50000"])
    try:
        with pytest.raises(pa.ArrowException, match="larger than this server's limit of 50000 rows"):
            b.client.do_get(SCAN).read_all()
        assert b.get({"query": "scan", "dataset": "yellow", "limit": 50000}).num_rows == 50000
    finally:
        b.stop()


class Headers(flight.ClientMiddlewareFactory):
    """Captures response headers (pyarrow exposes them only to middleware)."""

    def __init__(self):
        self.seen = []

    def start_call(self, info):
        factory = self

        class M(flight.ClientMiddleware):
            def received_headers(self, headers):
                factory.seen.append(headers)

        return M()


def test_request_ids_come_back(bridge):
    h = Headers()
    c = flight.connect(f"grpc://{bridge.addr}", middleware=[h])
    options = flight.FlightCallOptions(headers=[(b"x-request-id", b"trace-42")])
    c.do_get(flight.Ticket(json.dumps({"query": "p90", "dataset": "yellow", "output": "summary"}).encode()),
             options).read_all()
    c.do_get(flight.Ticket(json.dumps({"query": "p90", "dataset": "yellow", "output": "summary"}).encode())).read_all()
    ids = [hd.get("x-request-id") for hd in h.seen if hd.get("x-request-id")]
    assert ids[0] == ["trace-42"]
    assert len(ids[1][0]) == 16 and ids[1][0] != "trace-42"


def test_sigterm_drains_then_exits_zero(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", ["--drain-timeout", "1s"])
    held = b.client.do_get(SCAN)
    held.read_chunk()  # a stream in flight that never finishes by itself
    started = time.monotonic()
    b.proc.terminate()
    assert b.proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10


def test_a_query_over_the_memory_limit_fails_cleanly_and_the_server_lives_on(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", memory_limit="64MB")
    try:
        huge = {"query": "sql", "sql": "SELECT string_agg(i::VARCHAR || repeat('x', 50), ',') AS s FROM range(20000000) t(i)"}
        with pytest.raises(pa.ArrowException, match="(?i)out of memory") as err:
            b.get(huge)
        assert "RESOURCE_EXHAUSTED" in str(err.value)
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).num_rows == 1
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() > 0
    finally:
        b.stop()


def test_client_cancel_stops_the_query_and_frees_its_slot(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--max-running-queries", "1", "--max-queued-queries", "0"], admin=True)
    try:
        reader = b.client.do_get(SCAN)
        reader.read_chunk()
        assert "bridge_query_threads_active 1" in http(b.admin + "/metrics")[1]
        reader.cancel()
        wait_until(lambda: "bridge_query_threads_active 0" in http(b.admin + "/metrics")[1], b, timeout=1,
                   what="the cancelled query to stop within 1 s")
        wait_until(lambda: "bridge_queries_running 0" in http(b.admin + "/metrics")[1], b, timeout=1,
                   what="the slot to be released")
        # No leaked slot: with a single slot and no queue, the next query runs at once.
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).num_rows == 1
        text = http(b.admin + "/metrics")[1]
        assert metric(text, "bridge_requests_total", rpc="DoGet", kind="scan", code="Cancelled") == 1
    finally:
        b.stop()


def test_a_stalled_client_loses_its_slot_and_its_query_at_the_deadline(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--query-timeout", "1s", "--max-running-queries", "1", "--max-queued-queries", "0"], admin=True)
    try:
        stalled = b.client.do_get(SCAN)
        stalled.read_chunk()  # ...and then stops reading, holding the stream open
        assert "bridge_query_threads_active 1" in http(b.admin + "/metrics")[1]

        def summary():
            try:
                return b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).num_rows == 1
            except flight.FlightUnavailableError:
                return False

        wait_until(summary, b, timeout=10, what="the slot to be freed by the deadline, not by the client")
        wait_until(lambda: "bridge_query_threads_active 0" in http(b.admin + "/metrics")[1], b, timeout=2,
                   what="the stalled query's producer to stop")
        with pytest.raises(flight.FlightTimedOutError, match="deadline"):
            stalled.read_all()
    finally:
        b.stop()
