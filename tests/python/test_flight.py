"""pyarrow.flight against the real binary: every RPC, every ticket, every error code."""
import datetime
import json
import math
import random

import duckdb

import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet  # noqa: F401 (pa.parquet)
import pyarrow.flight as flight
import pytest

import reference as ref
from conftest import Bridge


def test_list_flights_describes_datasets_and_queries(bridge, files):
    infos = list(bridge.client.list_flights())
    dataset = [i for i in infos if i.descriptor.path == [b"yellow"]]
    assert len(dataset) == 1
    assert dataset[0].total_records == sum(pa.parquet.ParquetFile(f).metadata.num_rows for f in files)
    assert "trip_distance" in dataset[0].schema.names
    kinds = [json.loads(i.app_metadata)["query"] for i in infos if json.loads(i.app_metadata)["kind"] == "query"]
    assert kinds == ["p90", "outliers", "scan", "sql"]
    # Every example command in ListFlights is a working ticket, and answers what it says.
    total = sum(pa.parquet.ParquetFile(f).metadata.num_rows for f in files)
    checked = 0
    for i in infos:
        if i.descriptor.descriptor_type != flight.DescriptorType.CMD:
            continue
        example = json.loads(i.descriptor.command)
        got = bridge.client.do_get(i.endpoints[0].ticket).read_all()
        frm, to = example.get("from"), example.get("to")
        if example["query"] == "p90":
            assert got.num_rows == ref.p90(files, frm, to)[1].num_rows
        elif example["query"] == "outliers" and frm:
            assert got.num_rows == ref.outliers(files, frm, to).num_rows
        elif example["query"] == "scan":
            want = ref.in_range(ref.read(files), frm, to).num_rows if frm else total
            assert got.num_rows == min(want, example.get("limit") or want)
        elif example["query"] == "sql":
            assert got.column(0)[0].as_py() == total, example
        else:
            continue
        checked += 1
    assert checked >= 3, "the examples of p90, scan and sql must be checked"


@pytest.mark.parametrize(
    "frm,to",
    [
        ("2024-01-01", "2024-02-01"),
        ("2024-02-03", "2024-02-04"),
        (None, None),
        # From an hour to the same hour a day later: whole hour groups, the two days' outliers cut.
        ("2024-01-05T07:00:00", "2024-01-06T07:00:00"),
        # Odd minutes around whole days: two hours cut, the days between them whole.
        ("2024-01-05T07:13:00", "2024-01-09T17:45:30"),
        # Both files nearly whole, less a few of their stale-clock strays: too few small groups
        # for the files' smalls runs, each taken from its file's histogram one by one.
        ("2023-03-01T05:17:00", "2024-03-28T12:30:00"),
    ],
)
def test_p90_matches_duckdb_reference(bridge, files, frm, to):
    ticket = {"query": "p90", "dataset": "yellow"}
    if frm:
        ticket.update({"from": frm, "to": to})
    got = bridge.get(ticket)
    thr, want = ref.p90(files, frm, to)
    assert ref.key(got) == ref.key(want)
    md = got.schema.metadata
    assert math.isclose(float(md[b"bridge.p90.threshold"]), thr, rel_tol=1e-12)
    assert int(md[b"bridge.p90.trips_above"]) == want.num_rows


def random_ranges(n, seed):
    """Ranges at odd minutes and seconds, from a few minutes to two months, some past the data."""
    rng = random.Random(seed)
    start = datetime.datetime(2023, 12, 20)
    for _ in range(n):
        frm = start + datetime.timedelta(seconds=rng.randrange(80 * 86400))
        to = frm + datetime.timedelta(seconds=rng.choice([rng.randrange(60, 86400), rng.randrange(86400, 62 * 86400)]))
        yield frm.isoformat(sep=" "), to.isoformat(sep=" "), rng.choice([0.5, 0.9, rng.uniform(0.01, 0.99)])


