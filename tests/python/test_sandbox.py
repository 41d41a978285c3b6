"""User SQL reads the datasets and nothing else: escape attempts over Flight SQL (ADBC) and the
plain `sql` ticket are refused with a clear error, nothing outside is read, and no file appears."""
import json

import adbc_driver_manager

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

SECRET = "bridge-sandbox-secret-7f3a"

# {out}: an empty directory writes would land in; {secret}/{secret_parquet}: files outside the
# datasets; {data}: the dataset directory; {cache}: Bridge's own cache directory.
ATTEMPTS = [
    # Reading files outside the datasets.
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('{secret}')",
    "SELECT * FROM read_csv(['{secret}'])",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM read_json('{secret}')",
    "SELECT * FROM read_json_objects('{secret}')",
    "SELECT * FROM read_ndjson_objects('{secret}')",
    "SELECT * FROM read_parquet('{secret_parquet}')",
    "SELECT * FROM parquet_scan('{secret_parquet}')",
    "SELECT * FROM parquet_metadata('{secret_parquet}')",
    "SELECT * FROM parquet_schema('{secret_parquet}')",
    "SELECT * FROM sniff_csv('{secret}')",
    "SELECT * FROM '{secret_parquet}'",
    "FROM '{secret}'",
    "SELECT * FROM 'file://{secret}'",
    "SELECT * FROM read_text('/proc/self/environ')",
    "SELECT * FROM read_text('{cache}/catalog/store.duckdb')",
    "SELECT * FROM read_text('/etc/pass' || 'wd')",
    "SELECT * FROM \"read_text\"('/etc/passwd')",
    "SELECT * FROM main.read_text('/etc/passwd')",
    "SELECT * FROM system.main.read_text('/etc/passwd')",
    # Listing files.
    "SELECT * FROM glob('/*')",
    "SELECT * FROM glob('{data}/*')",
    # Hidden in subqueries, CTEs, joins, lateral calls and expressions.
    "WITH x AS (SELECT * FROM read_text('{secret}')) SELECT * FROM x",
    "SELECT (SELECT content FROM read_text('{secret}'))",
    "SELECT * FROM yellow, read_text('{secret}') LIMIT 1",
    "SELECT * FROM yellow y WHERE EXISTS (SELECT 1 FROM read_csv('{secret}'))",
    "SELECT * FROM range(1) r, LATERAL (SELECT * FROM read_text('{secret}'))",
    "SELECT * FROM query('SELECT * FROM read_text(''{secret}'')')",
    "SELECT * FROM query_table('bridge.files')",
    # Home directories.
    "SELECT * FROM read_text('~/.bashrc')",
    "SELECT * FROM read_csv('~/.ssh/id_rsa')",
    "SELECT * FROM '~/secret.parquet'",
    # Network.
    "SELECT * FROM read_parquet('s3://bucket/key.parquet')",
    "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
    # Writing files.
    "COPY (SELECT 1) TO '{out}/copy.csv'",
    "COPY yellow TO '{out}/copy.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{out}/export'",
    "ATTACH '{out}/new.duckdb' AS x",
    "ATTACH ':memory:' AS m",
    "DETACH store",
    "CREATE TABLE {out_name} AS SELECT 1",
    "CREATE MACRO evil() AS TABLE SELECT * FROM read_text('{secret}')",
    "INSERT INTO bridge.files VALUES ('x', 'y', 'z', 1, 1, now())",
    "CHECKPOINT",
    # Extensions.
    "INSTALL httpfs",
    "LOAD httpfs",
    "FORCE INSTALL httpfs FROM 'http://127.0.0.1:9'",
    # Settings.
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "PRAGMA memory_limit = '100TB'",
    "CALL pragma_version()",
    "SELECT 1; SET enable_external_access = true",
    # Pointer-taking table functions.
    # Bridge's bookkeeping, DuckDB's catalog, settings, paths and the environment.
    "SELECT * FROM bridge.files",
    "SELECT * FROM bridge.versions",
    "SELECT * FROM store.bridge.files",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM information_schema.columns",
    "SELECT * FROM pg_settings",
    "SELECT * FROM pg_catalog.pg_class",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_views()",
    "SELECT * FROM duckdb_columns()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_temporary_files()",
    "SELECT * FROM duckdb_memory()",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM pragma_database_list()",
    "SELECT current_setting('allowed_directories')",
    "SELECT current_setting('temp_directory')",
    "SELECT * FROM yellow WHERE current_setting('home_directory') IS NOT NULL",
    "SELECT getenv('HOME')",
    "SELECT getvariable('x')",
    "WITH s AS (SELECT current_setting('allowed_directories') AS d) SELECT * FROM s",
    "SELECT * FROM arrow_scan(1234, 5678, 9012)",
    "SELECT * FROM arrow_scan_dumb(1234, 5678, 9012)",
    "SELECT * FROM pandas_scan(1234)",
]


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    root = tmp_path_factory.mktemp("outside")
    (root / "secret.csv").write_text(f"token\n{SECRET}\n")
    pq.write_table(pa.table({"token": [SECRET]}), root / "secret.parquet")
    (root / "out").mkdir()
    return root


