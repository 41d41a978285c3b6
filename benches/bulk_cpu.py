"""Where a bulk answer's time goes: wall time, server CPU and client CPU per `scan` of a month,
beside the loopback ceiling (Arrow C++'s Flight server streaming the same rows from RAM), at
the default 2 MiB messages and at 16 MiB (the client asks Bridge with `bridge-max-message-bytes`).
Bridge runs twice: with the default decoded cache (256 MiB: the month does not fit, so every scan
decodes its segment) and with `--decoded-cache-bytes 2GiB` (the month stays decoded after the
warm-up scan, as the ceiling holds it in RAM).

Run with: BRIDGE_BIN=target/release/bridge .venv/bin/python benches/bulk_cpu.py
Env: BENCH_ROWS (default 3,000,000), BENCH_RUNS (default 9). Prints medians.
"""
import json
import os
import statistics
import time
from pathlib import Path

import pyarrow.flight as flight

from servers import ROWS, RUNS, Bridge, bridge_and_peer


def cpu_seconds(pid):
    """User + system CPU of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(client, pid, ticket, headers=()):
    raw = flight.Ticket(json.dumps(ticket).encode())
    options = flight.FlightCallOptions(headers=list(headers))
    client.do_get(raw, options).read_all()  # warm-up
    rows = []
    for _ in range(RUNS):
        server0, client0, wall0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        table = client.do_get(raw, options).read_all()
        wall = time.perf_counter() - wall0
        rows.append((wall, cpu_seconds(pid) - server0, time.process_time() - client0, table.nbytes))
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    return med(0), med(1), med(2), rows[0][3]


def main():
    with bridge_and_peer() as (bridge, peer, peer_client):
        tmp = Path(bridge.cache_dir).parent
        cached = Bridge([f"yellow={tmp}/yellow/*.parquet"], tmp / "cache-2g", memory_limit="4GB",
                        extra=["--decoded-cache-bytes", "2GiB"])
        try:
            table(bridge, cached, peer, peer_client)
        finally:
            cached.stop()


def table(bridge, cached, peer, peer_client):
    print(f"\n{ROWS:,} rows, {RUNS} runs each, medians, 127.0.0.1, {os.cpu_count()} cores\n")
    print("| server | messages | wall | MB/s | ÷ ceiling | server CPU | client CPU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    scan = {"query": "scan", "dataset": "yellow"}
    for size, label in [(2 << 20, "2 MiB"), (16 << 20, "16 MiB")]:
        ceiling = measure(peer_client, peer.proc.pid, {"query": "memory", "message_bytes": size})
        asked = [] if size == 2 << 20 else [(b"bridge-max-message-bytes", b"16MiB")]
        ours = measure(bridge.client, bridge.proc.pid, scan, asked)
        warm = measure(cached.client, cached.proc.pid, scan, asked)
        for name, (wall, server, client_cpu, nbytes) in [("Bridge `scan` ticket", ours),
                                                         ("Bridge, 2 GiB decoded cache", warm),
                                                         ("ceiling: Arrow C++ from RAM", ceiling)]:
            ratio = (nbytes / wall) / (ceiling[3] / ceiling[0])
            print(f"| {name} | {label} | {wall*1e3:.0f} ms | {nbytes/wall/1e6:,.0f} | {ratio:.2f} | "
                  f"{server:.2f} s | {client_cpu:.2f} s |", flush=True)


if __name__ == "__main__":
    main()
