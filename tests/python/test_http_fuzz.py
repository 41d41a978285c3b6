"""Schemathesis fuzzes the HTTP API from the OpenAPI document it serves: no crash, no server
error (but the documented 503 "not yet", which always carries Retry-After), and every response
matches the document (status codes, content types, bodies, headers)."""
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conftest import Bridge

# Hypothesis examples per operation (5 operations): bounded so `make test` stays short;
# `make fuzz-http` runs many more.
EXAMPLES = int(os.environ.get("HTTP_FUZZ_EXAMPLES", "30"))


@pytest.fixture(scope="module")
def fuzzed(data_dir, tmp_path_factory):
    # A short min_version wait: fuzzed versions far ahead answer 503 at once, not after 10 s.
    b = Bridge([f"yellow={data_dir}/*.parquet"], tmp_path_factory.mktemp("fuzz-cache"),
               ["--min-version-wait", "0s", "--query-timeout", "20s"], http=True)
    yield b
    b.stop()


def test_fuzzed_requests_get_documented_answers(fuzzed):
    # Schemathesis' own pytest plugin does not load under this pytest, so its strategies run
    # under Hypothesis directly.
    schema = schemathesis.openapi.from_url(f"{fuzzed.http}/v1/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 5
    seen = {}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(base_url=fuzzed.http, timeout=30)
            # A schema-valid request may still name a column or write SQL that does not exist:
            # 400 is right there, so "valid data is accepted" is not checked; 5xx is, below.
            case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance])
            status = response.status_code
            seen.setdefault(op.label, set()).add(status)
            if status == 503:
                assert "retry-after" in {k.lower() for k in response.headers} and "not yet" in response.text, response.text
            else:
                assert status < 500, f"{status}: {response.text[:300]}"
            assert fuzzed.proc.poll() is None, "the server must survive every request"

        check()
    print(f"\nstatuses seen: {seen}")
    assert any(200 in s for s in seen.values()), "the fuzzer must reach real answers too"
