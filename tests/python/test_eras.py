"""The three layouts of the real TLC bucket (2009, 2010, 2011 on) served as one dataset.

The reference reads each era's own columns with DuckDB-Python (parsing 2009/2010 text times
itself) and computes the exact percentile, the trips above it and the physics-rule outliers per
era and over everything. Bridge must agree whatever order the files arrive in, with no file
quarantined."""
import os
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from conftest import Bridge, generate

ERAS = {"2009-06": "2009", "2010-06": "2010", "2024-06": "modern"}
ROWS = 40_000


def canonical(path):
    """SQL reading one file's pickup, dropoff and distance by its own era's names (reference)."""
    names = {n.lower() for n in pq.read_schema(path).names}
    if "trip_pickup_datetime" in names:
        pu, do, d = ("strptime(Trip_Pickup_DateTime, '%Y-%m-%d %H:%M:%S')",
                     "strptime(Trip_Dropoff_DateTime, '%Y-%m-%d %H:%M:%S')", "Trip_Distance")
        pay = "CASE Payment_Type WHEN 'Credit' THEN 1 WHEN 'CASH' THEN 2 WHEN 'Cash' THEN 2 WHEN 'No Charge' THEN 3 WHEN 'Dispute' THEN 4 END"
    elif "pickup_datetime" in names:
        pu, do, d = "strptime(pickup_datetime, '%Y-%m-%d %H:%M:%S')", "strptime(dropoff_datetime, '%Y-%m-%d %H:%M:%S')", "trip_distance"
        pay = "CASE payment_type WHEN 'CRD' THEN 1 WHEN 'CSH' THEN 2 WHEN 'NOC' THEN 3 WHEN 'DIS' THEN 4 WHEN 'UNK' THEN 5 END"
    else:
        pu, do, d, pay = "tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance", "payment_type"
    return f"SELECT {pu} AS pu, {do} AS dr, CAST({d} AS DOUBLE) AS d, {pay} AS pay FROM read_parquet('{path}')"


def reference(files, frm=None, to=None):
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS " + " UNION ALL ".join(canonical(f) for f in files))
    where = " AND ".join([f"pu >= TIMESTAMP '{frm}'"] * bool(frm) + [f"pu < TIMESTAMP '{to}'"] * bool(to)) or "TRUE"
    thr, n = con.execute(f"SELECT quantile_cont(d, 0.9), count(d) FROM t WHERE {where}").fetchone()
    above = con.execute(f"SELECT count(*) FROM t WHERE {where} AND d > ?", [thr]).fetchone()[0]
    outliers = con.execute(f"""
        WITH h AS (SELECT *, date_diff('microsecond', pu, dr) / 3.6e9 AS hours FROM t WHERE {where}),
             s AS (SELECT *, CASE WHEN hours > 0 THEN d / hours END AS mph FROM h)
        SELECT count(*) FROM s WHERE NOT coalesce(hours > 0 AND hours <= 10, false)
            OR NOT coalesce(mph >= 2.5 AND mph <= 80, false) OR NOT coalesce(d >= 0.1 AND d <= 800, false)
    """).fetchone()[0]
    cash = con.execute(f"SELECT count(*) FROM t WHERE {where} AND pay = 2").fetchone()[0]
    return {"threshold": thr, "in_range": n, "above": above, "outliers": outliers, "cash": cash}


@pytest.fixture(scope="module")
def era_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("eras")
    return generate(d, list(ERAS), rows=ROWS)


def test_generated_files_have_each_eras_layout(era_files):
    by_year = {f.name[16:20]: pq.read_schema(f) for f in era_files}
    assert by_year["2009"].field("Trip_Pickup_DateTime").type == "string"
    assert {"vendor_name", "Start_Lon", "Payment_Type", "Fare_Amt", "surcharge", "Total_Amt"} <= set(by_year["2009"].names)
    assert by_year["2010"].field("pickup_datetime").type == "string"
    assert {"vendor_id", "pickup_longitude", "rate_code", "fare_amount", "surcharge"} <= set(by_year["2010"].names)
    assert "tpep_pickup_datetime" in by_year["2024"].names and "Trip_Pickup_DateTime" not in by_year["2024"].names
    payments = set(pq.read_table(era_files[0], columns=["Payment_Type"])["Payment_Type"].to_pylist())
    assert {"Credit", "CASH", "Cash", "No Charge", "Dispute"} <= payments


