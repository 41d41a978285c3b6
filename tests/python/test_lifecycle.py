"""A dataset's lifecycle: a changed glob, an interrupted load, answers while loading, a listing
that suddenly comes back empty, and leftover downloads. Expected values come from pyarrow's
reading of the same files."""
import json

import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

from conftest import Bridge, RefusingPort, generate, s3_args, s3_client, wait_until

PREFIX = "trips"


def rows_of(path):
    return pq.ParquetFile(path).metadata.num_rows


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("six"), [f"2024-{m:02d}" for m in range(1, 7)], rows=60_000)


def bucket(moto, name, files):
    s3 = s3_client(moto.endpoint)
    s3.create_bucket(Bucket=name)
    for f in files:
        s3.upload_file(str(f), name, f"{PREFIX}/{f.name}")
    return s3


def test_a_changed_glob_never_serves_the_old_locations_rows(six, tmp_path):
    cache = tmp_path / "cache"
    b = Bridge([f"yellow={six[0].parent}/*.parquet"], cache)
    try:
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == sum(map(rows_of, six))
    finally:
        b.stop()
    # Same name, same cache, a new location that cannot be reached.
    refusing = RefusingPort()
    unreachable = ["--s3-endpoint", refusing.endpoint, "--s3-allow-http", "--s3-region",
                   "us-east-1", "--s3-anonymous", "--s3-retry-timeout", "1s", "--s3-timeout", "1s"]
    b = Bridge(["yellow=s3://elsewhere/trips/*.parquet"], cache, unreachable)
    try:
        for ticket in ({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"},
                       {"query": "p90", "dataset": "yellow", "output": "summary"}):
            with pytest.raises(flight.FlightUnavailableError, match="no readable file yet"):
                b.get(ticket)
        assert b.status()["files"] == []
    finally:
        b.stop()
        refusing.sock.close()


def test_killed_while_loading_then_resumed_answers_exactly(moto, six, tmp_path):
    """kill -9 at several points of the load (mid-download, mid-ingest, after some files), then a
    restart on the same cache: exact answers, no leftover downloads, one segment per file."""
    bucket(moto, "killed", six)
    cache = tmp_path / "cache"
    args = [f"yellow=s3://killed/{PREFIX}/*.parquet"]
    for stop_after in (0, 1, 3):
        b = Bridge(args, cache, s3_args(moto.endpoint), env={"RUST_LOG": "info"}, loaded=False)
        if stop_after:
            for _ in range(stop_after):
                b.wait_for(r"bridge::catalog::refresh.*ingested")
        b.proc.kill()
        b.proc.wait()
    b = Bridge(args, cache, s3_args(moto.endpoint))
    try:
        st = b.status()
        assert sorted(f["key"].rsplit("/", 1)[1] for f in st["files"]) == sorted(f.name for f in six)
        assert not st["quarantined"] and not st["retrying"]
        total = sum(map(rows_of, six))
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == total
        assert b.get({"query": "scan", "dataset": "yellow", "columns": ["trip_distance"]}).num_rows == total
        assert not list((cache / "objects").glob("*")), "downloads must not be left behind"
        assert len(list((cache / "segments").glob("*.parquet"))) == len(six)
    finally:
        b.stop()


def test_answers_while_loading_are_consistent_and_newest_first(moto, six, tmp_path):
    s3 = bucket(moto, "loading", [])
    # Uploaded oldest first, so the newest month is also the newest object.
    for f in six:
        s3.upload_file(str(f), "loading", f"{PREFIX}/{f.name}")
    b = Bridge([f"yellow=s3://loading/{PREFIX}/*.parquet"], tmp_path / "cache", s3_args(moto.endpoint), loaded=False)
    newest_first = [rows_of(f) for f in reversed(six)]
    seen = {}
    try:
        client = flight.connect(f"grpc://{b.addr}")

        def answer():
            try:
                t = client.do_get(flight.Ticket(json.dumps(
                    {"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"}).encode())).read_all()
            except flight.FlightUnavailableError as e:
                assert "no readable file yet" in str(e), e
                return False
            md = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
            files, version = int(md["bridge.file_count.yellow"]), int(md["bridge.manifest_version.yellow"])
            # The answer is exactly the manifest it names, and that manifest is the newest files.
            assert t["n"][0].as_py() == int(md["bridge.row_count.yellow"]) == sum(newest_first[:files]), md
            seen[version] = files
            return files == len(six)

        wait_until(answer, b, timeout=120, what="every file loaded")
        assert len(seen) >= 2, f"expected answers from several versions while loading, saw {seen}"
        assert b.status()["progress"]["files_done"] == len(six)
    finally:
        b.stop()


def test_a_sudden_empty_listing_is_not_believed_at_once(moto, six, tmp_path):
    s3 = bucket(moto, "vanishing", six[:2])
    b = Bridge([f"yellow=s3://vanishing/{PREFIX}/*.parquet"], tmp_path / "cache",
               [*s3_args(moto.endpoint), "--refresh-interval", "60m"])
    try:
        assert len(b.status()["files"]) == 2
        for f in six[:2]:
            s3.delete_object(Bucket="vanishing", Key=f"{PREFIX}/{f.name}")
        for seen in (1, 2):
            b.action("refresh")
            st = b.status()
            assert len(st["files"]) == 2, f"listing {seen} removed the files"
            assert "matched no objects" in st["last_error"], st["last_error"]
        b.action("refresh")
        st = b.status()
        assert st["files"] == [] and st["last_error"] is None
    finally:
        b.stop()
