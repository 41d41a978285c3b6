"""Faults: mangled Parquet files, and an S3 server behind a proxy that sheds load."""
import http.client
import http.server
import json
import random
import socket
import threading
import time

import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

from conftest import Bridge, generate, s3_args, s3_client, start_moto, wait_until


def test_200_mutated_and_truncated_parquet_files_never_crash_bridge(tmp_path):
    src = generate(tmp_path / "src", ["2024-03"], rows=5_000)[0]
    data = src.read_bytes()
    out = tmp_path / "mangled"
    out.mkdir()
    rng = random.Random(11)
    for i in range(200):
        b = bytearray(data)
        if i % 2:
            b = b[: rng.randrange(0, len(b))]  # truncated
        else:
            for _ in range(rng.randrange(1, 20)):  # bytes flipped anywhere, footer included
                at = rng.randrange(len(b))
                b[at] ^= 1 << rng.randrange(8)
        (out / f"m{i:03d}.parquet").write_bytes(bytes(b))
    (out / "zz_good.parquet").write_bytes(data)
    b = Bridge([f"yellow={out}/*.parquet"], tmp_path / "cache")
    try:
        st = b.status()
        assert b.proc.poll() is None, "Bridge must survive every file"
        assert len(st["files"]) + len(st["quarantined"]) == 201
        assert all(q["reason"] for q in st["quarantined"])
        assert len(st["quarantined"]) >= 100, "every truncated file at least must be refused"
        assert "zz_good.parquet" in {f["key"] for f in st["files"]}
        # Whatever was accepted is served consistently: the row count is the manifest's.
        n = b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py()
        assert n == sum(f["rows"] for f in st["files"])
        assert b.get({"query": "scan", "dataset": "yellow", "columns": ["trip_distance"]}).num_rows == n
    finally:
        b.stop()


class Shedding(http.server.ThreadingHTTPServer):
    """An HTTP proxy to `upstream` that answers 503 SlowDown to a share of requests."""

    daemon_threads = True

    def __init__(self, upstream, share, seed=5):
        self.upstream, self.share, self.rng, self.shed = upstream, share, random.Random(seed), 0
        self.blocked = set()  # GETs of these object names always fail, until removed
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        blocked = self.command == "GET" and any(self.path.split("?")[0].endswith(k) for k in self.server.blocked)
        if blocked or self.server.rng.random() < self.server.share:
            self.server.shed += 1
            msg = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        host, port = self.server.upstream
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers))
        r = conn.getresponse()
        payload = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any


def behind_proxy(moto, bucket, files, share):
    """`files` in a new bucket under t/, and a running Shedding proxy in front of moto."""
    s3 = s3_client(moto.endpoint)
    s3.create_bucket(Bucket=bucket)
    for f in files:
        s3.upload_file(str(f), bucket, f"t/{f.name}")
    host, port = moto.endpoint.removeprefix("http://").split(":")
    proxy = Shedding((host, int(port)), share=share)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy, f"http://127.0.0.1:{proxy.server_address[1]}"


def test_s3_shedding_20_percent_of_requests_is_absorbed_by_retries(moto, tmp_path):
    files = generate(tmp_path / "d", ["2024-01", "2024-02", "2024-03"], rows=30_000)
    proxy, endpoint = behind_proxy(moto, "shedding", files, share=0.2)
    b = Bridge(["yellow=s3://shedding/t/*.parquet"], tmp_path / "cache", s3_args(endpoint))
    try:
        for _ in range(5):
            b.action("refresh")  # more listings through the proxy, each may be shed
        st = b.status()
        assert len(st["files"]) == 3 and not st["quarantined"], st
        want = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == want
        assert proxy.shed > 0, "the proxy must actually have shed requests"
    finally:
        b.stop()
        proxy.shutdown()


def test_a_black_holed_store_fails_within_bounded_time(tmp_path):
    """Connections are accepted and never answered: listing gives up within its timeouts."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    held = []
    stop = threading.Event()

    def swallow():
        hole.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(hole.accept()[0])
            except OSError:
                pass

    threading.Thread(target=swallow, daemon=True).start()
    endpoint = f"http://127.0.0.1:{hole.getsockname()[1]}"
    started = time.monotonic()
    b = Bridge(["yellow=s3://void/t/*.parquet"], tmp_path / "cache",
               [*s3_args(endpoint), "--s3-timeout", "1s", "--s3-retry-timeout", "2s"])
    try:
        assert time.monotonic() - started < 30, "startup must not hang on a dead store"
        assert held, "Bridge did connect to the black hole"
        with pytest.raises(flight.FlightUnavailableError):
            b.get({"query": "p90", "dataset": "yellow"})
        t0 = time.monotonic()
        with pytest.raises(flight.FlightUnavailableError):
            b.action("refresh")
        assert time.monotonic() - t0 < 15
        assert b.status()["last_error"]
    finally:
        b.stop()
        stop.set()
        hole.close()


def test_killing_s3_mid_scan_does_not_break_the_stream(tmp_path):
    """Answers come from the local store: a scan in flight completes while S3 dies, and Bridge
    reports the outage in status."""
    files = generate(tmp_path / "d", ["2024-01", "2024-02"], rows=60_000)
    moto = start_moto()
    s3 = s3_client(moto.endpoint)
    s3.create_bucket(Bucket="midscan")
    for f in files:
        s3.upload_file(str(f), "midscan", f"t/{f.name}")
    b = Bridge(["yellow=s3://midscan/t/*.parquet"], tmp_path / "cache",
               [*s3_args(moto.endpoint), "--refresh-interval", "200ms", "--s3-timeout", "1s", "--s3-retry-timeout", "2s"])
    try:
        reader = b.client.do_get(flight.Ticket(json.dumps({"query": "scan", "dataset": "yellow"}).encode()))
        first = reader.read_chunk().data.num_rows
        moto.stop()
        rest = reader.read_all().num_rows
        assert first + rest == sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        wait_until(lambda: b.status()["last_error"], b, timeout=30, what="status to report the dead store")
    finally:
        b.stop()
        moto.stop()


def test_a_download_that_keeps_failing_is_retried_not_quarantined(moto, tmp_path):
    """Transient failures (here: every GET of one object answers 503 for a while) are retried with
    backoff and never quarantine the file; the rest serves meanwhile, and the file joins once the
    store recovers."""
    files = generate(tmp_path / "d", ["2024-01", "2024-02"], rows=30_000)
    proxy, endpoint = behind_proxy(moto, "flaky", files, share=0.0)
    proxy.blocked.add(files[1].name)
    b = Bridge(["yellow=s3://flaky/t/*.parquet"], tmp_path / "cache",
               [*s3_args(endpoint), "--s3-retry-timeout", "1s", "--refresh-interval", "200ms"])
    try:
        rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
        st = wait_until(lambda: (s := b.status())["retrying"] and s["retrying"][0]["attempts"] >= 2 and s, b,
                        timeout=30, what="a second attempt at the failing file")
        assert [f["key"] for f in st["files"]] == [f"t/{files[0].name}"] and not st["quarantined"], st
        assert st["retrying"][0]["key"] == f"t/{files[1].name}" and "download" in st["retrying"][0]["reason"]
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == rows[0]
        proxy.blocked.clear()
        st = wait_until(lambda: len((s := b.status())["files"]) == 2 and s, b, timeout=30, what="the file to join")
        assert not st["quarantined"] and not st["retrying"], st
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == sum(rows)
    finally:
        b.stop()
        proxy.shutdown()
