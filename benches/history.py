"""Years of data on one node: how fast Bridge loads them, how soon it answers, what it keeps.

    BRIDGE_BIN=target/release/bridge .venv/bin/python benches/history.py [--months 12] [--from 2024-01] [--rows 3000000]

Generates N months (`--from 2009-01` includes the 2009 and 2010 layouts), starts Bridge on them
with an empty cache and prints, in the same run:
* ingest rows/s, time to the first answer for the newest month, time until everything is in;
* local bytes (everything under the cache directory) ÷ Parquet bytes; peak RSS while loading;
* exact percentiles over ranges of every length (everything, the first year, an odd range of
  months, one day) and `outliers` top 10 by speed within p90 over the first year: medians of 21
  at the client and at the server (its own duration, from the status API's recent queries),
  beside DuckDB-Python answering the same question over the same Parquet files (the peer, whose
  answers each of Bridge's is checked against).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import duckdb
import psutil
import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import BIN, Bridge  # noqa: E402


def months(first, n):
    y, m = map(int, first.split("-"))
    for _ in range(n):
        yield f"{y:04d}-{m:02d}"
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def du(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


class PeakRss:
    def __init__(self, pid):
        self.proc, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop.wait(0.05):  # sampling, not waiting for a condition
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--from", dest="first", default="2024-01")
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--data", help="reuse (or create) the generated months here")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    data = Path(args.data or Path(tmp.name) / "yellow")
    wanted = list(months(args.first, args.months))
    for m in wanted:
        if not (data / f"yellow_tripdata_{m}.parquet").exists():
            subprocess.run([BIN, "gen", "--out", str(data), "--month", m, "--rows", str(args.rows)], check=True,
                           capture_output=True)
    files = [data / f"yellow_tripdata_{m}.parquet" for m in wanted]
    parquet = sum(f.stat().st_size for f in files)
    newest = wanted[-1]
    cache = Path(tmp.name) / "cache"
    start = time.monotonic()
    b = Bridge([f"yellow={data}/yellow_tripdata_*.parquet"], cache, memory_limit="4GB", loaded=False)
    rss = PeakRss(b.proc.pid)
    client = flight.connect(f"grpc://{b.addr}")
    first = None
    nxt = f"{newest[:4]}-{int(newest[5:]) + 1:02d}-01" if newest[5:] != "12" else f"{int(newest[:4]) + 1}-01-01"
    ticket = flight.Ticket(json.dumps({"query": "p90", "dataset": "yellow", "output": "summary",
                                       "from": f"{newest}-01", "to": nxt}).encode())
    deadline = start + 3600
    while first is None and time.monotonic() < deadline:
        try:
            client.do_get(ticket).read_all()
            first = time.monotonic() - start
        except flight.FlightUnavailableError:
            time.sleep(0.05)  # a bench polling for its first answer, not a test
    b.wait_for(r"has loaded every dataset", timeout=3600)
    loaded = time.monotonic() - start
    rss.stop.set()
    st = b.status()
    rows = sum(f["rows"] for f in st["files"])
    local = du(cache)  # the catalog, the segments and any download left
    ranges = range_table(b, client, files, wanted)
    b.stop()
    print(f"\n{args.months} months from {args.first}, {rows:,} rows, {parquet / 1e6:,.0f} MB of Parquet, "
          f"2 cores, {os.cpu_count()} CPUs seen\n")
    print("| measure | Bridge |")
    print("|---|---:|")
    print(f"| ingest rows/s | {rows / loaded:,.0f} |")
    print(f"| first answer for the newest month | {first:.1f} s |")
    print(f"| everything ingested | {loaded:.1f} s |")
    print(f"| local bytes ÷ Parquet bytes | {local / parquet:.2f}× ({local / 1e6:,.0f} MB) |")
    print(f"| peak RSS while loading | {rss.peak / 2**20:,.0f} MiB |")
    print(f"\n| {args.months} months | Bridge at the client (median of 21) | Bridge at the server (median of 21) "
          "| DuckDB-Python over the Parquet (median of 3) |")
    print("|---|---:|---:|---:|")
    for name, client_ms, server_ms, peer_ms in ranges:
        peer_cell = f"{peer_ms:,.0f} ms" if peer_ms is not None else "n/a (old eras)"
        print(f"| {name} | {client_ms:,.2f} ms | {server_ms:,.2f} ms | {peer_cell} |")


def server_ms(b, kind, n):
    """The server's own durations of its last `n` answers of `kind` (the status API)."""
    with urllib.request.urlopen(f"{b.admin}/api/status") as r:
        queries = json.load(r)["queries"]["recent"]
    return [q["duration_ms"] for q in queries if q["kind"] == kind][:n]


