"""Replicas that act as one, on real network hosts: three Bridge replicas, each in its own Linux
network namespace whose link is capped at 300 Mbit/s with `tc tbf`, over one moto S3 bucket
served from the host; the clients (ADBC, pyarrow) run on the host. Needs root (`ip netns`, `tc`);
run it with `make test-replicas` (CI runs it after `make test`).

Every address is inside what the test creates: a bridge device on the host (10.214.N.1, where
moto listens on a port the OS picks) and one namespace per replica (10.214.N.11-13). Each replica
listens on port 50051 of its own namespace's address, as replicas do on their own hosts: the
namespace is new and private, so nothing else can hold that port, and every replica can name the
others in --peers before any of them starts. Everything is removed when the module ends, even on
failure.
"""
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as adbc
import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from conftest import BIN, Service, generate, s3_args, s3_client, wait_until  # noqa: E402
import reference  # noqa: E402

TAG = os.getpid() % 100_000
NET = f"10.214.{TAG % 200 + 20}"
HOST = f"{NET}.1"
PORT = 50051
MBIT = 300
REPLICAS = 3
MONTHS = [f"2024-{m:02}" for m in range(1, 13)]
ROWS = int(os.environ.get("REPLICA_ROWS", "100000"))
YEAR = ("2024-01-01", "2025-01-01")
USER, PASSWORD = "analyst", "s3cret-password"
REFRESH_S = 1.0
RATIO_BOUND = float(os.environ.get("REPLICA_RATIO_BOUND", "0.4"))
SCAN_SQL = (f"SELECT * FROM yellow WHERE tpep_pickup_datetime >= '{YEAR[0]}' "
            f"AND tpep_pickup_datetime < '{YEAR[1]}'")

if os.geteuid() != 0:
    pytest.skip("the replica tests make network namespaces: run them as root", allow_module_level=True)


def sh(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")


def ns_name(i):
    return f"bridge-rep-{TAG}-{i}"


@contextlib.contextmanager
def network():
    """A host bridge and one capped namespace per replica; all removed on exit."""
    bridge = f"bb{TAG}"
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{HOST}/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i in range(1, REPLICAS + 1):
            ns, host_end, ns_end = ns_name(i), f"vb{TAG}{i}", f"vn{TAG}{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            sh("ip", "link", "set", ns_end, "netns", ns)
            sh("ip", "link", "set", host_end, "master", bridge)
            sh("ip", "link", "set", host_end, "up")
            inside = ["ip", "netns", "exec", ns]
            sh(*inside, "ip", "addr", "add", f"{NET}.{10 + i}/24", "dev", ns_end)
            sh(*inside, "ip", "link", "set", ns_end, "up")
            sh(*inside, "ip", "link", "set", "lo", "up")
            # What the replica sends (its answers) leaves through this cap.
            sh(*inside, "tc", "qdisc", "add", "dev", ns_end, "root", "tbf", "rate", f"{MBIT}mbit",
               "burst", "256kb", "latency", "50ms")
        yield
    finally:
        for i in range(1, REPLICAS + 1):
            subprocess.run(["ip", "link", "del", f"vb{TAG}{i}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns_name(i)], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


def address(i):
    return f"{NET}.{10 + i}:{PORT}"


class Replica(Service):
    """Bridge inside namespace `i`, on `port` of that namespace's address."""

    def __init__(self, i, cache_dir, common, peers=(), port=PORT):
        self.address = f"{NET}.{10 + i}:{port}"
        args = ["ip", "netns", "exec", ns_name(i), BIN, "--listen", self.address,
                "--admin-listen", f"{NET}.{10 + i}:0", "--cache-dir", str(cache_dir), *common]
        if peers:
            args += ["--advertise", self.address, "--peers", ",".join(peers), "--peers-refresh", f"{REFRESH_S}s"]
        super().__init__(args, env={"RUST_LOG": "info"})
        self.admin = "http://" + self.wait_for(r"admin \(metrics, health\) on http://([0-9.]+:[0-9]+)").group(1)
        self.wait_for(r"has loaded every dataset")

    def metric(self, name, labels=""):
        text = urllib.request.urlopen(f"{self.admin}/metrics", timeout=10).read().decode()
        return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*{labels}[^}}]*\}} (\S+)", text, re.M))

    def current(self):
        with urllib.request.urlopen(f"{self.admin}/changes", timeout=40) as r:
            return json.loads(r.read())["seq"]

    def next_change(self, after, timeout):
        url = f"{self.admin}/changes?after={after}&wait_ms={int(min(timeout, 30) * 1000) + 1}"
        urllib.request.urlopen(url, timeout=40).read()


