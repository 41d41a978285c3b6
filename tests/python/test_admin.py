"""The admin port: Prometheus metrics that move with the traffic, liveness and readiness."""
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

from conftest import Bridge, RefusingPort, generate, wait_until


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name, **labels):
    """The value of one sample, or None."""
    for line in text.splitlines():
        m = re.match(rf"{name}(?:{{(.*)}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    return None


def test_metrics_health_and_readiness(data_dir, tmp_path):
    (tmp_path / "data").mkdir()
    for f in data_dir.glob("*.parquet"):
        shutil.copy(f, tmp_path / "data" / f.name)
    (tmp_path / "data" / "broken.parquet").write_bytes(b"not parquet")
    b = Bridge([f"yellow={tmp_path / 'data'}/*.parquet"], tmp_path / "cache", admin=True)
    try:
        assert http(b.admin + "/healthz") == (200, "ok\n")
        assert http(b.admin + "/readyz")[0] == 200
        before = http(b.admin + "/metrics")[1]
        n = metric(before, "bridge_requests_total", rpc="DoGet", kind="p90", code="Ok") or 0
        rows = b.get({"query": "p90", "dataset": "yellow", "from": "2024-01-01", "to": "2024-01-08"}).num_rows
        with pytest.raises(pa.ArrowInvalid):
            b.get({"query": "p90", "dataset": "yellow", "percentile": 2})
        text = http(b.admin + "/metrics")[1]
        assert metric(text, "bridge_requests_total", rpc="DoGet", kind="p90", code="Ok") == n + 1
        assert metric(text, "bridge_requests_total", rpc="DoGet", kind="p90", code="InvalidArgument") >= 1
        assert metric(text, "bridge_rows_sent_total", kind="p90") >= rows
        assert metric(text, "bridge_request_seconds_count", rpc="DoGet", kind="p90") >= 1
        assert metric(text, "bridge_quarantined_files", dataset="yellow") == 1
        assert metric(text, "bridge_file_events_total", dataset="yellow", event="quarantined") == 1
        assert metric(text, "bridge_manifest_version", dataset="yellow") == b.status()["manifest_version"]
        assert metric(text, "bridge_dataset_files", dataset="yellow") == len(list(data_dir.glob("*.parquet")))
        assert "bridge_queries_running 0" in text
        list(b.client.list_flights())
        text = http(b.admin + "/metrics")[1]
        assert metric(text, "bridge_requests_total", rpc="ListFlights", code="Ok") >= 1
        assert metric(text, "bridge_request_seconds_count", rpc="ListFlights") >= 1
    finally:
        b.stop()


def test_not_ready_until_a_first_manifest(tmp_path):
    with RefusingPort() as refusing:  # the store is unreachable for the whole test
        not_ready(tmp_path, refusing)


def not_ready(tmp_path, refusing):
    b = Bridge(["yellow=s3://tlc/trips/*.parquet"], tmp_path / "cache",
               ["--s3-endpoint", refusing.endpoint, "--s3-allow-http", "--s3-region", "us-east-1",
                "--s3-anonymous"], admin=True, loaded=False)
    try:
        assert http(b.admin + "/healthz")[0] == 200
        status, body = http(b.admin + "/readyz")
        assert status == 503 and "yellow" in body
        text = wait_until(lambda: (t := http(b.admin + "/metrics")[1]) and
                          (metric(t, "bridge_object_store_errors_total", op="list") or 0) >= 1 and t, b,
                          what="a counted listing error")
        assert metric(text, "bridge_object_store_requests_total", op="list") >= 1
    finally:
        b.stop()


def test_changes_long_poll_wakes_on_a_query_and_times_out_without_one(tmp_path):
    generate(tmp_path / "data", ["2024-01"], rows=20_000)
    b = Bridge([f"yellow={tmp_path / 'data'}/*.parquet"], tmp_path / "cache")
    try:
        quiet = b.current()
        started = time.monotonic()
        assert json.loads(http(f"{b.admin}/changes?after={quiet}&wait_ms=300")[1])["seq"] == quiet
        assert time.monotonic() - started >= 0.3, "a long-poll without a change waits its time"
        woke = []
        poll = threading.Thread(target=lambda: woke.append(b._changes(f"?after={quiet}&wait_ms=20000")))
        poll.start()
        b.get({"query": "p90", "dataset": "yellow", "output": "summary"})
        poll.join(timeout=20)
        assert woke and woke[0] > quiet, "a query must wake the long-poll"
    finally:
        b.stop()
