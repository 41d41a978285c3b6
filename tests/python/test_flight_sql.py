"""Flight SQL on the same port, through real ADBC clients, checked against DuckDB-Python."""
import json
import math

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import pytest

import reference as ref

GROUPED = ("SELECT payment_type, count(*) AS n, sum(trip_distance) AS d "
           "FROM {src} GROUP BY payment_type ORDER BY payment_type")


@pytest.fixture
def conn(bridge):
    c = flightsql.connect(f"grpc://{bridge.addr}")
    yield c
    c.close()


def reference(files, sql):
    paths = ", ".join(f"'{f}'" for f in files)
    return duckdb.connect().execute(sql.format(src=f"read_parquet([{paths}], union_by_name=true)")).fetchall()


def test_statements_match_duckdb(conn, files):
    want = reference(files, GROUPED)
    with conn.cursor() as cur:
        cur.execute(GROUPED.format(src="yellow"))
        got = cur.fetch_arrow_table().to_pylist()
        cur.execute(GROUPED.format(src="store.main.yellow"))
        rows = cur.fetchall()
    assert [(r["payment_type"], r["n"]) for r in got] == [(p, n) for p, n, _ in want]
    assert all(math.isclose(r["d"], d, rel_tol=1e-9) for r, (_, _, d) in zip(got, want))
    assert [r[:2] for r in rows] == [w[:2] for w in want]


