"""A web page reads Bridge's HTTP API with the Arrow JS library (`apache-arrow` from npm) in
headless Chromium (Playwright). `make test` installs Chromium and the npm packages."""
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import reference as ref
from conftest import Bridge

BROWSER = Path(__file__).resolve().parents[1] / "browser"


MISSING = (not shutil.which("node") or not (BROWSER / "node_modules").exists()
           or not Path("/usr/bin/chromium").exists())


# `make test` installs everything and sets REQUIRE_BROWSER, so there the test cannot skip.
@pytest.mark.skipif(MISSING and not os.environ.get("REQUIRE_BROWSER"),
                    reason="needs node, `npm ci` in tests/browser and Debian's chromium (make browser)")
def test_a_page_reads_p90_trips_with_arrow_js(data_dir, files, tmp_path):
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache", http=True)
    try:
        frm, to = "2024-01-01", "2024-02-01"
        query = f"v1/datasets/yellow/p90?from={frm}&to={to}&columns=tpep_pickup_datetime,trip_distance"
        out = subprocess.run(["node", str(BROWSER / "arrow_fetch.mjs"), b.http, query],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        thr, want = ref.p90(files, frm, to)
        assert seen["status"] == 200 and seen["contentType"] == "application/vnd.apache.arrow.stream"
        assert seen["columns"] == ["tpep_pickup_datetime", "trip_distance"]
        assert seen["rows"] == want.num_rows
        assert math.isclose(float(seen["threshold"]), thr, rel_tol=1e-12)
        assert math.isclose(seen["distanceSum"], sum(want["trip_distance"].to_pylist()), rel_tol=1e-9)
        assert int(seen["manifestVersion"]) == b.status()["manifest_version"]
    finally:
        b.stop()
