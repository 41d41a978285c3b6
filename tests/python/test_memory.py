"""Streaming: results far larger than the server's memory budget stream with bounded RSS."""
import json
import os
from pathlib import Path

import pyarrow.flight as flight
import pytest

from conftest import Bridge, generate


def peak_rss(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# Two 2009-layout months (text times, the slowest to ingest), converted at the same time as the
# pipeline does. `make memory-month` runs the real size: 14 M rows, as a 2009 month holds.
MONTH_ROWS = int(os.environ.get("MEMORY_MONTH_ROWS", 2_000_000))
LIMIT_MB = int(os.environ.get("MEMORY_LIMIT_MB", 256))


def test_ingesting_large_months_stays_under_the_duckdb_limit_plus_256_mib(tmp_path):
    generate(tmp_path / "d", ["2009-01", "2009-02"], rows=MONTH_ROWS)
    b = Bridge([f"yellow={tmp_path / 'd'}/*.parquet"], tmp_path / "cache", memory_limit=f"{LIMIT_MB}MB")
    try:
        st = b.status()
        assert [f["rows"] for f in st["files"]] == [MONTH_ROWS] * 2, st["quarantined"] or st["retrying"]
        peak = peak_rss(b.proc.pid)  # the kernel's high-water mark over the whole ingest
        print(f"\npeak RSS {peak >> 20} MiB ingesting 2 x {MONTH_ROWS:,} rows with a {LIMIT_MB} MB DuckDB limit")
        assert peak <= (LIMIT_MB + 256) * 2**20, f"peak RSS {peak >> 20} MiB over {LIMIT_MB} + 256 MiB"
    finally:
        b.stop()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    data = tmp_path_factory.mktemp("big")
    generate(data, ["2024-01", "2024-02", "2024-03"], rows=1_000_000)
    b = Bridge([f"yellow={data}/*.parquet"], tmp_path_factory.mktemp("cache"), memory_limit="256MB")
    yield b
    b.stop()


@pytest.mark.parametrize("ticket", [
    {"query": "sql", "sql": "SELECT * FROM yellow"},
    {"query": "scan", "dataset": "yellow"},
], ids=["sql", "scan"])
def test_bulk_results_stream_with_bounded_memory(big, ticket):
    pid = big.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak-RSS counter to the current RSS
    base = peak_rss(pid)
    reader = big.client.do_get(flight.Ticket(json.dumps(ticket).encode()))
    rows = nbytes = 0
    for chunk in reader:  # consume batch by batch, keeping nothing
        rows += chunk.data.num_rows
        nbytes += chunk.data.nbytes
    peak = peak_rss(pid)
    print(f"\n{ticket['query']}: streamed {rows} rows, {nbytes / 2**20:.0f} MiB of Arrow; "
          f"server RSS {base / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB")
    assert rows == 3_000_000
    assert nbytes > 300 * 2**20, "the result must dwarf the bound for the test to mean anything"
    # Holding the answer would take all of it; DuckDB's buffer pool (within its 256 MB limit) and
    # a few batches in flight take 60-90 MiB for `sql`, ~10 MiB for `scan`.
    assert peak - base < nbytes / 3, f"server memory grew by {(peak - base) / 2**20:.0f} MiB while streaming"


TICKETS = [
    {"query": "p90", "dataset": "yellow", "from": "2024-01-17", "to": "2024-01-18"},
    {"query": "outliers", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"},
    {"query": "outliers", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01", "within_p90": True,
     "order_by": "avg_speed_mph desc", "limit": 10},
]


def query_peak(b):
    """Peak RSS of the server while it answers the p90-day and outliers tickets a few times."""
    pid = b.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    base = peak_rss(pid)
    for _ in range(5):
        for t in TICKETS:
            assert b.get(t).num_rows > 0
    return base, peak_rss(pid)


def test_peak_rss_is_flat_from_1_to_12_months(tmp_path):
    months = [f"2024-{m:02d}" for m in range(1, 13)]
    rows = {}
    print("\n| months | rows | RSS after start | peak RSS answering p90-day + outliers |\n|---:|---:|---:|---:|")
    for n in (1, 12):
        data = tmp_path / f"m{n}"
        generate(data, months[:n], rows=150_000)
        cache = tmp_path / f"cache{n}"
        Bridge([f"yellow={data}/*.parquet"], cache, memory_limit="512MB").stop()  # ingest, then restart
        b = Bridge([f"yellow={data}/*.parquet"], cache, memory_limit="512MB")
        try:
            base, peak = query_peak(b)
            rows[n] = (base, peak)
            print(f"| {n} | {n * 150_000:,} | {base / 2**20:.0f} MiB | {peak / 2**20:.0f} MiB |")
        finally:
            b.stop()
    (base1, peak1), (base12, peak12) = rows[1], rows[12]
    assert abs(peak12 - peak1) <= 0.15 * peak1, f"peak RSS {peak1 / 2**20:.0f} MiB (1 month) vs {peak12 / 2**20:.0f} MiB (12)"
