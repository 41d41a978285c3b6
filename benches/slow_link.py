"""IPC compression over a slow link: a week of trips streamed by `scan` through a veth pair capped
with `tc tbf`, with each compression a client may ask for (`bridge-ipc-compression`).

    sudo BRIDGE_BIN=target/release/bridge .venv/bin/python benches/slow_link.py [--mbit 300]

Bridge runs inside a network namespace this script creates (and removes, even on failure); the
client stays on the host and reaches it at the namespace's address. Needs root (`ip netns`, `tc`).
Prints medians of 5: wall time, MB/s of decoded Arrow, bytes on the wire (Arrow IPC bodies, from
Bridge's metrics), client CPU; each answer's rows are checked against the uncompressed one.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import BIN, Service, generate  # noqa: E402

NS = f"bridge-slow-{os.getpid()}"
HOST_IP, NS_IP = "10.213.7.1", "10.213.7.2"


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def setup(mbit):
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", f"{NS[:8]}h", "type", "veth", "peer", "name", f"{NS[:8]}n")
    sh("ip", "link", "set", f"{NS[:8]}n", "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", f"{NS[:8]}h")
    sh("ip", "link", "set", f"{NS[:8]}h", "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/30", "dev", f"{NS[:8]}n")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", f"{NS[:8]}n", "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
    for where in ([], ["ip", "netns", "exec", NS]):
        dev = f"{NS[:8]}n" if where else f"{NS[:8]}h"
        sh(*where, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit", "burst", "256kb",
           "latency", "50ms")


def teardown():
    subprocess.run(["ip", "link", "del", f"{NS[:8]}h"], capture_output=True)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def body_bytes(admin):
    text = urllib.request.urlopen(f"{admin}/metrics").read().decode()
    return sum(float(v) for v in re.findall(r'^bridge_bytes_sent_total\{kind="scan"\} (\S+)', text, re.M))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mbit", type=int, default=300)
    ap.add_argument("--rows", type=int, default=3_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp) / "yellow", ["2024-01"], rows=args.rows)
        setup(args.mbit)
        bridge = None
        try:
            bridge = Service(["ip", "netns", "exec", NS, BIN, "--listen", f"{NS_IP}:0", "--admin-listen", f"{NS_IP}:0",
                              "--allow-anonymous", "--cache-dir", f"{tmp}/cache", "--dataset", f"yellow={tmp}/yellow/*.parquet"],
                             env={"RUST_LOG": "warn"})
            admin = "http://" + bridge.wait_for(r"admin \(metrics, health\) on http://([0-9.]+:[0-9]+)").group(1)
            addr = bridge.wait_for(r"serving on grpc://([0-9.]+:[0-9]+)").group(1)
            bridge.wait_for(r"has loaded every dataset", timeout=600)
            client = flight.connect(f"grpc://{addr}")
            ticket = flight.Ticket(b'{"query":"scan","dataset":"yellow","from":"2024-01-08","to":"2024-01-15"}')
            want = None
            print(f"\n`scan` of a week ({len(files)} generated month, {args.rows:,} rows), over a veth capped at "
                  f"{args.mbit} Mbit/s with tc tbf, medians of 5\n")
            print("| bridge-ipc-compression | wall | Arrow MB/s | bytes on the wire | client CPU |")
            print("|---|---:|---:|---:|---:|")
            for codec in ["none", "lz4", "zstd"]:
                options = flight.FlightCallOptions(headers=[(b"bridge-ipc-compression", codec.encode())])
                runs = []
                for _ in range(5):
                    before, cpu0, t0 = body_bytes(admin), time.process_time(), time.perf_counter()
                    table = client.do_get(ticket, options).read_all()
                    runs.append((time.perf_counter() - t0, body_bytes(admin) - before, time.process_time() - cpu0))
                    want = want or table
                    assert table.equals(want), f"{codec}: the rows differ from the uncompressed answer"
                wall, wire, cpu = (statistics.median(r[i] for r in runs) for i in range(3))
                print(f"| {codec} | {wall:.2f} s | {table.nbytes / wall / 1e6:,.0f} | {wire / 1e6:,.0f} MB | "
                      f"{cpu:.2f} s |", flush=True)
        finally:
            if bridge:
                bridge.stop()
            teardown()


if __name__ == "__main__":
    main()