def attempts(outside, data_dir, bridge_cache):
    values = dict(secret=outside / "secret.csv", secret_parquet=outside / "secret.parquet", out=outside / "out",
                  data=data_dir, cache=bridge_cache, out_name="evil_table")
    return [a.format(**values) for a in ATTEMPTS]


def snapshot(*dirs):
    return {d: sorted(str(p) for p in d.rglob("*")) for d in dirs}


def test_every_escape_is_refused_over_flight_sql_and_tickets(bridge, data_dir, outside):
    assert len(ATTEMPTS) >= 40, "the issue asks for at least 40 attempts"
    before = snapshot(outside, data_dir)
    conn = flightsql.connect(f"grpc://{bridge.addr}")
    for sql in attempts(outside, data_dir, bridge.cache_dir):
        with conn.cursor() as cur:
            # ADBC's own error for a refusal: INVALID_ARGUMENT (ADBC status 3), not a lost connection.
            with pytest.raises(adbc_driver_manager.ProgrammingError) as adbc_err:
                cur.execute(sql)
                cur.fetchall()
            assert adbc_err.value.status_code == adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT, (sql, adbc_err.value)
        ticket = json.dumps({"query": "sql", "sql": sql}).encode()
        # A clear refusal (INVALID_ARGUMENT), not a crash, a lost connection or an internal error.
        with pytest.raises(pa.ArrowInvalid) as ticket_err:
            bridge.client.do_get(flight.Ticket(ticket)).read_all()
        for err in (adbc_err.value, ticket_err.value):
            assert SECRET not in str(err), sql
    conn.close()
    assert snapshot(outside, data_dir) == before, "a file appeared or disappeared"
    # The server is still healthy and still answers legitimate SQL.
    assert bridge.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"}).column("n")[0].as_py() > 0


def test_refusals_say_what_is_allowed(bridge, outside):
    def message(sql):
        with pytest.raises(pa.ArrowInvalid) as e:
            bridge.get({"query": "sql", "sql": sql})
        return str(e.value)
    assert "read_text() is not allowed" in message(f"SELECT * FROM read_text('{outside}/secret.csv')")
    assert "looks like a file path" in message(f"SELECT * FROM '{outside}/secret.parquet'")
    assert "read-only" in message(f"COPY (SELECT 1) TO '{outside}/out/x.csv'")
    assert "dataset name" in message("SELECT * FROM p90('bridge.files', NULL, NULL)")
    assert "not a dataset" in message("SELECT * FROM bridge.files") and "yellow" in message("SELECT * FROM bridge.files")
    assert "settings or environment" in message("SELECT current_setting('allowed_directories')")


def test_trailing_comments_still_work(bridge):
    """However user SQL is wrapped (LIMIT 0 for schemas, casts for portable types), a trailing
    line comment must not swallow the wrapper."""
    want = bridge.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py()
    for sql in ("SELECT count(*) AS n FROM yellow -- a comment", "SELECT count(*) AS n FROM yellow -- a comment\n",
                "SELECT count(*) AS n FROM yellow /* a block */", "SELECT count(*) AS n FROM yellow; -- done"):
        assert bridge.get({"query": "sql", "sql": sql})["n"][0].as_py() == want, sql
        info = bridge.client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"query": "sql", "sql": sql})))
        assert info.schema.names == ["n"], sql
    with flightsql.connect(f"grpc://{bridge.addr}") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM yellow -- a comment")
        assert cur.fetchall() == [(want,)]
