"""The same answers when the dataset lives on an S3-compatible server (moto_server on loopback)."""
import math

import boto3
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import reference as ref
from conftest import Bridge, RefusingPort


@pytest.fixture(scope="module")
def bucket(moto, files):
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="tlc")
    for f in files:
        # Public-read, as a public bucket is: the anonymous test reads it unsigned.
        s3.upload_file(str(f), "tlc", f"trips/yellow/{f.name}", ExtraArgs={"ACL": "public-read"})
    s3.put_object(Bucket="tlc", Key="trips/yellow/README.txt", Body=b"not parquet, not matched by the glob")
    s3.put_object(Bucket="tlc", Key="trips/other/yellow_tripdata_2020-01.parquet", Body=b"outside the glob")
    return "s3://tlc/trips/yellow/*.parquet"


@pytest.mark.parametrize("access", ["keyed", "anonymous"])
def test_s3_dataset_answers_like_local(moto, bucket, files, tmp_path, access):
    creds = ["--s3-access-key-id", "testing", "--s3-secret-access-key", "testing"] if access == "keyed" else ["--s3-anonymous"]
    b = Bridge([f"yellow={bucket}"], tmp_path / "cache",
               ["--s3-endpoint", moto.endpoint, "--s3-allow-http", "--s3-region", "us-east-1", *creds])
    try:
        infos = [i for i in b.client.list_flights() if i.descriptor.path == [b"yellow"]]
        assert infos, "".join(b.log)
        info = infos[0]
        assert json_meta(info)["files"] == len(files)
        got = b.get({"query": "p90", "dataset": "yellow", "from": "2024-02-01", "to": "2024-03-01"})
        thr, want = ref.p90(files, "2024-02-01", "2024-03-01")
        assert ref.key(got) == ref.key(want)
        # DuckDB versions may differ in the last bit of the interpolation; the trip set above is exact.
        assert math.isclose(float(got.schema.metadata[b"bridge.p90.threshold"]), thr, rel_tol=1e-12)
        got = b.get({"query": "outliers", "dataset": "yellow", "from": "2024-01-01", "to": "2024-02-01"})
        want = ref.outliers(files, "2024-01-01", "2024-02-01")
        cols = ("tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance", "reason")
        assert ref.key(got, cols) == ref.key(want, cols)
        # Downloaded copies are removed once ingested: the cache holds the store, not the objects.
        assert not list((tmp_path / "cache" / "objects").glob("*.parquet"))
    finally:
        b.stop()


def json_meta(info):
    import json
    return json.loads(info.app_metadata)


def test_unreachable_store_is_unavailable(tmp_path):
    with RefusingPort() as refusing:  # connections are refused for the whole test
        b = Bridge(["yellow=s3://tlc/trips/*.parquet"], tmp_path / "cache",
                   ["--s3-endpoint", refusing.endpoint, "--s3-allow-http", "--s3-region", "us-east-1", "--s3-anonymous"])
        try:
            with pytest.raises(flight.FlightUnavailableError, match="unavailable"):
                b.get({"query": "p90", "dataset": "yellow"})
        finally:
            b.stop()


def test_standard_aws_variables_configure_the_store(moto, bucket, files, tmp_path):
    """No --s3-* flag at all: object_store's and the AWS tools' own variables are honoured."""
    env = {"AWS_ENDPOINT_URL": moto.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "token"}
    b = Bridge([f"yellow={bucket}"], tmp_path / "cache", env=env)
    try:
        st = b.status()
        assert len(st["files"]) == len(files) and st["last_error"] is None, st
        want = sum(pa.parquet.ParquetFile(f).metadata.num_rows for f in files)
        assert b.get({"query": "sql", "sql": "SELECT count(*) AS n FROM yellow"})["n"][0].as_py() == want
    finally:
        b.stop()
