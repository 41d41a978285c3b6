"""`--decoded-cache-bytes`: a scan keeps a file's rows decoded only when they take at most half of
the cache, so the next scan of a hot file decodes nothing, and one scan never flushes the cache."""
import pytest

import reference as ref
from conftest import Bridge, generate
from test_admin import http, metric

ROWS = 200_000  # about 32 MB of Arrow


def decoded(b):
    """Row groups decoded from segment files so far."""
    return metric(http(b.admin + "/metrics")[1], "bridge_row_groups_read_total", **{"from": "file"}) or 0


@pytest.mark.parametrize("cache,kept", [("1GiB", True), ("16MiB", False)])
def test_scan_keeps_a_file_decoded_only_when_it_fits(tmp_path, cache, kept):
    files = generate(tmp_path / "data", ["2024-03"], rows=ROWS)
    b = Bridge([f"yellow={tmp_path / 'data'}/*.parquet"], tmp_path / "cache", extra=["--decoded-cache-bytes", cache])
    try:
        want = ref.key(ref.read(files))
        counts = [decoded(b)]
        for _ in range(2):
            got = b.get({"query": "scan", "dataset": "yellow"})
            assert got.num_rows == ROWS and ref.key(got) == want
            counts.append(decoded(b))
        first, second = counts[1] - counts[0], counts[2] - counts[1]
        assert first >= ROWS // 12_288, f"the first scan decoded only {first} row groups"
        if kept:
            assert second == 0, f"the second scan decoded {second} row groups again"
        else:
            assert second >= first, f"a file twice the cache's half stayed decoded ({second} < {first})"
    finally:
        b.stop()


def test_decoded_cache_size_is_checked(tmp_path):
    with pytest.raises(AssertionError, match=r"invalid value 'lots' for '--decoded-cache-bytes"):
        Bridge(["yellow=/nonexistent/*.parquet"], tmp_path / "cache", extra=["--decoded-cache-bytes", "lots"])