def test_objects_and_table_schema_list_the_datasets(conn, bridge):
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    tables = {(c["catalog_name"], s["db_schema_name"], t["table_name"]): [col["column_name"] for col in t["table_columns"]]
              for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
    dataset = next(i for i in bridge.client.list_flights() if i.descriptor.path == [b"yellow"])
    assert tables == {("store", "main", "yellow"): dataset.schema.names}
    schema = conn.adbc_get_table_schema("yellow", catalog_filter="store", db_schema_filter="main")
    assert schema == dataset.schema


def test_info_describes_a_read_only_bridge(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Bridge"
    assert info["vendor_version"]


def test_writes_are_refused_and_the_plain_tickets_still_work(conn, bridge):
    with conn.cursor() as cur, pytest.raises(Exception, match="(?i)select"):
        cur.execute("CREATE TABLE t AS SELECT 1")
    # Same port, same session: a plain pyarrow ticket.
    assert bridge.get({"query": "p90", "dataset": "yellow", "output": "summary"}).num_rows == 1


# --- prepared statements ----------------------------------------------------------------------

PARAMS_SQL = ("SELECT count(*) AS n, sum(trip_distance) AS d FROM {src} "
              "WHERE trip_distance > ? AND tpep_pickup_datetime >= ? AND CAST(tpep_pickup_datetime AS DATE) < ? "
              "AND store_and_fwd_flag = ? AND VendorID = ?")


def reference_params(files, sql, params):
    paths = ", ".join(f"'{f}'" for f in files)
    src = f"read_parquet([{paths}], union_by_name=true)"
    return duckdb.connect().execute(sql.format(src=src), params).fetchall()


def test_prepared_statements_bind_every_type_and_re_execute(conn, files):
    import datetime as dt
    runs = [
        (1.5, dt.datetime(2024, 1, 3, 6, 30), dt.date(2024, 1, 20), "N", 2),
        (7.25, dt.datetime(2024, 1, 10), dt.date(2024, 2, 10), "Y", 1),
        (0.0, dt.datetime(2024, 2, 1), dt.date(2024, 3, 1), "N", 1),
    ]
    with conn.cursor() as cur:
        cur.adbc_prepare(PARAMS_SQL.format(src="yellow"))
        for params in runs:
            cur.execute(PARAMS_SQL.format(src="yellow"), params)
            got = cur.fetchall()
            [(n, d)] = reference_params(files, PARAMS_SQL, list(params))
            assert got[0][0] == n and n > 0, params
            assert math.isclose(got[0][1], d, rel_tol=1e-9), params


def test_several_parameter_rows_run_once_each_and_concatenate(bridge, files):
    import pyarrow as pa
    from flightsql_wire import bind, prepare, prepared, read
    sql = "SELECT ? AS vendor, count(*) AS n FROM yellow WHERE VendorID = ?"
    handle, _, params = prepare(bridge.client, sql)
    assert len(params) == 2
    bound = bind(bridge.client, handle, pa.record_batch({"a": [1, 2, 6], "b": [1, 2, 6]}))
    _, table = read(bridge.client, prepared(bound))
    want = [(v, reference_params(files, "SELECT count(*) FROM {src} WHERE VendorID = ?", [v])[0][0]) for v in (1, 2, 6)]
    assert [(r["vendor"], r["n"]) for r in table.to_pylist()] == want


def test_executemany_is_an_update_and_is_refused(conn):
    with conn.cursor() as cur, pytest.raises(Exception, match="read-only"):
        cur.executemany("SELECT ? FROM yellow", [(1,), (2,)])


def test_unbound_parameters_are_a_clear_error(bridge):
    with pytest.raises(Exception, match="parameter"):
        bridge.get({"query": "sql", "sql": "SELECT count(*) FROM yellow WHERE VendorID = ?"})


# --- built-in queries from SQL ----------------------------------------------------------------

KEY = ["tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance", "PULocationID", "DOLocationID", "fare_amount"]


def sorted_rows(table, columns):
    return sorted(table.select(columns).to_pylist(), key=lambda r: tuple((v is None, str(v)) for v in r.values()))


def test_p90_macro_returns_the_p90_tickets_rows(conn, bridge):
    ticket = bridge.get({"query": "p90", "dataset": "yellow", "from": "2024-01-05", "to": "2024-01-12"})
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM p90('yellow', TIMESTAMP '2024-01-05', TIMESTAMP '2024-01-12')")
        macro = cur.fetch_arrow_table()
        cur.execute("SELECT count(*) FROM p90('yellow', '2024-01-05', '2024-01-12', percentile := 0.5)")
        [(half,)] = cur.fetchall()
    assert ticket.num_rows > 0 and macro.num_rows == ticket.num_rows
    assert macro.schema.names == ticket.schema.names
    assert sorted_rows(macro, KEY) == sorted_rows(ticket, KEY)
    half_ticket = bridge.get({"query": "p90", "dataset": "yellow", "from": "2024-01-05", "to": "2024-01-12",
                              "percentile": 0.5, "output": "summary"})
    assert half == half_ticket.column("trips_above")[0].as_py()


def test_outliers_macro_returns_the_outliers_tickets_rows(conn, bridge):
    cols = KEY + ["duration_hours", "avg_speed_mph", "reason"]
    for within in (False, True):
        ticket = bridge.get({"query": "outliers", "dataset": "yellow", "from": "2024-02-01", "to": "2024-02-08",
                             "within_p90": within})
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM outliers('yellow', TIMESTAMP '2024-02-01', TIMESTAMP '2024-02-08', "
                        f"within_p90 := {str(within).lower()})")
            macro = cur.fetch_arrow_table()
        assert ticket.num_rows > 0 and macro.num_rows == ticket.num_rows, within
        assert sorted_rows(macro, cols) == sorted_rows(ticket, cols), within


# --- clients built on ADBC, and types -----------------------------------------------------------

TYPED = ("SELECT tpep_pickup_datetime, CAST(tpep_pickup_datetime AS DATE) AS day, VendorID, passenger_count, "
         "trip_distance, CAST(fare_amount AS DECIMAL(10, 2)) AS fare, store_and_fwd_flag, "
         "CASE WHEN VendorID = 2 THEN NULL ELSE PULocationID END AS maybe_null "
         "FROM {src} WHERE tpep_pickup_datetime >= TIMESTAMP '2024-01-02' "
         "AND tpep_pickup_datetime < TIMESTAMP '2024-01-03' "
         "ORDER BY tpep_pickup_datetime, tpep_dropoff_datetime, trip_distance, fare_amount, PULocationID")


def reference_arrow(files, sql):
    """The raw files read with the TLC schema's documented types (ids and counts BIGINT)."""
    paths = ", ".join(f"'{f}'" for f in files)
    canonical = ("(SELECT * REPLACE (CAST(VendorID AS BIGINT) AS VendorID, CAST(PULocationID AS BIGINT) AS PULocationID, "
                 f"CAST(passenger_count AS BIGINT) AS passenger_count) FROM read_parquet([{paths}], union_by_name=true))")
    return duckdb.connect().sql(sql.format(src=canonical)).to_arrow_table()


def test_pandas_read_sql_matches_duckdb(conn, files):
    import pandas as pd
    got = pd.read_sql(TYPED.format(src="yellow"), conn)
    want = reference_arrow(files, TYPED).to_pandas()
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, want, check_dtype=True)
    assert str(got["tpep_pickup_datetime"].dtype).startswith("datetime64") and got["tpep_pickup_datetime"].dt.tz is None


def test_polars_read_database_matches_duckdb(conn, files):
    import polars as pl
    got = pl.read_database(TYPED.format(src="yellow"), connection=conn)
    want = pl.from_arrow(reference_arrow(files, TYPED))
    assert got.height > 0
    assert got.schema == want.schema
    assert got.equals(want)
    assert got.schema["tpep_pickup_datetime"] == pl.Datetime("us")  # naive, as TLC time is


def test_types_round_trip_with_the_documented_mapping(conn):
    import pyarrow as pa
    with conn.cursor() as cur:
        cur.execute("SELECT 1::TINYINT a, 2::SMALLINT b, 3::INTEGER c, 4::BIGINT d, 5::UBIGINT e, "
                    "170141183460469231731687303715884105727::HUGEINT h, 2::UHUGEINT uh, 1.25::FLOAT f, "
                    "2.5::DOUBLE g, 12.34::DECIMAL(10,2) dc, DATE '2024-02-29' dt, "
                    "TIMESTAMP '2024-01-01 12:34:56.789' ts, TIMESTAMPTZ '2024-01-01 00:00:00+00' tz, "
                    "TIME '01:02:03' tm, '01:02:03+05'::TIMETZ ttz, 12::VARINT vi, '101'::BITSTRING bits, "
                    "NULL::INTEGER n, 'x' s")
        t = cur.fetch_arrow_table()
    want = {
        "a": pa.int8(), "b": pa.int16(), "c": pa.int32(), "d": pa.int64(), "e": pa.uint64(),
        "h": pa.decimal128(38, 0), "uh": pa.string(), "f": pa.float32(), "g": pa.float64(),
        "dc": pa.decimal128(10, 2), "dt": pa.date32(), "ts": pa.timestamp("us"), "tz": pa.timestamp("us", "Etc/UTC"),
        "tm": pa.time64("us"), "ttz": pa.string(), "vi": pa.string(), "bits": pa.string(), "n": pa.int32(),
        "s": pa.string(),
    }
    assert {f.name: f.type for f in t.schema} == want
    row = t.to_pylist()[0]
    assert row["h"] == 170141183460469231731687303715884105727
    assert (row["uh"], row["ttz"], row["vi"], row["bits"], row["n"]) == ("2", "01:02:03+05", "12", "101", None)
    assert str(row["ts"]) == "2024-01-01 12:34:56.789000"


# --- cancel -------------------------------------------------------------------------------------

def _run(client, ticket, errors, options=None):
    import pyarrow.flight as flight
    try:
        client.do_get(ticket, options).read_all()
    except flight.FlightError as e:
        errors.append(e)


def test_cancel_flight_info_stops_the_query_within_a_second(data_dir, tmp_path):
    import threading
    import time
    import pyarrow.flight as flight
    from conftest import Bridge, wait_until
    from flightsql_wire import cancel_flight_info, command
    from test_admin import http, metric

    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", admin=True)
    try:
        active = lambda: metric(http(b.admin + "/metrics")[1], "bridge_query_threads_active")
        slow = command("CommandStatementQuery", (1, "SELECT sum(i) AS s FROM range(1000000000000) t(i)"))
        info = b.client.get_flight_info(slow)
        errors = []

        def run():
            try:
                b.client.do_get(info.endpoints[0].ticket).read_all()
            except flight.FlightError as e:
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        wait_until(lambda: active() == 1, b, what="the query to be running")
        started = time.monotonic()
        assert cancel_flight_info(b.client, info) == 1  # CANCELLED
        wait_until(lambda: active() == 0, b, timeout=1.0, what="the server to stop the query")
        stopped = time.monotonic() - started
        t.join(timeout=5)
        assert isinstance(errors[0], flight.FlightCancelledError), errors
        assert stopped < 1.0
        assert metric(http(b.admin + "/metrics")[1], "bridge_queries_cancelled_total") == 1
        # A finished query has nothing to cancel; the server still serves.
        assert cancel_flight_info(b.client, info) == 3  # NOT_CANCELLABLE
        # Mid-stream: the client has read part of a large answer when it cancels.
        big = b.client.get_flight_info(command("CommandStatementQuery", (1, "SELECT * FROM yellow, range(4)")))
        reader = b.client.do_get(big.endpoints[0].ticket)
        reader.read_chunk()
        assert cancel_flight_info(b.client, big) == 1
        # The server side is what matters here (pyarrow turns a CANCELLED read into a simulated
        # SIGINT, so the rest of this reader is left unread).
        wait_until(lambda: active() == 0, b, timeout=1.0, what="the server to stop the streaming query")
        assert metric(http(b.admin + "/metrics")[1], "bridge_queries_cancelled_total") == 2
        reader.cancel()  # ...and the client lets go of its call, or shutdown waits for it
        # A plain ticket's FlightInfo: cancelling it stops the DoGet of its endpoint, not another
        # client's DoGet of the same JSON ticket.
        slow_json = json.dumps({"query": "sql", "sql": "SELECT sum(i) AS s FROM range(1000000000000) t(i)"}).encode()
        info = b.client.get_flight_info(flight.FlightDescriptor.for_command(slow_json))
        mine, other = [], []
        a = threading.Thread(target=lambda: _run(b.client, info.endpoints[0].ticket, mine))
        c = threading.Thread(target=lambda: _run(b.client, flight.Ticket(slow_json), other,
                                                 flight.FlightCallOptions(timeout=4)))
        a.start()
        c.start()
        wait_until(lambda: active() == 2, b, what="both queries to be running")
        assert cancel_flight_info(b.client, info) == 1
        wait_until(lambda: active() == 1, b, timeout=1.0, what="the server to stop the cancelled one")
        a.join(timeout=5)
        assert isinstance(mine[0], flight.FlightCancelledError), mine
        assert not other, "the other client's query was cancelled too"
        c.join(timeout=10)
        assert isinstance(other[0], flight.FlightTimedOutError), other  # its own deadline
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).num_rows == 1
    finally:
        b.stop()