class Client:
    """pyarrow on the host, logged in once; follows an endpoint's locations in order."""

    def __init__(self, addr):
        self.conn = flight.connect(f"grpc://{addr}")
        self.header = self.conn.authenticate_basic_token(USER, PASSWORD)
        self.options = flight.FlightCallOptions(headers=[self.header])

    def info(self, ticket):
        desc = flight.FlightDescriptor.for_command(json.dumps(ticket).encode())
        return self.conn.get_flight_info(desc, self.options)

    def fetch(self, endpoint, tried=None):
        for loc in endpoint.locations:
            uri = loc.uri.decode() if isinstance(loc.uri, bytes) else str(loc.uri)
            try:
                return flight.connect(uri).do_get(endpoint.ticket, self.options).read_all()
            except (flight.FlightUnavailableError, flight.FlightTimedOutError):
                if tried is not None:
                    tried.append(uri)
        raise AssertionError(f"no location of the endpoint answered: {endpoint.locations}")


def owners(info):
    return [str(e.locations[0].uri.decode() if isinstance(e.locations[0].uri, bytes) else e.locations[0].uri)
            for e in info.endpoints]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("yellow")
    files = generate(data, MONTHS, ROWS)
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "users").write_text(f"{USER}:{PASSWORD}\n")
    (secrets / "jwt").write_text("one key that every replica shares, 32+ bytes\n")
    started = []
    with network():
        moto = Service([str(Path(sys.executable).parent / "moto_server"), "-H", HOST, "-p", "0"])
        started.append(moto)
        endpoint = "http://" + moto.wait_for(rf"Running on http://({re.escape(HOST)}:\d+)").group(1)
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket="tlc")
        for f in files:
            s3.upload_file(str(f), "tlc", f"yellow/{f.name}")
        common = ["--dataset", "yellow=s3://tlc/yellow/*.parquet", *s3_args(endpoint),
                  "--basic-users-file", str(secrets / "users"), "--jwt-secret-file", str(secrets / "jwt"),
                  "--duckdb-memory-limit", "1GB", "--duckdb-threads", "1"]
        caches = tmp_path_factory.mktemp("caches")
        try:
            peers = [address(i) for i in range(1, REPLICAS + 1)]
            replicas = []
            for i in range(1, REPLICAS + 1):
                replicas.append(Replica(i, caches / f"r{i}", common, peers))
                started.append(replicas[-1])
            # One replica alone, behind the same cap (namespace 1), for the baseline.
            alone = Replica(1, caches / "alone", common, port=PORT + 1)
            started.append(alone)
            r1 = replicas[0]
            wait_until(lambda: sum(m["alive"] for m in status(r1)["members"]) == REPLICAS, r1,
                       what="every replica alive in replica 1's view")
            yield {"replicas": replicas, "alone": alone, "files": files}
        finally:
            for s in reversed(started):
                s.stop()


def status(replica):
    c = Client(replica.address)
    return json.loads(next(iter(c.conn.do_action(flight.Action("status", b""), c.options))).body.to_pybytes())["cluster"]


def checksum(con, table_sql):
    """Count and an order-independent checksum of the rows, computed by DuckDB-Python."""
    return con.execute(
        f"SELECT count(*), sum(hash(tpep_pickup_datetime::TIMESTAMP, tpep_dropoff_datetime::TIMESTAMP, "
        f"trip_distance::DOUBLE, total_amount::DOUBLE, PULocationID::BIGINT, DOLocationID::BIGINT)) FROM {table_sql}"
    ).fetchall()[0]


def adbc_scan(addr):
    with adbc.connect(f"grpc://{addr}", db_kwargs={"username": USER, "password": PASSWORD}) as conn:
        with conn.cursor() as cur:
            start = time.perf_counter()
            cur.execute(SCAN_SQL)
            table = cur.fetch_arrow_table()
            return time.perf_counter() - start, table