def test_p90_summary_is_duckdbs_quantile_cont_over_random_ranges(bridge, files):
    """Property test: the threshold and counts of random ranges against DuckDB-Python."""
    con = duckdb.connect()
    src = f"read_parquet([{', '.join(repr(str(f)) for f in files)}], union_by_name=true)"
    for frm, to, q in random_ranges(25, seed=90):
        t = {"query": "p90", "dataset": "yellow", "from": frm, "to": to, "output": "summary", "percentile": q}
        got = bridge.get(t).to_pylist()[0]
        where = f"tpep_pickup_datetime >= TIMESTAMP '{frm}' AND tpep_pickup_datetime < TIMESTAMP '{to}'"
        thr, n = con.execute(f"SELECT quantile_cont(trip_distance, {q!r}), count(*) FROM {src} WHERE {where}").fetchone()
        above = con.execute(f"SELECT count(*) FROM {src} WHERE {where} AND trip_distance > ?", [thr]).fetchone()[0]
        assert got["trips_in_range"] == n, t
        if thr is None:
            assert got["threshold"] is None, t
        else:
            assert math.isclose(got["threshold"], thr, rel_tol=1e-12), (t, got, thr)
        assert got["trips_above"] == above, (t, got)


def test_p90_summary_cold_and_warm_match_duckdb(files, tmp_path):
    """A summary over weeks on a fresh server runs inline without the day histograms it would
    use (counting those days group by group) and has them built for the next: every answer, cold
    or warm, is DuckDB-Python's."""
    con = duckdb.connect()
    src = f"read_parquet([{', '.join(repr(str(f)) for f in files)}], union_by_name=true)"
    fresh = Bridge([f"yellow={files[0].parent}/*.parquet"], tmp_path / "cache")
    try:
        # Most of both months (their histograms less the days missed), then a few weeks across
        # the two (whole days by their day histograms).
        for frm, to in [("2024-01-03 07:13:11", "2024-02-19 17:45:00"), ("2024-01-20 07:13:00", "2024-02-09 17:45:00")]:
            where = f"tpep_pickup_datetime >= TIMESTAMP '{frm}' AND tpep_pickup_datetime < TIMESTAMP '{to}'"
            thr, n = con.execute(f"SELECT quantile_cont(trip_distance, 0.9), count(*) FROM {src} WHERE {where}").fetchone()
            above = con.execute(f"SELECT count(*) FROM {src} WHERE {where} AND trip_distance > ?", [thr]).fetchone()[0]
            t = {"query": "p90", "dataset": "yellow", "from": frm, "to": to, "output": "summary"}
            for _ in range(5):
                got = fresh.get(t).to_pylist()[0]
                assert (got["trips_in_range"], got["trips_above"]) == (n, above), (frm, to)
                assert math.isclose(got["threshold"], thr, rel_tol=1e-12), (frm, to, got, thr)
    finally:
        fresh.stop()


