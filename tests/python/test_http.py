"""The HTTP API (`--http-listen`): the tickets over HTTP, checked against DuckDB-Python and
pyarrow over the same files, every error path, auth, admission, deadline and disconnects."""
import csv
import gzip
import http.client
import io
import json
import math
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import reference as ref
from conftest import Bridge, wait_until
from test_admin import http as get_text, metric

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture(scope="module")
def api(data_dir, tmp_path_factory):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path_factory.mktemp("http-cache"), http=True)
    yield b
    b.stop()


def call(url, accept=None, body=None, headers=None, method=None):
    """(status, headers, body bytes); errors are answers too."""
    h = dict(headers or {})
    if accept:
        h["Accept"] = accept
    data = None
    if body is not None:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        h.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def arrow(url, **kw):
    status, headers, body = call(url, **kw)
    assert status == 200, body[:500]
    assert headers["Content-Type"] == ARROW
    return ipc.open_stream(io.BytesIO(body)).read_all(), headers


def problem(status, headers, body, want_status):
    assert status == want_status, (status, body[:300])
    assert headers["Content-Type"] == "application/problem+json"
    doc = json.loads(body)
    assert doc["status"] == want_status and doc["type"] == "about:blank" and doc["detail"], doc
    return doc


def test_p90_trips_outliers_and_sql_as_arrow_are_exact(api, files):
    frm, to = "2024-01-01", "2024-02-01"
    got, headers = arrow(f"{api.http}/v1/datasets/yellow/p90?from={frm}&to={to}")
    thr, want = ref.p90(files, frm, to)
    assert ref.key(got) == ref.key(want)
    assert math.isclose(float(got.schema.metadata[b"bridge.p90.threshold"]), thr, rel_tol=1e-12)
    # Freshness travels in headers too, and matches the manifest Flight reports.
    assert int(headers["Bridge-File-Count"]) == len(files)
    assert int(headers["Bridge-Manifest-Version"]) == api.status()["manifest_version"]
    assert int(headers["Bridge-Row-Count"]) == sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    got, _ = arrow(f"{api.http}/v1/datasets/yellow/outliers?from={frm}&to={to}")
    want = ref.outliers(files, frm, to)
    cols = ("tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance", "reason")
    assert ref.key(got, cols) == ref.key(want, cols)

    sql = "SELECT payment_type, count(*) AS n FROM yellow GROUP BY 1 ORDER BY 1"
    got, headers = arrow(f"{api.http}/v1/sql", body={"sql": sql})
    paths = ", ".join(f"'{f}'" for f in files)
    want = ref.duckdb.sql(sql.replace("FROM yellow", f"FROM read_parquet([{paths}])")).to_arrow_table()
    assert got.to_pylist() == want.to_pylist()
    assert headers["Bridge-File-Count"] == f"yellow={len(files)}"


def test_scan_streams_every_row_and_columns_project(api, files):
    got, _ = arrow(f"{api.http}/v1/datasets/yellow/scan?columns=trip_distance,tpep_pickup_datetime")
    assert got.column_names == ["trip_distance", "tpep_pickup_datetime"]
    want = ref.read(files, ("tpep_pickup_datetime", "trip_distance"))
    assert ref.key(got, ("tpep_pickup_datetime", "trip_distance")) == ref.key(want, ("tpep_pickup_datetime", "trip_distance"))