def ordered_copy(files, dest, order):
    """Copies `files` into `dest` with modification times that make Bridge ingest them in
    `order` (it ingests newest first)."""
    dest.mkdir()
    for rank, i in enumerate(order):
        target = dest / files[i].name
        shutil.copy(files[i], target)
        t = 2_000_000_000 - rank * 1000
        os.utime(target, (t, t))
    return dest


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_every_era_answers_exactly_in_any_ingest_order(era_files, tmp_path, order):
    data = ordered_copy(era_files, tmp_path / "data", order)
    b = Bridge([f"yellow={data}/*.parquet"], tmp_path / "cache")
    try:
        st = b.status()
        assert not st["quarantined"], st["quarantined"]
        assert len(st["files"]) == 3
        types = {c["name"]: c["type"] for c in st["columns"]}
        assert types["tpep_pickup_datetime"] == "TIMESTAMP" and types["payment_type"] == "BIGINT", types
        assert types["VendorID"] == "BIGINT" and types["trip_distance"] == "DOUBLE"
        for month, era in [*ERAS.items(), (None, "all")]:
            frm, to = (f"{month}-01", f"{month[:5]}{int(month[5:]) + 1:02d}-01") if month else (None, None)
            want = reference(era_files, frm, to)
            ticket = {"query": "p90", "dataset": "yellow", "output": "summary"}
            if month:
                ticket.update({"from": frm, "to": to})
            got = b.get(ticket).to_pylist()[0]
            assert got["threshold"] == pytest.approx(want["threshold"], rel=0, abs=1e-12), era
            assert (got["trips_in_range"], got["trips_above"]) == (want["in_range"], want["above"]), era
            out = {"query": "outliers", "dataset": "yellow"}
            if month:
                out.update({"from": frm, "to": to})
            assert b.get(out).num_rows == want["outliers"], era
            where = f"WHERE tpep_pickup_datetime >= '{frm}' AND tpep_pickup_datetime < '{to}'" if month else ""
            cash = b.get({"query": "sql", "sql": f"SELECT count(*) AS n FROM yellow {where} "
                          f"{'AND' if month else 'WHERE'} payment_type = 2"})["n"][0].as_py()
            assert cash == want["cash"], era
        # Coordinates and zones are separate facts: old trips have coordinates, new ones zones.
        got = b.get({"query": "sql", "sql": "SELECT year(tpep_pickup_datetime) >= 2011 AS modern, "
                     "count(pickup_longitude) AS coords, count(PULocationID) AS zones FROM yellow "
                     "WHERE year(tpep_pickup_datetime) IN (2009, 2010, 2024) GROUP BY 1 ORDER BY 1"}).to_pylist()
        assert got[0]["coords"] > 0 and got[0]["zones"] == 0 and got[1]["coords"] == 0 and got[1]["zones"] > 0
    finally:
        b.stop()


def test_column_alias_makes_another_layout_tlc_shaped(era_files, tmp_path):
    """A green-taxi-like file (lpep_* names) becomes TLC-shaped through --column-alias."""
    t = pq.read_table(era_files[2]).rename_columns(
        [{"tpep_pickup_datetime": "lpep_pickup_datetime", "tpep_dropoff_datetime": "lpep_dropoff_datetime"}.get(n, n)
         for n in pq.read_schema(era_files[2]).names])
    (tmp_path / "green").mkdir()
    pq.write_table(t, tmp_path / "green" / "green.parquet")
    b = Bridge([f"green={tmp_path / 'green'}/*.parquet"], tmp_path / "cache",
               ["--column-alias", "green.lpep_pickup_datetime=tpep_pickup_datetime",
                "--column-alias", "green.LPEP_DROPOFF_DATETIME=tpep_dropoff_datetime"])
    try:
        want = reference([era_files[2]])
        got = b.get({"query": "p90", "dataset": "green", "output": "summary"}).to_pylist()[0]
        assert (got["threshold"], got["trips_above"]) == (want["threshold"], want["above"])
    finally:
        b.stop()
