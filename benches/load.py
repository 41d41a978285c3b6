"""The cost of one answer under load: many pyarrow clients asking `p90` for one-day ranges that
start at a random hour, beside the ceiling (Arrow C++'s Flight server returning a same-size table
held in RAM) and the Python peer, in the same run.

    BRIDGE_BIN=target/release/bridge .venv/bin/python benches/load.py

Env: BENCH_ROWS (default 3,000,000), LOAD_SECONDS (default 15), LOAD_CLIENTS (default "64 256").
Prints throughput, p50/p99 latency, errors and server CPU per answer (from /proc).
"""
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import Bridge, Service, generate  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", 3_000_000))
SECONDS = float(os.environ.get("LOAD_SECONDS", 15))
CLIENTS = [int(c) for c in os.environ.get("LOAD_CLIENTS", "64 256").split()]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p90_ticket(rng):
    day, hour = rng.randrange(1, 30), rng.randrange(24)
    frm = f"2024-01-{day:02d}T{hour:02d}:00:00"
    to = f"2024-01-{day + 1:02d}T{hour:02d}:00:00"
    return json.dumps({"query": "p90", "dataset": "yellow", "from": frm, "to": to}).encode()


def hammer(addr, pid, clients, make_ticket):
    lat, errors, lock = [], [], threading.Lock()
    stop = time.monotonic() + SECONDS

    def client(i):
        rng = random.Random(i)
        c = flight.connect(f"grpc://{addr}")
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                c.do_get(flight.Ticket(make_ticket(rng))).read_all()
                with lock:
                    lat.append(time.monotonic() - t0)
            except flight.FlightError as e:
                with lock:
                    errors.append(str(e)[:100])
        c.close()

    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3  # noqa: E731
    return len(lat) / wall, q(0.5), q(0.99), len(errors), cpu / max(1, len(lat)) * 1e3


def main():
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp) / "yellow", ["2024-01"], rows=ROWS)
        bridge = Bridge([f"yellow={tmp}/yellow/*.parquet"], Path(tmp) / "cache", memory_limit="4GB")
        peer = Service([sys.executable, str(Path(__file__).parent / "peer_server.py"), *map(str, files)])
        try:
            peer_addr = peer.wait_for(r"grpc://([0-9.]+:\d+)").group(1)
            sample = bridge.client.do_get(flight.Ticket(p90_ticket(random.Random(0)))).read_all().num_rows
            ceiling = json.dumps({"query": "memory", "rows": sample}).encode()
            flight.connect(f"grpc://{peer_addr}").do_get(flight.Ticket(ceiling)).read_all()  # loads the table
            print(f"\n{ROWS:,} rows, `p90` for one day from a random hour (about {sample:,} rows an answer), "
                  f"{SECONDS:.0f} s each, {os.cpu_count()} cores, clients and servers on one machine\n")
            print("| server | clients | answers/s | ÷ ceiling | p50 | p99 | errors | server CPU per answer |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            for clients in CLIENTS:
                top = hammer(peer_addr, peer.proc.pid, clients, lambda rng: ceiling)
                ours = hammer(bridge.addr, bridge.proc.pid, clients, p90_ticket)
                rows = [("Bridge", ours), ("ceiling: Arrow C++ from RAM", top)]
                if clients == CLIENTS[0]:
                    rows.append(("Python peer (pyarrow.flight + DuckDB)", hammer(peer_addr, peer.proc.pid, clients,
                                                                              p90_ticket)))
                for name, (rate, p50, p99, errors, cpu) in rows:
                    print(f"| {name} | {clients} | {rate:,.0f} | {rate / top[0]:.2f} | {p50:,.0f} ms | {p99:,.0f} ms "
                          f"| {errors} | {cpu:.2f} ms |", flush=True)
        finally:
            bridge.stop()
            peer.stop()


if __name__ == "__main__":
    main()
