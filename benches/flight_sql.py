"""Flight SQL through ADBC: Bridge beside ROAPI (Rust/DataFusion, table in memory) on one month,
and each built-in query as SQL beside the same ticket at a pyarrow client, in the same run. ROAPI
has no macros: beside them it returns as many rows of the month (`LIMIT n`), which shows what the
ADBC client itself costs for an answer of that size.

    BRIDGE_BIN=target/release/bridge .venv/bin/python benches/flight_sql.py

Needs ROAPI in the venv (`.venv/bin/pip install roapi==0.12.7`; not a test requirement).
Env: BENCH_ROWS (default 3,000,000), BENCH_RUNS (default 15). Medians; every answer is checked
(row counts against the ticket or DuckDB-Python over the same file, and ROAPI against Bridge).
"""
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import Bridge, Service, generate  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", 3_000_000))
RUNS = int(os.environ.get("BENCH_RUNS", 15))
DAY, MONTH = ("2024-01-17", "2024-01-18"), ("2024-01-01", "2024-02-01")


def free_port():
    """ROAPI takes a port, not 0: one the OS just handed out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_ms(fn):
    fn()  # warm-up
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def server_ms(b, n):
    """The median of the server's own durations of its last `n` DoGets (the status API): what
    an answer costs Bridge, without the client's and the round trips' share."""
    with urllib.request.urlopen(f"{b.admin}/api/status") as r:
        recent = json.load(r)["queries"]["recent"]
    return statistics.median([q["duration_ms"] for q in recent if q.get("rpc", "DoGet") == "DoGet"][:n])


def sql_rows(conn, sql):
    def run():
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table().num_rows
    return run


def main():
    if not (Path(sys.executable).parent / "roapi").exists():
        sys.exit("ROAPI is this bench's peer: .venv/bin/pip install roapi==0.12.7")
    with tempfile.TemporaryDirectory() as tmp:
        [file] = generate(Path(tmp) / "yellow", ["2024-01"], rows=ROWS)
        bridge = Bridge([f"yellow={tmp}/yellow/*.parquet"], Path(tmp) / "cache", memory_limit="4GB")
        port = free_port()
        roapi = Service([str(Path(sys.executable).parent / "roapi"), "-t", f"yellow={file}",
                         "--addr-flight-sql", f"127.0.0.1:{port}", "--addr-http", f"127.0.0.1:{free_port()}",
                         "--addr-postgres", f"127.0.0.1:{free_port()}"])
        try:
            roapi.wait_for(r"(?i)flight", timeout=300)
            ours = flightsql.connect(f"grpc://{bridge.addr}")
            theirs = flightsql.connect(f"grpc://127.0.0.1:{port}")
            ticket_client = flight.connect(f"grpc://{bridge.addr}")
            con = duckdb.connect()
            print(f"\n{ROWS:,} rows (one month), ADBC dbapi `fetch_arrow_table`, medians of {RUNS}, 127.0.0.1\n")
            print("| query over ADBC | Bridge | Bridge's DoGet at the server | ROAPI (†: `LIMIT` as many rows) "
                  "| the same ticket (pyarrow) | Bridge ÷ ticket |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, sql, ticket in [
                ("`SELECT count(*)`", "SELECT count(*) FROM yellow", None),
                ("`GROUP BY payment_type`", "SELECT payment_type, count(*) FROM yellow GROUP BY payment_type", None),
                ("`p90('yellow', day)` macro", f"SELECT * FROM p90('yellow', '{DAY[0]}', '{DAY[1]}')",
                 {"query": "p90", "dataset": "yellow", "from": DAY[0], "to": DAY[1]}),
                ("`p90('yellow', month)` macro", f"SELECT * FROM p90('yellow', '{MONTH[0]}', '{MONTH[1]}')",
                 {"query": "p90", "dataset": "yellow", "from": MONTH[0], "to": MONTH[1]}),
                ("`outliers('yellow', month)` macro", f"SELECT * FROM outliers('yellow', '{MONTH[0]}', '{MONTH[1]}')",
                 {"query": "outliers", "dataset": "yellow", "from": MONTH[0], "to": MONTH[1]}),
                ("a day of trips, `SELECT * … WHERE` pickup range",
                 f"SELECT * FROM yellow WHERE tpep_pickup_datetime >= '{DAY[0]}' AND tpep_pickup_datetime < '{DAY[1]}'",
                 {"query": "scan", "dataset": "yellow", "from": DAY[0], "to": DAY[1]}),
            ]:
                n = sql_rows(ours, sql)()
                bridge_ms = median_ms(sql_rows(ours, sql))
                at_server = server_ms(bridge, RUNS)
                roapi_cell = ticket_cell = ratio_cell = ""
                if ticket is None:
                    want = con.execute(sql.replace("FROM yellow", f"FROM read_parquet('{file}')")).fetchall()
                    assert n == len(want), (name, n, len(want))
                    assert sql_rows(theirs, sql)() == n, name
                    roapi_cell = f"{median_ms(sql_rows(theirs, sql)):,.1f} ms"
                else:
                    raw = flight.Ticket(json.dumps(ticket).encode())
                    assert ticket_client.do_get(raw).read_all().num_rows == n, name
                    ticket_ms = median_ms(lambda: ticket_client.do_get(raw).read_all())
                    ticket_cell, ratio_cell = f"{ticket_ms:,.1f} ms", f"{bridge_ms / ticket_ms:.2f}"
                    if ticket["query"] == "scan":
                        assert sql_rows(theirs, sql)() == n, name
                        roapi_cell = f"{median_ms(sql_rows(theirs, sql)):,.1f} ms"
                    else:
                        # ROAPI has no macros: as many rows of the month, what ADBC costs for them.
                        same_size = f"SELECT * FROM yellow LIMIT {n}"
                        assert sql_rows(theirs, same_size)() == n, name
                        roapi_cell = f"{median_ms(sql_rows(theirs, same_size)):,.1f} ms †"
                print(f"| {name} | {bridge_ms:,.1f} ms | {at_server:,.1f} ms | {roapi_cell} | {ticket_cell} "
                      f"| {ratio_cell} |", flush=True)
        finally:
            bridge.stop()
            roapi.stop()


if __name__ == "__main__":
    main()
