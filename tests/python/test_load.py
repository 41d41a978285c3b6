"""Load: many concurrent clients on a mix of tickets. CI-sized by default; `make load` runs longer.

LOAD_CLIENTS (default 256) and LOAD_SECONDS (default 30) size the run.
"""
import json
import os
import random
import statistics
import subprocess
import threading
import time

import pyarrow.flight as flight

from conftest import Bridge
from test_admin import http

CLIENTS = int(os.environ.get("LOAD_CLIENTS", 256))
SECONDS = float(os.environ.get("LOAD_SECONDS", 30))


def ticket(rng):
    day = rng.randrange(1, 28)
    month = rng.choice(["01", "02"])
    kind = rng.choice(["p90", "outliers", "sql"])
    if kind == "p90":
        t = {"query": "p90", "dataset": "yellow", "from": f"2024-{month}-{day:02d}", "to": f"2024-{month}-{day + 1:02d}"}
    elif kind == "outliers":
        t = {"query": "outliers", "dataset": "yellow", "from": f"2024-{month}-{day:02d}",
             "to": f"2024-{month}-{min(day + 7, 28):02d}" if day < 28 else f"2024-{month}-28T12:00"}
    else:
        t = {"query": "sql", "sql": f"SELECT count(*) AS n, avg(trip_distance) AS d FROM yellow WHERE "
                                    f"tpep_pickup_datetime >= TIMESTAMP '2024-{month}-{day:02d}' AND "
                                    f"tpep_pickup_datetime < TIMESTAMP '2024-{month}-{day:02d} 12:00:00'"}
    return kind, flight.Ticket(json.dumps(t).encode())


def hammer(addr, seconds, clients, seed=1):
    """Runs `clients` threads for `seconds`; returns (latencies, errors as (message, seconds))."""
    lat, errors, lock = [], [], threading.Lock()
    stop = time.monotonic() + seconds

    def client(i):
        rng = random.Random(seed * 1000 + i)
        c = flight.connect(f"grpc://{addr}")
        while time.monotonic() < stop:
            _, t = ticket(rng)
            start = time.monotonic()
            try:
                c.do_get(t).read_all()
                with lock:
                    lat.append(time.monotonic() - start)
            except flight.FlightError as e:
                with lock:
                    errors.append((f"{type(e).__name__}: {str(e)[:120]}", time.monotonic() - start))
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors


def grpc_health(addr):
    """grpc.health.v1.Health/Check over the wire with curl's HTTP/2 (no gRPC library needed):
    returns the ServingStatus number (1 = SERVING), or None."""
    out = subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", "--max-time", "5", "-H", "content-type: application/grpc",
         "-H", "te: trailers", "--data-binary", "@-", f"http://{addr}/grpc.health.v1.Health/Check"],
        input=b"\0\0\0\0\0", capture_output=True)
    body = out.stdout  # 5-byte frame header, then HealthCheckResponse{status = field 1, varint}
    return body[6] if len(body) >= 7 and body[5] == 0x08 else None


def pct(xs, p):
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def test_256_clients_mixed_tickets_zero_errors(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", admin=True)
    try:
        lat, errors = hammer(b.addr, SECONDS, CLIENTS)
        print(f"\n{CLIENTS} clients, {SECONDS:.0f} s: {len(lat)} answers, {len(lat) / SECONDS:.0f}/s, "
              f"p50 {statistics.median(lat) * 1e3:.1f} ms, p99 {pct(lat, 0.99) * 1e3:.1f} ms, errors {len(errors)}")
        assert not errors, errors[:5]
        assert len(lat) > CLIENTS
    finally:
        b.stop()


def test_past_the_admission_cap_refusals_are_fast_and_health_stays_up(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--max-running-queries", "2", "--max-queued-queries", "8", "--queue-timeout", "100ms"], admin=True)
    health = []
    done = threading.Event()

    def probe():
        while not done.is_set():
            health.append((http(b.admin + "/healthz")[0], grpc_health(b.addr)))
            done.wait(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        lat, errors = hammer(b.addr, min(SECONDS, 10), CLIENTS, seed=2)
        done.set()
        prober.join()
        slowest_refusal = max((s for _, s in errors), default=0)
        print(f"\npast the cap: {len(lat)} answers, {len(errors)} refusals, slowest refusal "
              f"{slowest_refusal * 1e3:.0f} ms, health {set(health)}")
        assert errors and lat, "the run must both refuse and serve"
        assert all("FlightUnavailableError" in m and "server busy" in m for m, _ in errors), errors[:3]
        assert slowest_refusal < 2.0, "refusals must be fast, not timeouts"
        assert health and set(health) == {(200, 1)}, "HTTP /healthz 200 and gRPC health SERVING throughout"
    finally:
        done.set()
        b.stop()
