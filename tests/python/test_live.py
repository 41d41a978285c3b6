"""Live datasets on a real S3-compatible server (moto_server on loopback): new, replaced, deleted,
half-uploaded and broken objects, while clients query. Expected values come from pyarrow's own
reading of the same files, never from Bridge."""
import io
import json
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

import reference as ref
from conftest import Bridge, generate, s3_args, s3_client, start_moto, Signal, wait_until

PREFIX = "trips/yellow"


def rows_of(path):
    return pq.ParquetFile(path).metadata.num_rows


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    """Four generated months and their row counts (read by pyarrow)."""
    d = tmp_path_factory.mktemp("live")
    files = generate(d, ["2024-01", "2024-02", "2024-03", "2024-04"], rows=60_000)
    return files


def new_bucket(s3, name, files=()):
    s3.create_bucket(Bucket=name)
    for f in files:
        s3.upload_file(str(f), name, f"{PREFIX}/{f.name}")


def live_bridge(moto, bucket, tmp_path, extra=()):
    return Bridge([f"yellow=s3://{bucket}/{PREFIX}/*.parquet"], tmp_path / "cache",
                  [*s3_args(moto.endpoint), "--refresh-interval", "200ms", *extra])


def test_new_month_appears_within_2s_and_no_response_sees_part_of_a_file(moto, months, tmp_path):
    s3 = s3_client(moto.endpoint)
    new_bucket(s3, "arrivals", months[:2])
    counts = [rows_of(f) for f in months[:3]]
    allowed = {(2, counts[0] + counts[1]), (3, sum(counts))}  # (files, rows) of every possible manifest
    b = live_bridge(moto, "arrivals", tmp_path)
    seen, errors, stop = {}, [], threading.Event()
    first_with_3 = []
    answered = Signal()

    def client(kind):
        c = flight.connect(f"grpc://{b.addr}")
        if kind == "scan":
            ticket = {"query": "scan", "dataset": "yellow", "columns": ["trip_distance"]}
        else:
            ticket = {"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"}
        while not stop.is_set():
            try:
                t = c.do_get(flight.Ticket(json.dumps(ticket).encode())).read_all()
                md = {k.decode(): v.decode() for k, v in t.schema.metadata.items()}
                sfx = "" if kind == "scan" else ".yellow"
                version, files = int(md["bridge.manifest_version" + sfx]), int(md["bridge.file_count" + sfx])
                rows = t.num_rows if kind == "scan" else t["n"][0].as_py()
                if (files, rows) not in allowed:
                    errors.append(f"{kind}: v{version} has {files} files and {rows} rows; possible: {allowed}")
                if seen.setdefault(version, (files, rows)) != (files, rows):
                    errors.append(f"{kind}: v{version} answered {(files, rows)} and {seen[version]}")
                if files == 3 and not first_with_3:
                    first_with_3.append(time.monotonic())
            except Exception as e:  # noqa: BLE001 - every failure is a test failure, reported below
                errors.append(f"{kind}: {e!r}")
            answered.changed()

    threads = [threading.Thread(target=client, args=(k,)) for k in ["scan", "sql"] * 4]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(seen) > 0, answered, what="a first answer")
        s3.upload_file(str(months[2]), "arrivals", f"{PREFIX}/{months[2].name}")
        uploaded = time.monotonic()
        wait_until(lambda: first_with_3, answered, timeout=10, what="the new month in an answer")
        stop.set()
        for t in threads:
            t.join()
        latency = first_with_3[0] - uploaded
        print(f"\nnew month visible after {latency * 1000:.0f} ms; versions seen: {sorted(seen.items())}")
        assert not errors, errors[:5]
        assert latency < 2.0
    finally:
        stop.set()
        b.stop()


