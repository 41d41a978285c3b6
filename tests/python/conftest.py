"""Fixtures: the real `bridge` binary on 127.0.0.1:0, generated data, and a moto S3 server.

Services print their bound address; fixtures read it from their output (no fixed ports, no sleeps).
"""
import json
import os
import queue
import re
import subprocess
import threading
from pathlib import Path

import pyarrow.flight as flight
import pytest

BIN = os.environ.get("BRIDGE_BIN", str(Path(__file__).resolve().parents[2] / "target/release/bridge"))
ROWS = 100_000
MONTHS = ["2024-01", "2024-02"]


class Service:
    """A child process whose output is read line by line on a thread."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
        self.lines = queue.Queue()
        self.log = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern, timeout=120):
        """Returns the first match of `pattern` in the output, or fails after `timeout` seconds."""
        rx = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} within {timeout}s; output:\n{''.join(self.log)}")
            if line is None:
                raise AssertionError(f"process exited ({self.proc.wait()}) before {pattern!r}:\n{''.join(self.log)}")
            m = rx.search(line)
            if m:
                return m

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def generate(out, months, rows=ROWS):
    for m in months:
        subprocess.run([BIN, "gen", "--out", str(out), "--month", m, "--rows", str(rows)], check=True, capture_output=True)
    return sorted(Path(out).glob("*.parquet"))


class Bridge(Service):
    def __init__(self, datasets, cache_dir, extra=(), env=None, memory_limit="1GB"):
        args = [BIN, "--listen", "127.0.0.1:0", "--cache-dir", str(cache_dir), "--duckdb-memory-limit", memory_limit]
        for d in datasets:
            args += ["--dataset", d]
        super().__init__(args + list(extra), env={"RUST_LOG": "warn", **(env or {})})
        self.addr = self.wait_for(r"serving on grpc://([0-9.]+:[0-9]+)").group(1)
        self.client = flight.connect(f"grpc://{self.addr}")

    def get(self, ticket):
        return self.client.do_get(flight.Ticket(json.dumps(ticket).encode())).read_all()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("yellow")
    generate(d, MONTHS)
    return d


@pytest.fixture(scope="session")
def files(data_dir):
    return sorted(data_dir.glob("*.parquet"))


@pytest.fixture(scope="session")
def bridge(data_dir, tmp_path_factory):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path_factory.mktemp("cache"))
    yield b
    b.stop()


@pytest.fixture(scope="session")
def moto():
    """A real S3-compatible HTTP server (moto_server) on 127.0.0.1, port chosen by the OS."""
    exe = str(Path(os.sys.executable).parent / "moto_server")
    s = Service([exe, "-H", "127.0.0.1", "-p", "0"])
    s.endpoint = "http://" + s.wait_for(r"Running on http://(127\.0\.0\.1:\d+)").group(1)
    yield s
    s.stop()
