"""The accelerated store survives restarts: segments are reused, missing ones rebuilt, answers equal."""
import pyarrow.parquet as pq

from conftest import Bridge

TICKETS = [
    {"query": "p90", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"},
    {"query": "outliers", "dataset": "yellow"},
    {"query": "scan", "dataset": "yellow", "from": "2024-02-03", "to": "2024-02-05"},
]


def answers(b):
    return [sorted(b.get(t).to_pylist(), key=repr) for t in TICKETS]


def segment_files(cache):
    return {p.name: p.stat().st_mtime_ns for p in (cache / "segments").iterdir()}


def test_restart_reuses_segments_and_rebuilds_missing_ones(data_dir, tmp_path):
    cache = tmp_path / "cache"
    b = Bridge([f"yellow={data_dir}/*.parquet"], cache)
    try:
        first = answers(b)
    finally:
        b.stop()
    files = segment_files(cache)
    assert len(files) == 2 * len(list(data_dir.glob("*.parquet")))  # .parquet + .keys per file

    b = Bridge([f"yellow={data_dir}/*.parquet"], cache)
    try:
        assert answers(b) == first
    finally:
        b.stop()
    assert segment_files(cache) == files, "a restart must reuse segments, not rewrite them"

    victim = sorted(files)[0]
    (cache / "segments" / victim).unlink()
    (cache / "segments" / "stale.parquet").write_bytes(b"left over by a crash")
    b = Bridge([f"yellow={data_dir}/*.parquet"], cache)
    try:
        assert answers(b) == first
    finally:
        b.stop()
    after = segment_files(cache)
    assert victim in after and "stale.parquet" not in after


def test_files_that_are_symlinks_elsewhere_are_read(files, tmp_path):
    """A dataset directory of symlinks to files elsewhere (DuckDB itself may only read under the
    dataset's directory): every file is ingested, none quarantined, answers exact."""
    links = tmp_path / "links"
    links.mkdir()
    for f in files:
        (links / f.name).symlink_to(f)
    b = Bridge([f"yellow={links}/*.parquet"], tmp_path / "cache")
    try:
        st = b.status()
        assert not st["quarantined"] and len(st["files"]) == len(files), st["quarantined"]
        want = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == want
        assert not list((tmp_path / "cache" / "objects").glob("*")), "the copies are removed after ingest"
    finally:
        b.stop()
