"""Independent answers over the same Parquet files: DuckDB-Python 2.x and pyarrow compute."""
import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def read(files, columns=("tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance")):
    """The files' rows (`columns`, or all of them when None)."""
    return pa.concat_tables(pq.read_table(f, columns=list(columns) if columns else None) for f in files)


def p90(files, frm=None, to=None, q=0.9):
    """(threshold, table of trips above it) with DuckDB-Python over the raw files."""
    con = duckdb.connect()
    paths = ", ".join(f"'{f}'" for f in files)
    where = " AND ".join(
        [f"tpep_pickup_datetime >= TIMESTAMP '{frm}'"] * bool(frm) + [f"tpep_pickup_datetime < TIMESTAMP '{to}'"] * bool(to)
    ) or "TRUE"
    src = f"(SELECT tpep_pickup_datetime, tpep_dropoff_datetime, trip_distance FROM read_parquet([{paths}], union_by_name=true) WHERE {where})"
    thr = con.execute(f"SELECT quantile_cont(trip_distance, {q}) FROM {src}").fetchall()[0][0]
    rows = con.sql(f"SELECT * FROM {src} WHERE trip_distance > {thr!r}").to_arrow_table()
    return thr, rows


def in_range(t, frm, to):
    """Rows of `t` picked up in [frm, to), naive ISO-8601 bounds."""
    frm, to = (datetime.datetime.fromisoformat(x) for x in (frm, to))
    col = t["tpep_pickup_datetime"]
    return t.filter(pc.and_(pc.greater_equal(col, pa.scalar(frm, pa.timestamp("us"))),
                            pc.less(col, pa.scalar(to, pa.timestamp("us")))))


def outliers(files, frm, to, columns=("tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance")):
    """The physics rule in pyarrow compute; returns the table (`columns`, all when None) with a
    `reason` column."""
    t = read(files, columns)
    frm, to = (datetime.datetime.fromisoformat(x) for x in (frm, to))
    in_range = pc.and_(pc.greater_equal(t["tpep_pickup_datetime"], pa.scalar(frm, pa.timestamp("us"))),
                       pc.less(t["tpep_pickup_datetime"], pa.scalar(to, pa.timestamp("us"))))
    t = t.filter(in_range)
    us = pc.subtract(t["tpep_dropoff_datetime"].cast(pa.int64()), t["tpep_pickup_datetime"].cast(pa.int64()))
    hours = pc.divide(us.cast(pa.float64()), 3.6e9)
    d = t["trip_distance"]
    speed = pc.if_else(pc.greater(hours, 0), pc.divide(d, hours), pa.scalar(None, pa.float64()))
    bad_dur = pc.invert(pc.and_(pc.greater(hours, 0), pc.less_equal(hours, 10)))
    bad_speed = pc.fill_null(pc.invert(pc.and_(pc.greater_equal(speed, 2.5), pc.less_equal(speed, 80))), True)
    bad_dist = pc.fill_null(pc.invert(pc.and_(pc.greater_equal(d, 0.1), pc.less_equal(d, 800))), True)
    reason = pc.case_when(pc.make_struct(bad_dur, bad_speed, bad_dist), "duration", "speed", "distance")
    t = t.append_column("reason", reason)
    return t.filter(pc.is_valid(reason))


def key(table, cols=("tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance")):
    """Rows as a sorted list of tuples, for set comparison."""
    return sorted(zip(*(table[c].to_pylist() for c in cols)))
