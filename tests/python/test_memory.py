"""Streaming: results far larger than the server's memory budget stream with bounded RSS."""
import json
from pathlib import Path

import pyarrow.flight as flight
import pytest

from conftest import Bridge, generate


def peak_rss(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


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
    assert peak - base < 100 * 2**20, f"server memory grew by {(peak - base) / 2**20:.0f} MiB while streaming"
