"""The arrow-rs Flight SQL command-line client (`flight_sql_client`, arrow-flight 58.4 with
features `cli,flight-sql`) binding a prepared statement's parameter from text, exactly as the
README shows. Building that binary takes ~10 minutes here, so this runs only where it exists:
on PATH, or named by FLIGHT_SQL_CLIENT (`cargo install arrow-flight --version 58.4.0 --features
cli,flight-sql --bin flight_sql_client`)."""
import os
import shutil
import subprocess

import duckdb
import pytest

CLI = os.environ.get("FLIGHT_SQL_CLIENT") or shutil.which("flight_sql_client")
pytestmark = pytest.mark.skipif(not CLI, reason="flight_sql_client is not installed")


def test_prepared_statement_query_with_a_text_parameter(bridge, files):
    host, port = bridge.addr.split(":")
    out = subprocess.run(
        [CLI, "--host", host, "--port", port, "prepared-statement-query",
         "SELECT count(*) AS n FROM yellow WHERE trip_distance > $1", "-p", "$1=5.0"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    paths = ", ".join(f"'{f}'" for f in files)
    want = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet([{paths}]) WHERE trip_distance > 5.0").fetchone()[0]
    assert f"| {want} " in out.stdout, out.stdout
