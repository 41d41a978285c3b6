"""What the Arrow Flight SQL JDBC driver does, emulated with pyarrow.flight (no Maven here):
it sends many headers on every call, asks GetSqlInfo, GetTables and GetXdbcTypeInfo before the
first query, and prepares every statement, even plain ones. Answers are checked against
DuckDB-Python over the same files."""
import math

import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flightsql_wire import bind, close, get_sql_info, get_tables, get_xdbc_type_info, prepare, prepared, read

# JDBC sends its connection properties, user agent and session cookies as headers on every call.
HEADERS = [(f"x-jdbc-property-{i}".encode(), ("v" * 200).encode()) for i in range(60)] + [
    (b"user-agent", b"JDBC Flight SQL Driver 18.1.0"),
    (b"cookie", b"session=" + b"c" * 2000),
]
OPTIONS = flight.FlightCallOptions(headers=HEADERS)

SERVER_NAME, SERVER_VERSION, READ_ONLY = 0, 1, 3  # SqlInfo ids
XDBC_TIMESTAMP = 93


def reference(files, sql, params=()):
    paths = ", ".join(f"'{f}'" for f in files)
    return duckdb.connect().execute(sql.format(src=f"read_parquet([{paths}], union_by_name=true)"),
                                    list(params)).fetchall()


def sql_info(table):
    """info_name -> value of the dense union, as Python."""
    return {r["info_name"]: r["value"] for r in table.to_pylist()}


def test_connect_sequence_metadata_before_the_first_query(bridge):
    c = bridge.client
    _, info = read(c, get_sql_info(), OPTIONS)
    values = sql_info(info)
    assert values[SERVER_NAME] == "Bridge" and values[SERVER_VERSION]
    assert values[READ_ONLY] is True
    _, some = read(c, get_sql_info(SERVER_NAME, READ_ONLY), OPTIONS)
    assert set(sql_info(some)) >= {SERVER_NAME, READ_ONLY}

    _, tables = read(c, get_tables(include_schema=True), OPTIONS)
    [row] = [r for r in tables.to_pylist() if r["table_name"] == "yellow"]
    assert (row["catalog_name"], row["db_schema_name"], row["table_type"]) == ("store", "main", "VIEW")
    schema = pa.ipc.read_schema(pa.py_buffer(row["table_schema"]))
    dataset = next(i for i in c.list_flights() if i.descriptor.path == [b"yellow"])
    assert schema == dataset.schema

    _, types = read(c, get_xdbc_type_info(), OPTIONS)
    names = {r["type_name"]: r["data_type"] for r in types.to_pylist()}
    assert {"BIGINT", "DOUBLE", "VARCHAR", "DATE", "TIMESTAMP", "DECIMAL", "BOOLEAN"} <= set(names)
    assert names["TIMESTAMP"] == XDBC_TIMESTAMP and names["BIGINT"] == -5
    _, only = read(c, get_xdbc_type_info(XDBC_TIMESTAMP), OPTIONS)
    assert [r["type_name"] for r in only.to_pylist()] == ["TIMESTAMP"]


def test_every_statement_is_prepared_even_plain_ones(bridge, files):
    c = bridge.client
    sql = "SELECT payment_type, count(*) AS n FROM {src} GROUP BY payment_type ORDER BY payment_type"
    handle, dataset_schema, parameter_schema = prepare(c, sql.format(src="yellow"), OPTIONS)
    assert dataset_schema.names == ["payment_type", "n"]
    assert len(parameter_schema) == 0
    info, table = read(c, prepared(handle), OPTIONS)
    assert info.schema.names == ["payment_type", "n"]
    assert [tuple(r.values()) for r in table.to_pylist()] == reference(files, sql)
    # Executing the same prepared statement again gives the same answer (no state was consumed).
    assert read(c, prepared(handle), OPTIONS)[1] == table
    close(c, handle, OPTIONS)


def test_prepared_parameters_bound_with_doput_and_re_executed(bridge, files):
    c = bridge.client
    sql = ("SELECT count(*) AS n, sum(fare_amount) AS fares FROM {src} "
           "WHERE tpep_pickup_datetime >= ? AND tpep_pickup_datetime < ? AND trip_distance > ? "
           "AND store_and_fwd_flag = ?")
    handle, dataset_schema, parameter_schema = prepare(c, sql.format(src="yellow"), OPTIONS)
    assert dataset_schema.names == ["n", "fares"]
    # The JDBC driver reads the parameter schema to type setObject() values: real types, in order.
    assert parameter_schema.names == ["$1", "$2", "$3", "$4"]
    assert parameter_schema.types == [pa.timestamp("us"), pa.timestamp("us"), pa.float64(), pa.string()]
    import datetime as dt
    for lo, hi, miles, flag in [(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 15), 2.0, "N"),
                                (dt.datetime(2024, 1, 20), dt.datetime(2024, 2, 20), 10.5, "Y")]:
        params = pa.record_batch({"lo": pa.array([lo], pa.timestamp("us")), "hi": pa.array([hi], pa.timestamp("us")),
                                  "miles": pa.array([miles]), "flag": pa.array([flag])})
        bound = bind(c, handle, params, OPTIONS)
        _, table = read(c, prepared(bound), OPTIONS)
        [(n, fares)] = reference(files, sql, (lo, hi, miles, flag))
        assert table.column("n")[0].as_py() == n and n > 0
        assert math.isclose(table.column("fares")[0].as_py(), fares, rel_tol=1e-9)
    close(c, handle, OPTIONS)


def test_a_bad_handle_and_writes_are_refused(bridge):
    with pytest.raises(pa.ArrowInvalid, match="statement handle"):
        read(bridge.client, prepared(b"not a handle"), OPTIONS)
    with pytest.raises(pa.ArrowInvalid, match="read-only"):
        prepare(bridge.client, "DELETE FROM yellow", OPTIONS)
