"""Fixtures: the real `bridge` binary on 127.0.0.1:0, generated data, and a moto S3 server.

Services print their bound address; fixtures read it from their output (no fixed ports, no sleeps).
"""
import json
import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import boto3
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
    def __init__(self, datasets, cache_dir, extra=(), env=None, memory_limit="1GB", admin=True, loaded=True,
                 http=False):
        """Starts Bridge; with `loaded`, returns once every dataset has had its first ingest pass
        (Bridge serves from its first file on, and prints a line when everything is in). The admin
        port is on by default: `wait_until` waits on its change feed."""
        self.cache_dir = cache_dir
        args = [BIN, "--listen", "127.0.0.1:0", "--cache-dir", str(cache_dir), "--duckdb-memory-limit", memory_limit]
        for d in datasets:
            args += ["--dataset", d]
        if admin:
            args += ["--admin-listen", "127.0.0.1:0"]
        if http:
            args += ["--http-listen", "127.0.0.1:0"]
        super().__init__(args + list(extra), env={"RUST_LOG": "warn", **(env or {})})
        if admin:
            self.admin = "http://" + self.wait_for(r"admin \(metrics, health\) on http://([0-9.]+:[0-9]+)").group(1)
        if http:
            self.http = "http://" + self.wait_for(r"HTTP API on http://([0-9.]+:[0-9]+)").group(1)
        self.addr = self.wait_for(r"serving on grpc(?:\+tls)?://([0-9.]+:[0-9]+)").group(1)
        self.client = flight.connect(f"grpc://{self.addr}")
        if loaded:
            self.wait_for(r"has loaded every dataset")

    def get(self, ticket):
        return self.client.do_get(flight.Ticket(json.dumps(ticket).encode())).read_all()

    def action(self, name, dataset=None):
        body = json.dumps({"dataset": dataset}).encode() if dataset else b""
        return json.loads(next(iter(self.client.do_action(flight.Action(name, body)))).body.to_pybytes())

    def status(self, dataset="yellow"):
        return self.action("status", dataset)["datasets"][0]

    def _changes(self, query=""):
        import urllib.request
        with urllib.request.urlopen(f"{self.admin}/changes{query}", timeout=40) as r:
            return json.loads(r.read())["seq"]

    def current(self):
        """The server's change number (`/changes` on the admin port)."""
        return self._changes()

    def next_change(self, after, timeout):
        """Returns once the server's change number passes `after`, or after `timeout` s."""
        self._changes(f"?after={after}&wait_ms={int(min(timeout, 30) * 1000) + 1}")


class Signal:
    """A change counter for events inside a test (a client thread got an answer): the thread
    calls `changed()` after each event, and `wait_until` re-checks its condition then."""

    def __init__(self):
        self._cond = threading.Condition()
        self._seq = 0

    def changed(self):
        with self._cond:
            self._seq += 1
            self._cond.notify_all()

    def current(self):
        return self._seq

    def next_change(self, after, timeout):
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after, timeout)


def wait_until(condition, changes, timeout=20.0, what="the condition"):
    """Returns `condition()` once it is truthy, or fails after `timeout` s.

    It is re-checked only when `changes` (a `Signal`, or a `Bridge` started with `admin=True`)
    reports that something changed: no tick, no sleep. The change number is read before the
    condition, so a change between the check and the wait is never missed."""
    deadline = time.monotonic() + timeout
    while True:
        seq = changes.current()
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{what} did not hold within {timeout}s")
        changes.next_change(seq, remaining)


class RefusingPort:
    """A loopback port bound but never listening, held for the test: connections to it are
    refused, and no other process can take the port meanwhile (no bind-close-reuse race)."""

    def __init__(self):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def s3_args(endpoint):
    return ["--s3-endpoint", endpoint, "--s3-allow-http", "--s3-region", "us-east-1",
            "--s3-access-key-id", "testing", "--s3-secret-access-key", "testing"]


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
    s = start_moto()
    yield s
    s.stop()


def start_moto(port=0):
    """Starts moto_server on 127.0.0.1:`port` (0: the OS chooses) and returns it with `.endpoint`."""
    exe = str(Path(os.sys.executable).parent / "moto_server")
    s = Service([exe, "-H", "127.0.0.1", "-p", str(port)])
    s.endpoint = "http://" + s.wait_for(r"Running on http://(127\.0\.0\.1:\d+)").group(1)
    return s
