"""Flight SQL on the same port, through real ADBC clients, checked against DuckDB-Python."""
import math

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import pytest

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