def test_a_year_scan_through_three_replicas_is_faster_and_identical(cluster):
    replicas, alone = cluster["replicas"], cluster["alone"]
    sent_before = [r.metric("bridge_rows_sent_total", 'kind="scan"') for r in replicas]
    three = [adbc_scan(replicas[0].address) for _ in range(3)]
    sent = [r.metric("bridge_rows_sent_total", 'kind="scan"') - b for r, b in zip(replicas, sent_before)]
    one = [adbc_scan(alone.address) for _ in range(3)]
    t3, t1 = statistics.median(t for t, _ in three), statistics.median(t for t, _ in one)
    print(f"\nrows each replica served: {sent}")
    print(f"\nyear scan through ADBC, {MBIT} Mbit/s per replica: one replica {t1:.2f} s, "
          f"three {t3:.2f} s, ratio {t3 / t1:.2f} (medians of 3)")
    con = duckdb.connect()
    paths = ", ".join(f"'{f}'" for f in cluster["files"])
    expected = checksum(con, f"read_parquet([{paths}]) WHERE tpep_pickup_datetime >= TIMESTAMP '{YEAR[0]}' "
                             f"AND tpep_pickup_datetime < TIMESTAMP '{YEAR[1]}'")
    for _, table in three + one:
        con.register("got", table)
        assert checksum(con, "got") == expected
    # Every replica served its share (about a third each; at least a fifth).
    total = sum(sent)
    assert total == 3 * expected[0], sent
    assert all(s >= total / 5 for s in sent), f"rows served per replica: {sent}"
    # What the issue asks; medians here measure 0.36 (see the README).
    assert t3 <= RATIO_BOUND * t1, f"three replicas took {t3:.2f} s, one {t1:.2f} s"


def test_p90_through_three_replicas_matches_one(cluster):
    replicas, alone = cluster["replicas"], cluster["alone"]
    ticket = {"query": "p90", "dataset": "yellow", "from": YEAR[0], "to": YEAR[1]}
    client = Client(replicas[1].address)
    info = client.info(ticket)
    assert len({*owners(info)}) == REPLICAS, owners(info)
    parts = [client.fetch(e) for e in info.endpoints]
    split = pa.concat_tables(parts)
    whole = Client(alone.address).conn.do_get(flight.Ticket(json.dumps(ticket).encode()),
                                              Client(alone.address).options).read_all()
    thresholds = {p.schema.metadata[b"bridge.p90.threshold"] for p in parts}
    assert thresholds == {whole.schema.metadata[b"bridge.p90.threshold"]}
    threshold, rows = reference.p90(cluster["files"], *YEAR)
    assert float(thresholds.pop()) == pytest.approx(threshold, rel=1e-12)
    assert split.num_rows == whole.num_rows == rows.num_rows
    assert reference.key(split) == reference.key(whole) == reference.key(rows)


def test_a_token_from_one_replica_is_accepted_by_all(cluster):
    replicas = cluster["replicas"]
    token = Client(replicas[0].address).header
    bad = (b"authorization", b"Bearer " + b"x" * 40)
    for r in replicas:
        conn = flight.connect(f"grpc://{r.address}")
        good = flight.FlightCallOptions(headers=[token])
        assert list(conn.list_actions(good))
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(conn.list_actions(flight.FlightCallOptions(headers=[bad])))


def test_a_dead_replica_is_routed_around_and_leaves_new_flight_infos(cluster):
    replicas = cluster["replicas"]
    r1, r3 = replicas[0], replicas[2]
    client = Client(r1.address)
    ticket = {"query": "scan", "dataset": "yellow", "from": YEAR[0], "to": YEAR[1],
              "columns": ["tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance"]}
    info = client.info(ticket)
    dead = f"grpc+tcp://{r3.address}"
    assert dead in owners(info)
    r3.proc.kill()
    killed = time.monotonic()
    r3.proc.wait()
    wait_until(lambda: dead not in {str(l.uri.decode()) for e in client.info(ticket).endpoints for l in e.locations},
               r1, timeout=10, what="new FlightInfos without the dead replica")
    gone = time.monotonic() - killed
    print(f"\nthe dead replica left new FlightInfos {gone:.2f} s after it was killed (refresh {REFRESH_S} s)")
    # Within one refresh, plus the probe's own timeout (at most 1 s) and some slack.
    assert gone <= REFRESH_S + 1.5
    # The FlightInfo planned before the kill still names the dead replica first on some endpoints:
    # their second location answers, and the rows are exactly right.
    tried = []
    got = pa.concat_tables([client.fetch(e, tried) for e in info.endpoints])
    assert dead in tried, "no endpoint had to fall back"
    expected = reference.in_range(reference.read(cluster["files"]), *YEAR)
    assert reference.key(got) == reference.key(expected)
    assert not [m for m in status(r1)["members"] if m["address"] == r3.address and m["alive"]]
