"""Property tests from the published OpenAPI document (Schemathesis): every read endpoint,
called with generated parameters and an admin token, answers as documented and never 5xx."""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import Served, auth

EXAMPLES = int(os.environ.get("QLOOP_SCHEMATHESIS_EXAMPLES", "10"))
"""Generated cases per operation; raise it for a deeper run."""


def test_read_endpoints_conform_to_their_openapi_schema(served: Served) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", served.app).include(method="GET")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/incidents", "/incidents/{incident_id}", "/exports/{period}", "/review"} <= paths
    headers = auth("admin")
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            statuses.append(case.call_and_validate(headers=headers).status_code)

        check()
    assert len(statuses) >= len(operations) * 5
    assert 200 in statuses and all(s < 500 for s in statuses)
