"""The HTTP API beside Flight and seed 001's FastAPI + DuckDB JSON peer, same files, same run.

Run with: make bench-http   (BENCH_ROWS rows in one month, default 3,000,000; BENCH_RUNS, default 9)

Each answer is timed from the request to a decoded table (pyarrow reading the response as it
arrives for Arrow, json.load for JSON; a connection per request, as urllib makes them); medians. Then `wrk` (HTTP/1.1) and `h2load` (HTTP/2) drive
256 concurrent connections at the day's p90 and count errors, and the body codings are compared
on a day's scan.
"""
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.flight as flight
import pyarrow.ipc as ipc
import requests
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import Bridge, Service, generate  # noqa: E402
from servers import ROWS, RUNS  # noqa: E402

RANGES = [("p90 month", "2024-01-01", "2024-02-01"), ("p90 day", "2024-01-17", "2024-01-18")]
CLIENTS = 256


def timed(fetch):
    fetch()  # warm-up
    times, rows = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        rows = fetch()
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def main():
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp) / "yellow", ["2024-01"], rows=ROWS)
        bridge = Bridge([f"yellow={Path(tmp) / 'yellow'}/*.parquet"], Path(tmp) / "cache", memory_limit="4GB",
                        extra=["--http-json-max-rows", "10000000"], http=True)
        peer = Service([sys.executable, str(Path(__file__).parent / "fastapi_peer.py"), *map(str, files)])
        try:
            peer_url = peer.wait_for(r"peer on (http://[0-9.]+:\d+)").group(1)
            run(bridge, peer_url)
        finally:
            bridge.stop()
            peer.stop()


def run(bridge, peer_url):
    s = requests.Session()
    s.headers["Accept-Encoding"] = "identity"  # bodies as they are (codings are compared below)
    print(f"\n{ROWS:,} rows in one month, {RUNS} runs each (median), 127.0.0.1\n")
    print("| answer | rows | Flight DoGet | HTTP Arrow | HTTP JSON | FastAPI JSON | HTTP Arrow / Flight | FastAPI / HTTP Arrow |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, frm, to in RANGES:
        url = f"{bridge.http}/v1/datasets/yellow/p90?from={frm}&to={to}"
        ticket = flight.Ticket(json.dumps({"query": "p90", "dataset": "yellow", "from": frm, "to": to}).encode())
        fl, rows = timed(lambda: bridge.client.do_get(ticket).read_all().num_rows)
        # pyarrow reads the response as it arrives (the README's client); urllib sends no
        # Accept-Encoding, so bodies come as they are.
        ar, arows = timed(lambda: ipc.open_stream(urlopen(url)).read_all().num_rows)
        js, jrows = timed(lambda: len(json.load(urlopen(Request(url, headers={"Accept": "application/json"})))))
        pe, prows = timed(lambda: len(json.load(urlopen(f"{peer_url}/p90?start={frm}&end={to}"))["trips"]))
        assert rows == arows == jrows == prows, (rows, arows, jrows, prows)
        print(f"| {name} | {rows:,} | {fl*1e3:.1f} ms | {ar*1e3:.1f} ms | {js*1e3:.1f} ms | {pe*1e3:.1f} ms "
              f"| {ar/fl:.2f}x | {pe/ar:.1f}x |", flush=True)
    load(bridge)
    codings(bridge, s)


def load(bridge):
    url = f"{bridge.http}/v1/datasets/yellow/p90?from=2024-01-17&to=2024-01-18&output=summary"
    print(f"\n{CLIENTS} concurrent connections on the day's p90 summary, 10 s:\n")
    print("| tool | protocol | answers/s | p50 | p99 | errors |")
    print("|---|---|---:|---:|---:|---:|")
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-t2", f"-c{CLIENTS}", "-d10s", "--latency", "-H", "Accept: application/json", url],
                             capture_output=True, text=True, check=True).stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        sock = re.search(r"Socket errors: (.*)", out)
        errors = (int(bad.group(1)) if bad else 0)
        print(f"| wrk | HTTP/1.1 | {float(rps):,.0f} | {p50} | {p99} | {errors} non-2xx; socket: {sock.group(1) if sock else 'none'} |")
    if shutil.which("h2load"):
        out = subprocess.run(["h2load", "-D", "10", "-c", str(CLIENTS), "-t", "2", "-H", "Accept: application/json", url],
                             capture_output=True, text=True, check=True).stdout
        rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)
        req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
        failed = int(req.group(5)) + int(req.group(6)) + int(status.group(3)) + int(status.group(4))
        print(f"| h2load | HTTP/2 (h2c) | {float(rps):,.0f} | mean {lat.group(3)} | max {lat.group(2)} | {failed} |")


def codings(bridge, s):
    url = f"{bridge.http}/v1/datasets/yellow/scan?from=2024-01-17&to=2024-01-18"
    print("\nA day's scan as Arrow IPC, by body coding (request to decoded table, median):\n")
    print("| Accept-Encoding | bytes on the wire | time |")
    print("|---|---:|---:|")
    for coding in ["identity", "gzip", "zstd"]:
        size = [0]

        def fetch():
            r = s.get(url, headers={"Accept-Encoding": coding}, stream=True)
            raw = r.raw.read(decode_content=False)
            size[0] = len(raw)
            body = raw
            if coding == "gzip":
                import gzip
                body = gzip.decompress(raw)
            elif coding == "zstd":
                import zstandard
                body = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
            return ipc.open_stream(io.BytesIO(body)).read_all().num_rows

        t, _ = timed(fetch)
        print(f"| {coding} | {size[0]:,} | {t*1e3:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
