"""The accelerated store survives restarts: segments are reused, missing ones rebuilt, answers equal."""
from conftest import Bridge

TICKETS = [
    {"query": "p90", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"},
    {"query": "outliers", "dataset": "yellow"},
    {"query": "scan", "dataset": "yellow", "from": "2024-02-03", "to": "2024-02-05"},
]


def answers(b):
    return [sorted(b.get(t).to_pylist(), key=repr) for t in TICKETS]


def segment_files(cache):
    return {p.name: p.stat().st_mtime_ns for p in (cache / "store" / "segments").iterdir()}


def test_restart_reuses_segments_and_rebuilds_missing_ones(data_dir, tmp_path):
    cache = tmp_path / "cache"
    b = Bridge([f"yellow={data_dir}/*.parquet"], cache)
    try:
        first = answers(b)
    finally:
        b.stop()
    files = segment_files(cache)
    assert len(files) == 2 * len(list(data_dir.glob("*.parquet")))  # .arrow + .keys per file

    b = Bridge([f"yellow={data_dir}/*.parquet"], cache)
    try:
        assert answers(b) == first
    finally:
        b.stop()
    assert segment_files(cache) == files, "a restart must reuse segments, not rewrite them"

    victim = sorted(files)[0]
    (cache / "store" / "segments" / victim).unlink()
    (cache / "store" / "segments" / "stale.arrow").write_bytes(b"left over by a crash")
    b = Bridge([f"yellow={data_dir}/*.parquet"], cache)
    try:
        assert answers(b) == first
    finally:
        b.stop()
    after = segment_files(cache)
    assert victim in after and "stale.arrow" not in after