# --- SQL the segments answer ----------------------------------------------------------------------

FAST = [
    "SELECT * FROM p90('yellow', '2024-01-03 07:13', TIMESTAMP '2024-02-11 16:41')",
    "SELECT * FROM p90('yellow', NULL, '2024-01-20', percentile := 0.75)",
    "SELECT * FROM outliers('yellow', '2024-01-09 13:17', '2024-02-02', within_p90 := true)",
    "SELECT * FROM outliers('yellow', NULL, NULL)",
    "SELECT VendorID, trip_distance, tpep_pickup_datetime FROM yellow "
    "WHERE tpep_pickup_datetime >= '2024-01-31 22:30' AND tpep_pickup_datetime < '2024-02-01 03:00'",
    "SELECT * FROM yellow WHERE tpep_pickup_datetime < '2024-01-01 06:00'",
    "SELECT * FROM yellow",
    "SELECT count(*) FROM yellow",
    "SELECT count(*) AS trips FROM yellow",
]


def all_rows(table):
    return sorted(table.to_pylist(), key=lambda r: tuple((v is None, str(v)) for v in r.values()))


def fast_and_duckdb(conn, sql, whole):
    """`sql` as sent (the segment path when rewritten), and `whole` wrapped so that DuckDB runs it."""
    with conn.cursor() as cur:
        cur.execute(sql)
        fast = cur.fetch_arrow_table()
        cur.execute(f"SELECT * FROM ({whole}) AS in_duckdb WHERE TRUE")
        slow = cur.fetch_arrow_table()
    assert b"bridge.dataset" in (fast.schema.metadata or {}), "the segment path answered"
    assert b"bridge.dataset" not in (slow.schema.metadata or {}), "DuckDB answered"
    return fast, slow


