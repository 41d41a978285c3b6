"""`--cache-max-bytes`: with room for a fifth of the segments, queries over every month answer
exactly (references from DuckDB-Python and pyarrow over the same files), evicted files are built
again from their source, and once the queries end the local segments fit the bound again."""
import math
import threading

import duckdb
import pyarrow.parquet as pq

import reference
from conftest import Bridge, generate

MONTHS = [f"2024-{m:02d}" for m in range(1, 6)]


def segment_bytes(cache):
    return sum(p.stat().st_size for p in (cache / "segments").iterdir() if p.is_file())


def test_a_bound_at_20_percent_answers_exactly_under_queries_over_all_months(tmp_path):
    data = tmp_path / "data"
    generate(data, MONTHS, rows=60_000)
    files = sorted(data.glob("*.parquet"))
    # The segments' size, learnt from an unbounded run.
    full = tmp_path / "full"
    Bridge([f"yellow={data}/*.parquet"], full).stop()
    # A fifth of them, and never less than the largest one: the first file's segment is never
    # evicted (DuckDB binds the view with it), so no bound under its size can hold.
    sizes = {}
    for p in (full / "segments").iterdir():
        sizes[p.stem] = sizes.get(p.stem, 0) + p.stat().st_size
    bound = max(segment_bytes(full) // 5, max(sizes.values()))

    b = Bridge([f"yellow={data}/*.parquet"], tmp_path / "cache", extra=["--cache-max-bytes", str(bound)])
    try:
        seg = b.action("status", "yellow")["segments"]
        assert seg["max_bytes"] == bound and seg["segments"] == len(files)
        assert seg["bytes"] <= bound and seg["local_segments"] < len(files), seg

        thr, above = reference.p90(files)
        con = duckdb.connect()
        paths = ", ".join(f"'{f}'" for f in files)
        want_sum = con.execute(f"SELECT count(*), sum(total_amount) FROM read_parquet([{paths}])").fetchone()
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        frm, to = "2024-01-01", "2024-06-01"
        want_outliers = reference.key(reference.outliers(files, frm, to))
        failures = []

        def check(name, got, want):
            if got != want:
                failures.append(f"{name}: {str(got)[:200]} != {str(want)[:200]}")

        def p90_trips():
            t = b.get({"query": "p90", "dataset": "yellow"})
            check("p90 threshold", float(t.schema.metadata[b"bridge.p90.threshold"]), thr)
            check("p90 rows", reference.key(t), reference.key(above))

        def sql():
            t = b.get({"query": "sql", "sql": "SELECT count(*) AS n, sum(total_amount) AS s FROM yellow"})
            n, total = t["n"][0].as_py(), t["s"][0].as_py()
            # The sum of doubles depends on the order rows are added in: equal to 1e-12.
            check("sql", (n, math.isclose(total, want_sum[1], rel_tol=1e-12)), (want_sum[0], True))

        def scan():
            t = b.get({"query": "scan", "dataset": "yellow", "columns": ["trip_distance"]})
            check("scan", t.num_rows, rows)

        def outliers():
            t = b.get({"query": "outliers", "dataset": "yellow", "from": frm, "to": to})
            check("outliers", reference.key(t), want_outliers)

        def month(m):
            lo, hi = MONTHS[m], MONTHS[m + 1] if m + 1 < len(MONTHS) else "2024-06"
            frm_m, to_m = f"{lo}-01", f"{hi}-01"
            t = b.get({"query": "p90", "dataset": "yellow", "from": frm_m, "to": to_m, "output": "summary"})
            check(f"p90 {lo}", t["threshold"][0].as_py(), reference.p90(files, frm_m, to_m)[0])

        jobs = [p90_trips, sql, scan, outliers] + [lambda m=m: month(m) for m in range(len(MONTHS))]

        def worker(i):
            try:
                for j in range(len(jobs)):
                    jobs[(i + j) % len(jobs)]()
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                failures.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures

        seg = b.action("status", "yellow")["segments"]
        assert seg["evictions"] > 0 and seg["rebuilds"] > 0, seg
        # Pins are released when the queries end, and the tier is brought back within its bound.
        assert seg["bytes"] <= bound, seg
        assert segment_bytes(tmp_path / "cache") <= bound + max(
            p.stat().st_size for p in (tmp_path / "cache" / "segments").iterdir()
        ), "evicted files must leave the disk"
    finally:
        b.stop()