def test_p90_summary_and_info_schema(bridge, files):
    t = {"query": "p90", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01", "output": "summary", "percentile": 0.5}
    got = bridge.get(t).to_pylist()[0]
    thr, want = ref.p90(files, "2024-01-01", "2024-02-01", 0.5)
    assert math.isclose(got["threshold"], thr, rel_tol=1e-12) and got["trips_above"] == want.num_rows
    desc = flight.FlightDescriptor.for_command(json.dumps(t))
    info = bridge.client.get_flight_info(desc)
    assert info.schema.names == ["range_from", "range_to", "percentile", "trips_in_range", "threshold", "trips_above"]
    assert bridge.client.get_schema(desc).schema.names == info.schema.names
    assert bridge.client.do_get(info.endpoints[0].ticket).read_all().to_pylist()[0] == got


def test_outliers_match_pyarrow_reference(bridge, files):
    got = bridge.get({"query": "outliers", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"})
    want = ref.outliers(files, "2024-01-01", "2024-02-01")
    cols = ("tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance", "reason")
    assert ref.key(got, cols) == ref.key(want, cols)
    assert set(got["reason"].to_pylist()) == {"duration", "speed", "distance"}


def test_top10_fastest_within_p90(bridge, files):
    got = bridge.get({"query": "outliers", "dataset": "yellow", "within_p90": True, "order_by": "avg_speed_mph desc", "limit": 10})
    # The reference: DuckDB-Python's threshold over every trip, then the physics rule in pyarrow.
    thr, _ = ref.p90(files)
    out = ref.outliers(files, "1900-01-01", "2100-01-01")
    above = out.filter(pa.compute.greater(out["trip_distance"], thr))
    us = pa.compute.subtract(above["tpep_dropoff_datetime"].cast(pa.int64()), above["tpep_pickup_datetime"].cast(pa.int64()))
    hours = pa.compute.divide(us.cast(pa.float64()), 3.6e9)
    speed = pa.compute.if_else(pa.compute.greater(hours, 0), pa.compute.divide(above["trip_distance"], hours), None)
    want = sorted((s for s in speed.to_pylist() if s is not None), reverse=True)[:10]
    assert got["avg_speed_mph"].to_pylist() == pytest.approx(want, rel=1e-12)
    assert math.isclose(float(got.schema.metadata[b"bridge.p90.threshold"]), thr, rel_tol=1e-12)


@pytest.mark.parametrize("order_by,limit,frm,to", [
    ("avg_speed_mph desc", 25, "2024-01-01", "2024-03-01"),
    ("avg_speed_mph asc", 10, "2024-01-09 13:17", "2024-02-11 08:05"),
    ("duration_hours desc", 7, "2024-01-01", "2024-03-01"),
    ("trip_distance desc", 12, "2024-02-03 07:13", "2024-02-20"),
    ("trip_distance asc", 5, "2024-01-01", "2024-03-01"),
])
def test_outliers_top_k_match_pyarrow_reference(bridge, files, order_by, limit, frm, to):
    """Top-k by a computed column: the order, and each row whole, against pyarrow over the files."""
    got = bridge.get({"query": "outliers", "dataset": "yellow", "from": frm, "to": to, "order_by": order_by,
                      "limit": limit})
    want = ref.outliers(files, frm, to, columns=None)
    col, direction = order_by.split()
    us = pa.compute.subtract(want["tpep_dropoff_datetime"].cast(pa.int64()), want["tpep_pickup_datetime"].cast(pa.int64()))
    hours = pa.compute.divide(us.cast(pa.float64()), 3.6e9)
    speed = pa.compute.if_else(pa.compute.greater(hours, 0), pa.compute.divide(want["trip_distance"], hours), None)
    want = want.append_column("duration_hours", hours).append_column("avg_speed_mph", speed)
    values = sorted((v for v in want[col].to_pylist() if v is not None), reverse=direction == "desc")[:limit]
    assert got.num_rows == limit
    assert got[col].to_pylist() == pytest.approx(values, rel=1e-12)
    # Every row is a reference outlier, whole: its columns read from the right place.
    names = [n for n in got.schema.names if n not in ("duration_hours", "avg_speed_mph", "reason")]
    by_lower = {n.lower(): n for n in want.schema.names}  # the files spell `Airport_fee`
    reference_rows = set(zip(*(want[by_lower[n.lower()]].to_pylist() for n in names + ["reason"])))
    for row in got.select(names + ["reason"]).to_pylist():
        assert tuple(row.values()) in reference_rows, row


def test_sql_matches_duckdb_reference(bridge, files):
    got = bridge.get({"query": "sql", "sql": "SELECT payment_type, count(*) AS n FROM yellow GROUP BY 1 ORDER BY 1"})
    paths = ", ".join(f"'{f}'" for f in files)
    want = ref.duckdb.sql(f"SELECT payment_type, count(*) AS n FROM read_parquet([{paths}]) GROUP BY 1 ORDER BY 1").to_arrow_table()
    assert got.to_pylist() == want.to_pylist()


@pytest.mark.parametrize("ticket,code,needle", [
    (b'{"query":"nope"}', "INVALID_ARGUMENT", "unknown query kind"),
    (b'{"query":"p90",', "INVALID_ARGUMENT", "not valid JSON"),
    (b'\xff\x00garbage', "INVALID_ARGUMENT", "neither"),
    (b'{"query":"p90","dataset":"yellow","from":"01/02/2024"}', "INVALID_ARGUMENT", "ISO-8601"),
    (b'{"query":"p90","dataset":"yellow","from":"2024-02-01","to":"2024-01-01"}', "INVALID_ARGUMENT", "before"),
    (b'{"query":"p90","dataset":"yellow","percentile":1}', "INVALID_ARGUMENT", "percentile"),
    (b'{"query":"p90","dataset":"yellow","columns":["bogus"]}', "INVALID_ARGUMENT", "unknown column"),
    (b'{"query":"outliers","dataset":"yellow","order_by":"reason; drop"}', "INVALID_ARGUMENT", "order_by"),
    (b'{"query":"p90","dataset":"green"}', "NOT_FOUND", "unknown dataset"),
    (b'{"query":"sql","sql":"DROP VIEW yellow"}', "INVALID_ARGUMENT", "read-only"),
    (b'{"query":"sql","sql":"SELECT * FROM read_csv(\'/etc/passwd\')"}', "INVALID_ARGUMENT", "sandbox"),
])
def test_errors_have_codes_and_messages(bridge, ticket, code, needle):
    # pyarrow raises ArrowInvalid for INVALID_ARGUMENT and ArrowKeyError for NOT_FOUND.
    expected = pa.ArrowKeyError if code == "NOT_FOUND" else pa.ArrowInvalid
    with pytest.raises(expected) as e:
        bridge.client.do_get(flight.Ticket(ticket)).read_all()
    assert f"gRPC client debug context: {code}:" in str(e.value)
    assert needle in str(e.value)


def test_unknown_action_and_unsupported_rpcs(bridge):
    with pytest.raises(pa.ArrowNotImplementedError, match="unknown action"):
        list(bridge.client.do_action(flight.Action("drop", b"")))
    with pytest.raises(pa.ArrowNotImplementedError):
        writer, _ = bridge.client.do_put(flight.FlightDescriptor.for_path("yellow"), pa.schema([("a", pa.int64())]))
        writer.close()


@pytest.mark.parametrize("frm,to", [("2024-01-01", "2024-02-01"), ("2024-02-03T06:30", "2024-02-04T12:00"), (None, None)])
def test_scan_returns_exactly_the_range(bridge, files, frm, to):
    ticket = {"query": "scan", "dataset": "yellow"}
    if frm:
        ticket.update({"from": frm, "to": to})
    got = bridge.get(ticket)
    want = ref.read(files)
    if frm:
        want = ref.in_range(want, frm, to)
    assert got.num_rows == want.num_rows
    assert ref.key(got) == ref.key(want)
    assert int(got.schema.metadata[b"bridge.file_count"]) == len(files)


def test_scan_projection_and_limit(bridge, files):
    got = bridge.get({"query": "scan", "dataset": "yellow", "columns": ["TRIP_DISTANCE", "fare_amount"], "limit": 1234})
    assert got.schema.names == ["trip_distance", "fare_amount"] and got.num_rows == 1234
    # Without a projection whole days go out as stored; a limit still cuts exactly, mid-batch.
    for limit in (1, 20_000, 123_457):
        got = bridge.get({"query": "scan", "dataset": "yellow", "limit": limit})
        assert got.num_rows == limit
        assert set(ref.key(got)) <= set(ref.key(ref.read(files)))
    with pytest.raises(pa.ArrowInvalid, match="unknown column"):
        bridge.get({"query": "scan", "dataset": "yellow", "columns": ["nope"]})
    with pytest.raises(pa.ArrowInvalid, match="does not apply"):
        bridge.get({"query": "scan", "dataset": "yellow", "within_p90": True})


@pytest.mark.parametrize("sql", [
    "SELECT 9223372036854775807::BIGINT + 1 AS x",            # Out of Range
    "SELECT CAST('not a number' AS INTEGER) AS x",             # Conversion
    "SELECT [1, 2] + 'x' AS x",                                # Binder / type mismatch
    "SELECT count(*) FROM yellow WHERE trip_distance = 'far'", # Conversion at run time
    "SELECT no_such_column FROM yellow",                       # Binder
])
def test_errors_the_users_sql_causes_are_invalid_argument(bridge, sql):
    # pyarrow raises ArrowInvalid for INVALID_ARGUMENT (FlightInternalError for INTERNAL).
    with pytest.raises(pa.ArrowInvalid) as err:
        bridge.get({"query": "sql", "sql": sql})
    assert "internal error" not in str(err.value)


@pytest.mark.parametrize("headers", [
    [(b"bridge-max-message-bytes", b"16MiB")],
    [(b"bridge-ipc-compression", b"zstd")],
    [(b"bridge-ipc-compression", b"lz4"), (b"bridge-max-message-bytes", b"4MiB")],
])
def test_pyarrow_clients_ask_for_larger_or_compressed_messages(bridge, files, headers):
    """The README's Python lines: the same rows as a default client gets, against pyarrow."""
    ticket = flight.Ticket(json.dumps({"query": "scan", "dataset": "yellow"}).encode())
    got = bridge.client.do_get(ticket, flight.FlightCallOptions(headers=headers)).read_all()
    assert ref.key(got) == ref.key(ref.read(files))
    biggest = max(b.nbytes for b in got.to_batches())
    asked = dict(headers).get(b"bridge-max-message-bytes")
    assert biggest <= (int(asked[:-3]) << 20 if asked else 2 << 20) * 1.05, biggest


def test_large_messages_over_a_range_are_the_rows_in_it(bridge, files):
    """A client that accepts 16 MiB messages gets whole runs of row groups decoded as one batch
    and the edges row group by row group: the same rows as pyarrow filtering the files."""
    headers = [(b"bridge-max-message-bytes", b"16MiB")]
    for frm, to in [("2024-01-03T07:13:00", "2024-02-19T17:45:00"), ("2024-01-20T00:00:00", "2024-01-21T00:00:00")]:
        ticket = {"query": "scan", "dataset": "yellow", "from": frm, "to": to}
        raw = flight.Ticket(json.dumps(ticket).encode())
        got = bridge.client.do_get(raw, flight.FlightCallOptions(headers=headers)).read_all()
        assert ref.key(got) == ref.key(ref.in_range(ref.read(files), frm, to)), (frm, to)


def test_unknown_wire_headers_values_are_refused(bridge):
    ticket = flight.Ticket(json.dumps({"query": "scan", "dataset": "yellow"}).encode())
    for header in [(b"bridge-ipc-compression", b"brotli"), (b"bridge-max-message-bytes", b"100GB")]:
        with pytest.raises(pa.ArrowInvalid, match="bridge-"):
            bridge.client.do_get(ticket, flight.FlightCallOptions(headers=[header])).read_all()


def test_do_get_refuses_malformed_and_oversized_requests(bridge):
    """DoGet reads its request itself: a body that is not a Ticket is an error, a body over the
    64 MiB message limit is RESOURCE_EXHAUSTED, and a good ticket still works on the same channel
    (a raw gRPC client, so the bytes are exactly what is sent)."""
    import grpc
    with grpc.insecure_channel(bridge.addr) as channel:
        do_get = channel.unary_stream("/arrow.flight.protocol.FlightService/DoGet",
                                      request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            list(do_get(b"\xff\xff\xff", timeout=30))
        assert err.value.code() == grpc.StatusCode.INTERNAL and "ticket" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            list(do_get(b"\x0a" + b"\x80\x80\x80\x22" + b"x" * (68 << 20), timeout=60))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        ticket = json.dumps({"query": "p90", "dataset": "yellow", "output": "summary"}).encode()
        messages = list(do_get(b"\x0a" + bytes([len(ticket)]) + ticket, timeout=30))
        assert len(messages) >= 2  # the schema, then the summary row