def range_table(b, client, files, wanted):
    y = wanted[0][:4]
    cases = [
        ("`p90` summary, everything", None, None),
        (f"`p90` summary, {y}", f"{y}-01-01", f"{int(y) + 1}-01-01"),
        (f"`p90` summary, {y}-02-03 07:13 to {y}-10-09 17:45", f"{y}-02-03 07:13", f"{y}-10-09 17:45"),
        (f"`p90` summary, one day ({y}-03-14)", f"{y}-03-14", f"{y}-03-15"),
    ]
    con = duckdb.connect()
    src = f"read_parquet([{', '.join(repr(str(f)) for f in files)}], union_by_name=true)"
    modern = all(int(m[:4]) >= 2011 for m in wanted)
    out = []
    for name, frm, to in cases:
        t = {"query": "p90", "dataset": "yellow", "output": "summary"}
        where = "TRUE"
        if frm:
            t.update({"from": frm, "to": to})
            where = f"tpep_pickup_datetime >= TIMESTAMP '{frm}' AND tpep_pickup_datetime < TIMESTAMP '{to}'"
        sql = f"SELECT quantile_cont(trip_distance, 0.9) FROM {src} WHERE {where}"
        peer = peer_ms(con, sql) if modern else None
        if modern:
            got = client.do_get(flight.Ticket(json.dumps(t).encode())).read_all().to_pylist()[0]["threshold"]
            assert abs(got - peer[1][0][0]) < 1e-9, (name, got, peer[1])
        out.append((name, *timed(b, client, t, "p90"), peer and peer[0]))
    frm, to = f"{y}-01-01", f"{int(y) + 1}-01-01"
    top = {"query": "outliers", "dataset": "yellow", "from": frm, "to": to,
           "within_p90": True, "order_by": "avg_speed_mph desc", "limit": 10}
    peer = None
    if modern:  # the same question in SQL: the default physics rule over the trips above the p90
        sql = f"""WITH r AS (SELECT * FROM {src} WHERE tpep_pickup_datetime >= TIMESTAMP '{frm}'
                                                   AND tpep_pickup_datetime < TIMESTAMP '{to}'),
                  a AS (SELECT *, date_diff('microsecond', tpep_pickup_datetime, tpep_dropoff_datetime) / 3.6e9 AS h
                        FROM r WHERE trip_distance > (SELECT quantile_cont(trip_distance, 0.9) FROM r)),
                  s AS (SELECT *, CASE WHEN h > 0 THEN trip_distance / h END AS mph FROM a)
                  SELECT mph FROM s
                  WHERE NOT coalesce(h > 0 AND h <= 10, false) OR NOT coalesce(mph BETWEEN 2.5 AND 80, false)
                     OR NOT coalesce(trip_distance BETWEEN 0.1 AND 800, false)
                  ORDER BY mph DESC NULLS LAST LIMIT 10"""
        peer = peer_ms(con, sql)
        got = client.do_get(flight.Ticket(json.dumps(top).encode())).read_all()["avg_speed_mph"].to_pylist()
        assert all(abs(g - w[0]) < 1e-9 for g, w in zip(got, peer[1])) and len(got) == len(peer[1]), (got, peer[1])
    out.append((f"`outliers` top 10 by speed within p90, {y}", *timed(b, client, top, "outliers"), peer and peer[0]))
    return out


def peer_ms(con, sql, n=3):
    """DuckDB-Python's median time for `sql` over the Parquet files, and its answer."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        rows = con.execute(sql).fetchall()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, rows


def timed(b, client, t, kind, n=21):
    ticket = flight.Ticket(json.dumps(t).encode())
    client.do_get(ticket).read_all()  # the first answer counts the histograms of reopened segments
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.do_get(ticket).read_all()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, statistics.median(server_ms(b, kind, n))


if __name__ == "__main__":
    main()
