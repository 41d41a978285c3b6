"""End-to-end benchmark: Bridge beside the Python peer, same tickets, same files, same run.

Run with: make bench   (or BRIDGE_BIN=target/release/bridge .venv/bin/python benches/e2e.py)
Env: BENCH_ROWS (rows per month, default 3,000,000), BENCH_RUNS (default 9).
Prints a Markdown table of p50/p95 latency per ticket and the ratio peer/Bridge (medians).
"""
import json
import os
import statistics
import time

import pyarrow.flight as flight

from servers import ROWS, RUNS, bridge_and_peer

TICKETS = [
    ("p90 month", {"query": "p90", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"}),
    ("p90 day", {"query": "p90", "dataset": "yellow", "from": "2024-01-17", "to": "2024-01-18"}),
    ("outliers month", {"query": "outliers", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"}),
    ("bulk scan ticket", {"query": "scan", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"}),
    ("bulk sql scan", {"query": "sql", "sql": "SELECT * FROM yellow"}),
]


def measure(client, ticket):
    times, nbytes, rows = [], 0, 0
    raw = json.dumps(ticket).encode()
    client.do_get(flight.Ticket(raw)).read_all()  # warm-up
    for _ in range(RUNS):
        start = time.perf_counter()
        table = client.do_get(flight.Ticket(raw)).read_all()
        times.append(time.perf_counter() - start)
        nbytes, rows = table.nbytes, table.num_rows
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))], nbytes, rows


def main():
    with bridge_and_peer() as (bridge, _peer, peer_client):
        print(f"\n{ROWS:,} rows in one month, {RUNS} runs each, 127.0.0.1, {os.cpu_count()} cores\n")
        print("| ticket | rows | Bridge p50 | Bridge p95 | peer p50 | peer p95 | peer/Bridge (p50) | Bridge MB/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, ticket in TICKETS:
            b50, b95, nbytes, rows = measure(bridge.client, ticket)
            p50, p95, _, prows = measure(peer_client, ticket)
            assert rows == prows, f"{name}: Bridge returned {rows} rows, the peer {prows}"
            print(f"| {name} | {rows:,} | {b50*1e3:.1f} ms | {b95*1e3:.1f} ms | {p50*1e3:.1f} ms | {p95*1e3:.1f} ms "
                  f"| {p50/b50:.2f}x | {nbytes/b50/1e6:,.0f} |", flush=True)
            if name == "bulk scan ticket":
                scan = nbytes / b50
        c50, c95, cbytes, _ = measure(peer_client, {"query": "memory"})
        print(f"\nLoopback ceiling (Arrow C++ Flight server streaming the month from RAM, same client): "
              f"p50 {c50*1e3:.1f} ms, p95 {c95*1e3:.1f} ms, {cbytes/c50/1e6:,.0f} MB/s; "
              f"the scan ticket reaches {scan/(cbytes/c50):.0%} of it.", flush=True)


if __name__ == "__main__":
    main()
