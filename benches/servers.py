"""The servers every end-to-end bench runs: Bridge and the Python peer over one generated month."""
import contextlib
import os
import sys
import tempfile
from pathlib import Path

import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import Bridge, Service, generate  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", 3_000_000))
RUNS = int(os.environ.get("BENCH_RUNS", 9))


@contextlib.contextmanager
def bridge_and_peer():
    """Yields (bridge, peer service, peer client) over one generated month; stops both after."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "yellow"
        files = generate(data, ["2024-01"], rows=ROWS)
        bridge = Bridge([f"yellow={data}/*.parquet"], Path(tmp) / "cache", memory_limit="4GB")
        peer = Service([sys.executable, str(Path(__file__).parent / "peer_server.py"), *map(str, files)])
        try:
            peer_client = flight.connect("grpc://" + peer.wait_for(r"grpc://([0-9.]+:\d+)").group(1))
            yield bridge, peer, peer_client
        finally:
            bridge.stop()
            peer.stop()