@pytest.mark.parametrize("sql,whole", [
    ("SELECT * FROM yellow LIMIT 1000", "SELECT * FROM yellow"),
    ("SELECT trip_distance, fare_amount FROM yellow WHERE tpep_pickup_datetime >= '2024-01-05' LIMIT 77",
     "SELECT trip_distance, fare_amount FROM yellow WHERE tpep_pickup_datetime >= '2024-01-05'"),
    ("SELECT * FROM p90('yellow', '2024-01-03', '2024-01-10') LIMIT 5", "SELECT * FROM p90('yellow', '2024-01-03', '2024-01-10')"),
])
def test_a_limit_without_order_takes_that_many_rows_of_the_answer(conn, sql, whole):
    """Without ORDER BY, SQL leaves which rows a LIMIT keeps to the server: the segment path
    returns exactly that many rows, each one a row of the whole answer as DuckDB computes it."""
    import collections
    fast, slow = fast_and_duckdb(conn, sql, whole)
    assert fast.num_rows == int(sql.rsplit(" ", 1)[1])
    key = lambda r: tuple(str(v) for v in r.values())  # noqa: E731
    assert not collections.Counter(map(key, fast.to_pylist())) - collections.Counter(map(key, slow.to_pylist()))


@pytest.mark.parametrize("sql", FAST)
def test_sql_the_segments_answer_returns_what_duckdb_returns(conn, files, sql):
    """The statement runs as its ticket (its answer carries the ticket's metadata); the same
    statement wrapped so that it is not rewritten runs in DuckDB: same schema, same rows."""
    fast, slow = fast_and_duckdb(conn, sql, sql)
    assert fast.num_rows > 0
    assert [(f.name, f.type) for f in fast.schema] == [(f.name, f.type) for f in slow.schema]
    assert all_rows(fast) == all_rows(slow)
    if sql.startswith("SELECT count(*)"):
        assert fast.column(0).to_pylist() == [sum(ref.pq.ParquetFile(f).metadata.num_rows for f in files)]
    if sql.startswith("SELECT * FROM p90('yellow', '2024-01-03"):
        assert fast.num_rows == ref.p90(files, "2024-01-03 07:13", "2024-02-11 16:41")[1].num_rows
