"""schemathesis against the OpenAPI document, on the seeded store of every database: requests
generated from each operation's parameters (valid and not) never get a server error, and
every answer has a status, content type and body the document declares."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskjobs.store import Store
from taskjobs.web import create_app
from tests.web.seed import Seeded

SLOW = [HealthCheck.too_slow, HealthCheck.filter_too_much]
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(seeded_store: Store, seeded: Seeded) -> None:
    # Each operation's cases are drawn by hypothesis directly: schemathesis' pytest plugin
    # (``schemathesis.pytest.from_fixture``) fails on this pytest's nodes.
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(seeded_store))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=SLOW)
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        answers_as_documented()
