"""Where a bulk answer's time goes: wall time, server CPU and client CPU per `scan` of a month,
beside the loopback ceiling (Arrow C++'s Flight server streaming the same rows from RAM).

Run with: BRIDGE_BIN=target/release/bridge .venv/bin/python benches/bulk_cpu.py
Env: BENCH_ROWS (default 3,000,000), BENCH_RUNS (default 9). Prints medians.
"""
import json
import os
import statistics
import time

import pyarrow.flight as flight

from servers import ROWS, RUNS, bridge_and_peer


def cpu_seconds(pid):
    """User + system CPU of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(client, pid, ticket):
    raw = flight.Ticket(json.dumps(ticket).encode())
    client.do_get(raw).read_all()  # warm-up
    rows = []
    for _ in range(RUNS):
        server0, client0, wall0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        table = client.do_get(raw).read_all()
        wall = time.perf_counter() - wall0
        rows.append((wall, cpu_seconds(pid) - server0, time.process_time() - client0, table.nbytes))
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    return med(0), med(1), med(2), rows[0][3]


def main():
    with bridge_and_peer() as (bridge, peer, peer_client):
        print(f"\n{ROWS:,} rows, {RUNS} runs each, medians, 127.0.0.1, {os.cpu_count()} cores\n")
        print("| server | wall | MB/s | server CPU | client CPU |")
        print("|---|---:|---:|---:|---:|")
        for name, client, pid, ticket in [
            ("Bridge `scan` ticket", bridge.client, bridge.proc.pid, {"query": "scan", "dataset": "yellow"}),
            ("ceiling: Arrow C++ from RAM", peer_client, peer.proc.pid, {"query": "memory"}),
        ]:
            wall, server, client_cpu, nbytes = measure(client, pid, ticket)
            print(f"| {name} | {wall*1e3:.0f} ms | {nbytes/wall/1e6:,.0f} | {server:.2f} s | {client_cpu:.2f} s |",
                  flush=True)


if __name__ == "__main__":
    main()