def test_multipart_upload_is_invisible_until_complete(moto, months, tmp_path_factory, tmp_path):
    big = generate(tmp_path_factory.mktemp("big"), ["2024-05"], rows=400_000)[0]
    data = big.read_bytes()
    assert len(data) > 6 * 2**20, "the first part must be a full 5 MiB S3 part"
    s3 = s3_client(moto.endpoint)
    new_bucket(s3, "multipart", months[:1])
    b = live_bridge(moto, "multipart", tmp_path)
    try:
        key = f"{PREFIX}/{big.name}"
        up = s3.create_multipart_upload(Bucket="multipart", Key=key)
        p1 = s3.upload_part(Bucket="multipart", Key=key, UploadId=up["UploadId"], PartNumber=1, Body=data[:5 * 2**20])
        before = b.action("refresh", "yellow")["versions"]["yellow"]
        st = b.status()
        assert [f["key"] for f in st["files"]] == [f"{PREFIX}/{months[0].name}"] and not st["quarantined"]
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == rows_of(months[0])
        p2 = s3.upload_part(Bucket="multipart", Key=key, UploadId=up["UploadId"], PartNumber=2, Body=data[5 * 2**20:])
        parts = [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]
        s3.complete_multipart_upload(Bucket="multipart", Key=key, UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": parts})
        after = b.action("refresh", "yellow")["versions"]["yellow"]
        assert after == before + 1
        n = b.get({"query": "scan", "dataset": "yellow", "columns": ["trip_distance"], "min_version": after}).num_rows
        assert n == rows_of(months[0]) + rows_of(big)
    finally:
        b.stop()


def test_replace_and_delete_each_take_one_version_step(moto, months, tmp_path):
    s3 = s3_client(moto.endpoint)
    new_bucket(s3, "replace", months[:2])
    b = live_bridge(moto, "replace", tmp_path, ["--dataset-refresh", "yellow=1m"])  # refreshes come from the test
    key = f"{PREFIX}/{months[1].name}"
    january = ("2024-01-01", "2024-02-01")
    try:
        v1 = b.action("refresh")["versions"]["yellow"]
        jan = ref.in_range(ref.read(months[:2]), *january).num_rows
        assert b.get({"query": "scan", "dataset": "yellow", "from": january[0], "to": january[1]}).num_rows == jan
        # Replace February's object with March's rows: one step, never a mix of the two.
        s3.upload_file(str(months[2]), "replace", key)
        v2 = b.action("refresh")["versions"]["yellow"]
        assert v2 == v1 + 1
        got = b.get({"query": "scan", "dataset": "yellow", "columns": ["tpep_pickup_datetime"], "min_version": v2})
        months_seen = {t.strftime("%Y-%m") for t in got["tpep_pickup_datetime"].drop_null().to_pylist()}
        assert got.num_rows == rows_of(months[0]) + rows_of(months[2])
        assert "2024-03" in months_seen and int(got.schema.metadata[b"bridge.manifest_version"]) == v2
        feb = ref.in_range(ref.read([months[0], months[2]]), "2024-02-10", "2024-02-20").num_rows
        assert b.get({"query": "scan", "dataset": "yellow", "from": "2024-02-10", "to": "2024-02-20"}).num_rows == feb
        etag = s3.head_object(Bucket="replace", Key=key)["ETag"].strip('"')
        assert {f["key"]: f["etag"].strip('"') for f in b.status()["files"]}[key] == etag
        # Delete it: it leaves in one step.
        s3.delete_object(Bucket="replace", Key=key)
        v3 = b.action("refresh")["versions"]["yellow"]
        assert v3 == v2 + 1
        got = b.get({"query": "scan", "dataset": "yellow", "columns": ["trip_distance"]})
        assert got.num_rows == rows_of(months[0]) and int(got.schema.metadata[b"bridge.file_count"]) == 1
        jan = ref.in_range(ref.read(months[:1]), *january).num_rows
        assert b.get({"query": "scan", "dataset": "yellow", "from": january[0], "to": january[1]}).num_rows == jan
    finally:
        b.stop()


def test_broken_objects_are_quarantined_and_the_rest_keeps_serving(moto, months, tmp_path):
    s3 = s3_client(moto.endpoint)
    new_bucket(s3, "broken", months[:2])
    data = months[2].read_bytes()
    s3.put_object(Bucket="broken", Key=f"{PREFIX}/truncated.parquet", Body=data[: len(data) // 2])
    s3.put_object(Bucket="broken", Key=f"{PREFIX}/notes.parquet", Body=b"this is not a parquet file\n" * 100)
    # Readable, but irreconcilable: trip_distance as text. Reported, never silently cast.
    conflict = io.BytesIO()
    pq.write_table(pa.table({"tpep_pickup_datetime": pa.array([0], pa.timestamp("us")), "trip_distance": ["far"]}),
                   conflict)
    s3.put_object(Bucket="broken", Key=f"{PREFIX}/zz_conflict.parquet", Body=conflict.getvalue())
    b = live_bridge(moto, "broken", tmp_path)
    try:
        st = b.status()
        reasons = {q["key"].rsplit("/", 1)[1]: q["reason"] for q in st["quarantined"]}
        assert set(reasons) == {"truncated.parquet", "notes.parquet", "zz_conflict.parquet"}, st
        assert all(r for r in reasons.values())
        assert "trip_distance" in reasons["zz_conflict.parquet"], reasons
        assert len(st["files"]) == 2
        got = b.get({"query": "p90", "dataset": "yellow", "output": "summary"})
        assert got["trips_in_range"][0].as_py() == rows_of(months[0]) + rows_of(months[1])
        # A quarantined object is retried when it changes: fix it and it joins.
        s3.upload_file(str(months[2]), "broken", f"{PREFIX}/truncated.parquet")
        b.action("refresh")
        st = b.status()
        assert [q["key"] for q in st["quarantined"]] == [f"{PREFIX}/notes.parquet", f"{PREFIX}/zz_conflict.parquet"]
        assert sum(f["rows"] for f in st["files"]) == sum(rows_of(f) for f in months[:3])
    finally:
        b.stop()


def test_tlc_drift_across_years_serves_together(moto, tmp_path_factory, tmp_path):
    files = generate(tmp_path_factory.mktemp("drift"), ["2023-06", "2024-06", "2025-06"], rows=20_000)
    schemas = {f.name: pq.read_schema(f) for f in files}
    assert "airport_fee" in schemas[files[0].name].names and "Airport_fee" in schemas[files[1].name].names
    assert schemas[files[0].name].field("PULocationID").type == pa.int64()
    assert schemas[files[1].name].field("PULocationID").type == pa.int32()
    s3 = s3_client(moto.endpoint)
    new_bucket(s3, "drift", files)
    b = live_bridge(moto, "drift", tmp_path)
    try:
        fees = 0
        for f in files:
            t = pq.read_table(f)
            name = "airport_fee" if "airport_fee" in t.column_names else "Airport_fee"
            fees += t[name].length() - t[name].null_count
        cbd = pq.read_table(files[2], columns=["cbd_congestion_fee"])["cbd_congestion_fee"]
        assert all("cbd_congestion_fee" not in schemas[f.name].names for f in files[:2])
        got = b.get({"query": "sql", "sql": "SELECT count(airport_fee) AS fees, count(cbd_congestion_fee) AS cbd, "
                     "count(*) AS n FROM yellow"}).to_pylist()[0]
        # Both fee spellings count; the 2025 column holds exactly the 2025 file's values (NULL elsewhere).
        assert got == {"fees": fees, "cbd": len(cbd) - cbd.null_count, "n": sum(rows_of(f) for f in files)}
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"})["trips_in_range"][0].as_py() == got["n"]
    finally:
        b.stop()


def test_store_outage_keeps_serving_and_the_watcher_recovers(months, tmp_path):
    moto = start_moto()
    port = int(moto.endpoint.rsplit(":", 1)[1])
    s3 = s3_client(moto.endpoint)
    new_bucket(s3, "outage", months[:2])
    b = live_bridge(moto, "outage", tmp_path)
    try:
        want = b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).to_pylist()
        version = b.status()["manifest_version"]
        moto.stop()
        st = wait_until(lambda: (s := b.status())["last_error"] and s, b, what="status to report the outage")
        print(f"\nstatus during the outage: {st['last_error'][:200]}")
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).to_pylist() == want
        with pytest.raises(flight.FlightUnavailableError):
            b.action("refresh")
        # The same endpoint comes back, empty as a restarted moto is; its objects are uploaded again.
        moto = start_moto(port)
        new_bucket(s3_client(moto.endpoint), "outage", months[:2])
        st = wait_until(lambda: (s := b.status())["last_error"] is None and len(s["files"]) == 2 and s, b, timeout=60,
                        what="the watcher to recover")
        assert st["manifest_version"] >= version
        assert b.get({"query": "p90", "dataset": "yellow", "output": "summary"}).to_pylist() == want
    finally:
        b.stop()
        moto.stop()


def test_min_version_waits_then_fails_clearly(moto, months, tmp_path):
    s3 = s3_client(moto.endpoint)
    new_bucket(s3, "minversion", months[:1])
    b = live_bridge(moto, "minversion", tmp_path, ["--min-version-wait", "1s"])
    try:
        v = b.status()["manifest_version"]
        t = b.get({"query": "p90", "dataset": "yellow", "output": "summary", "min_version": v})
        assert int(t.schema.metadata[b"bridge.manifest_version"]) >= v
        start = time.monotonic()
        with pytest.raises(flight.FlightUnavailableError, match="not yet"):
            b.get({"query": "scan", "dataset": "yellow", "min_version": v + 100})
        assert time.monotonic() - start < 5
        actions = {a.type for a in b.client.list_actions()}
        assert actions == {"refresh", "status", "CancelFlightInfo", "CreatePreparedStatement", "ClosePreparedStatement"}
        with pytest.raises(pa.ArrowKeyError, match="unknown dataset"):
            b.action("status", "nope")
    finally:
        b.stop()
