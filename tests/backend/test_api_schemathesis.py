"""Property-based tests of the whole API from its own OpenAPI document (schemathesis): at least 1,000 generated
requests, no 5xx, and responses that conform to the documented status codes, content types and schemas.

Schemathesis' pytest plugin (lazy schemas) does not run under pytest 9, so each operation's case strategies are
driven by Hypothesis directly: positive cases with the path's run id pinned to the store's run (to reach the
queries), then positive and negative cases with every parameter generated (operations without parameters have no
negative cases).
"""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from backend.api.app import create_app
from tests.backend.api_support import atlas_store, make_settings  # noqa: F401

pytestmark = pytest.mark.slow  # thousands of generated requests: tens of seconds

EXAMPLES_PER_PASS = 16
#: A corpus example of the test store (pinned in one pass of the example and audio routes).
EXAMPLE = "builtin:s000:fra:fra-m1"


@pytest.fixture(scope="module")
def app(atlas_store, tiny_bundle, tmp_path_factory):
    store, _ = atlas_store
    app = create_app(make_settings(store, tmp_path_factory.mktemp("fuzz"), queue_size=16, request_timeout_s=30), bundle=tiny_bundle)
    state = app.state.atlas
    state.host.start()
    yield app
    state.close()


def test_generated_requests_never_get_a_server_error(app, atlas_store):
    _, run_id = atlas_store
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    calls: Counter = Counter()
    statuses: Counter = Counter()
    failures: list[str] = []
    per_op: dict[str, Counter] = defaultdict(Counter)
    operations = [result.ok() for result in api.get_all_operations()]
    for op in operations:
        label = f"{op.method.upper()} {op.path}"
        passes = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if "{run_id}" in op.path:
            pinned = {"run_id": run_id, **({"example_id": EXAMPLE} if "{example_id}" in op.path else {})}
            passes.insert(0, (GenerationMode.POSITIVE, pinned))
        for mode, path_parameters in passes:
            strategy = op.as_strategy(generation_mode=mode, path_parameters=path_parameters)

            @settings(max_examples=EXAMPLES_PER_PASS, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case):
                response = case.call()
                calls[label] += 1
                statuses[response.status_code] += 1
                per_op[label][response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(f"{label} -> {response.status_code}: {response.text[:300]}\n{case.as_curl_command()}")
                    return
                if mode == GenerationMode.POSITIVE:
                    case.validate_response(response, checks=[schemathesis.checks.not_a_server_error,
                                                             schemathesis.checks.status_code_conformance,
                                                             schemathesis.checks.content_type_conformance,
                                                             schemathesis.checks.response_schema_conformance])

            try:
                run()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE, f"no valid request can be generated for {label}"
    total = sum(calls.values())
    print(f"\nschemathesis {schemathesis.__version__}: {total} requests over {len(calls)} operations; "
          f"statuses {dict(sorted(statuses.items()))}")
    for label, counts in sorted(per_op.items()):
        print(f"  {label}: {dict(sorted(counts.items()))}")
    assert not failures, "\n".join(failures[:5])
    assert len(calls) == len(operations) >= 30
    assert total >= 1000, calls
