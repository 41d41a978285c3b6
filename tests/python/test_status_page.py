"""The admin port's status page, in headless Chromium (tests/browser/status_page.mjs), and its
JSON API's rules for who sees what."""
import base64
import json
import math
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

import reference as ref
from conftest import Bridge, generate
from test_http_browser import BROWSER, MISSING


def get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.skipif(MISSING and not os.environ.get("REQUIRE_BROWSER"),
                    reason="needs node, `npm ci` in tests/browser and Debian's chromium (make browser)")
def test_the_page_shows_rows_follows_new_files_and_quarantine_and_answers_the_form(tmp_path):
    jan, feb = generate(tmp_path / "gen", ["2024-01", "2024-02"], rows=50_000)
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(jan, live / jan.name)
    b = Bridge([f"yellow={live}/*.parquet"], tmp_path / "cache", ["--refresh-interval", "200ms", "--cache-max-bytes", "2GB"])
    try:
        shot = os.environ.get("STATUS_SCREENSHOT", str(tmp_path / "status.png"))
        out = subprocess.run(["node", str(BROWSER / "status_page.mjs"), b.admin, str(live), str(feb),
                              "yellow_tripdata_2099-01.parquet", shot], capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr + "".join(b.log[-20:])
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        rows = [pq.ParquetFile(f).metadata.num_rows for f in (jan, feb)]
        assert seen["before"]["rows"] == rows[0] and seen["before"]["files"] == 1
        assert seen["after"]["rows"] == sum(rows) and seen["after"]["files"] == 2
        assert seen["after"]["version"] > seen["before"]["version"]
        assert seen["reloads"] == 0, "the page must update itself, not reload"
        # The segments' bytes against the bound, from the status action (the same numbers).
        seg = b.action("status", "yellow")["segments"]
        assert "of 2.00 GB (--cache-max-bytes)" in seen["local"] and f"of {seg['segments']} files local" in seen["local"]
        assert seen["quarantined"]["key"].endswith("yellow_tripdata_2099-01.parquet") and seen["quarantined"]["reason"]
        thr, want = ref.p90([jan, feb], "2024-01-01", "2024-02-01")
        assert math.isclose(seen["threshold"], thr, rel_tol=1e-9) and seen["tripsAbove"] == want.num_rows
        ticket = {"query": "p90", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01", "output": "summary"}
        assert math.isclose(b.get(ticket)["threshold"][0].as_py(), seen["threshold"], rel_tol=1e-9)
        assert seen["badge"].split()[-1] in {"green", "yellow", "red"} and seen["recentRows"] >= 1
        assert Path(shot).stat().st_size > 10_000
    finally:
        b.stop()


def test_with_auth_the_api_needs_a_token_and_shows_sql_only_to_its_user_and_admins(data_dir, tmp_path):
    (tmp_path / "tokens").write_text("alice-token-0123456789\nbob-token-0123456789\n")
    (tmp_path / "admins").write_text("ops-token-0123456789\n")
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path / "cache",
               ["--api-tokens-file", str(tmp_path / "tokens"), "--admin-tokens-file", str(tmp_path / "admins")])
    try:
        status, body = get(f"{b.admin}/api/status")
        assert status == 401 and body["status"] == 401
        assert get(f"{b.admin}/api/status", "not-a-token-0123456789")[0] == 401
        # The admin token is for the status API only, not for data.
        options = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer ops-token-0123456789")])
        with pytest.raises(flight.FlightUnauthenticatedError):
            b.client.do_get(flight.Ticket(b'{"query":"sql","sql":"SELECT 1"}'), options).read_all()
        sql = "SELECT count(*) AS alice_was_here FROM yellow"
        options = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer alice-token-0123456789")])
        b.client.do_get(flight.Ticket(json.dumps({"query": "sql", "sql": sql}).encode()), options).read_all()

        def alice_query(token):
            status, body = get(f"{b.admin}/api/status", token)
            assert status == 200, body
            mine = [q for q in body["queries"]["recent"] if q["kind"] == "sql"]
            assert len(mine) == 1 and mine[0]["rows"] == 1 and mine[0]["code"] == "Ok"
            return mine[0]

        assert alice_query("alice-token-0123456789")["sql"] == sql
        assert alice_query("ops-token-0123456789")["sql"] == sql
        seen_by_bob = alice_query("bob-token-0123456789")
        assert seen_by_bob["sql"] is None and seen_by_bob["principal"].startswith("token-")
        # The form runs with the viewer's rights, through the same path.
        status, rows = get(f"{b.admin}/api/query?kind=p90&dataset=yellow&from=2024-01-01&to=2024-02-01",
                           "bob-token-0123456789")
        assert status == 200 and rows[0]["trips_in_range"] > 0
    finally:
        b.stop()