def test_json_and_csv_answers_hold_the_same_rows(api, files):
    frm, to = "2024-02-03", "2024-02-04"
    thr, want = ref.p90(files, frm, to)
    url = f"{api.http}/v1/datasets/yellow/p90?from={frm}&to={to}&columns=tpep_pickup_datetime,trip_distance"
    status, headers, body = call(url, accept="application/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    rows = json.loads(body)
    assert sorted(r["trip_distance"] for r in rows) == sorted(want["trip_distance"].to_pylist())
    assert set(rows[0]) == {"tpep_pickup_datetime", "trip_distance"}

    status, headers, body = call(url, accept="text/csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(body.decode())))
    assert sorted(float(r["trip_distance"]) for r in table) == sorted(want["trip_distance"].to_pylist())

    # format= overrides Accept; the summary is one row with the reference threshold.
    status, _, body = call(f"{api.http}/v1/datasets/yellow/p90?from={frm}&to={to}&output=summary&format=json",
                           accept="text/csv")
    summary = json.loads(body)[0]
    assert math.isclose(summary["threshold"], thr, rel_tol=1e-12) and summary["trips_above"] == want.num_rows


def test_curl_as_the_readme_shows(api, files):
    """The README's curl line, run as written (with the test's address)."""
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl is not installed")
    out = subprocess.run([curl, "-sS", "-H", "Accept: text/csv",
                          f"{api.http}/v1/datasets/yellow/p90?from=2024-01-01&to=2024-02-01&output=summary"],
                         capture_output=True, text=True, check=True).stdout
    row = list(csv.DictReader(io.StringIO(out)))[0]
    thr, want = ref.p90(files, "2024-01-01", "2024-02-01")
    assert math.isclose(float(row["threshold"]), thr, rel_tol=1e-12) and int(row["trips_above"]) == want.num_rows
    # HTTP/2 when the client asks (prior knowledge, h2c).
    out = subprocess.run([curl, "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
                          f"{api.http}/v1/datasets"], capture_output=True, text=True, check=True).stdout
    assert out == "2"


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compressed_bodies_decode_to_the_same_stream(api, encoding):
    url = f"{api.http}/v1/datasets/yellow/scan?from=2024-01-01&to=2024-01-03"
    plain, _ = arrow(url)
    status, headers, body = call(url, headers={"Accept-Encoding": encoding})
    assert status == 200 and headers["Content-Encoding"] == encoding
    if encoding == "gzip":
        raw = gzip.decompress(body)
    else:
        import zstandard  # noqa: PLC0415 - only this case needs it
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
    assert len(raw) > len(body)
    assert ipc.open_stream(io.BytesIO(raw)).read_all().equals(plain)


@pytest.mark.parametrize("path,kw,status,needle", [
    ("/v1/datasets/yellow/p90?percentile=2", {}, 400, "percentile"),
    ("/v1/datasets/yellow/p90?limit=abc", {}, 400, "limit"),
    ("/v1/datasets/yellow/p90?frm=2024-01-01", {}, 400, "frm"),
    ("/v1/datasets/yellow/p90?from=yesterday", {}, 400, "from"),
    ("/v1/datasets/yellow/p90?output=chart", {}, 400, "output"),
    ("/v1/datasets/yellow/scan?columns=nope", {}, 400, "nope"),
    ("/v1/datasets/yellow/outliers?order_by=nope%20desc", {}, 400, "nope"),
    ("/v1/datasets/yellow/p90?format=xml", {}, 400, "format"),
    ("/v1/datasets/nope/p90", {}, 404, "nope"),
    ("/v2/anything", {}, 404, "openapi"),
    ("/v1/datasets/yellow/p90", {"accept": "text/html"}, 406, "arrow"),
    ("/v1/sql", {"body": {"sql": "SELECT * FROM read_csv('/etc/passwd')"}}, 400, ""),
    ("/v1/sql", {"body": {"sql": "SELEC 1"}}, 400, "syntax"),
    ("/v1/sql", {"body": {"query": "SELECT 1"}}, 400, "sql"),
    ("/v1/sql", {"body": b"SELECT 1", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
])
def test_every_error_is_a_problem_document_with_its_code(api, path, kw, status, needle):
    doc = problem(*call(api.http + path, **kw), status)
    assert needle.lower() in doc["detail"].lower(), doc


def test_json_past_its_row_cap_is_refused_clearly(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", ["--http-json-max-rows", "100"], http=True)
    try:
        doc = problem(*call(f"{b.http}/v1/datasets/yellow/scan", accept="application/json"), 400)
        assert "100 rows" in doc["detail"] and "--http-json-max-rows" in doc["detail"]
        rows = json.loads(call(f"{b.http}/v1/datasets/yellow/scan?limit=100", accept="application/json")[2])
        assert len(rows) == 100
    finally:
        b.stop()


def test_bearer_tokens_as_on_flight(data_dir, tmp_path):
    (tmp_path / "tokens").write_text("static-token-0123456789\n")
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--api-tokens-file", str(tmp_path / "tokens")], http=True, loaded=False)
    try:
        url = f"{b.http}/v1/datasets/yellow/p90?output=summary"
        status, headers, body = call(url)
        problem(status, headers, body, 401)
        assert headers["WWW-Authenticate"] == "Bearer"
        problem(*call(url, headers={"Authorization": "Bearer wrong-token-0123456789"}), 401)
        problem(*call(f"{b.http}/v1/datasets", headers={"Authorization": "Basic YWxpY2U6eA=="}), 401)
        good = {"Authorization": "Bearer static-token-0123456789"}
        b.wait_for(r"has loaded every dataset")
        status, _, body = call(url, headers=good)
        assert status == 200 and ipc.open_stream(io.BytesIO(body)).read_all().num_rows == 1
        # The API description is public; the data is not.
        assert call(f"{b.http}/v1/openapi.json")[0] == 200
    finally:
        b.stop()


def stalled_scan(addr):
    """A scan whose client reads the headers and a little of the body, then stops reading."""
    host, port = addr.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/v1/datasets/yellow/scan")
    r = conn.getresponse()
    assert r.status == 200
    r.read(1024)
    return conn


def test_a_full_queue_answers_503_with_retry_after(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--max-running-queries", "1", "--max-queued-queries", "0"], http=True)
    try:
        held = stalled_scan(b.http)
        status, headers, body = call(f"{b.http}/v1/datasets/yellow/p90?output=summary")
        doc = problem(status, headers, body, 503)
        assert headers["Retry-After"] == "1" and "busy" in doc["detail"]
        held.close()
        # Once the held query is gone the slot is free again.
        wait_until(lambda: metric(get_text(b.admin + "/metrics")[1], "bridge_queries_running") == 0, b,
                   what="the dropped scan to end")
        assert call(f"{b.http}/v1/datasets/yellow/p90?output=summary")[0] == 200
        text = get_text(b.admin + "/metrics")[1]
        assert metric(text, "bridge_requests_total", rpc="http", kind="p90", code="Unavailable") == 1
        assert metric(text, "bridge_requests_total", rpc="http", kind="p90", code="Ok") == 1
    finally:
        b.stop()


def test_dropping_the_connection_mid_stream_frees_the_slot(data_dir, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", ["--batch-rows", "1024"], http=True)
    try:
        conn = stalled_scan(b.http)
        active = lambda: metric(get_text(b.admin + "/metrics")[1], "bridge_query_threads_active")  # noqa: E731
        wait_until(lambda: active() == 1, b, what="the scan to be running")
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        wait_until(lambda: active() == 0 and metric(get_text(b.admin + "/metrics")[1], "bridge_queries_running") == 0,
                   b, timeout=5, what="the server to stop the abandoned scan")
    finally:
        b.stop()


def test_past_the_deadline_is_504(data_dir, tmp_path):
    """A ticket that cannot start before the deadline (it waits for a manifest version that never
    comes, longer than --query-timeout) is a gateway timeout."""
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--query-timeout", "300ms", "--min-version-wait", "30s"], http=True)
    try:
        doc = problem(*call(f"{b.http}/v1/datasets/yellow/p90?output=summary&min_version=99999"), 504)
        assert "deadline" in doc["detail"]
    finally:
        b.stop()


def test_datasets_and_openapi(api, files):
    status, _, body = call(f"{api.http}/v1/datasets")
    (ds,) = json.loads(body)
    assert status == 200 and ds["name"] == "yellow" and ds["files"] == len(files)
    assert ds["rows"] == sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    assert {"name": "trip_distance", "type": "DOUBLE"} in ds["columns"]
    doc = json.loads(call(f"{api.http}/v1/openapi.json")[2])
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/v1/datasets", "/v1/datasets/{name}/p90", "/v1/datasets/{name}/outliers",
                                 "/v1/datasets/{name}/scan", "/v1/sql"}
